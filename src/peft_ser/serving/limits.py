"""What the server refuses about a request's body: too large, or too slow to arrive.

The size limit is enforced twice: a declared ``Content-Length`` over it is answered at once,
and the bytes actually received are counted, so a chunked or lying body is cut off as soon as
it passes the limit instead of being stored. A body must also arrive within the request's
`Deadline`: a client that sends part of it and then nothing is answered 408 when the time is up,
so a stalled upload holds no socket and no temporary file for longer than ``--timeout``.
"""

from __future__ import annotations

import asyncio
import json
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyTooLargeError(Exception):
    """A request body over the size limit (HTTP 413)."""


class BodyTimeoutError(Exception):
    """A request body that did not arrive within the request's time (HTTP 408)."""


def too_large_message(limit: int) -> str:
    return f"request body is larger than this server's limit of {limit} bytes"


class BodySizeLimit:
    """ASGI middleware: at most ``max_bytes`` of request body per request."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await send_refusal(send, 413, too_large_message(self.max_bytes))
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLargeError(too_large_message(self.max_bytes))
            return message

        await self.app(scope, counted, send)


class Deadline:
    """The moment a request's time is up, on the monotonic clock."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._end = time.monotonic() + seconds

    def left(self) -> float:
        return max(0.0, self._end - time.monotonic())

    def bound(self, receive: Receive) -> Receive:
        """``receive``, raising `BodyTimeoutError` when the body has not arrived in time."""

        async def bounded() -> Message:
            try:
                return await asyncio.wait_for(receive(), self.left())
            except asyncio.TimeoutError:  # not the builtin TimeoutError before Python 3.11
                raise BodyTimeoutError(
                    f"the request body did not arrive within {self.seconds:g} s"
                ) from None

        return bounded


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


CLOSE = {"Connection": "close"}
"""Sent with a refusal made before the body was read whole: the connection cannot be reused."""


async def send_refusal(
    send: Send, status: int, message: str, headers: dict[str, str] | None = None
) -> None:
    """Answer ``{"detail": message}`` with ``status`` from an ASGI middleware."""
    body = json.dumps({"detail": message}).encode()
    fields = {"content-type": "application/json", "content-length": str(len(body))}
    fields.update({name.lower(): value for name, value in (headers or {}).items()})
    raw = [(name.encode(), value.encode("latin-1")) for name, value in fields.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})
