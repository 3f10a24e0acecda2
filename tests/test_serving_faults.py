"""The server against faulty and hostile requests: stalled uploads, decoding bombs, malformed
parameters, foreign Host names, missing keys; each refused with one line and the server still
serving.

One saved tiny-whisper + LoRA model (see `_serving`), served as ``a``.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from _serving import RATE, local_client, running, save_models, voice, write_clip
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from peft_ser.config import ModelConfig
from peft_ser.models.ser_model import build_model
from peft_ser.serving import ModelPool, ModelSpec, ServeSettings, create_app
from peft_ser.serving.pool import ModelSpecError, parse_model_spec, public_source
from peft_ser.serving.security import SECURITY_HEADERS, listening_settings
from peft_ser.utils.errors import UserError

STATIC = Path(__file__).parents[1] / "src" / "peft_ser" / "serving" / "static"


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> ModelPool:
    [saved] = save_models(tmp_path_factory.mktemp("models"), seeds=(1,))
    return ModelPool.load([ModelSpec("a", str(saved))])


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return write_clip(tmp_path_factory.mktemp("clips") / "short.wav", 0.6).read_bytes()


@pytest.fixture()
def client(pool: ModelPool) -> Iterator[TestClient]:
    with local_client(create_app(pool)) as test_client:
        yield test_client


def one_line_detail(response: object, status: int) -> str:
    """The refusal's detail, checked to be one line of text with the expected status."""
    assert response.status_code == status, response.text  # type: ignore[attr-defined]
    detail = response.json()["detail"]  # type: ignore[attr-defined]
    assert isinstance(detail, str) and detail and "\n" not in detail, detail
    return detail


# Stalled uploads -----------------------------------------------------------------------------


def _stall(url: str, body: bytes, content_type: str, declared: int) -> socket.socket:
    """A connection that sent its headers and ``body``, promising ``declared`` bytes."""
    host, port = url.removeprefix("http://").split(":")
    connection = socket.create_connection((host, int(port)))
    head = (
        f"POST /v1/predict?model=a HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Content-Type: {content_type}\r\nContent-Length: {declared}\r\n\r\n"
    )
    connection.sendall(head.encode() + body)
    return connection


def _answer(connection: socket.socket, wait: float) -> tuple[int, dict, bool]:
    """Status, JSON body, and whether the server then closed the connection."""
    connection.settimeout(wait)
    received = b""
    while True:
        try:
            chunk = connection.recv(65536)
        except TimeoutError:
            return int(received.split()[1]) if received else 0, {}, False
        if not chunk:
            break
        received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body), True


def _open_files() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc (Linux)")
def test_stalled_uploads_answered_408_and_leave_no_files(pool: ModelPool, clip: bytes) -> None:
    """Twelve clients send headers and part of a body, then nothing: each is answered 408 once
    the timeout passes, its connection closed and its temporary file removed; the server then
    holds no more files than before and still answers."""
    app = create_app(pool, ServeSettings(timeout=1.5))
    boundary = "x" * 16
    form = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n'
        f"Content-Type: audio/wav\r\n\r\n"
    ).encode() + clip[:2000]
    with running(app) as url:
        before = _open_files()
        stalled = [_stall(url, clip[:2000], "audio/wav", len(clip)) for _ in range(8)]
        multipart = f"multipart/form-data; boundary={boundary}"
        stalled += [_stall(url, form, multipart, len(form) + 5000) for _ in range(4)]
        folder: Path = app.state.upload_folder
        deadline = time.monotonic() + 5
        while len(list(folder.iterdir())) < 8 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(list(folder.iterdir())) == 8  # the raw bodies were being stored
        answers = [_answer(connection, 10) for connection in stalled]
        for connection in stalled:
            connection.close()
        for status, body, closed in answers:
            assert (status, closed) == (408, True)
            assert body == {"detail": "the request body did not arrive within 1.5 s"}
        assert list(folder.iterdir()) == []
        time.sleep(0.2)
        assert _open_files() <= before + 1
        import httpx

        answered = httpx.post(f"{url}/v1/predict?model=a", content=clip, timeout=30)
        assert answered.status_code == 200


# Limits on decoding and on the work of one request ---------------------------------------------


