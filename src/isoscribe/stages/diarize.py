"""Diarization stage: resemblyzer speaker embeddings over speech regions, then clustering.

Speech regions (Silero VAD; the speech stage falls back to the transcript's words) are cut into
1.6 s windows every ``HOP_S``; each window gets a d-vector, and each window labels the stretch of
its region nearest its centre. Clustering is spectral on a refined cosine affinity, with the
speaker count fixed or found automatically (``diarization.speaker_count``: average-linkage clusters
of the d-vectors cut at a calibrated cosine distance, or the eigengap). It sees at most
``MAX_CLUSTERED_WINDOWS`` windows (an evenly spaced subsample when there are more); every window is
then assigned to the nearest cluster centroid. So memory grows linearly with audio length: the
affinity matrices are bounded, the embeddings are 1 KB a window, windows are embedded in fixed-size
batches, and VAD runs over 5-minute pieces (60 minutes: 1.06 GB peak RSS, measured by ``tests/test_diarize_long.py``).

An optional pyannote backend is used when ``diarization.backend == "pyannote"`` and a local pipeline
path is configured.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from isoscribe.audio import SAMPLE_RATE, decode_audio
from isoscribe.config import DiarizationSettings, Settings
from isoscribe.logs import log_event
from isoscribe.stages import vad
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
    "cluster_pieces",
    "cluster_embeddings",
    "WINDOW_S",
    "HOP_S",
    "MAX_CLUSTERED_WINDOWS",
    "KNOWN_SPEAKER_MIN_SIMILARITY",
    "reference_embedding",
    "name_known_speakers",
]

logger = logging.getLogger("isoscribe.diarize")

WINDOW_S = 1.6
"""resemblyzer's partial utterance: 160 mel frames of 10 ms."""
HOP_S = 0.4
MAX_CLUSTERED_WINDOWS = 1500
"""Bound on the clustering input: its affinity matrices are 1500² float64 = 18 MB each."""
MIN_WINDOWS_PER_SPEAKER = 8
"""An automatic count gives each speaker at least this many windows (~3 s of speech): on a short
single-speaker clip (JFK, 11 windows) the eigengap alone found 7 speakers of 1–2 windows each."""
AFFINITY_KEEP = 0.4
"""Share of each row of the affinity matrix kept by the refinement (tuned on the pyannote sample
and the espeak-ng dialogue: 0.3–0.5 all find two speakers there)."""
LINKAGE_DISTANCE = 0.3
"""Average-linkage clusters further apart than this (mean cosine distance between their windows)
are different speakers. Calibrated on espeak-ng meetings of 2–5 voices (0.28–0.30 counted all 32
right; 0.32 merged voices, 0.26 split them) and checked on the shared real recordings."""
MERGE_SIMILARITY = 0.92
"""Clusters whose centroids are more alike than this (cosine) are one voice that linkage split, and
are merged. Between different speakers it was at most 0.89 on 32 rendered meetings and 0.91 for the
pyannote sample's two callers inside a 20-minute file; within one voice 0.93-0.95 (the sonnet's
reader, alone and in that file). A single-speaker check on the silhouette collapsed that 20-minute
file of five voices to one speaker when it came in pieces (silhouette 0.13 of its eight clusters)."""
KNOWN_SPEAKER_MIN_SIMILARITY = 0.85
"""A cluster takes a known speaker's name when the cosine similarity of its centroid and the mean
d-vector of the speaker's sample reaches this. Measured on a rendered three-voice meeting with samples
of other sentences: 0.94-0.97 for the same voice, at most 0.76 between different voices."""
EMBED_BATCH = 64
_N_FFT, _HOP, _N_MELS, _PARTIAL_FRAMES = 400, 160, 40, 160
_NORM_TARGET_DBFS = -30.0


@dataclass
class Diarizer:
    backend: str
    encoder: Any
    """resemblyzer.VoiceEncoder, or a pyannote Pipeline."""
    device: str
    settings: DiarizationSettings


