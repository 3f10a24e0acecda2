"""What only a CUDA GPU can show: a bf16 LoRA step under Accelerate, logits against the CPU's
and against fp32, inference, and the feature store fed from the GPU. Skipped without CUDA.

Run them on a GPU machine with ``pytest -q tests/test_gpu.py`` (or ``bench/gpu_check.sh``).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from _tones import bf16_lora_step_setup, tiny_run

from peft_ser.config import ModelConfig
from peft_ser.data.audio import load_audio
from peft_ser.data.feature_store import FeatureStore, content_digest
from peft_ser.data.manifest import read_prepared, select
from peft_ser.data.states import states_crop
from peft_ser.inference.loading import load_model
from peft_ser.inference.predict import predict
from peft_ser.models.ser_model import SERModel, build_model
from peft_ser.training import train
from peft_ser.training.batches import _fingerprint
from peft_ser.utils.precision import bf16_autocast

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(
        not torch.cuda.is_available(), reason="needs a CUDA GPU (torch.cuda.is_available() false)"
    ),
]

CUDA = torch.device("cuda")
BACKBONES = ("tiny-wavlm", "tiny-wav2vec2-large", "tiny-whisper")

STRICT_FP32_TOLERANCE = 1e-4
"""With TF32 off, the GPU computes in fp32 like the CPU and differs only in the order of its
sums (steps of 2**-24 ≈ 6e-8, relative): far below 1e-4 of the largest logit. On these models
(measured on the CPU) ignoring the padding mask moves the logits by 2-6 % of it, and lengths
20 ms short by 0.07-0.3 %."""
TF32_TOLERANCE = 1e-2
"""torch's defaults let cuDNN convolutions use TF32 (10 mantissa bits, relative steps of
2**-11 ≈ 5e-4 per product): logits within 1 % of the largest."""
BF16_TOLERANCE = 0.02
"""bf16 keeps 8 bits of mantissa (relative steps of 2**-8 = 0.4 %); through a few layers a
tiny random model's logits stay within 2 % of their largest magnitude (0.3 % measured on CPU)."""
STORED_TOLERANCE = 5e-3
"""The store keeps float16 (relative steps of 2**-11 ≈ 5e-4) of states computed with cuDNN's
TF32 convolutions: within 0.5 % of the largest state."""


