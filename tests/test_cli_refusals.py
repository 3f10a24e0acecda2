"""What the command line refuses in one ``error:`` line with exit 2: failures of the machine or
of a given path (a full or read-only disk, a file where a folder is wanted), a missing peft
config, a fold chosen twice."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest
from typer.testing import CliRunner

from peft_ser.cli import app
from peft_ser.cli.app import App
from peft_ser.utils.errors import environment_problem


def _command_raising(error: BaseException) -> App:
    probe = App()

    @probe.command()
    def fail() -> None:
        raise error

    @probe.command()
    def other() -> None:  # two commands, so the command name is an argument
        pass

    return probe


@pytest.mark.parametrize(
    ("code", "words"),
    [
        (errno.ENOSPC, "no space left on the device"),
        (errno.EROFS, "read-only file system"),
        (errno.EACCES, "permission denied"),
        (errno.ENOTDIR, "a part of the path is a file, not a folder"),
    ],
)
def test_an_environment_failure_is_one_line_naming_the_path(code: int, words: str) -> None:
    result = CliRunner().invoke(
        _command_raising(OSError(code, "system words", "/data/run/x.safetensors")), ["fail"]
    )
    assert result.exit_code == 2
    assert result.output.strip() == f"error: /data/run/x.safetensors: {words}"


def test_other_os_errors_stay_bugs_with_their_traceback() -> None:
    result = CliRunner().invoke(_command_raising(OSError(errno.EIO, "I/O error")), ["fail"])
    assert result.exit_code == 1
    assert isinstance(result.exception, OSError)


def test_debug_shows_the_traceback_of_an_environment_failure(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PEFT_SER_DEBUG", "1")
    result = CliRunner().invoke(_command_raising(OSError(errno.ENOSPC, "full", "/x")), ["fail"])
    assert isinstance(result.exception, OSError)


def test_a_failure_without_a_path_still_says_what_failed() -> None:
    full = environment_problem(OSError(errno.ENOSPC, "full"))
    assert full == "a file: no space left on the device"
    assert environment_problem(OSError(errno.EIO, "io")) is None


def test_method_peft_without_a_tuner_config_is_one_line() -> None:
    result = CliRunner().invoke(app, ["params", "--backbone", "tiny-whisper", "--method", "peft"])
    assert result.exit_code == 2
    assert result.output.startswith("error: model.peft_config: method 'peft' needs")
    assert len(result.output.strip().splitlines()) == 1


def test_method_peft_with_a_malformed_tuner_config_names_the_key() -> None:
    """Refused when the config is validated (issue 21: methods own their settings), not when
    the model is built."""
    from peft_ser.config import ConfigError, load_run_config

    with pytest.raises(ConfigError, match=r"model\.peft_config: not a peft tuner config"):
        load_run_config(
            overrides={
                "data.corpus": "x",
                "model.method": "peft",
                "model.peft_config": {"peft_type": "X"},
            }
        )


def test_export_refuses_a_file_as_its_folder(tmp_path: Path, tiny_model_dir: Path) -> None:
    target = tmp_path / "taken.txt"
    target.write_text("keep me")
    result = CliRunner().invoke(app, ["export", str(tiny_model_dir), "--out", str(target)])
    assert result.exit_code == 2
    expected = f"error: --out {target} is a file; it names a folder to write into"
    assert result.output.strip() == expected
    assert target.read_text() == "keep me"


@pytest.mark.parametrize("tolerance", ["nan", "-1", "0", "inf"])
def test_export_refuses_a_tolerance_that_checks_nothing(
    tmp_path: Path, tiny_model_dir: Path, tolerance: str
) -> None:
    result = CliRunner().invoke(
        app,
        ["export", str(tiny_model_dir), "--out", str(tmp_path / "x"), "--tolerance", tolerance],
    )
    assert result.exit_code == 2
    assert "give a positive finite logit difference" in result.output


@pytest.mark.parametrize("wanted", [[1, 1], [1, "fold1"], ["fold2", 2]])
def test_a_fold_chosen_twice_is_refused(wanted: list[int | str]) -> None:
    from peft_ser.data.manifest import Fold
    from peft_ser.runs.corpus import select_folds
    from peft_ser.utils.errors import UserError

    folds = [Fold(f"fold{i}", [], [], []) for i in (1, 2, 3)]
    with pytest.raises(UserError, match="is chosen twice"):
        select_folds(folds, wanted)


def test_evaluate_refuses_an_output_folder_below_a_file_before_scoring(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("keep me")
    result = CliRunner().invoke(
        app, ["evaluate", str(tmp_path), "--output-dir", str(tmp_path / "notes.txt" / "x")]
    )
    assert result.exit_code == 2
    assert "lies below" in result.output and "it names a folder to write into" in result.output
    assert (tmp_path / "notes.txt").read_text() == "keep me"
