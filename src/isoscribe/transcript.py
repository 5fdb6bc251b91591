"""The data that crosses stage boundaries: requests, transcripts and summaries.

Small dataclasses, picklable, with ``to_dict``/``from_dict`` for the documented JSON schema
(see docs/transcript-schema.md). Times are seconds from the start of the audio.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from isoscribe.summary.types import ActionItem, Decision, SourceSpan, Summary, SummaryRequest, SummaryTurn

__all__ = [
    "Word",
    "Segment",
    "SpeakerTurn",
    "Transcript",
    "ProbeRequest",
    "ProbeResult",
    "PIECE_S",
    "Piece",
    "SpeakerWindow",
    "SpeakerVectors",
    "PieceResult",
    "SpeakerClusterRequest",
    "SpeechRequest",
    "KnownSpeaker",
    "REFERENCE_MIN_S",
    "REFERENCE_MAX_S",
    "SummaryRequest",
    "SummaryTurn",
    "SourceSpan",
    "ActionItem",
    "Decision",
    "Summary",
    "SCHEMA_VERSION",
]

SCHEMA_VERSION = 1


@dataclass
class Word:
    start: float
    end: float
    text: str
    probability: float
    speaker: str | None = None


@dataclass
class Segment:
    id: int
    start: float
    end: float
    text: str
    words: list[Word] = field(default_factory=list)
    speaker: str | None = None
    avg_logprob: float = 0.0
    no_speech_prob: float = 0.0
    compression_ratio: float = 0.0
    temperature: float = 0.0
    language: str | None = None
    """ISO 639-1 code of the language this segment was decoded in (None in transcripts made before it)."""


@dataclass
class SpeakerTurn:
    start: float
    end: float
    speaker: str
    overlapped: bool = False
    """The second voice of overlapped speech: the turn lies over the dominant speaker's, who keeps the words."""


@dataclass
class Transcript:
    segments: list[Segment]
    language: str
    language_probability: float
    duration_s: float
    model: str
    speakers: list[str] = field(default_factory=list)
    speaker_turns: list[SpeakerTurn] = field(default_factory=list)
    timings_s: dict[str, float] = field(default_factory=dict)
    source: str = ""
    languages: list[str] = field(default_factory=list)
    """Every segment language, in order of first appearance."""
    warnings: list[str] = field(default_factory=list)
    """What the transcription changed or dropped (e.g. a repetition loop), one sentence each."""

    @property
    def text(self) -> str:
        return " ".join(segment.text.strip() for segment in self.segments).strip()

    def to_dict(self) -> dict[str, Any]:
        return {"schema_version": SCHEMA_VERSION, "text": self.text, **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Transcript:
        segments = [
            Segment(**{**_known(Segment, s), "words": [Word(**_known(Word, w)) for w in s.get("words", [])]})
            for s in data["segments"]
        ]
        turns = [SpeakerTurn(**_known(SpeakerTurn, t)) for t in data.get("speaker_turns", [])]
        scalars = {k: v for k, v in _known(cls, data).items() if k not in ("segments", "speaker_turns")}
        return cls(segments=segments, speaker_turns=turns, **scalars)


@dataclass(frozen=True)
class ProbeRequest:
    """One file for the probe stage: decodable audio, and how long, counted up to ``max_duration_s``."""

    audio_path: str
    max_duration_s: float | None = None


@dataclass(frozen=True)
class ProbeResult:
    duration_s: float
    """Counted from decoded samples, not read from container metadata."""


REFERENCE_MIN_S = 2.0
REFERENCE_MAX_S = 10.0
"""A known speaker's voice sample lasts this long: enough windows for a stable d-vector, one voice."""


UNNAMED_SPEAKER_LABEL = re.compile(r"\d+|SPEAKER_\d+")
"""What diarization calls a speaker without a name (clusters are numbers until relabelled SPEAKER_00 …): a
known speaker named so would be mistaken for one."""


@dataclass(frozen=True)
class KnownSpeaker:
    """A named voice: diarized speakers that sound like ``audio_path`` (a 2–10 s sample) take ``name``."""

    name: str
    audio_path: str


PIECE_S = 300.0
"""Longest audio handed to faster-whisper at once; a long file is cut at silence near every multiple."""


@dataclass(frozen=True)
class Piece:
    """Piece ``index`` of ``count``: the audio between the cuts near ``index`` and ``index + 1`` times
    ``SpeechRequest.piece_s`` (the last piece runs to the end). Each runs as its own speech task."""

    index: int
    count: int


@dataclass(frozen=True)
class SpeechRequest:
    """One file for the speech stage: transcription, word alignment and optional diarization."""

    audio_path: str
    language: str | None = None
    """The spoken language; None: detected."""
    task: str = "transcribe"
    """Whisper's task: "transcribe" (text in the spoken language) or "translate" (English text)."""
    initial_prompt: str | None = None
    prefix: str | None = None
    """Words the transcript must begin with (live transcription: those already sent as deltas)."""
    temperatures: tuple[float, ...] | None = None
    """None means the configured fallback temperatures."""
    hotwords: str | None = None
    beam_size: int | None = None
    vad_filter: bool | None = None
    condition_on_previous_text: bool | None = None
    no_speech_threshold: float | None = None
    word_timestamps: bool | None = None
    """None (this and the five above): the ``[asr]`` setting. Words are aligned when ``diarize`` all the same
    (speakers are assigned word by word)."""
    diarize: bool = False
    num_speakers: int | None = None
    min_speakers: int | None = None
    max_speakers: int | None = None
    max_duration_s: float | None = None
    """Decoding stops with AudioTooLong past this, whatever the probe said."""
    known_speakers: tuple[KnownSpeaker, ...] = ()
    """Voices to name when diarizing; speakers matching none keep the diarizer's labels."""
    piece_s: float = PIECE_S
    piece: Piece | None = None
    """Only this piece of the file: the result is a ``PieceResult`` with speaker vectors, not turns."""


@dataclass(frozen=True)
class SpeakerWindow:
    """A 1.6 s window of speech that gets one speaker vector, and the stretch of speech it labels."""

    start: float
    span_start: float
    span_end: float
    region: int
    """Index of its speech region; windows of one region are smoothed together."""


@dataclass
class SpeakerVectors:
    windows: list[SpeakerWindow]
    vectors: Any
    """numpy float32 array, one unit-length row per window (192-dim CAM++, 256-dim resemblyzer)."""
    overlaps: list[tuple[float, float]] = field(default_factory=list)
    """(start, end) seconds where two voices speak at once (segmentation-3.0, ``diarization.overlap``)."""
    window_units: Any = None
    """numpy int32 array: each window's (chunk, local speaker) unit, or -1 (``stages.local_speakers``)."""
    unit_chunks: Any = None
    """numpy int32 array: each unit's segmentation chunk; units of one chunk are different voices."""


@dataclass
class PieceResult:
    """What a piece task returns: its transcript (absolute times, inside [start_s, end_s]) and, when
    diarizing, its speaker vectors, clustered later with every other piece's."""

    index: int
    start_s: float
    end_s: float
    transcript: Transcript
    speaker_vectors: SpeakerVectors | None = None


@dataclass(frozen=True)
class SpeakerClusterRequest:
    """Speaker vectors of a whole file's pieces, in order, clustered at once so labels agree across pieces."""

    pieces: list[SpeakerVectors]
    num_speakers: int | None = None
    min_speakers: int | None = None
    max_speakers: int | None = None
    known_speakers: tuple[KnownSpeaker, ...] = ()


def _known(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in data.items() if k in names}
