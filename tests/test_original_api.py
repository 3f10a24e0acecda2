"""Drop-in for users of the original PEFT-SER package: its calls, its cache folder, its numbers.

An "original cache folder" is built here as the original package leaves one: the released files
as ``<folder>/<name>.pt`` and ``<name>_lora.pt`` (key layout of the authors' classes) and the
backbone as a Hugging Face hub-cache snapshot (``from_pretrained(hub_id, cache_dir=folder)``).
The backbone is a small random Whisper or WavLM under the real hub id, so the tests stay fast.
The network is blocked in every test. The comparison with the original code itself, in its own
environment, is ``bench/compare_original.py``; here the original forward pass is rebuilt from
transformers' own modules, as the authors' classes ran them.
"""

from __future__ import annotations

import re
import socket
from pathlib import Path

import huggingface_hub.constants
import numpy as np
import pytest
import soundfile as sf
import torch
from _tones import tone
from transformers import (
    WavLMConfig,
    WavLMModel,
    WhisperConfig,
    WhisperFeatureExtractor,
    WhisperModel,
)
from typer.testing import CliRunner

import peft_ser
from peft_ser.cli import app
from peft_ser.inference.predict import InvalidRequestError, resolve_dtype
from peft_ser.models.backbones import BackboneError
from peft_ser.models.ser_model import ModelFileError, SERModel, build_model
from peft_ser.zoo import ZOO, ZooError

WHISPER = "whisper-base-lora-16-conv"
WAVLM = "wavlm-plus-lora-16-conv"
WIDTH, FFN, LAYERS, RANK, HEAD = 32, 64, 2, 16, 256
MIGRATING = Path(__file__).parents[1] / "docs" / "migrating.md"

README_LOADING = """\
# whisper style loading
import torch
import peft_ser
model = peft_ser.load_model("whisper-base-lora-16-conv")

data = torch.zeros([1, 16000])
output = model(data)
logits = torch.softmax(output, dim=1)
"""
"""The original README's model-loading block, verbatim."""

ISSUE_CALL = """\
import torch
import peft_ser
model = peft_ser.load_model("whisper-base-lora-16-conv", cache_folder=CACHE)
x = torch.randn(2, 16000) * 0.1
lengths = torch.tensor([16000, 12000])
output = model(x, length=lengths)
"""


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any connection attempt fails, as on a machine without network; the hub client is told
    it is offline too, so it fails at once instead of retrying for most of a minute."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise OSError("network is unreachable (blocked by the test)")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


def _whisper_backbone(seed: int = 0) -> WhisperModel:
    torch.manual_seed(seed)
    config = WhisperConfig(
        d_model=WIDTH,
        encoder_layers=LAYERS,
        encoder_attention_heads=2,
        encoder_ffn_dim=FFN,
        decoder_layers=1,
        decoder_attention_heads=2,
        decoder_ffn_dim=FFN,
        num_mel_bins=80,
    )
    return WhisperModel(config).eval()


def _wavlm_backbone() -> WavLMModel:
    torch.manual_seed(0)
    config = WavLMConfig(
        hidden_size=WIDTH,
        num_hidden_layers=LAYERS,
        num_attention_heads=2,
        intermediate_size=FFN,
        conv_dim=(16, 16, 16),
        conv_kernel=(10, 3, 3),
        conv_stride=(5, 2, 2),
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
        num_buckets=16,
    )
    return WavLMModel(config).eval()


def save_snapshot(folder: Path, hub_id: str, model: torch.nn.Module) -> Path:
    """``models--org--name/snapshots/<commit>`` and ``refs/main``, as the hub cache holds them."""
    repo = folder / f"models--{hub_id.replace('/', '--')}"
    commit = "0123456789abcdef0123456789abcdef01234567"
    snapshot = repo / "snapshots" / commit
    model.save_pretrained(snapshot)  # type: ignore[operator]
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    return snapshot


