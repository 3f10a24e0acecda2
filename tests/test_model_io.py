"""Save and load keep only the trained part and reproduce the logits exactly."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from peft_ser.config import ModelConfig
from peft_ser.models.ser_model import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    ModelFileError,
    SERModel,
    WeightsError,
    build_model,
)
from peft_ser.models.tuning import METHODS


@pytest.mark.parametrize(
    ("backbone", "method"),
    [("tiny-whisper", "lora"), ("tiny-wavlm", "combined"), ("tiny-hubert", "adapter")],
)
def test_round_trip_gives_identical_logits(tmp_path, backbone: str, method: str) -> None:
    torch.manual_seed(0)
    takes_adapters = "adapter_dim" in METHODS[method].options.model_fields
    options = {"adapter_dim": 8} if takes_adapters else {}  # another method refuses the key
    model = build_model(ModelConfig(backbone=backbone, method=method, **options))
    # Move every trainable weight off its initial value, as training would.
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.requires_grad:
                parameter.add_(0.05 * torch.randn_like(parameter))
    model.eval()
    waveforms = 0.1 * torch.randn(2, 9_000)
    lengths = torch.tensor([9_000, 6_000])
    with torch.no_grad():
        expected = model(waveforms, lengths)

    # The tiny backbone is not saved: loading rebuilds it from its fixed seed, whatever the
    # caller's random state, as a hub load rebuilds a real one from its checkpoint.
    model.save(tmp_path)
    torch.manual_seed(1234)
    loaded = SERModel.load(tmp_path)
    with torch.no_grad():
        actual = loaded(waveforms, lengths)
    assert not loaded.training
    torch.testing.assert_close(actual, expected, atol=0, rtol=0)


def test_saved_files_hold_only_trainable_weights(tmp_path) -> None:
    model = build_model(ModelConfig(backbone="tiny-whisper", method="lora"))
    model.save(tmp_path)
    weights = load_file(tmp_path / WEIGHTS_FILE)
    assert set(weights) == {n for n, p in model.named_parameters() if p.requires_grad}
    assert all("lora_" in name or name.startswith("head.") for name in weights)
    config = json.loads((tmp_path / CONFIG_FILE).read_text())
    assert config["backbone"] == "tiny-whisper"
    assert config["method"] == "lora"
    assert config["labels"] == ["Neutral", "Angry", "Sad", "Happy"]
    assert not list(tmp_path.glob(".*"))  # no temporary files left behind


def test_loading_weights_of_another_method_is_refused(tmp_path) -> None:
    build_model(ModelConfig(backbone="tiny-whisper", method="lora")).save(tmp_path)
    other = build_model(ModelConfig(backbone="tiny-whisper", method="adapter"))
    with pytest.raises(ValueError, match=r"missing .*adapter"):
        other.load_trainable_state_dict(load_file(tmp_path / WEIGHTS_FILE))


def test_loading_a_folder_without_a_model_names_it(tmp_path) -> None:
    with pytest.raises(ModelFileError, match=f"{tmp_path}: not a peft-ser model folder"):
        SERModel.load(tmp_path)


def test_saving_non_finite_weights_is_refused_and_writes_nothing(tmp_path) -> None:
    model = build_model(ModelConfig(backbone="tiny-whisper", method="lora"))
    with torch.no_grad():
        model.head.classifier[2].weight[1, 3] = float("nan")
    message = (
        f"{tmp_path / 'model'}: not saved: weight 'head.classifier.2.weight' has non-finite "
        "values (NaN or inf): 1 of 1024"
    )
    with pytest.raises(WeightsError) as raised:
        model.save(tmp_path / "model")
    assert str(raised.value) == message
    assert not (tmp_path / "model").exists()


def test_registry_names_are_matched_ignoring_case_and_saved_as_registered(tmp_path) -> None:
    model = build_model(ModelConfig(backbone="Tiny-Whisper", method="LoRA"))
    assert (model.config.backbone, model.config.method) == ("tiny-whisper", "lora")
    model.save(tmp_path)
    config = json.loads((tmp_path / CONFIG_FILE).read_text())
    assert (config["backbone"], config["method"]) == ("tiny-whisper", "lora")


def test_a_registry_backbone_takes_its_weights_from_the_folder_given(tmp_path) -> None:
    """``backbone=`` for a model saved on a registry name: the name (and its family facts) is
    kept, the weights come from the folder; without it, the registry's own source is used."""
    from transformers import WhisperModel

    model = build_model(ModelConfig(backbone="tiny-whisper", method="lora"))
    model.save(tmp_path / "model")
    folder_model = WhisperModel(model.backbone.model.config)
    with torch.no_grad():
        for parameter in folder_model.encoder.parameters():
            parameter.normal_(0.0, 0.02)
    folder_model.half().save_pretrained(tmp_path / "backbone")  # stored in float16

    loaded = SERModel.load(tmp_path / "model", backbone=str(tmp_path / "backbone"))
    assert loaded.config.backbone == "tiny-whisper"
    conv = loaded.backbone.model.conv1.weight
    assert conv.dtype == torch.float32
    assert torch.equal(conv, folder_model.encoder.conv1.weight.float())
    default = SERModel.load(tmp_path / "model")
    assert not torch.equal(default.backbone.model.conv1.weight, conv)
    for name, weight in model.trainable_state_dict().items():
        assert torch.equal(dict(loaded.named_parameters())[name], weight), name
