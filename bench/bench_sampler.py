"""Training batches by sampler: padding against random batches, and accuracy where clip length
follows the label and where it does not.

Samplers (``--samplers``, comma-separated):

* ``random``: ``data.bucketing: false``, plain random batches, run whole
  (``data.group_padding: null``);
* ``grouped``: the same random batches, each run through the encoder in groups of similar
  length (the default ``data.group_padding``), which changes the padding computed and nothing
  else;
* ``stratified``: ``data.bucketing: true`` with a jitter of one batch and no slack (stratified
  length buckets, each label in proportion in every batch), the earlier opt-in;
* ``buckets:J`` and ``buckets:J:S``: ``data.bucketing: true`` with ``data.bucket_jitter: J``
  and ``data.bucket_slack: S`` (laid out by length, each label kept within ``S`` of its
  per-batch share; without ``S``, stratified);
* ``length-only``: sorted by length alone (labels ignored, no jitter), an earlier default.

``--padding`` trains nothing: on IEMOCAP-like lengths (``bench_epoch.clip_seconds``: log-normal,
median 3.4 s, 0.6-20 s; cropped to the 6-s training crop, as the encoder sees them) it builds
the training epochs of a fold of ``--clips`` × 0.8 items for each seed and reports, per
sampler, the padded share of the frames (mean ± std over seeds, and the worst seed), its ratio
to random batches, how many of a clip's batch-mates are its batch-mates again the next epoch
(random batches: about batch / clips), and the mean share of a batch's most frequent label;
for lengths unrelated to the label and lengths that follow it (scaled by the synthetic
speech's speaking rate per emotion, `EMOTION_PROSODY`).

Otherwise it trains method ``frozen`` with the paper's recipe under each sampler over several
seeds and prints test and dev UAR (mean over ``--folds``; mean ± std over the seeds) and the
training batches' padding, on one of these corpora (``--corpus``):

* ``acted`` (the default): the synthetic acted speech (CREMA-D layout, ``--actors``), where
  each emotion is spoken at its own rate, so clip length follows the label;
* ``tones``: generated clips of IEMOCAP-like lengths unrelated to the label, whose label is
  carried by pitch and syllable rate that overlap between classes (ten speakers, five folds);
* ``tones-follow``: the same, with each clip's length scaled by its emotion's speaking rate;
* a directory: a raw corpus in the CREMA-D layout (e.g. ``demo/CREMA-D``).

Run it from the repository root, at low priority on a shared machine:

    nice -n 5 .venv/bin/python bench/bench_sampler.py --padding --clips 320 --seeds 10 \
        --samplers random,stratified,buckets:0.5:0.5
    nice -n 5 .venv/bin/python bench/bench_sampler.py --actors 10 --seeds 3
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import soundfile as sf
import torch
from bench_epoch import RATE, clip_seconds
from bench_train import make_corpus

import peft_ser.training.batches
from peft_ser.config import DataConfig, load_run_config
from peft_ser.corpora.prepare import prepare_corpus
from peft_ser.data.manifest import PAPER4, Fold, PreparedCorpus, Utterance, save_prepared
from peft_ser.data.sampler import LengthBucketSampler, padding_waste
from peft_ser.data.states import FeatureCache
from peft_ser.demo.synthetic import EMOTION_PROSODY
from peft_ser.training import train

SPEAKERS = 10
CROP_SECONDS = 6.0
GROUPED = DataConfig.model_fields["group_padding"].default


class LengthOnlySampler(LengthBucketSampler):
    """The earlier sampler: the training loop's labels are ignored and there is no jitter, so
    pools sort by length alone."""

    def __init__(self, lengths: Sequence[int], batch_size: int, **options: Any) -> None:
        options.pop("labels", None)
        super().__init__(lengths, batch_size, **{**options, "jitter": 0.0})


def sampler_settings(name: str) -> dict[str, Any]:
    """The ``data.*`` settings of a sampler name (see the module docstring)."""
    if name == "random":
        return {"data.bucketing": False, "data.group_padding": None}
    if name == "grouped":
        return {"data.bucketing": False, "data.group_padding": GROUPED}
    if name == "stratified":
        return {"data.bucketing": True, "data.bucket_jitter": 1.0, "data.bucket_slack": None}
    if name == "length-only":
        return {"data.bucketing": True}
    kind, *numbers = name.split(":")
    if kind != "buckets" or len(numbers) not in (1, 2):
        raise SystemExit(
            f"unknown sampler {name!r}: random, grouped, stratified, buckets:J, buckets:J:S, "
            "length-only"
        )
    slack = float(numbers[1]) if len(numbers) == 2 else None
    return {
        "data.bucketing": True,
        "data.bucket_jitter": float(numbers[0]),
        "data.bucket_slack": slack,
    }


def length_factor(label: str) -> float:
    """How much longer a clip of ``label`` is than a neutral one where length follows the
    label: the inverse of its speaking rate in the synthetic speech (sad slow, angry fast)."""
    return EMOTION_PROSODY["Neutral"].rate / EMOTION_PROSODY[label].rate


def fold_lengths(clips: int, seed: int, follows: bool) -> tuple[np.ndarray, np.ndarray]:
    """Cropped sample counts and label indices of fold 1's training clips (eight of ten
    speakers, labels in turn per speaker as in ``bench_epoch.write_clips``)."""
    seconds = clip_seconds(clips, np.random.default_rng(seed))
    labels = np.arange(clips) // SPEAKERS % len(PAPER4)
    if follows:
        seconds = seconds * np.array([length_factor(PAPER4[i]) for i in labels])
    train = np.arange(clips) % SPEAKERS >= 2
    lengths = np.round(np.minimum(seconds, CROP_SECONDS) * RATE).astype(int)
    return lengths[train], labels[train]


def recurring_mates(first: list[list[int]], second: list[list[int]]) -> float:
    """Mean share of a clip's batch-mates in ``first`` that are its batch-mates in ``second``."""
    where = {item: index for index, batch in enumerate(second) for item in batch}
    shares = []
    for batch in first:
        for item in batch:
            mates = [other for other in batch if other != item]
            if mates:
                shares.append(sum(where[m] == where[item] for m in mates) / len(mates))
    return statistics.mean(shares)