def original_files(family: str, seed: int = 1) -> tuple[dict, dict]:
    """A head and loralib matrices as the authors' classes save them, with random values
    (scaled so that logits are of order 1, as a trained model's are)."""
    generator = torch.Generator().manual_seed(seed)

    def rand(*shape: int) -> torch.Tensor:
        return 0.1 * torch.randn(*shape, generator=generator)

    head = {
        "model_seq.0.weight": rand(HEAD, WIDTH, 1),
        "model_seq.0.bias": rand(HEAD),
        "model_seq.3.weight": rand(HEAD, HEAD, 1),
        "model_seq.3.bias": rand(HEAD),
        "model_seq.6.weight": rand(HEAD, HEAD, 1),
        "model_seq.6.bias": rand(HEAD),
        "layer_weights": rand(LAYERS + 1),
        "out_layer.0.weight": rand(HEAD, HEAD),
        "out_layer.0.bias": rand(HEAD),
        "out_layer.2.weight": rand(4, HEAD),
        "out_layer.2.bias": rand(4),
    }
    modules = (
        ("fc1", "fc2")
        if family == "whisper"
        else ("feed_forward.intermediate_dense", "feed_forward.output_dense")
    )
    lora = {}
    for layer in range(LAYERS):
        for module, (size_in, size_out) in zip(modules, ((WIDTH, FFN), (FFN, WIDTH)), strict=True):
            prefix = f"backbone_model.encoder.layers.{layer}.{module}"
            lora[f"{prefix}.lora_A"] = rand(RANK, size_in)
            lora[f"{prefix}.lora_B"] = rand(size_out, RANK)
    return head, lora


def original_cache(
    folder: Path, name: str = WHISPER, backbone: torch.nn.Module | None = None
) -> tuple[dict, dict]:
    """Fill ``folder`` as the original package's ``load_model(name, cache_folder=folder)`` did."""
    whisper = name.startswith("whisper")
    head, lora = original_files("whisper" if whisper else "wavlm")
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(head, folder / f"{name}.pt")
    torch.save(lora, folder / f"{name}_lora.pt")
    if backbone is None:
        backbone = _whisper_backbone() if whisper else _wavlm_backbone()
    hub_id = ZOO[name].hub_id
    save_snapshot(folder, hub_id, backbone)
    return head, lora


def _merged_lora(linear: torch.nn.Linear, lora: dict, key: str) -> None:
    """What loralib does in eval mode: W += B @ A * (alpha / r), with alpha 1."""
    with torch.no_grad():
        linear.weight += lora[f"{key}.lora_B"] @ lora[f"{key}.lora_A"] / RANK


def _original_head(hidden_states: torch.Tensor, head: dict) -> torch.Tensor:
    """The authors' head on ``[L+1, 1, F, D]`` hidden states of one clip (mean over frames)."""
    weights = torch.softmax(head["layer_weights"], dim=-1)
    features = (weights[:, None, None, None] * hidden_states).sum(0).transpose(1, 2)
    for index in (0, 3, 6):
        weight, bias = head[f"model_seq.{index}.weight"], head[f"model_seq.{index}.bias"]
        features = torch.nn.functional.conv1d(features, weight, bias)
        features = features.relu() if index < 6 else features
    pooled = features.transpose(1, 2).mean(dim=1)
    hidden = torch.relu(pooled @ head["out_layer.0.weight"].T + head["out_layer.0.bias"])
    return hidden @ head["out_layer.2.weight"].T + head["out_layer.2.bias"]


