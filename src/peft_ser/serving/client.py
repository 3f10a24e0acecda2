"""A client for ``/v1/stream``: a recording or live samples in, one answer per window out.

Needs only numpy, soundfile, soxr (through `peft_ser.data.audio`) and the ``websockets``
package, no torch: it runs where the audio is, the model runs on the server.

    for window in stream_file("ws://127.0.0.1:8000", "call.wav", model="calm", window=2):
        print(window["start"], window["label"])
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import numpy as np

from peft_ser.data.audio import SAMPLE_RATE, load_audio
from peft_ser.utils.errors import InvalidRequestError

FRAME_SECONDS = 0.25


def stream_url(
    server: str, model: str | None = None, window: float | None = None, hop: float | None = None
) -> str:
    """The ``/v1/stream`` address on ``server`` (``ws://host:port``, or ``http://``, which
    becomes ``ws://``) with the given settings."""
    if server.startswith(("http://", "https://")):
        server = "ws" + server[len("http") :]
    if not server.startswith(("ws://", "wss://")):
        raise InvalidRequestError(f"server {server!r}: give ws://host:port or http://host:port")
    query = {
        name: value
        for name, value in {"model": model, "window": window, "hop": hop}.items()
        if value is not None
    }
    return f"{server.rstrip('/')}/v1/stream" + (f"?{urlencode(query)}" if query else "")


def stream_samples(
    url: str,
    frames: Iterable[np.ndarray],
    *,
    headers: dict[str, str] | None = None,
) -> Iterator[dict[str, Any]]:
    """Send 16 kHz mono float32 ``frames`` to ``url`` and yield each window's answer as it
    comes, the closing ``{"event": "end", ...}`` last. A refusal raises `InvalidRequestError`
    with the server's message."""
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    with connect(url, additional_headers=headers or {}) as socket:
        try:
            for frame in frames:
                socket.send(np.ascontiguousarray(frame, dtype="<f4").tobytes())
                yield from _ready(socket)
            socket.send(json.dumps({"event": "end"}))
            for raw in socket:
                yield _answer(raw)
        except ConnectionClosed as closed:
            yield from _ready(socket)  # the refusal sent before the close, if it arrived
            raise InvalidRequestError(f"the server closed the stream ({closed})") from None


def stream_file(
    server: str,
    path: str | os.PathLike[str],
    *,
    model: str | None = None,
    window: float | None = None,
    hop: float | None = None,
    realtime: bool = False,
    api_key: str | None = None,
) -> Iterator[dict[str, Any]]:
    """Stream a recording (any format and rate `load_audio` reads) in 0.25-s frames; with
    ``realtime``, at the pace a microphone would send it."""
    samples = load_audio(Path(path))
    url = stream_url(server, model, window, hop)
    headers = {"X-API-Key": api_key} if api_key else None
    yield from stream_samples(url, frames_of(samples, realtime=realtime), headers=headers)


def frames_of(samples: np.ndarray, *, realtime: bool = False) -> Iterator[np.ndarray]:
    """``samples`` in `FRAME_SECONDS` frames; with ``realtime``, each frame when its last
    sample would have been heard."""
    step = round(FRAME_SECONDS * SAMPLE_RATE)
    started = time.monotonic()
    for start in range(0, len(samples), step):
        if realtime:
            time.sleep(max(0.0, started + (start + step) / SAMPLE_RATE - time.monotonic()))
        yield samples[start : start + step]


def _ready(socket: Any) -> Iterator[dict[str, Any]]:
    """Answers that have already arrived, without waiting for more."""
    from websockets.exceptions import ConnectionClosed

    while True:
        try:
            raw = socket.recv(timeout=0)
        except (TimeoutError, ConnectionClosed):
            return
        yield _answer(raw)


def _answer(raw: str | bytes) -> dict[str, Any]:
    """A message of the server; a refusal raises `InvalidRequestError` with its reason."""
    message: dict[str, Any] = json.loads(raw)
    if "error" in message:
        raise InvalidRequestError(f"the server refused the stream: {message['error']}")
    return message
