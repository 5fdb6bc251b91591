"""Speaker clustering of speaker vectors: spectral clustering on a refined cosine affinity, with the
speaker count fixed or found automatically (a ``CountRule`` on average-linkage clusters, raised by
NME-SC's eigengap count on longer files, or the eigengap alone). It sees at most ``MAX_CLUSTERED_WINDOWS`` windows (an evenly spaced subsample when there are
more); every window is then assigned to the nearest cluster centroid."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from isoscribe.stages.local_speakers import UnitTree

__all__ = [
    "CountRule",
    "cluster_embeddings",
    "clustered_sample",
    "count_speakers",
    "count_units",
    "nme_count",
    "with_eigengap",
    "linkage_tree",
    "unit_centroids",
    "EIGENGAP_MIN_WINDOWS",
    "MAX_CLUSTERED_WINDOWS",
    "MIN_WINDOWS_PER_SPEAKER",
    "RESEMBLYZER_RULE",
    "RESEMBLYZER_UNITS_RULE",
]

MAX_CLUSTERED_WINDOWS = 1500
"""Bound on the clustering input: its affinity matrices are 1500² float64 = 18 MB each."""
MIN_WINDOWS_PER_SPEAKER = 8
"""resemblyzer's rule gives each speaker at least this many windows (~3 s of speech): on a short
single-speaker clip (JFK, 11 windows) the eigengap alone found 7 speakers of 1–2 windows each."""
EIGENGAP_MIN_WINDOWS = 80
"""NME-SC's count is used from this many windows on (NeMo's ``enhanced_count_thres``; not tuned here): the
eigengap of a few dozen windows is noise (falcon's 24 windows: 7 speakers of 3)."""
NME_MAX_WINDOWS = 512
"""NME-SC sees at most this many windows, evenly spaced (NeMo's ``nme_mat_size``)."""
NME_NEIGHBOUR_SHARE = 0.25
NME_SEARCH_STEPS = 30
"""NME-SC tries up to ``NME_SEARCH_STEPS`` neighbour counts p up to ``NME_NEIGHBOUR_SHARE`` of the windows
(NeMo's ``max_rp_threshold`` and ``sparse_search_volume``)."""
AFFINITY_KEEP = 0.4
"""Share of each row of the affinity matrix kept by the refinement (tuned on the pyannote sample
and the espeak-ng dialogue: 0.3–0.5 all find two speakers there)."""


@dataclass(frozen=True)
class CountRule:
    """How many speakers: average-linkage clusters (cosine) cut at ``linkage_distance``; those with at
    least ``min_windows`` windows and ``min_share`` of all windows are speakers, and speakers whose
    centroids are more alike than ``merge_similarity`` are one voice that linkage split (a reader
    drifting over an hour). With ``eigengap_floor``, NME-SC's count raises the rule's (``with_eigengap``)."""

    linkage_distance: float
    merge_similarity: float
    min_windows: int = MIN_WINDOWS_PER_SPEAKER
    min_share: float = 0.0
    eigengap_floor: bool = False

    def smallest_speaker(self, windows: int) -> int:
        """Fewest windows a cluster of ``windows`` needs to be a speaker (never more than half and one)."""
        return min(max(self.min_windows, int(np.ceil(self.min_share * windows))), windows // 2 + 1)


RESEMBLYZER_UNITS_RULE = CountRule(
    linkage_distance=0.25, merge_similarity=0.85, min_windows=2, min_share=0.06, eigengap_floor=True)
"""The rule on segmentation's local-speaker units (``count_units``; the default, with ``diarization.overlap``),
raised by NME-SC's count, chosen like ``RESEMBLYZER_RULE`` below on the same three sources (``benchmarks/
speaker_count.py``). Held out, each source got: renders 18 of 20 (the rule alone: 8), real recordings 5 of 6
(5; tst00 not), long files 2 of 4 (2): mean count accuracy over the sources 0.74 against 0.58
(``diarization.resemblyzer.count`` in ``bench/results/accuracy.json``). On all three sources it counts
20 renders, 5 real recordings and 3 long files right, and the 60-minute file 5 whole and from pieces."""
RESEMBLYZER_RULE = CountRule(
    linkage_distance=0.35, merge_similarity=0.9, min_windows=3, min_share=0.01, eigengap_floor=True)
"""The rule on windows, when segmentation is off (``diarization.overlap = false``), chosen the same way:
held out, renders 18 of 20, real recordings 4 of 6, long files 3 of 4 (mean 0.77; the rule alone 0.41:
11, 4 and 0); ``diarization.resemblyzer.count_on_windows``."""


def cluster_embeddings(
    embeddings: np.ndarray,
    num_speakers: int | None,
    min_speakers: int = 1,
    max_speakers: int = 8,
    count_method: str = "linkage",
    rule: CountRule = RESEMBLYZER_RULE,
    units: UnitTree | None = None,
) -> np.ndarray:
    """Cluster L2-normalised embeddings; labels are 0..k-1. Memory is linear in len(embeddings).

    Spectral clustering on a refined cosine affinity (Wang et al. 2018, "Speaker diarization with
    LSTM": keep each row's strongest ``AFFINITY_KEEP`` share, symmetrise, diffuse, normalise rows).
    Without a fixed count, ``count_method`` finds it within [min, max]: "linkage" applies ``rule``
    (``count_speakers``, or ``count_units`` on segmentation's local speakers when ``units`` are given),
    "eigengap" takes the largest eigengap (it merges voices: 16 of 32 rendered
    meetings right against 32 for linkage). Only ``clustered_sample`` is clustered; every embedding
    then goes to its nearest cluster centroid.
    """
    from threadpoolctl import threadpool_limits

    count = len(embeddings)
    if count < 2:
        return np.zeros(count, dtype=int)
    # Small matrices: BLAS/OpenMP threads only add spin-waiting on a busy machine.
    with threadpool_limits(limits=1):
        return _cluster(embeddings, num_speakers, min_speakers, max_speakers, count_method, rule, units)


def clustered_sample(embeddings: np.ndarray) -> np.ndarray:
    """The rows clustering sees: at most ``MAX_CLUSTERED_WINDOWS``, evenly spaced, as float64."""
    count = len(embeddings)
    sample = np.unique(np.linspace(0, count - 1, min(count, MAX_CLUSTERED_WINDOWS)).round().astype(int))
    return embeddings[sample].astype(np.float64)


def linkage_tree(points: np.ndarray) -> np.ndarray:
    """The average-linkage tree (cosine distance) that ``count_speakers`` cuts."""
    from scipy.cluster.hierarchy import linkage

    return linkage(points, "average", metric="cosine")


def count_speakers(points: np.ndarray, rule: CountRule, tree: np.ndarray | None = None) -> int:
    """Speakers among ``points`` by ``rule`` (``tree``: their ``linkage_tree``, when already built)."""
    from scipy.cluster.hierarchy import fcluster

    tree = linkage_tree(points) if tree is None else tree
    clusters = fcluster(tree, rule.linkage_distance, "distance")
    sizes = np.bincount(clusters)
    big = np.flatnonzero(sizes >= rule.smallest_speaker(len(points)))
    if len(big) <= 1:
        return 1
    sums = [points[clusters == label].sum(axis=0) for label in big]
    return len(_merge_alike(sums, rule.merge_similarity))


def count_units(units: UnitTree, rule: CountRule) -> int:
    """Speakers among segmentation's local-speaker units by ``rule``: clusters of their tree cut at the
    rule's distance with enough windows, then merged like ``count_speakers``'s, never two clusters heard
    in the same chunk."""
    from scipy.cluster.hierarchy import fcluster

    if units.tree is None:
        return 1
    clusters = fcluster(units.tree, rule.linkage_distance, "distance")
    smallest = rule.smallest_speaker(units.total_windows)
    big = [label for label in np.unique(clusters) if units.windows[clusters == label].sum() >= smallest]
    if len(big) <= 1:
        return 1
    sums = [units.sums[clusters == label].sum(axis=0) for label in big]
    chunks = [set(units.chunks[clusters == label].tolist()) for label in big]
    return len(_merge_alike(sums, rule.merge_similarity, chunks))


def with_eigengap(rule_count: int, eigengap_count: int) -> int:
    """The count: the rule's, raised to NME-SC's where the rule hears more than one voice. A cosine cut
    does not transfer between sources (resemblyzer: distinct espeak voices 0.56-0.94 alike, pyannote's two
    callers 0.86, one AMI speaker's units as low as 0.63), so a rule chosen on real recordings merged
    the voices of renders; the eigengap weighs each file's own structure. It undercounts real files (3
    on the 60-minute file of 5), hence only a lower bound, and it cannot say "one speaker"."""
    return rule_count if rule_count <= 1 else max(rule_count, eigengap_count)


def nme_count(points: np.ndarray, max_speakers: int = 8) -> int:
    """Speakers by normalized maximum eigengap spectral clustering (NME-SC, Park et al. 2019, as in NeMo),
    or 1 under ``EIGENGAP_MIN_WINDOWS`` points. For each neighbour count p, each row of the min-max
    scaled cosine affinity keeps its p strongest entries as 1 (then symmetrised); the p with the least
    p / (largest eigengap among the Laplacian's first ``max_speakers`` eigenvalues / its largest one)
    wins, and the position of its largest gap is the count."""
    count = len(points)
    if count < EIGENGAP_MIN_WINDOWS:
        return 1
    sample = points[np.unique(np.linspace(0, count - 1, min(count, NME_MAX_WINDOWS)).round().astype(int))]
    sample = sample / np.maximum(np.linalg.norm(sample, axis=1, keepdims=True), 1e-9)
    affinity = sample @ sample.T
    affinity = (affinity - affinity.min()) / max(float(affinity.max() - affinity.min()), 1e-12)
    nearest = np.argsort(-affinity, axis=1)
    most_neighbours = max(2, int(NME_NEIGHBOUR_SHARE * len(sample)))
    best_ratio, speakers = np.inf, 1
    for neighbours in np.unique(np.linspace(1, most_neighbours, NME_SEARCH_STEPS).round().astype(int)):
        graph = np.zeros_like(affinity)
        np.put_along_axis(graph, nearest[:, :neighbours], 1.0, axis=1)
        graph = (graph + graph.T) / 2
        eigenvalues = np.linalg.eigvalsh(np.diag(graph.sum(axis=1)) - graph)
        gaps = np.diff(eigenvalues[: min(max_speakers, len(sample) - 1) + 1])
        ratio = neighbours / (float(gaps.max()) / (eigenvalues[-1] + 1e-10) + 1e-10)
        if ratio < best_ratio:
            best_ratio, speakers = ratio, int(np.argmax(gaps)) + 1
    return speakers


def _merge_alike(
    sums: list[np.ndarray], merge_similarity: float, chunks: list[set[int]] | None = None
) -> list[np.ndarray]:
    """Joins the most alike pair of clusters (given as sums of their points) while their unit centroids
    are more alike than ``merge_similarity``; with ``chunks`` (each cluster's), never two heard in one chunk."""
    while len(sums) > 1:
        centroids = np.stack([s / max(float(np.linalg.norm(s)), 1e-9) for s in sums])
        similarity = centroids @ centroids.T
        np.fill_diagonal(similarity, -1.0)
        if chunks is not None:
            for a, b in itertools.combinations(range(len(sums)), 2):
                if chunks[a] & chunks[b]:
                    similarity[a, b] = similarity[b, a] = -1.0
        kept, merged = np.unravel_index(np.argmax(similarity), similarity.shape)
        if similarity[kept, merged] <= merge_similarity:
            break
        sums[kept] = sums[kept] + sums[merged]
        del sums[merged]
        if chunks is not None:
            chunks[kept] = chunks[kept] | chunks[merged]
            del chunks[merged]
    return sums


def _cluster(
    embeddings: np.ndarray,
    num_speakers: int | None,
    min_speakers: int,
    max_speakers: int,
    count_method: str,
    rule: CountRule,
    units: UnitTree | None,
) -> np.ndarray:
    points = clustered_sample(embeddings)
    eigenvalues, eigenvectors = np.linalg.eigh(_refined_affinity(points))
    eigenvalues, eigenvectors = eigenvalues[::-1], eigenvectors[:, ::-1]
    if num_speakers:
        speakers = min(num_speakers, len(points))
    else:
        most = min(max_speakers, len(points) - 1, max(min_speakers, len(points) // rule.min_windows))
        if count_method == "eigengap":
            speakers = _eigengap_count(eigenvalues, min_speakers, most)
        else:
            found = count_units(units, rule) if units is not None else count_speakers(points, rule)
            if found > 1 and rule.eigengap_floor:
                found = with_eigengap(found, nme_count(points, max_speakers))
            speakers = min(max(found, min_speakers), most)
    if speakers <= 1:
        return np.zeros(len(embeddings), dtype=int)
    labels = _kmeans(eigenvectors[:, :speakers], speakers)
    if labels.max() == 0:
        return np.zeros(len(embeddings), dtype=int)
    centroids = _centroid_matrix(points, labels)
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


def unit_centroids(points: np.ndarray, labels: np.ndarray) -> dict[int, np.ndarray]:
    """The unit-length mean of each cluster's points, by label, in label order."""
    centroids = {}
    for label in np.unique(labels):
        mean = points[labels == label].mean(axis=0)
        centroids[int(label)] = mean / max(float(np.linalg.norm(mean)), 1e-9)
    return centroids


def _centroid_matrix(points: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``unit_centroids`` as rows, for labels 0..k-1."""
    return np.stack(list(unit_centroids(points, labels).values()))
