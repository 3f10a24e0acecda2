"""Where a fold's batches come from: decoded waveforms, or the backbone's cached states.

With a frozen backbone (method ``frozen``), the backbone's hidden states of every clip are
computed once and kept (`FeatureCache`); every epoch then trains only the head on them. With
``model.tune_layers`` the states below the first tuned layer ``k`` are kept instead (float32),
and every epoch runs layers ``k`` to ``L`` and the head on them (`FromStates`): the part below
runs in eval mode without gradients in either path, and the batches are those of the uncached
run (sized by samples), so the cached run computes what the uncached one does. Clips that
cannot be decoded, or whose states are not finite, are reported to the run's ``bad_audio.csv``
and left out, in both paths.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterator, Sequence

import torch
from accelerate import Accelerator

from peft_ser.config import RunConfig
from peft_ser.data.dataset import Batch, UtteranceDataset, seconds_to_samples
from peft_ser.data.feature_store import DTYPE, EXACT_DTYPE, content_digest
from peft_ser.data.manifest import Fold, PreparedCorpus, Utterance, select
from peft_ser.data.sampler import LengthBucketSampler
from peft_ser.data.states import FeatureBatch, FeatureCache, stack_states, states_crop
from peft_ser.evaluation.scoring import loader_batches, to_device
from peft_ser.models.ser_model import SERModel
from peft_ser.models.tasks import usable
from peft_ser.utils.errors import UserError
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
        # States below tuned layers, rather than a frozen backbone's whole stack.
        self.below = cache is not None and config.model.tune_layers is not None

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
            if self.below:  # the uncached run's lengths, so its batches
                samples = dataset.lengths()
                lengths = [samples[i] for i in items]
            else:
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
            max_batch_samples=self._eval_budget if self.cache is None or self.below else None,
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
        dtype = getattr(torch, EXACT_DTYPE if self.below else DTYPE)
        self.cache.bind(_fingerprint(model, self.accelerator.mixed_precision), dtype)
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
                encode = model.encode_below if self.below else model.encode
                hidden, frames = encode(batch.waveforms, batch.lengths)
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
    computes in (cache validity); under ``model.tune_layers``, of the weights below the first
    tuned layer ``k`` (`Backbone.fixed_state`: the trained ones above change nothing below, so
    a resumed run, another fold or another seed hits) and of ``k``."""
    backbone = model.backbone
    front_end = model.config.model_dump_json(include={"backbone", "whisper_window"})
    below = "" if backbone.tuned_from is None else f"\0below layer {backbone.tuned_from}"
    digest = hashlib.sha256(f"{front_end}\0{precision}{below}".encode())
    state = backbone.state_dict().items() if backbone.tuned_from is None else backbone.fixed_state()
    for name, tensor in state:
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def usable_splits(
    prepared: PreparedCorpus, fold: Fold, task: str
) -> tuple[dict[str, list[Utterance]], dict[str, int]]:
    """Each split's utterances that ``task`` can learn from (`usable`), and how many each split
    left out (logged, and written to the fold's results as ``left_out``). A training split left
    empty is refused."""
    chosen, left_out = {}, {}
    for split in ("train", "dev", "test"):
        utterances = select(prepared, getattr(fold, split))
        chosen[split] = usable(utterances, task, prepared.labels)
        if dropped := len(utterances) - len(chosen[split]):
            left_out[split] = dropped
    why = "votes on the label set" if task == "distribution" else "a majority label"
    if left_out:
        log.info(
            "fold %s: left out utterances without %s (task %s): %s", fold.name, why, task,
            ", ".join(f"{split} {count}" for split, count in left_out.items()),
        )  # fmt: skip
    if fold.train and not chosen["train"]:
        raise UserError(
            f"fold {fold.name}: none of its {len(fold.train)} training utterances has {why}, "
            f"which model.task {task} trains on"
        )
    return chosen, left_out


def uses_cache(config: RunConfig, model: SERModel) -> bool:
    """Whether the fold trains on cached states: a frozen backbone's, or those below the
    tuned layers (``model.tune_layers``). ``auto`` caches a frozen backbone's states even
    with augmentation (training then skips it), but not the states below tuned layers:
    augmentation there changes what the tuned layers learn from, so they keep it."""
    frozen = not any(p.requires_grad for p in model.backbone.parameters())
    below = config.model.tune_layers is not None
    setting, augmented = config.feature_cache, config.augment.enabled
    if setting == "on" and not (frozen or below):
        raise UserError(
            f"feature_cache 'on' needs a frozen backbone or model.tune_layers; method "
            f"{config.model.method!r} trains backbone parameters (use 'auto' or 'off')"
        )
    if setting == "auto" and below and augmented:
        log.info(
            "feature cache off: augmentation changes the training waveforms, so the layers "
            "below the top %d run every step (augment.enabled false caches them)",
            config.model.tune_layers,
        )
        return False
    use = setting == "on" or (setting == "auto" and (frozen or below))
    if use and augmented:
        log.info("feature cache on: training uses clean cached states, no augmentation")
    return use
