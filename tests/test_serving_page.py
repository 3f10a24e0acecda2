"""The page at ``/`` in a real headless Chromium: upload a clip, see the API's answer as bars.

Needs Chromium and its driver (Debian: ``apt-get install chromium chromium-driver``) and
selenium; without them the test is skipped with the reason.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from _serving import running, save_models, write_clip

from peft_ser.demo.synthetic import espeak_available, write_long_recording
from peft_ser.serving import ModelPool, ModelSpec, ServeSettings, create_app

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.browser,
    pytest.mark.skipif(
        CHROMIUM is None or CHROMEDRIVER is None,
        reason="no chromium / chromedriver on PATH (apt-get install chromium chromium-driver)",
    ),
]


@contextmanager
def chromium(*extra: str) -> Iterator[Any]:
    """A headless Chromium that keeps the page's console messages (CSP violations among them),
    with ``extra`` command-line switches."""
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(argument)
    for argument in extra:
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()


def policy_violations(driver: Any) -> list[str]:
    messages = [entry["message"] for entry in driver.get_log("browser")]
    return [message for message in messages if "Content Security Policy" in message]


def test_upload_shows_the_api_answer(tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    saved = save_models(tmp_path / "models")
    pool = ModelPool.load([ModelSpec("a", str(saved[0])), ModelSpec("b", str(saved[1]))])
    clip = write_clip(tmp_path / "long.wav", 2.5, pitch=330.0)
    with running(create_app(pool)) as url, chromium() as driver:
        params = {"model": "b", "window": 1.0}
        expected = httpx.post(f"{url}/v1/predict", params=params, content=clip.read_bytes())
        answer = expected.json()["prediction"]
        driver.set_window_size(1000, 800)
        driver.get(url)
        wait = WebDriverWait(driver, 20)
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#model option")) == 2)
        Select(driver.find_element(By.ID, "model")).select_by_value("b")
        driver.find_element(By.ID, "window").send_keys("1")
        driver.find_element(By.ID, "file").send_keys(str(clip))
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#bars .bar")) > 0)
        assert driver.find_element(By.ID, "label").text == answer["label"]
        bars = driver.find_elements(By.CSS_SELECTOR, "#bars .bar")
        assert [bar.get_attribute("data-label") for bar in bars] == list(answer["probabilities"])
        shown = [float(bar.find_element(By.CLASS_NAME, "value").text) for bar in bars]
        assert shown == pytest.approx(list(answer["probabilities"].values()), abs=5e-4)
        segments = driver.find_elements(By.CSS_SELECTOR, "#timeline div")
        assert [s.get_attribute("data-label") for s in segments] == [
            window["label"] for window in answer["windows"]
        ]
        driver.save_screenshot(str(tmp_path / "page.png"))
        if espeak_available():  # speech segments, drawn at their times
            talk = tmp_path / "talk.wav"
            write_long_recording(talk, 8)
            params = {"model": "b", "segment": "vad"}
            vad = httpx.post(f"{url}/v1/predict", params=params, content=talk.read_bytes())
            speech = vad.json()["prediction"]
            Select(driver.find_element(By.ID, "segment")).select_by_value("vad")
            assert not driver.find_element(By.ID, "window").is_displayed()
            driver.find_element(By.ID, "file").send_keys(str(talk))
            wait.until(lambda d: d.find_element(By.ID, "source").text == "talk.wav")
            segments = driver.find_elements(By.CSS_SELECTOR, "#timeline div")
            assert len(segments) == len(speech["windows"]) >= 2
            assert driver.find_element(By.ID, "timeline-title").text == "Speech segments"
            timeline = driver.find_element(By.ID, "timeline")
            scale = timeline.size["width"] / speech["duration"]  # pixels per second
            for shown, window in zip(segments, speech["windows"], strict=True):
                assert shown.get_attribute("data-label") == window["label"]
                left = shown.location["x"] - timeline.location["x"]
                assert left == pytest.approx(window["start"] * scale, abs=1.5)
                width = (window["end"] - window["start"]) * scale
                assert shown.size["width"] == pytest.approx(width, abs=1.5)
            driver.save_screenshot(str(tmp_path / "speech.png"))
        assert policy_violations(driver) == []  # the page runs under the server's CSP
    assert (tmp_path / "page.png").stat().st_size > 0


def test_page_behind_an_api_key(tmp_path: Path) -> None:
    """With a key set, the page is opened with it as the HTTP Basic password (what a browser
    sends after asking for it); its requests to the API then carry it too."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    [saved] = save_models(tmp_path / "models", seeds=(1,))
    pool = ModelPool.load([ModelSpec("a", str(saved))])
    clip = write_clip(tmp_path / "clip.wav", 1.0)
    settings = ServeSettings(api_key="s3cret")
    with running(create_app(pool, settings)) as url, chromium() as driver:
        assert httpx.get(f"{url}/").status_code == 401
        driver.get(url.replace("http://", "http://anyone:s3cret@") + "/")
        wait = WebDriverWait(driver, 20)
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#model option")) == 1)
        driver.find_element(By.ID, "file").send_keys(str(clip))
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#bars .bar")) > 0)
        assert driver.find_element(By.ID, "source").text == "clip.wav"
        assert policy_violations(driver) == []


