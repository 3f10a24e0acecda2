"""The `peft-ser` command line: a thin shell over the public Python functions."""

from __future__ import annotations

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
