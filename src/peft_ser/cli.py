"""The `peft-ser` command line: a thin shell over the public Python functions."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from peft_ser.corpora.prepare import MIN_DURATION
from peft_ser.corpora.registry import CORPORA, describe_corpora
from peft_ser.errors import UserError
from peft_ser.zoo import ZOO

DEBUG_ENV = "PEFT_SER_DEBUG"
"""Set to 1 (or pass ``--debug``) to see the full traceback of an error, for bug reports."""


def _debugging() -> bool:
    return os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")


def _reporting_user_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """Show a `UserError` as one ``error:`` line and exit 2, unless debugging."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except UserError as error:
            if _debugging():
                raise
            typer.echo(f"error: {error}", err=True)
            raise typer.Exit(2) from None

    return wrapper


class _App(typer.Typer):
    """A Typer app whose every command reports user errors as one line (see `UserError`)."""

    def command(self, *args: Any, **kwargs: Any) -> Callable[[Callable[..., Any]], Any]:
        register = super().command(*args, **kwargs)
        return lambda function: register(_reporting_user_errors(function))


app = _App(
    help="Parameter-efficient fine-tuning of speech encoders for speech emotion recognition.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _log_to_stderr() -> None:
    """One plain line per epoch (and per warning) on stderr: readable in a terminal, a file or
    a pipe, where progress bars are not drawn."""
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")


@app.callback()
def _options(
    debug: Annotated[
        bool,
        typer.Option("--debug", help=f"show full tracebacks of errors (or set {DEBUG_ENV}=1)"),
    ] = False,
) -> None:
    if debug:
        os.environ[DEBUG_ENV] = "1"


_PREPARE_HELP = """Read an emotion corpus as its owners ship it, or your own labelled clips,
into a prepared directory: manifest.csv, folds.json, labels.json, report.csv (every excluded
item with its reason), summary.json and summary.txt (with a leakage check: the speakers each
fold's splits share). A corpus too small for the protocol's folds (fewer speakers or
sessions than folds) gets as many speaker-independent folds as it allows, with a warning.

Your own data: `prepare table --manifest clips.csv` (CSV, TSV, JSONL or Parquet; columns
path and label, optionally speaker, gender, session, key, split, fold, start, end) or
`prepare folder --root data/` (one sub-folder per label). Classes come from the data or
--labels; folds from the table's split or fold column, else speaker-independent k-fold
(--folds-k, --seed), or utterance-level with --split-by utterance when speakers are unknown.

Exit status: 0 when the prepared directory is written (warnings or not); 2 when the root is
missing or not the corpus, an option is unknown, or nothing usable is left (no utterance,
fewer than 2 classes, or not one fold with separate train, dev and test speakers).

Corpora:

"""

_OWN_DATA_ONLY = ("--columns", "--speaker-pattern", "--split-by", "--folds-k", "--seed", "--name")


@app.command(help=_PREPARE_HELP + describe_corpora())
def prepare(
    corpus: Annotated[str, typer.Argument(help=f"one of: {', '.join(CORPORA)}; or table, folder")],
    root: Annotated[
        Path | None,
        typer.Option(help="the corpus folder (or the folder above it); folder: the label folders"),
    ] = None,
    manifest: Annotated[
        Path | None, typer.Option(help="table: the CSV, TSV, JSONL or Parquet file of clips")
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="output folder (default: prepared/<corpus>)")
    ] = None,
    labels: Annotated[
        str | None,
        typer.Option(
            help="paper4 (Neutral, Angry, Sad, Happy; the default of named corpora), full "
            "(every emotion class), a corpus extra (ravdess: paper4+calm), or a mapping of "
            "raw labels: 'neu=Neutral,hap+exc=Happy,sad' (others are left out); table and "
            "folder: every label of the data, sorted, unless mapped"
        ),
    ] = None,
    protocol: Annotated[
        str | None, typer.Option(help="fold protocol, see the corpora above (default: paper)")
    ] = None,
    columns: Annotated[
        str | None,
        typer.Option(help="table: our column names → yours, e.g. 'path=file,label=emotion'"),
    ] = None,
    speaker_pattern: Annotated[
        str | None,
        typer.Option(
            help="folder: regular expression finding the speaker in each file's path below "
            "its label folder, e.g. '^(?P<speaker>[^_]+)_'"
        ),
    ] = None,
    split_by: Annotated[
        str | None,
        typer.Option(
            help="table/folder without split or fold column: speaker (default; needs a "
            "speaker) or utterance (speaker-dependent folds, recorded as such)"
        ),
    ] = None,
    folds_k: Annotated[
        int | None, typer.Option(help="table/folder: number of generated folds (default 5)")
    ] = None,
    seed: Annotated[
        int | None, typer.Option(help="table/folder: seed of the generated folds (default 0)")
    ] = None,
    min_per_class: Annotated[
        int | None,
        typer.Option(
            help="leave out classes with fewer usable utterances (default: 1 for table and "
            "folder, 0 for named corpora, which keep every class of their label set)"
        ),
    ] = None,
    min_duration: Annotated[
        float, typer.Option(help="seconds; shorter clips and segments are too_short")
    ] = MIN_DURATION,
    name: Annotated[
        str | None,
        typer.Option(help="table/folder: corpus name (default: the table's or folder's name)"),
    ] = None,
    check_silence: Annotated[
        bool,
        typer.Option(
            help="decode each file up to its first signal to find silent files (files stored "
            "as floats are read to the end either way, to find NaN and inf samples)"
        ),
    ] = True,
) -> None:
    from peft_ser.corpora import OwnDataOptions, prepare_corpus, prepare_folder, prepare_table
    from peft_ser.corpora.registry import own_data_kind
    from peft_ser.corpora.table import parse_columns

    kind = own_data_kind(corpus)
    values = (columns, speaker_pattern, split_by, folds_k, seed, name)
    given = dict(zip(_OWN_DATA_ONLY, values, strict=True))
    if kind is None:
        misplaced = [option for option, value in given.items() if value is not None]
        misplaced += ["--manifest"] if manifest is not None else []
        if misplaced:
            raise UserError(f"{', '.join(misplaced)}: only for table and folder corpora")
        if root is None:
            raise UserError(f"prepare {corpus}: --root is required (the corpus folder)")
        prepare_corpus(
            corpus, root, out, labels or "paper4", protocol, check_silence=check_silence,
            min_duration=min_duration, min_per_class=min_per_class or 0, verbose=True,
        )  # fmt: skip
        return
    if protocol is not None:
        raise UserError("--protocol: table and folder folds come from --split-by and --folds-k")
    options = OwnDataOptions(
        labels=labels,
        min_per_class=1 if min_per_class is None else min_per_class,
        folds_k=5 if folds_k is None else folds_k,
        seed=seed or 0,
        split_by=split_by or "speaker",  # type: ignore[arg-type]
        min_duration=min_duration,
        check_silence=check_silence,
    )
    if kind == "table":
        if manifest is None or root is not None or speaker_pattern is not None:
            raise UserError("prepare table: give the table with --manifest (no --root, no "
                            "--speaker-pattern)")  # fmt: skip
        mapping = parse_columns(columns or "")
        prepare_table(manifest, out, columns=mapping, options=options, name=name, verbose=True)
        return
    if root is None or manifest is not None or columns is not None:
        raise UserError("prepare folder: give the folder with --root (no --manifest, no --columns)")
    prepare_folder(
        root, out, speaker_pattern=speaker_pattern, options=options, name=name, verbose=True
    )


