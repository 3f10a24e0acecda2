"""One fold epoch of peft-ser, phase by phase: fp32 against bf16, the sampler's padding against
random batches, and a frozen five-fold run with the persistent feature cache cold and warm.

On generated clips of IEMOCAP-like lengths (log-normal, mean about 4.3 s, 0.6-20 s; ten
speakers in five folds of two), this script

1. reports the padding waste of one training epoch's batches (6-s crops) with the opt-in
   stratified length bucketing and with the default random batches, and of the dev/test
   batches (whole clips, sorted by length) against random ones;
2. trains one epoch of ``--method`` (default LoRA r16) on fold 1 with ``mixed_precision`` fp32
   (``no``) and ``bf16`` in turns, ``--repeats`` times, and prints the median seconds of the
   train, dev and test phases and their bf16/fp32 ratios; with ``--original``, the original
   PEFT-SER training recipe (``original_train_driver.py``, in the original package's own
   environment, built or reused by ``compare_original.ensure_original_environment``) runs the
   same fold's epoch in the same turns, and its phases and the original/peft-ser ratios are
   printed too;
3. runs method ``frozen`` over all five folds for ``--frozen-epochs`` epochs twice with the same
   fresh feature store (cold, then warm) and prints both times and the clips the backbone
   encoded; with ``--original``, the original recipe's frozen baseline (no feature cache: the
   encoder runs on every clip in every epoch) first runs the same five folds and epochs, one
   process per fold;
4. with ``--top-layers K``, ``--workload`` or ``--accuracy-seeds N``, the top-k case
   (``model.tune_layers``, ``epoch_topk.py``): LoRA on the top ``K`` layers, uncached and
   cached, against all layers and the original; a five-fold workload, cached against
   uncached, results checked equal; test accuracy over seeds, top layers against all.

Run it from the repository root, bounded and at low priority on a shared machine:

    nice -n 5 .venv/bin/python bench/bench_epoch.py --clips 320 --repeats 3 --original
    nice -n 5 .venv/bin/python bench/bench_epoch.py --clips 320 --repeats 3 --original \
        --skip-epoch --skip-frozen --top-layers 2 --workload
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import soundfile as sf
import torch
from compare_original import ensure_original_environment, run_original, write_whisper_encoder

from peft_ser.config import DataConfig, load_run_config
from peft_ser.data.manifest import (
    PAPER4,
    Fold,
    PreparedCorpus,
    Utterance,
    read_prepared,
    save_prepared,
    select,
)
from peft_ser.data.sampler import LengthBucketSampler, padding_waste
from peft_ser.models.ser_model import SERModel
from peft_ser.training import train
from peft_ser.training.checkpoint import FoldCheckpoints
from peft_ser.training.loop import FoldRunner

RATE = 16_000
SPEAKERS = 10


def clip_seconds(count: int, rng: np.random.Generator) -> np.ndarray:
    """IEMOCAP-like durations: log-normal with a median of 3.4 s and a long tail."""
    return np.clip(rng.lognormal(np.log(3.4), 0.65, count), 0.6, 20.0)


def write_clips(root: Path, clips: int, rng: np.random.Generator) -> list[Utterance]:
    """Voiced-tone clips of `clip_seconds` lengths (pitch by label), ten speakers who each
    speak all four labels in turn (so every dev and test speaker's UAR covers four classes),
    written under ``root / "wav"``; their manifest records, in index order."""
    utterances = []
    for index, seconds in enumerate(clip_seconds(clips, rng)):
        label_index = index // SPEAKERS % 4
        label = PAPER4[label_index]
        speaker = f"spk{index % SPEAKERS}"
        t = np.arange(int(seconds * RATE)) / RATE
        pitch = (120, 220, 90, 260)[label_index] * rng.uniform(0.9, 1.1)
        wave = 0.2 * np.sin(2 * np.pi * pitch * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))
        wave += 0.01 * rng.standard_normal(t.shape[0])
        path = root / "wav" / f"{speaker}_{index:04d}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, wave.astype(np.float32), RATE)
        gender = "F" if index % SPEAKERS % 2 == 0 else "M"
        utterances.append(
            Utterance(path.stem, speaker, gender, str(path), label, speaker, corpus="bench",
                      label=label, duration=t.shape[0] / RATE, sample_rate=RATE, channels=1)
        )  # fmt: skip
    return utterances


def make_corpus(root: Path, clips: int, seed: int = 0) -> Path:
    """`write_clips` in five speaker folds (two speakers each: one dev, one test), prepared."""
    utterances = write_clips(root, clips, np.random.default_rng(seed))
    folds = []
    for fold in range(5):
        dev, test = f"spk{2 * fold}", f"spk{2 * fold + 1}"
        folds.append(
            Fold(
                f"fold{fold + 1}",
                [u.key for u in utterances if u.speaker not in (dev, test)],
                [u.key for u in utterances if u.speaker == dev],
                [u.key for u in utterances if u.speaker == test],
            )
        )
    prepared = root / "prepared"
    save_prepared(prepared, PreparedCorpus(utterances, folds, list(PAPER4)))
    return prepared


def padding(prepared: Path, batch_size: int, eval_batch: int) -> dict[str, float]:
    """Padding waste per epoch (mean of three epochs) of fold 1's training batches, by sampler
    (random batches whole, and in the encoder's groups of the default ``data.group_padding``),
    and of its dev and test clips, each split batched on its own as a run scores it: sorted
    within the default 160-s budget and padding bound, or in order."""
    corpus = read_prepared(prepared)
    fold = corpus.folds[0]
    train_split = select(corpus, fold.train)
    crop = [min(round(u.duration * RATE), 6 * RATE) for u in train_split]
    labels = [corpus.labels.index(u.label) for u in train_split]
    found: dict[str, float] = {}
    grouping = DataConfig.model_fields["group_padding"].default
    arms = (
        ("stratified", True, None),
        ("random", False, None),
        ("random, grouped", False, grouping),
    )
    for name, bucketing, group_padding in arms:
        wastes = []
        for epoch in (1, 2, 3):
            sampler = LengthBucketSampler(
                crop, batch_size, shuffle=True, labels=labels, bucketing=bucketing
            )
            sampler.set_epoch(epoch)
            wastes.append(padding_waste(sampler.global_batches(), crop, group_padding))
        found[f"train, {name}"] = statistics.mean(wastes)
    scored = [
        [round(u.duration * RATE) for u in select(corpus, keys)] for keys in (fold.dev, fold.test)
    ]
    whole = [length for split in scored for length in split]
    samplers: dict[str, Callable[[list[int]], LengthBucketSampler]] = {
        "sorted, 160 s": lambda lengths: LengthBucketSampler(
            lengths, eval_batch, shuffle=False, max_batch_samples=160 * RATE
        ),
        "in order, 32": lambda lengths: LengthBucketSampler(
            lengths, batch_size, shuffle=False, bucketing=False
        ),
    }
    for name, sampler_for in samplers.items():
        batches: list[list[int]] = []
        offset = 0
        for lengths in scored:
            batches += [[offset + i for i in b] for b in sampler_for(lengths).global_batches()]
            offset += len(lengths)
        found[f"dev+test, {name}"] = padding_waste(batches, whole)
    return found


@dataclass
class Phases:
    """Seconds per phase of a fold (``train`` epochs, ``dev`` and ``test`` scoring,
    ``checkpoint`` saves) and the phase running now (None between phases)."""

    seconds: dict[str, list[float]]
    current: str | None = None


@contextmanager
def phase_timer(phases: dict[str, list[float]]) -> Iterator[Phases]:
    """Time FoldRunner's training epochs, its dev and test scoring and its checkpoint saves
    into ``phases``; the yielded `Phases` says which one is running."""
    timing = Phases(phases)

    def timed(method: Callable[..., Any], name_of: Callable[[tuple], str]) -> Callable[..., Any]:
        def run(self: object, *args: Any) -> Any:
            timing.current = name_of(args)
            began = time.perf_counter()
            try:
                return method(self, *args)
            finally:
                if torch.cuda.is_initialized():  # queued kernels belong to this phase
                    torch.cuda.synchronize()
                phases[timing.current].append(time.perf_counter() - began)
                timing.current = None

        return run

    with (
        mock.patch.object(
            FoldRunner, "_train_epoch", timed(FoldRunner._train_epoch, lambda _: "train")
        ),
        mock.patch.object(FoldRunner, "_score", timed(FoldRunner._score, lambda args: args[0])),
        mock.patch.object(
            FoldCheckpoints, "save", timed(FoldCheckpoints.save, lambda _: "checkpoint")
        ),
    ):
        yield timing


def run_config(prepared: Path, out: Path, args: argparse.Namespace, **overrides: Any) -> Any:
    settings = {
        "data.corpus": str(prepared),
        "data.folds": "1",
        "data.num_workers": args.num_workers,
        "model.backbone": args.backbone,
        "model.method": args.method,
        "optim.epochs": 1,
        "output_dir": str(out),
        "progress": False,
        "threads": args.threads,
    }
    return load_run_config(overrides=settings | overrides)


ORIGINAL_DRIVER = Path(__file__).with_name("original_train_driver.py")


def write_original_fold(prepared: Path, work: Path, index: int = 0) -> None:
    """A fold's clips, decoded, and labels for the original side, with the Whisper encoder."""
    corpus = read_prepared(prepared)
    fold = corpus.folds[index]
    arrays, labels = {}, {}
    for name, keys in (("train", fold.train), ("dev", fold.dev), ("test", fold.test)):
        split = select(corpus, keys)
        for index, utterance in enumerate(split):
            arrays[f"{name}_{index}"] = sf.read(utterance.path, dtype="float32")[0]
        labels[name] = [corpus.labels.index(u.label) for u in split]
    np.savez(work / "fold.npz", **arrays)
    (work / "fold.json").write_text(json.dumps(labels))
    write_whisper_encoder(work)


def original_epoch(
    python: Path, work: Path, args: argparse.Namespace, *options: str
) -> dict[str, float]:
    found = run_original(python, work, ("--threads", str(args.threads), *options), ORIGINAL_DRIVER)
    return found["seconds"] | {"test_uar": found["test_uar"]}


def epochs_in_turns(
    prepared: Path,
    work: Path,
    args: argparse.Namespace,
    original: Path | None,
    arms: dict[str, Callable[[int], Any]],
    timers: Callable[[dict[str, list[float]]], AbstractContextManager[Any]] = phase_timer,
) -> dict[str, dict[str, float]]:
    """Median phase seconds and test UAR per side of one fold-1 epoch: the original's (when
    given, run in ``work``) and each arm's run (``arms[name](repeat)`` is its config), the
    sides in turns within each of ``args.repeats``, each run timed by ``timers``."""
    sides = (["original"] if original else []) + list(arms)
    phases: dict[str, dict[str, list[float]]] = {side: defaultdict(list) for side in sides}
    if original:
        work.mkdir()
        write_original_fold(prepared, work)
    for repeat in range(args.repeats):
        if original:
            for name, value in original_epoch(original, work, args).items():
                phases["original"][name].append(value)
        for arm, config_of in arms.items():
            with timers(phases[arm]):
                result = train(config_of(repeat))
            phases[arm]["test_uar"].append(result.folds[0]["test"]["uar"])
    return {
        side: {name: statistics.median(values) for name, values in found.items()}
        for side, found in phases.items()
    }


def precision_epochs(
    prepared: Path, root: Path, args: argparse.Namespace, original: Path | None
) -> dict[str, dict[str, float]]:
    """Median phase seconds per side: the original when given, peft-ser fp32 and bf16."""

    def arm(precision: str) -> Callable[[int], Any]:
        return lambda repeat: run_config(
            prepared, root / f"epoch-{precision}-{repeat}", args, mixed_precision=precision
        )

    arms = {precision: arm(precision) for precision in ("no", "bf16")}
    return epochs_in_turns(prepared, root / "original", args, original, arms)


def counting_encodes() -> tuple[list[int], Callable[..., Any]]:
    counts: list[int] = []
    original = SERModel.encode

    def encode(self: SERModel, waveforms: torch.Tensor, lengths: Any = None) -> Any:
        counts.append(int(waveforms.shape[0]))
        return original(self, waveforms, lengths)

    return counts, encode


def frozen_run(
    prepared: Path, out: Path, store: Path, args: argparse.Namespace, epochs: int
) -> tuple[float, int]:
    """Seconds and clips encoded of a frozen five-fold run with the feature store ``store``."""
    config = run_config(
        prepared, out, args,
        **{"model.method": "frozen", "data.folds": None, "optim.epochs": epochs,
           "feature_cache_dir": str(store)},
    )  # fmt: skip
    counts, encode = counting_encodes()
    began = time.perf_counter()
    with mock.patch.object(SERModel, "encode", encode):
        train(config)
    return time.perf_counter() - began, sum(counts)


@dataclass
class FrozenRun:
    epochs: int
    store: str
    seconds: float
    encoded: int


def frozen_folds(prepared: Path, root: Path, args: argparse.Namespace) -> list[FrozenRun]:
    """Frozen five-fold runs: ``--frozen-epochs`` on a fresh store (cold) and again on it
    (warm), and ``--paper-epochs`` on another fresh store."""
    epochs = args.frozen_epochs
    found = [
        FrozenRun(
            epochs,
            attempt,
            *frozen_run(prepared, root / f"frozen-{attempt}", root / "features", args, epochs),
        )
        for attempt in ("cold", "warm")
    ]
    if args.paper_epochs:
        seconds, encoded = frozen_run(
            prepared, root / "frozen-paper", root / "features-paper", args, args.paper_epochs
        )
        found.append(FrozenRun(args.paper_epochs, "cold", seconds, encoded))
    return found


@dataclass
class OriginalFrozen:
    """The original recipe's frozen baseline over five folds: its processes' seconds, and the
    part of them its epochs took (train, dev and test phases, summed over folds)."""

    total: float
    in_epochs: float
    epochs: int

    @property
    def per_epoch(self) -> float:
        return self.in_epochs / self.epochs

    def at(self, epochs: int) -> float:
        """Its seconds at ``epochs``: each of its epochs encodes every clip again, so they all
        cost the same, and the rest (processes, model builds) does not depend on epochs."""
        return self.total - self.in_epochs + epochs * self.per_epoch


def original_frozen_folds(
    prepared: Path, root: Path, args: argparse.Namespace, python: Path
) -> OriginalFrozen:
    """The original recipe's frozen baseline over the five folds, ``--frozen-epochs`` each: one
    process per fold, as its script runs, with the fold's seed (8 × fold)."""
    work = root / "original-frozen"
    work.mkdir()
    total = in_epochs = 0.0
    for index in range(5):
        write_original_fold(prepared, work, index)
        began = time.perf_counter()
        phases = original_epoch(
            python, work, args, "--method", "frozen", "--epochs", str(args.frozen_epochs),
            "--seed", str(8 * (index + 1)),
        )  # fmt: skip
        total += time.perf_counter() - began
        in_epochs += sum(phases[name] for name in ("train", "dev", "test"))
    return OriginalFrozen(total, in_epochs, args.frozen_epochs)


def print_frozen(found: list[FrozenRun], original: OriginalFrozen | None) -> None:
    """The frozen five-fold runs, each against the original's at as many epochs where it ran."""
    print("frozen, 5 folds (seconds):")
    if original is not None:
        print(
            f"  original, {original.epochs} epochs, no cache: {original.total:.1f}"
            f" ({original.per_epoch:.1f} per epoch of all folds,"
            f" {original.total - original.in_epochs:.1f} in processes and model builds)"
        )
    for run in found:
        print(
            f"  peft-ser, {run.epochs} epochs, {run.store} store ({run.encoded} clips encoded):"
            f" {run.seconds:.1f}"
        )
        if original is not None:
            how = "measured" if run.epochs == original.epochs else "extrapolated"
            expected = original.at(run.epochs)
            print(
                f"    original at {run.epochs} epochs ({how}): {expected:.1f};"
                f" original/peft-ser {expected / run.seconds:.1f}x"
            )


def print_epochs(epochs: dict[str, dict], repeats: int) -> None:
    """Per-phase medians and the ratios: original/peft-ser where the original ran, fp32/bf16."""
    for side in epochs:
        epochs[side]["epoch"] = sum(epochs[side][k] for k in ("train", "dev", "test"))
    ratios = [("fp32", "no", "bf16")]
    if "original" in epochs:
        ratios = [("orig", "original", "no"), ("orig", "original", "bf16"), *ratios]
    named = {"original": "orig", "no": "fp32", "bf16": "bf16"}
    print(f"fold 1 epoch, median of {repeats} (seconds):")
    header = "".join(f"{named[side]:>9}" for side in epochs)
    header += "".join(f"{f'{top}/{named[bottom]}':>11}" for top, _, bottom in ratios)
    print(f"{'phase':8}{header}")
    for phase in ("train", "dev", "test", "epoch"):
        cells = "".join(f"{epochs[side][phase]:9.2f}" for side in epochs)
        cells += "".join(
            f"{epochs[top][phase] / epochs[bottom][phase]:10.2f}x" for _, top, bottom in ratios
        )
        print(f"{phase:8}{cells}")
    uars = ", ".join(f"{named[side]} {epochs[side]['test_uar']:.3f}" for side in epochs)
    print(f"test UAR (median): {uars}")


def main() -> None:
    import epoch_topk  # it builds on this module's functions

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clips", type=int, default=320)
    parser.add_argument("--backbone", default="ct2-whisper-tiny.en")
    parser.add_argument("--method", default="lora")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--num-workers", type=int, default=0)
    parser.add_argument("--skip-frozen", action="store_true")
    parser.add_argument("--skip-epoch", action="store_true", help="only the frozen five folds")
    parser.add_argument("--frozen-epochs", type=int, default=3)
    parser.add_argument(
        "--paper-epochs", type=int, default=30, help="a frozen run of as many epochs; 0: none"
    )
    parser.add_argument("--padding-only", action="store_true", help="no training")
    parser.add_argument(
        "--original", action="store_true", help="also time the original's epoch, in turns"
    )
    default_venv = Path("~/.cache/peft-ser/bench-original-venv").expanduser()
    parser.add_argument("--venv", type=Path, default=default_venv, help="original's environment")
    epoch_topk.add_arguments(parser)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="peft-ser-bench-epoch-") as scratch:
        root = Path(scratch)
        prepared = make_corpus(root, args.clips)
        waste = padding(prepared, 32, 64)
        print(f"{args.clips} clips, backbone {args.backbone}, method {args.method}")
        for name, value in waste.items():
            print(f"padding waste per epoch, {name:20}: {100 * value:5.1f} %")
        if args.padding_only:
            return
        original = ensure_original_environment(args.venv) if args.original else None
        if not args.skip_epoch:
            print_epochs(precision_epochs(prepared, root, args, original), args.repeats)
        if not args.skip_frozen:
            baseline = original_frozen_folds(prepared, root, args, original) if original else None
            print_frozen(frozen_folds(prepared, root, args), baseline)
        epoch_topk.run(prepared, root, args, original)


if __name__ == "__main__":
    main()
