"""The top-k case of ``bench_epoch.py``: LoRA on the top ``k`` encoder layers
(``model.tune_layers``), uncached and with the states below them cached, against LoRA on every
layer and the original PEFT-SER code; a five-fold workload, cached against uncached, with the
results checked equal; and test accuracy over seeds, top layers against all.

Every peft-ser arm here trains without augmentation (``augment.enabled: false``): the
original's recipe as ``original_train_driver.py`` runs it has none, and augmentation keeps
``feature_cache: auto`` from caching the states below tuned layers (they would change every
epoch). The cached arms each start on a fresh feature store, so their first pass (the "fill"
row) is part of what they cost.

1. ``--top-layers K``: one fold-1 epoch per arm, the arms in turns in each of ``--repeats``:
   the original (with ``--original``), peft-ser LoRA on all layers, on the top ``K`` uncached,
   and on the top ``K`` cached; median seconds per phase and the ratios between arms.
2. ``--workload``: ``--workload-folds`` folds × ``--workload-epochs`` epochs of LoRA on the top
   ``K`` layers, uncached then cached, on a corpus of ``--workload-clips`` clips; wall seconds
   of each, their ratio, and whether their results agree (histories and test losses within
   1e-4 relative, the same confusion matrices and best epochs).
3. ``--accuracy-seeds N``: test UAR of LoRA on the top 1, 2, ... layers (``--accuracy-layers``)
   and on all layers, ``N`` seeds each, ``--accuracy-epochs`` epochs on ``--accuracy-folds``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any
from unittest import mock

import yaml
from bench_epoch import epochs_in_turns, make_corpus, phase_timer, run_config

from peft_ser.models.backbones.base import Backbone
from peft_ser.training import train
from peft_ser.training.batches import BatchSource

PHASES = ("train", "dev", "test")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The top-k case's options, on ``bench_epoch.py``'s parser."""
    group = parser.add_argument_group("top-k layers (model.tune_layers)")
    group.add_argument("--top-layers", type=int, default=0, help="K; 0: no top-k case")
    group.add_argument("--topk-precision", default="no", help="mixed_precision of its arms")
    group.add_argument(
        "--topk-set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a config override of every top-k arm (YAML value), e.g. data.bucket_slack=0.5",
    )
    group.add_argument("--workload", action="store_true", help="the five-fold workload")
    group.add_argument("--workload-clips", type=int, default=120)
    group.add_argument("--workload-folds", default="1,2,3,4,5")
    group.add_argument("--workload-epochs", type=int, default=10)
    group.add_argument("--accuracy-seeds", type=int, default=0, help="seeds per setting; 0: none")
    group.add_argument("--accuracy-layers", default="1,2,3", help="top-layer counts to compare")
    group.add_argument("--accuracy-epochs", type=int, default=10)
    group.add_argument("--accuracy-folds", default="1,2,3,4,5")


def topk_settings(args: argparse.Namespace, layers: int | None, cached: bool) -> dict[str, Any]:
    """Config overrides of a LoRA arm: all layers (``layers`` None) or the top ``layers``."""
    return {
        "model.method": "lora",
        "model.tune_layers": layers,
        "augment.enabled": False,
        "feature_cache": "on" if cached else "off",
        "mixed_precision": args.topk_precision,
    } | dict(_override(item) for item in args.topk_set)


def _override(item: str) -> tuple[str, Any]:
    """``KEY=VALUE`` of ``--topk-set`` as a key and its YAML value."""
    key, separator, value = item.partition("=")
    if not separator or not key:
        raise SystemExit(f"--topk-set {item!r}: expected KEY=VALUE")
    return key, yaml.safe_load(value)


@contextmanager
def call_timer(owner: type, name: str, record: Callable[[float], None]) -> Iterator[None]:
    """Pass the seconds of every call of ``owner.name`` to ``record``."""
    method = getattr(owner, name)

    def timed(self: Any, *args: Any) -> Any:
        began = time.perf_counter()
        try:
            return method(self, *args)
        finally:
            record(time.perf_counter() - began)

    with mock.patch.object(owner, name, timed):
        yield


def fill_timer(phases: dict[str, list[float]]) -> AbstractContextManager[None]:
    """Time the feature cache's first pass (`BatchSource.fill_cache`) into ``phases["fill"]``
    (only when there is one: an arm without the cache has no such phase)."""
    return call_timer(BatchSource, "fill_cache", lambda seconds: phases["fill"].append(seconds))


ARMS = {"all": (False, False), "top": (True, False), "cached": (True, True)}
"""Each peft-ser arm: whether it tunes the top layers alone, whether it caches below them."""


