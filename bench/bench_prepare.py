"""Time `prepare_corpus` on a generated 10,000-utterance IEMOCAP-layout tree.

The tree has the real folder layout and EmoEvaluation format; every WAV is the same short
valid file (``--seconds`` of noise), so generation is fast and the timing is dominated by
file-system work. Three ways of reading the same corpus run side by side:

* ``prepare (header only)``: `prepare_corpus(..., check_silence=False)`;
* ``prepare (header + silence scan)``: the default, decoding each file up to its first block
  with signal;
* the audio pass alone, over every labelled file: header only (`probe`) against a naive full
  decode with ``soundfile.read`` to get the duration, as many research loaders do.

Usage: ``.venv/bin/python bench/bench_prepare.py [--utterances 10000] [--seconds 0.1]``
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soundfile as sf

from peft_ser.corpora import prepare_corpus
from peft_ser.corpora.iemocap import scan
from peft_ser.data.audio import probe

LABELS = ["neu", "ang", "sad", "hap", "exc", "fru", "xxx"]
TURNS_PER_DIALOG = 100


def wav_bytes(seconds: float) -> bytes:
    """One small valid 16 kHz mono 16-bit WAV of low noise."""
    buffer = io.BytesIO()
    noise = np.random.default_rng(0).normal(0, 0.05, int(seconds * 16000))
    sf.write(buffer, noise, 16000, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def build_tree(root: Path, utterances: int, seconds: float) -> None:
    """Sessions 1-5, dialogs of 100 turns each, labels cycling through LABELS."""
    payload = wav_bytes(seconds)
    per_session = utterances // 5
    for session in range(1, 6):
        evaluation = root / f"Session{session}/dialog/EmoEvaluation"
        evaluation.mkdir(parents=True)
        for d in range(per_session // TURNS_PER_DIALOG):
            dialog = f"Ses0{session}F_impro{d:02d}"
            wav_dir = root / f"Session{session}/sentences/wav/{dialog}"
            wav_dir.mkdir(parents=True)
            lines = ["% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]", ""]
            for t in range(TURNS_PER_DIALOG):
                turn = f"{dialog}_{'FM'[t % 2]}{t:03d}"
                (wav_dir / f"{turn}.wav").write_bytes(payload)
                label = LABELS[(t + d) % len(LABELS)]
                lines += [
                    f"[1.0 - 2.0]\t{turn}\t{label}\t[2.5, 2.5, 2.5]",
                    "C-E2:\tNeutral;\t()",
                    "",
                ]
            (evaluation / f"{dialog}.txt").write_text("\n".join(lines))


def labelled_paths(root: Path) -> list[str]:
    """The audio paths of the label rows, as both audio passes below see them."""
    return [entry.path for entry in scan(root).entries]


def header_pass(paths: list[str]) -> float:
    """What prepare reads per file without the silence scan: the header only."""
    return sum(probe(path).duration for path in paths)


def naive_pass(paths: list[str]) -> float:
    """What many research loaders do for a duration: decode the whole file."""
    total = 0.0
    for path in paths:
        samples, rate = sf.read(path, dtype="float32")
        total += len(samples) / rate
    return total


def timed(name: str, run: Callable[[], object]) -> float:
    start = time.perf_counter()
    run()
    elapsed = time.perf_counter() - start
    print(f"{name:44s}{elapsed:8.2f} s")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--utterances", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=0.1, help="length of every WAV")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "IEMOCAP_full_release"
        start = time.perf_counter()
        build_tree(root, args.utterances, args.seconds)
        print(f"generated {args.utterances} utterances in {time.perf_counter() - start:.2f} s")
        header = timed(
            "prepare (header only)",
            lambda: prepare_corpus("iemocap", root, Path(tmp) / "a", check_silence=False),
        )
        silence = timed(
            "prepare (header + silence scan)",
            lambda: prepare_corpus("iemocap", root, Path(tmp) / "b"),
        )
        paths = labelled_paths(root)
        header_only = timed(f"audio pass, header only ({len(paths)})", lambda: header_pass(paths))
        naive = timed(f"audio pass, naive full decode ({len(paths)})", lambda: naive_pass(paths))
        print(f"full decode / header only: {naive / header_only:.2f}x")
        print(f"prepare with / without silence scan: {silence / header:.2f}x")


if __name__ == "__main__":
    main()
