"""CPU inference: throughput and accuracy cost of every backend and precision, and the peer.

Why this exists: deployment wants a model that is fast on a CPU and still gives the answers
it was trained to give. On one trained model and the clips of one held-out split, this runs
PyTorch fp32, bf16 autocast and int8 dynamic quantization, and onnxruntime fp32 and int8
(on the model exported by ``peft_ser.export``), each as batch-1 forwards over every clip and
in length-sorted batches as ``peft_ser.predict`` runs them, taking turns. It reports clips per
second, the real-time factor (compute seconds per second of audio), argmax agreement with fp32
and the largest probability difference from fp32, and the accuracy on the split's labels.
Beside them, the peer: the original PEFT-SER package's Whisper tiny model (``peft-ser==0.0.5``
in its own environment, built and driven by ``compare_original.py`` and ``original_driver.py``)
timed on the same clips with the same threads at batch 1 (its batched forward fails, see
compare_original.py); ours are timed before and after it, and the best pass counts.

Run, e.g., on the demo model (docs/inference.md)::

    nice -n 5 python bench/bench_inference.py --model RUN/fold-fold1/model \\
        --prepared RUN/../prepared --fold fold1 --split test
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))

from compare_original import ensure_original_environment, run_original, write_inputs

from peft_ser.data.audio import SAMPLE_RATE, load_audio
from peft_ser.data.manifest import read_prepared
from peft_ser.export.onnx import export_onnx
from peft_ser.inference.backends import InferenceModel
from peft_ser.inference.loading import load_model
from peft_ser.inference.onnx_model import OnnxModel
from peft_ser.inference.torch_model import TorchModel
from peft_ser.utils.precision import cpu_has_native_bf16

PEER = "original peft_ser 0.0.5 (Whisper tiny, fp32)"


def split_clips(prepared: Path, fold: str, split: str) -> tuple[list[np.ndarray], list[str]]:
    """The split's clips at 16 kHz mono and their labels."""
    corpus = read_prepared(prepared)
    chosen = next(f for f in corpus.folds if f.name == fold)
    by_key = {utterance.key: utterance for utterance in corpus.manifest}
    keys = getattr(chosen, split)
    clips = [load_audio(by_key[key].path) for key in keys]
    return clips, [by_key[key].label for key in keys]


def batches(
    clips: list[np.ndarray], size: int
) -> list[tuple[list[int], torch.Tensor, torch.Tensor]]:
    """Clip indices with their zero-padded ``[B, T]`` waveforms and lengths, longest first in
    groups of ``size``, as ``peft_ser.predict`` batches them (``size`` 1: each clip alone)."""
    order = sorted(range(len(clips)), key=lambda i: clips[i].size, reverse=True)
    made = []
    for first in range(0, len(order), size):
        group = order[first : first + size]
        lengths = torch.tensor([clips[i].size for i in group])
        waveforms = torch.zeros(len(group), int(lengths.max()))
        for row, index in enumerate(group):
            waveforms[row, : clips[index].size] = torch.from_numpy(clips[index])
        made.append((group, waveforms, lengths))
    return made


def timed_pass(model: InferenceModel, prepared: list, count: int) -> tuple[np.ndarray, float]:
    """Logits of every clip in clip order, and the seconds one pass over the batches took."""
    logits = np.zeros((count, len(model.labels)))
    start = time.perf_counter()
    for group, waveforms, lengths in prepared:
        logits[group] = model.forward(waveforms, lengths)
    return logits, time.perf_counter() - start


