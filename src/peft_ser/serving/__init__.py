"""``peft-ser serve``: an HTTP API and a web page for any number of models on shared backbones.

`adapters` loads the models, each backbone held once; `batching` batches concurrent requests;
`uploads` turns a request body into samples within the limits; `limits` caps bodies, their
time and the work of a request; `security` checks the Host and the API key and sets the
browser's security headers; `responses` turns every refusal into one line; `settings` holds the
limits' defaults; `app` the routes; `static/` the page, served by the package itself. The
web stack (``pip install 'peft-ser[serve]'``) is imported on first use, so the command line
starts without it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..lazy import lazy_attributes
from .settings import API_KEY_ENV, BatchSettings, ServeSettings

__getattr__ = lazy_attributes(
    __name__,
    {
        "ModelPool": "adapters",
        "ModelSpec": "adapters",
        "ServedModel": "adapters",
        "UnknownModelError": "adapters",
        "parse_model_spec": "adapters",
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
    from .adapters import ModelPool, ModelSpec, ServedModel, UnknownModelError, parse_model_spec
    from .app import create_app


def serve(app: Any, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Run ``app`` (from `create_app`) with uvicorn until interrupted; loopback by default.

    The address bound to is allowed as a ``Host`` (unless it is every address); a warning is
    logged when the server is reachable beyond this machine without an API key.
    """
    import uvicorn

    from .security import listening_settings

    app.state.settings = listening_settings(app.state.settings, host)
    uvicorn.run(app, host=host, port=port, log_level="info")
