"""Diarization stage: speaker vectors over speech regions, then clustering.

Speech regions (the VAD's, handed over by the speech stage, which falls back to the transcript's
words) are cut into 1.6 s windows, each with a speaker vector (CAM++, ``campplus``, or resemblyzer's
d-vector, ``speaker_embedding``), each labelling the stretch of its region nearest its centre.
Clustering (``clustering``) is spectral on a refined cosine affinity, with the speaker count fixed or
found automatically (``diarization.speaker_count``, each backend with its own ``CountRule``); with
segmentation on (``diarization.overlap``), the count clusters segmentation-3.0's chunk-local speakers
(``local_speakers``), never joining two voices heard in the same 10 s. So
memory grows linearly with audio length: the affinity matrices are bounded, the embeddings are 1 KB
a window, windows are embedded in fixed-size batches, and VAD runs over 5-minute pieces (60 minutes:
1.14 GB peak RSS with segmentation, measured by ``tests/test_diarize_long.py``).

An optional pyannote backend is used when ``diarization.backend == "pyannote"`` and a local pipeline
path is configured.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from isoscribe.audio import SAMPLE_RATE, AudioTooLong, decode_audio
from isoscribe.config import DiarizationSettings, Settings
from isoscribe.logs import log_event
from isoscribe.stages import campplus, local_speakers, overlap, vad
from isoscribe.stages.clustering import (
    RESEMBLYZER_RULE,
    RESEMBLYZER_UNITS_RULE,
    CountRule,
    cluster_embeddings,
    unit_centroids,
)
from isoscribe.stages.speaker_embedding import WINDOW_S, embed, speaker_windows
from isoscribe.transcript import (
    REFERENCE_MAX_S,
    REFERENCE_MIN_S,
    SpeakerClusterRequest,
    SpeakerTurn,
    SpeakerVectors,
    SpeakerWindow,
    SpeechRequest,
    Transcript,
)

__all__ = [
    "Diarizer",
    "load",
    "run",
    "diarize",
    "speaker_vectors",
    "window_s",
    "cluster_pieces",
    "KNOWN_SPEAKER_MIN_SIMILARITY",
    "reference_embedding",
    "name_known_speakers",
]

logger = logging.getLogger("isoscribe.diarize")

KNOWN_SPEAKER_MIN_SIMILARITY = 0.79
"""resemblyzer: a cluster takes a known speaker's name when the cosine similarity of its centroid and the
mean d-vector of the speaker's sample reaches this. Chosen by leave-one-source-out on voices of three
sources (``benchmarks/known_speakers.py``: espeak-ng voices, the callers of the shared conversations,
real readers): 0.79 whichever source is left out; on the left-out source it accepted 7/7, 6/6 and 5/6
same-person pairs and refused 41/42, 19/30 and 30/30 others. The same caller's sample and turns were
as low as 0.80 alike in the real conversations, below the former 0.85 that renders alone had set."""
CAMPPLUS_UNITS_RULE = CountRule(linkage_distance=0.35, merge_similarity=0.85, min_windows=3, min_share=0.0)
"""Chosen like ``clustering.RESEMBLYZER_UNITS_RULE``, on CAM++ vectors (``diarization.campplus.count``). Held
out: renders 9 of 20 (on windows: 10), real recordings 4 of 6 (3), long files 2 of 4 (0)."""
CAMPPLUS_RULE = CountRule(linkage_distance=0.25, merge_similarity=0.8, min_windows=3, min_share=0.03)
"""The same on windows, when segmentation is off (``diarization.campplus.count_on_windows``)."""
CAMPPLUS_KNOWN_SIMILARITY = 0.76
"""Chosen like ``KNOWN_SPEAKER_MIN_SIMILARITY`` on CAM++ vectors (0.65, 0.71, 0.79 as each source was left out)."""


@dataclass
class Diarizer:
    backend: str
    encoder: Any
    """The CAM++ network, a resemblyzer.VoiceEncoder, or a pyannote Pipeline."""
    device: str
    settings: DiarizationSettings
    count_rule: CountRule = RESEMBLYZER_RULE
    known_speaker_similarity: float = KNOWN_SPEAKER_MIN_SIMILARITY
    segmenter: overlap.Segmenter | None = None
    """segmentation-3.0 for overlapped speech (``diarization.overlap``)."""


def load(settings: Settings) -> Diarizer:
    import torch

    diarization = settings.diarization
    device = diarization.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if diarization.backend == "pyannote":
        return _load_pyannote(diarization, device)
    if device == "cpu":
        # The encoder's per-step matrices are tiny: threads gain nothing, and on a busy machine
        # OpenMP spin-waiting made 2 threads 10x slower than 1 (measured: 9-18 s vs 0.9 s a batch).
        torch.set_num_threads(1)
    segmenter = overlap.load(device) if diarization.overlap else None
    if diarization.backend == "campplus":
        rule = CAMPPLUS_UNITS_RULE if segmenter is not None else CAMPPLUS_RULE
        return Diarizer("campplus", campplus.load(device), device, diarization, rule, CAMPPLUS_KNOWN_SIMILARITY, segmenter)
    from resemblyzer import VoiceEncoder

    encoder = VoiceEncoder(device, verbose=False)
    encoder.eval()
    rule = RESEMBLYZER_UNITS_RULE if segmenter is not None else RESEMBLYZER_RULE
    return Diarizer("resemblyzer", encoder, device, diarization, rule, segmenter=segmenter)


def run(model: Diarizer, request: SpeechRequest) -> Transcript:
    """Diarize a file on its own: Silero VAD finds the speech, the result holds only speaker turns."""
    started = time.perf_counter()
    audio = decode_audio(request.audio_path)
    decoded = time.perf_counter()
    turns = diarize(model, audio, vad.detect(audio).seconds, request)
    speakers = list(dict.fromkeys(turn.speaker for turn in turns))
    return Transcript(
        segments=[],
        language="",
        language_probability=0.0,
        duration_s=audio.size / SAMPLE_RATE,
        model=f"diarization:{model.backend}",
        speakers=speakers,
        speaker_turns=turns,
        timings_s={"decode": decoded - started, "diarize": time.perf_counter() - decoded},
        source=request.audio_path,
    )


def diarize(
    model: Diarizer, audio: np.ndarray, regions: list[tuple[float, float]], request: SpeechRequest
) -> list[SpeakerTurn]:
    """Speaker turns over ``regions`` (seconds), labelled SPEAKER_00… in order of first appearance."""
    settings = model.settings
    started = time.perf_counter()
    if model.backend == "pyannote":
        turns = _relabel(_diarize_pyannote(model, audio, *_speaker_bounds(settings, request)))
    else:
        vectors = speaker_vectors(model, audio, regions)
        references = _references(model, request) if request.known_speakers else {}
        turns = _cluster_turns(model, vectors, request, references)
    log_event(
        logger, "diarized", backend=model.backend, regions=len(regions), turns=len(turns),
        speakers=len({t.speaker for t in turns}), wall_s=time.perf_counter() - started,
    )
    return turns


def speaker_vectors(
    model: Diarizer,
    audio: np.ndarray,
    regions: list[tuple[float, float]],
    start_s: float = 0.0,
    end_s: float | None = None,
) -> SpeakerVectors:
    """One speaker vector per window over ``regions`` (seconds into ``audio``), and where two voices
    overlap between ``start_s`` and ``end_s`` (the whole file by default); not for pyannote."""
    windows = _windows(model, regions, audio.size / SAMPLE_RATE)
    vectors = SpeakerVectors(windows, _embed(model, audio, windows))
    if model.segmenter is not None and windows:
        first, last = int(start_s * SAMPLE_RATE), audio.size if end_s is None else int(end_s * SAMPLE_RATE)
        activity = overlap.local_activity(model.segmenter, audio[first:last], start_s)
        vectors.overlaps = overlap.overlap_regions(activity, model.segmenter.frame_duration_s)
        vectors.window_units, vectors.unit_chunks = local_speakers.window_units(windows, window_s(model), activity)
    return vectors


def window_s(model: Diarizer) -> float:
    """Seconds of audio behind each of the backend's speaker vectors."""
    return campplus.WINDOW_S if model.backend == "campplus" else WINDOW_S


