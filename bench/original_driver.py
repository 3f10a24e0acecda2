"""The original PEFT-SER package's side of ``compare_original.py``; runs in its own environment.

Run by ``compare_original.py`` with the interpreter of a virtual environment holding
``peft-ser==0.0.5``, ``transformers==4.30.2`` and ``loralib``, and the hub client set offline.
It imports nothing from this repository. In the work folder it:

1. writes hub-cache snapshots of the backbones under the hub ids the original code loads
   (``openai/whisper-tiny`` from ``whisper_encoder.safetensors``, real Whisper tiny.en encoder
   weights; ``microsoft/wavlm-base-plus`` as a small random WavLM), so the original code runs
   unmodified and offline;
2. builds each original model class, draws random trained weights (loralib leaves ``lora_B`` at
   zero, which would hide the LoRA path), and saves them as the authors' release script did:
   the head without ``backbone_model``/``embed_positions`` keys as ``<name>.pt``, and
   ``loralib.lora_state_dict`` as ``<name>_lora.pt``;
3. loads each model back through the original ``peft_ser.load_model(name, cache_folder=...)``
   and records its logits on every clip alone and on all clips batched with ``length``;
   with ``--time-repeats N`` (``bench_inference.py``) it also times the Whisper model's
   batch-1 forward over the clips N times.

Results go to ``original.json`` in the work folder.
"""

from __future__ import annotations

import argparse
import json
import time
import traceback
from pathlib import Path

import loralib
import numpy as np
import torch
import transformers
from safetensors.torch import load_file
from transformers import (
    WavLMConfig,
    WavLMModel,
    WhisperConfig,
    WhisperFeatureExtractor,
    WhisperModel,
)

import peft_ser  # the original package (0.0.5), in its own environment

COMMIT = "0000000000000000000000000000000000000000"
WHISPER = "whisper-tiny-lora-16-conv"
WAVLM = "wavlm-plus-lora-16-conv"
SMALL_WAVLM = {
    "hidden_size": 64,
    "num_hidden_layers": 3,
    "num_attention_heads": 4,
    "intermediate_size": 128,
    "conv_dim": (32, 32, 32, 32, 32, 32, 32),
    "num_buckets": 32,
}


def snapshot(cache: Path, hub_id: str) -> Path:
    """The snapshot folder of ``hub_id`` in a hub cache, with ``refs/main`` pointing at it."""
    repo = cache / f"models--{hub_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(COMMIT)
    return repo / "snapshots" / COMMIT


def write_backbones(work: Path, cache: Path) -> None:
    fields = json.loads((work / "whisper_config.json").read_text())
    whisper = WhisperModel(WhisperConfig(**fields))
    whisper.encoder.load_state_dict(load_file(work / "whisper_encoder.safetensors"), strict=True)
    folder = snapshot(cache, "openai/whisper-tiny")
    whisper.save_pretrained(folder)
    WhisperFeatureExtractor(feature_size=fields["num_mel_bins"]).save_pretrained(folder)
    torch.manual_seed(0)
    WavLMModel(WavLMConfig(**SMALL_WAVLM)).save_pretrained(
        snapshot(cache, "microsoft/wavlm-base-plus")
    )


def whisper_ser(cache: Path, enable_peft_training: bool, method: str = "lora") -> torch.nn.Module:
    """The original ``WhisperSER`` of ``whisper-tiny-lora-16-conv`` (Whisper tiny, LoRA r16,
    convolutional head) on the backbone in ``cache``. Its ``load_model`` builds it with
    ``enable_peft_training=False``, the training script with True; ``method="frozen"`` matches
    none of its PEFT branches and so gives the plain, frozen encoder."""
    return peft_ser.WhisperSER(
        pretrained_model="whisper_tiny",
        output_class_num=4,
        finetune_method=method,
        lora_rank=16,
        cache_dir=str(cache),
        use_conv_output=True,
        enable_peft_training=enable_peft_training,
    )


def build_original(name: str, cache: Path) -> torch.nn.Module:
    """The original class for ``name``, as its ``load_model`` builds it."""
    if name == WHISPER:
        return whisper_ser(cache, enable_peft_training=False)
    # The original load_model passes cache_dir, which WavLMPlusSER does not take; it reads the
    # default hub cache, which is the work cache here.
    return peft_ser.WavLMPlusSER(
        pretrained_model="wavlm_plus",
        output_class_num=4,
        finetune_method="lora",
        lora_rank=16,
        use_conv_output=True,
        enable_peft_training=True,
    )