@app.command()
def preprocess(
    prepared: Annotated[Path, typer.Argument(help="a folder written by `peft-ser prepare`")],
    cache_dir: Annotated[
        Path | None, typer.Option(help="cache folder (default: <prepared>/audio_cache)")
    ] = None,
    sample_rate: Annotated[int, typer.Option(help="target rate in Hz")] = 16000,
) -> None:
    """Decode every manifest utterance to mono float32 at the target rate into an on-disk
    cache keyed by path, size, mtime and rate; unchanged files are skipped, changed ones redone.

    Files that fail are listed on stderr with the reason `prepare` uses (e.g. non_finite_audio).
    Exit status: 0 when at least one utterance is cached, 1 when every one failed, 2 when the
    folder is not a prepared corpus.
    """
    from collections import Counter

    from peft_ser.corpora import preprocess_corpus

    result = preprocess_corpus(prepared, cache_dir, sample_rate, verbose=True)
    reasons = Counter(problem.reason for problem in result.failed)
    counts = ", ".join(f"{reason} {count}" for reason, count in sorted(reasons.items()))
    by_reason = f" ({counts})" if counts else ""
    typer.echo(
        f"decoded {result.computed}, already cached {result.cached}, "
        f"failed {len(result.failed)}{by_reason}"
    )
    for problem in result.failed:
        typer.echo(f"  {problem.reason}: {problem.path}: {problem.detail}", err=True)
    if result.failed and not result.computed + result.cached:
        raise typer.Exit(1)


