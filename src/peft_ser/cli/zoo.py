"""`peft-ser zoo`: the released models' cached files and their hashes."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from peft_ser.cli.app import App, app
from peft_ser.zoo import ZOO

zoo_app = App(help="The released PEFT-SER models: their cached files and hashes.")
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
