"""`peft-ser cross-corpus`: a train × test UAR matrix over saved models, zoo models or runs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from peft_ser.cli.app import app


@app.command("cross-corpus")
def cross_corpus_command(
    train: Annotated[
        str,
        typer.Option(
            help="comma-separated saved model folders, zoo names, Hub repo ids or run "
            "directories (each completed fold's model, UARs averaged)"
        ),
    ],
    test: Annotated[str, typer.Option(help="comma-separated prepared corpora (folders or names)")],
    out: Annotated[Path, typer.Option(help="where matrix.csv, .png and .json go")] = Path(
        "cross-corpus"
    ),
    split: Annotated[
        str, typer.Option(help="all (every utterance) or test (every fold's test split)")
    ] = "all",
    balance: Annotated[
        bool, typer.Option(help="keep as many test utterances per class as the rarest has")
    ] = False,
    seed: Annotated[int, typer.Option(help="seed of the balancing draw")] = 0,
) -> None:
    """Score each model on each corpus over the classes they share (matched by name)."""
    from peft_ser.evaluation.cross_corpus import cross_corpus

    trains = [item.strip() for item in train.split(",") if item.strip()]
    tests = [item.strip() for item in test.split(",") if item.strip()]
    document = cross_corpus(trains, tests, out, split, balance, seed)
    names = list(next(iter(document["matrix"].values())))
    width = max(len(name) for name in document["matrix"]) + 2
    columns = [max(8, len(name) + 2) for name in names]
    header = "".join(f"{n:>{c}}" for n, c in zip(names, columns, strict=True))
    typer.echo(f"{'UAR':<{width}}{header}")
    for train_name, row in document["matrix"].items():
        cells = "".join(f"{row[n]['uar']:>{c}.3f}" for n, c in zip(names, columns, strict=True))
        typer.echo(f"{train_name:<{width}}{cells}")
    typer.echo(f"matrix: {out / 'matrix.csv'}, {out / 'matrix.png'}")
