"""bf16 autocast against fp32 on the CPU: test accuracy over seeds, paired, and wall time.

`mixed_precision: auto` may only choose bf16 on a CPU where it costs no accuracy, and the demo's
32 test clips cannot tell: one clip moves UAR by about 0.03. This script measures it on a split
of hundreds of clips:

1. writes the demo's synthetic speech (``scripts/make_demo_corpus.py``: espeak-ng, CREMA-D
   layout; the four shortest sentences, about 1.3 s a clip) for ``--actors`` actors, prepares
   it with ``peft-ser prepare crema-d`` and gives it one fold of contiguous actor blocks that
   is heavy in test: the first ``--train-actors`` train, the next ``--dev-actors`` dev, the
   rest test (80 actors: 560, 160 and 560 clips);
2. trains the demo's recipe (``configs/demo.yaml``: Whisper tiny.en, LoRA r16, lr 1e-3 with a
   cosine schedule, batches of 8, the last epoch tested) for ``--epochs`` epochs, once with
   ``mixed_precision: no`` and once with ``bf16`` per seed, the arms in turns (fp32 first at
   even seeds, bf16 first at odd ones), each in a fresh output folder, on ``--threads`` torch
   threads (default one: on a busy two-core machine two spinning threads stalled an epoch for
   minutes);
3. prints per seed and arm the test UAR and accuracy, the dev UAR, the run's wall and CPU
   seconds (the process's, which other processes on the machine slow less than the wall
   clock) and its median epoch seconds; then per arm the mean, standard deviation and range
   over seeds, the paired difference bf16 - fp32 per seed with its mean, standard deviation
   and 95 % t interval, the test clips only one arm classified right (pooled over seeds), and
   the speed ratios fp32/bf16 of the runs' wall and CPU seconds and of their median epochs.

Both arms of a seed see the same clips in the same order; only the precision differs. Run it
from the repository root at low priority (about 30 minutes on two shared cores):

    nice -n 5 .venv/bin/python bench/bench_bf16.py --seeds 0,1,2,3,4 --epochs 4
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from scipy import stats

from peft_ser.config import load_run_config
from peft_ser.corpora import prepare_corpus
from peft_ser.corpora.base import natural_key
from peft_ser.data.manifest import Fold, save_prepared
from peft_ser.runs.layout import PREDICTIONS, RunDir
from peft_ser.training import train
from peft_ser.utils.precision import cpu_has_native_bf16

ROOT = Path(__file__).resolve().parents[1]
MAKE_CORPUS = ROOT / "scripts" / "make_demo_corpus.py"
DEMO_CONFIG = ROOT / "configs" / "demo.yaml"
SENTENCES = ("IEO", "TSI", "DFA", "IOM")
"""The demo's four shortest sentences (about 1.3 s a clip)."""
ARMS = {"fp32": "no", "bf16": "bf16"}
"""Each arm's name and its ``mixed_precision``."""


@dataclasses.dataclass
class Outcome:
    """One trained run: its scores, its seconds, and which test clips it got right."""

    uar: float
    accuracy: float
    dev_uar: float
    seconds: float
    cpu_seconds: float
    epoch_seconds: float
    right: dict[str, bool]


def make_corpus(work: Path, actors: int, train_actors: int, dev_actors: int) -> Path:
    """The synthetic corpus, prepared, with one fold of contiguous actor blocks; its folder."""
    raw = work / "CREMA-D"
    command = [sys.executable, str(MAKE_CORPUS), "--out", str(raw), "--actors", str(actors)]
    made = subprocess.run([*command, "--sentences", *SENTENCES], stdout=subprocess.DEVNULL)
    if made.returncode != 0:
        raise SystemExit(f"{MAKE_CORPUS.name} could not write the corpus into {raw} (see above)")
    paper = prepare_corpus("crema-d", raw, work / "prepared-paper")
    speakers = sorted({u.speaker for u in paper.manifest}, key=natural_key)
    split = {s: "train" for s in speakers[:train_actors]}
    split |= {s: "dev" for s in speakers[train_actors : train_actors + dev_actors]}
    split |= {s: "test" for s in speakers[train_actors + dev_actors :]}
    keys: dict[str, list[str]] = {"train": [], "dev": [], "test": []}
    for utterance in paper.manifest:
        keys[split[utterance.speaker]].append(utterance.key)
    fold = Fold("fold1", keys["train"], keys["dev"], keys["test"])
    prepared = work / "prepared"
    save_prepared(prepared, dataclasses.replace(paper, folds=[fold]))
    seconds = sum(u.duration for u in paper.manifest)
    print(
        f"corpus: {len(paper.manifest)} clips ({seconds:.0f} s of audio, "
        f"{seconds / len(paper.manifest):.2f} s a clip), {len(speakers)} actors; fold: train "
        f"{len(fold.train)} ({train_actors} actors), dev {len(fold.dev)} ({dev_actors}), test "
        f"{len(fold.test)} ({len(speakers) - train_actors - dev_actors})",
        flush=True,
    )
    return prepared


