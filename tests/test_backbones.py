"""Backbones: every family gives the same answer for a clip alone and inside a padded batch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import WhisperFeatureExtractor

from peft_ser.backbones import BACKBONES, build_backbone
from peft_ser.backbones.whisper import LogMel, mel_frame_lengths
from peft_ser.config import ModelConfig
from peft_ser.model import build_model

TINY = ["tiny-whisper", "tiny-wav2vec2", "tiny-hubert", "tiny-wavlm", "tiny-wav2vec2-large"]
LENGTHS = [16_000, 11_000, 4_321]


def _batch(lengths: list[int], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random clips right-padded with zeros into one batch."""
    generator = torch.Generator().manual_seed(seed)
    waveforms = torch.zeros(len(lengths), max(lengths))
    for row, length in enumerate(lengths):
        waveforms[row, :length] = 0.1 * torch.randn(length, generator=generator)
    return waveforms, torch.tensor(lengths)


@pytest.mark.parametrize("backbone", TINY)
@pytest.mark.parametrize("method", ["lora", "embedding_prompt", "adapter"])
def test_padding_invariance(backbone: str, method: str) -> None:
    torch.manual_seed(0)
    model = build_model(ModelConfig(backbone=backbone, method=method)).eval()
    waveforms, lengths = _batch(LENGTHS)
    with torch.no_grad():
        batched = model(waveforms, lengths)
        alone = torch.cat([model(waveforms[i : i + 1, :n]) for i, n in enumerate(LENGTHS)])
    torch.testing.assert_close(batched, alone, atol=1e-4, rtol=0)


def test_group_norm_front_end_would_break_invariance_without_per_clip_statistics() -> None:
    """The padded-batch group norm of transformers differs; ours matches the clip alone."""
    torch.manual_seed(0)
    backbone = build_backbone("tiny-wav2vec2").eval()
    waveforms, lengths = _batch([16_000, 4_000])
    with torch.no_grad():
        reference = backbone.model.feature_extractor(waveforms[1:, :4_000])
        naive = backbone.model.feature_extractor(waveforms)[1:, :, : reference.shape[2]]
        ours, frames = backbone._conv_features(waveforms, lengths)
    assert int(frames[1]) == reference.shape[2]
    torch.testing.assert_close(ours[1:, :, : reference.shape[2]], reference, atol=1e-5, rtol=0)
    assert (naive - reference).abs().max() > 1e-3


@pytest.mark.parametrize("backbone", TINY)
def test_hidden_states_cover_embeddings_and_every_layer(backbone: str) -> None:
    model = build_backbone(backbone).eval()
    waveforms, lengths = _batch(LENGTHS)
    with torch.no_grad():
        output = model(waveforms, lengths)
    assert output.hidden_states.shape[0] == model.num_layers + 1
    assert output.hidden_states.shape[1] == len(LENGTHS)
    assert output.hidden_states.shape[3] == model.hidden_size
    assert int(output.frame_lengths.max()) == output.hidden_states.shape[2]
    assert output.frame_lengths.tolist() == sorted(output.frame_lengths.tolist(), reverse=True)


def test_whisper_log_mel_agrees_with_transformers_feature_extractor() -> None:
    """Our torch front end equals transformers' on the clip's frames (peer agreement)."""
    rng = np.random.default_rng(0)
    seconds = 2.5
    t = np.arange(int(16_000 * seconds)) / 16_000
    clip = (0.3 * np.sin(2 * np.pi * 220 * t) + 0.05 * rng.standard_normal(t.size)).astype(
        np.float32
    )
    reference = WhisperFeatureExtractor(feature_size=80)(
        clip, sampling_rate=16_000, return_tensors="np"
    ).input_features[0]
    lengths = torch.tensor([clip.size])
    ours = LogMel(80)(torch.from_numpy(clip)[None], mel_frame_lengths(lengths))[0].numpy()
    frames = ours.shape[1]
    assert frames == clip.size // 160
    np.testing.assert_allclose(ours, reference[:, :frames], atol=2e-4)


def test_whisper_pad30_runs_the_full_window() -> None:
    model = build_backbone("tiny-whisper", whisper_window="pad30").eval()
    waveforms, lengths = _batch([8_000, 3_000])
    with torch.no_grad():
        output = model(waveforms, lengths)
        alone = model(waveforms[1:, :3_000], lengths[1:])
    assert output.hidden_states.shape[2] == 1500
    assert output.frame_lengths.tolist() == [25, 9]
    torch.testing.assert_close(output.hidden_states[:, 1:], alone.hidden_states, atol=1e-5, rtol=0)


def test_whisper_rejects_clips_over_30_seconds_with_advice() -> None:
    model = build_backbone("tiny-whisper").eval()
    with pytest.raises(ValueError, match=r"at most 30 s.*windows"):
        model(torch.zeros(1, 16_000 * 31), torch.tensor([16_000 * 31]))


def test_registry_names_every_paper_backbone() -> None:
    paper = {
        "wav2vec2-base",
        "wavlm-base-plus",
        "wavlm-large",
        "hubert-base",
        "hubert-large",
        "mms-300m",
        "whisper-tiny",
        "whisper-base",
        "whisper-small",
        "whisper-medium",
        "whisper-large-v3",
    }
    assert paper <= set(BACKBONES)
    assert all(
        f"tiny-{family}" in BACKBONES for family in ["whisper", "wav2vec2", "hubert", "wavlm"]
    )


def test_group_norm_checkpoints_are_the_base_models() -> None:
    """The front-end normalisation each named checkpoint really uses (see DESIGN facts)."""
    norms = {
        name: spec.config() for name, spec in BACKBONES.items() if spec.model_type != "whisper"
    }
    for name in ["wav2vec2-base", "hubert-base", "wavlm-base-plus"]:
        assert norms[name].feat_extract_norm == "group"
        assert not norms[name].do_stable_layer_norm
    for name in ["wavlm-large", "hubert-large", "mms-300m"]:
        assert norms[name].feat_extract_norm == "layer"
        assert norms[name].do_stable_layer_norm


def test_unknown_local_source_is_a_clear_error(tmp_path) -> None:
    with pytest.raises((OSError, ValueError), match=str(tmp_path.name)):
        build_backbone(str(tmp_path / "missing-model"))


@pytest.mark.parametrize("name", ["tiny-whisper", "tiny-wavlm", "tiny-wav2vec2-large"])
def test_local_directory_loads_through_the_hub_code_path(tmp_path, name: str) -> None:
    """A directory saved by transformers (as a hub download would be) gives the same states."""
    from transformers import Wav2Vec2FeatureExtractor, WhisperModel

    source = build_backbone(name).eval()
    spec = BACKBONES[name]
    if spec.model_type == "whisper":
        full = WhisperModel(source.model.config)
        full.encoder.load_state_dict(source.model.state_dict())
        full.save_pretrained(tmp_path)
    else:
        source.model.save_pretrained(tmp_path)
        Wav2Vec2FeatureExtractor(do_normalize=spec.normalize).save_pretrained(tmp_path)
    loaded = build_backbone(str(tmp_path)).eval()
    assert type(loaded) is type(source)
    assert getattr(loaded, "normalize", False) == spec.normalize
    waveforms, lengths = _batch([9_000, 5_000])
    with torch.no_grad():
        expected = source(waveforms, lengths).hidden_states
        actual = loaded(waveforms, lengths).hidden_states
    torch.testing.assert_close(actual, expected, atol=1e-5, rtol=0)