def _batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Three clips of 0.4-1.0 s, zero-padded: the masks and lengths get exercised."""
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([16000, 9000, 6400])
    waveforms = 0.1 * torch.randn(3, 16000, generator=generator)
    waveforms *= torch.arange(16000)[None, :] < lengths[:, None]
    return waveforms, lengths


def _model(backbone: str) -> SERModel:
    config = ModelConfig(backbone=backbone, method="lora", head_dim=32)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = build_model(config, pretrained=False)
    # LoRA's up-projections start at zero; random ones make the adapters count in the logits.
    for name, parameter in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(parameter, std=0.02)
    return model.eval()


def _logits(model: SERModel, device: torch.device, bf16: bool = False) -> torch.Tensor:
    waveforms, lengths = _batch()
    with torch.inference_mode(), bf16_autocast(device, bf16):
        return model(waveforms.to(device), lengths.to(device)).float().cpu()


def _worst(found: torch.Tensor, reference: torch.Tensor) -> tuple[float, float]:
    """Largest difference and largest reference magnitude."""
    return float((found - reference).abs().max()), float(reference.abs().max())


@contextmanager
def _tf32(allowed: bool | None) -> Iterator[None]:
    """TF32 for cuDNN and cuBLAS as given (None: torch's defaults, untouched)."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    if allowed is not None:
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = allowed
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def test_a_bf16_lora_step_under_accelerate_on_cuda_is_finite_and_moves_only_trainable_weights(
    corpus: Path, tmp_path: Path
) -> None:
    runner, batch, seen = bf16_lora_step_setup(corpus, tmp_path)
    assert runner.accelerator.device.type == "cuda"
    before = {name: p.detach().clone() for name, p in runner.model.named_parameters()}
    logits = runner._step(batch, 1)
    assert logits is not None, "the step was refused: its loss or gradient was not finite"
    assert runner.nonfinite.count == 0 and bool(torch.isfinite(logits).all())
    assert seen and set(seen) == {torch.bfloat16}
    moved = set()
    for name, parameter in runner.model.named_parameters():
        assert parameter.device.type == "cuda", name
        assert parameter.dtype == torch.float32, name
        if not torch.equal(before[name], parameter.detach()):
            assert parameter.requires_grad, f"frozen {name} changed"
            moved.add(name)
    assert any("lora_" in name for name in moved) and any(n.startswith("head.") for n in moved)


@pytest.mark.parametrize("backbone", BACKBONES)
@pytest.mark.parametrize(
    ("tf32", "tolerance"), [(False, STRICT_FP32_TOLERANCE), (None, TF32_TOLERANCE)]
)
def test_fp32_logits_on_cuda_agree_with_the_cpu(
    backbone: str, tf32: bool | None, tolerance: float
) -> None:
    model = _model(backbone)
    cpu = _logits(model, torch.device("cpu"))
    with _tf32(tf32):
        cuda = _logits(copy.deepcopy(model).to(CUDA), CUDA)
    worst, scale = _worst(cuda, cpu)
    print(f"{backbone}, tf32 {tf32}: largest difference {worst:.2e}, largest logit {scale:.2e}")
    assert worst <= tolerance * scale


@pytest.mark.parametrize("backbone", BACKBONES)
def test_bf16_logits_on_cuda_agree_with_fp32(backbone: str) -> None:
    model = _model(backbone).to(CUDA)
    fp32 = _logits(model, CUDA)
    bf16 = _logits(model, CUDA, bf16=True)
    worst, scale = _worst(bf16, fp32)
    print(f"{backbone}: bf16 largest difference {worst:.2e}, largest logit {scale:.2e}")
    assert worst <= BF16_TOLERANCE * scale


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_predict_on_cuda_gives_the_cpus_answers(
    corpus: Path, tmp_path: Path, precision: str
) -> None:
    saved = _model("tiny-wavlm").save(tmp_path / "model")
    files = [u.path for u in read_prepared(corpus).manifest[:6]]
    on_cpu = predict(files, model=load_model(saved, device="cpu"), batch_size=4)
    model = load_model(saved, device="cuda")
    assert next(model.parameters()).device.type == "cuda"
    on_cuda = predict(files, model=model, batch_size=4, precision=precision)
    tolerance = BF16_TOLERANCE if precision == "bf16" else TF32_TOLERANCE
    for cpu, cuda in zip(on_cpu, on_cuda, strict=True):
        assert cuda.source == cpu.source and cuda.duration == cpu.duration
        assert sum(cuda.probabilities.values()) == pytest.approx(1.0, abs=1e-5)
        for label, probability in cpu.probabilities.items():
            assert cuda.probabilities[label] == pytest.approx(probability, abs=tolerance)


def test_states_computed_on_cuda_round_trip_through_the_feature_store(
    corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A frozen run on the GPU stores every clip's states; they are the CPU's states of the
    clip, and a second run on the same store encodes nothing."""
    store = tmp_path / "store"
    settings = {"feature_cache_dir": str(store), "mixed_precision": "no", "optim.epochs": 1}
    first = train(tiny_run(corpus, tmp_path / "a", **settings))
    config = tiny_run(corpus, tmp_path / "b", **settings)
    model = build_model(config.model).eval()
    prepared = read_prepared(corpus)
    fingerprint = _fingerprint(model, "no")
    checked = 0
    for utterance in select(prepared, prepared.folds[0].dev + prepared.folds[0].test):
        entry = FeatureStore(store).entry(
            fingerprint, content_digest(utterance.path), states_crop(utterance, None)
        )
        stored = FeatureStore(store).load(entry)
        assert stored is not None, f"{utterance.key}: not stored under the CPU's fingerprint"
        waveform = torch.from_numpy(load_audio(utterance.path))[None]
        with torch.inference_mode():
            hidden, frames = model.encode(waveform)
        expected = hidden[:, 0, : int(frames[0])]
        scale = float(expected.abs().max())
        torch.testing.assert_close(
            stored.float(), expected, rtol=STORED_TOLERANCE, atol=STORED_TOLERANCE * scale
        )
        checked += 1
    assert checked > 0
    encoded: list[int] = []
    encode = SERModel.encode

    def counting(self: SERModel, waveforms: torch.Tensor, lengths: torch.Tensor | None = None):
        encoded.append(int(waveforms.shape[0]))
        return encode(self, waveforms, lengths)

    monkeypatch.setattr(SERModel, "encode", counting)
    second = train(config)
    assert encoded == [], "the second run encoded clips the store holds"
    scored = [int(np.sum(run.folds[0]["test"]["confusion"])) for run in (first, second)]
    assert scored[0] == scored[1] > 0