def load(settings: Settings) -> Diarizer:
    import torch

    diarization = settings.diarization
    device = diarization.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if diarization.backend == "pyannote":
        return _load_pyannote(diarization, device)
    from resemblyzer import VoiceEncoder

    if device == "cpu":
        # The encoder's per-step matrices are tiny: threads gain nothing, and on a busy machine
        # OpenMP spin-waiting made 2 threads 10x slower than 1 (measured: 9-18 s vs 0.9 s a batch).
        torch.set_num_threads(1)
    encoder = VoiceEncoder(device, verbose=False)
    encoder.eval()
    return Diarizer("resemblyzer", encoder, device, diarization)


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
        turns = _cluster_turns(settings, vectors, request, references)
    log_event(
        logger, "diarized", backend=model.backend, regions=len(regions), turns=len(turns),
        speakers=len({t.speaker for t in turns}), wall_s=time.perf_counter() - started,
    )
    return turns


def speaker_vectors(model: Diarizer, audio: np.ndarray, regions: list[tuple[float, float]]) -> SpeakerVectors:
    """One speaker vector per window over ``regions`` (seconds into ``audio``); resemblyzer only."""
    windows = _windows(regions, audio.size / SAMPLE_RATE)
    return SpeakerVectors(windows, _embed(model, audio, windows))


def cluster_pieces(model: Diarizer, request: SpeakerClusterRequest) -> list[SpeakerTurn]:
    """Speaker turns of a whole file from its pieces' vectors, clustered together (labels agree across pieces)."""
    windows: list[SpeakerWindow] = []
    for piece in request.pieces:
        first_region = windows[-1].region + 1 if windows else 0
        windows += [replace(w, region=w.region + first_region) for w in piece.windows]
    vectors = [piece.vectors for piece in request.pieces if len(piece.windows)]
    merged = SpeakerVectors(windows, np.concatenate(vectors) if vectors else np.zeros((0, 256), np.float32))
    references = _references(model, request) if request.known_speakers else {}
    return _cluster_turns(model.settings, merged, request, references)


def _cluster_turns(
    settings: DiarizationSettings,
    vectors: SpeakerVectors,
    request: SpeechRequest | SpeakerClusterRequest,
    references: dict[str, np.ndarray] | None = None,
) -> list[SpeakerTurn]:
    """Turns of the clustered windows; clusters that sound like a reference take its name."""
    bounds = _speaker_bounds(settings, request)
    labels = _smooth(cluster_embeddings(vectors.vectors, *bounds, settings.speaker_count), vectors.windows)
    turns = _turns(vectors.windows, labels)
    if references and len(labels):
        turns = name_known_speakers(turns, _label_centroids(vectors.vectors, labels), references)
    return _relabel(turns)


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


def _windows(regions: list[tuple[float, float]], duration_s: float) -> list[SpeakerWindow]:
    windows: list[SpeakerWindow] = []
    for index, (region_start, region_end) in enumerate(regions):
        region_start, region_end = max(0.0, region_start), min(duration_s, region_end)
        if region_end <= region_start:
            continue
        length = region_end - region_start
        if length <= WINDOW_S:
            centre = (region_start + region_end) / 2
            starts = [centre - WINDOW_S / 2]
        else:
            count = int(np.ceil((length - WINDOW_S) / HOP_S)) + 1
            starts = list(np.linspace(region_start, region_end - WINDOW_S, count))
        centres = [s + WINDOW_S / 2 for s in starts]
        bounds = [region_start] + [(a + b) / 2 for a, b in zip(centres, centres[1:])] + [region_end]
        for k, start in enumerate(starts):
            clamped = min(max(0.0, start), max(0.0, duration_s - WINDOW_S))
            windows.append(SpeakerWindow(float(clamped), float(bounds[k]), float(bounds[k + 1]), index))
    return windows


def _embed(model: Diarizer, audio: np.ndarray, windows: list[SpeakerWindow]) -> np.ndarray:
    import torch

    gain = _volume_gain(audio)
    width = int(WINDOW_S * SAMPLE_RATE)
    embeddings = np.zeros((len(windows), 256), dtype=np.float32)
    for first in range(0, len(windows), EMBED_BATCH):
        batch = windows[first : first + EMBED_BATCH]
        wavs = np.zeros((len(batch), width), dtype=np.float32)
        for row, window in enumerate(batch):
            offset = int(window.start * SAMPLE_RATE)
            piece = audio[offset : offset + width]
            wavs[row, : piece.size] = piece * gain
        mels = np.ascontiguousarray(mel_spectrogram(wavs)[:, :_PARTIAL_FRAMES, :])
        with torch.inference_mode():
            vectors = model.encoder(torch.from_numpy(mels).to(model.device)).cpu().numpy()
        embeddings[first : first + len(batch)] = np.nan_to_num(vectors)
    return embeddings


