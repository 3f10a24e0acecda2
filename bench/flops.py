"""Model FLOPs counted from a backbone's config and a batch's padded length, and the plain matmul
whose measured rate is their yardstick; shared by the benchmarks.

Counted: matrix products and convolutions, 2 FLOPs per multiply-add. Elementwise work, norms and
softmax are left out (memory-bound, a few percent of the FLOPs). Padded frames are computed like
any others, so every count takes the batch's padded length, not its clips' own lengths.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from transformers import PretrainedConfig, WhisperConfig

from peft_ser.models.backbones.ssl import conv_output_length
from peft_ser.models.backbones.whisper import encoder_frame_lengths

SEED = 0


@dataclass(frozen=True)
class FlopCount:
    """FLOPs by part of the model (2 per multiply-add); counts of several batches add up."""

    parts: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.parts.values())

    def __add__(self, other: FlopCount) -> FlopCount:
        names = list(self.parts) + [name for name in other.parts if name not in self.parts]
        return FlopCount({n: self.parts.get(n, 0) + other.parts.get(n, 0) for n in names})


def _flops(macs: dict[str, int]) -> FlopCount:
    return FlopCount({name: 2 * value for name, value in macs.items()})


def layer_macs(
    layers: int, batch: int, positions: int, d: int, ffn: int, rank: int, ffn_name: str
) -> dict[str, int]:
    """Multiply-adds of ``layers`` transformer layers over a ``[batch, positions]`` input, with
    LoRA of ``rank`` on both feed-forward projections (named ``ffn_name``)."""
    tokens = batch * positions
    return {
        "q/k/v/out projections": layers * tokens * 4 * d * d,
        "attention scores + values": layers * 2 * batch * positions * positions * d,
        ffn_name: layers * tokens * 2 * d * ffn,
        f"LoRA r{rank} on {ffn_name}": layers * tokens * 2 * rank * (d + ffn),
    }


def whisper_encoder_flops(
    config: WhisperConfig, batch: int, mel_frames: int, rank: int
) -> FlopCount:
    """One Whisper encoder forward (log-mel included) over ``mel_frames`` padded log-mel frames;
    the layers run on ``(mel_frames - 1) // 2 + 1`` positions after the stride-2 convolution."""
    d, ffn, mels = config.d_model, config.encoder_ffn_dim, config.num_mel_bins
    positions = int(encoder_frame_lengths(torch.tensor(mel_frames)))
    tokens = batch * positions
    macs = {
        "log-mel filterbank": batch * mel_frames * (1 + 400 // 2) * mels,
        "conv1": batch * mel_frames * d * mels * 3,
        "conv2": tokens * d * d * 3,
        **layer_macs(config.encoder_layers, batch, positions, d, ffn, rank, "fc1 + fc2"),
    }
    return _flops(macs)


def ssl_positions(config: PretrainedConfig, samples: int) -> int:
    """Frames the wav2vec 2.0-family convolutional front end makes of ``samples``."""
    length = torch.tensor(samples)
    for kernel, stride in zip(config.conv_kernel, config.conv_stride, strict=True):
        length = conv_output_length(length, kernel, stride)
    return int(length)


SSL_FFN = "feed-forward"
HEAD = "head"
GATES = "relative-position gates"


def ssl_lora_step_flops(
    config: PretrainedConfig, batch: int, samples: int, rank: int, head: tuple[int, int]
) -> tuple[FlopCount, FlopCount]:
    """Forward and backward FLOPs of a wav2vec 2.0 / HuBERT / WavLM model with LoRA of ``rank``
    on both feed-forward projections and the paper's head (``head`` = (hidden width, outputs))
    over ``batch`` clips padded to ``samples``.

    The backward counts what autograd computes: nothing before the first trainable weight (the
    convolutional front end, the projection, the positional convolution and layer 0's
    attention take no gradient); input gradients of the frozen products in layers 1.. and of
    layer 0's second feed-forward projection (1× their forward); input and weight gradients of
    LoRA (2×, less the input gradient of layer 0's first down-projection) and of the head (2×).
    """
    d, ffn, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    positions = ssl_positions(config, samples)
    tokens = batch * positions
    conv, length, channels = 0, samples, 1
    for width, kernel, stride in zip(
        config.conv_dim, config.conv_kernel, config.conv_stride, strict=True
    ):
        length = int(conv_output_length(torch.tensor(length), kernel, stride))
        conv += batch * length * width * channels * kernel
        channels = width
    groups, kernel = config.num_conv_pos_embedding_groups, config.num_conv_pos_embeddings
    hidden, outputs = head
    head_macs = (layers + 1) * tokens * d + tokens * (d * hidden + 2 * hidden * hidden)
    head_macs += batch * (hidden * hidden + hidden * outputs)
    lora = f"LoRA r{rank} on {SSL_FFN}"
    forward = {
        "convolutional front end": conv,
        "feature projection": tokens * channels * d,
        # padded by kernel // 2 on both sides: one frame more than it keeps for an even kernel
        "positional convolution": batch
        * (positions + 2 * (kernel // 2) - kernel + 1)
        * d
        * (d // groups)
        * kernel,
        **layer_macs(layers, batch, positions, d, ffn, rank, SSL_FFN),
        HEAD: head_macs,
    }
    backward = {
        "q/k/v/out projections": (layers - 1) * tokens * 4 * d * d,
        "attention scores + values": 2 * (layers - 1) * 2 * batch * positions * positions * d,
        SSL_FFN: (2 * layers - 1) * tokens * d * ffn,
        lora: 2 * forward[lora] - tokens * d * rank,
        HEAD: 2 * head_macs,
    }
    if config.model_type == "wavlm":  # a [head_dim, 8] gate per head and position
        forward[GATES] = layers * tokens * d * 8
        backward[GATES] = (layers - 1) * tokens * d * 8
    return _flops(forward), _flops(backward)


MATMULS_PER_CALL = 10


def matmul_fn(
    rows: int,
    inner: int,
    cols: int,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
) -> tuple[Callable[[], None], int]:
    """A plain ``[rows, inner] @ [inner, cols]`` in ``dtype`` on ``device``, ten times per call,
    and its FLOPs per call: the rate the machine reaches on a product, the yardstick for a
    model's efficiency."""
    generator = torch.Generator().manual_seed(SEED)
    a = torch.randn(rows, inner, generator=generator).to(device, dtype)
    b = torch.randn(inner, cols, generator=generator).to(device, dtype)
    out = torch.empty(rows, cols, device=device, dtype=dtype)

    def run() -> None:
        for _ in range(MATMULS_PER_CALL):
            torch.matmul(a, b, out=out)

    return run, MATMULS_PER_CALL * 2 * rows * inner * cols


def matmul_rate(
    size: int, dtype: torch.dtype, device: torch.device, seconds: float = 2.0
) -> tuple[float, float]:
    """Median and best FLOP/s of a square ``size`` product in ``dtype``, over about ``seconds``
    of calls after a warm-up of as long (a GPU raises its clocks under load); CUDA calls are
    timed with CUDA events, which count the kernels and not their launch."""
    run, flops = matmul_fn(size, size, size, dtype, device)
    cuda = device.type == "cuda"

    def timed() -> float:
        if not cuda:
            began = time.perf_counter()
            run()
            return time.perf_counter() - began
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        run()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3

    warm_up = time.perf_counter()
    while time.perf_counter() - warm_up < seconds:
        timed()
    times: list[float] = []
    began = time.perf_counter()
    while time.perf_counter() - began < seconds or len(times) < 3:
        times.append(timed())
    times.sort()
    return flops / times[len(times) // 2], flops / times[0]
