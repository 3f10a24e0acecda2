"""Each PEFT method owns its options (issue 21): a key of another method is refused in one line
naming it, ``method: peft`` checks its tuner config when the config is validated, saved configs
written with every key still load, and the methods' names and options load without torch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from typer.testing import CliRunner

from peft_ser.cli import app
from peft_ser.config import ConfigError, ModelConfig, load_run_config
from peft_ser.models.config import SAVED_OPTION_KEYS
from peft_ser.models.ser_model import CONFIG_FILE, SERModel, build_model, parameter_count
from peft_ser.models.tuning import METHODS, SPECS
from peft_ser.models.tuning import registry as tuning_registry
from peft_ser.models.tuning.lora import LoraOptions, PeftOptions
from peft_ser.models.tuning.spec import MethodSpec
from peft_ser.utils.errors import UserError

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
IA3 = {"peft_type": "IA3", "feedforward_modules": ["fc2"]}
LORA_OPTIONS = "its options: lora_rank, lora_alpha, lora_dropout, lora_targets"


def run_config(**model: Any) -> Any:
    return load_run_config(
        overrides={"data.corpus": "x", **{f"model.{k}": v for k, v in model.items()}}
    )


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        (
            {"method": "lora", "adapter_dim": 64},
            f"invalid configuration: option model.adapter_dim: not an option of method 'lora' "
            f"({LORA_OPTIONS}); adapter_dim is an option of adapter, adapter_l, combined",
        ),
        (
            {"method": "frozen", "adapter_dim": 64},
            "invalid configuration: option model.adapter_dim: not an option of method 'frozen' "
            "(it has no options); adapter_dim is an option of adapter, adapter_l, combined",
        ),
        (
            {"method": "finetune", "prompt_length": 3},
            "invalid configuration: option model.prompt_length: not an option of method "
            "'finetune' (it has no options); prompt_length is an option of embedding_prompt, "
            "combined",
        ),
        (
            {"method": "adapter", "lora_rank": 8},
            "invalid configuration: option model.lora_rank: not an option of method 'adapter' "
            "(its options: adapter_dim); lora_rank is an option of lora, combined",
        ),
        (
            {"method": "lora", "peft_config": {"peft_type": "IA3"}},
            f"invalid configuration: option model.peft_config: not an option of method 'lora' "
            f"({LORA_OPTIONS}); peft_config is an option of peft",
        ),
    ],
)
def test_an_option_of_another_method_is_one_line_naming_the_key(
    model: dict[str, Any], expected: str
) -> None:
    with pytest.raises(ConfigError) as error:
        run_config(**model)
    assert str(error.value) == expected


def test_a_config_file_names_itself_and_the_key(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("model: {method: frozen, lora_rank: 8}\ndata: {corpus: x}\n")
    with pytest.raises(ConfigError, match=rf"^invalid configuration: {path}: model\.lora_rank: "):
        load_run_config(path)


def test_an_option_at_its_default_is_accepted_for_any_method() -> None:
    """The shipped configs give ``lora_rank: 16`` (the default) to every method."""
    for spec in SPECS:
        tuner = {"peft_config": IA3} if spec.name == "peft" else {}
        assert run_config(method=spec.name, lora_rank=16, adapter_dim=128, **tuner).model
    for name in ("frozen", "adapter", "embedding_prompt"):
        path = CONFIGS / f"iemocap-whisper-base-{name.replace('_', '-')}.yaml"
        assert load_run_config(path).model.method == name


def test_the_method_receives_its_own_options_model() -> None:
    config = ModelConfig(method="combined", lora_rank=4, adapter_dim=8, prompt_length=2)
    options = config.method_options
    assert type(options) is METHODS["combined"].options
    assert (options.lora_rank, options.adapter_dim, options.prompt_length) == (4, 8, 2)  # type: ignore[attr-defined]
    assert type(ModelConfig(method="lora").method_options) is LoraOptions
    assert ModelConfig(method="full").method_options.model_dump() == {}


def test_every_option_has_a_default_and_one_meaning() -> None:
    """A config naming a method gets every option it leaves out; a key shared by two methods
    (combined and lora) is one field of `ModelConfig`."""
    for spec in SPECS:
        assert all(not field.is_required() for field in spec.options.model_fields.values())
    assert set(tuning_registry.option_fields()) <= set(ModelConfig.model_fields)


def test_two_methods_declaring_one_key_differently_is_a_programming_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pydantic import Field

    from peft_ser.utils.settings import StrictModel

    class OtherRank(StrictModel):
        lora_rank: int = Field(4)

    other = MethodSpec(("other",), OtherRank, lambda backbone, options: None)
    monkeypatch.setattr(tuning_registry, "SPECS", (*SPECS, other))
    with pytest.raises(TypeError, match="option 'lora_rank' of method 'other'"):
        tuning_registry.option_fields()


# --- method: peft -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("peft_config", "expected"),
    [
        (None, "model.peft_config: method 'peft' needs a peft tuner config, e.g. {peft_type: IA3"),
        ({"r": 4}, "model.peft_config: not a peft tuner config: no peft_type among its keys ['r']"),
        (
            {"peft_type": "LORRA"},
            "model.peft_config: not a peft tuner config: unknown peft_type 'LORRA' (did you mean "
            "'LORA'?); known: ",
        ),
        (
            {"peft_type": "IA3", "feedforward_modul": ["fc2"]},
            "model.peft_config: not a peft tuner config: IA3 has no option 'feedforward_modul' "
            "(did you mean 'feedforward_modules'?)",
        ),
        (
            {"peft_type": "ADALORA"},
            "model.peft_config: not a peft tuner config (ADALORA: ValueError: AdaLoRA does not "
            "work when `total_step` is None",
        ),
        (
            {"peft_type": "PREFIX_TUNING", "task_type": "SEQ_CLS", "num_virtual_tokens": 2},
            "model.peft_config: peft tuner PREFIX_TUNING is a prompt-learning method for token "
            "inputs; use method 'embedding_prompt' for speech encoders",
        ),
    ],
)
def test_the_tuner_config_is_checked_with_the_config(
    peft_config: dict[str, Any] | None, expected: str
) -> None:
    """No model is built: the refusal comes from validating the config."""
    model = {"method": "peft"} | ({} if peft_config is None else {"peft_config": peft_config})
    with pytest.raises(ConfigError) as error:
        run_config(**model)
    message = str(error.value)
    assert "\n" not in message
    assert (
        message.removeprefix("invalid configuration: ").removeprefix("option ").startswith(expected)
    ), message


def test_the_tuner_type_is_matched_ignoring_case_and_stored_as_peft_spells_it() -> None:
    config = ModelConfig(method="peft", peft_config={"peft_type": "ia3", "feedforward_modules": []})
    assert config.peft_config == {"peft_type": "IA3", "feedforward_modules": []}
    assert PeftOptions.model_validate({"peft_config": config.peft_config}).peft_config
    assert json.loads(config.model_dump_json())["peft_config"]["peft_type"] == "IA3"


# --- saved configs ------------------------------------------------------------------------


def _legacy_document(method: str, **options: Any) -> dict[str, Any]:
    """A peft_ser_config.json as versions before this one wrote it: every key, flat."""
    return {
        "backbone": "tiny-whisper",
        "method": method,
        "lora_rank": 16,
        "lora_alpha": 1.0,
        "lora_dropout": 0.0,
        "lora_targets": None,
        "peft_config": None,
        "adapter_dim": 128,
        "prompt_length": 5,
        "head_dim": 256,
        "labels": ["Neutral", "Angry", "Sad", "Happy"],
        "task": None,
        "attributes": [],
        "whisper_window": "crop",
        **options,
    }


def test_a_model_saved_by_older_versions_with_every_key_loads(tmp_path: Path) -> None:
    """Older versions accepted (and ignored) another method's options; such a folder loads and
    computes what it computed, the foreign options read as their defaults."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(backbone="tiny-whisper", method="adapter", adapter_dim=8))
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.requires_grad:
                parameter.add_(0.05 * torch.randn_like(parameter))
    folder = model.save(tmp_path / "model")
    legacy = _legacy_document("adapter", adapter_dim=8, lora_rank=4, prompt_length=3)
    (folder / CONFIG_FILE).write_text(json.dumps(legacy, indent=2))

    loaded = SERModel.load(folder)
    assert (loaded.config.adapter_dim, loaded.config.lora_rank, loaded.config.prompt_length) == (
        8,
        16,
        5,
    )
    assert parameter_count(loaded) == parameter_count(model)
    waveforms = 0.1 * torch.randn(1, 8_000, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(loaded(waveforms), model.eval()(waveforms), atol=0, rtol=0)


@pytest.mark.parametrize("spec", SPECS, ids=lambda spec: spec.name)
def test_every_methods_saved_config_reads_back_the_same(spec: MethodSpec[Any]) -> None:
    peft = {"peft_config": {"peft_type": "IA3"}} if spec.name == "peft" else {}
    config = ModelConfig(backbone="tiny-whisper", method=spec.name, **peft)
    document = json.loads(config.model_dump_json())
    assert set(document) == set(ModelConfig.model_fields)  # save writes every key
    assert ModelConfig.model_validate(document).model_dump() == config.model_dump()
    legacy = ModelConfig.model_validate(_legacy_document(spec.name, **peft))
    assert legacy.model_dump() == config.model_dump()


def test_a_saved_config_without_other_methods_options_is_complete(tmp_path: Path) -> None:
    """An option that comes with a newer method is absent from models saved before it."""
    from peft_ser.models.ser_model import _read_config

    document = _legacy_document("lora")
    for key in ("adapter_dim", "prompt_length", "peft_config"):
        del document[key]
    path = tmp_path / CONFIG_FILE
    path.write_text(json.dumps(document))
    assert _read_config(path)[0].method == "lora"
    del document["lora_rank"]
    path.write_text(json.dumps(document))
    with pytest.raises(UserError, match=r"^incomplete model config: missing keys lora_rank$"):
        _read_config(path)


# --- properties ---------------------------------------------------------------------------

NON_DEFAULT_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "lora_rank": st.integers(1, 64).filter(lambda v: v != 16),
    "lora_alpha": st.floats(0.5, 64).filter(lambda v: v != 1.0),
    "lora_dropout": st.floats(0.01, 0.9),
    "lora_targets": st.lists(st.sampled_from(["fc1", "fc2", "q_proj"]), min_size=1),
    "peft_config": st.just(IA3),
    "adapter_dim": st.integers(1, 64),
    "prompt_length": st.integers(6, 20),
}