def mel_spectrogram(wavs: np.ndarray) -> np.ndarray:
    """resemblyzer's input features for a batch of 16 kHz waveforms: (batch, frames, 40) power mel.

    The same numbers as ``librosa.feature.melspectrogram(n_fft=400, hop_length=160, n_mels=40)``
    (centred frames, zero padding, periodic Hann, Slaney mel scale and norm), in plain numpy:
    importing librosa's lazy submodules costs seconds per worker, more than the diarization itself.
    """
    padded = np.pad(wavs, ((0, 0), (_N_FFT // 2, _N_FFT // 2)))
    frames = 1 + (padded.shape[1] - _N_FFT) // _HOP
    index = np.arange(_N_FFT)[None, :] + _HOP * np.arange(frames)[:, None]
    spectrum = np.abs(np.fft.rfft(padded[:, index] * _hann(_N_FFT), axis=-1)) ** 2
    return np.einsum("btf,mf->btm", spectrum, _mel_filterbank()).astype(np.float32)


def _hann(length: int) -> np.ndarray:
    return 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(length) / length)


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    hz = np.asarray(hz, dtype=np.float64)
    linear = hz / (200.0 / 3)
    log_part = 15.0 + np.log(np.maximum(hz, 1e-10) / 1000.0) / (np.log(6.4) / 27.0)
    return np.where(hz >= 1000.0, log_part, linear)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    linear = mel * (200.0 / 3)
    log_part = 1000.0 * np.exp((np.log(6.4) / 27.0) * (mel - 15.0))
    return np.where(mel >= 15.0, log_part, linear)


def _mel_filterbank() -> np.ndarray:
    """Slaney-style triangular filters, area-normalised (librosa.filters.mel's default)."""
    fft_hz = np.linspace(0, SAMPLE_RATE / 2, 1 + _N_FFT // 2)
    mel_hz = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(SAMPLE_RATE / 2), _N_MELS + 2))
    spacing = np.diff(mel_hz)
    ramps = mel_hz[:, None] - fft_hz[None, :]
    lower = -ramps[:-2] / spacing[:-1, None]
    upper = ramps[2:] / spacing[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    return weights * (2.0 / (mel_hz[2:] - mel_hz[:-2]))[:, None]


def _volume_gain(audio: np.ndarray) -> float:
    """resemblyzer's volume normalization (raise to -30 dBFS, never lower) as one factor for the file."""
    rms = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64)))) if audio.size else 0.0
    if rms <= 1e-9:
        return 1.0
    change_db = _NORM_TARGET_DBFS - 20 * np.log10(rms)
    return float(10 ** (change_db / 20)) if change_db > 0 else 1.0


def cluster_embeddings(
    embeddings: np.ndarray,
    num_speakers: int | None,
    min_speakers: int = 1,
    max_speakers: int = 8,
    count_method: str = "linkage",
) -> np.ndarray:
    """Cluster L2-normalised embeddings; labels are 0..k-1. Memory is linear in len(embeddings).

    Spectral clustering on a refined cosine affinity (Wang et al. 2018, "Speaker diarization with
    LSTM": keep each row's strongest ``AFFINITY_KEEP`` share, symmetrise, diffuse, normalise rows).
    Without a fixed count, ``count_method`` finds it within [min, max]: "linkage" counts the
    average-linkage clusters of at least ``MIN_WINDOWS_PER_SPEAKER`` windows that lie more than
    ``LINKAGE_DISTANCE`` apart, then merges clusters whose centroids are above ``MERGE_SIMILARITY``;
    "eigengap" takes the largest eigengap. On 32 rendered 2–5 voice meetings linkage counted 32 right,
    the eigengap 16 (it merges voices); ``isoscribe bench accuracy`` reports both. Only an evenly
    spaced subsample of at most ``MAX_CLUSTERED_WINDOWS`` is clustered; every embedding then goes to
    its nearest cluster centroid.
    """
    from threadpoolctl import threadpool_limits

    count = len(embeddings)
    if count < 2:
        return np.zeros(count, dtype=int)
    # Small matrices: BLAS/OpenMP threads only add spin-waiting on a busy machine.
    with threadpool_limits(limits=1):
        return _cluster(embeddings, num_speakers, min_speakers, max_speakers, count_method)


