"""Released models: conversion of the authors' checkpoint layout, and the offline-safe cache.

The original-layout checkpoints are built here with the key names and shapes the authors' model
classes save (``model_seq.*``, ``out_layer.*``, ``layer_weights``/``weights``, loralib
``lora_A``/``lora_B`` under ``backbone_model.encoder.layers.N``). No test touches the network.
Loading a whole released model from an original cache folder is in ``test_original_api.py``.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import logging
import urllib.error
from pathlib import Path

import pytest
import torch

from peft_ser import zoo
from peft_ser.config import ModelConfig
from peft_ser.data.manifest import PAPER4
from peft_ser.models.ser_model import build_model
from peft_ser.zoo import (
    ZOO,
    ZooError,
    cache_root,
    cached_path,
    convert_original_checkpoint,
    download,
    load_original_file,
    load_zoo_state,
    pin,
)
from peft_ser.zoo import cache as zoo_cache

RANK = 16
HEAD_DIM = 256
# (hidden size, feed-forward size) of each released model's backbone.
WIDTHS = {
    "whisper-tiny-lora-16-conv": (384, 1536),
    "whisper-base-lora-16-conv": (512, 2048),
    "whisper-small-lora-16-conv": (768, 3072),
    "wavlm-plus-lora-16-conv": (768, 3072),
    "wavlm-large-lora-16-conv": (1024, 4096),
    "mms-lora-16-conv": (1024, 4096),
}
SSL_MODULES = ("feed_forward.intermediate_dense", "feed_forward.output_dense")
State = dict[str, torch.Tensor]


def original_head(width: int, num_states: int, key: str = "layer_weights") -> State:
    return {
        "model_seq.0.weight": torch.randn(HEAD_DIM, width, 1),
        "model_seq.0.bias": torch.randn(HEAD_DIM),
        "model_seq.3.weight": torch.randn(HEAD_DIM, HEAD_DIM, 1),
        "model_seq.3.bias": torch.randn(HEAD_DIM),
        "model_seq.6.weight": torch.randn(HEAD_DIM, HEAD_DIM, 1),
        "model_seq.6.bias": torch.randn(HEAD_DIM),
        key: torch.randn(num_states),
        "out_layer.0.weight": torch.randn(HEAD_DIM, HEAD_DIM),
        "out_layer.0.bias": torch.randn(HEAD_DIM),
        "out_layer.2.weight": torch.randn(len(PAPER4), HEAD_DIM),
        "out_layer.2.bias": torch.randn(len(PAPER4)),
    }


def original_lora(family: str, layers: int, width: int, ffn: int) -> State:
    """loralib matrices as ``lora.lora_state_dict`` saves them: A is [r, in], B is [out, r]."""
    modules = ("fc1", "fc2") if family == "whisper" else SSL_MODULES
    state = {}
    for layer in range(layers):
        for module, (size_in, size_out) in zip(modules, ((width, ffn), (ffn, width)), strict=True):
            prefix = f"backbone_model.encoder.layers.{layer}.{module}"
            state[f"{prefix}.lora_A"] = torch.randn(RANK, size_in)
            state[f"{prefix}.lora_B"] = torch.randn(size_out, RANK)
    return state


def expected_names(family: str, layers: int) -> dict[str, str]:
    """Original key → our key, written out independently of the converter's rules."""
    names = {
        f"model_seq.{i}.{p}": f"head.convs.{i}.{p}" for i in (0, 3, 6) for p in ("weight", "bias")
    }
    names |= {
        f"out_layer.{i}.{p}": f"head.classifier.{i}.{p}" for i in (0, 2) for p in ("weight", "bias")
    }
    modules = ("fc1", "fc2") if family == "whisper" else SSL_MODULES
    ours = "backbone.model.layers" if family == "whisper" else "backbone.model.encoder.layers"
    for layer in range(layers):
        for module in modules:
            for ab in "AB":
                original = f"backbone_model.encoder.layers.{layer}.{module}.lora_{ab}"
                names[original] = f"{ours}.{layer}.{module}.lora_{ab}.default.weight"
    return names


