"""Peak memory of prediction on long recordings: does it grow with the recording's length?

``peft_ser.predict`` streams a file twice (check, count and find speech; then cut segments), so
its peak resident memory should be the same for a 1-minute and a 60-minute recording. This
measures it: recordings of each length are written with `write_long_recording` (espeak-ng
sentences, pauses, tones), then each is predicted in a fresh process with a tiny random-weight
Whisper, which reports its peak resident set (``VmHWM``) before and after the call. Beside it,
the peer: decoding the whole file at once with `load_audio`, as prediction did before streaming.

Run ``python bench/bench_long_memory.py --minutes 1 60`` (the 60-minute file takes a few
minutes, mostly the voice-activity detector on one thread).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from peft_ser.demo.synthetic import write_long_recording

_CHILD = """
import json, sys, time
import torch
import peft_ser
from peft_ser.data.audio import load_audio
from peft_ser.config import ModelConfig
from peft_ser.models.ser_model import build_model

def peak_kb():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])

path, mode = sys.argv[1], sys.argv[2]
torch.manual_seed(0)
model = build_model(ModelConfig(backbone="tiny-whisper", method="lora")).eval()
before = peak_kb()
started = time.perf_counter()
if mode == "load_audio":
    segments = len(load_audio(path)) and 1
else:
    segments = len(peft_ser.predict(path, model=model, segment=mode)[0].windows)
print(json.dumps({"before_kb": before, "peak_kb": peak_kb(), "segments": segments,
                  "seconds": time.perf_counter() - started}))
"""


def measure(path: Path, mode: str) -> dict[str, float]:
    """Run one prediction (or the whole-file decode) in a fresh process; its memory figures."""
    environment = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
    result = subprocess.run(
        [sys.executable, "-c", _CHILD, str(path), mode],
        capture_output=True,
        text=True,
        check=True,
        env=environment,
    )
    return json.loads(result.stdout.splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, nargs="+", default=[1.0, 60.0])
    parser.add_argument("--modes", nargs="+", default=["vad", "window", "load_audio"])
    arguments = parser.parse_args()
    print(f"load average before: {os.getloadavg()}")
    print("minutes  mode        peak MiB  growth MiB  segments  seconds")
    with tempfile.TemporaryDirectory() as folder:
        for minutes in arguments.minutes:
            path = Path(folder) / f"long-{minutes:g}min.wav"
            write_long_recording(path, minutes * 60)
            for mode in arguments.modes:
                figures = measure(path, mode)
                peak, growth = (
                    figures["peak_kb"] / 1024,
                    (figures["peak_kb"] - figures["before_kb"]) / 1024,
                )
                print(
                    f"{minutes:7g}  {mode:10s}  {peak:8.0f}  {growth:10.0f}  "
                    f"{figures['segments']:8.0f}  {figures['seconds']:7.1f}",
                    flush=True,
                )
            path.unlink()
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
