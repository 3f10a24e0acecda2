"""Inference: loading, batching without changing answers, input conversion, windows, the CLI.

Models are tiny random-weight ones. Their classifier is sharpened so probabilities move clearly
with the input; otherwise every answer sits near 0.25 and tolerances would prove nothing.
"""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import _tones
import numpy as np
import pytest
import soundfile as sf
import soxr
import torch
from _models import build_tiny_model
from typer.testing import CliRunner

import peft_ser
from peft_ser.cli import app
from peft_ser.data.audio import AudioError
from peft_ser.inference.files import find_audio_inputs, format_predictions
from peft_ser.inference.predict import (
    Failure,
    InvalidRequestError,
    Prediction,
    WindowPrediction,
    iter_predictions,
    load_model,
    predict,
)
from peft_ser.models.ser_model import ModelFileError, SERModel

RATE = 16000


def tiny_model(backbone: str) -> SERModel:
    return build_tiny_model(backbone, sharpen=30)


def tone(seconds: float, rate: int = RATE, phase: float = 0.0) -> np.ndarray:
    """Sinusoids well below 4 kHz: resampling between 8 and 16 kHz is near-lossless."""

    def part(hz: float, amplitude: float = 1.0, shift: float = 0.0) -> np.ndarray:
        return _tones.tone(
            seconds, hz, rate=rate, amplitude=amplitude, phase=shift, start=phase, dtype=np.float64
        )

    wave = part(220, 0.3) + part(1330, 0.2, 1) + part(2750, 0.1) * part(2)
    return wave.astype(np.float32)


def probabilities(scored: Prediction | WindowPrediction) -> np.ndarray:
    return np.array(list(scored.probabilities.values()))


@pytest.fixture(scope="module")
def whisper() -> SERModel:
    return tiny_model("tiny-whisper")