def run_arm(prepared: Path, out: Path, seed: int, arm: str, args: argparse.Namespace) -> Outcome:
    """Train the demo's recipe on ``prepared`` under ``arm``'s precision; its `Outcome`."""
    overrides: dict[str, Any] = {
        "data.corpus": str(prepared),
        "data.corpus_dir": None,
        "data.prepared_dir": None,
        "optim.epochs": args.epochs,
        "seed": seed,
        "threads": args.threads,
        "mixed_precision": ARMS[arm],
        "output_dir": str(out),
        "progress": False,
        "report_to": [],
    }
    config = load_run_config(DEMO_CONFIG, overrides)
    began, began_cpu = time.perf_counter(), time.process_time()
    result = train(config)
    seconds, cpu_seconds = time.perf_counter() - began, time.process_time() - began_cpu
    [fold] = result.folds
    with (RunDir(result.run_dir).fold(fold["fold"]).path / PREDICTIONS).open() as rows:
        right = {row["key"]: row["label"] == row["predicted"] for row in csv.DictReader(rows)}
    return Outcome(
        uar=fold["test"]["uar"],
        accuracy=fold["test"]["accuracy"],
        dev_uar=fold["dev_uar"],
        seconds=seconds,
        cpu_seconds=cpu_seconds,
        epoch_seconds=statistics.median(row["seconds"] for row in fold["history"]),
        right=right,
    )


def spread(values: list[float]) -> str:
    """``mean ± std (min-max)`` of ``values`` (sample standard deviation)."""
    deviation = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} ± {deviation:.3f} ({min(values):.3f}-{max(values):.3f})"


def paired(differences: list[float]) -> str:
    """``mean ± std, 95 % t interval [low, high]`` of per-seed differences."""
    mean = statistics.mean(differences)
    if len(differences) < 2:
        return f"{mean:+.3f}"
    deviation = statistics.stdev(differences)
    half = stats.t.ppf(0.975, len(differences) - 1) * deviation / len(differences) ** 0.5
    return (
        f"{mean:+.3f} ± {deviation:.3f}, 95 % t interval [{mean - half:+.3f}, {mean + half:+.3f}]"
    )


