"""Local speakers: who segmentation-3.0 hears alone in each 10 s chunk, as units and constraints for
the speaker count.

segmentation-3.0 (``overlap``) names up to three speakers per chunk, consistently within the chunk
but not across chunks. A speaker window heard as one local speaker alone for at least
``PURE_SHARE`` of its frames belongs to that (chunk, local speaker) unit. The count clusters units,
not windows: a unit's mean vector is steadier than one window's, and two units of one chunk are two
voices heard in the same 10 s, so they never join (a cannot-link, as in pyannote's pipeline, whose
clustering also works on chunk-local speakers).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from isoscribe.transcript import SpeakerVectors, SpeakerWindow

__all__ = ["LocalActivity", "UnitTree", "window_units", "unit_tree", "units_of", "PURE_SHARE"]

CHUNK_S = 10.0
PURE_SHARE = 0.6
"""Share of a window's frames that must be one local speaker alone (0.5-0.8 counted alike on the
bench's sources; 0.6 was the first tried)."""
_CANNOT_LINK = 1e6
"""Distance given to units of one chunk: average linkage then never joins clusters that hold them."""


@dataclass
class LocalActivity:
    chunk_starts_s: np.ndarray
    """(chunks,) seconds into the file."""
    active: np.ndarray
    """(chunks, frames, 3) uint8: local speaker k speaks in frame f of chunk c (the most likely class)."""
    frame_step_s: float
    two_voices: np.ndarray
    """(chunks, frames) float32: the probability that two local speakers speak in frame f of chunk c."""


@dataclass
class UnitTree:
    """Units' vector sums, window counts, chunks and their constrained average-linkage tree."""

    sums: np.ndarray
    windows: np.ndarray
    chunks: np.ndarray
    tree: np.ndarray | None
    total_windows: int


def window_units(
    windows: list[SpeakerWindow], window_s: float, activity: LocalActivity
) -> tuple[np.ndarray, np.ndarray]:
    """(unit of each window or -1, chunk of each unit): a window goes to the chunk that holds it whole
    and hears one local speaker alone in at least ``PURE_SHARE`` of it (the most central such chunk)."""
    solo = activity.active * (activity.active.sum(axis=-1, keepdims=True) == 1)
    frames = activity.active.shape[1]
    starts = activity.chunk_starts_s
    units: dict[tuple[int, int], int] = {}
    unit_of = np.full(len(windows), -1, dtype=np.int32)
    for index, window in enumerate(windows):
        end = window.start + window_s
        best, best_margin = None, -1.0
        for chunk in np.flatnonzero((starts <= window.start + 1e-6) & (starts + CHUNK_S >= end - 1e-6)):
            first = int(round((window.start - starts[chunk]) / activity.frame_step_s))
            last = min(frames, int(round((end - starts[chunk]) / activity.frame_step_s)))
            shares = solo[chunk, first:last].mean(axis=0) if last > first else np.zeros(3)
            margin = min(window.start - starts[chunk], starts[chunk] + CHUNK_S - end)
            if shares.max() >= PURE_SHARE and margin > best_margin:
                best, best_margin = (int(chunk), int(shares.argmax())), margin
        if best is not None:
            unit_of[index] = units.setdefault(best, len(units))
    return unit_of, np.array([chunk for chunk, _ in units], dtype=np.int32)


def unit_tree(vectors: np.ndarray, unit_of: np.ndarray, unit_chunks: np.ndarray) -> UnitTree:
    """Units' sums and the average-linkage tree (cosine distance of unit means, units of one chunk apart)."""
    from scipy.cluster.hierarchy import linkage
    from scipy.spatial.distance import squareform

    count = len(unit_chunks)
    sums = np.zeros((count, vectors.shape[1]))
    windows = np.bincount(unit_of[unit_of >= 0], minlength=count).astype(float)
    np.add.at(sums, unit_of[unit_of >= 0], vectors[unit_of >= 0].astype(np.float64))
    tree = None
    if count > 1:
        means = sums / np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-9)
        distance = np.maximum(1.0 - means @ means.T, 0.0)
        distance[unit_chunks[:, None] == unit_chunks[None, :]] = _CANNOT_LINK
        np.fill_diagonal(distance, 0.0)
        tree = linkage(squareform(distance, checks=False), "average")
    return UnitTree(sums, windows, unit_chunks, tree, len(unit_of))


def units_of(vectors: SpeakerVectors) -> UnitTree | None:
    """The units' tree of ``vectors``, or None where segmentation gave them none (off, or no window alone)."""
    if vectors.window_units is None or not len(vectors.unit_chunks):
        return None
    return unit_tree(vectors.vectors, vectors.window_units, vectors.unit_chunks)