class OutputFormat(str, Enum):
    table = "table"
    json = "json"
    csv = "csv"


@app.command()
def predict(
    inputs: Annotated[
        list[str],
        typer.Argument(
            help="audio files, folders (searched recursively for wav, flac, ogg, mp3) "
            "or glob patterns"
        ),
    ],
    model: Annotated[
        str,
        typer.Option(
            "--model",
            "-m",
            help="a saved model folder or a model-zoo name: " + ", ".join(ZOO),
        ),
    ],
    output_format: Annotated[
        OutputFormat, typer.Option("--format", "-f", help="how to write the predictions")
    ] = OutputFormat.table,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="write to this file, not stdout")
    ] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="clips or windows per batch")] = 8,
    window: Annotated[
        float | None,
        typer.Option(
            help="seconds; a longer recording is cut into windows of this length "
            "(default: whole up to 30 s, else 10-s windows)"
        ),
    ] = None,
    hop: Annotated[
        float | None,
        typer.Option(help="seconds between window starts (default: half a window)"),
    ] = None,
    device: Annotated[
        str | None, typer.Option(help="cpu, cuda, cuda:1, ... (default: cuda if available)")
    ] = None,
    backbone: Annotated[
        str | None,
        typer.Option(
            help="where the pre-trained backbone is when not at its usual place: a local "
            "folder (hub mirror, moved checkpoint), a hub id or a CTranslate2 folder"
        ),
    ] = None,
    cache_folder: Annotated[
        Path | None,
        typer.Option(
            help="zoo names: the folder of the released files, in peft-ser's or the original "
            "package's layout (default: $PEFT_SER_CACHE or ~/.cache/peft-ser, then the "
            "working directory)"
        ),
    ] = None,
    dtype: Annotated[
        str, typer.Option(help="compute dtype: float32, float16 or bfloat16")
    ] = "float32",
) -> None:
    """Predict the emotion of each recording; long ones also get a prediction per window.

    Inputs that cannot be predicted (unreadable, empty, NaN samples, a folder without audio,
    a pattern matching nothing) are reported on stderr and skipped. The output path, the
    device and the dtype are checked before the model is loaded.

    Exit status: 0 all predicted; 1 some failed (the others are written); 2 none predicted,
    or a wrong option or model (one error line).
    """
    import sys

    from peft_ser.inference import (
        Failure,
        iter_predictions,
        load_model,
        resolve_device,
        resolve_dtype,
    )
    from peft_ser.predict_io import (
        check_output_path,
        find_audio_inputs,
        format_predictions,
        write_predictions,
    )
    from peft_ser.progress import progress_bar

    if output is not None:
        check_output_path(output)
    target = resolve_device(device)
    compute_dtype = resolve_dtype(dtype)
    found = find_audio_inputs(inputs)
    for failure in found.failures:
        typer.echo(f"skipped {failure.error}", err=True)
    predictions = []
    if found.paths:
        results = iter_predictions(
            found.paths,
            model=load_model(
                model, target, cache_folder=cache_folder, backbone=backbone, dtype=compute_dtype
            ),
            batch_size=batch_size,
            window=window,
            hop=hop,
        )
        with progress_bar(total=len(found.paths), unit="file", desc="predict") as progress:
            for result in results:
                if isinstance(result, Failure):
                    progress.write(f"skipped {result.error}", file=sys.stderr)
                else:
                    predictions.append(result)
                progress.update()
    typer.echo(f"predicted {len(predictions)} of {found.count} inputs", err=True)
    if not predictions:
        raise typer.Exit(2)
    text = format_predictions(predictions, output_format.value)
    if output is None:
        typer.echo(text, nl=False)
    else:
        write_predictions(text, output)
    if len(predictions) < found.count:
        raise typer.Exit(1)


