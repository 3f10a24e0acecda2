"""``/v1/stream``: emotion over a WebSocket, one message per window, equal to `predict`'s windows.

Models are the two saved tiny-whisper + LoRA models of `_serving`; the expected windows come
from `peft_ser.predict` on the same served model with ``segment="window"`` and the same window
and hop on the same audio.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from _serving import assert_same_windows, local_client, running, two_model_pool, voice
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.websockets import WebSocketDisconnect

import peft_ser
from peft_ser.inference.segments import segment_plan, window_spans
from peft_ser.serving import ModelPool, ServeSettings, create_app
from peft_ser.serving.stream import MAX_FRAME_BYTES, WindowCutter
from peft_ser.utils.errors import InvalidRequestError

RATE = 16000
LOCAL = {"host": "localhost"}
"""The test client's WebSockets say ``Host: testserver``, which is not an allowed host."""


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> ModelPool:
    return two_model_pool(tmp_path_factory.mktemp("models"))


@pytest.fixture()
def client(pool: ModelPool) -> Iterator[TestClient]:
    with local_client(create_app(pool)) as test_client:
        yield test_client


def audio() -> np.ndarray:
    """Eight seconds whose pitch changes every two seconds, so windows get different answers."""
    return np.concatenate([voice(2.0, pitch) for pitch in (220.0, 520.0, 330.0, 700.0)])


def streamed(client: TestClient, url: str, samples: np.ndarray, frame: float) -> list[dict]:
    """The messages answering ``samples`` sent in frames of ``frame`` seconds, then the end."""
    step = round(frame * RATE)
    with client.websocket_connect(url, headers=LOCAL) as socket:
        for start in range(0, len(samples), step):
            socket.send_bytes(samples[start : start + step].astype("<f4").tobytes())
        socket.send_json({"event": "end"})
        messages = []
        while not messages or messages[-1].get("event") != "end":
            messages.append(socket.receive_json())
    return messages


def test_windows_equal_predict_over_the_same_audio(client: TestClient, pool: ModelPool) -> None:
    samples = audio()
    messages = streamed(client, "/v1/stream?model=b&window=1.5&hop=0.5", samples, 0.25)
    *windows, end = messages
    [reference] = peft_ser.predict((samples, RATE), model=pool.get("b").runner, window=1.5, hop=0.5)
    assert end == {"event": "end", "windows": len(reference.windows), "seconds": 8.0}
    spread = np.ptp([list(window["probabilities"].values()) for window in windows], axis=0)
    assert spread.max() > 1e-3  # the answers change along the stream, by far more than atol
    assert_same_windows(windows, reference)


def test_a_stream_shorter_than_a_window_is_one_segment(client: TestClient, pool: ModelPool) -> None:
    samples = voice(0.8)
    *windows, end = streamed(client, "/v1/stream?model=a&window=2", samples, 0.3)
    [reference] = peft_ser.predict((samples, RATE), model=pool.get("a").runner, window=2.0)
    assert end["windows"] == 1
    [window] = windows
    assert (window["start"], window["end"], window["label"]) == (0.0, 0.8, reference.label)