def original_whisper_logits(
    backbone: WhisperModel, head: dict, lora: dict, clip: np.ndarray
) -> torch.Tensor:
    """The original WhisperSER forward on one clip, from transformers' modules: the feature
    extractor on the clip alone (``max_length`` = its length), positions cut to its frames."""
    encoder = backbone.get_encoder()
    for layer in range(LAYERS):
        for module in ("fc1", "fc2"):
            key = f"backbone_model.encoder.layers.{layer}.{module}"
            _merged_lora(getattr(encoder.layers[layer], module), lora, key)
    features = WhisperFeatureExtractor(feature_size=80)(
        clip, sampling_rate=16_000, max_length=clip.size, return_tensors="pt"
    ).input_features
    with torch.no_grad():
        hidden = torch.nn.functional.gelu(encoder.conv1(features))
        hidden = torch.nn.functional.gelu(encoder.conv2(hidden)).transpose(1, 2)
        hidden = hidden + encoder.embed_positions.weight[: hidden.shape[1]]
        states = [hidden]
        for layer in encoder.layers:
            output = layer(hidden, attention_mask=None)
            hidden = output[0] if isinstance(output, tuple) else output
            states.append(hidden)
        states[-1] = encoder.layer_norm(hidden)
        return _original_head(torch.stack(states), head)


def original_wavlm_logits(
    backbone: WavLMModel, head: dict, lora: dict, clip: np.ndarray
) -> torch.Tensor:
    """The original WavLMPlusSER forward on one clip: raw samples, every hidden state."""
    for layer in range(LAYERS):
        feed_forward = backbone.encoder.layers[layer].feed_forward
        for module in ("intermediate_dense", "output_dense"):
            key = f"backbone_model.encoder.layers.{layer}.feed_forward.{module}"
            _merged_lora(getattr(feed_forward, module), lora, key)
    with torch.no_grad():
        output = backbone(torch.from_numpy(clip)[None], output_hidden_states=True)
        return _original_head(torch.stack(output.hidden_states), head)


def clip_of(seconds: float, seed: int = 0) -> np.ndarray:
    wave = tone(seconds, 190, dtype=np.float64) * tone(seconds, 3, amplitude=1.0, dtype=np.float64)
    noise = np.random.default_rng(seed).standard_normal(wave.size)
    return (wave + 0.02 * noise).astype(np.float32)


# --- the original's calls -------------------------------------------------------------------


def test_the_original_readme_runs_unchanged_on_an_original_cache_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The original's default cache folder is the working directory: run from there, offline."""
    monkeypatch.setenv("PEFT_SER_CACHE", str(tmp_path / "empty-peft-ser-cache"))
    original_cache(tmp_path / "ser")
    monkeypatch.chdir(tmp_path / "ser")
    scope: dict = {}
    exec(README_LOADING, scope)
    logits = scope["logits"]
    assert logits.shape == (1, 4)
    torch.testing.assert_close(logits.sum(dim=1), torch.ones(1))
    assert not scope["model"].training
    assert README_LOADING in MIGRATING.read_text(encoding="utf-8")


def test_load_model_with_cache_folder_and_the_length_keyword(tmp_path: Path) -> None:
    original_cache(tmp_path / "ser")
    scope: dict = {"CACHE": str(tmp_path / "ser")}
    exec(ISSUE_CALL, scope)
    model, x, lengths = scope["model"], scope["x"], scope["lengths"]
    with torch.no_grad():
        torch.testing.assert_close(scope["output"], model(x, lengths), atol=0, rtol=0)
        alone = model(x[1, :12_000])  # a [T] clip
    assert scope["output"].shape == (2, 4)
    torch.testing.assert_close(scope["output"][1:], alone, atol=1e-5, rtol=0)
    assert peft_ser.EMOTIONS == {0: "Neutral", 1: "Angry", 2: "Sad", 3: "Happy"}
    assert model.labels == list(peft_ser.EMOTIONS.values())
    with pytest.raises(TypeError, match="not both"):
        model(x, lengths, length=lengths)
    assert re.search(r"cache_folder=", MIGRATING.read_text(encoding="utf-8"))


def test_a_cache_folder_given_as_the_second_argument_is_explained(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequestError, match="cache_folder="):
        peft_ser.load_model(WHISPER, str(tmp_path))


# --- the original's numbers -----------------------------------------------------------------