def randomise_trained_weights(model: torch.nn.Module, seed: int) -> None:
    """Trained-looking values for everything training changes: LoRA matrices and the head."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for key, parameter in model.named_parameters():
            if "lora_" in key:
                parameter.normal_(0.0, 0.05, generator=generator)
            elif not key.startswith("backbone_model") and key != "embed_positions":
                parameter.normal_(0.0, 0.09, generator=generator)


def write_release_files(name: str, cache: Path, seed: int) -> None:
    """Save as the authors' release script did (``package/peft_ser/example.py``)."""
    model = build_original(name, cache)
    randomise_trained_weights(model, seed)
    head = {
        key: value
        for key, value in model.state_dict().items()
        if "backbone_model" not in key and "embed_positions" not in key
    }
    torch.save(head, cache / f"{name}.pt")
    torch.save(loralib.lora_state_dict(model), cache / f"{name}_lora.pt")


def load_as_a_user(name: str, cache: Path) -> tuple[torch.nn.Module, dict]:
    """``peft_ser.load_model(name, cache_folder=cache)``; where it fails, what it would do."""
    notes: dict = {}
    try:
        model = peft_ser.load_model(name, cache_folder=str(cache))
    except TypeError as error:
        notes["load_model_error"] = f"{type(error).__name__}: {error}"
        notes["load_model_traceback"] = traceback.format_exc(limit=2)
        model = build_original(name, cache)
        for suffix in (".pt", "_lora.pt"):
            model.load_state_dict(torch.load(cache / f"{name}{suffix}"), strict=False)
    notes["training_mode_after_load_model"] = model.training
    return model, notes


def logits(model: torch.nn.Module, clips: list[np.ndarray]) -> dict:
    """Each clip alone, then all of them zero-padded with ``length`` (or why that failed)."""
    model.eval()
    lengths = torch.tensor([clip.size for clip in clips])
    padded = torch.zeros(len(clips), int(lengths.max()))
    for row, clip in enumerate(clips):
        padded[row, : clip.size] = torch.from_numpy(clip)
    with torch.no_grad():
        results: dict = {
            "alone": [model(torch.from_numpy(clip)[None])[0].tolist() for clip in clips]
        }
        try:
            results["batched"] = model(padded, length=lengths).tolist()
        except Exception as error:  # the original's own failure is a finding, not a crash
            results["batched_error"] = f"{type(error).__name__}: {error}"
    return results


def batch1_seconds(model: torch.nn.Module, clips: list[np.ndarray], repeats: int) -> list[float]:
    """Seconds for one pass of batch-1 forwards over every clip, per repeat (after a warm-up)."""
    model.eval()
    passes = []
    with torch.no_grad():
        model(torch.from_numpy(clips[0])[None])
        for _ in range(repeats):
            start = time.perf_counter()
            for clip in clips:
                model(torch.from_numpy(clip)[None])
            passes.append(time.perf_counter() - start)
    return passes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("work", type=Path)
    parser.add_argument(
        "--time-repeats",
        type=int,
        default=0,
        help="also time the Whisper model's batch-1 forward over the clips this many times",
    )
    arguments = parser.parse_args()
    work = arguments.work
    cache = work / "cache"
    torch.set_num_threads(1)
    write_backbones(work, cache)
    clips = [np.asarray(clip, dtype=np.float32) for clip in np.load(work / "clips.npz").values()]
    results: dict = {
        "versions": {
            "peft_ser": "0.0.5",
            "transformers": transformers.__version__,
            "torch": torch.__version__,
            "numpy": np.__version__,
        }
    }
    for seed, name in enumerate((WHISPER, WAVLM), start=1):
        write_release_files(name, cache, seed)
        model, notes = load_as_a_user(name, cache)
        results[name] = logits(model, clips) | notes
        if name == WHISPER and arguments.time_repeats:
            results[name]["batch1_seconds"] = batch1_seconds(model, clips, arguments.time_repeats)
    (work / "original.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
