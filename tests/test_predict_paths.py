"""``peft-ser predict``'s paths: it never writes over one of its inputs, and never skips an
input it was pointed at without a word (a broken link in a folder is reported by name)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from click.testing import Result
from typer.testing import CliRunner

from peft_ser.cli import app
from peft_ser.config import ModelConfig
from peft_ser.inference.files import find_audio_inputs
from peft_ser.models.ser_model import build_model


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    model = build_model(ModelConfig(backbone="tiny-wavlm"), pretrained=False)
    return model.save(tmp_path_factory.mktemp("model") / "tiny")


def _clip(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    samples = np.sin(np.arange(16000) / 10.0).astype(np.float32) * 0.1
    sf.write(path, samples, 16000, format="WAV")
    return path


def run_predict(*arguments: str) -> Result:
    return CliRunner().invoke(app, ["predict", *arguments])


def _refused(result: Result, message: str) -> None:
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.stderr == f"error: {message}\n"


@pytest.mark.parametrize("how", ["same path", "relative path", "symlink", "hard link", "in folder"])
def test_output_over_an_input_is_refused_and_the_input_kept(tmp_path: Path, how: str) -> None:
    clip = _clip(tmp_path / "clips" / "clip.wav")
    before = clip.read_bytes()
    argument, output = str(clip), clip
    if how == "relative path":
        output = Path(os.path.relpath(clip))
    elif how == "symlink":
        output = tmp_path / "link.wav"
        output.symlink_to(clip)
    elif how == "hard link":
        output = tmp_path / "hard.wav"
        os.link(clip, output)
    elif how == "in folder":
        argument = str(clip.parent)
    result = run_predict(argument, "--model", "no-model-is-loaded", "-f", "csv", "-o", str(output))
    _refused(
        result,
        f"{output}: is one of the inputs ({clip}); writing there would overwrite it, so give "
        "another file to write to",
    )
    assert clip.read_bytes() == before


def test_plot_over_an_input_is_refused_too(tmp_path: Path) -> None:
    clip = _clip(tmp_path / "clip.png")  # audio, whatever its name says
    result = run_predict(str(clip), "--model", "no-model-is-loaded", "--plot", str(clip))
    _refused(
        result,
        f"{clip}: is one of the inputs ({clip}); writing there would overwrite it, "
        "so give another file to write to",
    )


def test_broken_links_in_a_folder_are_reported_by_name(tmp_path: Path, model_dir: Path) -> None:
    good = _clip(tmp_path / "clips" / "good.wav")
    broken = tmp_path / "clips" / "gone.wav"
    broken.symlink_to(tmp_path / "elsewhere" / "gone.wav")
    (tmp_path / "clips" / "notes.txt").symlink_to(tmp_path / "nowhere.txt")  # not audio

    found = find_audio_inputs([str(good.parent)])
    assert found.paths == [str(good)]
    [failure] = found.failures
    assert failure.source == str(broken) and failure.error.kind == "missing"

    result = run_predict(str(good.parent), "--model", str(model_dir), "-f", "csv")
    assert result.exit_code == 1 and "Traceback" not in result.output
    target = tmp_path / "elsewhere" / "gone.wav"
    assert result.stderr.splitlines() == [
        f"skipped {broken}: broken symbolic link: its target {str(target)!r} does not exist",
        "predicted 1 of 2 inputs",
    ]
    assert result.stdout.splitlines()[1].startswith(f"{good},")


def test_a_broken_link_named_on_the_command_line_says_so(tmp_path: Path) -> None:
    link = tmp_path / "take.wav"
    link.symlink_to("missing-take.wav")
    [failure] = find_audio_inputs([str(link), str(tmp_path / "*.wav")]).failures
    assert str(failure.error) == (
        f"{link}: broken symbolic link: its target 'missing-take.wav' does not exist"
    )
