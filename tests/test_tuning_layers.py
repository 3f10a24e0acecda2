"""``model.tune_layers``: every method that adapts layers adapts only the top k, with exact
parameter counts; the front end and the layers below run as a fixed feature extractor (eval
mode, no gradients); bad values are refused in one line; saved models keep the setting, and
older ones (without the key) load adapting every layer."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import torch
from _models import build_tiny_model
from pydantic import ValidationError
from test_params import adapter, head, lora, run_params
from transformers import WhisperConfig

from peft_ser import load_model
from peft_ser.config import ModelConfig, format_validation_error
from peft_ser.models.ser_model import CONFIG_FILE, FromStates, build_model, count_parameters
from peft_ser.utils.errors import UserError

WHISPER_TINY_LAYER = 1_774_080  # one encoder layer of Whisper tiny (d 384, ffn 1536)


def loha(width: int, ffn: int, layers: int, rank: int = 8) -> int:
    """peft's LoHa on fc1 and fc2: two Hadamard factors, each A (out×r) and B (r×in)."""
    return layers * 2 * (2 * rank * (width + ffn))


@pytest.mark.parametrize("k", [1, 2, 3, 4])
@pytest.mark.parametrize(
    ("method", "options", "expected"),
    [
        ("lora", {}, lambda k: lora(384, 1536, k, 16)),
        ("adapter", {}, lambda k: adapter(384, k, 128)),
        ("adapter_l", {}, lambda k: adapter(384, k, 128)),
        ("embedding_prompt", {}, lambda k: k * 5 * 384),
        (
            "combined",
            {},
            lambda k: lora(384, 1536, k, 16) + k * 5 * 384 + adapter(384, k, 128),
        ),
        ("full", {}, lambda k: k * WHISPER_TINY_LAYER),
        (
            "peft",
            {"peft_config": {"peft_type": "LOHA", "target_modules": ["fc1", "fc2"]}},
            lambda k: loha(384, 1536, k),
        ),
    ],
)
def test_the_top_k_layers_have_the_hand_counted_parameters(
    method: str, options: dict[str, Any], expected: Any, k: int
) -> None:
    config = ModelConfig(backbone="whisper-tiny", method=method, tune_layers=k, **options)
    assert count_parameters(config).trainable == expected(k) + head(384, 4)


def test_every_layer_counts_as_unset_and_other_backbones_count_alike() -> None:
    """Top 4 of Whisper tiny's 4 layers is every layer; WavLM Base+ has 12."""
    every = count_parameters(ModelConfig(backbone="whisper-tiny", tune_layers=4)).trainable
    assert every == count_parameters(ModelConfig(backbone="whisper-tiny")).trainable
    top3 = ModelConfig(backbone="wavlm-base-plus", method="lora", tune_layers=3)
    assert count_parameters(top3).trainable == lora(768, 3072, 3, 16) + head(768, 12)


def test_params_command_counts_the_top_layers() -> None:
    result = run_params("--backbone", "whisper-tiny", "--tune-layers", "2")
    assert result.exit_code == 0, result.output
    assert f"trainable  {lora(384, 1536, 2, 16) + head(384, 4):,}" in result.output


@pytest.mark.parametrize(
    "backbone", ["tiny-whisper", "tiny-wavlm", "tiny-wav2vec2", "tiny-wav2vec2-large"]
)
@pytest.mark.parametrize("method", ["lora", "adapter", "embedding_prompt", "combined", "full"])
def test_only_the_top_layers_train(backbone: str, method: str) -> None:
    model = build_tiny_model(backbone, method=method, tune_layers=1)
    trained = [n for n, p in model.backbone.named_parameters() if p.requires_grad]
    assert trained
    top = model.backbone.num_layers - 1
    for name in trained:
        index = re.search(r"(?:layers|prompts)\.(\d+)", name)
        assert index is not None and int(index.group(1)) == top, name


def _hidden_dropout_batch() -> tuple[torch.Tensor, torch.Tensor]:
    waveforms = 0.1 * torch.randn(3, 12_000, generator=torch.Generator().manual_seed(3))
    return waveforms, torch.tensor([12_000, 9_000, 5_000])


def test_the_part_below_runs_in_eval_mode_without_gradients() -> None:
    """tiny-wavlm has dropout 0.1 in its encoder: in train mode, the states below the tuned
    layer are those of eval mode whatever the random stream, and the forward of the whole model
    is the tuned part's forward on them."""
    model = build_tiny_model("tiny-wavlm", method="lora", tune_layers=1, lora_b=0.1)
    waveforms, lengths = _hidden_dropout_batch()
    with torch.no_grad():
        fixed, frames = model.encode_below(waveforms, lengths)
    model.train()
    for seed in (1, 2):
        torch.manual_seed(seed)
        below, _ = model.encode_below(waveforms, lengths)
        assert torch.equal(below, fixed) and not below.requires_grad
    assert model.backbone.training and model.backbone.layers[0].training  # mode restored
    torch.manual_seed(5)
    whole = model(waveforms, lengths)
    torch.manual_seed(5)
    above = FromStates(model)(fixed, frames)
    torch.testing.assert_close(whole, above, rtol=0, atol=0)
    assert whole.requires_grad