def _windows(model: Diarizer, regions: list[tuple[float, float]], duration_s: float) -> list[SpeakerWindow]:
    if model.backend == "campplus":
        return speaker_windows(regions, duration_s, campplus.WINDOW_S, campplus.HOP_S)
    return speaker_windows(regions, duration_s)


def _embed(model: Diarizer, audio: np.ndarray, windows: list[SpeakerWindow]) -> np.ndarray:
    if model.backend == "campplus":
        return campplus.embed(model.encoder, model.device, audio, windows)
    return embed(model.encoder, model.device, audio, windows)


def cluster_pieces(model: Diarizer, request: SpeakerClusterRequest) -> list[SpeakerTurn]:
    """Speaker turns of a whole file from its pieces' vectors, clustered together (labels agree across pieces)."""
    windows: list[SpeakerWindow] = []
    for piece in request.pieces:
        first_region = windows[-1].region + 1 if windows else 0
        windows += [replace(w, region=w.region + first_region) for w in piece.windows]
    vectors = [piece.vectors for piece in request.pieces if len(piece.windows)]
    overlaps = [span for piece in request.pieces for span in piece.overlaps]
    merged = SpeakerVectors(windows, np.concatenate(vectors) if vectors else np.zeros((0, 1), np.float32), overlaps)
    merged.window_units, merged.unit_chunks = _merged_units(request.pieces)
    references = _references(model, request) if request.known_speakers else {}
    return _cluster_turns(model, merged, request, references)


