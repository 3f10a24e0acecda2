"""Dynamic batching: requests for the same model that arrive close together share forward passes.

Requests wait in one bounded queue. A single worker takes the first waiting request, waits up
to the batching window for companions (at most ``max_batch`` requests in all), groups what it
took by model and segmentation, and runs each group through `iter_predictions`, which sorts
the group's clips and windows by length and batches them with their lengths. Padded samples
are masked, so an answer is the same whatever it was batched with.

All inference runs on one thread, one batch at a time: the models' modules are never used by
two threads at once (a parallel adapter's hooks keep state between its two halves), and the
cores are spent on the batch's own matrix products rather than on competing batches.
"""

from __future__ import annotations

import asyncio
import dataclasses
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from peft_ser.data.audio import SAMPLE_RATE, AudioError
from peft_ser.inference.predict import Failure, Prediction, iter_predictions
from peft_ser.inference.segments import Segmentation
from peft_ser.serving.pool import ModelPool
from peft_ser.serving.settings import BatchSettings


class QueueFullError(Exception):
    """The queue of waiting requests is full; the client should retry later (HTTP 503)."""


class RequestTimeoutError(Exception):
    """A request was not answered within its time limit (HTTP 504)."""


_NO_SAMPLES = np.zeros(0, dtype=np.float32)
_DEFAULT_SEGMENTATION = Segmentation()


@dataclass(frozen=True)
class _GroupKey:
    model: str
    segmentation: Segmentation


@dataclass(eq=False)
class _Job:
    key: _GroupKey
    source: str
    samples: np.ndarray
    future: asyncio.Future[Prediction | Failure] = field(repr=False)


class Batcher:
    """Answers `predict` calls by batches, on one inference thread; start and stop it in the
    server's lifespan."""

    def __init__(self, pool: ModelPool, settings: BatchSettings) -> None:
        self.pool = pool
        self.settings = settings
        self._queue: asyncio.Queue[_Job] | None = None
        self._waiting: set[_Job] = set()
        """Queued requests still wanted: a request that timed out frees its place at once."""
        self._worker: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None
        self.batches_run = 0
        """Groups run so far; with more requests than this, requests were batched."""

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="peft-ser-inference")
        self._worker = asyncio.create_task(self._serve())

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
        if self._executor is not None:
            self._executor.shutdown(wait=True)
        self._worker = self._executor = self._queue = None

    async def score(
        self,
        model: str,
        samples: np.ndarray,
        source: str,
        segmentation: Segmentation = _DEFAULT_SEGMENTATION,
        *,
        timeout: float,
    ) -> Prediction | Failure:
        """The answer for 16 kHz mono ``samples``, named ``source`` in it, cut as ``segmentation``
        says.

        Raises `QueueFullError` at once when the queue is full and `RequestTimeoutError` when no
        answer came within ``timeout`` seconds (a request still waiting is then dropped).
        Errors of the call itself (impossible segmentation settings) are `iter_predictions`'
        `InvalidRequestError`, raised as they are.
        """
        if self._queue is None:
            raise RuntimeError("the batcher is not running; start() it first")
        future: asyncio.Future[Prediction | Failure] = asyncio.get_running_loop().create_future()
        job = _Job(_GroupKey(model, segmentation), source, samples, future)
        if len(self._waiting) >= self.settings.max_queue:
            raise QueueFullError(
                f"{self.settings.max_queue} requests are already waiting; retry shortly"
            )
        self._waiting.add(job)
        future.add_done_callback(lambda _: self._forget(job))
        self._queue.put_nowait(job)
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout)
        except asyncio.TimeoutError:  # not the builtin TimeoutError before Python 3.11
            future.cancel()
            raise RequestTimeoutError(f"no answer within {timeout:g} s") from None

    def _forget(self, job: _Job) -> None:
        """A finished or abandoned request leaves the count, and its samples are let go."""
        self._waiting.discard(job)
        job.samples = _NO_SAMPLES

    async def _serve(self) -> None:
        while True:
            jobs = await self._next_batch()
            for group in _grouped(jobs):
                await self._run_group(group)

    async def _next_batch(self) -> list[_Job]:
        """The first waiting request and those that arrive within the window, up to max_batch."""
        assert self._queue is not None
        jobs = [await self._take()]
        limit = self.settings.max_batch
        if limit > 1 and len(self._waiting) < limit - 1 and self.settings.window_ms > 0:
            await asyncio.sleep(self.settings.window_ms / 1000)
        while len(jobs) < limit and self._waiting:
            jobs.append(await self._take())
        return jobs

    async def _take(self) -> _Job:
        """The next queued request still wanted, taken out of the count."""
        assert self._queue is not None
        while True:
            job = await self._queue.get()
            if not job.future.done():
                self._waiting.discard(job)
                return job

    async def _run_group(self, group: list[_Job]) -> None:
        live = [job for job in group if not job.future.done()]
        if not live:
            return
        loop = asyncio.get_running_loop()
        try:
            inputs = [job.samples for job in live]
            results = await loop.run_in_executor(self._executor, self._predict, live[0].key, inputs)
        except Exception as error:  # one group's failure is its requests' answer, not the server's
            for job in live:
                if not job.future.done():
                    job.future.set_exception(error)
            return
        self.batches_run += 1
        for job, result in zip(live, results, strict=True):
            if not job.future.done():
                job.future.set_result(_named(result, job.source))

    def _predict(self, key: _GroupKey, inputs: list[np.ndarray]) -> list[Prediction | Failure]:
        """One group's answers, in order (runs on the inference thread)."""
        results = iter_predictions(
            [(samples, SAMPLE_RATE) for samples in inputs],
            model=self.pool.get(key.model).runner,
            batch_size=self.settings.batch_size,
            **dataclasses.asdict(key.segmentation),
        )
        return list(results)


def _grouped(jobs: list[_Job]) -> list[list[_Job]]:
    """Jobs grouped by model and segmentation, groups in the order of their first job."""
    groups: dict[_GroupKey, list[_Job]] = {}
    for job in jobs:
        groups.setdefault(job.key, []).append(job)
    return list(groups.values())


def _named(result: Prediction | Failure, source: str) -> Prediction | Failure:
    if isinstance(result, Failure):
        error = result.error
        return Failure(source, AudioError(source, error.problem, error.kind))
    return dataclasses.replace(result, source=source)