@st.composite
def method_and_options(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    method = draw(st.sampled_from(sorted(METHODS)))
    keys = draw(st.sets(st.sampled_from(sorted(NON_DEFAULT_VALUES))))
    options = {key: draw(NON_DEFAULT_VALUES[key]) for key in keys}
    if method == "peft" and draw(st.booleans()):
        options["peft_config"] = draw(NON_DEFAULT_VALUES["peft_config"])
    return method, options


@settings(max_examples=150, deadline=None)
@given(method_and_options())
def test_options_are_accepted_exactly_when_the_method_takes_them(
    case: tuple[str, dict[str, Any]],
) -> None:
    method, options = case
    own = METHODS[method].options.model_fields
    # every key of a saved config: another method's options are read as their defaults
    saved = options.keys() >= SAVED_OPTION_KEYS
    foreign = [] if saved else sorted(set(options) - set(own))
    needs_tuner = method == "peft" and "peft_config" not in options
    try:
        config = ModelConfig(backbone="tiny-whisper", method=method, **options)
    except ValidationError as error:
        problems = error.errors()
        assert foreign or needs_tuner
        assert {problem["loc"][0] for problem in problems} == set(foreign) | (
            {"peft_config"} if needs_tuner else set()
        )
        return
    assert not foreign and not needs_tuner
    assert config.method_options.model_dump() == {key: getattr(config, key) for key in own}
    for key, value in options.items():
        assert getattr(config, key) == (
            value if key in own else ModelConfig.model_fields[key].default
        )
    saved = json.loads(config.model_dump_json())
    assert ModelConfig.model_validate(saved).model_dump() == config.model_dump()


@settings(max_examples=100, deadline=None)
@given(method_and_options())
def test_a_saved_document_with_every_key_always_loads(case: tuple[str, dict[str, Any]]) -> None:
    method, options = case
    if method == "peft":
        options.setdefault("peft_config", IA3)
    config = ModelConfig.model_validate(_legacy_document(method, **options))
    own = METHODS[method].options.model_fields
    for key, value in options.items():
        field = ModelConfig.model_fields[key]
        assert getattr(config, key) == (value if key in own else field.default)


# --- the command line ---------------------------------------------------------------------


def test_params_names_the_option_for_the_tuner_config() -> None:
    result = CliRunner().invoke(app, ["params", "--backbone", "whisper-tiny", "--method", "peft"])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.startswith("error: model.peft_config: method 'peft' needs")
    assert result.stderr.rstrip().endswith("give it with --peft-config")
    assert len(result.stderr.splitlines()) == 1


def test_params_counts_a_tuner_given_inline_or_as_a_file(tmp_path: Path) -> None:
    inline = CliRunner().invoke(
        app, ["params", "--method", "peft", "--peft-config", '{"peft_type": "LOHA", "r": 4}']
    )
    assert inline.exit_code == 0, inline.output
    path = tmp_path / "loha.yaml"
    path.write_text("peft_type: LOHA\nr: 4\n")
    from_file = CliRunner().invoke(app, ["params", "--method", "peft", "--peft-config", str(path)])
    assert from_file.exit_code == 0, from_file.output
    assert inline.stdout == from_file.stdout
    assert "trainable  " in inline.stdout


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        (
            ["--method", "peft", "--peft-config", "no-such-file.yaml"],
            "error: --peft-config no-such-file.yaml: neither a mapping (e.g. {peft_type: IA3",
        ),
        (
            ["--method", "peft", "--peft-config", "{peft_type: [IA3"],
            "error: --peft-config: not a JSON or YAML mapping (",
        ),
        (
            ["--method", "peft", "--peft-config", "{peft_type: LORA, rr: 2}"],
            "error: invalid configuration: peft_config: not a peft tuner config: LORA has no "
            "option 'rr' (did you mean 'r'?)",
        ),
        (
            ["--method", "frozen", "--adapter-dim", "64"],
            "error: invalid configuration: adapter_dim: not an option of method 'frozen'",
        ),
        (
            ["--method", "lora", "--peft-config", "{peft_type: IA3}"],
            "error: invalid configuration: peft_config: not an option of method 'lora'",
        ),
    ],
)
def test_params_refusals_are_one_line(arguments: list[str], expected: str) -> None:
    result = CliRunner().invoke(app, ["params", *arguments])
    assert result.exit_code == 2
    assert result.stderr.startswith(expected), result.stderr
    assert len(result.stderr.splitlines()) == 1


