"""Damaged or incomplete saved models are refused in one line naming the file and the problem.

A real tiny model is saved once; each case copies it and damages one file the way disks,
interrupted copies and hand edits do. Every case goes through `load_model`, `SERModel.load` and
``peft-ser predict --model``: the same single line (the CLI adds ``error:`` and exits 2), never
a deserializer traceback or a hub connection attempt.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import soundfile as sf
import torch
from _tones import RATE, tone
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from peft_ser.cli import app
from peft_ser.inference.predict import load_model
from peft_ser.models.backbones import registry
from peft_ser.models.ser_model import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    ModelFileError,
    SERModel,
    read_weights,
)
from peft_ser.utils.errors import UserError

Damage = Callable[[Path], None]


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("clip") / "clip.wav"
    sf.write(path, tone(1.0), RATE)
    return path


def edit_config(**changes: Any) -> Damage:
    def damage(directory: Path) -> None:
        config = json.loads((directory / CONFIG_FILE).read_text())
        config.update(changes)
        (directory / CONFIG_FILE).write_text(json.dumps(config))

    return damage


def drop_config_keys(*keys: str) -> Damage:
    def damage(directory: Path) -> None:
        config = json.loads((directory / CONFIG_FILE).read_text())
        (directory / CONFIG_FILE).write_text(
            json.dumps({k: v for k, v in config.items() if k not in keys})
        )

    return damage


def edit_weights(change: Callable[[dict[str, torch.Tensor]], object]) -> Damage:
    def damage(directory: Path) -> None:
        weights = load_file(directory / WEIGHTS_FILE)
        change(weights)
        save_file(weights, directory / WEIGHTS_FILE)

    return damage


def write(name: str, content: bytes) -> Damage:
    return lambda directory: (directory / name).write_bytes(content)


def config_holding(content: bytes, problem: str, id: str) -> Any:
    """The case of a config file that holds ``content`` (not JSON settings) and the problem
    its message names."""
    return pytest.param(write(CONFIG_FILE, content), CONFIG_FILE, problem, id=id)


def truncate_weights(keep: float) -> Damage:
    def damage(directory: Path) -> None:
        data = (directory / WEIGHTS_FILE).read_bytes()
        (directory / WEIGHTS_FILE).write_bytes(data[: int(len(data) * keep)])

    return damage


def remove(name: str) -> Damage:
    return lambda directory: (directory / name).unlink()


LAYER = "head.layer_weights"
LORA_A = "backbone.model.layers.0.fc1.lora_A.default.weight"
SAFETENSORS = (
    "not a readable safetensors file, truncated or corrupt (Error while deserializing header: "
)
CASES: list[Any] = [
    pytest.param(truncate_weights(0.5), WEIGHTS_FILE, SAFETENSORS, id="weights-cut-in-half"),
    pytest.param(truncate_weights(0.001), WEIGHTS_FILE, SAFETENSORS, id="weights-header-cut"),
    pytest.param(
        write(WEIGHTS_FILE, b""), WEIGHTS_FILE, "file is empty (0 bytes)", id="weights-empty"
    ),
    pytest.param(
        write(WEIGHTS_FILE, b"<html>404</html>" * 64), WEIGHTS_FILE, SAFETENSORS, id="weights-html"
    ),
    pytest.param(
        remove(WEIGHTS_FILE),
        WEIGHTS_FILE,
        "file is missing (a saved model keeps its trained weights here)",
        id="weights-missing",
    ),
    pytest.param(
        edit_weights(lambda w: w[LAYER].fill_(float("nan"))),
        WEIGHTS_FILE,
        f"weight '{LAYER}' has non-finite values (NaN or inf): 3 of 3",
        id="weights-nan",
    ),
    pytest.param(
        edit_weights(lambda w: w["head.classifier.2.bias"].__setitem__(0, float("-inf"))),
        WEIGHTS_FILE,
        "weight 'head.classifier.2.bias' has non-finite values (NaN or inf): 1 of 4",
        id="weights-inf",
    ),
    pytest.param(
        edit_weights(lambda w: w.pop(LAYER)),
        WEIGHTS_FILE,
        f"trained weights do not match this model: missing ['{LAYER}']",
        id="weights-name-missing",
    ),
    pytest.param(
        edit_weights(lambda w: w.__setitem__("head.extra", torch.zeros(2))),
        WEIGHTS_FILE,
        "trained weights do not match this model: unexpected ['head.extra']",
        id="weights-name-extra",
    ),
    pytest.param(
        edit_weights(lambda w: w.__setitem__(LAYER, torch.zeros(7))),
        WEIGHTS_FILE,
        f"weight '{LAYER}' has shape (7,), this model's is (3,)",
        id="weights-shape",
    ),
    pytest.param(
        edit_config(lora_rank=8),
        WEIGHTS_FILE,
        f"weight '{LORA_A}' has shape (16, 32), this model's is (8, 32)",
        id="config-rank-differs-from-weights",
    ),
    pytest.param(
        edit_config(labels=["a", "b", "c", "d", "e"]),
        WEIGHTS_FILE,
        "weight 'head.classifier.2.bias' has shape (4,), this model's is (5,)",
        id="config-labels-differ-from-weights",
    ),
    config_holding(b"", "file is empty", id="config-empty"),
    config_holding(b"  \n", "file is empty", id="config-blank"),
    config_holding(
        b'{"backbone": "tiny-whisper",',
        "not valid JSON (Expecting property name enclosed in double quotes: line 1 column 29",
        id="config-cut",
    ),
    config_holding(
        b"\xff\xfe\x00\x01", "not UTF-8 text, so not a model config", id="config-binary"
    ),
    config_holding(
        b'["tiny-whisper", "lora"]',
        "expected a JSON object of model settings, found list",
        id="config-list",
    ),
    pytest.param(
        drop_config_keys("backbone"),
        CONFIG_FILE,
        "incomplete model config: missing keys backbone",
        id="config-no-backbone",
    ),
    pytest.param(
        drop_config_keys("method", "labels", "lora_rank"),
        CONFIG_FILE,
        "incomplete model config: missing keys method, lora_rank, labels",
        id="config-keys-missing",
    ),
    pytest.param(
        edit_config(lora_rank="sixteen"),
        CONFIG_FILE,
        "invalid configuration: lora_rank: Input should be a valid integer, unable to parse "
        "string as an integer (got 'sixteen')",
        id="config-wrong-type",
    ),
    pytest.param(
        edit_config(labels="Neutral", head_dim=0),
        CONFIG_FILE,
        "invalid configuration: head_dim: Input should be greater than or equal to 1 (got 0); "
        "labels: Input should be a valid list (got 'Neutral')",
        id="config-two-problems",
    ),
    pytest.param(
        edit_config(lora_rnak=16),
        CONFIG_FILE,
        "invalid configuration: lora_rnak: unknown key; allowed keys: backbone, method,",
        id="config-unknown-key",
    ),
    pytest.param(
        edit_config(backbone="whisper-tinny"),
        CONFIG_FILE,
        "invalid configuration: backbone: unknown backbone 'whisper-tinny' "
        "(did you mean 'whisper-tiny'?); known: ",
        id="config-unknown-backbone",
    ),
    pytest.param(
        edit_config(method="lroa"),
        CONFIG_FILE,
        "invalid configuration: method: unknown PEFT method 'lroa' (did you mean 'lora'?); "
        "known: adapter, adapter_l,",
        id="config-unknown-method",
    ),
    pytest.param(
        edit_config(backbone="/data/models/no-such-encoder"),
        CONFIG_FILE,
        "invalid configuration: backbone: backbone '/data/models/no-such-encoder': "
        "no such directory",
        id="config-backbone-dir-missing",
    ),
    # values that cannot work: refused at validation, not by a 128 GB allocation or transformers
    pytest.param(
        edit_config(head_dim=10**9),
        CONFIG_FILE,
        "invalid configuration: head_dim: Input should be less than or equal to 8192 "
        "(got 1000000000)",
        id="config-head-dim-absurd",
    ),
    pytest.param(
        edit_config(lora_rank=10**9),
        CONFIG_FILE,
        "invalid configuration: lora_rank: Input should be less than or equal to 8192",
        id="config-lora-rank-absurd",
    ),
    pytest.param(
        edit_config(labels=["Neutral", "Angry", "Sad", "Angry"]),
        CONFIG_FILE,
        "invalid configuration: labels: ['Neutral', 'Angry', 'Sad', 'Angry']: 'Angry' is "
        "listed twice; give each name once",
        id="config-label-twice",
    ),
    pytest.param(
        edit_config(lora_alpha=float("inf")),
        CONFIG_FILE,
        "invalid configuration: lora_alpha: Input should be a finite number (got inf)",
        id="config-alpha-infinite",
    ),
    pytest.param(
        edit_config(backbone="../../../../../../../../etc"),
        CONFIG_FILE,
        "invalid configuration: backbone: backbone '../../../../../../../../etc': the folder "
        "holds no model (no config.json or model.bin); give a registry name, a hub id",
        id="config-backbone-not-a-model-folder",
    ),
    config_holding(
        b"[" * 200_000 + b"]" * 200_000,
        "nested more than 32 levels deep; no config needs that many",
        id="config-nested-200000-deep",
    ),
    config_holding(
        b'{"peft_config": ' + b"[" * 40 + b"1" + b"]" * 40 + b"}",
        "nested more than 32 levels deep",
        id="config-nested-40-deep",
    ),
]


def damaged_copy(saved: Path, tmp_path: Path, damage: Damage) -> Path:
    directory = tmp_path / "damaged"
    shutil.copytree(saved, directory)
    damage(directory)
    return directory


def assert_one_line(error: UserError, expected_start: str) -> None:
    message = str(error)
    assert "\n" not in message
    assert message.startswith(expected_start), message


@pytest.mark.parametrize(("damage", "file", "problem"), CASES)
def test_damaged_model_is_one_line_naming_the_file(
    damage: Damage, file: str, problem: str, tiny_model_dir: Path, clip: Path, tmp_path: Path
) -> None:
    directory = damaged_copy(tiny_model_dir, tmp_path, damage)
    expected = f"{directory / file}: {problem}"
    for load in (load_model, SERModel.load):
        with pytest.raises(ModelFileError) as raised:
            load(directory)
        assert_one_line(raised.value, expected)

    result = CliRunner().invoke(app, ["predict", str(clip), "--model", str(directory)])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.startswith(f"error: {expected}")
    assert result.stderr.count("\n") == 1
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("make", "problem"),
    [
        (lambda d: d.mkdir(), f"not a peft-ser model folder ({CONFIG_FILE} is missing)"),
        (lambda d: None, "no such folder"),
        (lambda d: d.write_text("{}"), "is a file, not a model folder"),
    ],
    ids=["empty-folder", "missing-folder", "a-file"],
)
def test_sermodel_load_of_what_is_not_a_model_folder(
    make: Callable[[Path], object], problem: str, tmp_path: Path
) -> None:
    target = tmp_path / "model"
    make(target)
    with pytest.raises(ModelFileError) as raised:
        SERModel.load(target)
    assert str(raised.value) == f"{target}: {problem}"


def test_missing_config_through_load_model_and_the_cli(
    tiny_model_dir: Path, clip: Path, tmp_path: Path
) -> None:
    directory = damaged_copy(tiny_model_dir, tmp_path, remove(CONFIG_FILE))
    expected = f"{directory}: not a peft-ser model folder ({CONFIG_FILE} is missing)"
    with pytest.raises(ModelFileError, match=f"^{re.escape(expected)}$"):
        load_model(directory)
    result = CliRunner().invoke(app, ["predict", str(clip), "--model", str(directory)])
    assert (result.exit_code, result.stderr) == (2, f"error: {expected}\n")


@pytest.mark.parametrize(
    ("backbone", "patched"),
    [("some-org/some-encoder", "AutoConfig"), ("whisper-tiny", "WhisperBackbone")],
    ids=["hub-id", "named-hub-backbone"],
)
def test_unreachable_hub_is_one_line_naming_the_config(
    backbone: str,
    patched: str,
    tiny_model_dir: Path,
    clip: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Offline, transformers raises a multi-line OSError after retries; we say what to do."""

    def offline(*args: object, **kwargs: object) -> None:
        raise OSError("We couldn't connect to 'https://huggingface.co'.\nCheck your connection.")

    monkeypatch.setattr(getattr(registry, patched), "from_pretrained", offline)
    directory = damaged_copy(tiny_model_dir, tmp_path, edit_config(backbone=backbone))
    hub_id = "openai/whisper-tiny" if backbone == "whisper-tiny" else backbone
    expected = (
        f"{directory / CONFIG_FILE}: backbone '{hub_id}' could not be fetched from the Hugging "
        "Face hub (We couldn't connect to 'https://huggingface.co'. Check your connection.); "
        f"offline, download it on a connected machine (hf download {hub_id} --local-dir DIR)"
    )
    with pytest.raises(ModelFileError) as raised:
        SERModel.load(directory)
    assert_one_line(raised.value, expected)
    result = CliRunner().invoke(app, ["predict", str(clip), "--model", str(directory)])
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: {expected}")
    assert result.stderr.count("\n") == 1


def test_read_weights_names_the_file_as_checkpoints_need(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    """Training reads checkpoint weights with it: a cut file is one line, not a traceback."""
    directory = damaged_copy(tiny_model_dir, tmp_path, truncate_weights(0.5))
    with pytest.raises(ModelFileError) as raised:
        read_weights(directory / WEIGHTS_FILE)
    assert_one_line(raised.value, f"{directory / WEIGHTS_FILE}: {SAFETENSORS}")
    assert (
        read_weights(tiny_model_dir / WEIGHTS_FILE).keys()
        == load_file(tiny_model_dir / WEIGHTS_FILE).keys()
    )


def test_intact_copy_loads(tiny_model_dir: Path, tmp_path: Path) -> None:
    """The damage above is what fails: an undamaged copy loads to the same weights."""
    directory = damaged_copy(tiny_model_dir, tmp_path, lambda d: None)
    loaded = load_model(directory, device="cpu")
    expected = load_file(tiny_model_dir / WEIGHTS_FILE)
    for name, tensor in loaded.trainable_state_dict().items():
        torch.testing.assert_close(tensor, expected[name], atol=0, rtol=0)