def test_decoded_sample_budget_refuses_high_rate_many_channel_audio(
    pool: ModelPool, tmp_path: Path
) -> None:
    """A small FLAC within the duration limit but of 192 kHz × 8 channels is refused from its
    header (413), before decoding; the same seconds at 16 kHz mono pass."""
    dense, plain = tmp_path / "dense.flac", tmp_path / "plain.flac"
    sf.write(dense, np.zeros((192_000 * 2, 8), dtype=np.float32), 192_000)
    sf.write(plain, voice(2.0), RATE)
    assert dense.stat().st_size < 100_000
    settings = ServeSettings(max_seconds=10, max_decoded_samples=1_000_000)
    with local_client(create_app(pool, settings)) as client:
        refused = client.post("/v1/predict?model=a", content=dense.read_bytes())
        assert one_line_detail(refused, 413) == (
            "upload: 3072000 samples to decode (192000 Hz × 8 channels × 2.0 s); this server "
            "decodes at most 1000000 per recording"
        )
        assert client.post("/v1/predict?model=a", content=plain.read_bytes()).status_code == 200
    default = ServeSettings()
    assert default.decoded_sample_budget == 600 * 48_000 * 2  # 10 minutes of 48 kHz stereo
    assert default.decoded_sample_budget < 120 * 192_000 * 8  # the 189-kB FLAC


@pytest.mark.parametrize(
    ("query", "problem"),
    [
        ("window=inf", "window must be a finite number of seconds; got inf"),
        ("window=nan", "window must be a finite number of seconds; got nan"),
        ("hop=-inf&window=1", "hop must be a finite number of seconds; got -inf"),
        ("window=1e400", "window must be a finite number of seconds; got inf"),
        (
            "window=abc",
            "query parameter window: input should be a valid number, unable to parse string as "
            "a number (got 'abc')",
        ),
        ("top_k=0", "query parameter top_k: input should be greater than or equal to 1 (got '0')"),
        (
            "top_k=1.5",
            "query parameter top_k: input should be a valid integer, unable to parse string as "
            "an integer (got '1.5')",
        ),
        (
            "top_k=x&window=y",
            "query parameter window: input should be a valid number, unable to "
            "parse string as a number (got 'y'); query parameter top_k: input should be a valid "
            "integer, unable to parse string as an integer (got 'x')",
        ),
    ],
)
def test_malformed_parameters_refused_with_one_line(
    client: TestClient, clip: bytes, query: str, problem: str
) -> None:
    """Malformed or non-finite parameters: 422 with one line (the segment checks' message, or
    the parameter named for a value that is no number at all), before the body is read."""
    response = client.post(f"/v1/predict?model=a&{query}", content=clip)
    assert one_line_detail(response, 422) == problem


@pytest.mark.parametrize(
    "query",
    [
        "window=0.00001",
        "window=0.001",
        "window=0.0000625&hop=0.0000625",  # a window per sample
        "window=0.5&hop=0.0000001",
    ],
)
def test_windows_too_small_or_too_many_refused_with_one_line(
    client: TestClient, clip: bytes, query: str
) -> None:
    """Windows far below one analysis frame, or so many that one request would hold the queue:
    422 with one line (from the segment checks or the server's bound), never 500."""
    one_line_detail(client.post(f"/v1/predict?model=a&{query}", content=clip), 422)
    assert client.post("/v1/predict?model=a", content=clip).status_code == 200


def test_segments_per_request_bounded(pool: ModelPool) -> None:
    clip = voice(3.0)
    with local_client(create_app(pool, ServeSettings(max_segments=10))) as client:
        body = _wav_bytes(clip)
        refused = client.post("/v1/predict?model=a&window=0.5&hop=0.25", content=body)
        assert one_line_detail(refused, 422) == (
            "upload: would be cut into 11 segments, more than the limit of 10 (max_segments); "
            "use a longer window or hop, or raise max_segments"
        )
        assert client.post("/v1/predict?model=a&window=1&hop=0.5", content=body).status_code == 200
        assert app_waiting(client) == 0  # the refused request never queued


def app_waiting(client: TestClient) -> int:
    return int(client.get("/healthz").json()["waiting"])


def _wav_bytes(samples: np.ndarray) -> bytes:
    import io

    buffer = io.BytesIO()
    sf.write(buffer, samples, RATE, format="WAV")
    return buffer.getvalue()


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    st.dictionaries(
        st.sampled_from(["segment", "window", "hop", "min_segment", "max_segment", "top_k"]),
        st.one_of(
            st.floats(allow_nan=True, allow_infinity=True).map(repr),
            st.floats(min_value=1e-9, max_value=100).map(str),
            st.integers(-5, 10**12).map(str),
            st.sampled_from(["inf", "-inf", "nan", "", "1e309", "0x10", "window", "vad", "whole"]),
            st.text(max_size=12),
        ),
        max_size=4,
    )
)
def test_any_segment_options_never_give_a_server_error(
    pool: ModelPool, clip: bytes, query: dict[str, str]
) -> None:
    """Whatever the segment options, the answer is 200 or a one-line 4xx, never a 500."""
    with local_client(create_app(pool, ServeSettings(max_segments=40))) as client:
        response = client.post("/v1/predict", params={"model": "a", **query}, content=clip)
    if response.status_code != 200:
        assert 400 <= response.status_code < 500, (query, response.text)
        one_line_detail(response, response.status_code)


