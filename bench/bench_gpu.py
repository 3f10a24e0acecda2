"""GPU benchmark: one IEMOCAP-sized fold epoch of WavLM Base+ with LoRA r16 in bf16, through the
training path of ``peft-ser train``, and the paper's 5-fold × 30-epoch run extrapolated from it.

On generated clips of IEMOCAP-like lengths (`bench_epoch.write_clips`: log-normal, median
3.4 s, mean about 4.2 s, 0.6-20 s), one fold of IEMOCAP's size (3,300 train, 1,100 dev, 1,100
test clips by default) is trained for ``--epochs`` (default 1) with ``train`` (the function
behind ``peft-ser train``: FoldRunner, Accelerate, ``mixed_precision: bf16``, the default
batches, augmentation, checkpoints and result files). The one departure from a real run: the
backbone has random weights drawn from the registry's architecture of ``wavlm-base-plus``
(``build_model(..., pretrained=False)``), so nothing is fetched; timing does not depend on the
values.

Printed: the model build, train, dev, test and checkpoint phases in seconds, clips/s, peak GPU
memory (``torch.cuda.max_memory_allocated``), model FLOPs counted from the config and each
batch's padded length (`flops.ssl_lora_step_flops`: forward, plus what autograd computes in the
backward) and their rate as a share of a bf16 matmul measured in the same run (model-FLOPs
utilisation), and the 5-fold × 30-epoch run extrapolated against its 15-minute goal.

    python bench/bench_gpu.py                                  # one H100/H200, a few minutes
    python bench/bench_gpu.py --device cpu --tiny --train 16 --dev 8 --test 8   # smoke run
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import torch
from bench_epoch import Phases, phase_timer, write_clips
from flops import FlopCount, matmul_rate, ssl_lora_step_flops

from peft_ser.config import DataConfig, ModelConfig, RunConfig, load_run_config
from peft_ser.data.manifest import PAPER4, Fold, PreparedCorpus, save_prepared
from peft_ser.models.backbones.base import Backbone
from peft_ser.models.backbones.registry import BACKBONES
from peft_ser.models.ser_model import SERModel, build_model
from peft_ser.training import train

FOLDS, EPOCHS, GOAL_MINUTES = 5, 30, 15.0
"""The paper's protocol on IEMOCAP (five session folds, 30 epochs) and the goal for it."""
TINY = {"backbone": "tiny-wavlm", "crop": 1.0, "matmul": 256}
"""``--tiny``: the registry's tiny WavLM, training crops and dev/test clips cut to 1 s (its
front end keeps 800 frames a second, so whole clips would make attention the whole run), and
a small matmul."""


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--train", type=int, default=3300, help="training clips")
    parser.add_argument("--dev", type=int, default=1100, help="dev clips")
    parser.add_argument("--test", type=int, default=1100, help="test clips")
    parser.add_argument("--batch", type=int, default=32, help="training batch (data.batch_size)")
    parser.add_argument("--epochs", type=int, default=1, help="epochs; >1 times warm epochs")
    parser.add_argument("--rank", type=int, default=16, help="LoRA rank")
    parser.add_argument("--backbone", default="wavlm-base-plus", help="an SSL registry backbone")
    parser.add_argument("--num-workers", type=int, help="data.num_workers (default: the run's)")
    parser.add_argument(
        "--group-padding",
        type=lambda text: None if text == "none" else float(text),
        default=DataConfig.model_fields["group_padding"].default,
        help="data.group_padding: training batches in groups of similar length (none: whole)",
    )
    parser.add_argument("--matmul-size", type=int, help="square bf16 matmul (default 8192)")
    parser.add_argument("--seed", type=int, default=0, help="clip generation")
    parser.add_argument("--tiny", action="store_true", help="tiny WavLM, 1-s clips: smoke run")
    args = parser.parse_args(argv)
    if args.tiny:
        args.backbone = TINY["backbone"]
    spec = BACKBONES.get(args.backbone)
    if spec is None or spec.model_type == "whisper":
        ssl = sorted(name for name, s in BACKBONES.items() if s.model_type != "whisper")
        parser.error(f"--backbone {args.backbone!r}: FLOPs are counted for {', '.join(ssl)}")
    if min(args.train, args.dev, args.test, args.batch, args.epochs, args.rank) < 1:
        parser.error("--train, --dev, --test, --batch, --epochs and --rank must be at least 1")
    args.matmul_size = args.matmul_size or (TINY["matmul"] if args.tiny else 8192)
    return args