def report(outcomes: dict[int, dict[str, Outcome]]) -> None:
    """Per-arm spreads, the paired differences, the clips one arm alone got right, the speed."""
    seeds = sorted(outcomes)
    arm_rows = {arm: [outcomes[s][arm] for s in seeds] for arm in ARMS}
    print(f"\nover {len(seeds)} seeds (mean ± std (min-max)):")
    for arm, rows in arm_rows.items():
        print(
            f"  {arm}: test UAR {spread([r.uar for r in rows])}, "
            f"accuracy {spread([r.accuracy for r in rows])}"
        )
    print("paired bf16 - fp32 per seed:")
    only_fp32 = only_bf16 = 0
    for seed in seeds:
        fp32, bf16 = outcomes[seed]["fp32"], outcomes[seed]["bf16"]
        lost = sum(fp32.right[k] and not bf16.right[k] for k in fp32.right)
        won = sum(bf16.right[k] and not fp32.right[k] for k in fp32.right)
        only_fp32, only_bf16 = only_fp32 + lost, only_bf16 + won
        print(
            f"  seed {seed}: UAR {bf16.uar - fp32.uar:+.3f}, accuracy "
            f"{bf16.accuracy - fp32.accuracy:+.3f}; clips right only in fp32 {lost}, "
            f"only in bf16 {won}"
        )
    for name, field in (("UAR", "uar"), ("accuracy", "accuracy")):
        differences = [getattr(outcomes[s]["bf16"], field) - getattr(outcomes[s]["fp32"], field)
                       for s in seeds]  # fmt: skip
        print(f"  {name}: {paired(differences)}")
    sign = stats.binomtest(only_bf16, only_fp32 + only_bf16) if only_fp32 + only_bf16 else None
    print(
        f"  test clips right only in fp32: {only_fp32}, only in bf16: {only_bf16} (pooled over "
        f"seeds; two-sided sign test p = {sign.pvalue if sign else 1.0:.2f})"
    )
    wall = {arm: sum(r.seconds for r in rows) for arm, rows in arm_rows.items()}
    cpu = {arm: sum(r.cpu_seconds for r in rows) for arm, rows in arm_rows.items()}
    epoch = {
        arm: statistics.median(r.epoch_seconds for r in rows) for arm, rows in arm_rows.items()
    }
    for name, seconds in (("wall", wall), ("CPU", cpu), ("median epoch", epoch)):
        print(
            f"{name} seconds: fp32 {seconds['fp32']:.1f}, bf16 {seconds['bf16']:.1f} "
            f"(fp32/bf16 {seconds['fp32'] / seconds['bf16']:.2f}x)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2,3,4", help="comma-separated seeds")
    parser.add_argument("--epochs", type=int, default=4, help="epochs per run")
    parser.add_argument("--actors", type=int, default=80, help="actors (16 clips each)")
    parser.add_argument("--train-actors", type=int, default=35, help="the first actors train")
    parser.add_argument("--dev-actors", type=int, default=10, help="the next ones are dev")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads per run (the demo sets 2; one does not stall when the cores are busy)",
    )
    parser.add_argument("--out", type=Path, default=None, help="keep corpus and runs here")
    args = parser.parse_args()
    try:
        seeds = [int(s) for s in args.seeds.split(",")]
    except ValueError:
        parser.error(f"--seeds {args.seeds!r}: give distinct whole numbers, e.g. 0,1,2")
    if len(set(seeds)) != len(seeds) or min(seeds) < 0:
        parser.error(f"--seeds {args.seeds!r}: give distinct whole numbers, e.g. 0,1,2")
    if args.epochs < 1 or args.threads < 1:
        parser.error("give at least one epoch and one thread")
    if args.train_actors < 1 or args.dev_actors < 1:
        parser.error("train and dev need at least one actor each")
    if args.actors - args.train_actors - args.dev_actors < 1:
        parser.error("--actors must leave test actors after the train and dev ones")
    if args.out is not None and args.out.exists() and any(args.out.iterdir()):
        parser.error(f"--out {args.out} is not empty: give a new or empty folder")
    work = args.out or Path(tempfile.mkdtemp(prefix="bench-bf16-"))
    native = "native" if cpu_has_native_bf16() else "emulated (no AVX512-BF16 or AMX)"
    print(f"work folder {work}; bf16 on this CPU: {native}", flush=True)
    prepared = make_corpus(work, args.actors, args.train_actors, args.dev_actors)
    print(
        f"recipe: {DEMO_CONFIG.relative_to(ROOT)}, {args.epochs} epochs, {args.threads} "
        f"thread(s)\n"
        f"{'seed':>4} {'arm':>5} {'test UAR':>9} {'test acc':>9} {'dev UAR':>8} "
        f"{'run s':>7} {'CPU s':>7} {'epoch s':>8}",
        flush=True,
    )
    outcomes: dict[int, dict[str, Outcome]] = {}
    for seed in seeds:
        order = list(ARMS) if seed % 2 == 0 else list(reversed(ARMS))
        outcomes[seed] = {}
        for arm in order:
            got = run_arm(prepared, work / f"seed{seed}-{arm}", seed, arm, args)
            outcomes[seed][arm] = got
            print(
                f"{seed:>4} {arm:>5} {got.uar:>9.3f} {got.accuracy:>9.3f} {got.dev_uar:>8.3f} "
                f"{got.seconds:>7.1f} {got.cpu_seconds:>7.1f} {got.epoch_seconds:>8.1f}",
                flush=True,
            )
    report(outcomes)


if __name__ == "__main__":
    main()
