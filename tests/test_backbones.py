"""Backbones: every family gives the same answer for a clip alone and inside a padded batch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _tones import RATE, tone
from transformers import WhisperFeatureExtractor

from peft_ser.config import ModelConfig
from peft_ser.models.backbones import BACKBONES, build_backbone
from peft_ser.models.backbones.whisper import LogMel, reflected_index
from peft_ser.models.ser_model import build_model

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


def _voice(num_samples: int, seed: int = 0) -> np.ndarray:
    return tone(num_samples / RATE, noise=0.05, rng=seed)


@pytest.mark.parametrize("num_samples", [40_000, 40_037, 16_159, 12_345, 401])
def test_whisper_log_mel_of_a_lone_clip_equals_the_feature_extractor_on_every_frame(
    num_samples: int,
) -> None:
    """The clip given alone, as the original PEFT-SER passed it (``max_length`` = the clip): a
    centred STFT reflects the clip's own samples at its end, and so does ours, last frame too.

    transformers' torch path is float32 like ours (equal to float precision); its numpy path,
    the one transformers 4.30 (the original's) had, computes the STFT in float64.
    """
    clip = _voice(num_samples)
    extractor = WhisperFeatureExtractor(feature_size=80)
    reference = extractor(
        clip, sampling_rate=16_000, max_length=clip.size, return_tensors="np"
    ).input_features[0]
    in_float64 = extractor._np_extract_fbank_features(clip[None], "cpu")[0]
    ours = LogMel(80)(torch.from_numpy(clip)[None], torch.tensor([clip.size]))[0].numpy()
    assert ours.shape == reference.shape == (80, clip.size // 160)
    np.testing.assert_allclose(ours, reference, atol=1e-6, rtol=0)
    np.testing.assert_allclose(ours, in_float64, atol=2e-5, rtol=0)


def test_whisper_log_mel_reflects_each_clip_at_its_own_end_in_a_batch() -> None:
    """Batched behind a longer clip, a clip's last frames still mirror its own samples: they are
    those of the clip alone, not of the clip followed by zeros (which differ clearly)."""
    clips = [_voice(24_000, seed=1), _voice(16_000, seed=2), _voice(8_000, seed=3)]
    waveforms, lengths = torch.zeros(3, 24_000), torch.tensor([clip.size for clip in clips])
    for row, clip in enumerate(clips):
        waveforms[row, : clip.size] = torch.from_numpy(clip)
    log_mel = LogMel(80)
    batched = log_mel(waveforms, lengths)
    for row, clip in enumerate(clips):
        alone = log_mel(torch.from_numpy(clip)[None], lengths[row : row + 1])[0]
        frames = alone.shape[1]
        torch.testing.assert_close(batched[row, :, :frames], alone, atol=1e-6, rtol=0)
        assert not batched[row, :, frames:].any()
    followed_by_zeros = log_mel(waveforms[1:2, :16_500], torch.tensor([16_500]))[0, :, :100]
    assert (followed_by_zeros[:, -1] - batched[1, :, 99]).abs().max() > 1e-3


@pytest.mark.parametrize("num_samples", [1, 2, 3, 7])
def test_reflection_matches_numpy_reflect_padding_even_past_the_clip(num_samples: int) -> None:
    pad = 3 * num_samples + 2
    clip = np.arange(num_samples)
    positions = torch.arange(-pad, num_samples + pad)
    index = reflected_index(positions, torch.tensor(num_samples))
    np.testing.assert_array_equal(clip[index.numpy()], np.pad(clip, pad, mode="reflect"))


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
