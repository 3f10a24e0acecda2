"""Property tests of config validation: any value of any numeric key gives a valid config or
one `ConfigError`, never another exception; a config that validates holds only finite floats
within the documented bounds."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from peft_ser.config import (
    MAX_LR,
    MAX_SIZE,
    ConfigError,
    ModelConfig,
    RunConfig,
    load_run_config,
)
from peft_ser.models.ser_model import _read_config
from peft_ser.utils.errors import UserError

NUMERIC_KEYS = [
    "model.lora_rank",
    "model.lora_alpha",
    "model.lora_dropout",
    "model.adapter_dim",
    "model.prompt_length",
    "model.head_dim",
    "data.crop_seconds",
    "data.eval_max_seconds",
    "data.batch_size",
    "data.eval_batch_size",
    "data.audio_cache_gb",
    "data.eval_batch_seconds",
    "data.bucket_pool",
    "data.bucket_jitter",
    "data.bucket_slack",
    "data.num_workers",
    "augment.noise_p",
    "augment.snr_db",
    "augment.time_mask_p",
    "augment.time_mask_fraction",
    "optim.epochs",
    "optim.lr",
    "optim.betas",
    "optim.weight_decay",
    "optim.plateau_patience",
    "optim.plateau_factor",
    "optim.min_lr",
    "optim.attribute_weight",
    "optim.grad_clip",
    "optim.max_nonfinite_steps",
    "seed",
    "feature_cache_budget_gb",
    "threads",
    "data.folds",
]

number = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.sampled_from([0, 1, -1, 10**9, 2**32, 1e30, 1e-30, ".inf", "1e30", "nan"]),
)
value = st.one_of(
    number,
    st.none(),
    st.booleans(),
    st.text(max_size=5),
    st.lists(number, max_size=3),
    st.dictionaries(st.text(max_size=3), number, max_size=2),
)


def _finite_numbers(node: Any) -> bool:
    if isinstance(node, float):
        return math.isfinite(node)
    if isinstance(node, dict):
        return all(_finite_numbers(v) for v in node.values())
    if isinstance(node, (list, tuple)):
        return all(_finite_numbers(v) for v in node)
    return True


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(st.sampled_from(NUMERIC_KEYS), value, min_size=1, max_size=4))
def test_any_numeric_values_give_a_config_or_a_config_error(overrides: dict[str, Any]) -> None:
    try:
        config = load_run_config(overrides={"data.corpus": "x", **overrides})
    except ConfigError as error:
        assert str(error)
        return
    assert isinstance(config, RunConfig)
    assert _finite_numbers(config.model_dump())
    assert 0 < config.optim.lr <= MAX_LR and 0 <= config.optim.weight_decay <= 1
    model = config.model
    assert max(model.lora_rank, model.adapter_dim, model.prompt_length, model.head_dim) <= MAX_SIZE
    folds = config.data.folds or []
    assert len(folds) == len({str(fold) for fold in folds})


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.recursive(
        number | st.text(max_size=3),
        lambda children: (
            st.lists(children, max_size=3)
            | st.dictionaries(st.text(max_size=3), children, max_size=3)
        ),
        max_leaves=60,
    )
)
def test_any_yaml_document_gives_a_config_or_a_config_error(tmp_path: Path, document: Any) -> None:
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({"data": {"corpus": "x"}, "model": document}))
    try:
        load_run_config(path)
    except ConfigError as error:
        assert str(error).startswith(("invalid configuration", str(path)))


MODEL_KEYS = [key.split(".")[1] for key in NUMERIC_KEYS if key.startswith("model.")]


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.dictionaries(st.sampled_from(MODEL_KEYS), value, min_size=1))
def test_a_saved_models_config_of_any_values_is_valid_or_one_error(
    tmp_path: Path, changes: dict[str, Any]
) -> None:
    """A model folder's config, read as `SERModel.load` reads it: never another exception."""
    document = ModelConfig(backbone="tiny-whisper").model_dump(mode="json") | changes
    path = tmp_path / "peft_ser_config.json"
    path.write_text(json.dumps(document))  # NaN and Infinity tokens too, as json writes them
    try:
        config, _ = _read_config(path)
    except UserError as error:
        assert "\n" not in str(error)
    else:
        assert max(config.lora_rank, config.head_dim, config.adapter_dim) <= MAX_SIZE
        assert math.isfinite(config.lora_alpha) and math.isfinite(config.lora_dropout)