def _cluster(
    embeddings: np.ndarray, num_speakers: int | None, min_speakers: int, max_speakers: int, count_method: str
) -> np.ndarray:
    count = len(embeddings)
    sample = np.unique(np.linspace(0, count - 1, min(count, MAX_CLUSTERED_WINDOWS)).round().astype(int))
    points = embeddings[sample].astype(np.float64)
    eigenvalues, eigenvectors = np.linalg.eigh(_refined_affinity(points))
    eigenvalues, eigenvectors = eigenvalues[::-1], eigenvectors[:, ::-1]
    if num_speakers:
        speakers = min(num_speakers, len(points))
    else:
        most = min(max_speakers, len(points) - 1, max(min_speakers, len(points) // MIN_WINDOWS_PER_SPEAKER))
        if count_method == "eigengap":
            speakers = _eigengap_count(eigenvalues, min_speakers, most)
        else:
            speakers = min(max(_linkage_count(points), min_speakers), most)
    if speakers <= 1:
        return np.zeros(count, dtype=int)
    labels = _kmeans(eigenvectors[:, :speakers], speakers)
    if not num_speakers and count_method != "eigengap":
        labels = _merge_close_clusters(points, labels, min_speakers)
    if labels.max() == 0:
        return np.zeros(count, dtype=int)
    centroids = _centroids(points, labels)
    return np.argmax(embeddings @ centroids.T.astype(embeddings.dtype), axis=1)


def _refined_affinity(points: np.ndarray) -> np.ndarray:
    affinity = points @ points.T
    keep = max(1, int(np.ceil(AFFINITY_KEEP * len(points))))
    row_threshold = np.partition(affinity, -keep, axis=1)[:, -keep][:, None]
    affinity = np.where(affinity >= row_threshold, affinity, 0.01 * affinity)
    affinity = np.maximum(affinity, affinity.T)
    affinity = affinity @ affinity.T
    affinity /= np.max(affinity, axis=1, keepdims=True)
    return (affinity + affinity.T) / 2


def _eigengap_count(eigenvalues: np.ndarray, min_speakers: int, max_speakers: int) -> int:
    if max_speakers <= min_speakers:
        return max(1, max_speakers)
    values = np.maximum(eigenvalues[: max_speakers + 1], 1e-9)
    gaps = values[:-1] / values[1:]
    candidates = range(min_speakers, max_speakers + 1)
    return max(candidates, key=lambda k: gaps[k - 1])


def _linkage_count(points: np.ndarray) -> int:
    """Average-linkage clusters (cosine) cut at ``LINKAGE_DISTANCE`` with enough windows to be a speaker."""
    from scipy.cluster.hierarchy import fcluster, linkage

    clusters = fcluster(linkage(points, "average", metric="cosine"), LINKAGE_DISTANCE, "distance")
    sizes = np.bincount(clusters)
    return max(1, int(np.sum(sizes >= min(MIN_WINDOWS_PER_SPEAKER, len(points) // 2 + 1))))


def _kmeans(features: np.ndarray, clusters: int, restarts: int = 10, iterations: int = 100) -> np.ndarray:
    """k-means++ with restarts on row-normalised features (numpy: sklearn's import alone costs seconds)."""
    features = features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-9)
    rng = np.random.default_rng(0)
    best_labels, best_inertia = np.zeros(len(features), dtype=int), np.inf
    for _ in range(restarts):
        centres = _kmeans_plus_plus(features, clusters, rng)
        for _ in range(iterations):
            distances = ((features[:, None, :] - centres[None, :, :]) ** 2).sum(axis=2)
            labels = distances.argmin(axis=1)
            moved = np.stack(
                [features[labels == k].mean(axis=0) if np.any(labels == k) else centres[k] for k in range(clusters)]
            )
            if np.allclose(moved, centres):
                break
            centres = moved
        inertia = distances[np.arange(len(features)), labels].sum()
        if inertia < best_inertia:
            best_labels, best_inertia = labels, inertia
    return np.unique(best_labels, return_inverse=True)[1]


def _kmeans_plus_plus(features: np.ndarray, clusters: int, rng: np.random.Generator) -> np.ndarray:
    centres = [features[rng.integers(len(features))]]
    for _ in range(1, clusters):
        nearest = np.min([((features - c) ** 2).sum(axis=1) for c in centres], axis=0)
        total = nearest.sum()
        probabilities = nearest / total if total > 0 else None
        centres.append(features[rng.choice(len(features), p=probabilities)])
    return np.stack(centres)


def _merge_close_clusters(points: np.ndarray, labels: np.ndarray, min_speakers: int) -> np.ndarray:
    """Merges the most alike pair of clusters while their centroids are above ``MERGE_SIMILARITY``,
    keeping at least ``min_speakers``; labels stay 0..k-1."""
    labels = np.unique(labels, return_inverse=True)[1]
    while labels.max() + 1 > max(min_speakers, 1):
        centroids = _centroids(points, labels)
        similarity = centroids @ centroids.T
        np.fill_diagonal(similarity, -1.0)
        kept, merged = np.unravel_index(np.argmax(similarity), similarity.shape)
        if similarity[kept, merged] <= MERGE_SIMILARITY:
            break
        labels = np.unique(np.where(labels == merged, kept, labels), return_inverse=True)[1]
    return labels


def _centroids(points: np.ndarray, labels: np.ndarray) -> np.ndarray:
    centroids = np.stack([points[labels == k].mean(axis=0) for k in range(labels.max() + 1)])
    return centroids / np.maximum(np.linalg.norm(centroids, axis=1, keepdims=True), 1e-9)


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
        if turn.speaker.isdigit():
            turn.speaker = names.setdefault(turn.speaker, f"SPEAKER_{len(names):02d}")
    return turns


def reference_embedding(model: Diarizer, audio: np.ndarray) -> np.ndarray:
    """The unit-length mean d-vector of a voice sample's speech (the whole sample if VAD finds none)."""
    duration_s = audio.size / SAMPLE_RATE
    regions = vad.detect(audio).seconds or [(0.0, duration_s)]
    embeddings = _embed(model, audio, _windows(regions, duration_s))
    mean = embeddings.mean(axis=0)
    return mean / max(float(np.linalg.norm(mean)), 1e-9)


def name_known_speakers(
    turns: list[SpeakerTurn], centroids: dict[str, np.ndarray], references: dict[str, np.ndarray]
) -> list[SpeakerTurn]:
    """Give clusters the names of the references they match: the most similar (cluster, name) pairs
    first, each used once, none below ``KNOWN_SPEAKER_MIN_SIMILARITY``."""
    pairs = sorted(
        ((float(centroid @ reference), label, name) for label, centroid in centroids.items()
         for name, reference in references.items()),
        reverse=True,
    )
    named: dict[str, str] = {}
    for similarity, label, name in pairs:
        if similarity < KNOWN_SPEAKER_MIN_SIMILARITY:
            break
        if label not in named and name not in named.values():
            named[label] = name
    log_event(logger, "known_speakers_matched", matched=len(named), known=len(references),
              similarities=";".join(f"{label}~{name}={s:.2f}" for s, label, name in pairs))
    for turn in turns:
        turn.speaker = named.get(turn.speaker, turn.speaker)
    return turns


def _label_centroids(embeddings: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    """Unit-length mean embedding of each cluster, keyed by the label ``_turns`` gives it."""
    centroids = {}
    for label in np.unique(labels):
        mean = embeddings[labels == label].mean(axis=0)
        centroids[str(int(label))] = mean / max(float(np.linalg.norm(mean)), 1e-9)
    return centroids


def _references(model: Diarizer, request: SpeechRequest | SpeakerClusterRequest) -> dict[str, np.ndarray]:
    references = {}
    for known in request.known_speakers:
        audio = decode_audio(known.audio_path, max_duration_s=REFERENCE_MAX_S + 1.0)
        seconds = audio.size / SAMPLE_RATE
        if not REFERENCE_MIN_S <= seconds <= REFERENCE_MAX_S:
            raise ValueError(
                f"the voice sample of {known.name!r} ({known.audio_path}) lasts {seconds:.1f} s, "
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
