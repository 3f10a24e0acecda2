"""Distribution training against hard-label training on a corpus whose annotators disagree in a
known way.

The corpus is `peft_ser.demo.disagreement`'s: tones on a continuum between the four classes,
each clip's true vote distribution known (a listener picks one of the two nearest classes with
a probability that falls with its distance). Its votes are those of 5 listeners drawn from that
distribution (``--votes sampled``, the default: near the middle of two classes the majority
often goes to the farther one, as real raters are a sample of all listeners), or 10 listeners
split exactly as it says (``--votes exact``: the majority is always the nearer class, a
deterministic function of the signal). For each seed the same small model (a
frozen backbone, the tiny random ``tiny-wavlm`` by default, and a trained head) is trained twice
on one fold, with ``model.task distribution`` (KL divergence to the vote shares, best dev JSD)
and with ``model.task categorical`` (class-weighted cross entropy on the majority label, best
dev UAR). Each saved model then predicts the test clips through `peft_ser.inference.predict`
(the probabilities a user gets), and is scored on them:

* JSD: the mean Jensen-Shannon divergence (nats, at most ln 2 ≈ 0.693) of the predicted
  probabilities from the clips' true vote distributions (not the sampled votes);
* UAR: against the corpus's majority labels, as the runs' own test scores (`results.json`)
  give it.

It prints one line per run, then each task's mean ± standard deviation over seeds (ddof 1) and
range, and the scores as JSON. From the repository root (about 4 minutes for 3 seeds on 2
shared cores, 40 epochs; docs/training.md shows the measured table):

    nice -n 5 .venv/bin/python bench/bench_distribution.py --seeds 0,1,2,3,4 --votes sampled
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import torch

from peft_ser.config import load_run_config
from peft_ser.data.manifest import read_prepared, select
from peft_ser.data.states import FeatureCache
from peft_ser.demo.disagreement import DisagreementCorpus, write_disagreement_corpus
from peft_ser.evaluation.metrics import jensen_shannon
from peft_ser.inference.predict import predict
from peft_ser.training import train

TASKS = ("distribution", "categorical")


def run(corpus: DisagreementCorpus, out: Path, task: str, seed: int, args: argparse.Namespace,
        cache: FeatureCache) -> dict[str, float]:  # fmt: skip
    """Train ``task`` with ``seed``; the test JSD of its predictions and its test UAR."""
    config = load_run_config(
        overrides={
            "data.corpus": str(corpus.prepared),
            "data.batch_size": 8,
            "data.num_workers": 0,
            "model.backbone": args.backbone,
            "model.method": "frozen",
            "model.head_dim": 64,
            "model.task": task,
            "optim.epochs": args.epochs,
            "optim.lr": args.lr,
            "output_dir": str(out / f"{task}-seed{seed}"),
            "progress": False,
            "report_to": [],
            "seed": seed,
            "threads": args.threads,
        }
    )
    result = train(config, cache=cache)
    prepared = read_prepared(corpus.prepared)
    test = select(prepared, prepared.folds[0].test)
    model = config.output_dir / "fold-fold1" / "model"
    predictions = predict([u.path for u in test], model=model)
    predicted = torch.tensor(
        [[p.probabilities[name] for name in prepared.labels] for p in predictions]
    )
    truth = torch.tensor([corpus.truth[u.key] for u in test])
    fold = result.folds[0]["test"]
    return {"jsd": float(jensen_shannon(truth, predicted).mean()), "uar": float(fold["uar"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--lr", type=float, default=5e-3)
    parser.add_argument("--backbone", default="tiny-wavlm")
    parser.add_argument("--votes", choices=("sampled", "exact"), default="sampled")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--out", type=Path, help="keep the corpus and runs here (default: a temporary folder)"
    )
    args = parser.parse_args()
    seeds = [int(seed) for seed in args.seeds.split(",")]
    with tempfile.TemporaryDirectory() as scratch:
        out = args.out or Path(scratch)
        sampled = args.votes == "sampled"
        corpus = write_disagreement_corpus(
            out / "corpus", annotators=5 if sampled else 10, sampled=sampled
        )
        cache = FeatureCache()  # one encoding of each clip for every run: the backbone is frozen
        scores: dict[str, list[dict[str, float]]] = {task: [] for task in TASKS}
        for seed in seeds:
            for task in TASKS:
                score = run(corpus, out / "runs", task, seed, args, cache)
                scores[task].append(score)
                print(
                    f"{task:<13} seed {seed}: JSD {score['jsd']:.4f}  UAR {score['uar']:.3f}",
                    flush=True,
                )
    print()
    print(
        f"{'task':<13}{'JSD mean ± sd':>18}{'JSD range':>18}{'UAR mean ± sd':>18}{'UAR range':>16}"
    )
    for task, runs in scores.items():
        cells = []
        for metric, digits in (("jsd", 4), ("uar", 3)):
            values = [score[metric] for score in runs]
            spread = statistics.stdev(values) if len(values) > 1 else 0.0
            cells.append(f"{statistics.mean(values):.{digits}f} ± {spread:.{digits}f}")
            cells.append(f"{min(values):.{digits}f}–{max(values):.{digits}f}")
        print(f"{task:<13}{cells[0]:>18}{cells[1]:>18}{cells[2]:>18}{cells[3]:>16}")
    settings = {"seeds": seeds, "epochs": args.epochs, "backbone": args.backbone}
    print(json.dumps({**settings, "votes": args.votes, "runs": scores}))


if __name__ == "__main__":
    main()
