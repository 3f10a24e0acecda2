"""Prediction on every kind of input a user can hand over, good and bad, with exact outcomes.

Every case ends in one of two ways: a prediction with finite probabilities that sum to 1, or a
refusal that names the input and the problem, with the documented exit status (0 all
predicted, 1 some skipped, 2 nothing predicted or a wrong option) and never a traceback.
Skipped inputs and the final count are the only lines on stderr when it is not a terminal.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import _tones
import numpy as np
import pytest
import soundfile as sf
import torch
from click.testing import Result
from typer.testing import CliRunner

from peft_ser.cli import app
from peft_ser.data.audio import AudioError
from peft_ser.inference.predict import (
    Failure,
    InvalidRequestError,
    Prediction,
    available_devices,
    iter_predictions,
    predict,
)
from peft_ser.models.ser_model import SERModel

SEARCHED = "(searched recursively for .wav, .flac, .ogg, .mp3)"


def tone(seconds: float, rate: int, channels: int = 1) -> np.ndarray:
    """A 220-Hz tone with a little noise, ``(T,)`` or ``(T, C)``."""
    wave = _tones.tone(seconds, rate=rate, noise=0.01, dtype=np.float64)
    return wave if channels == 1 else np.stack([wave * (1 + c / 10) for c in range(channels)], 1)


GOOD_FILES: dict[str, tuple[int, int, str]] = {
    # name: (rate, channels, subtype)
    "8k-pcm16.wav": (8000, 1, "PCM_16"),
    "11k-pcm24.wav": (11025, 1, "PCM_24"),
    "16k-pcm32.wav": (16000, 1, "PCM_32"),
    "22k-u8.wav": (22050, 1, "PCM_U8"),
    "44k-stereo-float.wav": (44100, 2, "FLOAT"),
    "48k-6ch-double.wav": (48000, 6, "DOUBLE"),
    "96k-stereo.flac": (96000, 2, "PCM_24"),
    "32k-vorbis.ogg": (32000, 1, "VORBIS"),
    "16k-mulaw.wav": (16000, 1, "ULAW"),
    "with space.wav": (16000, 1, "PCM_16"),
    "ünïcödé.wav": (16000, 1, "PCM_16"),
    "take[1].wav": (16000, 1, "PCM_16"),
    "-dash.wav": (16000, 1, "PCM_16"),
    "LOUD.WAV": (16000, 1, "PCM_16"),
}


@pytest.fixture(scope="module")
def audio(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Readable files of many rates, channel counts and subtypes, and every kind of bad input."""
    root = tmp_path_factory.mktemp("audio")
    for name, (rate, channels, subtype) in GOOD_FILES.items():
        sf.write(root / name, tone(1.2, rate, channels), rate, subtype=subtype)
    with_nan = tone(1.0, 16000)
    with_nan[[10, 5000]] = np.nan
    sf.write(root / "nan.wav", with_nan, 16000, subtype="FLOAT")
    with_inf = tone(1.0, 44100, 2)
    with_inf[300, 1] = -np.inf
    sf.write(root / "inf.wav", with_inf, 44100, subtype="DOUBLE")
    sf.write(root / "huge.wav", np.full(16000, 1e30), 16000, subtype="FLOAT")  # finite, yet NaN out
    sf.write(root / "short.wav", tone(0.005, 16000), 16000)
    sf.write(root / "no-frames.wav", np.zeros(0), 16000)
    (root / "empty.wav").write_bytes(b"")
    (root / "corrupt.flac").write_bytes(b"fLaC\x00\x00\x00 definitely not flac")
    (root / "text.wav").write_text("this is not audio\n")
    (root / "folder.wav").mkdir()
    (root / "empty-folder").mkdir()
    (root / "only-text").mkdir()
    (root / "only-text" / "notes.txt").write_text("no audio here")
    return root


def run_predict(*arguments: str) -> Result:
    return CliRunner().invoke(app, ["predict", *arguments])


def assert_clean(result: Result) -> None:
    """No traceback and no exception other than the command's own exit."""
    assert "Traceback" not in result.output
    assert not isinstance(result.exception, Exception), result.exception


