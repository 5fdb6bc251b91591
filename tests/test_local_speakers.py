"""Segmentation's chunk-local speakers as units of the speaker count: which windows belong to which
unit, two voices of one chunk never join, and pieces keep their units apart."""

from __future__ import annotations

import numpy as np

from isoscribe.stages import clustering, diarize, local_speakers
from isoscribe.transcript import SpeakerVectors, SpeakerWindow

STEP_S = 0.02


def _activity(speakers_by_second: list[tuple[float, float, int]], chunk_starts_s: list[float]) -> local_speakers.LocalActivity:
    """10 s chunks where local speaker k speaks from a to b seconds (file time), for each (a, b, k)."""
    frames = int(local_speakers.CHUNK_S / STEP_S)
    active = np.zeros((len(chunk_starts_s), frames, 3), dtype=np.uint8)
    for chunk, chunk_start in enumerate(chunk_starts_s):
        times = chunk_start + np.arange(frames) * STEP_S
        for start, end, speaker in speakers_by_second:
            active[chunk, (times >= start) & (times < end), speaker] = 1
    two_voices = (active.sum(axis=-1) >= 2).astype(np.float32)
    return local_speakers.LocalActivity(np.array(chunk_starts_s), active, STEP_S, two_voices)


def _windows(starts: list[float]) -> list[SpeakerWindow]:
    return [SpeakerWindow(start, start, start + 1.6, 0) for start in starts]


def test_a_window_belongs_to_the_local_speaker_heard_alone_in_it() -> None:
    """Speaker 0 at 0-4 s, speaker 1 at 4-8 s, both at 3.5-4.5 s: a window inside one turn is that
    speaker's; one across the overlap is nobody's."""
    activity = _activity([(0.0, 4.5, 0), (3.5, 8.0, 1)], [0.0])
    unit_of, unit_chunks = local_speakers.window_units(_windows([0.5, 5.5, 3.2]), 1.6, activity)
    assert unit_of.tolist() == [0, 1, -1]
    assert unit_chunks.tolist() == [0, 0]


def test_two_voices_heard_in_one_chunk_are_never_joined_however_alike() -> None:
    """Two units of one chunk with vectors 0.98 alike stay two speakers; the same vectors from two
    chunks (one voice each, nothing says they differ) are one speaker."""
    rng = np.random.default_rng(0)
    voice = rng.normal(size=256)
    other = voice + 0.2 * rng.normal(size=256)
    vectors = np.stack([voice] * 4 + [other] * 4)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    assert float(vectors[0] @ vectors[-1]) > 0.95
    unit_of = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    rule = clustering.CountRule(linkage_distance=0.3, merge_similarity=0.9, min_windows=2)
    same_chunk = local_speakers.unit_tree(vectors, unit_of, np.array([0, 0]))
    two_chunks = local_speakers.unit_tree(vectors, unit_of, np.array([0, 1]))
    assert clustering.count_units(same_chunk, rule) == 2
    assert clustering.count_units(two_chunks, rule) == 1


def test_pieces_number_their_units_and_chunks_after_each_other() -> None:
    def piece(window_units: list[int], unit_chunks: list[int]) -> SpeakerVectors:
        windows = _windows([float(i) for i in range(len(window_units))])
        return SpeakerVectors(windows, np.ones((len(windows), 4), np.float32), [],
                              np.array(window_units, np.int32), np.array(unit_chunks, np.int32))

    empty = SpeakerVectors([], np.zeros((0, 4), np.float32))
    window_units, unit_chunks = diarize._merged_units([piece([0, -1, 1], [0, 0]), empty, piece([0, 0], [0])])
    assert window_units.tolist() == [0, -1, 1, 2, 2]
    assert unit_chunks.tolist() == [0, 0, 1]
