"""The HTTP API and the page: FastAPI routes over a `ModelPool` and its `Batcher`.

Routes get the settings, the models and the batcher by dependency injection from the app's
state, so `create_app` is the only place they are wired and a test builds an app with its
own limits. Every refusal is a JSON ``{"detail": "<one line>"}`` with the status of its cause
(`responses`):

* 400: a ``Host`` this server does not answer to (`security`);
* 401: a missing or wrong API key (when one is set), on every route but ``/livez``;
* 404: a model this server was not started with;
* 408: a body that did not arrive within ``timeout`` seconds;
* 413: a body over ``max_upload_bytes``, audio over ``max_seconds`` or over the decoded-sample
  budget;
* 415: a body that is not decodable audio;
* 422: an empty body, audio with no usable samples, impossible or malformed parameters, more
  segments than ``max_segments``, a recording too long to predict whole or with no speech;
* 503 with ``Retry-After``: the queue of waiting requests is full;
* 504: no answer within ``timeout`` seconds.
* 500: a bug; the detail names only the exception's type, the traceback goes to the log.

Answers are strict JSON: a non-finite number is an error, never ``NaN`` in the output. The
segmentation options are checked (`peft_ser.inference.segments`) before the body is read, and the
number of windows once the recording's length is known, before it waits in the queue.
"""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from importlib.metadata import version
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request, WebSocket
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import UploadFile

from peft_ser.inference.predict import Failure, Prediction
from peft_ser.inference.segments import SEGMENT_MODES, Segmentation, SegmentPlan
from peft_ser.serving.batching import Batcher, RequestTimeoutError
from peft_ser.serving.limits import BodySizeLimit, Deadline
from peft_ser.serving.pool import ModelPool
from peft_ser.serving.responses import StrictJSONResponse, add_error_handlers
from peft_ser.serving.security import (
    API_KEY_HEADER,
    LIVENESS_PATH,
    ApiKeyGate,
    HostAllowList,
    SecurityHeaders,
)
from peft_ser.serving.settings import ServeSettings
from peft_ser.serving.stream import serve_stream
from peft_ser.serving.uploads import (
    SUPPORTED,
    AudioLimits,
    Clip,
    UploadError,
    display_name,
    read_clip,
)
from peft_ser.utils.errors import InvalidRequestError

_CHUNK = 1 << 16


def get_settings(request: Request) -> ServeSettings:
    settings: ServeSettings = request.app.state.settings
    return settings


def get_pool(request: Request) -> ModelPool:
    pool: ModelPool = request.app.state.pool
    return pool


def get_batcher(request: Request) -> Batcher:
    batcher: Batcher = request.app.state.batcher
    return batcher


Settings = Annotated[ServeSettings, Depends(get_settings)]
Pool = Annotated[ModelPool, Depends(get_pool)]
api = APIRouter(prefix="/v1")

_AUDIO_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": f"the recording ({SUPPORTED}): as a multipart form field 'file', or as "
        "the raw request body",
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"file": {"type": "string", "format": "binary"}},
                    "required": ["file"],
                }
            },
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}


def _seconds(description: str) -> Any:
    """A query parameter in seconds; `inference.segments` checks it (finite, in range), with
    the messages `peft_ser.predict` gives."""
    return Query(description=description)


@api.post("/predict", openapi_extra=_AUDIO_BODY, summary="Emotion of one recording")
async def predict(
    request: Request,
    settings: Settings,
    pool: Pool,
    batcher: Annotated[Batcher, Depends(get_batcher)],
    model: Annotated[
        str | None, Query(description="a served model's name (optional when only one is served)")
    ] = None,
    window: Annotated[
        float | None,
        _seconds(
            "seconds; a recording longer than this is cut into windows of this length "
            "(default: whole up to 30 s, else 10-s windows)"
        ),
    ] = None,
    hop: Annotated[
        float | None, _seconds("seconds between window starts (default: half a window)")
    ] = None,
    segment: Annotated[
        str,
        Query(
            description="how the recording is cut: 'window' (whole up to the window, else "
            "overlapping windows), 'vad' (speech segments; silence is left out) or 'whole'",
            json_schema_extra={"enum": list(SEGMENT_MODES)},
        ),
    ] = Segmentation.segment,
    min_segment: Annotated[
        float | None,
        _seconds("seconds, segment=vad only: shorter speech is merged (default 1)"),
    ] = None,
    max_segment: Annotated[
        float | None,
        _seconds("seconds, segment=vad only: longer speech is split (default 10)"),
    ] = None,
    top_k: Annotated[
        int | None, Query(ge=1, description="how many labels to list in 'top' (default: all)")
    ] = None,
) -> dict[str, Any]:
    """The `Prediction` of `peft_ser.predict` for the uploaded recording, its model's name,
    and its labels from the most to the least probable. Settings `peft_ser.predict` refuses are
    refused with its message (422), as are recordings it cannot answer: too long to keep whole,
    no speech found."""
    deadline = Deadline(settings.timeout)
    served = pool.get(_model_name(model, pool))
    segmentation = Segmentation(
        segment, window, hop, min_segment, max_segment, settings.max_segments
    )
    plan = segmentation.plan(limit=served.runner.max_samples)  # before the body is read
    clip = await _uploaded_clip(request, settings, deadline)
    _refuse_too_many_windows(plan, clip)
    try:
        result = await batcher.score(
            served.name, clip.samples, clip.source, segmentation, timeout=deadline.left()
        )
    except RequestTimeoutError:
        raise RequestTimeoutError(f"no answer within {settings.timeout:g} s") from None
    if isinstance(result, Failure):
        status = 500 if result.error.kind == "non_finite_output" else 422
        raise UploadError(status, str(result.error))
    return {"model": served.name, "prediction": result.to_dict(), "top": _top(result, top_k)}


