"""The `peft-ser` command line: a thin shell over the public Python functions."""

from __future__ import annotations

import typer

app = typer.Typer(
    help="Parameter-efficient fine-tuning of speech encoders for speech emotion recognition.",
    no_args_is_help=True,
    add_completion=False,
)
