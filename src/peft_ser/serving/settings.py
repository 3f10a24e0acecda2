"""The server's limits and batching, with their documented defaults (docs/serving.md).

Plain records without web or torch imports, so the command line reads the defaults cheaply.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from peft_ser.utils.errors import UserError

API_KEY_ENV = "PEFT_SER_API_KEY"
"""The environment variable ``peft-ser serve`` reads the API key from (or ``--api-key``)."""

LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")
"""Host header values accepted by default: a browser page on another site that resolves its own
name to 127.0.0.1 (DNS rebinding) sends its own name, so it is refused."""

DECODED_SAMPLES_PER_SECOND = 48_000 * 2
"""The default decoded-sample budget per second of ``max_seconds``: 48 kHz stereo."""


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
    """Seconds a request may take from its headers to its answer, reading its body included: a
    body still arriving then is answered with 408, an answer not ready with 504."""
    api_key: str | None = None
    """When set, every route but ``/livez`` needs it (``X-API-Key`` header or HTTP Basic
    password). An empty key is refused: it would look set and protect nothing."""
    batching: BatchSettings = field(default_factory=BatchSettings)
    max_decoded_samples: int | None = None
    """Samples (frames × channels) a recording may decode to, checked from its header before
    decoding (413); None: ``max_seconds`` of 48 kHz stereo. A small file of a high rate and many
    channels is refused although it is within ``max_seconds``."""
    max_segments: int = 1200
    """Segments one request may be cut into (422): 600 s in 1-s windows every 0.5 s, below the
    library's 10,000, so one request cannot hold the queue for long."""
    allowed_hosts: tuple[str, ...] = LOCAL_HOSTS
    """Host header values answered (others: 400); ``*`` allows any."""

    def __post_init__(self) -> None:
        if self.api_key is not None and not self.api_key.strip():
            raise UserError(
                f"the API key is empty (--api-key or {API_KEY_ENV}): give a key, or unset it "
                "to serve without one"
            )
        if not all(host.strip() for host in self.allowed_hosts):
            raise UserError("an allowed host is empty (--allowed-host): give a name or address")

    @property
    def decoded_sample_budget(self) -> int:
        if self.max_decoded_samples is not None:
            return self.max_decoded_samples
        return round(self.max_seconds * DECODED_SAMPLES_PER_SECOND)


def default_max_batch(device_type: str) -> int:
    """1 (no batching) on a CPU, 16 elsewhere.

    On a CPU one clip already fills the cores, and a batch of clips of mixed length is padded to
    its longest: the load test measured batching at 0.6× the throughput of answering one request
    at a time (docs/serving.md). A GPU has the parallelism that batching feeds.
    """
    return 1 if device_type == "cpu" else 16
