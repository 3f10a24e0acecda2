"""`peft-ser cache`: show and clear the persistent feature cache of frozen backbones."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from peft_ser.cli.app import App, app
from peft_ser.data.feature_store import ENV_VAR, FeatureStore

cache_app = App(help="The persistent feature cache of frozen backbones: show it, clear it.")
app.add_typer(cache_app, name="cache")

DirOption = Annotated[
    Path | None,
    typer.Option(
        "--dir", help=f"the cache folder (default ${ENV_VAR}, else ~/.cache/peft-ser/features)"
    ),
]


@cache_app.command("show")
def cache_show(directory: DirOption = None) -> None:
    """Entries and size per backbone fingerprint (backbone weights, front end, precision)."""
    store = FeatureStore(directory)
    rows = store.usage()
    total = sum(row.nbytes for row in rows)
    entries = sum(row.entries for row in rows)
    typer.echo(
        f"{store.root}: {entries} entries, {_size(total)} (budget {_size(store.budget_bytes)})"
    )
    for row in rows:
        typer.echo(f"  {row.group}  {row.entries:>8} entries  {_size(row.nbytes):>10}")


@cache_app.command("clear")
def cache_clear(
    directory: DirOption = None,
    fingerprint: Annotated[
        str | None, typer.Option(help="clear only the fingerprint(s) starting with this")
    ] = None,
) -> None:
    """Delete the cached states (all, or one backbone fingerprint's); they are recomputed
    when next needed."""
    store = FeatureStore(directory)
    freed = store.clear(fingerprint)
    typer.echo(f"{store.root}: freed {_size(freed)}")


def _size(nbytes: int) -> str:
    return f"{nbytes / 1e9:.3f} GB"
