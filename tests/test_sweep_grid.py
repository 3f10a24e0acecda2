"""Grid files: expansion into cells, exclusions, folder names, and one-line errors for bad ones."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from peft_ser.cli import app
from peft_ser.sweep.executors import device_shares
from peft_ser.sweep.grid import GridError, grid_from_document, load_grid

BASE = {"data": {"corpus": "prepared/tones", "folds": [1]}, "optim": {"epochs": 1}}


def _grid(**settings: Any) -> dict[str, Any]:
    return {"base": BASE, "output_dir": "runs/g", **settings}


def test_cells_are_the_product_of_the_axes_minus_exclusions() -> None:
    grid = grid_from_document(
        _grid(
            axes={
                "model.backbone": ["tiny-whisper", "tiny-wavlm"],
                "model.method": ["frozen", "lora", "adapter"],
                "seed": [0, 1],
            },
            exclude=[{"model.backbone": "tiny-wavlm", "model.method": "adapter"}, {"seed": 1}],
        )
    )
    assert [cell.name for cell in grid.cells] == [
        "backbone=tiny-whisper,method=frozen,seed=0",
        "backbone=tiny-whisper,method=lora,seed=0",
        "backbone=tiny-whisper,method=adapter,seed=0",
        "backbone=tiny-wavlm,method=frozen,seed=0",
        "backbone=tiny-wavlm,method=lora,seed=0",
    ]
    cell = grid.cells[4]
    assert cell.run_dir == Path("runs/g/backbone=tiny-wavlm,method=lora,seed=0")
    assert (cell.config.model.backbone, cell.config.model.method) == ("tiny-wavlm", "lora")
    assert cell.config.optim.epochs == 1  # from the base
    assert not cell.complete


def test_names_keep_full_keys_where_last_parts_clash_and_values_are_folder_safe() -> None:
    grid = grid_from_document(
        _grid(
            axes={"data.folds": [[1, 2], "fold3"], "model.lora_targets": [["fc1"], None]},
            overrides={"optim.lr": 0.01},
        )
    )
    names = [cell.name for cell in grid.cells]
    assert names[0] == "folds=1-2,lora_targets=fc1"
    assert names[-1] == "folds=fold3,lora_targets=None"
    assert grid.cells[0].config.data.folds == [1, 2]
    assert grid.cells[0].config.optim.lr == 0.01
    clash = grid_from_document(
        _grid(axes={"model.method": ["lora"], "augment.enabled": [True], "data.bucketing": [False]})
    )
    assert clash.cells[0].name == "method=lora,enabled=true,bucketing=false"


def test_base_may_be_a_run_config_file_next_to_the_grid(tmp_path: Path) -> None:
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "run.yaml").write_text(yaml.safe_dump(BASE))
    path = tmp_path / "configs" / "grid.yaml"
    path.write_text(yaml.safe_dump(_grid(base="run.yaml", axes={"model.lora_rank": [4, 8]})))
    grid = load_grid(path)
    assert [cell.config.model.lora_rank for cell in grid.cells] == [4, 8]
    assert grid.cells[1].config.data.corpus == "prepared/tones"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"axes": {"model.lora_rnak": [4]}},
            "model.lora_rnak: unknown config key (did you mean 'lora_rank'?); model has: backbone,",
        ),
        ({"axes": {"model.method": []}}, "axes: model.method: an axis needs at least one value"),
        ({"axes": {"seed": 3}}, "axes.seed: Input should be a valid list (got 3)"),
        ({"axes": {"optim": [{}]}}, "axes: optim: is a whole section; an axis sets one key of it"),
        ({"axes": {"seed.x": [1]}}, "axes: seed.x: seed is a value, not a section"),
        (
            {"axes": {"output_dir": ["a"]}},
            "axes: output_dir: set by the grid (one folder per cell)",
        ),
        ({"axes": {"seed": [1, "1"]}}, "axes: seed: values repeat (or name the same folder)"),
        (
            {"axes": {"seed": [1]}, "exclude": [{"sed": 1}]},
            "exclude[0]: sed is not an axis (did you mean 'seed'?)",
        ),
        (
            {"axes": {"seed": [1]}, "exclude": [{"seed": 2}]},
            "exclude[0]: 2 is not a value of axis seed ([1])",
        ),
        (
            {"axes": {"seed": [1]}, "executor": {"name": "pbs"}},
            "executor: unknown executor 'pbs'; known: local, slurm",
        ),
        (
            {"axes": {"seed": [1]}, "executor": {"name": "slurm", "partiton": "gpu"}},
            "executor.partiton: unknown key",
        ),
        (
            {"axes": {"seed": [1]}, "executor": {"workers": 0}},
            "executor.workers: Input should be greater than or equal to 1",
        ),
        (
            {"axes": {"seed": [1]}, "report": {"rows": "model.method"}},
            "report.rows: model.method is not an axis",
        ),
        ({"axes": {"seed": [1]}, "colums": 1}, "colums: unknown key"),
        (
            {"axes": {"seed": [1]}, "paper": {"source": "s", "uar": {"lorra": {"1": 50.0}}}},
            "paper.uar: lorra: not values of any axis",
        ),
        (
            {"axes": {"model.method": ["lorra"]}},
            "cell method=lorra: invalid configuration: axes: model.method: unknown PEFT method",
        ),
        (
            {"axes": {"seed": [1]}, "overrides": {"optim.lr": -1}},
            "cell seed=1: invalid configuration: overrides: optim.lr: Input should be greater",
        ),
        (
            {"axes": {"seed": [1]}, "base": {"data": {}}},
            "cell seed=1: invalid configuration: base: data.corpus: required key is missing",
        ),
    ],
)
def test_a_bad_grid_is_one_line_naming_the_file_and_key(
    tmp_path: Path, change: dict[str, Any], message: str
) -> None:
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(_grid(**change)))
    with pytest.raises(GridError) as raised:
        load_grid(path)
    text = str(raised.value)
    assert "\n" not in text
    assert text.startswith(f"{path}: ")
    assert message in text


def test_the_cli_shows_a_bad_grid_as_one_error_line(tmp_path: Path) -> None:
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(_grid(base="missing.yaml", axes={"seed": [1]})))
    result = CliRunner().invoke(app, ["sweep", str(path)])
    assert result.exit_code == 2
    assert (
        result.stderr.strip()
        == f"error: {path}: base: no run config file at {tmp_path / 'missing.yaml'}"
    )


def test_workers_share_the_devices_out() -> None:
    assert device_shares(2, ["0", "1", "2", "3"]) == [["0", "2"], ["1", "3"]]
    assert device_shares(3, []) == [None, None, None]
    with pytest.raises(GridError, match="3 workers but only 2 devices"):
        device_shares(3, ["0", "1"])
