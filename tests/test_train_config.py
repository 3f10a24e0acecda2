"""Run configuration: defaults are the paper's, overrides win, bad input names the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from peft_ser.config import ConfigError, RunConfig, load_run_config


def test_defaults_are_the_papers() -> None:
    config = load_run_config(overrides={"data.corpus": "iemocap"})
    assert (config.optim.lr, config.optim.betas, config.optim.weight_decay) == (
        5e-4,
        (0.9, 0.98),
        1e-4,
    )
    assert (config.optim.plateau_patience, config.optim.plateau_factor) == (5, 0.5)
    assert (config.optim.min_lr, config.optim.epochs, config.data.batch_size) == (5e-5, 30, 32)
    assert config.data.crop_seconds == 6.0
    assert config.augment.snr_db == (10.0, 30.0)
    assert config.augment.time_mask_fraction == (0.10, 0.15)


def test_overrides_win_over_the_file(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("model: {backbone: whisper-tiny, lora_rank: 4}\ndata: {corpus: iemocap}\n")
    config = load_run_config(path, {"model.lora_rank": 16, "data.folds": "1,2,Session5"})
    assert config.model.backbone == "whisper-tiny"
    assert config.model.lora_rank == 16
    assert config.data.folds == [1, 2, "Session5"]


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"optim.lrr": 1e-3}, "optim.lrr: unknown key; allowed keys: epochs, lr,"),
        ({"mixed_precision": "fp8"}, "'auto', 'no', 'bf16' or 'fp16'"),
        ({"feature_cache": "yes"}, "feature_cache: Input should be 'auto', 'on' or 'off'"),
        ({"data.batch_size": 0}, "data.batch_size: Input should be greater than or equal to 1"),
        ({"augment.snr_db": [30, 10]}, "snr_db: low 30.0 exceeds high 10.0"),
        ({"optim.class_weights": "balanced"}, "'inverse_frequency' or 'none'"),
    ],
)
def test_bad_values_name_the_key_and_the_allowed_values(
    overrides: dict[str, object], expected: str
) -> None:
    with pytest.raises(ConfigError) as error:
        load_run_config(overrides={"data.corpus": "iemocap", **overrides})
    assert expected in str(error.value)


def test_missing_corpus_and_bad_file_are_reported(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="data: required key is missing"):
        load_run_config()
    path = tmp_path / "run.yaml"
    path.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="mapping of sections"):
        load_run_config(path)


def test_config_round_trips_through_json() -> None:
    config = load_run_config(overrides={"data.corpus": "x", "model.method": "frozen"})
    assert RunConfig.model_validate(config.model_dump(mode="json")) == config


def test_config_file_problems_name_the_file_and_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.yaml: config file does not exist$"):
        load_run_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="is a directory, not a config file"):
        load_run_config(tmp_path)
    broken = tmp_path / "broken.yaml"
    broken.write_text("model:\n  backbone: whisper-tiny\n  method: [lora\ndata: {corpus: x}\n")
    with pytest.raises(ConfigError, match=r"broken\.yaml:4:\d+: invalid YAML \("):
        load_run_config(broken)


def test_a_bad_option_is_not_blamed_on_the_config_file(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("data: {corpus: x}\noptim: {lr: -1}\n")
    with pytest.raises(ConfigError) as error:
        load_run_config(path, {"optim.epochs": 0})
    lines = str(error.value).splitlines()[1:]
    assert lines == [
        "  option optim.epochs: Input should be greater than or equal to 1 (got 0)",
        f"  {path}: optim.lr: Input should be greater than 0 (got -1)",
    ]
    with pytest.raises(ConfigError, match=r"^invalid configuration: option data\.batch_size: "):
        load_run_config(path, {"data.batch_size": 0, "optim.lr": 0.1})


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("optim: {lr: .inf}", "optim.lr: Input should be a finite number (got inf)"),
        ("optim: {lr: .nan}", "optim.lr: Input should be a finite number (got nan)"),
        ("optim: {lr: 1e30}", "optim.lr: Input should be less than or equal to 10 (got '1e30')"),
        ("optim: {weight_decay: 2}", "optim.weight_decay: Input should be less than or equal to 1"),
        (
            "optim: {schedule: cosine, epochs: 3, warmup_epochs: 3}",
            "optim: warmup_epochs 3: must be below epochs (3)",
        ),
        ("optim: {betas: [0.9, 1.0]}", "optim.betas.1: Input should be less than 1 (got 1.0)"),
        ("optim: {grad_clip: .inf}", "optim.grad_clip: Input should be a finite number"),
        ("data: {corpus: x, folds: [1, 1]}", "data.folds: [1, 1]: fold 1 given more than once"),
        ("data: {corpus: x, crop_seconds: 0.001}", "data.crop_seconds: Input should be greater"),
        (
            "data: {corpus: x, audio_cache_gb: .inf}",
            "data.audio_cache_gb: Input should be a finite",
        ),
        (
            "model: {head_dim: 1000000000}",
            "model.head_dim: Input should be less than or equal to 8192",
        ),
        ("model: {prompt_length: 1000000000}", "model.prompt_length: Input should be less than"),
        ("model: {adapter_dim: 1000000000}", "model.adapter_dim: Input should be less than"),
        ("model: {labels: [calm, sad, calm]}", "'calm' is listed twice; give each name once"),
        ("model: {backbone: ../../../../../../../../etc}", "the folder holds no model"),
        ("seed: -1", "seed: Input should be greater than or equal to 0 (got -1)"),
        ("seed: 4294967296", "seed: Input should be less than 4294967296"),
    ],
)
def test_values_that_cannot_work_are_refused_naming_file_and_key(
    tmp_path: Path, line: str, expected: str
) -> None:
    path = tmp_path / "run.yaml"
    section = line.split(":")[0]
    path.write_text(line + ("\ndata: {corpus: x}\n" if section != "data" else "\n"))
    with pytest.raises(ConfigError) as error:
        load_run_config(path)
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(f"invalid configuration: {path}: ")
    assert expected in message


def test_folds_given_twice_on_the_command_line_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"option data\.folds: \[1, 1\]: fold 1 given more"):
        load_run_config(overrides={"data.corpus": "x", "data.folds": "1,1"})


@pytest.mark.parametrize("depth", [33, 200_000])
def test_absurd_nesting_ends_in_one_line_naming_the_file(tmp_path: Path, depth: int) -> None:
    path = tmp_path / "deep.yaml"
    path.write_text(
        "data: {corpus: x}\nmodel: {peft_config: {a: " + "[" * depth + "]" * depth + "}}\n"
    )
    with pytest.raises(ConfigError) as error:
        load_run_config(path)
    assert str(error.value) == f"{path}: nested more than 32 levels deep; no config needs that many"


def test_an_alias_bomb_is_refused_quickly(tmp_path: Path) -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError, match=r"expands to more than 100000 values"):
        load_run_config(path)


@pytest.mark.parametrize("spelling", ["fp32", "FP32", "float32", "no"])
def test_fp32_is_a_spelling_of_no_mixed_precision(spelling: str) -> None:
    """Inference's word for full precision reads the same in a run config."""
    config = load_run_config(overrides={"data.corpus": "x", "mixed_precision": spelling})
    assert config.mixed_precision == "no"
