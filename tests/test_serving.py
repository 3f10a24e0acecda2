"""The HTTP API: every endpoint, every limit, shared backbones and batching that change nothing.

Models are two saved tiny-whisper + LoRA models that disagree (see `_serving`); expected
answers come from `peft_ser.predict` on each model alone.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf
import torch
from _serving import RATE, assert_same, local_client, running, save_models, voice, write_clip
from fastapi.testclient import TestClient

import peft_ser
from peft_ser.config import ModelConfig
from peft_ser.demo.synthetic import espeak_available, write_long_recording
from peft_ser.inference.predict import Failure, Prediction
from peft_ser.models.ser_model import build_model
from peft_ser.serving import BatchSettings, ModelPool, ModelSpec, ServeSettings, create_app
from peft_ser.serving.batching import Batcher, Segmentation
from peft_ser.serving.pool import ModelSpecError, parse_model_spec
from peft_ser.utils.errors import InvalidRequestError

needs_espeak = pytest.mark.skipif(not espeak_available(), reason="espeak-ng is not installed")


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return save_models(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def pool(saved: list[Path]) -> ModelPool:
    return ModelPool.load([ModelSpec("a", str(saved[0])), ModelSpec("b", str(saved[1]))])


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("clips")
    return {
        "short": write_clip(root / "short.wav", 0.6),
        "other": write_clip(root / "other.wav", 0.9, pitch=520.0),
        "long": write_clip(root / "long.wav", 3.0, pitch=330.0),
    }


@pytest.fixture()
def client(pool: ModelPool) -> Iterator[TestClient]:
    with local_client(create_app(pool)) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def talk(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An 8-s recording of two spoken sentences between pauses (espeak-ng)."""
    path = tmp_path_factory.mktemp("talk") / "talk.wav"
    assert len(write_long_recording(path, 8)) == 2
    return path


def expected(
    saved: Path, clip: Path, **options: float | str
) -> peft_ser.inference.predict.Prediction:
    [prediction] = peft_ser.predict(clip, model=saved, **options)
    return prediction


def batcher_answers(
    pool: ModelPool, batching: BatchSettings, requests: list[tuple[np.ndarray, str, Segmentation]]
) -> tuple[list[Prediction | Failure], int]:
    """Model a's answers to ``(samples, source, segmentation)`` requests sent to one batcher at
    once, and how many calls the batcher ran for them."""

    async def answers() -> tuple[list[Prediction | Failure], int]:
        batcher = Batcher(pool, batching)
        await batcher.start()
        try:
            calls = [
                batcher.score("a", samples, source, how, timeout=30)
                for samples, source, how in requests
            ]
            results = await asyncio.gather(*calls)
        finally:
            await batcher.stop()
        return results, batcher.batches_run

    return asyncio.run(answers())


def test_models_health_and_docs(client: TestClient, saved: list[Path]) -> None:
    listed = client.get("/v1/models").json()["models"]
    assert [model["name"] for model in listed] == ["a", "b"]
    model = peft_ser.load_model(saved[0])
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert listed[0]["labels"] == model.labels
    assert listed[0]["backbone"] == "tiny-whisper" and listed[0]["method"] == "lora"
    assert listed[0]["trainable_parameters"] == trainable
    assert listed[0]["trainable_bytes"] == 4 * trainable
    assert client.get("/healthz").json() == {"status": "ok", "models": ["a", "b"], "waiting": 0}
    assert client.get("/livez").json() == {"status": "ok"}
    schema = client.get("/openapi.json").json()
    assert {"/v1/predict", "/v1/models", "/healthz", "/livez"} <= set(schema["paths"])
    body = schema["paths"]["/v1/predict"]["post"]["requestBody"]["content"]
    assert {"multipart/form-data", "application/octet-stream"} <= set(body)
    for page in ("/docs", "/redoc"):  # their scripts would come from a CDN: off
        assert client.get(page).status_code == 404