def assert_valid(prediction: dict[str, Any] | Prediction) -> None:
    item = prediction.to_dict() if isinstance(prediction, Prediction) else prediction
    probabilities = list(item["probabilities"].values())
    assert len(probabilities) == 4
    assert all(math.isfinite(p) and 0 <= p <= 1 for p in probabilities)
    assert sum(probabilities) == pytest.approx(1.0, abs=1e-5)
    assert item["label"] == max(item["probabilities"], key=item["probabilities"].__getitem__)


# --- the command line: files that are predicted ---------------------------------------------


@pytest.mark.parametrize("name", list(GOOD_FILES))
def test_cli_predicts_every_rate_channel_count_subtype_and_odd_name(
    name: str, audio: Path, tiny_model_dir: Path
) -> None:
    path = str(audio / name)
    result = run_predict("--model", str(tiny_model_dir), "--format", "json", "--", path)
    assert_clean(result)
    assert result.exit_code == 0, result.output
    assert result.stderr == "predicted 1 of 1 inputs\n"
    [prediction] = json.loads(result.stdout)
    assert prediction["source"] == path
    assert prediction["duration"] == pytest.approx(1.2, abs=1e-3)
    assert_valid(prediction)


# --- the command line: inputs that are skipped ----------------------------------------------


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("nan.wav", "2 of 16000 samples are not finite (NaN or ±inf)"),
        ("inf.wav", "1 of 88200 samples are not finite (NaN or ±inf)"),
        ("huge.wav", "model produced non-finite output (NaN or ±inf)"),
        ("short.wav", "too short to classify (80 samples at 16 kHz)"),
        ("no-frames.wav", "no audio frames"),
        ("empty.wav", "file is empty (0 bytes)"),
        ("corrupt.flac", "unreadable or corrupt audio"),
        ("text.wav", "unreadable or corrupt audio"),
        ("missing.wav", "file does not exist"),
        ("folder.wav", f"is a directory with no audio files {SEARCHED}"),
        ("empty-folder", f"no audio files found in this directory {SEARCHED}"),
        ("only-text", f"no audio files found in this directory {SEARCHED}"),
        ("nothing-*.wav", "no audio file matches this pattern"),
        ("**/*.aiff", "no audio file matches this pattern"),
    ],
)
def test_cli_reports_each_unusable_input_by_name(
    name: str, problem: str, audio: Path, tiny_model_dir: Path
) -> None:
    """Alone, a bad input is status 2 with nothing on stdout; beside a good one, status 1."""
    bad, good = str(audio / name), str(audio / "16k-pcm32.wav")
    alone = run_predict(bad, "--model", str(tiny_model_dir))
    assert_clean(alone)
    assert alone.exit_code == 2
    assert alone.stdout == ""
    skipped, count = alone.stderr.splitlines()
    assert skipped.startswith(f"skipped {bad}: ")
    assert problem in skipped
    assert count == "predicted 0 of 1 inputs"

    mixed = run_predict(bad, good, "--model", str(tiny_model_dir), "--format", "json")
    assert_clean(mixed)
    assert mixed.exit_code == 1
    assert mixed.stderr.splitlines() == [skipped, "predicted 1 of 2 inputs"]
    [prediction] = json.loads(mixed.stdout)
    assert prediction["source"] == good
    assert_valid(prediction)


def test_cli_folder_search_skips_bad_files_and_writes_the_rest(
    audio: Path, tiny_model_dir: Path, tmp_path: Path
) -> None:
    target = tmp_path / "out.csv"
    result = run_predict(str(audio), "--model", str(tiny_model_dir), "-f", "csv", "-o", str(target))
    assert_clean(result)
    assert result.exit_code == 1
    skipped = sorted(line.split(": ")[0] for line in result.stderr.splitlines()[:-1])
    bad = "corrupt.flac empty.wav huge.wav inf.wav nan.wav no-frames.wav short.wav text.wav"
    assert skipped == sorted(f"skipped {audio / name}" for name in bad.split())
    good = len(GOOD_FILES)
    assert result.stderr.splitlines()[-1] == f"predicted {good} of {good + 8} inputs"
    assert result.stdout == ""
    rows = target.read_text().splitlines()
    assert rows[0] == "source,window,start,end,label,Neutral,Angry,Sad,Happy"
    assert len(rows) == 1 + good
    assert not [path for path in tmp_path.iterdir() if path.name.startswith(".")]


