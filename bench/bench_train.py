"""Training speed: the frozen-backbone feature cache and length bucketing, side by side.

On one generated corpus (the synthetic demo speech in the CREMA-D layout, prepared as the
real corpus would be), this script trains method ``frozen`` twice for a few epochs, with and
without the feature cache, and reports the epoch times and their ratio from the second epoch
on; then it reports the padding waste of one training epoch's batches with and without
length bucketing. Run it from the repository root:

    .venv/bin/python bench/bench_train.py --backbone tiny-wavlm --epochs 3
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from peft_ser.config import load_run_config
from peft_ser.corpora.prepare import prepare_corpus
from peft_ser.data.dataset import expected_length
from peft_ser.data.sampler import LengthBucketSampler, padding_waste
from peft_ser.demo.synthetic import espeak_available
from peft_ser.training import train

REPO = Path(__file__).resolve().parent.parent


def make_corpus(root: Path, actors: int) -> Path:
    """Generate the synthetic CREMA-D layout and prepare it; return the prepared directory."""
    backend = "espeak" if espeak_available() else "fallback"
    raw = root / "CREMA-D"
    script = REPO / "scripts" / "make_demo_corpus.py"
    command = [sys.executable, str(script), "--out", str(raw), "--actors", str(actors)]
    subprocess.run([*command, "--backend", backend], check=True, capture_output=True)
    prepare_corpus("crema-d", raw, root / "prepared")
    return root / "prepared"


def epoch_seconds(prepared: Path, out: Path, args: argparse.Namespace, cache: str) -> list[float]:
    """Per-epoch wall time of method frozen on fold 1, with the feature cache on or off."""
    config = load_run_config(
        overrides={
            "data.corpus": str(prepared),
            "data.folds": "1",
            "data.batch_size": args.batch_size,
            "data.num_workers": args.num_workers,
            "model.backbone": args.backbone,
            "model.method": "frozen",
            "optim.epochs": args.epochs,
            "feature_cache": cache,
            "output_dir": str(out / f"cache-{cache}"),
            "progress": False,
        }
    )
    result = train(config)
    return [row["seconds"] for row in result.folds[0]["history"]]


def padding(prepared: Path, batch_size: int) -> dict[str, float]:
    """Padding waste of fold 1's training batches (6-s crops), bucketed or not."""
    from peft_ser.data.manifest import read_prepared, select

    corpus = read_prepared(prepared)
    train_split = select(corpus, corpus.folds[0].train)
    lengths = [expected_length(u, 6 * 16000) for u in train_split]
    labels = [corpus.labels.index(u.label) for u in train_split]
    waste = {}
    for bucketing in (True, False):
        sampler = LengthBucketSampler(
            lengths, batch_size, shuffle=True, labels=labels, bucketing=bucketing
        )
        waste["bucketed" if bucketing else "random"] = padding_waste(
            sampler.global_batches(), lengths
        )
    return waste


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backbone", default="tiny-wavlm")
    parser.add_argument("--actors", type=int, default=10, help="synthetic actors (16 clips each)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--num-workers", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        prepared = make_corpus(root, args.actors)
        cached = epoch_seconds(prepared, root, args, "on")
        uncached = epoch_seconds(prepared, root, args, "off")
        waste = padding(prepared, args.batch_size)
    later_cached, later_uncached = statistics.mean(cached[1:]), statistics.mean(uncached[1:])
    print(f"backbone {args.backbone}, {args.epochs} epochs, batch {args.batch_size}")
    print(f"frozen epoch seconds, cache on : {', '.join(f'{s:.2f}' for s in cached)}")
    print(f"frozen epoch seconds, cache off: {', '.join(f'{s:.2f}' for s in uncached)}")
    print(f"speed-up from epoch 2 on: {later_uncached / later_cached:.1f}x (target >= 10x)")
    print(f"padding waste, bucketed: {100 * waste['bucketed']:.1f} % (target <= 10 %)")
    print(f"padding waste, random  : {100 * waste['random']:.1f} %")
    print(f"padding reduction: {waste['random'] / max(waste['bucketed'], 1e-9):.1f}x")


if __name__ == "__main__":
    main()