def largest_label_share(batches: list[list[int]], labels: np.ndarray) -> float:
    """Mean over batches of the share held by the batch's most frequent label."""
    return statistics.mean(np.bincount(labels[b]).max() / len(b) for b in batches)


def padding_report(args: argparse.Namespace, samplers: list[str]) -> None:
    """Padding, batch-mate recurrence and label mix of training epochs, over seeds."""
    train = args.clips * 8 // 10
    print(
        f"IEMOCAP-like lengths, {args.clips} clips (fold 1 trains on {train}), "
        f"{CROP_SECONDS:g}-s crop, batch {args.batch_size}, epochs 1-3, {args.seeds} seeds"
    )
    for follows in (False, True):
        print("length follows the label" if follows else "length unrelated to the label")
        print(f"{'sampler':<18}{'padding':>16}{'worst':>8}{'÷ random':>10}"
              f"{'mates again':>13}{'top label':>11}")  # fmt: skip
        found: dict[str, dict[str, list[float]]] = {}
        for name in samplers:
            rows: dict[str, list[float]] = {"waste": [], "again": [], "top": []}
            for seed in range(args.seeds):
                lengths, labels = fold_lengths(args.clips, seed, follows)
                epochs = []
                for epoch in (1, 2, 3):
                    sampler = make_sampler(name, lengths, labels, args.batch_size, seed)
                    sampler.set_epoch(epoch)
                    epochs.append(sampler.global_batches())
                grouping = sampler_settings(name).get("data.group_padding")
                wastes = [padding_waste(batches, lengths, grouping) for batches in epochs]
                rows["waste"].append(statistics.mean(wastes))
                rows["again"].append(recurring_mates(epochs[0], epochs[1]))
                rows["top"].append(statistics.mean(largest_label_share(b, labels) for b in epochs))
            found[name] = rows
        random = statistics.mean(found["random"]["waste"]) if "random" in found else None
        for name, rows in found.items():
            waste = [100 * w for w in rows["waste"]]
            mean, spread = statistics.mean(waste), statistics.pstdev(waste)
            ratio = f"{mean / (100 * random):>10.2f}" if random else f"{'':>10}"
            print(
                f"{name:<18}{mean:>8.1f} ± {spread:3.1f}%{max(waste):>7.1f}%{ratio}"
                f"{100 * statistics.mean(rows['again']):>12.0f}%"
                f"{statistics.mean(rows['top']):>11.2f}"
            )