@app.command("train")
def train_command(
    config: Annotated[Path | None, typer.Option(help="run config YAML (see configs/)")] = None,
    backbone: Annotated[str | None, typer.Option(help="model.backbone")] = None,
    method: Annotated[str | None, typer.Option(help="model.method")] = None,
    rank: Annotated[int | None, typer.Option(help="model.lora_rank")] = None,
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
    """Train on each selected fold (test at the best dev epoch) and print a summary.

    Options override the config file; every other key is reachable with --set. Runs on CPU,
    one GPU, or several processes under `accelerate launch`.
    """
    import yaml

    from peft_ser.config import CLI_ALIASES, ConfigError, load_run_config
    from peft_ser.training import train

    given = {
        "backbone": backbone, "method": method, "rank": rank, "corpus": corpus,
        "folds": folds, "epochs": epochs, "batch_size": batch_size, "lr": lr,
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
    _log_to_stderr()
    result = train(run_config, resume=resume)
    typer.echo(result.summary, nl=False)


@app.command("evaluate")
def evaluate_command(
    source: Annotated[Path, typer.Argument(help="a run directory or a saved model directory")],
    corpus: Annotated[
        str | None, typer.Option(help="prepared corpus (required for a model directory)")
    ] = None,
    folds: Annotated[str | None, typer.Option(help="folds, e.g. 1,2 (default: all)")] = None,
    split: Annotated[str, typer.Option(help="train, dev or test")] = "test",
    output_dir: Annotated[
        Path | None, typer.Option(help="where metrics and plots go (default: SOURCE/evaluation)")
    ] = None,
    batch_size: Annotated[int, typer.Option(min=1)] = 32,
) -> None:
    """Score trained models on a prepared corpus fold: metrics (JSON, CSV) and confusion plots."""
    import json

    from peft_ser.config import DataConfig
    from peft_ser.training import evaluate

    if split not in ("train", "dev", "test"):
        raise typer.BadParameter("choose train, dev or test", param_hint="--split")
    selected = DataConfig.model_validate({"corpus": "-", "folds": folds}).folds
    result = evaluate(source, corpus, selected, split, output_dir, batch_size)
    typer.echo(json.dumps(result["overall"]["mean_std"], indent=1))


@app.command()
def params(
    backbone: Annotated[str, typer.Option(help="backbone name, hub id or local directory")] = (
        "whisper-tiny"
    ),
    method: Annotated[str, typer.Option(help="PEFT method")] = "lora",
    rank: Annotated[int, typer.Option(help="LoRA rank")] = 16,
    adapter_dim: Annotated[int, typer.Option(help="adapter bottleneck width")] = 128,
    prompt_length: Annotated[int, typer.Option(help="prompt vectors per layer")] = 5,
    num_classes: Annotated[int, typer.Option(help="number of emotion classes")] = 4,
) -> None:
    """Print trainable and total parameters, computed from configs alone (no weights, no network
    for named backbones)."""
    from pydantic import ValidationError

    from peft_ser.config import ConfigError, ModelConfig, format_validation_error
    from peft_ser.model import count_parameters, with_registry_names

    settings = {
        "backbone": backbone,
        "method": method,
        "lora_rank": rank,
        "adapter_dim": adapter_dim,
        "prompt_length": prompt_length,
        "labels": [f"class{i}" for i in range(num_classes)],
    }
    try:
        config = with_registry_names(ModelConfig.model_validate(settings))
    except ValidationError as error:
        raise ConfigError(format_validation_error(error, ModelConfig)) from None
    count = count_parameters(config)
    typer.echo(f"backbone   {config.backbone}\nmethod     {config.method}")
    typer.echo(f"trainable  {count.trainable:,}\ntotal      {count.total:,}")
    typer.echo(f"share      {count.percent:.3f} %")


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
    test UAR, and predict one test clip with the trained model. Offline, a few minutes on CPU."""
    from peft_ser.demo import run_demo

    _log_to_stderr()
    result = run_demo(config, corpus, output_dir, epochs, seed)
    prediction = result.prediction
    low, high = result.test_interval
    typer.echo(f"\ndev UAR           {result.dev_uar:.3f}  ({result.dev_clips} clips, best epoch)")
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


zoo_app = _App(help="The released PEFT-SER models: their cached files and hashes.")
app.add_typer(zoo_app, name="zoo")


@zoo_app.command("pin")
def zoo_pin(
    name: Annotated[str, typer.Argument(help="a zoo name: " + ", ".join(ZOO))],
    cache_folder: Annotated[
        Path | None,
        typer.Option(help="the folder holding the files (default: as peft-ser predict)"),
    ] = None,
) -> None:
    """Record the sha256 of a released model's cached files, so a file that changes is refused.

    Run it once you trust the files (after a first download, or after placing the authors'
    files by hand). The hashes go to <name>.sha256 beside the files, are printed in
    sha256sum's format, and are checked each time the files are converted.
    """
    from peft_ser.zoo import pin

    for path, digest in pin(name, cache_folder).items():
        typer.echo(f"{digest}  {path}")