def measure(settings: dict, modes: dict, repeats: int, timings: dict, outputs: dict) -> None:
    """``repeats`` passes of every setting in every batching mode, taking turns, after a
    warm-up, so a change in the machine's load touches all of them alike."""
    for model in settings.values():
        model.forward(*modes[1][0][1:])
    for _ in range(repeats):
        for name, model in settings.items():
            for size, prepared in modes.items():
                key = f"{name}, batch {size}"
                outputs[key], seconds = timed_pass(model, prepared, outputs["count"])
                timings.setdefault(key, []).append(seconds)


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="a saved model folder")
    parser.add_argument("--prepared", type=Path, required=True, help="prepared corpus folder")
    parser.add_argument("--fold", default="fold1")
    parser.add_argument("--split", default="test", choices=("train", "dev", "test"))
    parser.add_argument("--threads", type=int, default=1, help="torch and onnxruntime threads")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes; the best counts")
    parser.add_argument("--batch", type=int, default=8, help="the batched mode's batch size")
    parser.add_argument("--venv", type=Path, default=Path("~/.cache/peft-ser/bench-original-venv"))
    parser.add_argument("--no-original", action="store_true", help="skip the peer")
    parser.add_argument("--output", type=Path, help="write the measurements as JSON")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    clips, labels = split_clips(args.prepared, args.fold, args.split)
    audio_seconds = sum(clip.size for clip in clips) / SAMPLE_RATE
    model = load_model(args.model, "cpu")
    work = Path(tempfile.mkdtemp(prefix="peft-ser-bench-inference-"))
    export = export_onnx(model, work / "onnx")
    settings: dict[str, InferenceModel] = {
        "torch fp32": TorchModel(model, "fp32"),
        "torch bf16": TorchModel(model, "bf16"),
        "torch int8": TorchModel(model, "int8"),
        "onnxruntime fp32": OnnxModel(work / "onnx", threads=args.threads),
        "onnxruntime int8": OnnxModel(work / "onnx", precision="int8", threads=args.threads),
    }
    modes = {size: batches(clips, size) for size in (1, args.batch)}
    timings: dict[str, list[float]] = {}
    outputs: dict = {"count": len(clips)}
    measure(settings, modes, args.repeats, timings, outputs)
    if not args.no_original:
        python = ensure_original_environment(args.venv.expanduser())
        write_inputs(work, clips)
        original = run_original(python, work, ("--time-repeats", str(args.repeats)))
        timings[PEER] = original["whisper-tiny-lora-16-conv"]["batch1_seconds"]
        measure(settings, modes, args.repeats, timings, outputs)  # after the peer, too
    reference = softmax(outputs["torch fp32, batch 1"])
    truth = np.array([model.labels.index(label) for label in labels])
    rows: dict[str, dict] = {}
    for key, passes in timings.items():
        seconds = min(passes)
        rows[key] = {
            "seconds": seconds,
            "passes": passes,
            "clips_per_second": len(clips) / seconds,
            "real_time_factor": seconds / audio_seconds,
        }
        if key in outputs:
            probabilities = softmax(outputs[key])
            rows[key] |= {
                "argmax_agreement": float((probabilities.argmax(1) == reference.argmax(1)).mean()),
                "max_probability_difference": float(np.abs(probabilities - reference).max()),
                "accuracy": float((probabilities.argmax(1) == truth).mean()),
            }
    report = {
        "clips": len(clips),
        "audio_seconds": audio_seconds,
        "threads": args.threads,
        "cpu": platform.processor() or platform.machine(),
        "cpu_has_native_bf16": cpu_has_native_bf16(),
        "export_check": [export.max_difference_alone, export.max_difference_batched],
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "settings": rows,
    }
    print_report(report)
    if args.output:
        args.output.write_text(json.dumps(report, indent=2))
    return 0


def print_report(report: dict) -> None:
    rows = report["settings"]
    peer = rows.get(PEER, {}).get("clips_per_second")
    print(
        f"{report['clips']} clips, {report['audio_seconds']:.1f} s of audio, batch 1, "
        f"{report['threads']} thread(s); native bf16: {report['cpu_has_native_bf16']}; "
        f"load average {report['load_average_before'][0]:.1f} before, "
        f"{report['load_average_after'][0]:.1f} after"
    )
    header = f"{'setting':46}{'clips/s':>9}{'RTF':>8}{'vs peer':>9}{'agree':>8}{'max dp':>9}"
    print(header + f"{'acc':>7}")
    for name, row in rows.items():
        ratio = f"{row['clips_per_second'] / peer:.2f}x" if peer else "-"
        cells = f"{name:46}{row['clips_per_second']:9.1f}{row['real_time_factor']:8.4f}{ratio:>9}"
        if "argmax_agreement" in row:
            cells += f"{row['argmax_agreement']:8.3f}{row['max_probability_difference']:9.4f}"
            cells += f"{row['accuracy']:7.3f}"
        print(cells)


if __name__ == "__main__":
    raise SystemExit(main())