def test_live_mode_streams_a_fake_microphone(tmp_path: Path) -> None:
    """Live: Chromium's fake microphone (a beep) streamed over ``/v1/stream``; the timeline
    grows window by window while it listens, and Stop ends the stream with its count."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    [saved] = save_models(tmp_path / "models", seeds=(1,))
    pool = ModelPool.load([ModelSpec("a", str(saved))])
    fake_microphone = ("--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream")
    with running(create_app(pool)) as url, chromium(*fake_microphone) as driver:
        driver.get(url)
        wait = WebDriverWait(driver, 30)
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#model option")) == 1)
        driver.find_element(By.ID, "window").send_keys("1")
        driver.find_element(By.ID, "live").click()
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#timeline div")) >= 3)
        segments = driver.find_elements(By.CSS_SELECTOR, "#timeline div")
        starts = [float(s.get_attribute("data-start")) for s in segments]
        assert starts[:3] == [0.0, 0.5, 1.0]  # 1-s windows every 0.5 s, in order
        assert driver.find_element(By.ID, "source").text == "microphone"
        driver.find_element(By.ID, "live").click()
        wait.until(lambda d: d.find_element(By.ID, "status").text.startswith("Live: "))
        assert driver.find_element(By.ID, "live").text == "Live"
        driver.save_screenshot(str(tmp_path / "live.png"))
        assert policy_violations(driver) == []
    assert (tmp_path / "live.png").stat().st_size > 0


def test_the_page_colours_labels_by_name_marks_times_and_clears_a_stale_answer(
    tmp_path: Path,
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from peft_ser.inference.palette import palette

    [saved] = save_models(tmp_path / "models", seeds=(1,))
    pool = ModelPool.load([ModelSpec("a", str(saved))])
    clip = write_clip(tmp_path / "long.wav", 12.0, pitch=330.0)
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF not audio")
    with running(create_app(pool)) as url, chromium() as driver:
        colours = httpx.get(f"{url}/v1/models").json()["models"][0]["colours"]
        assert colours == palette(pool.get("a").labels)
        driver.set_window_size(1000, 800)
        driver.get(url)
        wait = WebDriverWait(driver, 20)
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#model option")) == 1)
        driver.find_element(By.ID, "window").send_keys("2")
        driver.find_element(By.ID, "file").send_keys(str(clip))
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#bars .bar")) > 0)
        css = "return getComputedStyle(arguments[0]).backgroundColor"
        for bar in driver.find_elements(By.CSS_SELECTOR, "#bars .bar"):
            fill = bar.find_element(By.CLASS_NAME, "fill")
            assert driver.execute_script(css, fill) == _rgb(
                colours[bar.get_attribute("data-label")]
            )
        segments = driver.find_elements(By.CSS_SELECTOR, "#timeline div")
        keys = driver.find_elements(By.CSS_SELECTOR, "#legend span")
        assert {key.get_attribute("data-label") for key in keys} == {
            segment.get_attribute("data-label") for segment in segments
        }
        marks = [span.text for span in driver.find_elements(By.CSS_SELECTOR, "#times span")]
        assert marks == ["0 s", "2 s", "4 s", "6 s", "8 s", "10 s", "12 s"]
        driver.save_screenshot(str(tmp_path / "page.png"))
        driver.find_element(By.ID, "file").send_keys(str(broken))
        wait.until(lambda d: d.find_element(By.ID, "status").get_attribute("class") == "error")
        assert not driver.find_element(By.ID, "result").is_displayed()
        assert policy_violations(driver) == []


def _rgb(colour: str) -> str:
    red, green, blue = (int(colour[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgb({red}, {green}, {blue})"
