"""What the server refuses before any work: bodies over the size limit and missing API keys.

The size limit is enforced twice: a declared ``Content-Length`` over it is answered at once,
and the bytes actually received are counted, so a chunked or lying body is cut off as soon as
it passes the limit instead of being stored.
"""

from __future__ import annotations

import hmac
import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyTooLargeError(Exception):
    """A request body over the size limit (HTTP 413)."""


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
            await _refuse(send, too_large_message(self.max_bytes))
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


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _refuse(send: Send, message: str) -> None:
    body = json.dumps({"detail": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def key_matches(given: str | None, expected: str) -> bool:
    """Whether ``given`` is the API key, compared in constant time (no timing oracle)."""
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())
