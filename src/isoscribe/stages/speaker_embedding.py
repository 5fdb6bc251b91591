"""Speaker d-vectors: speech regions cut into resemblyzer's 1.6 s windows, each embedded.

Each window labels the stretch of its region nearest its centre. The mel features are resemblyzer's,
computed in numpy (``mel_spectrogram``); the volume is normalised once for the whole file.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from isoscribe.audio import SAMPLE_RATE
from isoscribe.transcript import SpeakerWindow

__all__ = ["speaker_windows", "embed", "mel_spectrogram", "WINDOW_S", "HOP_S"]

WINDOW_S = 1.6
"""resemblyzer's partial utterance: 160 mel frames of 10 ms."""
HOP_S = 0.4
EMBED_BATCH = 64
_N_FFT, _HOP, _N_MELS, _PARTIAL_FRAMES = 400, 160, 40, 160
_NORM_TARGET_DBFS = -30.0


def speaker_windows(
    regions: list[tuple[float, float]], duration_s: float, window_s: float = WINDOW_S, hop_s: float = HOP_S
) -> list[SpeakerWindow]:
    """Windows of ``window_s`` every ``hop_s`` over each region (one centred window when it is shorter)."""
    windows: list[SpeakerWindow] = []
    for index, (region_start, region_end) in enumerate(regions):
        region_start, region_end = max(0.0, region_start), min(duration_s, region_end)
        if region_end <= region_start:
            continue
        length = region_end - region_start
        if length <= window_s:
            centre = (region_start + region_end) / 2
            starts = [centre - window_s / 2]
        else:
            count = int(np.ceil((length - window_s) / hop_s)) + 1
            starts = list(np.linspace(region_start, region_end - window_s, count))
        centres = [s + window_s / 2 for s in starts]
        bounds = [region_start] + [(a + b) / 2 for a, b in zip(centres, centres[1:])] + [region_end]
        for k, start in enumerate(starts):
            clamped = min(max(0.0, start), max(0.0, duration_s - window_s))
            windows.append(SpeakerWindow(float(clamped), float(bounds[k]), float(bounds[k + 1]), index))
    return windows


def embed(encoder: Any, device: str, audio: np.ndarray, windows: list[SpeakerWindow]) -> np.ndarray:
    """One d-vector per window (``resemblyzer.VoiceEncoder`` on ``device``), in batches of ``EMBED_BATCH``."""
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
            vectors = encoder(torch.from_numpy(mels).to(device)).cpu().numpy()
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