def _merged_units(pieces: list[SpeakerVectors]) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The pieces' units numbered after each other (so are their chunks); none unless every piece has them."""
    pieces = [piece for piece in pieces if len(piece.windows)]
    if not pieces or any(piece.window_units is None for piece in pieces):
        return None, None
    window_units, unit_chunks, units, chunks = [], [], 0, 0
    for piece in pieces:
        window_units.append(np.where(piece.window_units >= 0, piece.window_units + units, -1))
        unit_chunks.append(piece.unit_chunks + chunks)
        units += len(piece.unit_chunks)
        chunks += int(piece.unit_chunks.max()) + 1 if len(piece.unit_chunks) else 0
    return np.concatenate(window_units).astype(np.int32), np.concatenate(unit_chunks).astype(np.int32)


def _cluster_turns(
    model: Diarizer,
    vectors: SpeakerVectors,
    request: SpeechRequest | SpeakerClusterRequest,
    references: dict[str, np.ndarray] | None = None,
) -> list[SpeakerTurn]:
    """Turns of the clustered windows; clusters that sound like a reference take its name."""
    settings = model.settings
    bounds = _speaker_bounds(settings, request)
    units = local_speakers.units_of(vectors) if settings.speaker_count == "linkage" else None
    labels = cluster_embeddings(vectors.vectors, *bounds, settings.speaker_count, model.count_rule, units)
    labels = _smooth(labels, vectors.windows)
    turns = _turns(vectors.windows, labels)
    if references and len(labels):
        centroids = {str(label): centroid for label, centroid in unit_centroids(vectors.vectors, labels).items()}
        turns = name_known_speakers(turns, centroids, references, model.known_speaker_similarity)
    return overlap.add_overlap_turns(_relabel(turns), vectors.overlaps)


def _speaker_bounds(
    settings: DiarizationSettings, request: SpeechRequest | SpeakerClusterRequest
) -> tuple[int | None, int, int]:
    """(fixed count, least, most) speakers: the request's, else the settings'."""
    min_speakers = request.min_speakers or settings.min_speakers
    return (
        request.num_speakers or settings.num_speakers,
        min_speakers,
        max(request.max_speakers or settings.max_speakers, min_speakers),
    )


def _smooth(labels: np.ndarray, windows: list[SpeakerWindow]) -> np.ndarray:
    """Majority of each window and its two neighbours in the same region: removes one-window flicker."""
    smoothed = labels.copy()
    for i in range(1, len(labels) - 1):
        if windows[i - 1].region == windows[i].region == windows[i + 1].region:
            if labels[i - 1] == labels[i + 1] != labels[i]:
                smoothed[i] = labels[i - 1]
    return smoothed


def _turns(windows: list[SpeakerWindow], labels: np.ndarray) -> list[SpeakerTurn]:
    turns: list[SpeakerTurn] = []
    for window, label in zip(windows, labels):
        speaker = str(int(label))
        if turns and turns[-1].speaker == speaker and window.span_start - turns[-1].end < 1e-6:
            turns[-1].end = window.span_end
        else:
            turns.append(SpeakerTurn(window.span_start, window.span_end, speaker))
    return turns