# Keys, hosts and headers ---------------------------------------------------------------------


def test_every_route_but_liveness_needs_the_key(pool: ModelPool, clip: bytes) -> None:
    with local_client(create_app(pool, ServeSettings(api_key="s3cret"))) as client:
        routes = ["/", "/static/app.js", "/static/style.css", "/openapi.json", "/healthz"]
        routes += ["/v1/models", "/docs", "/redoc", "/nowhere"]
        for route in routes:
            refused = client.get(route)
            assert "missing or wrong API key" in one_line_detail(refused, 401), route
            assert refused.headers["WWW-Authenticate"].startswith("Basic")
        assert one_line_detail(client.post("/v1/predict?model=a", content=clip), 401)
        assert client.get("/livez").json() == {"status": "ok"}  # names no model
        keyed = {"X-API-Key": "s3cret"}
        basic = {"Authorization": "Basic " + base64.b64encode(b"anyone:s3cret").decode()}
        for headers in (keyed, basic):
            for route in routes[:6]:
                assert client.get(route, headers=headers).status_code == 200, route
        wrong = {"Authorization": "Basic " + base64.b64encode(b"s3cret:wrong").decode()}
        assert client.get("/v1/models", headers=wrong).status_code == 401


def test_empty_key_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="API key is empty"):
        ServeSettings(api_key="  ")
    from typer.testing import CliRunner

    from peft_ser.cli import app

    monkeypatch.setenv("PEFT_SER_API_KEY", "")
    result = CliRunner().invoke(app, ["serve", "--model", str(tmp_path / "nope")])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        "error: the API key is empty (--api-key or PEFT_SER_API_KEY): give a key, or unset it "
        "to serve without one"
    ]


def test_foreign_host_refused(pool: ModelPool) -> None:
    """DNS rebinding: a page of another site reaches the loopback server under its own name."""
    with TestClient(create_app(pool), base_url="http://attacker.example:8000") as client:
        refused = client.get("/v1/models")
        assert one_line_detail(refused, 400) == (
            "Host 'attacker.example' is not a name this server answers to; if it is this "
            "server's, start it with --allowed-host attacker.example"
        )
        assert one_line_detail(client.get("/livez"), 400)
        for host in ("localhost:8000", "LOCALHOST.", "127.0.0.1", "[::1]:8000", "::1"):
            assert client.get("/livez", headers={"Host": host}).status_code == 200, host
    extra = ServeSettings(allowed_hosts=("localhost", "ser.example.org"))
    with TestClient(create_app(pool, extra), base_url="http://ser.example.org") as client:
        assert client.get("/v1/models").status_code == 200
        assert client.get("/livez", headers={"Host": "127.0.0.1"}).status_code == 400
    with TestClient(create_app(pool, ServeSettings(allowed_hosts=("*",)))) as client:
        assert client.get("/v1/models").status_code == 200


def test_security_headers_on_every_answer(pool: ModelPool, clip: bytes) -> None:
    with local_client(create_app(pool, ServeSettings(max_upload_bytes=100))) as client:
        answers = [
            client.get("/"),
            client.get("/static/app.js"),
            client.get("/v1/models"),
            client.get("/nowhere"),
            client.post("/v1/predict?model=a", content=clip),  # 413
            client.get("/livez", headers={"Host": "evil.example"}),  # 400
        ]
    assert [answer.status_code for answer in answers] == [200, 200, 200, 404, 413, 400]
    for answer in answers:
        for name, value in SECURITY_HEADERS.items():
            assert answer.headers[name] == value, (answer.url, name)
    assert "default-src 'self'" in SECURITY_HEADERS["Content-Security-Policy"]