@pytest.mark.parametrize("seconds", [0.3, 1.0, 2.0013, 3.7])
def test_whisper_logits_equal_the_original_forward(tmp_path: Path, seconds: float) -> None:
    """Measured: within 4e-7. Zeros after the clip instead of its reflection, as before this
    front end, put 0.3 s (the last frame's share is largest) off by 4e-5."""
    head, lora = original_cache(tmp_path)
    model = peft_ser.load_model(WHISPER, "cpu", cache_folder=tmp_path)
    clip = clip_of(seconds)
    with torch.no_grad():
        ours = model(torch.from_numpy(clip)[None])
    expected = original_whisper_logits(_whisper_backbone(), head, lora, clip)
    torch.testing.assert_close(ours, expected, atol=2e-6, rtol=0)


def test_wavlm_logits_equal_the_original_forward(tmp_path: Path) -> None:
    head, lora = original_cache(tmp_path, WAVLM)
    model = peft_ser.load_model(WAVLM, "cpu", cache_folder=tmp_path)
    clip = clip_of(2.3)
    with torch.no_grad():
        ours = model(torch.from_numpy(clip)[None])
    expected = original_wavlm_logits(_wavlm_backbone(), head, lora, clip)
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=0)


# --- where the backbone is, and in which dtype ----------------------------------------------


def test_a_backbone_folder_can_be_given_for_any_zoo_name(tmp_path: Path) -> None:
    original_cache(tmp_path / "ser")
    mirror = tmp_path / "mirror" / "whisper-base"
    _whisper_backbone(seed=5).save_pretrained(mirror)
    default = peft_ser.load_model(WHISPER, "cpu", cache_folder=tmp_path / "ser")
    moved = peft_ser.load_model(WHISPER, "cpu", cache_folder=tmp_path / "ser", backbone=mirror)
    expected = _whisper_backbone(seed=5).get_encoder().conv1.weight
    assert torch.equal(moved.backbone.model.conv1.weight, expected)
    assert not torch.equal(default.backbone.model.conv1.weight, expected)


def test_without_any_backbone_offline_the_error_says_how_to_give_one(tmp_path: Path) -> None:
    head, lora = original_files("whisper")
    torch.save(head, tmp_path / f"{WHISPER}.pt")
    torch.save(lora, tmp_path / f"{WHISPER}_lora.pt")
    with pytest.raises(BackboneError, match=r"backbone=DIR.*--backbone DIR"):
        peft_ser.load_model(WHISPER, "cpu", cache_folder=tmp_path)


def test_a_backbone_of_another_family_is_refused(tmp_path: Path) -> None:
    original_cache(tmp_path / "ser")
    other = tmp_path / "wavlm"
    _wavlm_backbone().save_pretrained(other)
    with pytest.raises(BackboneError, match="'wavlm' checkpoint"):
        peft_ser.load_model(WHISPER, "cpu", cache_folder=tmp_path / "ser", backbone=other)


def test_weights_for_another_depth_name_the_backbone_to_give(tmp_path: Path) -> None:
    original_cache(tmp_path / "ser")
    deeper = _whisper_backbone()
    deeper.config.encoder_layers = 3
    three_layers = tmp_path / "three-layers"
    WhisperModel(deeper.config).save_pretrained(three_layers)
    with pytest.raises(ZooError, match=r"openai/whisper-base.*backbone=DIR"):
        peft_ser.load_model(WHISPER, "cpu", cache_folder=tmp_path / "ser", backbone=three_layers)


def test_a_float16_backbone_loads_in_float32_and_trained_weights_are_not_rounded(
    tmp_path: Path,
) -> None:
    head, lora = original_cache(tmp_path, backbone=_whisper_backbone().half())
    model = peft_ser.load_model(WHISPER, "cpu", cache_folder=tmp_path)
    assert {parameter.dtype for parameter in model.parameters()} == {torch.float32}
    lora_a = model.backbone.model.layers[1].fc2.lora_A.default.weight
    assert torch.equal(lora_a, lora["backbone_model.encoder.layers.1.fc2.lora_A"])
    assert not torch.equal(lora_a, lora_a.half().float())  # float16 would have rounded it
    assert torch.equal(model.head.convs[3].weight, head["model_seq.3.weight"])
    with torch.no_grad():
        assert torch.isfinite(model(torch.from_numpy(clip_of(1.0)))).all()


