"""How the server answers: strict JSON, and every refusal as ``{"detail": "<one line>"}``.

Each refusal has the status of its cause (the list is in `peft_ser.serving.app`). FastAPI's own
validation errors, a list of records, are turned into one line naming the parameter and the
problem, and so is any `UserError` a request raises (422): a client never has to parse a
structure to learn why it was refused. An unexpected exception is a 500 whose detail names only
its type; the traceback goes to the server's log, not to the client.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from peft_ser.serving.batching import QueueFullError, RequestTimeoutError
from peft_ser.serving.limits import CLOSE, BodyTimeoutError, BodyTooLargeError
from peft_ser.serving.pool import UnknownModelError
from peft_ser.serving.security import SECURITY_HEADERS
from peft_ser.serving.uploads import UploadError
from peft_ser.utils.errors import UserError

RETRY_AFTER_SECONDS = 1
_SHOWN_INPUT = 40
"""Characters of a refused parameter's value quoted back, so a huge value is not echoed."""


class StrictJSONResponse(JSONResponse):
    """JSON without NaN or Infinity, which JSON does not have; such a value is a server error."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, allow_nan=False, ensure_ascii=False).encode("utf-8")


def one_line(message: object) -> str:
    return " ".join(str(message).splitlines())


def refusal(status: int, message: object, headers: Mapping[str, str] | None = None) -> Response:
    return JSONResponse({"detail": one_line(message)}, status_code=status, headers=headers)


def validation_message(errors: Sequence[Any]) -> str:
    """FastAPI's validation errors as one line: ``query parameter top_k: input should be
    greater than or equal to 1 (got '0')``, several joined by ``;``."""
    return "; ".join(_one_validation_error(error) for error in errors) or "invalid request"


def _one_validation_error(error: Any) -> str:
    where, *names = [str(part) for part in error.get("loc", ())] or ["request"]
    field = ".".join(names)
    place = f"{where} parameter {field}" if where in ("query", "path", "header") else where
    if where == "body" and field:
        place = f"body field {field}"
    message = str(error.get("msg", "invalid")).rstrip(".")
    message = message[:1].lower() + message[1:]
    given = error.get("input")
    if isinstance(given, str | int | float) and not isinstance(given, bool):
        text = str(given)
        shown = text if len(text) <= _SHOWN_INPUT else text[:_SHOWN_INPUT] + "..."
        message += f" (got {shown!r})"
    return f"{place}: {message}"


Handler = Callable[[Request, Exception], Awaitable[Response]]


def _answer(status: int, headers: Mapping[str, str] | None = None) -> Handler:
    async def handler(_: Request, error: Exception) -> Response:
        return refusal(status, error, headers)

    return handler


async def _upload(_: Request, error: Exception) -> Response:
    assert isinstance(error, UploadError)
    return refusal(error.status, error)


async def _http(_: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)
    if error.status_code in (204, 304) or error.status_code < 200:
        return Response(status_code=error.status_code, headers=error.headers)
    return refusal(error.status_code, error.detail, error.headers)


async def _invalid(_: Request, error: Exception) -> Response:
    assert isinstance(error, RequestValidationError)
    return refusal(422, validation_message(error.errors()))


async def _disconnected(_: Request, error: Exception) -> Response:
    return refusal(400, "the client closed the connection before its body arrived", CLOSE)


async def _internal(_: Request, error: Exception) -> Response:
    """Outside the middlewares (Starlette answers it last), so it adds their headers itself."""
    message = f"internal error ({type(error).__name__}); the server's log has the details"
    return refusal(500, message, SECURITY_HEADERS)


def add_error_handlers(app: FastAPI) -> None:
    """Every refusal as one line with the status of its cause (see the module's docstring)."""
    handlers: dict[type[Exception], Handler] = {
        UploadError: _upload,
        HTTPException: _http,
        RequestValidationError: _invalid,
        QueueFullError: _answer(503, {"Retry-After": str(RETRY_AFTER_SECONDS)}),
        BodyTooLargeError: _answer(413, CLOSE),
        BodyTimeoutError: _answer(408, CLOSE),
        ClientDisconnect: _disconnected,
        UnknownModelError: _answer(404),
        UserError: _answer(422),
        RequestTimeoutError: _answer(504),
        Exception: _internal,
    }
    for kind, handler in handlers.items():
        app.add_exception_handler(kind, handler)