# --- the command line: options refused before any work ----------------------------------------


def output_cases(tmp_path: Path) -> list[tuple[Path, str]]:
    (tmp_path / "a-file").write_text("")
    (tmp_path / "a-dir").mkdir()
    cases = [
        (
            tmp_path / "missing" / "out.csv",
            f"cannot write here: the folder {tmp_path / 'missing'} does not exist",
        ),
        (tmp_path / "a-dir", "is a directory; give a file name to write to"),
        (
            tmp_path / "a-file" / "out.csv",
            f"cannot write here: the folder {tmp_path / 'a-file'} is not a directory",
        ),
    ]
    if os.path.isdir("/sys"):
        cases.append((Path("/sys/out.csv"), "cannot write in /sys (Permission denied)"))
    return cases


def test_cli_refuses_an_unwritable_output_before_loading_the_model(tmp_path: Path) -> None:
    """The model and the input do not exist: the output is checked before either."""
    for target, problem in output_cases(tmp_path):
        result = run_predict("missing.wav", "--model", "no-such-model", "-o", str(target))
        assert_clean(result)
        assert result.exit_code == 2
        assert result.stderr == f"error: {target}: {problem}\n"


def device_cases() -> list[Any]:
    cuda, count = torch.cuda.is_available(), torch.cuda.device_count()
    return [
        pytest.param("gpu", "unknown device 'gpu'", id="gpu"),
        pytest.param("banana:3", "unknown device 'banana:3'", id="nonsense"),
        pytest.param(
            "cuda",
            "device 'cuda' is not available on this machine",
            id="cuda",
            marks=pytest.mark.skipif(cuda, reason="CUDA is available here"),
        ),
        pytest.param(
            "cuda:7",
            "device 'cuda:7' is not available on this machine",
            id="cuda7",
            marks=pytest.mark.skipif(count > 7, reason="this machine has 8 GPUs"),
        ),
        pytest.param(
            "mps",
            "device 'mps' is not available on this machine",
            id="mps",
            marks=pytest.mark.skipif(torch.backends.mps.is_available(), reason="MPS here"),
        ),
    ]


@pytest.mark.parametrize(("device", "problem"), device_cases())
def test_cli_refuses_an_unavailable_device_listing_the_available_ones(
    device: str, problem: str
) -> None:
    result = run_predict("missing.wav", "--model", "no-such-model", "--device", device)
    assert_clean(result)
    assert result.exit_code == 2
    available = ", ".join(available_devices())
    assert result.stderr == f"error: {problem}; available here: {available}\n"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (("--format", "xml"), "Invalid value for '--format'"),
        (("--batch-size", "0"), "Invalid value for '--batch-size'"),
        (("--window", "0"), "error: window must be above 0 seconds; got 0.0"),
        (("--window", "4", "--hop", "5"), "error: need 0 < hop <= window; got window 4.0, hop 5"),
        (("--window", "31"), "error: this model encodes at most 30 s; window is longer"),
        (("--window", "0.00001"), "error: window must be at least 0.025 s (one analysis frame)"),
        (("--window", "0.02"), "error: window must be at least 0.025 s (one analysis frame)"),
        (("--window", "inf"), "error: window must be a finite number of seconds; got inf"),
        (("--window", "nan"), "error: window must be a finite number of seconds; got nan"),
        (("--hop", "1e-7"), "error: hop must be at least 0.01 s (one frame step); got 1e-07"),
        (("--max-segments", "0"), "error: max_segments must be at least 1; got 0"),
    ],
)
def test_cli_refuses_bad_options_in_one_message(
    options: tuple[str, ...], message: str, audio: Path, tiny_model_dir: Path
) -> None:
    result = run_predict(str(audio / "16k-pcm32.wav"), "--model", str(tiny_model_dir), *options)
    assert_clean(result)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert message in result.stderr