def test_predict_upload_and_raw_body_equal_predict(
    client: TestClient, saved: list[Path], clips: dict[str, Path]
) -> None:
    clip = clips["short"]
    upload = client.post(
        "/v1/predict?model=a", files={"file": ("folder/short.wav", clip.read_bytes())}
    )
    assert upload.status_code == 200, upload.text
    answer = upload.json()
    assert answer["model"] == "a"
    assert answer["prediction"]["source"] == "short.wav"  # folders of a client name are dropped
    assert_same(answer["prediction"], expected(saved[0], clip))
    raw = client.post("/v1/predict?model=b&top_k=2", content=clip.read_bytes()).json()
    assert raw["prediction"]["source"] == "upload"
    assert_same(raw["prediction"], expected(saved[1], clip))
    assert raw["prediction"]["label"] != answer["prediction"]["label"]  # the models disagree
    ranked = sorted(raw["prediction"]["probabilities"].items(), key=lambda item: -item[1])
    assert raw["top"] == [{"label": k, "probability": p} for k, p in ranked[:2]]


def test_long_recording_in_windows(
    client: TestClient, saved: list[Path], clips: dict[str, Path]
) -> None:
    response = client.post(
        "/v1/predict?model=a&window=1&hop=0.5", content=clips["long"].read_bytes()
    )
    prediction = response.json()["prediction"]
    assert len(prediction["windows"]) == 5
    assert_same(prediction, expected(saved[0], clips["long"], window=1.0, hop=0.5))


@needs_espeak
def test_speech_segments_equal_predict(client: TestClient, saved: list[Path], talk: Path) -> None:
    """segment=vad: the speech segments of `peft_ser.predict`, with their times and answers."""
    for options in ({"segment": "vad"}, {"segment": "vad", "min_segment": 0.5, "max_segment": 1}):
        response = client.post(
            "/v1/predict", params={"model": "b", **options}, content=talk.read_bytes()
        )
        assert response.status_code == 200, response.text
        prediction = response.json()["prediction"]
        reference = expected(saved[1], talk, **options)
        assert len(prediction["windows"]) == len(reference.windows) >= 2
        assert_same(prediction, reference)
    assert len(prediction["windows"]) > 2  # max_segment=1 split the sentences


def test_segment_default_is_predicts() -> None:
    default = inspect.signature(peft_ser.predict).parameters["segment"].default
    assert Segmentation().segment == default == "window"


def test_impossible_segment_settings_refused_with_predicts_message(
    client: TestClient, saved: list[Path], clips: dict[str, Path]
) -> None:
    clip = clips["short"]
    for options in (
        {"segment": "speech"},
        {"segment": "vad", "window": 2.0},
        {"segment": "whole", "hop": 1.0},
        {"min_segment": 2.0},
        {"segment": "vad", "min_segment": 5.0, "max_segment": 2.0},
        {"segment": "vad", "max_segment": 60.0},
        {"window": 40.0},
    ):
        with pytest.raises(InvalidRequestError) as raised:
            peft_ser.predict(clip, model=saved[0], **options)  # type: ignore[arg-type]
        response = client.post(
            "/v1/predict", params={"model": "a", **options}, content=clip.read_bytes()
        )
        assert response.status_code == 422, options
        assert response.json() == {"detail": str(raised.value)}, options
    assert client.post("/v1/predict?model=a", content=clip.read_bytes()).status_code == 200


def test_recordings_predict_cannot_answer_are_422(client: TestClient, tmp_path: Path) -> None:
    """Too long to keep whole, or no speech found: 422 with the failure's message."""
    sf.write(tmp_path / "long.flac", np.zeros(31 * RATE, dtype=np.float32), RATE)
    whole = client.post(
        "/v1/predict?model=a&segment=whole",
        files={"file": ("long.flac", (tmp_path / "long.flac").read_bytes())},
    )
    assert whole.status_code == 422
    assert whole.json()["detail"] == (
        "long.flac: 31.0 s is longer than this model encodes (30 s); use segment 'window' or 'vad'"
    )
    silence = client.post(
        "/v1/predict?model=a&segment=vad", content=(tmp_path / "long.flac").read_bytes()
    )
    assert silence.status_code == 422
    assert silence.json()["detail"] == "upload: no speech found by the voice-activity detector"


