"""The exception every user mistake is raised as, so the command line can show it as one line.

A `UserError` says what the user asked for and why it cannot be done (a file that is not a
model, an unknown backbone name, a fold that does not exist); its message names the file or
key and the problem, and suggests the fix where there is one. The command line prints it as
``error: <message>`` and exits with status 2 instead of showing a traceback (``--debug`` or
``PEFT_SER_DEBUG=1`` shows the traceback). Anything else that escapes is a bug in peft-ser.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class UserError(Exception):
    """A mistake in the input or the request, not a bug; the message is shown as is."""


class InvalidRequestError(UserError, ValueError):
    """A call that cannot be served as asked: malformed inputs, impossible settings, a device
    this machine lacks. Raised at the call, before any model is loaded or input decoded."""


def suggest(name: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``choices``, or an empty string."""
    options = list(choices)
    lowered = {choice.lower(): choice for choice in options}
    close = difflib.get_close_matches(name.lower(), list(lowered), n=1, cutoff=0.6)
    return f" (did you mean {lowered[close[0]]!r}?)" if close else ""


def match_name(name: str, choices: Iterable[str]) -> str | None:
    """``name`` if it is one of ``choices``, else the only choice equal to it ignoring case."""
    options = list(choices)
    if name in options:
        return name
    folded = [choice for choice in options if choice.casefold() == name.casefold()]
    return folded[0] if len(folded) == 1 else None