def topk_epochs(
    prepared: Path, root: Path, args: argparse.Namespace, original: Path | None
) -> dict[str, dict[str, float]]:
    """Median seconds per phase of one fold-1 epoch per arm (and the cache's first pass), the
    arms in turns."""

    def arm(name: str, top: bool, cached: bool) -> Callable[[int], Any]:
        settings = topk_settings(args, args.top_layers if top else None, cached)

        def config(repeat: int) -> Any:
            store = {"feature_cache_dir": str(root / f"topk-store-{repeat}")}
            return run_config(prepared, root / f"topk-{name}-{repeat}", args, **settings, **store)

        return config

    arms = {name: arm(name, top, cached) for name, (top, cached) in ARMS.items()}
    return epochs_in_turns(prepared, root / "topk-original", args, original, arms, timers)


@contextmanager
def timers(phases: dict[str, list[float]]) -> Iterator[None]:
    """The phases of `phase_timer` and the cache's first pass (`fill_timer`)."""
    with phase_timer(phases), fill_timer(phases):
        yield


def print_topk(epochs: dict[str, dict[str, float]], args: argparse.Namespace) -> None:
    """Per-phase medians per arm and the ratios between arms; ``epoch`` sums train, dev and
    test, ``+fill`` adds the cached arm's first pass (a one-epoch run's whole cost)."""
    names = {"original": "orig", "all": "all", "top": f"top{args.top_layers}",
             "cached": f"top{args.top_layers}c"}  # fmt: skip
    for found in epochs.values():
        found["epoch"] = sum(found[phase] for phase in PHASES)
        found["+fill"] = found["epoch"] + found.get("fill", 0.0)
    pairs = [("all", "top"), ("all", "cached"), ("top", "cached")]
    if "original" in epochs:
        pairs = [("original", side) for side in ARMS] + pairs
    print(
        f"fold 1 epoch, LoRA r16, top {args.top_layers} layers or all, "
        f"mixed_precision {args.topk_precision}, no augmentation, median of {args.repeats} (s):"
    )
    header = "".join(f"{names[side]:>9}" for side in epochs)
    header += "".join(f"{f'{names[a]}/{names[b]}':>12}" for a, b in pairs)
    print(f"{'phase':8}{header}")
    for phase in (*PHASES, "fill", "epoch", "+fill"):
        cells = "".join(
            f"{epochs[side][phase]:9.2f}" if phase in epochs[side] else f"{'-':>9}"
            for side in epochs
        )
        cells += "".join(
            f"{epochs[a][phase] / epochs[b][phase]:11.2f}x"
            if phase in epochs[a] and phase in epochs[b]
            else f"{'-':>12}"
            for a, b in pairs
        )
        print(f"{phase:8}{cells}")
    uars = ", ".join(f"{names[side]} {epochs[side]['test_uar']:.3f}" for side in epochs)
    print(f"test UAR (median): {uars}")


def workload(root: Path, args: argparse.Namespace) -> None:
    """Folds × epochs of LoRA on the top ``--top-layers`` layers, uncached then cached (fresh
    store), timed whole; prints both, their ratio and whether their results agree."""
    prepared = make_corpus(root / "workload", args.workload_clips)
    layers = args.top_layers or 2
    found: dict[str, tuple[float, list[dict[str, Any]]]] = {}
    below: dict[str, list[float]] = {"uncached": [], "cached": []}
    for arm, cached in (("uncached", False), ("cached", True)):
        settings = topk_settings(args, layers, cached) | {
            "data.folds": args.workload_folds,
            "optim.epochs": args.workload_epochs,
            "feature_cache_dir": str(root / "workload-store"),
        }
        config = run_config(prepared, root / f"workload-{arm}", args, **settings)
        began = time.perf_counter()
        with below_timer(below[arm]):
            result = train(config)
        found[arm] = (time.perf_counter() - began, result.folds)
    (slow, plain), (fast, cached) = found["uncached"], found["cached"]
    folds, epochs = len(plain), args.workload_epochs
    print(
        f"workload: {args.workload_clips} clips, {folds} folds x {epochs} epochs, LoRA r16 on the "
        f"top {layers} layers, mixed_precision {args.topk_precision}, no augmentation (s):"
    )
    print(f"  uncached {slow:.1f}, cached {fast:.1f} (fresh store): {slow / fast:.2f}x")
    lower = sum(below["uncached"])
    print(
        f"  the front end and the layers below the top {layers}: {lower:.1f} s of the uncached "
        f"run, {sum(below['cached']):.1f} s of the cached one (filling its store); a cache that "
        f"cost nothing at all would make the run at most {slow / (slow - lower):.2f}x faster"
    )
    problems, largest = agreement(plain, cached)
    verdict = "equal" if not problems else f"DIFFERENT: {'; '.join(problems[:3])}"
    print(f"  results {verdict} (largest relative difference of a loss: {largest:.1e})")
    picks: dict[str, Callable[[dict[str, Any]], Any]] = {
        "best epoch": lambda fold: fold["best_epoch"],
        "test confusion matrix": lambda fold: fold["test"]["confusion"],
    }
    for name, pick in picks.items():
        same = sum(pick(a) == pick(b) for a, b in zip(plain, cached, strict=True))
        print(f"  {name}: the same in {same} of {len(plain)} folds")
    for name, folds_found in (("uncached", plain), ("cached", cached)):
        uars = [fold["test"]["uar"] for fold in folds_found]
        each = ", ".join(f"{uar:.3f}" for uar in uars)
        print(f"  test UAR, {name}: mean {statistics.mean(uars):.3f} over the folds ({each})")