@needs_espeak
def test_different_segmentations_never_batched_together(pool: ModelPool, talk: Path) -> None:
    """One recording asked four ways at once: four calls, each answer the one asked alone."""
    samples = peft_ser.data.audio.load_audio(talk)
    settings = [
        Segmentation(),
        Segmentation(window=2.0),
        Segmentation("vad"),
        Segmentation("vad", max_segment=1.0),
    ]
    requests = [(samples, "talk", how) for how in settings]
    batched, batches = batcher_answers(pool, BatchSettings(window_ms=50, max_batch=8), requests)
    single, runs = batcher_answers(pool, BatchSettings(max_batch=1), requests)
    assert (batches, runs) == (4, 4)
    counts = [len(one.windows) for one in batched]
    assert counts[0] == 0 and counts[2] == 2 and len(set(counts)) == 4  # cut four ways
    for one, other in zip(batched, single, strict=True):
        assert_same(one.to_dict(), other)


def test_backbone_held_once(saved: list[Path]) -> None:
    specs = [ModelSpec(name, str(saved[i % 2])) for i, name in enumerate("abcd")]
    shared = ModelPool.load(specs)
    alone = ModelPool.load(specs, share=False)
    first, second = (served.model for served in list(shared)[:2])
    frozen = [p for p in first.parameters() if not p.requires_grad]
    assert frozen and all(
        any(p is q for q in second.parameters()) for p in frozen
    )  # every frozen tensor is the same object in both
    trained = {id(p) for p in first.parameters() if p.requires_grad}
    assert not trained & {id(p) for p in second.parameters()}
    assert shared.memory().private_bytes < alone.memory().private_bytes
    backbone_bytes = sum(p.numel() * 4 for p in frozen)
    assert shared.memory().shared_bytes >= backbone_bytes
    assert alone.memory().shared_bytes == 0


def test_backbone_shared_across_methods(
    saved: list[Path], clips: dict[str, Path], tmp_path: Path
) -> None:
    """A LoRA model and a parallel-adapter model hold one backbone and keep their own answers."""
    torch.manual_seed(3)
    adapter = build_model(ModelConfig(backbone="tiny-whisper", method="adapter", adapter_dim=8))
    with torch.no_grad():
        for layer in adapter.backbone.layers:
            layer.adapter.up.weight.normal_(0.0, 0.5)
    folder = adapter.save(tmp_path / "adapter")
    pool = ModelPool.load([ModelSpec("lora", str(saved[0])), ModelSpec("adapter", str(folder))])
    backbone = pool.get("adapter").model.backbone
    frozen = sum(p.numel() * 4 for p in backbone.parameters() if not p.requires_grad)
    assert pool.memory().shared_bytes >= frozen
    with local_client(create_app(pool)) as client:
        for name, source in (("lora", saved[0]), ("adapter", folder)):
            response = client.post(f"/v1/predict?model={name}", content=clips["long"].read_bytes())
            assert_same(response.json()["prediction"], expected(source, clips["long"]))