@pytest.mark.parametrize("dtype", ["bfloat16", torch.float16])
def test_the_compute_dtype_asked_for_covers_backbone_peft_and_head(
    tmp_path: Path, dtype: str | torch.dtype
) -> None:
    original_cache(tmp_path)
    model = peft_ser.load_model(WHISPER, "cpu", cache_folder=tmp_path, dtype=dtype)
    wanted = resolve_dtype(dtype)
    assert {parameter.dtype for parameter in model.parameters()} == {wanted}
    with torch.no_grad():
        logits = model(torch.from_numpy(clip_of(1.0)))
    assert logits.dtype == wanted and torch.isfinite(logits).all()
    with pytest.raises(InvalidRequestError, match="did you mean 'float16'"):
        peft_ser.load_model(WHISPER, "cpu", cache_folder=tmp_path, dtype="float61")


def test_a_saved_model_whose_backbone_folder_moved(tmp_path: Path) -> None:
    original_cache(tmp_path / "ser")
    backbone_dir = tmp_path / "backbones" / "whisper"
    _whisper_backbone(seed=3).save_pretrained(backbone_dir)
    config = ZOO[WHISPER].config.model_copy(update={"backbone": str(backbone_dir)})
    build_model(config).save(tmp_path / "model")
    clip = torch.from_numpy(clip_of(1.5))
    with torch.no_grad():
        expected = SERModel.load(tmp_path / "model")(clip)
    backbone_dir.rename(tmp_path / "moved")
    with pytest.raises(ModelFileError, match="no such directory"):
        peft_ser.load_model(tmp_path / "model", "cpu")
    loaded = peft_ser.load_model(tmp_path / "model", "cpu", backbone=tmp_path / "moved")
    with torch.no_grad():
        torch.testing.assert_close(loaded(clip), expected, atol=0, rtol=0)
    assert loaded.config.backbone == str(tmp_path / "moved")


# --- the command line -----------------------------------------------------------------------


def test_cli_predict_with_a_zoo_name_a_cache_folder_and_a_backbone(tmp_path: Path) -> None:
    head, lora = original_files("whisper")
    cache = tmp_path / "ser"
    cache.mkdir()
    torch.save(head, cache / f"{WHISPER}.pt")
    torch.save(lora, cache / f"{WHISPER}_lora.pt")
    _whisper_backbone().save_pretrained(tmp_path / "whisper-base")
    sf.write(tmp_path / "clip.wav", clip_of(1.2), 16_000)
    runner = CliRunner()
    arguments = ["predict", str(tmp_path / "clip.wav"), "--model", WHISPER, "--format", "csv"]
    arguments += ["--cache-folder", str(cache), "--device", "cpu"]
    result = runner.invoke(app, [*arguments, "--backbone", str(tmp_path / "whisper-base")])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == "source,window,start,end,label,Neutral,Angry,Sad,Happy"
    missing = runner.invoke(app, arguments)
    assert missing.exit_code == 2
    assert "--backbone DIR" in missing.stderr and "Traceback" not in missing.output


def test_cli_zoo_pin_prints_and_records_the_hashes(tmp_path: Path) -> None:
    original_cache(tmp_path)
    result = CliRunner().invoke(app, ["zoo", "pin", WHISPER, "--cache-folder", str(tmp_path)])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert [line.split("  ")[1] for line in lines] == [
        str(tmp_path / f"{WHISPER}.pt"),
        str(tmp_path / f"{WHISPER}_lora.pt"),
    ]
    recorded = (tmp_path / f"{WHISPER}.sha256").read_text().splitlines()
    assert [line.split("  ")[0] for line in recorded] == [line.split("  ")[0] for line in lines]
