"""The `peft-ser` application: its options and how every command reports user errors."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Annotated, Any

import typer

from peft_ser.utils.errors import UserError, environment_problem, missing_dependency

DEBUG_ENV = "PEFT_SER_DEBUG"
"""Set to 1 (or pass ``--debug``) to see the full traceback of an error, for bug reports."""


def _debugging() -> bool:
    return os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")


def _reporting_user_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """Show a `UserError`, a failure of the machine or of a given path (a full or read-only
    disk, a file where a folder was asked for), or an optional dependency the install lacks, as
    one ``error:`` line and exit 2, unless debugging. Every write peft-ser makes is atomic, so
    nothing complete is lost by stopping."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except UserError as error:
            if _debugging():
                raise
            typer.echo(f"error: {error}", err=True)
            raise typer.Exit(2) from None
        except OSError as error:
            problem = environment_problem(error)
            if problem is None or _debugging():
                raise
            typer.echo(f"error: {problem}", err=True)
            raise typer.Exit(2) from None
        except ImportError as error:
            missing = missing_dependency(error)
            if missing is None or _debugging():
                raise
            typer.echo(f"error: {missing}", err=True)
            raise typer.Exit(2) from None

    return wrapper


class App(typer.Typer):
    """A Typer app whose every command reports user errors as one line (see `UserError`)."""

    def command(self, *args: Any, **kwargs: Any) -> Callable[[Callable[..., Any]], Any]:
        register = super().command(*args, **kwargs)
        return lambda function: register(_reporting_user_errors(function))


app = App(
    help="Parameter-efficient fine-tuning of speech encoders for speech emotion recognition.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def log_to_stderr() -> None:
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