def test_concurrent_mixed_requests_equal_each_model_alone(
    saved: list[Path], pool: ModelPool, clips: dict[str, Path]
) -> None:
    """Sixteen clients at once, alternating models and clips: every answer is its model's own."""
    settings = ServeSettings(batching=BatchSettings(window_ms=50, max_batch=8))
    app = create_app(pool, settings)
    names = ["short", "other", "long"]
    reference = {
        (model, name): expected(saved[i], clips[name])
        for i, model in enumerate("ab")
        for name in names
    }
    jobs = [("ab"[i % 2], names[i % 3]) for i in range(24)]
    with running(app) as url, httpx.Client(base_url=url, timeout=30) as http:

        def ask(job: tuple[str, str]) -> dict:
            model, name = job
            response = http.post(f"/v1/predict?model={model}", content=clips[name].read_bytes())
            assert response.status_code == 200, response.text
            return response.json()

        with ThreadPoolExecutor(16) as threads:
            answers = list(threads.map(ask, jobs))
    for (model, name), answer in zip(jobs, answers, strict=True):
        assert answer["model"] == model
        assert_same(answer["prediction"], reference[model, name])
    assert app.state.batcher.batches_run < len(jobs)  # requests were batched together


def test_batched_answers_equal_single_ones(pool: ModelPool) -> None:
    """Clips of different lengths, batched and one at a time: the same probabilities."""
    clips = [voice(seconds, pitch) for seconds, pitch in [(0.5, 200), (1.7, 300), (0.9, 450)]]
    requests = [(clip, f"c{i}", Segmentation()) for i, clip in enumerate(clips)]
    batched, batches = batcher_answers(pool, BatchSettings(window_ms=20, max_batch=8), requests)
    single, runs = batcher_answers(pool, BatchSettings(max_batch=1), requests)
    assert (batches, runs) == (1, 3)
    for one, other in zip(batched, single, strict=True):
        assert one.source == other.source and one.label == other.label
        np.testing.assert_allclose(
            list(one.probabilities.values()), list(other.probabilities.values()), atol=1e-5
        )


def test_limits_answered_with_their_status(
    pool: ModelPool, clips: dict[str, Path], tmp_path: Path
) -> None:
    clip = clips["short"].read_bytes()
    settings = ServeSettings(max_upload_bytes=60_000, max_seconds=2.0)
    with local_client(create_app(pool, settings)) as client:

        def refused(status: int, **request: object) -> str:
            params = request.pop("params", {"model": "a"})
            response = client.post("/v1/predict", params=params, **request)  # type: ignore[arg-type]
            assert response.status_code == status, response.text
            return response.json()["detail"]

        oversize = b"\0" * 60_001
        assert "larger than this server's limit" in refused(413, content=oversize)
        chunked = iter([oversize[:1000], oversize[1000:]])  # no Content-Length: counted
        assert "larger than this server's limit" in refused(413, content=chunked)
        sf.write(tmp_path / "long.flac", voice(2.5), RATE)  # small file, long audio
        long_audio = (tmp_path / "long.flac").read_bytes()
        assert "2.5 s of audio; this server takes at most 2 s" in refused(413, content=long_audio)
        assert "not audio this server can decode" in refused(415, content=b"<html>hi</html>")
        assert "not audio" in refused(415, files={"file": ("x.txt", b"plain text")})
        assert "empty body" in refused(422, content=b"")
        assert "no file field named 'file'" in refused(422, files={"other": (None, b"1")})
        sf.write(tmp_path / "tiny.wav", voice(0.01), RATE)
        assert "too short" in refused(422, content=(tmp_path / "tiny.wav").read_bytes())
        assert "this server has: a, b" in refused(404, params={"model": "nope"}, content=clip)
        assert "give model=NAME" in refused(422, params={}, content=clip)
        assert refused(422, params={"model": "a", "top_k": 0}, content=clip)
        assert "hop" in refused(422, params={"model": "a", "window": 1, "hop": 3}, content=clip)
        good = client.post("/v1/predict?model=a", content=clip)  # still serving
        assert good.status_code == 200


def test_api_key(pool: ModelPool, clips: dict[str, Path]) -> None:
    with local_client(create_app(pool, ServeSettings(api_key="s3cret"))) as client:
        for headers in ({}, {"X-API-Key": "wrong"}, {"X-API-Key": "s3cret-and-more"}):
            response = client.get("/v1/models", headers=headers)
            assert response.status_code == 401
            assert "X-API-Key" in response.json()["detail"]
        response = client.post("/v1/predict?model=a", content=clips["short"].read_bytes())
        assert response.status_code == 401
        assert client.get("/v1/models", headers={"X-API-Key": "s3cret"}).status_code == 200


