"""Atomic file writes: a reader sees either the old file or the whole new one, never a part.

Data goes to a temporary file in the target's folder, which is then renamed over the target.
`tempfile.mkstemp` creates files readable by their owner only (mode 0600); the written file
gets the mode any ordinary file would get (0666 minus the umask), so results, models and
manifests stay readable by the collaborators and services the umask allows.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomic_with(path: str | os.PathLike[str], write: Callable[[str], object]) -> None:
    """Let ``write(temporary_path)`` fill a temporary file, then move it onto ``path``.

    The parent folder is created when needed; on any failure the temporary file is removed
    and ``path`` is left as it was. What ``write`` returns is ignored, so writers that return
    something (``Path.write_bytes`` returns a byte count) can be passed as they are.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(temporary)
        os.chmod(temporary, 0o666 & ~_umask())
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_atomic(path: str | os.PathLike[str], data: str | bytes) -> None:
    """Write text (UTF-8) or bytes to ``path`` atomically, with the umask's permissions."""
    payload = data.encode("utf-8") if isinstance(data, str) else data
    write_atomic_with(path, lambda temporary: Path(temporary).write_bytes(payload))