def test_page_runs_under_its_policy() -> None:
    """The CSP allows no inline script or style and nothing from elsewhere, so the page has
    none: scripts and styles are files of its own origin; no inline handlers or style
    attributes, no HTML injected from strings, no eval."""
    page = (STATIC / "index.html").read_text()
    script = (STATIC / "app.js").read_text()
    assert "<style" not in page and " style=" not in page
    scripts = page.count("<script")
    assert scripts == page.count('<script src="/static/') == 1
    assert "http:" not in page and "https:" not in page and "//cdn" not in page
    assert not any(f" on{event}=" in page for event in ("click", "load", "change", "submit"))
    for forbidden in ("innerHTML", "outerHTML", "eval(", "new Function", 'setAttribute("style"'):
        assert forbidden not in script, forbidden


def test_listening_beyond_localhost_without_key_warns(
    pool: ModelPool, caplog: pytest.LogCaptureFixture
) -> None:
    base = ServeSettings()
    with caplog.at_level(logging.WARNING, logger="peft_ser.serving"):
        local = listening_settings(base, "127.0.0.1")
        assert not caplog.records
        exposed = listening_settings(base, "192.0.2.7")
        assert "listening on 192.0.2.7 without an API key" in caplog.text
        assert "192.0.2.7" in exposed.allowed_hosts  # the bound address is a Host
        caplog.clear()
        keyed = listening_settings(ServeSettings(api_key="k"), "0.0.0.0")
        assert "without an API key" not in caplog.text
        assert "add --allowed-host NAME" in caplog.text
    assert local.allowed_hosts == base.allowed_hosts
    assert keyed.allowed_hosts == base.allowed_hosts  # every address is no name


# Model specs and what answers show -------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("=runs/x", "no name before '='"),
        ("name=", "no source after 'name='"),
        ("name=  ", "no source after 'name='"),
        ("a b=runs/x", "name 'a b' may hold only letters"),
        ("", "empty"),
        ("/", "no folder name"),
    ],
)
def test_malformed_model_specs(text: str, problem: str) -> None:
    with pytest.raises(ModelSpecError, match=problem):
        parse_model_spec(text)


def test_model_specs_with_equals_in_sources() -> None:
    assert parse_model_spec("a=b=c") == ModelSpec("a", "b=c")
    assert parse_model_spec("runs/lr=0.1/best") == ModelSpec("best", "runs/lr=0.1/best")


def test_malformed_model_spec_exits_2_with_one_line() -> None:
    from typer.testing import CliRunner

    from peft_ser.cli import app

    for text, problem in (("=X", "no name before '='"), ("name=", "no source after 'name='")):
        result = CliRunner().invoke(app, ["serve", "--model", text])
        assert result.exit_code == 2
        [line] = result.output.strip().splitlines()
        assert line.startswith(f"error: --model {text!r}: {problem}")
    twice = CliRunner().invoke(app, ["serve", "-m", "a=x", "-m", "a=y"])
    assert twice.exit_code == 2 and "given twice" in twice.output


def test_answers_show_no_local_paths(tmp_path: Path) -> None:
    """A model on a local backbone folder: /v1/models names the folder, not its path."""
    from transformers import WhisperModel

    tiny = build_model(ModelConfig(backbone="tiny-whisper", method="lora"))
    folder = tmp_path / "secret-place" / "mybackbone"
    WhisperModel(tiny.backbone.model.config).save_pretrained(folder)
    saved = build_model(ModelConfig(backbone=str(folder), method="lora")).save(tmp_path / "m")
    pool = ModelPool.load([ModelSpec("m", str(saved))])
    with local_client(create_app(pool)) as client:
        answer = client.get("/v1/models")
    assert answer.json()["models"][0]["backbone"] == "mybackbone"
    assert str(tmp_path) not in answer.text and "secret-place" not in answer.text
    assert public_source("microsoft/wavlm-base-plus") == "microsoft/wavlm-base-plus"
    assert public_source("~/models/wavlm") == "wavlm"
    assert public_source("C:\\models\\wavlm") == "wavlm"


def test_unexpected_error_is_one_line_without_traceback(
    pool: ModelPool, clip: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug is a 500 naming only the exception's type (the traceback stays in the log), with
    the security headers although Starlette answers it outside the middlewares."""

    def broken(name: str) -> None:
        raise RuntimeError("/secret/path/in/a/message")

    app = create_app(pool)
    monkeypatch.setattr(pool, "get", broken)
    with TestClient(app, base_url="http://localhost", raise_server_exceptions=False) as client:
        response = client.post("/v1/predict?model=a", content=clip)
    assert one_line_detail(response, 500) == (
        "internal error (RuntimeError); the server's log has the details"
    )
    assert response.headers["X-Frame-Options"] == "DENY"