def test_params_reads_a_file_that_is_no_mapping(tmp_path: Path) -> None:
    path = tmp_path / "list.json"
    path.write_text("[1, 2]")
    result = CliRunner().invoke(app, ["params", "--method", "peft", "--peft-config", str(path)])
    assert result.exit_code == 2
    assert result.stderr == (
        f"error: --peft-config {path}: a peft tuner config is a mapping with peft_type, e.g. "
        "{peft_type: IA3, target_modules: [fc1, fc2], feedforward_modules: [fc2]}; got [1, 2]\n"
    )


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        (
            ["--method", "peft"],
            "error: invalid configuration: model.peft_config: method 'peft' needs a peft tuner",
        ),
        (
            ["--method", "peft", "--peft-config", "{peft_type: X}"],
            "error: invalid configuration: option model.peft_config: not a peft tuner config: "
            "unknown peft_type 'X'",
        ),
        (
            ["--method", "peft", "--set", "model.peft_config={peft_type: LOKR, rank: 4}"],
            "error: invalid configuration: option model.peft_config: not a peft tuner config: "
            "LOKR has no option 'rank'",
        ),
        (
            ["--method", "adapter", "--rank", "8"],
            "error: invalid configuration: option model.lora_rank: not an option of method "
            "'adapter' (its options: adapter_dim)",
        ),
    ],
)
def test_train_refuses_before_reading_any_corpus(
    tmp_path: Path, arguments: list[str], expected: str
) -> None:
    command = ["train", "--corpus", str(tmp_path / "none"), "--output-dir", str(tmp_path / "r")]
    result = CliRunner().invoke(app, [*command, *arguments])
    assert result.exit_code == 2
    assert result.stderr.startswith(expected), result.stderr
    assert len(result.stderr.splitlines()) == 1
    assert not (tmp_path / "r").exists()


def test_method_names_and_options_load_without_torch() -> None:
    check = (
        "import sys; import peft_ser.models.tuning.registry as r; "
        "from peft_ser.models.tuning import lora; "
        "assert 'combined' in r.METHODS and lora.PeftOptions.model_fields; "
        "assert 'torch' not in sys.modules and 'peft' not in sys.modules, 'torch loaded'"
    )
    source = Path(tuning_registry.__file__).parents[3]
    subprocess.run([sys.executable, "-c", check], check=True, env={"PYTHONPATH": str(source)})
