"""Live streams on `peft-ser serve`: answer latency per window and server memory, N at once.

Starts ``peft-ser serve`` with one model in its own process, then N clients each stream the
same recording at the pace a microphone sends it (0.25-s frames) over ``/v1/stream``. A
window's latency is the time from sending the frame that completes it to receiving its answer;
the closing window of each stream is counted from the end event. The server's resident memory
is sampled every 50 ms (``/proc/<pid>/status``) before and while the streams run. The same
recording is also scored by ``peft-ser predict`` with the same windows, side by side, for the
time the model needs per window without streaming.

    python bench/bench_stream.py --model runs/demo/run/fold-fold1/model --streams 8
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from peft_ser.data.audio import SAMPLE_RATE
from peft_ser.serving.client import FRAME_SECONDS, stream_samples


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start_server(model: str, port: int) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "peft_ser.cli", "serve", "--model", f"m={model}"]
    server = subprocess.Popen([*command, "--port", str(port)], stderr=subprocess.PIPE)
    for _ in range(600):
        try:
            import urllib.request

            urllib.request.urlopen(f"http://127.0.0.1:{port}/livez", timeout=1)
            return server
        except OSError:
            time.sleep(0.1)
    server.kill()
    raise SystemExit("the server did not start")


def one_stream(url: str, samples: np.ndarray, latencies: list[float]) -> None:
    """Stream ``samples`` at microphone pace; append each window's answer latency."""
    step = round(FRAME_SECONDS * SAMPLE_RATE)
    sent: list[tuple[int, float]] = []  # (samples sent so far, when)
    started = time.monotonic()

    def frames():  # type: ignore[no-untyped-def]
        for start in range(0, len(samples), step):
            time.sleep(max(0.0, started + (start + step) / SAMPLE_RATE - time.monotonic()))
            yield samples[start : start + step]
            sent.append((min(start + step, len(samples)), time.monotonic()))

    for message in stream_samples(url, frames()):
        if "start" not in message:
            continue
        end = round(message["end"] * SAMPLE_RATE)
        completing = [when for count, when in sent if count > end] or [sent[-1][1]]
        latencies.append(time.monotonic() - completing[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="a saved model folder or export")
    parser.add_argument("--streams", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--window", type=float, default=2.0)
    parser.add_argument("--hop", type=float, default=1.0)
    parser.add_argument("--port", type=int, default=8799)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    t = np.arange(round(args.seconds * SAMPLE_RATE)) / SAMPLE_RATE
    samples = (0.2 * np.sin(2 * np.pi * 180 * t * (1 + 0.1 * np.sin(t)))).astype(np.float32)
    samples += 0.01 * rng.standard_normal(len(samples)).astype(np.float32)

    server = start_server(args.model, args.port)
    try:
        idle = rss_mib(server.pid)
        url = f"ws://127.0.0.1:{args.port}/v1/stream?model=m&window={args.window}&hop={args.hop}"
        latencies: list[float] = []
        peak = idle
        threads = [
            threading.Thread(target=one_stream, args=(url, samples, latencies))
            for _ in range(args.streams)
        ]
        for thread in threads:
            thread.start()
        while any(thread.is_alive() for thread in threads):
            peak = max(peak, rss_mib(server.pid))
            time.sleep(0.05)
    finally:
        server.terminate()
        server.wait(10)

    with tempfile.TemporaryDirectory() as folder:
        clip = Path(folder) / "clip.wav"
        sf.write(clip, samples, SAMPLE_RATE)
        began = time.monotonic()
        answer = subprocess.run(
            [sys.executable, "-m", "peft_ser.cli", "predict", str(clip), "--model", args.model,
             "--window", str(args.window), "--hop", str(args.hop), "--format", "json"],
            check=True, capture_output=True, text=True,
        )  # fmt: skip
        predict_seconds = time.monotonic() - began
    windows = len(json.loads(answer.stdout)[0]["windows"])

    latencies.sort()
    print(f"{args.streams} streams x {args.seconds:g} s, window {args.window:g} s, hop "
          f"{args.hop:g} s: {len(latencies)} windows answered")  # fmt: skip
    print(f"latency per window: median {statistics.median(latencies) * 1000:.0f} ms, "
          f"p95 {latencies[int(0.95 * (len(latencies) - 1))] * 1000:.0f} ms, "
          f"max {latencies[-1] * 1000:.0f} ms")  # fmt: skip
    print(f"server memory: {idle:.0f} MiB idle with the model, peak {peak:.0f} MiB "
          f"(+{peak - idle:.0f} MiB, {peak / idle:.2f}x) during the streams")  # fmt: skip
    print(f"peft-ser predict, same recording and windows: {windows} windows in "
          f"{predict_seconds:.1f} s (process start and model load included)")  # fmt: skip


if __name__ == "__main__":
    main()