def test_without_tune_layers_the_front_end_keeps_its_dropout() -> None:
    """Absent, nothing changes: the encoder input's dropout acts in train mode as always."""
    model = build_tiny_model("tiny-wavlm", method="lora").train()
    waveforms, lengths = _hidden_dropout_batch()
    first, second = (model.encode_below(waveforms, lengths)[0] for _ in range(2))
    assert first.shape[0] == 1 and not torch.equal(first, second)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (0, "Input should be greater than or equal to 1 (got 0)"),
        (-2, "Input should be greater than or equal to 1 (got -2)"),
        (5, "5 layers, but whisper-tiny has 4 encoder layers; give 1 to 4"),
        (1e9, "Input should be less than or equal to 8192"),
        (float("nan"), "Input should be a finite number"),
        (2.5, "Input should be a valid integer, got a number with a fractional part"),
        (True, "True is not a number of layers; give k, to adapt the top k"),
        ("two", "Input should be a valid integer"),
        ([3, 4], "Input should be a valid integer"),
    ],
)
def test_bad_values_are_refused_in_one_line_naming_the_key(value: Any, message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        ModelConfig(backbone="whisper-tiny", tune_layers=value)
    text = format_validation_error(caught.value, ModelConfig)
    assert text.startswith(f"invalid configuration: tune_layers: {message}")
    assert "\n" not in text


@pytest.mark.parametrize(
    ("method", "options", "message"),
    [
        ("frozen", {}, "method 'frozen' adapts no layer (it trains the head alone)"),
        ("peft", {"peft_config": {"peft_type": "IA3"}}, "peft tuner IA3 cannot be restricted"),
        (
            "peft",
            {"peft_config": {"peft_type": "LORA", "target_modules": "fc.*"}},
            "target_modules as a regular expression",
        ),
        (
            "peft",
            {"peft_config": {"peft_type": "LORA", "layers_to_transform": [1]}},
            "sets layers_to_transform: choose the layers there or with tune_layers, not both",
        ),
    ],
)
def test_methods_that_cannot_choose_layers_are_refused(
    method: str, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        ModelConfig(backbone="whisper-tiny", method=method, tune_layers=1, **options)
    assert message in format_validation_error(caught.value, ModelConfig)


def test_a_cli_refusal_is_one_error_line() -> None:
    result = run_params("--tune-layers", "1", "--method", "frozen")
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr.startswith("error: invalid configuration: tune_layers: method 'frozen'")
    assert result.stderr.count("\n") == 1


def test_a_tuner_targeting_a_lower_layer_by_its_full_name_is_refused() -> None:
    """peft matches a full module name without looking at layers_to_transform."""
    config = ModelConfig(
        backbone="tiny-whisper",
        method="peft",
        peft_config={"peft_type": "LORA", "target_modules": ["layers.0.fc1"]},
        tune_layers=1,
    )
    with pytest.raises(UserError, match=r"^model.tune_layers 1: method 'peft' also trains "):
        build_model(config)


def test_a_backbone_folder_is_checked_when_built(tmp_path: Path) -> None:
    """Outside the registry the layer count is known once the architecture is read."""
    WhisperConfig(
        d_model=32, encoder_layers=2, encoder_attention_heads=2, encoder_ffn_dim=64,
        decoder_layers=1, decoder_attention_heads=2, decoder_ffn_dim=64,
    ).save_pretrained(tmp_path)  # fmt: skip
    with pytest.raises(UserError, match=r"^model.tune_layers 3: the backbone has 2 encoder "):
        count_parameters(ModelConfig(backbone=str(tmp_path), tune_layers=3))


@pytest.mark.parametrize("method", ["lora", "combined", "embedding_prompt"])
def test_a_saved_model_keeps_its_layers(tmp_path: Path, method: str) -> None:
    model = build_tiny_model(
        "tiny-wavlm", method=method, tune_layers=1, jitter=0.05,
        **({"adapter_dim": 8} if method == "combined" else {}),
    )  # fmt: skip
    model.save(tmp_path)
    assert json.loads((tmp_path / CONFIG_FILE).read_text())["tune_layers"] == 1
    loaded = load_model(tmp_path, device="cpu")
    assert loaded.config.tune_layers == 1
    waveforms, lengths = _hidden_dropout_batch()
    with torch.no_grad():
        torch.testing.assert_close(loaded(waveforms, lengths), model(waveforms, lengths))


def test_an_older_saved_model_without_the_key_adapts_every_layer(tmp_path: Path) -> None:
    """Prompts keep their names (``backbone.prompts.<layer>``) whichever layers have them."""
    model = build_tiny_model("tiny-whisper", method="embedding_prompt", jitter=0.05)
    assert {n for n in model.trainable_state_dict() if "prompts" in n} == {
        "backbone.prompts.0",
        "backbone.prompts.1",
    }
    model.save(tmp_path)
    document = json.loads((tmp_path / CONFIG_FILE).read_text())
    del document["tune_layers"]
    (tmp_path / CONFIG_FILE).write_text(json.dumps(document))
    loaded = load_model(tmp_path, device="cpu")
    assert loaded.config.tune_layers is None and loaded.backbone.tuned_from is None
    waveforms, lengths = _hidden_dropout_batch()
    with torch.no_grad():
        torch.testing.assert_close(loaded(waveforms, lengths), model(waveforms, lengths))
