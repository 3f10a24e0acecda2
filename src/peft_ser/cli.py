"""The `peft-ser` command line: a thin shell over the public Python functions."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from peft_ser.corpora.registry import CORPORA, describe_corpora

app = typer.Typer(
    help="Parameter-efficient fine-tuning of speech encoders for speech emotion recognition.",
    no_args_is_help=True,
    add_completion=False,
)


_PREPARE_HELP = """Read an emotion corpus as its owners ship it into a prepared directory:
manifest.csv, folds.json, labels.json, report.csv (every excluded item with its reason),
summary.json and summary.txt. Exits non-zero only when the root is not the corpus or
nothing usable is left.

Corpora:

"""


@app.command(help=_PREPARE_HELP + describe_corpora())
def prepare(
    corpus: Annotated[str, typer.Argument(help=f"one of: {', '.join(CORPORA)}")],
    root: Annotated[Path, typer.Option(help="the corpus folder (or the folder above it)")],
    out: Annotated[
        Path | None, typer.Option(help="output folder (default: prepared/<corpus>)")
    ] = None,
    labels: Annotated[
        str,
        typer.Option(
            help="paper4 (Neutral, Angry, Sad, Happy), full (every emotion class), "
            "or a corpus extra (ravdess: paper4+calm merges calm into Neutral)"
        ),
    ] = "paper4",
    protocol: Annotated[
        str | None, typer.Option(help="fold protocol, see the corpora above (default: paper)")
    ] = None,
    check_silence: Annotated[
        bool, typer.Option(help="decode each file up to its first signal to find silent files")
    ] = True,
) -> None:
    from peft_ser.corpora import CorpusError, prepare_corpus

    try:
        prepare_corpus(
            corpus, root, out, labels, protocol, check_silence=check_silence, verbose=True
        )
    except CorpusError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from error


@app.command()
def preprocess(
    prepared: Annotated[Path, typer.Argument(help="a folder written by `peft-ser prepare`")],
    cache_dir: Annotated[
        Path | None, typer.Option(help="cache folder (default: <prepared>/audio_cache)")
    ] = None,
    sample_rate: Annotated[int, typer.Option(help="target rate in Hz")] = 16000,
) -> None:
    """Decode every manifest utterance to mono float32 at the target rate into an on-disk
    cache keyed by path, size, mtime and rate; unchanged files are skipped, changed ones redone."""
    from peft_ser.corpora import preprocess_corpus

    result = preprocess_corpus(prepared, cache_dir, sample_rate, verbose=True)
    typer.echo(
        f"decoded {result.computed}, already cached {result.cached}, failed {len(result.failed)}"
    )
    for problem in result.failed:
        typer.echo(f"  {problem.path}: {problem.detail}", err=True)
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
        str, typer.Option("--model", "-m", help="a model-zoo name or a saved model folder")
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
) -> None:
    """Predict the emotion of each recording; long ones also get a prediction per window.

    Unreadable inputs are reported on stderr and skipped.

    Exit status: 0 all predicted; 1 some failed (the others are written); 2 none predicted.
    """
    from tqdm import tqdm

    from peft_ser.inference import (
        Failure,
        find_audio_inputs,
        format_predictions,
        iter_predictions,
        load_model,
    )

    paths = find_audio_inputs(inputs)
    try:
        results = iter_predictions(
            paths, model=load_model(model, device), batch_size=batch_size, window=window, hop=hop
        )
    except (ValueError, FileNotFoundError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from error
    predictions = []
    with tqdm(total=len(paths), unit="file", desc="predict") as progress:
        for result in results:
            if isinstance(result, Failure):
                progress.write(f"skipped {result.error}", file=progress.fp)
            else:
                predictions.append(result)
            progress.update()
    typer.echo(f"predicted {len(predictions)} of {len(paths)} inputs", err=True)
    if not predictions:
        raise typer.Exit(2)
    text = format_predictions(predictions, output_format.value)
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
    if len(predictions) < len(paths):
        raise typer.Exit(1)


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
    from peft_ser.config import ModelConfig
    from peft_ser.model import count_parameters

    config = ModelConfig(
        backbone=backbone,
        method=method,
        lora_rank=rank,
        adapter_dim=adapter_dim,
        prompt_length=prompt_length,
        labels=[f"class{i}" for i in range(num_classes)],
    )
    count = count_parameters(config)
    typer.echo(f"backbone   {backbone}\nmethod     {method}")
    typer.echo(f"trainable  {count.trainable:,}\ntotal      {count.total:,}")
    typer.echo(f"share      {count.percent:.3f} %")
