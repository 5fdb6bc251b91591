"""The automatic speaker count on rendered meetings of several espeak-ng voices, and its two methods."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from asr_helpers import der

from isoscribe.benchmarks import speaker_count
from isoscribe.benchmarks.meetings import make_meeting, meeting_rttm_path
from isoscribe.config import load_settings
from isoscribe.stages import clustering, diarize
from isoscribe.transcript import SpeechRequest

SYNTHETIC_RULE = clustering.CountRule(linkage_distance=0.3, merge_similarity=0.92)
"""The synthetic voices below scatter their windows 0.3 apart (cosine), like resemblyzer's on renders."""
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
    labels = clustering.cluster_embeddings(points, None, 1, 8, "linkage")
    assert len(np.unique(labels)) == 4
    assert all(len(np.unique(labels[k * 40 : (k + 1) * 40])) == 1 for k in range(4))


def test_two_barely_separated_clusters_are_one_speaker() -> None:
    """Linkage splits one voice whose windows scatter into two halves, but their centroids are more
    alike than the rule's merge similarity: one speaker, as for a single reader."""
    rng = np.random.default_rng(2)
    first = rng.normal(size=256)
    first /= np.linalg.norm(first)
    second = first + 0.3 * rng.normal(size=256) / 16
    second /= np.linalg.norm(second)
    points = np.concatenate([first + 0.04 * rng.normal(size=(60, 256)), second + 0.04 * rng.normal(size=(60, 256))])
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    unmerged = clustering.CountRule(linkage_distance=0.3, merge_similarity=1.0)
    assert clustering.count_speakers(points, unmerged) == 2
    assert float(first @ second) > clustering.RESEMBLYZER_RULE.merge_similarity
    assert len(np.unique(clustering.cluster_embeddings(points.astype(np.float32), None, 1, 8, "linkage"))) == 1


def test_a_voice_split_by_linkage_is_merged_back_and_the_others_stay_apart() -> None:
    """Five voices (centroids about 0.58 alike), the first drifting between three spots 0.95 alike, as the
    sonnet's reader does across a 20-minute file: linkage counts seven clusters, five speakers remain."""
    rng = np.random.default_rng(4)
    shared = rng.normal(size=256)
    voices = [shared + 0.82 * rng.normal(size=256) for _ in range(5)]
    voices = [v / np.linalg.norm(v) for v in voices]
    spots = [voices[0] + 0.016 * rng.normal(size=256) for _ in range(3)]
    centres = [c / np.linalg.norm(c) for c in spots + voices[1:]]
    points = np.concatenate([c + 0.04 * rng.normal(size=(60, 256)) for c in centres])
    points = (points / np.linalg.norm(points, axis=1, keepdims=True)).astype(np.float32)
    unmerged = clustering.CountRule(SYNTHETIC_RULE.linkage_distance, merge_similarity=1.0)
    assert clustering.count_speakers(points.astype(np.float64), unmerged) == 7
    labels = clustering.cluster_embeddings(points, None, 1, 8, "linkage", SYNTHETIC_RULE)
    assert len(np.unique(labels)) == 5
    assert len(np.unique(labels[:180])) == 1, "the drifting voice is one speaker"
    assert len(np.unique([labels[k * 60] for k in range(2, 7)])) == 5
    assert len(np.unique(clustering.cluster_embeddings(points, None, 6, 8, "linkage", SYNTHETIC_RULE))) == 6, "min_speakers holds"


def test_the_rule_left_out_sources_choose_is_the_best_on_the_others() -> None:
    """Leave-one-source-out picks, for each source, the grid rule that counts best on the other two."""
    shape = tuple(len(axis) for axis in speaker_count.GRID)
    good, other = (1, 2, 0, 0), (3, 4, 1, 1)

    def row(source: str, right_at: tuple[int, ...]) -> dict:
        grid = np.full(shape, 9)
        grid[right_at] = 2
        return {"source": source, "speakers": 2, "grid": grid}

    rows = [row("rendered", good), row("real", good), row("long", other)]
    chosen = speaker_count.choose_rule(rows, ("rendered", "real"))
    assert [chosen.linkage_distance, chosen.merge_similarity, chosen.min_windows, chosen.min_share] == [
        axis[i] for axis, i in zip(speaker_count.GRID, good)
    ]
    assert speaker_count.choose_rule(rows, ("long",)).linkage_distance == speaker_count.GRID[0][other[0]]


def _three_alike_and_two_apart(windows_each: int) -> np.ndarray:
    """Five voices: three of them 0.86-0.88 alike (as close as espeak voices get to each other in
    resemblyzer's space), two far from all; each voice's windows tight around it."""
    rng = np.random.default_rng(5)
    base = rng.normal(size=(3, 256))
    close = [base[0] + 0.38 * rng.normal(size=256) for _ in range(3)]
    voices = [v / np.linalg.norm(v) for v in close + [base[1], base[2]]]
    points = np.concatenate([v + 0.03 * rng.normal(size=(windows_each, 256)) for v in voices])
    return points / np.linalg.norm(points, axis=1, keepdims=True)


def test_the_eigengap_raises_a_count_that_a_cosine_rule_merged() -> None:
    points = _three_alike_and_two_apart(24)
    without_floor = replace(clustering.RESEMBLYZER_RULE, eigengap_floor=False)
    assert clustering.count_speakers(points, without_floor) == 3
    assert clustering.nme_count(points) == 5
    labels = clustering.cluster_embeddings(points.astype(np.float32), None, 1, 8, "linkage", clustering.RESEMBLYZER_RULE)
    assert len(np.unique(labels)) == 5
    assert all(len(np.unique(labels[k * 24 : (k + 1) * 24])) == 1 for k in range(5))


def test_the_eigengap_says_nothing_on_few_windows_and_never_splits_one_speaker() -> None:
    few = _three_alike_and_two_apart(12)
    assert len(few) < clustering.EIGENGAP_MIN_WINDOWS
    assert clustering.nme_count(few) == 1
    assert clustering.with_eigengap(1, 5) == 1, "the rule's one speaker stands"
    assert clustering.with_eigengap(3, 2) == 3, "the eigengap only raises"
    assert clustering.with_eigengap(3, 5) == 5
