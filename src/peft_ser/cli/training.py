"""`peft-ser train`, `evaluate`, `params` and `demo`."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from peft_ser.cli.app import app, log_to_stderr

PEFT_CONFIG_HELP = (
    "model.peft_config, the tuner of --method peft: a JSON or YAML mapping, or a file holding "
    """one, e.g. '{"peft_type": "IA3", "feedforward_modules": ["fc2"]}'"""
)


class ScoreFormat(str, Enum):
    """How `evaluate` prints its scores."""

    table = "table"
    json = "json"


@app.command("train")
def train_command(
    config: Annotated[Path | None, typer.Option(help="run config YAML (see configs/)")] = None,
    backbone: Annotated[str | None, typer.Option(help="model.backbone")] = None,
    method: Annotated[str | None, typer.Option(help="model.method")] = None,
    rank: Annotated[int | None, typer.Option(help="model.lora_rank")] = None,
    peft_config: Annotated[str | None, typer.Option(help=PEFT_CONFIG_HELP)] = None,
    corpus: Annotated[str | None, typer.Option(help="data.corpus: name or prepared dir")] = None,
    folds: Annotated[str | None, typer.Option(help="data.folds, e.g. 1,2")] = None,
    epochs: Annotated[int | None, typer.Option(help="optim.epochs")] = None,
    batch_size: Annotated[int | None, typer.Option(help="data.batch_size")] = None,
    lr: Annotated[float | None, typer.Option(help="optim.lr")] = None,
    num_workers: Annotated[int | None, typer.Option(help="data.num_workers")] = None,
    seed: Annotated[int | None, typer.Option(help="seed")] = None,
    output_dir: Annotated[Path | None, typer.Option(help="output_dir: the run directory")] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="any config key: --set data.crop_seconds=4 (YAML value)"),
    ] = None,
    resume: Annotated[bool, typer.Option(help="continue the run in output_dir")] = False,
) -> None:
    """Train on each selected fold (test the best dev epoch, or with optim.select last the
    last) and print a summary.

    Options override the config file; every other key is reachable with --set. Runs on CPU,
    one GPU, or several processes under `accelerate launch`.
    """
    import yaml

    from peft_ser.config import CLI_ALIASES, ConfigError, load_run_config
    from peft_ser.training import train

    tuner = read_peft_config(peft_config) if peft_config is not None else None
    given = {
        "backbone": backbone, "method": method, "rank": rank, "peft_config": tuner,
        "corpus": corpus, "folds": folds, "epochs": epochs, "batch_size": batch_size, "lr": lr,
        "num_workers": num_workers, "seed": seed, "output_dir": output_dir,
    }  # fmt: skip
    overrides = {CLI_ALIASES[k]: v for k, v in given.items() if v is not None}
    for item in set_ or []:
        key, separator, value = item.partition("=")
        if not separator:
            raise typer.BadParameter(f"{item!r}: expected key=value", param_hint="--set")
        try:
            overrides[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError:
            raise ConfigError(f"--set {item}: the value is not valid YAML") from None
    run_config = load_run_config(config, overrides)
    log_to_stderr()
    result = train(run_config, resume=resume)
    typer.echo(result.summary, nl=False)


@app.command("evaluate")
def evaluate_command(
    source: Annotated[
        str,
        typer.Argument(
            help="a run directory (each completed fold's model), a saved model directory, a Hub "
            "repo id or a zoo name"
        ),
    ],
    corpus: Annotated[
        str | None,
        typer.Option(help="prepared corpus (default: a run's own; required for one model)"),
    ] = None,
    folds: Annotated[
        str | None,
        typer.Option(help="folds, e.g. 1,2 (default: a run's, or all for one model)"),
    ] = None,
    split: Annotated[str, typer.Option(help="train, dev or test")] = "test",
    output_dir: Annotated[
        Path | None,
        typer.Option(
            help="where metrics and plots go (default: SOURCE/evaluation; evaluation/NAME for "
            "a zoo name)"
        ),
    ] = None,
    batch_size: Annotated[int, typer.Option(min=1)] = 32,
    format_: Annotated[
        ScoreFormat,
        typer.Option(
            "--format", help="table: what train prints; json: the mean and std of each score"
        ),
    ] = ScoreFormat.table,
) -> None:
    """Score trained models on a prepared corpus's folds: metrics (JSON, CSV) and plots.

    A run is scored fold by fold, each fold's model on its own fold. One model (a saved
    directory or a zoo name) is scored on SPLIT of every selected fold of --corpus: on the
    corpus it was trained on, choose the fold it was trained for with --folds (the other
    folds' test speakers were in its training data).

    Categorical models: UAR, accuracy, macro-F1 and confusion plots; attribute models: CCC,
    Pearson and RMSE per attribute, predictions.csv and attributes.png per fold; multitask
    models: both.
    """
    import json

    from peft_ser.config import DataConfig
    from peft_ser.evaluation import evaluate
    from peft_ser.evaluation.evaluate import evaluation_folder, evaluation_summary

    if split not in ("train", "dev", "test"):
        raise typer.BadParameter("choose train, dev or test", param_hint="--split")
    selected = DataConfig.model_validate({"corpus": "-", "folds": folds}).folds
    result = evaluate(source, corpus, selected, split, output_dir, batch_size)
    if format_ is ScoreFormat.json:
        typer.echo(json.dumps(result["overall"]["mean_std"], indent=1))
    else:
        out = evaluation_folder(source, output_dir)
        typer.echo(evaluation_summary(source, result, out), nl=False)


@app.command()
def params(
    backbone: Annotated[str, typer.Option(help="backbone name, hub id or local directory")] = (
        "whisper-tiny"
    ),
    method: Annotated[str, typer.Option(help="PEFT method")] = "lora",
    rank: Annotated[int, typer.Option(help="LoRA rank")] = 16,
    adapter_dim: Annotated[int, typer.Option(help="adapter bottleneck width")] = 128,
    prompt_length: Annotated[int, typer.Option(help="prompt vectors per layer")] = 5,
    peft_config: Annotated[str | None, typer.Option(help=PEFT_CONFIG_HELP)] = None,
    num_classes: Annotated[int, typer.Option(help="number of emotion classes")] = 4,
    tune_layers: Annotated[
        int | None, typer.Option(help="model.tune_layers: adapt only the top k encoder layers")
    ] = None,
) -> None:
    """Print trainable and total parameters, computed from configs alone (no weights, no network
    for named backbones). An option of another method than --method must keep its default."""
    from pydantic import ValidationError

    from peft_ser.config import ConfigError, ModelConfig, format_validation_error
    from peft_ser.models.ser_model import count_parameters, with_registry_names
    from peft_ser.models.tuning import METHODS
    from peft_ser.models.tuning.lora import NEEDS_A_TUNER
    from peft_ser.utils.errors import match_name

    settings: dict[str, Any] = {
        "backbone": backbone,
        "method": method,
        "lora_rank": rank,
        "adapter_dim": adapter_dim,
        "prompt_length": prompt_length,
        "labels": [f"class{i}" for i in range(num_classes)],
        "tune_layers": tune_layers,
    }
    if peft_config is not None:
        settings["peft_config"] = read_peft_config(peft_config)
    elif match_name(method, METHODS) == "peft":
        raise ConfigError(f"model.peft_config: {NEEDS_A_TUNER}; give it with --peft-config")
    try:
        config = with_registry_names(ModelConfig.model_validate(settings))
    except ValidationError as error:
        raise ConfigError(format_validation_error(error, ModelConfig)) from None
    count = count_parameters(config)
    typer.echo(f"backbone   {config.backbone}\nmethod     {config.method}")
    typer.echo(f"trainable  {count.trainable:,}\ntotal      {count.total:,}")
    typer.echo(f"share      {count.percent:.3f} %")


def read_peft_config(value: str) -> dict[str, Any]:
    """The tuner config ``--peft-config`` gives: a mapping written inline (JSON or YAML, it
    starts with ``{``) or the path of a JSON or YAML file holding one. What it holds is checked
    with the model config (`peft_ser.models.tuning.lora.PeftOptions`)."""
    import reprlib

    import yaml

    from peft_ser.config import TOO_DEEP, ConfigError, document_problem
    from peft_ser.models.tuning.lora import TUNER_EXAMPLE

    inline = value.lstrip().startswith("{")
    if not inline and not Path(value).is_file():
        raise ConfigError(
            f"--peft-config {value}: neither a mapping (e.g. {TUNER_EXAMPLE}) nor a file"
        )
    where = "--peft-config" if inline else f"--peft-config {value}"
    try:
        document = yaml.safe_load(value if inline else Path(value).read_text(encoding="utf-8"))
    except RecursionError:
        raise ConfigError(f"{where}: {TOO_DEEP}") from None
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        reason = getattr(error, "problem", None) or type(error).__name__
        raise ConfigError(f"{where}: not a JSON or YAML mapping ({reason})") from None
    problem = document_problem(document)
    if problem is not None:
        raise ConfigError(f"{where}: {problem}")
    if not isinstance(document, dict):
        raise ConfigError(
            f"{where}: a peft tuner config is a mapping with peft_type, e.g. {TUNER_EXAMPLE}; "
            f"got {reprlib.repr(document)}"
        )
    return document


@app.command()
def demo(
    config: Annotated[Path, typer.Option(help="run config of the demo")] = Path(
        "configs/demo.yaml"
    ),
    corpus: Annotated[
        Path | None, typer.Option(help="the demo corpus (CREMA-D layout; default: the config's)")
    ] = None,
    output_dir: Annotated[
        Path | None, typer.Option(help="where the demo writes (default: the config's)")
    ] = None,
    epochs: Annotated[int | None, typer.Option(help="override the config's epochs")] = None,
    seed: Annotated[int | None, typer.Option(help="override the config's seed")] = None,
) -> None:
    """Prepare the synthetic demo corpus, train Whisper tiny.en + LoRA on one fold, print the
    dev and test UAR, and predict one test clip with the trained model. Offline, a few
    minutes on CPU."""
    from peft_ser.demo.run import run_demo

    log_to_stderr()
    result = run_demo(config, corpus, output_dir, epochs, seed)
    prediction = result.prediction
    low, high = result.test_interval
    typer.echo(
        f"\ndev UAR           {result.dev_uar:.3f}  ({result.dev_clips} clips, the tested "
        f"epoch {result.tested_epoch})"
    )
    typer.echo(
        f"test UAR          {result.test_uar:.3f}  ({result.test_clips} clips; "
        f"95 % bootstrap interval {low:.2f}-{high:.2f})"
    )
    typer.echo(f"confusion matrix  {result.confusion_png}")
    typer.echo(f"trained weights   {result.model_dir}")
    typer.echo(f"\n$ peft-ser predict {result.clip} --model {result.model_dir}")
    probabilities = "  ".join(f"{k} {v:.2f}" for k, v in prediction.probabilities.items())
    typer.echo(f"{result.clip.name}: {prediction.label} (true: {result.true_label})")
    typer.echo(f"  {probabilities}")
