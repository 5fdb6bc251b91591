"""Shared fixtures: the shared speech data, its manifest, and settings isolated from the user's files."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.fail(f"shared test data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def manifest(shared_data: Path) -> list[dict]:
    data = json.loads((shared_data / "manifest.json").read_text())
    return data["clips"] if isinstance(data, dict) and "clips" in data else data


@pytest.fixture(autouse=True)
def _isolated_settings_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never read the developer's own config file or ISOSCRIBE_* variables."""
    import os

    for name in list(os.environ):
        if name.startswith("ISOSCRIBE_"):
            monkeypatch.delenv(name)


@pytest.fixture(scope="session")
def demo_dialogue(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The two-voice espeak-ng dialogue (16 kHz mono WAV), generated once; its script is beside it."""
    from isoscribe.demo import make_dialogue

    return make_dialogue(tmp_path_factory.mktemp("dialogue") / "dialogue.wav")


@pytest.fixture(autouse=True)
def _restore_root_logging():
    """A CLI run in-process points the root logger at that test's captured stderr; undo it afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture(scope="session")
def lying_webm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """40 s of Opus in WebM whose Segment Info claims a duration of 1 s (one float patched)."""
    from media_fixtures import lying_webm

    return lying_webm(tmp_path_factory.mktemp("lying") / "lying.webm", seconds=40.0, claimed_s=1.0)


@pytest.fixture(scope="session")
def jfk_24k(shared_data: Path) -> bytes:
    """JFK as the PCM16 at 24 kHz a realtime client sends."""
    from isoscribe.benchmarks.realtime_client import pcm16_of

    return pcm16_of(shared_data / "jfk" / "jfk.wav", 24000)
