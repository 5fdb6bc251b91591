"""A long file's speech on several workers: which files are split, and stitching the pieces back.

The speech stage cuts a file at silence near every multiple of ``SpeechRequest.piece_s`` (the cuts
depend only on the audio, so every worker finds the same ones); each piece is its own task, and the
pieces' speaker vectors are clustered in one more task so that a voice keeps one label across pieces.
Faster-whisper never carries text from one piece to the next, so the words are those of one worker
transcribing the pieces in turn.
"""

from __future__ import annotations

import math
from collections import Counter

from isoscribe.config import Settings
from isoscribe.transcript import PieceResult, SpeakerTurn, SpeechRequest, Transcript

__all__ = ["piece_layout", "piece_workers", "stitch_pieces"]


def piece_layout(request: SpeechRequest, duration_s: float, workers: int) -> tuple[int, float]:
    """(pieces, seconds per piece) for a file of ``duration_s`` on ``workers``: a multiple of the
    workers, none longer than ``request.piece_s``, so that no worker is left idle while one finishes
    a last piece (60 minutes on 2 workers: 12 pieces of 300 s, the cuts of one worker alone)."""
    if duration_s <= request.piece_s:
        return 1, request.piece_s
    count = workers * math.ceil(duration_s / (request.piece_s * workers))
    return count, duration_s / count


def piece_workers(settings: Settings, workers: int | str) -> int:
    """How many of ``workers`` (``auto`` not yet resolved counts as one) a long file's pieces may use.

    Pieces go to separate workers only when each piece's decoding needs nothing from the others: the
    language is fixed (per-stretch detection looks across the whole file) and the diarization backend
    works from speaker vectors (pyannote diarizes a whole file at once; a service request may ask for
    diarization when the settings do not enable it, so the backend decides alone)."""
    asr = settings.asr
    fixed_language = bool(asr.language) or not asr.language_per_segment or asr.model.endswith(".en")
    splits = fixed_language and settings.diarization.backend != "pyannote"
    return workers if splits and isinstance(workers, int) else 1


def stitch_pieces(pieces: list[PieceResult], speaker_turns: list[SpeakerTurn]) -> Transcript:
    """One transcript from the pieces of a file, in order, with the whole file's speaker turns.

    Raises ValueError when the pieces do not cover the file edge to edge, in order.
    """
    pieces = sorted(pieces, key=lambda piece: piece.index)
    for before, after in zip(pieces, pieces[1:]):
        if after.start_s != before.end_s:
            raise ValueError(
                f"piece {after.index} starts at {after.start_s} s, piece {before.index} ends at {before.end_s} s"
            )
    segments = [segment for piece in pieces for segment in piece.transcript.segments]
    for index, segment in enumerate(segments):
        segment.id = index
    transcripts = [piece.transcript for piece in pieces]
    language = _main_language(transcripts)
    timings: Counter[str] = Counter()
    for transcript in transcripts:
        timings.update(transcript.timings_s)
    first = transcripts[0]
    return Transcript(
        segments=segments,
        language=language,
        language_probability=max(t.language_probability for t in transcripts if t.language == language),
        duration_s=first.duration_s,
        model=first.model,
        speakers=list(dict.fromkeys(turn.speaker for turn in speaker_turns)),
        speaker_turns=speaker_turns,
        timings_s={**timings, "pieces": float(len(pieces))},
        source=first.source,
        languages=list(dict.fromkeys(language for t in transcripts for language in t.languages)),
        warnings=[warning for t in transcripts for warning in t.warnings],
    )


def _main_language(transcripts: list[Transcript]) -> str:
    seconds: Counter[str] = Counter()
    for transcript in transcripts:
        seconds[transcript.language] += sum(s.end - s.start for s in transcript.segments) or 1e-9
    return seconds.most_common(1)[0][0]
