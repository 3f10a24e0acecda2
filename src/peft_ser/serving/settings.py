"""The server's limits and batching, with their documented defaults (docs/serving.md).

Plain records without web or torch imports, so the command line reads the defaults cheaply.
"""

from __future__ import annotations

from dataclasses import dataclass, field

API_KEY_ENV = "PEFT_SER_API_KEY"
"""The environment variable ``peft-ser serve`` reads the API key from (or ``--api-key``)."""


@dataclass(frozen=True)
class BatchSettings:
    """How requests are batched; ``max_batch=1`` answers them one at a time."""

    max_batch: int = 16
    """Requests in one batch at most (``peft-ser serve`` picks `default_max_batch`)."""
    window_ms: float = 5.0
    """How long the first request of a batch waits for companions."""
    batch_size: int = 8
    """Segments (clips or windows) per forward pass."""
    max_queue: int = 64
    """Requests waiting at most; beyond it a request is refused at once (503)."""


@dataclass(frozen=True)
class ServeSettings:
    """The server's limits."""

    max_upload_bytes: int = 32 * 1024 * 1024
    """Request bodies larger than this are refused (413): 32 MiB."""
    max_seconds: float = 600.0
    """Recordings longer than this are refused (413) before they are decoded: 10 minutes."""
    timeout: float = 60.0
    """Seconds a request may wait and run before it is answered with 504."""
    api_key: str | None = None
    """When set, every ``/v1`` request must send it in the ``X-API-Key`` header."""
    batching: BatchSettings = field(default_factory=BatchSettings)


def default_max_batch(device_type: str) -> int:
    """1 (no batching) on a CPU, 16 elsewhere.

    On a CPU one clip already fills the cores, and a batch of clips of mixed length is padded to
    its longest: the load test measured batching at 0.6× the throughput of answering one request
    at a time (docs/serving.md). A GPU has the parallelism that batching feeds.
    """
    return 1 if device_type == "cpu" else 16