@settings(max_examples=200, deadline=None)
@given(
    length=st.integers(1, 40 * RATE // 10),
    frame=st.integers(1, RATE),
    window=st.sampled_from([0.5, 1.0, 1.5]),
    hop_share=st.sampled_from([0.25, 0.5, 1.0]),
)
def test_the_cutter_gives_the_spans_of_the_whole_recording(
    length: int, frame: int, window: float, hop_share: float
) -> None:
    """Whatever the frame size, streamed windows are `window_spans` of the whole stream, each
    once and in order, with the samples of that span."""
    plan = segment_plan("window", window=window, hop=window * hop_share)
    samples = np.arange(length, dtype=np.float32)
    cutter = WindowCutter(plan)
    cut = []
    for start in range(0, length, frame):
        cut += cutter.feed(samples[start : start + frame])
        assert len(cutter._kept) <= plan.whole + plan.window + frame  # bounded memory
    cut += cutter.finish()
    assert [span for span, _ in cut] == window_spans(length, plan.whole, plan.window, plan.hop)
    for (start, end), values in cut:
        np.testing.assert_array_equal(values, samples[start:end])


@pytest.mark.parametrize(
    ("url", "frames", "error"),
    [
        ("/v1/stream?model=nope", [], "unknown model 'nope'"),
        ("/v1/stream", [], "give model=NAME; this server has: a, b"),
        ("/v1/stream?model=a&window=abc", [], "window must be a number of seconds; got 'abc'"),
        ("/v1/stream?model=a&window=0", [], "window must be above 0 seconds; got 0.0"),
        ("/v1/stream?model=a&window=2&hop=3", [], "need 0 < hop <= window"),
        ("/v1/stream?model=a&window=nan", [], "window must be a finite number of seconds"),
        ("/v1/stream?model=a", [b"\x00\x00\x80"], "4 bytes each); got 3 bytes"),
        (
            "/v1/stream?model=a",
            [np.array([0.1, np.nan], "<f4").tobytes()],
            "a frame holds NaN or infinite samples",
        ),
        ("/v1/stream?model=a", ["hello"], 'text frames may only be {"event": "end"}'),
        ("/v1/stream?model=a", [b"\x00" * (MAX_FRAME_BYTES + 4)], "a frame may hold at most"),
    ],
)
def test_refusals_are_one_message_and_a_policy_close(
    client: TestClient, url: str, frames: list, error: str
) -> None:
    with client.websocket_connect(url, headers=LOCAL) as socket:
        for frame in frames:
            if isinstance(frame, bytes):
                socket.send_bytes(frame)
            else:
                socket.send_text(frame)
        message = socket.receive_json()
        assert error in message["error"]
        with pytest.raises(WebSocketDisconnect) as closed:
            socket.receive_json()
    assert closed.value.code == 1008


def test_a_stream_past_max_seconds_is_closed(pool: ModelPool) -> None:
    app = create_app(pool, ServeSettings(max_seconds=1.0))
    with (
        local_client(app) as client,
        client.websocket_connect("/v1/stream?model=a", headers=LOCAL) as socket,
    ):
        socket.send_bytes(np.zeros(RATE + 1, "<f4").tobytes())
        assert socket.receive_json() == {"error": "a stream may last at most 1 s"}


def refused(client: TestClient, headers: dict[str, str]) -> bool:
    """Whether the stream's handshake is refused with these headers."""
    try:
        with client.websocket_connect("/v1/stream?model=a", headers=headers) as socket:
            socket.send_json({"event": "end"})
            assert socket.receive_json() == {"event": "end", "windows": 0, "seconds": 0.0}
    except WebSocketDisconnect as closed:
        assert closed.code == 1008
        return True
    return False


def test_the_key_host_and_origin_are_checked_before_the_stream_opens(pool: ModelPool) -> None:
    with local_client(create_app(pool, ServeSettings(api_key="k" * 24))) as client:
        key = {**LOCAL, "x-api-key": "k" * 24}
        assert not refused(client, key)
        assert not refused(client, {**key, "origin": "http://localhost:8000"})
        assert refused(client, LOCAL)  # no key
        assert refused(client, {**LOCAL, "x-api-key": "wrong"})
        assert refused(client, {**key, "host": "evil.example"})
        assert refused(client, {**key, "origin": "https://evil.example"})
        assert refused(client, {**key, "origin": "null"})


def test_a_real_server_streams_through_a_websocket_client(pool: ModelPool) -> None:
    """Through uvicorn and the ``websockets`` client, as a deployment runs it."""
    from websockets.sync.client import connect

    samples = audio()[: 3 * RATE]
    with running(create_app(pool)) as base:
        url = base.replace("http://", "ws://") + "/v1/stream?model=a&window=1&hop=1"
        with connect(url) as socket:
            for start in range(0, len(samples), RATE // 4):
                socket.send(samples[start : start + RATE // 4].astype("<f4").tobytes())
            socket.send(json.dumps({"event": "end"}))
            messages = [json.loads(message) for message in socket]
    assert [(m["start"], m["end"]) for m in messages[:-1]] == [(0.0, 1.0), (1.0, 2.0), (2.0, 3.0)]
    assert messages[-1] == {"event": "end", "windows": 3, "seconds": 3.0}


def test_the_client_streams_a_file_and_raises_refusals(pool: ModelPool, tmp_path: Path) -> None:
    from peft_ser.serving.client import stream_file, stream_url

    path = tmp_path / "clip.wav"
    sf.write(path, audio()[: 3 * RATE], RATE)
    with running(create_app(pool)) as base:
        *windows, end = stream_file(base, path, model="a", window=1, hop=1)
        assert [(w["start"], w["end"]) for w in windows] == [(0.0, 1.0), (1.0, 2.0), (2.0, 3.0)]
        assert end == {"event": "end", "windows": 3, "seconds": 3.0}
        with pytest.raises(InvalidRequestError, match="refused the stream: unknown model 'z'"):
            list(stream_file(base, path, model="z"))
    assert stream_url("http://h:1", "a", 2.0) == "ws://h:1/v1/stream?model=a&window=2.0"
    with pytest.raises(InvalidRequestError, match="give ws://host:port"):
        stream_url("h:1")


def test_the_client_needs_no_torch() -> None:
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import peft_ser.serving.client\n"
        "assert not any(name.startswith(('transformers', 'fastapi')) for name in sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