@pytest.fixture(scope="module")
def saved(whisper: SERModel, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return whisper.save(tmp_path_factory.mktemp("model") / "tiny")


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two readable files (one in a subfolder, stereo FLAC), a corrupt, an empty, a text file."""
    root = tmp_path_factory.mktemp("clips")
    (root / "sub").mkdir()
    sf.write(root / "a.wav", tone(1.5), RATE)
    sf.write(root / "sub" / "b.flac", np.stack([tone(2.0), tone(2.0, phase=0.1)], 1), 22050)
    (root / "corrupt.wav").write_bytes(b"RIFF\x00\x00not audio at all")
    (root / "empty.wav").write_bytes(b"")
    (root / "notes.txt").write_text("not audio")
    return {
        "dir": root,
        "a": root / "a.wav",
        "b": root / "sub" / "b.flac",
        "corrupt": root / "corrupt.wav",
        "empty": root / "empty.wav",
        "missing": root / "missing.wav",
    }


def test_load_model_round_trip(whisper: SERModel, saved: Path, clips: dict[str, Path]) -> None:
    loaded = load_model(saved, device="cpu")
    assert not loaded.training
    waveforms = torch.from_numpy(np.stack([tone(1.0), tone(1.0, phase=0.3)]))
    with torch.no_grad():
        logits = loaded(waveforms)
        torch.testing.assert_close(logits, whisper(waveforms))
    assert logits.shape == (2, len(peft_ser.EMOTIONS))
    assert loaded.labels == list(peft_ser.EMOTIONS.values())

    [prediction] = peft_ser.predict(clips["a"], model=loaded)
    assert prediction.source == str(clips["a"])
    assert prediction.duration == pytest.approx(1.5)
    assert prediction.windows == []
    with torch.no_grad():
        expected = torch.softmax(loaded(torch.from_numpy(tone(1.5))), dim=-1)[0].numpy()
    np.testing.assert_allclose(probabilities(prediction), expected, atol=1e-6)
    assert prediction.label == loaded.labels[int(expected.argmax())]

    [by_path] = peft_ser.predict(clips["a"], model=saved)
    assert by_path.probabilities == pytest.approx(prediction.probabilities, abs=1e-6)


@pytest.mark.parametrize("backbone", ["tiny-whisper", "tiny-wavlm"])
def test_batched_answers_equal_single_ones(backbone: str) -> None:
    model = tiny_model(backbone)
    inputs = [(tone(seconds, phase=seconds), RATE) for seconds in (0.5, 0.2, 0.35, 0.45, 0.25)]
    batched = predict(inputs, model=model, batch_size=4)
    single = predict(inputs, model=model, batch_size=1)
    assert [p.source for p in batched] == [f"array[{i}]" for i in range(len(inputs))]
    for one, other in zip(batched, single, strict=True):
        np.testing.assert_allclose(probabilities(one), probabilities(other), atol=1e-5)


def test_8khz_stereo_matches_16khz_mono(whisper: SERModel, tmp_path: Path) -> None:
    mono = tone(2.0)
    low = tone(2.0, rate=8000)
    stereo = np.stack([1.5 * low, 0.5 * low], axis=1)  # mean of the channels is the signal
    sf.write(tmp_path / "stereo8k.wav", stereo, 8000, subtype="FLOAT")
    reference = probabilities(predict((mono, RATE), model=whisper)[0])
    from_file = probabilities(predict(tmp_path / "stereo8k.wav", model=whisper)[0])
    from_array = probabilities(predict((stereo.T, 8000), model=whisper)[0])  # (C, T) layout
    np.testing.assert_allclose(from_file, reference, atol=1e-4)
    np.testing.assert_allclose(from_array, from_file, atol=1e-6)

    explicit = soxr.resample(low, 8000, RATE, quality="HQ").astype(np.float32)
    np.testing.assert_allclose(
        probabilities(predict((explicit, RATE), model=whisper)[0]), from_file, atol=1e-6
    )
    noisy = mono + 0.01 * np.random.default_rng(0).standard_normal(len(mono)).astype(np.float32)
    changed = probabilities(predict((noisy, RATE), model=whisper)[0])
    assert np.abs(changed - reference).max() > 1e-4  # the tolerance above does discriminate


def test_integer_pcm_matches_float(whisper: SERModel) -> None:
    pcm = np.round(tone(1.0) * 32767).astype(np.int16)
    as_int, as_float = predict([(pcm, RATE), (pcm / 32768.0, RATE)], model=whisper)
    np.testing.assert_allclose(probabilities(as_int), probabilities(as_float), atol=1e-6)


def test_long_recording_default_windows(whisper: SERModel) -> None:
    short, long = predict([(tone(30.0), RATE), (tone(41.0), RATE)], model=whisper)
    assert short.windows == []
    starts = [window.start for window in long.windows]
    assert starts == [0.0, 5.0, 10.0, 15.0, 20.0, 25.0, 30.0, 31.0]  # last one ends at the end
    assert all(window.end - window.start == 10.0 for window in long.windows)
    assert long.windows[-1].end == pytest.approx(long.duration)
    mean = np.mean([probabilities(window) for window in long.windows], axis=0)
    np.testing.assert_allclose(probabilities(long), mean, atol=1e-12)
    assert long.label == max(long.probabilities, key=long.probabilities.__getitem__)


def test_explicit_window_and_hop(whisper: SERModel) -> None:
    recording = tone(10.0)
    [prediction] = predict((recording, RATE), model=whisper, window=4, hop=3)
    spans = [(window.start, window.end) for window in prediction.windows]
    assert spans == [(0.0, 4.0), (3.0, 7.0), (6.0, 10.0)]
    [alone] = predict((recording[3 * RATE : 7 * RATE], RATE), model=whisper)
    assert prediction.windows[1].probabilities == pytest.approx(alone.probabilities, abs=1e-5)
    [whole] = predict((tone(3.5), RATE), model=whisper, window=4)
    assert whole.windows == []


@pytest.mark.parametrize(
    ("window", "hop", "message"),
    [
        (31.0, None, "at most 30 s"),
        (4.0, 5.0, "hop <= window"),
        (0.0, None, "window must be above 0 seconds"),
        (0.00001, None, "window must be at least 0.025 s"),
        (0.001, None, "window must be at least 0.025 s"),
        (0.02, None, "window must be at least 0.025 s"),
        (1.0, 1e-7, "hop must be at least 0.01 s"),
        (float("inf"), None, "window must be a finite number of seconds"),
    ],
)
def test_bad_window_settings(
    whisper: SERModel, window: float, hop: float | None, message: str
) -> None:
    with pytest.raises(InvalidRequestError, match=message):
        iter_predictions([(tone(1.0), RATE)], model=whisper, window=window, hop=hop)


def test_a_recording_beyond_max_segments_fails_alone(whisper: SERModel) -> None:
    inputs = [(tone(5.0), RATE), (tone(1.0), RATE)]
    refused, predicted = iter_predictions(
        inputs, model=whisper, window=1.0, hop=0.5, max_segments=4
    )
    assert isinstance(refused, Failure) and refused.error.kind == "too_many_segments"
    assert str(refused.error) == (
        "array[0]: would be cut into 9 segments, more than the limit of 4 (max_segments); "
        "use a longer window or hop, or raise max_segments"
    )
    assert isinstance(predicted, Prediction) and predicted.windows == []
    with pytest.raises(AudioError, match="more than the limit of 4"):
        predict(inputs, model=whisper, window=1.0, hop=0.5, max_segments=4)


def test_unreadable_inputs(whisper: SERModel, clips: dict[str, Path]) -> None:
    with pytest.raises(AudioError, match="does not exist"):
        predict([clips["a"], clips["missing"]], model=whisper)
    results = list(
        iter_predictions(
            [clips["corrupt"], clips["a"], clips["empty"], (np.zeros(100), RATE)], model=whisper
        )
    )
    kinds = [result.error.kind if isinstance(result, Failure) else "ok" for result in results]
    assert kinds == ["unreadable", "ok", "empty", "empty"]
    with pytest.raises(InvalidRequestError, match=r"inputs\[0\]: .*sample_rate"):
        predict([tone(1.0)], model=whisper)  # type: ignore[list-item]


def test_prediction_leaves_training_mode_and_autograd_alone(whisper: SERModel) -> None:
    whisper.train()
    try:
        results = iter_predictions([(tone(0.5), RATE)] * 2, model=whisper, batch_size=1)
        next(results)
        assert whisper.training
        assert torch.is_grad_enabled()
    finally:
        whisper.eval()


def test_unknown_model_name_lists_known_ones() -> None:
    with pytest.raises(ModelFileError, match=r"unknown model 'no-such-model'; give .*: whisper"):
        load_model("no-such-model")
    with pytest.raises(ModelFileError, match=r"\(did you mean 'whisper-tiny-lora-16-conv'\?\)"):
        load_model("whisper-tiny-lora16-conv")


def test_find_audio_inputs(clips: dict[str, Path]) -> None:
    root = clips["dir"]
    found = find_audio_inputs([str(root), str(clips["a"]), str(root / "*.flac"), "nothing.wav"])
    expected = [clips["a"], clips["corrupt"], clips["empty"], clips["b"]]
    assert found.paths == [str(path) for path in expected]
    assert [str(failure.error) for failure in found.failures] == [
        f"{root / '*.flac'}: no audio file matches this pattern",
        "nothing.wav: file does not exist",
    ]
    assert found.count == 6
    assert find_audio_inputs([str(root / "**" / "*.flac")]).paths == [str(clips["b"])]


def test_output_formats(whisper: SERModel) -> None:
    predictions = predict([(tone(1.0), RATE), (tone(12.0), RATE)], model=whisper, window=8)
    parsed = json.loads(format_predictions(predictions, "json"))
    assert [len(item["windows"]) for item in parsed] == [0, 2]
    assert parsed[1]["windows"][1] == {
        "start": 4.0,
        "end": 12.0,
        "label": predictions[1].windows[1].label,
        "probabilities": predictions[1].windows[1].probabilities,
    }
    rows = list(csv.DictReader(io.StringIO(format_predictions(predictions, "csv"))))
    assert [(row["source"], row["window"]) for row in rows] == [
        ("array[0]", ""),
        ("array[1]", ""),
        ("array[1]", "1"),
        ("array[1]", "2"),
    ]
    assert float(rows[2]["Sad"]) == pytest.approx(
        predictions[1].windows[0].probabilities["Sad"], abs=1e-4
    )
    table = format_predictions(predictions, "table").splitlines()
    assert table[0].split() == ["source", "window", "start", "end", "label", *whisper.labels]
    assert len(table) == 5


def test_cli_reports_and_skips_bad_files(saved: Path, clips: dict[str, Path]) -> None:
    runner = CliRunner()
    arguments = ["predict", str(clips["dir"]), str(clips["missing"]), "--model", str(saved)]
    result = runner.invoke(app, arguments)
    assert result.exit_code == 1, result.output
    for bad, reason in [("corrupt", "corrupt"), ("empty", "empty"), ("missing", "not exist")]:
        assert f"skipped {clips[bad]}: " in result.stderr
        assert reason in result.stderr.split(f"skipped {clips[bad]}: ")[1].splitlines()[0]
    assert "predicted 2 of 5 inputs" in result.stderr
    sources = [line.split()[0] for line in result.stdout.splitlines()[1:]]
    assert sources == [str(clips["a"]), str(clips["b"])]

    bad_only = [str(clips["corrupt"]), str(clips["missing"])]
    result = runner.invoke(app, ["predict", *bad_only, "--model", str(saved)])
    assert result.exit_code == 2
    assert result.stdout == ""


def test_cli_formats_and_output_file(saved: Path, clips: dict[str, Path], tmp_path: Path) -> None:
    runner = CliRunner()
    for output_format in ("json", "csv"):
        target = tmp_path / f"out.{output_format}"
        result = runner.invoke(
            app,
            [
                *("predict", str(clips["a"]), str(clips["b"]), "--model", str(saved)),
                *("--format", output_format, "--output", str(target), "--batch-size", "1"),
            ],
        )
        assert result.exit_code == 0, result.output
        text = target.read_text()
        if output_format == "json":
            assert [item["source"] for item in json.loads(text)] == [
                str(clips["a"]),
                str(clips["b"]),
            ]
        else:
            assert len(list(csv.DictReader(io.StringIO(text)))) == 2


def test_cli_bad_options(saved: Path, clips: dict[str, Path], tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["predict", str(tmp_path), "--model", str(saved)])
    assert result.exit_code == 2  # a folder without audio files
    assert f"skipped {tmp_path}: no audio files found in this directory" in result.stderr
    assert "predicted 0 of 1 inputs" in result.stderr
    result = runner.invoke(app, ["predict", str(clips["a"]), "--model", "no-such-model"])
    assert result.exit_code == 2
    assert "error: unknown model 'no-such-model'" in result.stderr
    result = runner.invoke(app, ["predict", str(clips["a"]), "--model", str(saved), "--hop", "12"])
    assert result.exit_code == 2
    assert "hop <= window" in result.stderr


def test_import_is_lazy() -> None:
    code = "import sys, peft_ser; assert 'torch' not in sys.modules; print(peft_ser.EMOTIONS[1])"
    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert output.stdout.strip() == "Angry"
    assert peft_ser.load_model is load_model
    assert peft_ser.SERModel is SERModel