def below_timer(seconds: list[float]) -> AbstractContextManager[None]:
    """Time every pass through the front end and the layers below the tuned ones into
    ``seconds``: the work the cache saves."""
    return call_timer(Backbone, "_below", seconds.append)


def agreement(
    plain: list[dict[str, Any]], cached: list[dict[str, Any]], tolerance: float = 1e-4
) -> tuple[list[str], float]:
    """What differs between two runs' fold results beyond ``tolerance`` (relative, on every
    number of every history row and the test loss), and the largest relative difference of a
    loss (UARs move in steps of a clip)."""
    problems: list[str] = []
    largest = 0.0

    def compare(where: str, a: float, b: float) -> None:
        nonlocal largest
        relative = abs(a - b) / max(abs(a), abs(b), 1e-12)
        if "loss" in where:
            largest = max(largest, relative)
        if relative > tolerance:
            problems.append(f"{where}: {a!r} against {b!r}")

    for one, other in zip(plain, cached, strict=True):
        fold = one["fold"]
        for row, twin in zip(one["history"], other["history"], strict=True):
            for key in row.keys() - {"seconds"}:
                compare(f"{fold} epoch {row['epoch']} {key}", row[key], twin[key])
        compare(f"{fold} test loss", one["test"]["loss"], other["test"]["loss"])
        if one["test"]["confusion"] != other["test"]["confusion"]:
            problems.append(f"{fold}: test confusion matrices differ")
        if one["best_epoch"] != other["best_epoch"]:
            problems.append(f"{fold}: best epochs {one['best_epoch']} and {other['best_epoch']}")
    return problems, largest


def accuracy(prepared: Path, root: Path, args: argparse.Namespace) -> None:
    """Test UAR (mean over the folds, then mean ± std over seeds) and seconds per run of LoRA
    on the top k layers (cached: the same results as uncached, sooner) and on all layers."""
    settings: list[tuple[str, int | None]] = [
        (f"top {k}", k) for k in map(int, args.accuracy_layers.split(","))
    ] + [("all layers", None)]
    print(
        f"accuracy: {args.accuracy_seeds} seeds, {args.accuracy_epochs} epochs, folds "
        f"{args.accuracy_folds}, LoRA r16, no augmentation, the last epoch tested:"
    )
    for name, layers in settings:
        uars, seconds = [], []
        for seed in range(args.accuracy_seeds):
            overrides = topk_settings(args, layers, cached=layers is not None) | {
                "seed": seed,
                "data.folds": args.accuracy_folds,
                "optim.epochs": args.accuracy_epochs,
                "optim.select": "last",
                "feature_cache_dir": str(root / "accuracy-store"),
            }
            out = root / f"accuracy-{layers}-{seed}"
            began = time.perf_counter()
            result = train(run_config(prepared, out, args, **overrides))
            seconds.append(time.perf_counter() - began)
            uars.append(statistics.mean(fold["test"]["uar"] for fold in result.folds))
        spread = statistics.stdev(uars) if len(uars) > 1 else 0.0
        print(
            f"  {name:10} test UAR {statistics.mean(uars):.3f} ± {spread:.3f} "
            f"({', '.join(f'{u:.3f}' for u in uars)}); {statistics.mean(seconds):.1f} s per run"
        )


def run(prepared: Path, root: Path, args: argparse.Namespace, original: Path | None) -> None:
    """The parts of the top-k case that ``args`` asks for; ``original`` is the interpreter of
    the original's environment where ``--original`` was given."""
    if args.top_layers:
        print_topk(topk_epochs(prepared, root, args, original), args)
    if args.workload:
        workload(root, args)
    if args.accuracy_seeds:
        accuracy(prepared, root, args)