def test_whisper_tiny_checkpoint_files_convert_key_by_key(tmp_path: Path) -> None:
    head = original_head(384, 5)
    lora = original_lora("whisper", 4, 384, 1536)
    torch.save(head, tmp_path / "head.pt")
    torch.save(lora, tmp_path / "lora.pt")
    state = load_original_file(tmp_path / "head.pt") | load_original_file(tmp_path / "lora.pt")

    converted = convert_original_checkpoint(state, "whisper")

    names = expected_names("whisper", 4)
    assert set(converted) == set(names.values()) | {"head.layer_weights"}
    for original, ours in names.items():
        assert torch.equal(converted[ours], state[original]), ours
    assert torch.equal(converted["head.layer_weights"], head["layer_weights"])
    assert converted["backbone.model.layers.3.fc2.lora_A.default.weight"].shape == (RANK, 1536)
    assert converted["backbone.model.layers.3.fc2.lora_B.default.weight"].shape == (384, RANK)


def test_wavlm_checkpoint_with_dataparallel_prefix_and_l_weights() -> None:
    """Older checkpoints: ``module.`` prefixes and ``weights`` over the L transformer layers."""
    head = original_head(768, 12, key="weights")
    lora = original_lora("wavlm", 12, 768, 3072)
    state = {f"module.{key}": value for key, value in (head | lora).items()}

    converted = convert_original_checkpoint(state, "wavlm")

    names = expected_names("wavlm", 12)
    assert set(converted) == set(names.values()) | {"head.layer_weights"}
    for original, ours in names.items():
        assert torch.equal(converted[ours], state[f"module.{original}"]), ours
    mix = torch.softmax(converted["head.layer_weights"], dim=0)
    assert mix.shape == (13,) and mix[0] == 0  # the input embeddings take no part
    torch.testing.assert_close(mix[1:], torch.softmax(head["weights"], dim=0), rtol=1e-6, atol=0)
    assert torch.isfinite(converted["head.layer_weights"]).all()  # loadable: weights are checked


@pytest.mark.parametrize(("layers", "states"), [(3, 4), (3, 3), (7, 8), (7, 7)])
def test_any_depth_converts_and_loads(layers: int, states: int) -> None:
    """L comes from the LoRA weights, so a backbone of any depth needs no num_layers; L+1 layer
    weights pass unchanged and L of them leave the input embeddings out exactly (weight 0)."""
    width, ffn = 32, 64
    head = original_head(width, states)
    head["model_seq.0.weight"] = torch.randn(HEAD_DIM, width, 1)
    converted = convert_original_checkpoint(
        head | original_lora("whisper", layers, width, ffn), "whisper"
    )
    mix = torch.softmax(converted["head.layer_weights"], dim=0)
    assert mix.shape == (layers + 1,)
    original_mix = torch.softmax(head["layer_weights"], dim=0)
    torch.testing.assert_close(
        mix if states == layers + 1 else mix[1:], original_mix, rtol=1e-6, atol=0
    )
    assert states == layers + 1 or mix[0] == 0

    architecture = {
        "d_model": width,
        "encoder_layers": layers,
        "encoder_attention_heads": 2,
        "encoder_ffn_dim": ffn,
        "decoder_layers": 1,
        "decoder_attention_heads": 2,
        "decoder_ffn_dim": ffn,
    }
    from peft_ser.models.backbones.registry import BACKBONES, BackboneSpec

    spec = BackboneSpec("tiny-whisper", "whisper", None, architecture)
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(BACKBONES, "tiny-whisper", spec)
        model = build_model(ModelConfig(backbone="tiny-whisper", method="lora", lora_alpha=1.0))
    model.load_trainable_state_dict(converted)
    assert torch.equal(model.head.layer_weights.detach(), converted["head.layer_weights"])


@pytest.mark.parametrize("name", sorted(ZOO))
def test_converted_names_and_shapes_are_the_models_trainable_weights(name: str) -> None:
    entry = ZOO[name]
    width, ffn = WIDTHS[name]
    state = original_head(width, entry.num_layers + 1) | original_lora(
        entry.family, entry.num_layers, width, ffn
    )
    converted = convert_original_checkpoint(state, entry.family, entry.num_layers)
    with torch.device("meta"):
        model = build_model(entry.config, pretrained=False)
    trainable = {key: tuple(value.shape) for key, value in model.trainable_state_dict().items()}
    assert {key: tuple(value.shape) for key, value in converted.items()} == trainable


