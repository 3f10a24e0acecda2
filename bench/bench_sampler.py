"""Does length bucketing learn as well as random batches where clip length follows the label?

On the synthetic acted-speech corpus (CREMA-D layout; each emotion is spoken at its own rate,
so sad clips are longer and angry ones shorter, as in real acted speech), this script trains
method ``frozen`` with the paper's recipe on the chosen folds under three batch samplers, over
several seeds, and prints test and dev UAR (mean over the folds; mean ± std over the seeds)
and the padding waste of each:

* ``stratified``: ``data.bucketing: true``, length-sorted within each label (batches stay mixed);
* ``random``: the default, ``data.bucketing: false``;
* ``length-only``: the earlier default, sorted by length alone (the sampler without labels).

Run it from the repository root (``--actors 10`` gives 96 training clips per fold,
``--actors 200`` about 2,000; ``--corpus demo/CREMA-D`` uses the committed demo corpus):

    .venv/bin/python bench/bench_sampler.py --actors 10 --seeds 3
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from unittest import mock

import torch
from bench_train import make_corpus

import peft_ser.training.batches
from peft_ser.config import load_run_config
from peft_ser.corpora.prepare import prepare_corpus
from peft_ser.data.sampler import LengthBucketSampler
from peft_ser.data.states import FeatureCache
from peft_ser.training import train


class LengthOnlySampler(LengthBucketSampler):
    """The earlier sampler: the training loop's labels are ignored and there is no jitter, so
    pools sort by length alone."""

    def __init__(self, lengths: Sequence[int], batch_size: int, **options: Any) -> None:
        options.pop("labels", None)
        super().__init__(lengths, batch_size, **{**options, "jitter": 0.0})


def run(
    prepared: Path,
    out: Path,
    args: argparse.Namespace,
    sampler: str,
    seed: int,
    cache: FeatureCache,
) -> dict:
    config = load_run_config(
        overrides={
            "data.corpus": str(prepared),
            "data.folds": args.folds,
            "data.batch_size": args.batch_size,
            "data.bucketing": sampler != "random",
            "data.num_workers": 0,
            "model.backbone": args.backbone,
            "model.method": "frozen",
            "optim.epochs": args.epochs,
            "seed": seed,
            "output_dir": str(out / f"{sampler}-{seed}"),
            "progress": False,
        }
    )
    replacement = LengthOnlySampler if sampler == "length-only" else LengthBucketSampler
    with mock.patch.object(peft_ser.training.batches, "LengthBucketSampler", replacement):
        folds = train(config, cache=cache).folds
    waste = statistics.mean(row["padding_waste"] for fold in folds for row in fold["history"])
    test = statistics.mean(fold["test"]["uar"] for fold in folds)
    return {"test": test, "dev": statistics.mean(fold["dev_uar"] for fold in folds), "waste": waste}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backbone", default="tiny-wavlm")
    parser.add_argument("--actors", type=int, default=10, help="synthetic actors (16 clips each)")
    parser.add_argument(
        "--corpus", type=Path, help="a raw corpus in the CREMA-D layout instead (demo/CREMA-D)"
    )
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--folds", default="1", help="folds to average over, e.g. 1,2,3,4,5")
    parser.add_argument(
        "--samplers", default="stratified,random,length-only", help="which samplers to compare"
    )
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    samplers = args.samplers.split(",")
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        if args.corpus is not None:
            prepared = root / "prepared"
            prepare_corpus("crema-d", args.corpus, prepared)
        else:
            prepared = make_corpus(root, args.actors)
        cache = FeatureCache()  # every run encodes with the same frozen backbone
        results = {
            name: [run(prepared, root, args, name, seed, cache) for seed in range(args.seeds)]
            for name in samplers
        }
    print(f"backbone {args.backbone}, {args.actors} actors, {args.epochs} epochs, "
          f"batch {args.batch_size}, {args.seeds} seeds, folds {args.folds}")  # fmt: skip
    print(f"{'sampler':<12}{'test UAR':>16}{'dev UAR':>16}{'padding':>10}")
    for name in samplers:
        test = [r["test"] for r in results[name]]
        dev = [r["dev"] for r in results[name]]
        waste = statistics.mean(r["waste"] for r in results[name])
        print(
            f"{name:<12}{statistics.mean(test):>9.3f} ± {statistics.pstdev(test):.3f}"
            f"{statistics.mean(dev):>9.3f} ± {statistics.pstdev(dev):.3f}{100 * waste:>9.1f}%"
        )


if __name__ == "__main__":
    main()
