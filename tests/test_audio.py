"""Audio decoding, down-mixing, resampling, probing, errors and the decoded-audio caches."""

from __future__ import annotations

import logging
import os

import numpy as np
import pytest
import soundfile as sf
from _tones import tone

from peft_ser.data.audio import AudioError, load_audio, probe
from peft_ser.data.audio_cache import AudioCache


def write(path, rate=16000, channels=1, seconds=0.25, silent=False, fmt=None):
    mono = tone(seconds, 440, rate=rate, amplitude=0.5, dtype=np.float64)
    mono = np.zeros_like(mono) if silent else mono
    data = np.stack([mono, -mono * 0.5][:channels], axis=1)
    sf.write(path, data, rate, format=fmt)
    return path


@pytest.mark.parametrize("suffix", ["wav", "flac", "ogg"])
def test_formats_decode_to_16k_mono(tmp_path, suffix):
    samples = load_audio(write(tmp_path / f"a.{suffix}", rate=48000, channels=2))
    assert samples.dtype == np.float32 and samples.shape == (4000,)


def test_down_mix_averages_channels(tmp_path):
    samples = load_audio(write(tmp_path / "s.wav", channels=2))
    t = np.arange(4000) / 16000
    np.testing.assert_allclose(samples, 0.125 * np.sin(2 * np.pi * 440 * t), atol=1e-3)


def test_resampling_keeps_the_tone(tmp_path):
    samples = load_audio(write(tmp_path / "r.wav", rate=44100), sample_rate=16000)
    spectrum = np.abs(np.fft.rfft(samples))
    assert np.argmax(spectrum) * 16000 / len(samples) == pytest.approx(440, abs=8)


@pytest.mark.parametrize(
    ("content", "problem"),
    [(None, "does not exist"), (b"", "empty"), (b"RIFF" + b"\0" * 40, "unreadable")],
)
def test_errors_name_file_and_problem(tmp_path, content, problem):
    path = tmp_path / "bad.wav"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(AudioError, match=f"bad.wav: .*{problem}"):
        load_audio(path)


def test_probe_reads_header_and_silence(tmp_path):
    info = probe(write(tmp_path / "p.wav", rate=44100, channels=2, seconds=0.5))
    assert (info.sample_rate, info.channels, info.frames, info.silent) == (44100, 2, 22050, None)
    assert info.duration == 0.5
    assert probe(tmp_path / "p.wav", check_silence=True).silent is False
    assert probe(write(tmp_path / "z.wav", silent=True), check_silence=True).silent is True


def test_zero_frame_file_is_empty(tmp_path):
    sf.write(tmp_path / "e.wav", np.zeros((0, 1)), 16000)
    with pytest.raises(AudioError) as error:
        probe(tmp_path / "e.wav")
    assert error.value.kind == "empty"


def test_cache_reuses_and_redoes_changed_sources(tmp_path):
    source = write(tmp_path / "c.wav", rate=48000)
    cache = AudioCache(tmp_path / "cache")
    assert cache.ensure(source) is True
    assert cache.ensure(source) is False
    np.testing.assert_array_equal(cache.load(cache.entry(source)), load_audio(source))
    write(source, rate=48000, seconds=0.5)
    os.utime(source, ns=(1, 1))
    assert cache.ensure(source) is True
    assert cache.load(cache.entry(source)).shape == (8000,)
    assert AudioCache(tmp_path / "cache", 8000).entry(source) != cache.entry(source)
    assert not list((tmp_path / "cache").rglob("*.tmp"))


@pytest.mark.parametrize(
    "damage",
    [
        lambda data: b"",
        lambda data: data[:60],  # inside the header
        lambda data: data[:-4],  # one sample short
        lambda data: data.replace(b"<f4", b"<f8"),  # other numbers in the right length
    ],
    ids=["empty", "header", "samples", "dtype"],
)
def test_a_damaged_audio_entry_is_named_deleted_and_decoded_again(tmp_path, caplog, damage):
    source = write(tmp_path / "c.wav", rate=48000)
    cache = AudioCache(tmp_path / "cache")
    cache.ensure(source)
    entry = cache.entry(source)
    entry.write_bytes(damage(entry.read_bytes()))
    with caplog.at_level(logging.WARNING, logger="peft_ser"):
        assert cache.load(entry) is None
    assert f"audio cache: {entry} is damaged" in caplog.text and not entry.exists()
    assert cache.ensure(source) is True
    np.testing.assert_array_equal(cache.load(entry), load_audio(source))