def test_lora_scaling_matches_loralib() -> None:
    """alpha 1 with rank 16 is loralib's default scaling 1/16, on a converted LoRA layer."""
    entry = ZOO["whisper-tiny-lora-16-conv"]
    lora = original_lora("whisper", 4, 384, 1536)
    model = build_model(entry.config, pretrained=False).eval()
    converted = convert_original_checkpoint(lora, "whisper")
    assert not set(converted) - set(model.state_dict())
    model.load_state_dict(converted, strict=False)
    fc1 = model.backbone.model.layers[0].fc1
    x = torch.randn(3, 384)
    a = lora["backbone_model.encoder.layers.0.fc1.lora_A"]
    b = lora["backbone_model.encoder.layers.0.fc1.lora_B"]
    loralib = x @ fc1.base_layer.weight.T + fc1.base_layer.bias + (x @ a.T @ b.T) / RANK
    torch.testing.assert_close(fc1(x), loralib)


def test_unknown_keys_are_listed() -> None:
    state = original_lora("whisper", 4, 384, 1536) | {
        "backbone_model.encoder.layers.0.fc1.weight": torch.randn(1536, 384),
        "adapter.down_proj.weight": torch.randn(8, 384),
    }
    with pytest.raises(ZooError, match=r"adapter\.down_proj\.weight.*layers\.0\.fc1\.weight"):
        convert_original_checkpoint(state, "whisper")


def test_lora_of_the_other_family_is_unknown() -> None:
    with pytest.raises(ZooError, match="keys of no known PEFT-SER layout"):
        convert_original_checkpoint(original_lora("whisper", 1, 8, 16), "wavlm")


def test_unused_original_keys_are_dropped() -> None:
    """Whisper's frozen positional copy and MMS's never-applied layer norm are not weights."""
    head = original_head(1024, 25)
    extras = {"layer_norm.weight": torch.ones(1024), "layer_norm.bias": torch.zeros(1024)}
    converted = convert_original_checkpoint(head | extras, "wav2vec2", num_layers=24)
    assert not any("layer_norm" in key for key in converted)
    converted = convert_original_checkpoint({"embed_positions": torch.randn(1500, 384)}, "whisper")
    assert converted == {}


def test_layer_weights_of_unexpected_length_or_unknown_depth_fail() -> None:
    with pytest.raises(ZooError, match="fit neither L=4 nor L\\+1=5") as raised:
        convert_original_checkpoint({"layer_weights": torch.randn(7)}, "whisper", num_layers=4)
    assert "convert_original_checkpoint(head | lora, family)" in str(raised.value)
    with pytest.raises(ZooError, match="pass num_layers=L"):
        convert_original_checkpoint({"layer_weights": torch.randn(5)}, "whisper")
    with pytest.raises(ZooError, match="unknown backbone family"):
        convert_original_checkpoint({}, "conformer")


def test_a_depth_that_contradicts_the_lora_weights_says_what_to_call() -> None:
    state = original_head(512, 7) | original_lora("whisper", 6, 512, 2048)
    with pytest.raises(ZooError) as raised:
        convert_original_checkpoint(state, "whisper", num_layers=4)
    message = str(raised.value)
    assert "at least 6 layers" in message
    assert "convert_original_checkpoint(state, family)" in message
    assert "backbone=DIR" in message and "--backbone DIR" in message


def test_pickled_objects_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"head": argparse.Namespace(command="anything")}, path)
    with pytest.raises(ZooError, match="refused, not a plain tensor state dict"):
        load_original_file(path)


def test_table_describes_the_released_models() -> None:
    assert sorted(ZOO) == sorted(WIDTHS)
    backbones = {entry.backbone for entry in ZOO.values()}
    assert backbones == {
        "whisper-tiny",
        "whisper-base",
        "whisper-small",
        "wavlm-base-plus",
        "wavlm-large",
        "mms-300m",
    }
    for entry in ZOO.values():
        config = entry.config
        assert (config.method, config.lora_rank, config.lora_alpha) == ("lora", 16, 1.0)
        assert config.labels == list(PAPER4)
        classifier, lora = entry.files
        assert lora.filename == classifier.filename.replace(".pt", "_lora.pt")
        assert all(file.url.endswith("dl=1") and file.sha256 is None for file in entry.files)


