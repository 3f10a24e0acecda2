"""`peft-ser serve`: the HTTP API and the web page for one or more saved or released models."""

from __future__ import annotations

import dataclasses
import os
from typing import Annotated

import typer

from peft_ser.cli.app import app, log_to_stderr
from peft_ser.cli.options import Backend, BatchSize, Device, Dtype, Precision
from peft_ser.serving.settings import (
    API_KEY_ENV,
    LOCAL_HOSTS,
    BatchSettings,
    ServeSettings,
    default_max_batch,
)

_DEFAULTS, _BATCH = ServeSettings(), BatchSettings()


@app.command()
def serve(
    models: Annotated[
        list[str],
        typer.Option(
            "--model",
            "-m",
            help="a saved model folder, a zoo name, a Hub repo id or a folder written by peft-ser "
            "export, "
            "optionally NAME=SOURCE; repeat for more models (models on the same backbone hold "
            "it once)",
        ),
    ],
    host: Annotated[
        str, typer.Option(help="address to listen on; 0.0.0.0 exposes the server to others")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535)] = 8000,
    api_key: Annotated[
        str | None,
        typer.Option(
            envvar=API_KEY_ENV,
            help="require this key on every route but /livez (X-API-Key header, or the "
            "password of HTTP Basic); an empty key is an error",
        ),
    ] = None,
    allowed_hosts: Annotated[
        list[str] | None,
        typer.Option(
            "--allowed-host",
            help=f"a Host name this server answers to, besides {', '.join(LOCAL_HOSTS)} and "
            "the --host address; repeat for more; '*' allows any (others: 400)",
        ),
    ] = None,
    max_upload_mb: Annotated[
        float, typer.Option(min=0.001, help="largest request body, MiB (beyond: 413)")
    ] = _DEFAULTS.max_upload_bytes / 2**20,
    max_seconds: Annotated[
        float, typer.Option(min=0.1, help="longest recording, seconds (beyond: 413)")
    ] = _DEFAULTS.max_seconds,
    max_decoded_samples: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="most samples (rate × channels × duration) a recording may decode to "
            "(beyond: 413; default: --max-seconds of 48 kHz stereo)",
        ),
    ] = None,
    max_segments: Annotated[
        int, typer.Option(min=1, help="most windows one request is cut into (beyond: 422)")
    ] = _DEFAULTS.max_segments,
    timeout: Annotated[
        float,
        typer.Option(
            min=0.1,
            help="seconds a request may take, its upload included (body not arrived: 408; "
            "no answer: 504)",
        ),
    ] = _DEFAULTS.timeout,
    max_queue: Annotated[
        int, typer.Option(min=1, help="requests waiting at most (beyond: 503, Retry-After)")
    ] = _BATCH.max_queue,
    max_batch: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="requests batched together at most; 1 turns batching off "
            "(default: 1 on a CPU, where batching measured slower, 16 on a GPU)",
        ),
    ] = None,
    batch_window_ms: Annotated[
        float, typer.Option(min=0, help="how long a request waits for others to batch with")
    ] = _BATCH.window_ms,
    batch_size: BatchSize = _BATCH.batch_size,
    device: Device = None,
    dtype: Dtype = "fp32",
    backend: Backend = None,
    precision: Precision = "fp32",
) -> None:
    """Serve models over HTTP: POST /v1/predict, GET /v1/models, /healthz, /livez, the page at /.

    Only the models named here are ever loaded; requests choose among them by name. The
    device, dtype, backend and precision apply to every model; an int8 model holds its own
    quantized copy, shared with no other.
    """
    from peft_ser.inference.loading import resolve_device
    from peft_ser.serving import ModelPool, create_app, parse_model_spec, serve

    log_to_stderr()
    settings = ServeSettings(
        round(max_upload_mb * 2**20),
        max_seconds,
        timeout,
        _key_given(api_key),
        max_decoded_samples=max_decoded_samples,
        max_segments=max_segments,
        allowed_hosts=(*LOCAL_HOSTS, *(allowed_hosts or [])),
    )  # checked (an empty key) before any model loads
    specs = [parse_model_spec(text) for text in models]
    device_type = resolve_device(device).type
    pool = ModelPool.load(
        specs,
        device=device,
        dtype=dtype,
        backend=backend,
        precision=precision,
    )
    if max_batch is None:
        max_batch = default_max_batch(device_type)
    batching = BatchSettings(max_batch, batch_window_ms, batch_size, max_queue)
    settings = dataclasses.replace(settings, batching=batching)
    memory = pool.memory()
    typer.echo(
        f"serving {', '.join(pool.names)} on http://{host}:{port} (tensors: "
        f"{memory.shared_bytes / 2**20:.1f} MiB shared by models, "
        f"{memory.private_bytes / 2**20:.1f} MiB of the models' own, in all)",
        err=True,
    )
    serve(create_app(pool, settings), host, port)


def _key_given(option: str | None) -> str | None:
    """The key of ``--api-key``, or of the environment even when empty there (which the option
    parser takes for unset), so an empty key is refused rather than silently ignored."""
    return os.environ.get(API_KEY_ENV) if option is None else option
