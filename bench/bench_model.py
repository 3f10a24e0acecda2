"""Core model benchmark: one LoRA training step and one inference forward, ours against the peer.

Why this exists: the point of ``crop`` mode is that emotion clips of 2–6 s should not pay for
Whisper's 30-s window. This benchmark measures that claim end to end on the same machine, in the
same process, against the standard route (``WhisperForAudioClassification`` on 30-s log-mel
features) with the same LoRA, and checks how close our encoder's forward comes to the machine's
plain matmul rate, so a slowdown in the model code shows up as a drop in efficiency rather than
hiding behind the speed-up from cropping.

All models are built from configs with random weights: timing does not depend on the values, and
no network is needed. Run ``python bench/bench_model.py --help`` for the options.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from flops import SEED, matmul_fn, whisper_encoder_flops
from peft import LoraConfig, inject_adapter_in_model
from torch import nn
from torch.nn import functional as F
from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperForAudioClassification

from peft_ser.config import ModelConfig
from peft_ser.data.manifest import PAPER4
from peft_ser.models.backbones.registry import BACKBONES
from peft_ser.models.backbones.whisper import (
    SAMPLE_RATE,
    encoder_frame_lengths,
    mel_frame_lengths,
)
from peft_ser.models.ser_model import SERModel, build_model

BACKBONE = "whisper-tiny"
LORA_RANK = 16
MIN_SECONDS, MAX_SECONDS = 2.0, 6.0
PEER = "peer, 30-s features"


@dataclass(frozen=True)
class Batch:
    """A fixed batch: zero-padded waveforms, their lengths in samples, and class labels."""

    waveforms: torch.Tensor
    lengths: torch.Tensor
    labels: torch.Tensor


def make_batch(size: int, seed: int = SEED) -> Batch:
    """Seeded clips of 2–6 s; noise, since no timing here depends on what the audio says."""
    generator = torch.Generator().manual_seed(seed)
    seconds = MIN_SECONDS + (MAX_SECONDS - MIN_SECONDS) * torch.rand(size, generator=generator)
    lengths = (seconds * SAMPLE_RATE).long()
    waveforms = 0.1 * torch.randn(size, int(lengths.max()), generator=generator)
    waveforms *= torch.arange(waveforms.shape[1]).unsqueeze(0) < lengths.unsqueeze(1)
    labels = torch.randint(len(PAPER4), (size,), generator=generator)
    return Batch(waveforms, lengths, labels)


def whisper_tiny_config() -> WhisperConfig:
    config = BACKBONES[BACKBONE].config()
    assert isinstance(config, WhisperConfig)
    return config


def build_ours(window: str) -> SERModel:
    return build_model(
        ModelConfig(backbone=BACKBONE, method="lora", lora_rank=LORA_RANK, whisper_window=window),
        pretrained=False,
    )


def build_peer() -> WhisperForAudioClassification:
    """The standard route: weighted layer sum (as our head), LoRA on fc1/fc2, head trainable."""
    config = whisper_tiny_config()
    config.use_weighted_layer_sum = True
    config.num_labels = len(PAPER4)
    config._attn_implementation = "sdpa"
    model = WhisperForAudioClassification(config)
    # inject_adapter_in_model freezes everything but the adapters, as our LoRA method does.
    inject_adapter_in_model(
        LoraConfig(r=LORA_RANK, lora_alpha=1, target_modules=["fc1", "fc2"]), model
    )
    for module in (model.projector, model.classifier):
        module.requires_grad_(True)
    model.layer_weights.requires_grad_(True)
    return model


def peer_features(batch: Batch) -> tuple[torch.Tensor, float]:
    """30-s log-mel features as a data loader would make them; returns them and seconds taken."""
    extractor = WhisperFeatureExtractor(feature_size=whisper_tiny_config().num_mel_bins)
    clips = [w[: int(n)].numpy() for w, n in zip(batch.waveforms, batch.lengths, strict=True)]
    start = time.perf_counter()
    features = extractor(clips, sampling_rate=SAMPLE_RATE, return_tensors="pt").input_features
    return features, time.perf_counter() - start


def trainable(model: nn.Module) -> list[nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


def train_step_fn(
    model: nn.Module, forward: Callable[[], torch.Tensor], labels: torch.Tensor
) -> Callable[[], None]:
    """Forward, cross-entropy, backward and an Adam step over the trainable parameters."""
    optimizer = torch.optim.Adam(trainable(model), lr=1e-4)

    def step() -> None:
        model.train()
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(forward(), labels)
        loss.backward()
        optimizer.step()

    return step


def inference_fn(model: nn.Module, forward: Callable[[], torch.Tensor]) -> Callable[[], None]:
    def infer() -> None:
        model.eval()
        with torch.no_grad():
            forward()

    return infer


@dataclass(frozen=True)
class Timing:
    """Wall times of one case: the median is the figure reported, the best shows the noise."""

    times: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def best(self) -> float:
        return min(self.times)


def interleaved_times(
    cases: dict[str, Callable[[], object]], repeats: int, warmup: int = 1
) -> dict[str, Timing]:
    """Wall times per case, warm-up excluded, with the cases timed round-robin.

    Round-robin rather than one case after another: on a shared machine a burst of load from
    other processes then slows every case alike instead of skewing one ratio.
    """
    for fn in cases.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeats):
        for name, fn in cases.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: Timing(tuple(values)) for name, values in times.items()}


class ForeignLoad:
    """Share of the machine's CPU time that other processes used while this one measured.

    On a shared machine every timing here is only as good as the quiet it ran in; printing how
    much CPU others took says whether a run's numbers can be trusted. Linux only (``/proc/stat``);
    elsewhere it reports nothing.
    """

    def __init__(self) -> None:
        self.start = self._sample()

    @staticmethod
    def _sample() -> tuple[float, float, float] | None:
        try:
            with open("/proc/stat") as stat:
                fields = [int(x) for x in stat.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        ticks = os.sysconf("SC_CLK_TCK")
        busy = (sum(fields) - fields[3] - fields[4]) / ticks  # all but idle and iowait
        return busy, time.process_time(), time.perf_counter()

    def percent(self) -> float | None:
        end = self._sample()
        if self.start is None or end is None:
            return None
        busy, own, wall = (e - s for e, s in zip(end, self.start, strict=True))
        return 100 * max(0.0, busy - own) / (wall * (os.cpu_count() or 1))


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def profile(fn: Callable[[], None], title: str, rows: int) -> None:
    """Operator-level breakdown (self CPU time) of one call, to see where a miss comes from."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    fn()
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    print(f"\n--- profile: {title} ---")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=8, help="clips per batch (2–6 s each)")
    parser.add_argument(
        "--repeats", type=int, default=3, help="timed runs per measurement (after one warm-up)"
    )
    parser.add_argument(
        "--threads", type=int, default=os.cpu_count() or 1, help="torch intra-op threads"
    )
    parser.add_argument(
        "--profile", action="store_true", help="also print torch.profiler tables for our model"
    )
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(SEED)
    began = time.perf_counter()

    batch = make_batch(args.batch)
    mel_frames = int(mel_frame_lengths(batch.lengths).max())
    positions = int(encoder_frame_lengths(torch.tensor(mel_frames)))
    seconds = ", ".join(f"{n / SAMPLE_RATE:.2f}" for n in batch.lengths.tolist())
    print(
        f"torch {torch.__version__}, {args.threads} threads, {os.cpu_count()} CPUs ({cpu_model()})"
    )
    print(f"batch: {args.batch} clips of {seconds} s (seed {SEED}); padded to {mel_frames} mel")
    print(f"frames = {positions} encoder positions (peer: 3000 mel frames = 1500 positions)")

    features, feature_seconds = peer_features(batch)
    print(
        f"peer input: WhisperFeatureExtractor 30-s features {tuple(features.shape)}, computed "
        f"once outside the timed region (as a data loader would) in {feature_seconds * 1e3:.0f} ms"
    )
    print("ours: log-mel computed in torch inside the timed forward\n")

    ours = build_ours("crop")
    ours_pad30 = build_ours("pad30")
    peer = build_peer()
    w, n, y = batch.waveforms, batch.lengths, batch.labels
    foreign = ForeignLoad()

    models: dict[str, tuple[nn.Module, Callable[[], torch.Tensor]]] = {
        "ours, crop": (ours, lambda: ours(w, n)),
        "ours, pad30": (ours_pad30, lambda: ours_pad30(w, n)),
        PEER: (peer, lambda: peer(input_features=features).logits),
    }
    cases: dict[str, Callable[[], object]] = {}
    for name, (model, forward) in models.items():
        cases[f"{name}/train"] = train_step_fn(model, forward, y)
        cases[f"{name}/infer"] = inference_fn(model, forward)
    times = interleaved_times(cases, args.repeats)
    median = {name: timing.median for name, timing in times.items()}

    print(f"median (best) of {args.repeats} runs after 1 warm-up, cases timed in turns")
    header = f"{'model':<22}{'train step (s)':>17}{'inference (s)':>17}"
    print(f"{header}{'peer/this train':>17}{'peer/this infer':>17}")
    peer_train, peer_infer = median[f"{PEER}/train"], median[f"{PEER}/infer"]
    for name in models:
        train, infer = times[f"{name}/train"], times[f"{name}/infer"]
        print(
            f"{name:<22}{f'{train.median:.3f} ({train.best:.3f})':>17}"
            f"{f'{infer.median:.3f} ({infer.best:.3f})':>17}"
            f"{peer_train / train.median:>16.2f}×{peer_infer / infer.median:>16.2f}×"
        )
    speedup = peer_train / median["ours, crop/train"]
    print(
        f"\npeer/ours (crop): train step {speedup:.2f}×, "
        f"inference {peer_infer / median['ours, crop/infer']:.2f}×"
        f"  [target train ≥ 7×: {'met' if speedup >= 7 else 'MISSED'}]"
    )
    print(
        "30-s padding in our own code (pad30/crop): "
        f"train step {median['ours, pad30/train'] / median['ours, crop/train']:.2f}×, "
        f"inference {median['ours, pad30/infer'] / median['ours, crop/infer']:.2f}×"
    )

    # Efficiency of our encoder forward against the machine's plain matmul rate, timed in turns.
    config = whisper_tiny_config()
    flops = whisper_encoder_flops(config, args.batch, mel_frames, LORA_RANK)
    rows, d, ffn = args.batch * positions, config.d_model, config.encoder_ffn_dim
    matmul, matmul_flops = matmul_fn(rows, d, ffn)
    ours.eval()

    def encode() -> None:
        with torch.no_grad():
            ours.encode(w, n)

    rates = interleaved_times({"encode": encode, "matmul": matmul}, max(10, 3 * args.repeats))
    print(f"\nour encoder forward, {args.batch} × {positions} positions: FLOPs (2 per MAC)")
    for part, value in flops.parts.items():
        print(f"  {part:<28}{value / 1e9:>9.3f} G")
    print(f"  {'total':<28}{flops.total / 1e9:>9.3f} G")
    encode_time, matmul_time = rates["encode"], rates["matmul"]
    achieved, reference = flops.total / encode_time.median, matmul_flops / matmul_time.median
    print(
        f"encoder forward (eval, no_grad, log-mel included): {encode_time.median * 1e3:.0f} ms "
        f"→ {achieved / 1e9:.1f} GFLOP/s (best run {flops.total / encode_time.best / 1e9:.1f})"
    )
    print(
        f"plain matmul [{rows}, {d}] @ [{d}, {ffn}] fp32: {reference / 1e9:.1f} GFLOP/s "
        f"(best run {matmul_flops / matmul_time.best / 1e9:.1f})"
    )
    share = 100 * achieved / reference
    print(
        f"encoder forward reaches {share:.0f} % of the plain matmul rate"
        f"  [target ≥ 70 %: {'met' if share >= 70 else 'MISSED'}]"
    )

    foreign_share = foreign.percent()
    if foreign_share is not None:
        verdict = "quiet enough" if foreign_share < 10 else "NOT quiet: rerun for numbers to quote"
        print(
            f"\nother processes used {foreign_share:.0f} % of the machine's CPU time while this "
            f"measured ({verdict})"
        )
    if args.profile:
        profile(inference_fn(ours, lambda: ours(w, n)), "ours, crop, inference", 25)
        profile(train_step_fn(ours, lambda: ours(w, n), y), "ours, crop, train step", 25)
    print(f"total benchmark time {time.perf_counter() - began:.0f} s")


if __name__ == "__main__":
    main()