def _relabel(turns: list[SpeakerTurn]) -> list[SpeakerTurn]:
    """Cluster numbers become SPEAKER_00… in order of first appearance; names stay."""
    names: dict[str, str] = {}
    for turn in turns:
        if turn.speaker.isdecimal():  # a cluster number; a name of other digits ("²") stays a name
            turn.speaker = names.setdefault(turn.speaker, f"SPEAKER_{len(names):02d}")
    return turns


def reference_embedding(model: Diarizer, audio: np.ndarray) -> np.ndarray:
    """The unit-length mean d-vector of a voice sample's speech (the whole sample if VAD finds none)."""
    duration_s = audio.size / SAMPLE_RATE
    regions = vad.detect(audio).seconds or [(0.0, duration_s)]
    embeddings = _embed(model, audio, _windows(model, regions, duration_s))
    mean = embeddings.mean(axis=0)
    return mean / max(float(np.linalg.norm(mean)), 1e-9)


def name_known_speakers(
    turns: list[SpeakerTurn],
    centroids: dict[str, np.ndarray],
    references: dict[str, np.ndarray],
    min_similarity: float = KNOWN_SPEAKER_MIN_SIMILARITY,
) -> list[SpeakerTurn]:
    """Give clusters the names of the references they match: the most similar (cluster, name) pairs
    first, each used once, none below ``min_similarity``."""
    pairs = sorted(
        ((float(centroid @ reference), label, name) for label, centroid in centroids.items()
         for name, reference in references.items()),
        reverse=True,
    )
    named: dict[str, str] = {}
    for similarity, label, name in pairs:
        if similarity < min_similarity:
            break
        if label not in named and name not in named.values():
            named[label] = name
    log_event(logger, "known_speakers_matched", matched=len(named), known=len(references),
              similarities=";".join(f"{label}~{name}={s:.2f}" for s, label, name in pairs))
    for turn in turns:
        turn.speaker = named.get(turn.speaker, turn.speaker)
    return turns


def _references(model: Diarizer, request: SpeechRequest | SpeakerClusterRequest) -> dict[str, np.ndarray]:
    references = {}
    for known in request.known_speakers:
        try:
            audio = decode_audio(known.audio_path, max_duration_s=REFERENCE_MAX_S + 1.0)
        except AudioTooLong:  # the sample is too long, not the file being diarized: said as below
            audio = None
        if audio is None or not REFERENCE_MIN_S <= audio.size / SAMPLE_RATE <= REFERENCE_MAX_S:
            lasts = f"over {REFERENCE_MAX_S + 1.0:g}" if audio is None else f"{audio.size / SAMPLE_RATE:.2f}"
            raise ValueError(
                f"the voice sample of {known.name!r} ({known.audio_path}) lasts {lasts} s, "
                f"not {REFERENCE_MIN_S:g}-{REFERENCE_MAX_S:g} s"
            )
        references[known.name] = reference_embedding(model, audio)
    return references


def _load_pyannote(settings: DiarizationSettings, device: str) -> Diarizer:
    if settings.pyannote_pipeline_path is None:
        raise ValueError("diarization.backend=pyannote needs diarization.pyannote_pipeline_path (a local pipeline)")
    try:
        from pyannote.audio import Pipeline
    except ImportError as exc:
        raise ValueError("diarization.backend=pyannote needs the pyannote.audio package installed") from exc
    import torch

    pipeline = Pipeline.from_pretrained(str(settings.pyannote_pipeline_path))
    pipeline.to(torch.device(device))
    return Diarizer("pyannote", pipeline, device, settings)


def _diarize_pyannote(
    model: Diarizer, audio: np.ndarray, num_speakers: int | None, min_speakers: int, max_speakers: int
) -> list[SpeakerTurn]:
    import torch

    waveform = {"waveform": torch.from_numpy(audio).unsqueeze(0), "sample_rate": SAMPLE_RATE}
    if num_speakers:
        bounds = {"num_speakers": num_speakers}
    else:
        bounds = {"min_speakers": min_speakers, "max_speakers": max_speakers}
    annotation = model.encoder(waveform, **bounds)
    annotation = getattr(annotation, "speaker_diarization", annotation)
    return [
        SpeakerTurn(float(segment.start), float(segment.end), str(label))
        for segment, _, label in annotation.itertracks(yield_label=True)
    ]
