"""Where a fold's batches come from: decoded waveforms, or the frozen backbone's cached states.

With a frozen backbone (method ``frozen``), the backbone's hidden states of every clip are
computed once and kept (`FeatureCache`); every epoch then trains only the head on them. Clips
that cannot be decoded, or whose states are not finite, are reported to the run's
``bad_audio.csv`` and left out, in both paths.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterator, Sequence

import torch
from accelerate import Accelerator

from peft_ser.config import RunConfig
from peft_ser.data.dataset import Batch, UtteranceDataset, seconds_to_samples
from peft_ser.data.feature_store import content_digest
from peft_ser.data.manifest import Utterance
from peft_ser.data.sampler import LengthBucketSampler
from peft_ser.data.states import FeatureBatch, FeatureCache, stack_states, states_crop
from peft_ser.evaluation.scoring import loader_batches, to_device
from peft_ser.models.ser_model import SERModel
from peft_ser.utils.progress import progress_bar

log = logging.getLogger(__name__)

Reporter = Callable[[str, Sequence[tuple[int, str]]], None]
"""``report(split, [(dataset index, reason), ...])``: clips left out of a split."""


class BatchSource:
    """Samplers and batches of a fold's splits, from waveforms or from cached states."""

    def __init__(
        self,
        config: RunConfig,
        accelerator: Accelerator,
        splits: dict[str, UtteranceDataset],
        cache: FeatureCache | None,
        report: Reporter,
    ) -> None:
        self.config = config
        self.accelerator = accelerator
        self.splits = splits
        self.cache = cache
        self.report = report

    @property
    def _eval_budget(self) -> int | None:
        """Padded samples per evaluation batch (cached states are small: no bound)."""
        return seconds_to_samples(self.config.data.eval_batch_seconds)

    @property
    def cached(self) -> bool:
        return self.cache is not None

    def sampler(
        self, split: str, batch_size: int, shuffle: bool, epoch: int, accumulate: int = 1
    ) -> tuple[LengthBucketSampler, list[int]]:
        """This epoch's sampler over the split's usable items, and their lengths; with
        ``accumulate``, it iterates each batch of ``batch_size`` in that many micro-batches.

        Evaluation (``shuffle`` false) is always sorted by length, whatever ``data.bucketing``
        says: batch composition cannot change a prediction (padding is masked), so short clips
        should never wait for the longest clip of a random batch.
        """
        dataset = self.splits[split]
        if self.cache is not None:
            items = self._cached_items(split)
            lengths = [self._state(split, i).shape[1] for i in items]
            labels = [dataset.label_of(i) for i in items]
        else:
            lengths = dataset.lengths()
            labels = [dataset.label_of(i) for i in range(len(dataset))]
        sampler = LengthBucketSampler(
            lengths,
            batch_size,
            shuffle=shuffle,
            labels=labels,
            bucketing=self.config.data.bucketing or not shuffle,
            pool=self.config.data.bucket_pool,
            jitter=self.config.data.bucket_jitter,
            slack=self.config.data.bucket_slack,
            seed=self.config.seed,
            num_replicas=self.accelerator.num_processes,
            rank=self.accelerator.process_index,
            max_batch_samples=None if self.cache is not None else self._eval_budget,
            accumulate=accumulate,
        )
        sampler.set_epoch(epoch)
        return sampler, lengths

    def batches(
        self, split: str, sampler: LengthBucketSampler
    ) -> Iterator[Batch | FeatureBatch | None]:
        """The sampler's batches; ``None`` for a batch whose every clip failed to load."""
        dataset = self.splits[split]
        if self.cache is None:
            for batch in loader_batches(dataset, sampler, self.config.data.num_workers):
                self.report(split, batch.errors)
                yield batch if len(batch) else None
            return
        items = self._cached_items(split)
        for positions in sampler:
            indices = [items[p] for p in positions]
            yield stack_states(
                [self._state(split, i) for i in indices],
                [dataset.label_of(i) for i in indices],
                indices,
            )

    def _cached_items(self, split: str) -> list[int]:
        dataset = self.splits[split]
        return [i for i in range(len(dataset)) if self._is_cached(dataset, i)]

    def _is_cached(self, dataset: UtteranceDataset, index: int) -> bool:
        assert self.cache is not None
        return _entry(dataset, index) in self.cache

    def _recall(self, dataset: UtteranceDataset, index: int) -> bool:
        """In memory, or read from the persistent store (a file that cannot be read has no
        digest: it is left to the encoder, which reports it)."""
        assert self.cache is not None
        key, crop = _entry(dataset, index)
        if (key, crop) in self.cache:
            return True
        content = _content(dataset.utterances[index])
        return content is not None and self.cache.recall(key, crop, content)

    def _state(self, split: str, index: int) -> torch.Tensor:
        assert self.cache is not None
        return self.cache.get(*_entry(self.splits[split], index))

    def fill_cache(self, model: SERModel, batch_size: int, fold: str) -> None:
        """Encode every clip neither in memory nor in the persistent store once, in eval mode,
        without augmentation; then keep the store within its budget."""
        assert self.cache is not None
        self.cache.bind(_fingerprint(model, self.accelerator.mixed_precision))
        model.eval()
        for split, dataset in self.splits.items():
            missing = [i for i in range(len(dataset)) if not self._recall(dataset, i)]
            if missing:
                self._encode(model, split, dataset, missing, batch_size, fold)
        if self.cache.store is not None and self.accelerator.is_main_process:
            try:
                self.cache.store.enforce_budget()
            except OSError as error:  # a store that turned read-only
                self.cache.without_store(error)
        log.info("feature cache: %d clips, %.1f MiB", len(self.cache), self.cache.nbytes() / 2**20)

    def _encode(
        self,
        model: SERModel,
        split: str,
        dataset: UtteranceDataset,
        missing: list[int],
        batch_size: int,
        fold: str,
    ) -> None:
        assert self.cache is not None
        clean = UtteranceDataset(
            [dataset.utterances[i] for i in missing],
            dataset.label_names,
            dataset.max_samples,
            decoded=dataset.decoded,
        )
        # Every process encodes every clip: each needs all states for its future batches.
        sampler = LengthBucketSampler(clean.lengths(), batch_size, shuffle=False)
        loader = loader_batches(clean, sampler, self.config.data.num_workers)
        main = self.accelerator.is_main_process
        bar = progress_bar(
            self.config.progress and main,
            total=len(sampler),
            desc=f"fold {fold}: caching {split} states",
            leave=False,
        )
        for batch in loader:
            bar.update()
            self.report(split, [(missing[i], e) for i, e in batch.errors])
            if len(batch) == 0:
                continue
            batch = to_device(batch, self.accelerator.device)
            with torch.no_grad(), self.accelerator.autocast():
                hidden, frames = model.encode(batch.waveforms, batch.lengths)
            bad = []
            for row, index in enumerate(batch.indices.tolist()):
                states = hidden[:, row, : int(frames[row])]
                if not bool(torch.isfinite(states).all()):
                    bad.append((missing[index], "the backbone's hidden states are not finite"))
                    continue
                utterance = clean.utterances[index]
                crop = states_crop(utterance, dataset.max_samples)
                self.cache.put(utterance.key, crop, states, _content(utterance))
            self.report(split, bad)
        bar.close()


def _entry(dataset: UtteranceDataset, index: int) -> tuple[str, int | None]:
    utterance = dataset.utterances[index]
    return utterance.key, states_crop(utterance, dataset.max_samples)


def _content(utterance: Utterance) -> str | None:
    try:
        return content_digest(utterance.path, utterance.start, utterance.end)
    except OSError:
        return None


def _fingerprint(model: SERModel, precision: str) -> str:
    """A digest of the frozen backbone's weights, front-end settings and the precision it
    computes in (cache validity)."""
    front_end = model.config.model_dump_json(include={"backbone", "whisper_window"})
    digest = hashlib.sha256(f"{front_end}\0{precision}".encode())
    for name, tensor in model.backbone.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
