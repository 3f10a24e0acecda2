"""``peft-ser serve``: an HTTP API and a web page for any number of models on shared backbones.

`pool` loads the models, each backbone held once; `batching` batches concurrent requests;
`uploads` turns a request body into samples within the limits; `limits` caps bodies, their
time and the work of a request; `security` checks the Host, the API key and a WebSocket's
Origin, and sets the browser's security headers; `responses` turns every refusal into one
line; `settings` holds the limits' defaults; `app` the routes; `stream` the WebSocket that
answers a live stream window by window; `static/` the page, served by the package itself. The
web stack (``pip install 'peft-ser[serve]'``) is imported on first use, so the command line
starts without it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from peft_ser.serving.settings import API_KEY_ENV, BatchSettings, ServeSettings
from peft_ser.utils.lazy import lazy_attributes

__getattr__ = lazy_attributes(
    __name__,
    {
        "ModelPool": "pool",
        "ModelSpec": "pool",
        "ServedModel": "pool",
        "UnknownModelError": "pool",
        "parse_model_spec": "pool",
        "create_app": "app",
    },
)

__all__ = [
    "API_KEY_ENV",
    "BatchSettings",
    "ModelPool",
    "ModelSpec",
    "ServeSettings",
    "ServedModel",
    "UnknownModelError",
    "create_app",
    "parse_model_spec",
    "serve",
]

if TYPE_CHECKING:
    from peft_ser.serving.app import create_app
    from peft_ser.serving.pool import (
        ModelPool,
        ModelSpec,
        ServedModel,
        UnknownModelError,
        parse_model_spec,
    )


def serve(app: Any, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Run ``app`` (from `create_app`) with uvicorn until interrupted; loopback by default.

    The address bound to is allowed as a ``Host`` (unless it is every address); a warning is
    logged when the server is reachable beyond this machine without an API key.
    """
    import uvicorn

    from peft_ser.serving.security import listening_settings

    app.state.settings = listening_settings(app.state.settings, host)
    uvicorn.run(app, host=host, port=port, log_level="info")