@api.websocket("/stream")
async def stream(
    websocket: WebSocket,
    model: str | None = None,
    window: str | None = None,
    hop: str | None = None,
) -> None:
    """Emotion over a live stream, one message per window as it fills (`serving.stream`)."""
    state = websocket.app.state
    await serve_stream(websocket, state.pool, state.batcher, state.settings, model, window, hop)


@api.get("/models", summary="The served models")
def models(pool: Pool) -> dict[str, Any]:
    """Each model's name, labels, backbone, PEFT method and trained size."""
    return {"models": [served.describe() for served in pool]}


def _refuse_too_many_windows(plan: SegmentPlan, clip: Clip) -> None:
    """Refuse a recording cut into more windows than ``max_segments`` before it waits in the
    queue: counted, not run. Speech segments are counted once found, on the inference thread
    (a `Failure`, 422)."""
    if plan.mode == "window":
        try:
            plan.spans(len(clip.samples))
        except InvalidRequestError as error:
            raise UploadError(422, f"{clip.source}: {error}") from None


def _model_name(model: str | None, pool: ModelPool) -> str:
    if model is not None:
        return model
    if len(pool.names) == 1:
        return pool.names[0]
    raise HTTPException(422, f"give model=NAME; this server has: {', '.join(pool.names)}")


async def _uploaded_clip(request: Request, settings: ServeSettings, deadline: Deadline) -> Clip:
    """The recording of a multipart upload (field ``file``) or of the raw body, which must
    arrive before ``deadline``."""
    folder: Path = request.app.state.upload_folder
    limits = AudioLimits(settings.max_seconds, settings.decoded_sample_budget)
    request = Request(request.scope, deadline.bound(request.receive))
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        async with request.form(max_files=1, max_fields=8) as form:
            upload = form.get("file")
            if not isinstance(upload, UploadFile):
                raise UploadError(422, "the multipart form has no file field named 'file'")
            source = display_name(upload.filename)
            return await read_clip(_chunks_of(upload), source, folder, limits)
    return await read_clip(request.stream(), "upload", folder, limits)


async def _chunks_of(upload: UploadFile) -> AsyncIterator[bytes]:
    while chunk := await upload.read(_CHUNK):
        yield chunk


def _top(prediction: Prediction, k: int | None) -> list[dict[str, Any]]:
    ranked = sorted(prediction.probabilities.items(), key=lambda item: item[1], reverse=True)
    return [{"label": label, "probability": p} for label, p in ranked[:k]]


def _static_file(name: str) -> str:
    return (resources.files(__package__) / "static" / name).read_text(encoding="utf-8")


def create_app(pool: ModelPool, settings: ServeSettings | None = None) -> FastAPI:
    """The app serving ``pool``'s models (and no others) under ``settings``' limits.

    No Swagger UI or ReDoc (``/docs``, ``/redoc``): they load their scripts from a CDN. The
    schema is at ``/openapi.json`` for any OpenAPI viewer.
    """
    settings = settings or ServeSettings()
    batcher = Batcher(pool, settings.batching)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        with tempfile.TemporaryDirectory(prefix="peft-ser-serve-") as folder:
            app.state.upload_folder = Path(folder)
            await batcher.start()
            try:
                yield
            finally:
                await batcher.stop()

    app = FastAPI(
        title="peft-ser",
        version=version("peft-ser"),
        summary="Speech emotion recognition with parameter-efficient models",
        description=f"With an API key set, every route but {LIVENESS_PATH} needs it, in the "
        f"{API_KEY_HEADER} header or as the password of HTTP Basic authentication.",
        lifespan=lifespan,
        default_response_class=StrictJSONResponse,
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings, app.state.pool, app.state.batcher = settings, pool, batcher

    def current() -> ServeSettings:
        current_settings: ServeSettings = app.state.settings
        return current_settings

    app.add_middleware(BodySizeLimit, max_bytes=settings.max_upload_bytes)
    app.add_middleware(ApiKeyGate, settings=current)
    app.add_middleware(HostAllowList, settings=current)
    app.add_middleware(SecurityHeaders)  # added last: outermost, so refusals carry it too
    add_error_handlers(app)
    app.include_router(api)

    @app.get(LIVENESS_PATH, summary="Liveness: the process answers (needs no key)")
    def livez() -> dict[str, Any]:
        return {"status": "ok"}

    @app.get("/healthz", summary="The served models and the queue (needs the key when set)")
    def healthz() -> dict[str, Any]:
        return {"status": "ok", "models": pool.names, "waiting": batcher.waiting}

    @app.get("/", include_in_schema=False)
    def page() -> HTMLResponse:
        return HTMLResponse(_static_file("index.html"))

    app.mount("/static", StaticFiles(packages=[(__package__, "static")]), name="static")
    return app