@pytest.mark.parametrize(
    ("model_name", "message"),
    [
        ("no-such-model", "error: unknown model 'no-such-model'; give a folder written by"),
        (
            "whisper-tiny-lora-16",
            "error: unknown model 'whisper-tiny-lora-16' "
            "(did you mean 'whisper-tiny-lora-16-conv'?)",
        ),
        ("runs/missing/model", "error: runs/missing/model: no such model folder; give a folder"),
    ],
)
def test_cli_refuses_a_model_that_does_not_exist(
    model_name: str, message: str, audio: Path
) -> None:
    result = run_predict(str(audio / "16k-pcm32.wav"), "--model", model_name)
    assert_clean(result)
    assert result.exit_code == 2
    assert result.stderr.startswith(message)
    assert result.stderr.count("\n") == 1


# --- the Python API ---------------------------------------------------------------------------


def rows(seconds: float = 1.0, rate: int = 16000) -> np.ndarray:
    return tone(seconds, rate).astype(np.float32)


def with_value(value: float, at: int = 100) -> np.ndarray:
    samples = rows()
    samples[at] = value
    return samples


@pytest.mark.parametrize(
    ("item", "kind", "problem"),
    [
        (
            (with_value(np.nan), 16000),
            "non_finite",
            "1 of 16000 samples are not finite (NaN or ±inf)",
        ),
        (
            (with_value(np.inf), 16000),
            "non_finite",
            "1 of 16000 samples are not finite (NaN or ±inf)",
        ),
        (
            (np.stack([rows(), with_value(-np.inf)]), 16000),
            "non_finite",
            "1 of 32000 samples are not finite (NaN or ±inf)",
        ),
        ((np.zeros(0, np.float32), 16000), "empty", "no samples (empty array)"),
        ((np.zeros((0, 2)), 44100), "empty", "no samples (empty array)"),
        ((rows(0.01), 16000), "empty", "too short to classify (160 samples at 16 kHz)"),
        (
            (np.full(16000, 1e30, np.float32), 16000),
            "non_finite_output",
            "model produced non-finite output (NaN or ±inf)",
        ),
    ],
)
def test_arrays_whose_data_cannot_be_predicted_are_failures_beside_good_ones(
    item: tuple[np.ndarray, int], kind: str, problem: str, tiny_model: SERModel
) -> None:
    first, failure, last = iter_predictions(
        [(rows(), 16000), item, (rows(), 8000)], model=tiny_model
    )
    assert isinstance(first, Prediction) and isinstance(last, Prediction)
    assert_valid(first)
    assert_valid(last)
    assert failure == Failure("array[1]", failure.error)
    assert (failure.error.kind, str(failure.error)) == (kind, f"array[1]: {problem}")
    with pytest.raises(AudioError, match=r"^array\[1\]: "):
        predict([(rows(), 16000), item], model=tiny_model)