def choose_device(name: str) -> torch.device:
    """The device to run on; ``cuda`` without one ends the script with one line."""
    if name == "cuda" and not torch.cuda.is_available():
        raise SystemExit(
            f"bench_gpu.py: --device cuda, but torch {torch.__version__} finds no CUDA GPU "
            "here; run it on a machine with one, or pass --device cpu for the smoke run"
        )
    if name == "cpu":
        os.environ["ACCELERATE_USE_CPU"] = "true"  # Accelerate would take a GPU if one is there
    return torch.device(name)


def make_fold_corpus(
    root: Path, counts: tuple[int, int, int], seed: int
) -> tuple[Path, list[float]]:
    """`write_clips` as one prepared fold (the first ``counts[0]`` clips train, the next dev,
    the rest test; a benchmark, so speakers are shared across splits) and the clips' seconds."""
    utterances = write_clips(root, sum(counts), np.random.default_rng(seed))
    keys = [u.key for u in utterances]
    train_end, dev_end = counts[0], counts[0] + counts[1]
    fold = Fold("fold1", keys[:train_end], keys[train_end:dev_end], keys[dev_end:])
    prepared = root / "prepared"
    save_prepared(prepared, PreparedCorpus(utterances, [fold], list(PAPER4)))
    return prepared, [u.duration for u in utterances]


def run_config(prepared: Path, out: Path, args: argparse.Namespace) -> RunConfig:
    settings: dict[str, Any] = {
        "data.corpus": str(prepared),
        "data.folds": "1",
        "data.batch_size": args.batch,
        "data.group_padding": args.group_padding,
        "model.backbone": args.backbone,
        "model.method": "lora",
        "model.lora_rank": args.rank,
        "optim.epochs": args.epochs,
        "mixed_precision": "bf16",
        "feature_cache_persist": False,
        "output_dir": str(out),
        "progress": False,
    }
    if args.num_workers is not None:
        settings["data.num_workers"] = args.num_workers
    if args.tiny:
        settings["data.crop_seconds"] = settings["data.eval_max_seconds"] = TINY["crop"]
    return load_run_config(overrides=settings)


@dataclass
class Measured:
    """What one run of `train` showed: phase seconds, batch shapes per phase, the model."""

    seconds: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    shapes: dict[str, list[tuple[int, int]]] = field(default_factory=lambda: defaultdict(list))
    parameters: tuple[int, int] = (0, 0)  # all, trainable
    wall: float = 0.0
    peak_bytes: int | None = None


def random_weights(measured: Measured) -> Callable[..., SERModel]:
    """`build_model` as the fold loop calls it, on a random-weight backbone, timed."""

    def build(config: ModelConfig) -> SERModel:
        began = time.perf_counter()
        model = build_model(config, pretrained=False)
        measured.seconds["build"].append(time.perf_counter() - began)
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        measured.parameters = (sum(p.numel() for p in model.parameters()), trainable)
        return model

    return build


def recording_passes(measured: Measured, timing: Phases) -> Callable[..., Any]:
    """`Backbone._below` that notes the size and padded samples of each pass under its phase:
    a training batch runs in groups of similar length (`data.group_padding`), each counted as
    the encoder computes it (the head, under 1 % of the FLOPs, is counted per group too)."""
    below = Backbone._below

    def recorded(self: Backbone, waveforms: torch.Tensor, lengths: torch.Tensor) -> Any:
        batch, samples = waveforms.shape
        measured.shapes[timing.current or "other"].append((batch, samples))
        return below(self, waveforms, lengths)

    return recorded


def run_fold(config: RunConfig, device: torch.device) -> Measured:
    measured = Measured()
    if device.type == "cuda":
        torch.cuda.init()  # the allocator's statistics exist once CUDA has started
        torch.cuda.reset_peak_memory_stats(device)
    began = time.perf_counter()
    with (
        phase_timer(measured.seconds) as timing,
        mock.patch("peft_ser.training.loop.build_model", random_weights(measured)),
        mock.patch.object(Backbone, "_below", recording_passes(measured, timing)),
    ):
        train(config)
    measured.wall = time.perf_counter() - began
    if device.type == "cuda":
        measured.peak_bytes = torch.cuda.max_memory_allocated(device)
    return measured


def phase_flops(config: RunConfig, shapes: list[tuple[int, int]], training: bool) -> FlopCount:
    """Model FLOPs of a phase's batches: forward, and the backward too when ``training``."""
    architecture = BACKBONES[config.model.backbone].config()
    head = (config.model.head_dim, len(config.model.labels))
    total = FlopCount({})
    for batch, samples in shapes:
        forward, backward = ssl_lora_step_flops(
            architecture, batch, samples, config.model.lora_rank, head
        )
        total = total + forward + (backward if training else FlopCount({}))
    return total


