"""The automatic speaker count on rendered meetings of several espeak-ng voices, and its two methods."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from asr_helpers import der

from isoscribe.benchmarks.meetings import make_meeting, meeting_rttm_path
from isoscribe.config import load_settings
from isoscribe.stages import diarize
from isoscribe.transcript import SpeechRequest

MEETING_DER_MAX = 0.1
"""The rendered voices never overlap and pause 0.4 s between turns: with the right count the DER
is a few percent (window boundaries); a merged or split voice costs 15 % or more."""


@pytest.fixture(scope="module")
def diarizer():
    return diarize.load(load_settings(overrides={"diarization": {"enabled": True, "device": "cpu"}}))


@pytest.mark.parametrize("speakers", [3, 5])
def test_rendered_meeting_speaker_count_is_found(diarizer, tmp_path: Path, speakers: int) -> None:
    """Seed 300 is outside the seeds the linkage threshold was calibrated on (0-7) and the bench's (100+)."""
    path = make_meeting(tmp_path / "meeting.wav", speakers, seed=300)
    result = diarize.run(diarizer, SpeechRequest(str(path)))
    error = der(meeting_rttm_path(path), result.speaker_turns)
    print(f"{speakers} voices: found {len(result.speakers)}, DER {error:.3f}")
    assert len(result.speakers) == speakers
    assert error <= MEETING_DER_MAX


def test_linkage_keeps_close_clusters_apart() -> None:
    """Four tight clusters, two of them at cosine 0.75 (as close as distinct rendered voices get)."""
    rng = np.random.default_rng(1)
    base = rng.normal(size=(3, 256))
    centres = np.stack([base[0], base[1], base[2], base[2] + 0.9 * rng.normal(size=256)])
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    points = np.concatenate([c + 0.02 * rng.normal(size=(40, 256)) for c in centres])
    points = (points / np.linalg.norm(points, axis=1, keepdims=True)).astype(np.float32)
    labels = diarize.cluster_embeddings(points, None, 1, 8, "linkage")
    assert len(np.unique(labels)) == 4
    assert all(len(np.unique(labels[k * 40 : (k + 1) * 40])) == 1 for k in range(4))


def test_two_barely_separated_clusters_are_one_speaker() -> None:
    """Linkage splits one voice whose windows scatter into two halves (cosine 0.96 apart), but their
    silhouette (0.09) is below ``MIN_SILHOUETTE``: one speaker, as for a single reader."""
    rng = np.random.default_rng(2)
    first = rng.normal(size=256)
    first /= np.linalg.norm(first)
    second = first + 0.3 * rng.normal(size=256) / 16
    second /= np.linalg.norm(second)
    points = np.concatenate([first + 0.04 * rng.normal(size=(60, 256)), second + 0.04 * rng.normal(size=(60, 256))])
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    assert diarize._linkage_count(points) == 2
    assert diarize.silhouette(points, np.repeat([0, 1], 60)) < diarize.MIN_SILHOUETTE
    assert len(np.unique(diarize.cluster_embeddings(points.astype(np.float32), None, 1, 8, "linkage"))) == 1


def test_silhouette_scores_separation() -> None:
    points = np.array([[1, 0], [0.99, 0.14], [0, 1], [0.14, 0.99]], dtype=np.float64)
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    assert diarize.silhouette(points, np.array([0, 0, 1, 1])) > 0.8
    assert diarize.silhouette(points, np.array([0, 1, 0, 1])) < 0
    assert diarize.silhouette(points, np.array([0, 0, 0, 0])) == -1.0