def make_sampler(
    name: str, lengths: np.ndarray, labels: np.ndarray, batch_size: int, seed: int
) -> LengthBucketSampler:
    """The training sampler a run with ``name``'s settings builds (see `BatchSource.sampler`)."""
    settings = sampler_settings(name)
    config = load_run_config(overrides={"data.corpus": "unused", **settings}).data
    kind = LengthOnlySampler if name == "length-only" else LengthBucketSampler
    return kind(
        lengths.tolist(),
        batch_size,
        shuffle=True,
        labels=labels.tolist(),
        bucketing=config.bucketing,
        pool=config.bucket_pool,
        jitter=config.bucket_jitter,
        slack=config.bucket_slack,
        seed=seed,
    )


def write_tones(root: Path, clips: int, follows: bool, scale: float, seed: int = 0) -> Path:
    """Generated clips of IEMOCAP-like lengths in five speaker folds (two speakers each: one
    dev, one test), prepared; each label has its own pitch and syllable rate, spread so that
    the classes overlap (per-clip jitter, noise; speakers' pitch differs by up to 8 %) and a
    frozen model stays below perfect. With ``follows``, a clip's length is scaled by its
    label's `length_factor`; every length is divided by ``scale`` (3: a third of IEMOCAP's, so
    that runs take a third of the time; `run` divides the training crop alike, so the batches
    keep their shape)."""
    rng = np.random.default_rng(seed)
    pitch_hz = {"Neutral": 150.0, "Angry": 185.0, "Sad": 125.0, "Happy": 225.0}
    syllables_hz = {"Neutral": 3.5, "Angry": 5.0, "Sad": 2.5, "Happy": 4.5}
    speaker_pitch = rng.uniform(0.92, 1.08, SPEAKERS)
    utterances = []
    for index, seconds in enumerate(clip_seconds(clips, rng)):
        label = PAPER4[index // SPEAKERS % len(PAPER4)]
        speaker = index % SPEAKERS
        if follows:
            seconds = float(np.clip(seconds * length_factor(label), 0.6, 20.0))
        t = np.arange(int(seconds / scale * RATE)) / RATE
        pitch = pitch_hz[label] * speaker_pitch[speaker] * rng.lognormal(0.0, 0.12)
        syllables = syllables_hz[label] * rng.uniform(0.75, 1.25)
        envelope = 0.5 + 0.5 * np.sin(2 * np.pi * syllables * t + rng.uniform(0, 6))
        wave = 0.2 * envelope * np.sin(2 * np.pi * pitch * t) + 0.05 * rng.standard_normal(len(t))
        path = root / "wav" / f"spk{speaker}_{index:04d}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, wave.astype(np.float32), RATE)
        utterances.append(
            Utterance(path.stem, f"spk{speaker}", "FM"[speaker % 2], str(path), label,
                      f"spk{speaker}", corpus="tones", label=label, duration=len(t) / RATE,
                      sample_rate=RATE, channels=1)
        )  # fmt: skip
    folds = []
    for fold in range(SPEAKERS // 2):
        dev, test = f"spk{2 * fold}", f"spk{2 * fold + 1}"
        keys = {name: [u.key for u in utterances if u.speaker == name] for name in (dev, test)}
        train = [u.key for u in utterances if u.speaker not in keys]
        folds.append(Fold(f"fold{fold + 1}", train, keys[dev], keys[test]))
    prepared = root / "prepared"
    save_prepared(prepared, PreparedCorpus(utterances, folds, list(PAPER4)))
    return prepared


def run(
    prepared: Path,
    out: Path,
    args: argparse.Namespace,
    sampler: str,
    seed: int,
    cache: FeatureCache,
) -> dict[str, float]:
    """Test and dev UAR (mean over the folds) and the mean training padding of one run."""
    config = load_run_config(
        overrides={
            "data.corpus": str(prepared),
            "data.folds": args.folds,
            "data.batch_size": args.batch_size,
            "data.num_workers": 0,
            "data.crop_seconds": CROP_SECONDS / args.scale,
            "model.backbone": args.backbone,
            "model.method": "frozen",
            **({"model.head_dim": args.head_dim} if args.head_dim else {}),
            "optim.epochs": args.epochs,
            "seed": seed,
            "output_dir": str(out / f"{sampler}-{seed}"),
            "progress": False,
            **sampler_settings(sampler),
        }
    )
    replacement = LengthOnlySampler if sampler == "length-only" else LengthBucketSampler
    with mock.patch.object(peft_ser.training.batches, "LengthBucketSampler", replacement):
        folds = train(config, cache=cache).folds
    waste = statistics.mean(row["padding_waste"] for fold in folds for row in fold["history"])
    test = statistics.mean(fold["test"]["uar"] for fold in folds)
    return {"test": test, "dev": statistics.mean(fold["dev_uar"] for fold in folds), "waste": waste}


def accuracy_report(args: argparse.Namespace, samplers: list[str]) -> None:
    """Train under each sampler over the seeds and print UAR and padding per sampler."""
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        if args.corpus in ("tones", "tones-follow"):
            follows = args.corpus == "tones-follow"
            prepared = write_tones(root, args.clips, follows, args.scale)
        elif args.corpus == "acted":
            prepared = make_corpus(root, args.actors)
        else:
            prepared = root / "prepared"
            prepare_corpus("crema-d", Path(args.corpus), prepared)
        cache = FeatureCache()  # every run encodes with the same frozen backbone
        results = {
            name: [run(prepared, root, args, name, seed, cache) for seed in range(args.seeds)]
            for name in samplers
        }
    size = f"{args.actors} actors" if args.corpus == "acted" else f"{args.clips} clips"
    if args.corpus in ("tones", "tones-follow") and args.scale != 1:
        size += f", lengths and crop ÷ {args.scale:g}"
    head = f", head_dim {args.head_dim}" if args.head_dim else ""
    print(f"corpus {args.corpus} ({size}), backbone {args.backbone}{head}, {args.epochs} epochs, "
          f"batch {args.batch_size}, {args.seeds} seeds, folds {args.folds}")  # fmt: skip
    print(f"{'sampler':<18}{'test UAR':>16}{'dev UAR':>16}{'padding':>10}")
    for name in samplers:
        test = [r["test"] for r in results[name]]
        dev = [r["dev"] for r in results[name]]
        waste = statistics.mean(r["waste"] for r in results[name])
        print(
            f"{name:<18}{statistics.mean(test):>9.3f} ± {statistics.pstdev(test):.3f}"
            f"{statistics.mean(dev):>9.3f} ± {statistics.pstdev(dev):.3f}{100 * waste:>9.1f}%"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--padding", action="store_true", help="padding alone, no training")
    parser.add_argument(
        "--corpus", default="acted", help="acted, tones, tones-follow, or a raw CREMA-D layout"
    )
    parser.add_argument("--clips", type=int, default=320, help="clips of --padding and tones")
    parser.add_argument(
        "--scale", type=float, default=1.0, help="tones: lengths and training crop divided by it"
    )
    parser.add_argument("--actors", type=int, default=10, help="acted: actors (16 clips each)")
    parser.add_argument("--backbone", default="tiny-wavlm")
    parser.add_argument("--head-dim", type=int, help="model.head_dim (default: the model's)")
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
    for name in samplers:
        sampler_settings(name)
    if args.padding:
        padding_report(args, samplers)
    else:
        accuracy_report(args, samplers)


if __name__ == "__main__":
    main()