@pytest.fixture()
def gated(pool: ModelPool) -> Iterator[tuple[ModelPool, threading.Event, threading.Event]]:
    """Model ``a`` of ``pool`` held at its first layer until ``release`` is set."""
    model = pool.get("a").model
    started, release = threading.Event(), threading.Event()

    def hold(*_: object) -> None:
        started.set()
        assert release.wait(20)

    handle = model.register_forward_pre_hook(hold)
    try:
        yield pool, started, release
    finally:
        release.set()
        handle.remove()


def test_full_queue_and_timeout(
    gated: tuple[ModelPool, threading.Event, threading.Event], clips: dict[str, Path]
) -> None:
    pool, started, release = gated
    clip = clips["short"].read_bytes()
    settings = ServeSettings(timeout=1.0, batching=BatchSettings(max_batch=1, max_queue=1))
    app = create_app(pool, settings)
    with running(app) as url, httpx.Client(base_url=url, timeout=30) as http:
        with ThreadPoolExecutor(2) as threads:
            running_one = threads.submit(http.post, "/v1/predict?model=a", content=clip)
            assert started.wait(10)
            waiting = threads.submit(http.post, "/v1/predict?model=b", content=clip)
            deadline = time.monotonic() + 10
            while app.state.batcher.waiting < 1 and time.monotonic() < deadline:
                time.sleep(0.01)
            full = http.post("/v1/predict?model=b", content=clip)
            assert full.status_code == 503
            assert full.headers["Retry-After"] == "1"
            assert "already waiting" in full.json()["detail"]
            assert running_one.result().status_code == 504
            assert "no answer within 1 s" in running_one.result().json()["detail"]
            assert waiting.result().status_code == 504
            release.set()
        assert http.post("/v1/predict?model=b", content=clip).status_code == 200


def test_model_specs() -> None:
    assert parse_model_spec("runs/best/") == ModelSpec("best", "runs/best/")
    assert parse_model_spec("happy=runs/x") == ModelSpec("happy", "runs/x")
    with pytest.raises(ModelSpecError, match="NAME=SOURCE"):
        parse_model_spec("=x")
    with pytest.raises(ModelSpecError, match="given twice"):
        ModelPool.load([ModelSpec("a", "x"), ModelSpec("a", "y")])


def test_serve_command(saved: list[Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """``peft-ser serve`` loads the named models with the given limits, on loopback by default."""
    from typer.testing import CliRunner

    import peft_ser.serving
    from peft_ser.cli import app

    calls: list[tuple] = []
    monkeypatch.setattr(peft_ser.serving, "serve", lambda *args: calls.append(args))
    monkeypatch.setenv("PEFT_SER_API_KEY", "from-env")
    arguments = ["serve", "--model", f"x={saved[0]}", "-m", str(saved[1]), "--device", "cpu"]
    result = CliRunner().invoke(app, [*arguments, "--max-upload-mb", "2"])
    assert result.exit_code == 0, result.output
    [(served, host, port)] = calls
    assert (host, port) == ("127.0.0.1", 8000)
    assert served.state.pool.names == ["x", "m2"]
    settings = served.state.settings
    assert settings.api_key == "from-env"
    assert settings.max_upload_bytes == 2 * 2**20
    assert settings.batching.max_batch == 1  # on a CPU batching is off unless asked for
    CliRunner().invoke(app, [*arguments, "--max-batch", "4"])
    assert calls[-1][0].state.settings.batching.max_batch == 4
    missing = CliRunner().invoke(app, ["serve", "--model", str(saved[0].parent / "nope")])
    assert missing.exit_code == 2
    assert "error:" in missing.output and "nope" in missing.output
