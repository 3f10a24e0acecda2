"""``peft-ser serve``: an HTTP API and a web page for any number of models on shared backbones.

`adapters` loads the models, each backbone held once; `batching` batches concurrent requests;
`uploads` turns a request body into samples within the limits; `limits` caps bodies and checks
the API key; `app` holds the routes; `static/` the page, served by the package itself.
"""

from __future__ import annotations

from .adapters import ModelPool, ModelSpec, ServedModel, UnknownModelError, parse_model_spec
from .app import API_KEY_ENV, ServeSettings, create_app
from .batching import BatchSettings

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


def serve(app: object, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Run ``app`` (from `create_app`) with uvicorn until interrupted; loopback by default."""
    import uvicorn

    uvicorn.run(app, host=host, port=port, log_level="info")  # type: ignore[arg-type]