def steady(values: list[float]) -> float:
    """A phase's seconds per epoch: the mean after the first epoch (which pays one-time costs:
    the first decode of every clip, CUDA and cuBLAS start-up) where there is more than one."""
    return statistics.mean(values[1:] or values)


def device_line(device: torch.device) -> str:
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        return f"{name}, torch {torch.__version__}, CUDA {torch.version.cuda}"
    threads = torch.get_num_threads()
    return f"cpu ({os.cpu_count()} CPUs, {threads} threads), torch {torch.__version__}"


def report(
    args: argparse.Namespace,
    config: RunConfig,
    measured: Measured,
    rate: tuple[float, float],
) -> None:
    """The figures, one per line; ``rate`` is the bf16 matmul's (median, best) FLOP/s."""
    seconds, epochs = measured.seconds, args.epochs
    clips = {"train": args.train * epochs, "dev": args.dev * epochs, "test": args.test}
    total, trainable = measured.parameters
    print(
        f"model: {args.backbone} (random weights, the registry's architecture), LoRA "
        f"r{args.rank}, bf16 autocast: {total / 1e6:.2f} M parameters, "
        f"{trainable / 1e6:.3f} M trainable; built in {seconds['build'][0]:.2f} s"
    )
    print(f"epochs: {epochs}; batch {args.batch}; run wall time {measured.wall:.2f} s")
    columns = ("seconds", "clips", "clips/s", "TFLOP", "TFLOP/s", "MFU")
    print(f"{'phase':<11}" + "".join(f"{name:>10}" for name in columns))
    for phase in ("train", "dev", "test"):
        spent = sum(seconds[phase])
        flops = phase_flops(config, measured.shapes[phase], phase == "train").total
        achieved = flops / spent
        print(
            f"{phase:<11}{spent:>10.3f}{clips[phase]:>10}{clips[phase] / spent:>10.4g}"
            f"{flops / 1e12:>10.4g}{achieved / 1e12:>10.4g}{100 * achieved / rate[0]:>9.3g}%"
        )
    print(f"{'checkpoint':<11}{sum(seconds['checkpoint']):>10.3f}")
    named = ("build", "train", "dev", "test", "checkpoint")
    rest = measured.wall - sum(sum(seconds[phase]) for phase in named)
    print(f"{'rest':<11}{rest:>10.3f}  (setup, result files and figures)")
    if measured.peak_bytes is None:
        print("peak GPU memory: n/a (cpu)")
    else:
        print(f"peak GPU memory (max_memory_allocated): {measured.peak_bytes / 2**30:.2f} GiB")
    size = args.matmul_size
    print(
        f"bf16 matmul [{size}, {size}] @ [{size}, {size}]: {rate[0] / 1e12:.3f} TFLOP/s median "
        f"(best {rate[1] / 1e12:.3f}); MFU = model TFLOP/s over this median"
    )
    train_s, dev_s, save_s = (steady(seconds[p]) for p in ("train", "dev", "checkpoint"))
    fold = seconds["build"][0] + rest + EPOCHS * (train_s + dev_s + save_s) + sum(seconds["test"])
    minutes = FOLDS * fold / 60
    basis = "epochs 2.." if epochs > 1 else "epoch 1, one-time costs included"
    print(
        f"extrapolated {FOLDS} folds x {EPOCHS} epochs ({basis}): {FOLDS} x (build + rest + "
        f"{EPOCHS} x (train {train_s:.2f} + dev {dev_s:.2f} + checkpoint {save_s:.2f}) + test) "
        f"= {minutes:.2f} min  [goal <= {GOAL_MINUTES:.0f} min: "
        f"{'met' if minutes <= GOAL_MINUTES else 'MISSED'}]"
    )


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    device = choose_device(args.device)
    print(f"bench_gpu: {device_line(device)}")
    with tempfile.TemporaryDirectory(prefix="peft-ser-bench-gpu-") as scratch:
        root = Path(scratch)
        began = time.perf_counter()
        prepared, durations = make_fold_corpus(root, (args.train, args.dev, args.test), args.seed)
        print(
            f"corpus: {args.train} train, {args.dev} dev, {args.test} test clips, "
            f"{sum(durations) / 3600:.2f} h (median {statistics.median(durations):.2f} s, mean "
            f"{statistics.mean(durations):.2f} s), generated in {time.perf_counter() - began:.1f}"
            " s (not part of the run)"
        )
        config = run_config(prepared, root / "run", args)
        measured = run_fold(config, device)
        rate = matmul_rate(args.matmul_size, torch.bfloat16, device, 0.2 if args.tiny else 2.0)
        report(args, config, measured, rate)


if __name__ == "__main__":
    main()
