"""A WebVTT file from ``isoscribe transcribe --format vtt`` plays as a track of Chromium's ``<video>``: the
track's cue becomes active and is drawn over the picture. A screenshot of the cue is saved (the README's
picture, docs/subtitles-vtt-cue.png, is one of them). Chromium and chromedriver come from Debian."""

from __future__ import annotations

import functools
import shutil
import subprocess
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from asr_helpers import run_cli
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait
from subtitle_checks import vtt_captions

pytestmark = pytest.mark.slow

CHROMEDRIVER = Path("/usr/bin/chromedriver")
PAGE = """<!doctype html>
<html><body style="margin:0;background:#000">
<video id="player" width="640" height="360" muted preload="auto" src="jfk.webm">
  <track default kind="subtitles" srclang="en" label="English" src="jfk.vtt">
</video>
</body></html>
"""
BRIGHT = 200
"""A gray level only cue text reaches on the dark picture (its gray is about 40)."""


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Iterator[tuple[str, Path]]:
    """JFK's speech as a dark 640×360 WebM, its VTT from the real model (diarized: a voice tag), the page,
    served over HTTP from one folder (a track must come from the page's origin)."""
    folder = tmp_path_factory.mktemp("vtt-site")
    jfk = shared_data / "jfk" / "jfk.wav"
    result = run_cli("transcribe", str(jfk), "--diarize", "--format", "vtt", "--out", str(folder / "jfk.vtt"), cwd=folder)
    assert result.returncode == 0, result.stderr
    subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "color=c=0x1e2a38:s=640x360:r=10", "-i", str(jfk), "-shortest",
         "-c:v", "libvpx", "-b:v", "100k", "-c:a", "libopus", str(folder / "jfk.webm")],
        check=True,
    )
    (folder / "index.html").write_text(PAGE)
    handler = functools.partial(_Handler, directory=str(folder))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/index.html", folder
    finally:
        server.shutdown()
        server.server_close()


class _Handler(SimpleHTTPRequestHandler):
    extensions_map = {**SimpleHTTPRequestHandler.extensions_map, ".vtt": "text/vtt", ".webm": "video/webm"}

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def browser() -> Iterator[webdriver.Chrome]:
    if not CHROMEDRIVER.exists() or shutil.which("chromium") is None:
        pytest.fail("chromium and chromium-driver are not installed (bash scripts/setup.sh installs them)")
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--autoplay-policy=no-user-gesture-required",
                     "--hide-scrollbars"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride", {"width": 640, "height": 360, "deviceScaleFactor": 1, "mobile": False}
    )
    try:
        yield driver
    finally:
        driver.quit()


def test_a_vtt_track_plays_in_chromium_and_its_cue_is_drawn(
    site: tuple[str, Path], browser: webdriver.Chrome, tmp_path: Path
) -> None:
    url, folder = site
    captions = vtt_captions((folder / "jfk.vtt").read_text())
    assert captions[0].voice == "SPEAKER_00", captions[0].raw_text
    browser.get(url)
    video = browser.find_element(By.ID, "player")
    browser.execute_script("arguments[0].play()", video)
    WebDriverWait(browser, 60).until(
        lambda driver: driver.execute_script(
            "const v = arguments[0], c = v.textTracks[0].activeCues; return v.currentTime >= 1 && c && c.length > 0", video
        )
    )
    browser.execute_script("arguments[0].pause()", video)
    track = browser.execute_script(
        "const t = arguments[0].textTracks[0]; return {mode: t.mode, text: t.activeCues[0].text, time: arguments[0].currentTime}",
        video,
    )
    due = [c.raw_text for c in captions if c.start_in_seconds <= track["time"] < c.end_in_seconds + 0.001]
    assert track["mode"] == "showing" and track["text"] in due, (track, due)
    shown = _bright_pixels(_element_png(browser, video, tmp_path / "vtt-cue.png"))
    browser.execute_script("arguments[0].textTracks[0].mode = 'hidden'", video)
    hidden = _bright_pixels(_element_png(browser, video, tmp_path / "no-cue.png"))
    assert hidden < 50 and shown >= 1000, (shown, hidden)
    print(f"cue {track['text']!r} at {track['time']:.2f} s: {shown} bright pixels shown, {hidden} hidden; {tmp_path / 'vtt-cue.png'}")


def _element_png(driver: webdriver.Chrome, element, path: Path) -> Path:
    driver.execute_script("return new Promise(resolve => requestAnimationFrame(() => requestAnimationFrame(resolve)))")
    assert element.screenshot(str(path))
    return path


def _bright_pixels(png: Path) -> int:
    """Pixels at least ``BRIGHT`` in gray, decoded by ffmpeg (the tests need no image library)."""
    raw = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(png), "-f", "rawvideo", "-pix_fmt", "gray", "-"], check=True, capture_output=True
    ).stdout
    return int((np.frombuffer(raw, dtype=np.uint8) >= BRIGHT).sum())
