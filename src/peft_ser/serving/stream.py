"""Emotion over a live stream: ``/v1/stream``, a WebSocket that answers each window as it fills.

The client sends binary frames of little-endian float32 mono PCM at 16 kHz (any number of
samples per frame, up to `MAX_FRAME_BYTES`) and, to finish, the text frame
``{"event": "end"}``. The server answers one JSON message per window as soon as the window's
samples have arrived and the model has scored it: ``{"start", "end", "label",
"probabilities"}`` (seconds from the stream's start), and after the end ``{"event": "end",
"windows": N, "seconds": S}`` before it closes normally.

The windows are those `peft-ser predict --segment window` cuts the same audio into, with the
same ``window`` and ``hop`` (`WindowCutter`): a window is final once a sample beyond its end has
arrived, and at the end of the stream the last window is aligned to the end (or a stream no
longer than a window is one segment), so each message equals the prediction's window for that
span. Memory per connection is bounded: the server keeps only the samples a window still needs,
at most a window and a hop. A stream longer than the server's ``max_seconds`` is closed with a
message saying so; refusals (a bad parameter, a malformed frame, a non-finite sample, an unknown
model) are one ``{"error": ...}`` message and a close with code 1008 (policy) or 1011 (server).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from fastapi import WebSocket, WebSocketDisconnect

from peft_ser.data.audio import SAMPLE_RATE
from peft_ser.inference.predict import Failure
from peft_ser.inference.segments import (
    Segmentation,
    SegmentPlan,
    Span,
    window_spans,
)
from peft_ser.serving.batching import Batcher, QueueFullError, RequestTimeoutError
from peft_ser.serving.pool import ModelPool, UnknownModelError
from peft_ser.serving.settings import ServeSettings
from peft_ser.utils.errors import InvalidRequestError

MAX_FRAME_BYTES = 4 * SAMPLE_RATE * 4
"""The largest binary frame: 4 s of float32 samples (a client sends a fraction of a second)."""
POLICY = 1008
SERVER_ERROR = 1011
WHOLE = Segmentation(segment="whole")


class StreamError(Exception):
    """A stream that cannot go on; the message is sent to the client before the close."""

    def __init__(self, message: str, code: int = POLICY) -> None:
        super().__init__(message)
        self.code = code


class WindowCutter:
    """The windows of `SegmentPlan.spans` in ``window`` mode, found while samples arrive.

    `feed` returns the windows that are final (a sample beyond their end has arrived), `finish`
    the rest once the stream's length is known. Only the samples a coming window needs are
    kept: from the next window's start, and the last ``window`` samples for the closing one.
    """

    def __init__(self, plan: SegmentPlan) -> None:
        self.plan = plan
        self.received = 0
        self.next_start = 0
        self._kept = np.zeros(0, dtype=np.float32)
        self._kept_from = 0  # the stream position of _kept[0]

    def feed(self, samples: np.ndarray) -> list[tuple[Span, np.ndarray]]:
        self._kept = np.concatenate([self._kept, samples])
        self.received += len(samples)
        ready = []
        while self.received > self.next_start + self.plan.window:  # final in every plan
            span = (self.next_start, self.next_start + self.plan.window)
            if self.received > self.plan.whole:  # longer than one segment: windows hold
                ready.append((span, self._cut(span)))
                self.next_start += self.plan.hop
            else:
                break
        if self.received > self.plan.whole:  # else the stream may yet be one whole segment
            self._forget_before(min(self.next_start, self.received - self.plan.window))
        return ready

    def finish(self) -> list[tuple[Span, np.ndarray]]:
        """The windows not yet given of the whole stream's plan (the last one aligned to the
        end, or the whole stream when it is no longer than a window). Those given are the
        plan's first ``next_start / hop``: windows every hop from 0, each ending before the
        stream did."""
        if self.received == 0:
            return []
        spans = window_spans(self.received, self.plan.whole, self.plan.window, self.plan.hop)
        given = self.next_start // self.plan.hop
        return [(span, self._cut(span)) for span in spans[given:]]

    def _cut(self, span: Span) -> np.ndarray:
        start, end = span[0] - self._kept_from, span[1] - self._kept_from
        return self._kept[start:end].copy()

    def _forget_before(self, position: int) -> None:
        if position > self._kept_from:
            self._kept = self._kept[position - self._kept_from :]
            self._kept_from = position


def stream_plan(
    pool: ModelPool, settings: ServeSettings, model: str | None, window: Any, hop: Any
) -> tuple[str, SegmentPlan]:
    """The served model's name and the checked window plan (`InvalidRequestError`,
    `UnknownModelError` otherwise), as ``predict --segment window`` checks them."""
    if model is None:
        if len(pool.names) != 1:
            raise InvalidRequestError(f"give model=NAME; this server has: {', '.join(pool.names)}")
        model = pool.names[0]
    served = pool.get(model)
    segmentation = Segmentation("window", _seconds(window), _seconds(hop), None, None)
    plan = segmentation.plan(limit=served.runner.max_samples)
    return served.name, plan


def _seconds(value: Any) -> Any:
    """A query value as a number when it reads as one; anything else is left for the plan's
    checks to refuse by name."""
    if value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return value


def samples_of(frame: bytes) -> np.ndarray:
    """A binary frame's float32 samples; a frame of no whole number of samples, too large, or
    holding a non-finite sample is refused."""
    if len(frame) > MAX_FRAME_BYTES:
        raise StreamError(f"a frame may hold at most {MAX_FRAME_BYTES} bytes; got {len(frame)}")
    if len(frame) % 4:
        raise StreamError(f"a frame holds float32 samples (4 bytes each); got {len(frame)} bytes")
    samples = np.frombuffer(frame, dtype="<f4").astype(np.float32)
    if not np.isfinite(samples).all():
        raise StreamError("a frame holds NaN or infinite samples")
    return samples


async def serve_stream(
    websocket: WebSocket,
    pool: ModelPool,
    batcher: Batcher,
    settings: ServeSettings,
    model: str | None,
    window: Any,
    hop: Any,
) -> None:
    """Run one stream from accept to close (see the module's description)."""
    await websocket.accept()
    try:
        name, plan = stream_plan(pool, settings, model, window, hop)
        cutter = WindowCutter(plan)
        count = 0
        async for frame in _frames(websocket):
            if frame is None:
                break
            for span, samples in cutter.feed(samples_of(frame)):
                await websocket.send_json(await _scored(batcher, name, span, samples, settings))
                count += 1
            if cutter.received > settings.max_seconds * SAMPLE_RATE:
                raise StreamError(f"a stream may last at most {settings.max_seconds:g} s")
            if count > settings.max_segments:
                raise StreamError(
                    f"a stream may be cut into at most {settings.max_segments} windows "
                    "(max_segments); use a longer hop"
                )
        for span, samples in cutter.finish():
            await websocket.send_json(await _scored(batcher, name, span, samples, settings))
            count += 1
        seconds = cutter.received / SAMPLE_RATE
        await websocket.send_json({"event": "end", "windows": count, "seconds": seconds})
        await websocket.close()
    except WebSocketDisconnect:
        return
    except (InvalidRequestError, UnknownModelError) as error:
        await _refuse(websocket, str(error), POLICY)
    except StreamError as error:
        await _refuse(websocket, str(error), error.code)


async def _frames(websocket: WebSocket) -> Any:
    """Binary frames as bytes, then None for ``{"event": "end"}``; other text is refused."""
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(message.get("code", 1000))
        if message.get("bytes") is not None:
            yield message["bytes"]
            continue
        if _is_end(message.get("text")):
            yield None
            return
        raise StreamError('text frames may only be {"event": "end"}')


def _is_end(text: str | None) -> bool:
    try:
        return bool(text) and json.loads(text or "") == {"event": "end"}
    except ValueError:
        return False


async def _scored(
    batcher: Batcher, model: str, span: Span, samples: np.ndarray, settings: ServeSettings
) -> dict[str, Any]:
    """One window's message: its times and the model's answer for its samples."""
    try:
        result = await batcher.score(model, samples, "stream", WHOLE, timeout=settings.timeout)
    except QueueFullError as error:
        raise StreamError(str(error), SERVER_ERROR) from None
    except RequestTimeoutError as error:
        raise StreamError(str(error), SERVER_ERROR) from None
    if isinstance(result, Failure):
        raise StreamError(str(result.error), SERVER_ERROR)
    return {
        "start": span[0] / SAMPLE_RATE,
        "end": span[1] / SAMPLE_RATE,
        "label": result.label,
        "probabilities": result.probabilities,
    }


async def _refuse(websocket: WebSocket, message: str, code: int) -> None:
    await websocket.send_json({"error": message})
    await websocket.close(code=code)