# --- cache and download --------------------------------------------------------------------------


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every fetch fails as without network; the URLs asked for are recorded."""
    asked: list[str] = []

    def refuse(url: str, destination: Path) -> None:
        asked.append(url)
        destination.write_bytes(b"partial")
        raise urllib.error.URLError("network is unreachable")

    monkeypatch.setattr(zoo_cache, "fetch_url", refuse)
    return asked


def _contents(name: str) -> tuple[State, State]:
    entry = ZOO[name]
    width, ffn = WIDTHS[name]
    return (
        original_head(width, entry.num_layers + 1),
        original_lora(entry.family, entry.num_layers, width, ffn),
    )


def _place(name: str, cache: Path) -> list[Path]:
    """Put original-layout files where peft-ser's cache expects them, as a user would offline."""
    paths = []
    for file, content in zip(ZOO[name].files, _contents(name), strict=True):
        path = cached_path(name, file, cache)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(content, path)
        paths.append(path)
    return paths


def _place_as_the_original_did(name: str, folder: Path) -> list[Path]:
    """``<cache_folder>/<name>.pt`` and ``<name>_lora.pt``: the original package's cache."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{name}.pt", folder / f"{name}_lora.pt"]
    for path, content in zip(paths, _contents(name), strict=True):
        torch.save(content, path)
    return paths


def test_offline_download_says_which_url_to_fetch_and_where(
    tmp_path: Path, offline: list[str]
) -> None:
    name = "whisper-tiny-lora-16-conv"
    expected = cached_path(name, ZOO[name].files[0], tmp_path)
    with pytest.raises(ZooError) as raised:
        download(name, cache_dir=tmp_path)
    message = str(raised.value)
    assert ZOO[name].files[0].url in message
    assert f"place the file at {expected}" in message
    assert f"{tmp_path / name}.pt and {tmp_path / name}_lora.pt" in message
    assert offline == [ZOO[name].files[0].url]
    assert list(expected.parent.iterdir()) == []  # no partial file left behind


def test_files_in_the_cache_are_used_without_network(
    tmp_path: Path,
    offline: list[str],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    name = "wavlm-plus-lora-16-conv"
    monkeypatch.setenv(zoo.CACHE_ENV, str(tmp_path))
    placed = _place(name, tmp_path)
    assert download(name) == placed
    with caplog.at_level(logging.WARNING, logger="peft_ser.zoo"):
        state = load_zoo_state(name)
    assert offline == []
    assert hashlib.sha256(placed[0].read_bytes()).hexdigest() in caplog.text
    assert f"peft-ser zoo pin {name}" in caplog.text
    assert state["head.layer_weights"].shape == (13,)
    assert (
        "backbone.model.encoder.layers.11.feed_forward.output_dense.lora_B.default.weight" in state
    )


def test_the_original_packages_cache_folder_is_used_as_it_is(
    tmp_path: Path, offline: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``<folder>/<name>.pt`` + ``_lora.pt`` are converted once; the pickles are not read again."""
    name = "whisper-base-lora-16-conv"
    head, lora = _place_as_the_original_did(name, tmp_path)
    expected = convert_original_checkpoint(
        load_original_file(head) | load_original_file(lora), "whisper"
    )
    state = load_zoo_state(name, cache_dir=tmp_path)
    assert offline == []
    assert state.keys() == expected.keys()
    assert all(torch.equal(state[key], expected[key]) for key in expected)
    converted = tmp_path / f"{name}.safetensors"
    assert converted.is_file() and not (tmp_path / "zoo").exists()

    def no_pickles(path: object) -> None:
        raise AssertionError(f"read {path} again")

    monkeypatch.setattr("peft_ser.zoo.load.load_original_file", no_pickles)
    again = load_zoo_state(name, cache_dir=tmp_path)
    assert all(torch.equal(again[key], expected[key]) for key in expected)


