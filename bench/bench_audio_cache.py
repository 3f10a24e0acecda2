"""The first epoch's data loading with and without the decoded-audio cache `peft-ser preprocess`
warms (`peft_ser.data.audio_cache`).

A run's first epoch decodes every clip; later epochs read the run's own cache either way. On the
committed demo corpus (demo/CREMA-D: 16-kHz mono 16-bit WAV, nothing to resample), prepared into
a temporary folder, and on the same clips written at 48 kHz in stereo (as RAVDESS ships, so that
every clip is down-mixed and resampled), this script loads fold 1's training split once as
training does (6-s crops, default augmentation, length buckets, `data.batch_size` 8) with a
fresh `RunAudio` (a) over an empty folder, as a run without preprocessing, and (b) over the
corpus's preprocessed ``audio_cache``; it reports the median time of each and their ratio, for
the epoch's loading and for the clips alone (`RunAudio.load`, without cropping, augmentation and
batching).
Files are read beforehand, so both sides find them in the page cache. Run from the repository
root:

    nice -n 5 .venv/bin/python bench/bench_audio_cache.py --repeats 7
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from peft_ser.corpora import prepare_corpus, preprocess_corpus
from peft_ser.data.audio_cache import PREPARED_FOLDER, RunAudio
from peft_ser.data.augment import AugmentConfig
from peft_ser.data.dataset import UtteranceDataset, seconds_to_samples
from peft_ser.data.manifest import PreparedCorpus, select
from peft_ser.data.sampler import LengthBucketSampler
from peft_ser.evaluation.scoring import loader_batches

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "demo" / "CREMA-D"


def as_48k_stereo(source: Path, target: Path) -> Path:
    """A copy of the demo corpus whose clips are 48-kHz stereo (the same speech)."""
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("*.wav"))
    for wav in sorted((source / "AudioWAV").glob("*.wav")):
        samples, rate = sf.read(wav, dtype="float32")
        high = soxr.resample(samples, rate, 48000)
        sf.write(target / "AudioWAV" / wav.name, np.stack([high, 0.8 * high], axis=1), 48000)
    return target


def epoch_seconds(prepared: PreparedCorpus, folder: Path, workers: int) -> float:
    """Seconds to load fold 1's training split once, with a fresh run cache over ``folder``."""
    dataset = UtteranceDataset(
        select(prepared, prepared.folds[0].train),
        prepared.labels,
        seconds_to_samples(6.0),
        AugmentConfig(),
        decoded=RunAudio(2 * 10**9, folder),
    )
    labels = [dataset.label_of(i) for i in range(len(dataset))]
    sampler = LengthBucketSampler(dataset.lengths(), 8, shuffle=True, labels=labels)
    started = time.perf_counter()
    for _ in loader_batches(dataset, sampler, workers):
        pass
    return time.perf_counter() - started


def clips_seconds(prepared: PreparedCorpus, folder: Path) -> float:
    """Seconds to read the split's clips once through a fresh run cache over ``folder``."""
    audio = RunAudio(2 * 10**9, folder)
    started = time.perf_counter()
    for utterance in select(prepared, prepared.folds[0].train):
        audio.load(utterance.path, utterance.start, utterance.end)
    return time.perf_counter() - started


def measure(raw: Path, scratch: Path, repeats: int, workers: int) -> dict[str, tuple[float, float]]:
    """Median seconds without and with the preprocessed cache, of the epoch and the clips."""
    prepared = prepare_corpus("crema-d", raw, scratch / "prepared")
    for utterance in prepared.manifest:  # into the page cache, for both sides alike
        Path(utterance.path).read_bytes()
    preprocess_corpus(scratch / "prepared")
    warm_folder = scratch / "prepared" / PREPARED_FOLDER
    found = {}

    def epoch(prepared: PreparedCorpus, folder: Path) -> float:
        return epoch_seconds(prepared, folder, workers)

    for what, seconds in (("epoch", epoch), ("clips alone", clips_seconds)):
        cold, warm = [], []
        for repeat in range(repeats):  # interleaved, so that machine load falls on both
            cold.append(seconds(prepared, scratch / f"empty-{what}-{repeat}"))
            warm.append(seconds(prepared, warm_folder))
        found[what] = statistics.median(cold), statistics.median(warm)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--num-workers", type=int, default=0)
    args = parser.parse_args()
    print(f"fold 1 training split, {args.repeats} repeats, {args.num_workers} workers, median")
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        corpora = {
            "demo corpus (16 kHz mono)": DEMO,
            "demo clips at 48 kHz stereo": as_48k_stereo(DEMO, root / "raw48"),
        }
        for number, (name, raw) in enumerate(corpora.items()):
            found = measure(raw, root / f"run{number}", args.repeats, args.num_workers)
            for what, (cold, warm) in found.items():
                print(
                    f"{name}, {what}: decoded {1000 * cold:.1f} ms, preprocessed "
                    f"{1000 * warm:.1f} ms, ratio {cold / warm:.1f}x"
                )


if __name__ == "__main__":
    main()