@pytest.mark.parametrize(
    "rate", [16000, 16000.0, np.int64(22050), np.float32(44100.0), 8_000], ids=repr
)
def test_whole_number_rates_of_any_numeric_type_are_accepted(
    rate: Any, tiny_model: SERModel
) -> None:
    [prediction] = predict((tone(1.0, int(rate)), rate), model=tiny_model)
    assert prediction.duration == pytest.approx(1.0)
    assert_valid(prediction)


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ((rows(), 0), "array[0]: sample rate must be a positive whole number of Hz, got 0"),
        (
            (rows(), -16000),
            "array[0]: sample rate must be a positive whole number of Hz, got -16000",
        ),
        (
            (rows(), float("nan")),
            "array[0]: sample rate must be a positive whole number of Hz, got nan",
        ),
        (
            (rows(), math.inf),
            "array[0]: sample rate must be a positive whole number of Hz, got inf",
        ),
        (
            (rows(), 16000.5),
            "array[0]: sample rate must be a positive whole number of Hz, got 16000.5",
        ),
        (
            (rows(), "16000"),
            "array[0]: sample rate must be a positive whole number of Hz, got '16000'",
        ),
        ((rows(), True), "array[0]: sample rate must be a positive whole number of Hz, got True"),
        ((rows(), 1), "array[0]: sample rate 1 Hz is outside 1000-384000 Hz"),
        ((rows(), 10**12), "array[0]: sample rate 1000000000000 Hz is outside 1000-384000 Hz"),
        (
            ["a.wav", (rows(), None)],
            "array[1]: sample rate must be a positive whole number of Hz, got None",
        ),
        (
            (np.zeros((2, 3, 400)), 16000),
            "array[0]: samples must be shaped (T,), (T, C) or (C, T); got shape (2, 3, 400)",
        ),
        (
            (np.float32(0.5), 16000),
            "array[0]: samples must be shaped (T,), (T, C) or (C, T); got shape ()",
        ),
        (
            (np.array(["a", "b"]), 16000),
            "array[0]: samples must be float or signed-integer PCM; got dtype <U1",
        ),
        (
            (np.zeros(800, np.uint8), 16000),
            "array[0]: samples must be float or signed-integer PCM; got dtype uint8",
        ),
        (
            (np.zeros(800, np.complex64), 16000),
            "array[0]: samples must be float or signed-integer PCM; got dtype complex64",
        ),
        (([0.1, [0.2, 0.3]], 16000), "array[0]: samples are not an array ("),
        (None, "inputs is None; give a file path, a (samples, sample_rate) tuple, or a list"),
        ([], "no inputs given; give a file path, a (samples, sample_rate) tuple, or a list"),
        (42, "inputs is 42; give a file path, a (samples, sample_rate) tuple, or a list"),
        (rows(), "inputs is ndarray of shape (16000,); give a file path, a (samples, sample_rate)"),
        (
            ["a.wav", None],
            "inputs[1]: expected a file path or a (samples, sample_rate) tuple, got None",
        ),
        (
            [rows()],
            "inputs[0]: expected a file path or a (samples, sample_rate) tuple, got ndarray of "
            "shape (16000,)",
        ),
    ],
)
def test_malformed_calls_are_refused_before_the_model_loads(inputs: Any, message: str) -> None:
    """The model named does not exist: the call's shape is checked first, naming the input."""
    for call in (predict, iter_predictions):
        with pytest.raises(InvalidRequestError) as raised:
            call(inputs, model="no-such-model")
        assert str(raised.value).startswith(message)


def test_a_model_object_gets_the_same_checks(tiny_model: SERModel) -> None:
    with pytest.raises(InvalidRequestError, match=r"^array\[0\]: sample rate must be"):
        predict((rows(), 0), model=tiny_model)
    [prediction] = predict((np.round(rows() * 32767).astype(np.int16), 16000), model=tiny_model)
    assert_valid(prediction)


def test_batch_size_below_one_is_refused(tiny_model: SERModel) -> None:
    with pytest.raises(InvalidRequestError, match=r"^batch_size must be at least 1, got 0$"):
        predict((rows(), 16000), model=tiny_model, batch_size=0)


@pytest.mark.parametrize("layout", [lambda x: x, lambda x: x.T], ids=["(T, C)", "(C, T)"])
def test_multichannel_arrays_in_either_layout_give_the_same_answer(
    layout: Callable[[np.ndarray], np.ndarray], tiny_model: SERModel
) -> None:
    stereo = tone(1.0, 44100, 2)
    [prediction] = predict((layout(stereo), 44100), model=tiny_model)
    [mono] = predict((stereo.mean(axis=1), 44100), model=tiny_model)
    assert prediction.probabilities == pytest.approx(mono.probabilities, abs=1e-6)
    assert_valid(prediction)


@pytest.mark.parametrize("model", [None, 3, "", object()], ids=repr)
def test_a_model_that_is_no_model_is_refused_in_one_line(model: Any) -> None:
    with pytest.raises(InvalidRequestError, match=r"give a loaded model|model name is empty"):
        predict((tone(1.0, 16000), 16000), model=model)