def test_without_a_cache_folder_the_working_directory_is_searched_as_the_original_did(
    tmp_path: Path, offline: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    name = "whisper-tiny-lora-16-conv"
    monkeypatch.setenv(zoo.CACHE_ENV, str(tmp_path / "peft-ser-cache"))
    _place_as_the_original_did(name, tmp_path / "work")
    monkeypatch.chdir(tmp_path / "work")
    assert load_zoo_state(name)["head.layer_weights"].shape == (5,)
    assert offline == []


def test_unpinned_hash_is_reported_once_per_cache_entry(
    tmp_path: Path, offline: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    name = "mms-lora-16-conv"
    _place_as_the_original_did(name, tmp_path)
    with caplog.at_level(logging.WARNING, logger="peft_ser.zoo"):
        load_zoo_state(name, cache_dir=tmp_path)
        first = caplog.text.count("not pinned")
        load_zoo_state(name, cache_dir=tmp_path)
        load_zoo_state(name, cache_dir=tmp_path)
    assert first == 2  # the head and the LoRA file
    assert caplog.text.count("not pinned") == first


def test_pinned_files_are_enforced_and_a_replaced_file_is_converted_again(
    tmp_path: Path, offline: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    name = "whisper-small-lora-16-conv"
    head, lora = _place_as_the_original_did(name, tmp_path)
    hashes = pin(name, cache_dir=tmp_path)
    assert hashes == {head: zoo.sha256_of(head), lora: zoo.sha256_of(lora)}
    assert (tmp_path / f"{name}.sha256").read_text().splitlines()[0] == (
        f"{hashes[head]}  {head.name}"
    )
    with caplog.at_level(logging.WARNING, logger="peft_ser.zoo"):
        load_zoo_state(name, cache_dir=tmp_path)
    assert "not pinned" not in caplog.text

    replaced = original_head(768, 13)
    torch.save(replaced, head)
    with pytest.raises(ZooError, match=f"does not match the pinned {hashes[head]}"):
        load_zoo_state(name, cache_dir=tmp_path)
    pin(name, cache_dir=tmp_path)  # trust the new file
    state = load_zoo_state(name, cache_dir=tmp_path)
    assert torch.equal(state["head.classifier.2.bias"], replaced["out_layer.2.bias"])


def test_pinned_hash_mismatch_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    name = "whisper-tiny-lora-16-conv"
    entry = ZOO[name]
    pinned = dataclasses.replace(entry.files[0], sha256="0" * 64)
    monkeypatch.setitem(ZOO, name, dataclasses.replace(entry, files=(pinned, entry.files[1])))
    _place(name, tmp_path)
    with pytest.raises(ZooError, match=f"does not match the pinned {'0' * 64}"):
        download(name, cache_dir=tmp_path)
    with pytest.raises(ZooError, match=f"does not match the pinned {'0' * 64}"):
        load_zoo_state(name, cache_dir=tmp_path)
    with pytest.raises(ZooError, match=f"does not match the pinned {'0' * 64}"):
        pin(name, cache_dir=tmp_path)


def test_fetched_file_is_checked_then_renamed_into_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = "mms-lora-16-conv"
    payload = b"released bytes"
    entry = ZOO[name]
    files = tuple(
        dataclasses.replace(file, sha256=hashlib.sha256(payload).hexdigest())
        for file in entry.files
    )
    monkeypatch.setitem(ZOO, name, dataclasses.replace(entry, files=files))
    monkeypatch.setattr(
        zoo_cache, "fetch_url", lambda url, destination: destination.write_bytes(payload)
    )
    paths = download(name, cache_dir=tmp_path)
    assert [path.read_bytes() for path in paths] == [payload, payload]
    assert sorted(path.name for path in paths[0].parent.iterdir()) == sorted(
        f.filename for f in files
    )

    monkeypatch.setattr(
        zoo_cache, "fetch_url", lambda url, destination: destination.write_bytes(b"bad")
    )
    other = tmp_path / "other"
    with pytest.raises(ZooError, match="does not match the pinned"):
        download(name, cache_dir=other)
    assert not any(path.is_file() for path in other.rglob("*"))


def test_cache_root_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(zoo.CACHE_ENV, raising=False)
    assert cache_root() == Path("~/.cache/peft-ser").expanduser()
    monkeypatch.setenv(zoo.CACHE_ENV, str(tmp_path / "env"))
    assert cache_root() == tmp_path / "env"
    assert cache_root(tmp_path / "explicit") == tmp_path / "explicit"


def test_unknown_model_name_lists_the_known_ones() -> None:
    with pytest.raises(ZooError, match="whisper-tiny-lora-16-conv"):
        download("whisper-huge-lora")
    with pytest.raises(
        ZooError, match=r"'wavlm-plus-lora-16' \(did you mean 'wavlm-plus-lora-16-conv'"
    ):
        download("wavlm-plus-lora-16")
