"""Trainable-parameter counts equal hand-computed ones, from configs alone (meta device).

Names of backbones and methods: matched ignoring case, misspellings refused in one line with the
closest name, hub failures in one line saying how to work offline.
"""

from __future__ import annotations

import pytest
from click.testing import Result
from pydantic import ValidationError
from typer.testing import CliRunner

from peft_ser.cli import app
from peft_ser.config import ModelConfig
from peft_ser.models.backbones import BackboneError, registry, resolve_backbone
from peft_ser.models.ser_model import count_parameters
from peft_ser.models.tuning.registry import MethodError, resolve_method


def head(width: int, layers: int, classes: int = 4, hidden: int = 256) -> int:
    """Layer weights (L+1), three 1×1 convs, Linear(256, 256), Linear(256, C)."""
    convs = (width * hidden + hidden) + 2 * (hidden * hidden + hidden)
    classifier = (hidden * hidden + hidden) + (hidden * classes + classes)
    return (layers + 1) + convs + classifier


def lora(width: int, ffn: int, layers: int, rank: int) -> int:
    """A (r×in) and B (out×r) on fc1 (width→ffn) and fc2 (ffn→width) in every layer."""
    return layers * 2 * rank * (width + ffn)


def adapter(width: int, layers: int, bottleneck: int) -> int:
    return layers * ((width * bottleneck + bottleneck) + (bottleneck * width + width))


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        (ModelConfig(backbone="whisper-tiny", method="lora"), 542_729),
        (
            ModelConfig(backbone="whisper-tiny", method="lora"),
            lora(384, 1536, 4, 16) + head(384, 4),
        ),
        (
            ModelConfig(backbone="wavlm-base-plus", method="lora"),
            lora(768, 3072, 12, 16) + head(768, 12),
        ),
        (
            ModelConfig(backbone="wavlm-base-plus", method="adapter"),
            adapter(768, 12, 128) + head(768, 12),
        ),
        (
            ModelConfig(backbone="whisper-base", method="embedding_prompt"),
            6 * 5 * 512 + head(512, 6),
        ),
        (ModelConfig(backbone="wavlm-large", method="frozen"), head(1024, 24)),
        (
            ModelConfig(backbone="whisper-large-v3", method="lora", lora_rank=8),
            lora(1280, 5120, 32, 8) + head(1280, 32),
        ),
        (
            ModelConfig(backbone="mms-300m", method="combined"),
            lora(1024, 4096, 24, 16) + 24 * 5 * 1024 + adapter(1024, 24, 128) + head(1024, 24),
        ),
    ],
)
def test_trainable_parameters_match_hand_counts(config: ModelConfig, expected: int) -> None:
    assert count_parameters(config).trainable == expected


def test_hand_counts_spelled_out() -> None:
    """The issue's reference figure, term by term: LoRA 245,760 + head 296,969."""
    assert lora(384, 1536, 4, 16) == 245_760
    assert head(384, 4) == 296_969


def test_totals_of_named_backbones_without_network() -> None:
    """Totals match the published sizes (encoder only for Whisper) plus our head."""
    # conv1 92,544 + conv2 442,752 + positions 576,000 + 4 layers × 1,774,080 + final norm 768
    whisper_tiny_encoder = 92_544 + 442_752 + 576_000 + 4 * 1_774_080 + 768
    total = count_parameters(ModelConfig(backbone="whisper-tiny", method="frozen")).total
    assert total == whisper_tiny_encoder + head(384, 4)
    wavlm_base_plus = count_parameters(ModelConfig(backbone="wavlm-base-plus", method="frozen"))
    assert 94_000_000 < wavlm_base_plus.total - head(768, 12) < 95_000_000


def test_params_command_prints_the_counts() -> None:
    result = CliRunner().invoke(
        app, ["params", "--backbone", "whisper-tiny", "--method", "lora", "--rank", "16"]
    )
    assert result.exit_code == 0, result.output
    assert "trainable  542,729" in result.output


def run_params(*arguments: str) -> Result:
    return CliRunner().invoke(app, ["params", *arguments])


def test_names_are_matched_ignoring_case() -> None:
    result = run_params("--backbone", "Whisper-Tiny", "--method", "LoRA")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[:3] == [
        "backbone   whisper-tiny",
        "method     lora",
        "trainable  542,729",
    ]
    assert resolve_backbone("TINY-WAVLM") == "tiny-wavlm"
    assert resolve_method("Frozen") == "frozen"


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (
            ("--backbone", "whisper-tinny"),
            "error: invalid configuration: backbone: unknown backbone 'whisper-tinny' "
            "(did you mean 'whisper-tiny'?); known: ct2-whisper-tiny.en, hubert-base,",
        ),
        (
            ("--backbone", "wavlm-base-plu"),
            "error: invalid configuration: backbone: unknown backbone 'wavlm-base-plu' "
            "(did you mean 'wavlm-base-plus'?); known:",
        ),
        (
            ("--backbone", "/no/such/model-dir"),
            "error: invalid configuration: backbone: backbone '/no/such/model-dir': "
            "no such directory",
        ),
        (
            ("--method", "lroa"),
            "error: invalid configuration: method: unknown PEFT method 'lroa' "
            "(did you mean 'lora'?); known: adapter, adapter_l, "
            "combined, embedding_prompt, finetune, frozen, full, lora, peft",
        ),
        (("--rank", "0"), "error: invalid configuration"),
    ],
)
def test_bad_names_and_values_are_one_line(arguments: tuple[str, ...], message: str) -> None:
    result = run_params(*arguments)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.startswith(message)
    assert "Traceback" not in result.output


def test_hub_failure_is_one_line_saying_how_to_work_offline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def offline(source: str, **options: object) -> None:
        raise OSError(f"We couldn't connect to 'https://huggingface.co'.\nCheck {source}.")

    monkeypatch.setattr(registry.AutoConfig, "from_pretrained", offline)
    result = run_params("--backbone", "some-org/some-model")
    assert result.exit_code == 2
    assert result.stderr == (
        "error: backbone 'some-org/some-model' could not be fetched from the Hugging Face hub "
        "(We couldn't connect to 'https://huggingface.co'. Check some-org/some-model.); offline, "
        "download it on a connected machine (hf download some-org/some-model --local-dir DIR) "
        "and give DIR as the backbone (load_model(..., backbone=DIR), peft-ser predict "
        "--backbone DIR, or backbone: DIR in a config), or copy the hub cache here and set "
        "HF_HUB_OFFLINE=1\n"
    )


def test_unknown_names_are_refused_by_the_config_and_the_model_builder() -> None:
    with pytest.raises(ValidationError, match="did you mean 'whisper-tiny'"):
        ModelConfig(backbone="whisper-tinny")
    with pytest.raises(ValidationError, match="did you mean 'adapter'"):
        ModelConfig(method="adaptor")
    # a config built without validation still cannot reach the network with a typo
    with pytest.raises(BackboneError, match="did you mean 'whisper-tiny'"):
        count_parameters(ModelConfig.model_construct(backbone="whisper-tinny"))
    with pytest.raises(MethodError, match="did you mean 'adapter'"):
        count_parameters(ModelConfig.model_construct(method="adaptor"))


def test_the_config_stores_the_registry_spelling() -> None:
    config = ModelConfig(backbone="Whisper-Tiny", method="LoRA")
    assert (config.backbone, config.method) == ("whisper-tiny", "lora")
