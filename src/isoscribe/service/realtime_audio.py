"""A live session's audio as the server holds it: PCM16 bytes, addressed by seconds since the session began.

The server never decodes or resamples this audio; workers get slices of it.
"""

from __future__ import annotations

__all__ = ["AudioBuffer"]


class AudioBuffer:
    """The session's PCM16 bytes from ``origin`` (a sample index) to now."""

    def __init__(self, sample_rate_hz: int) -> None:
        self.sample_rate_hz = sample_rate_hz
        self.origin = 0
        self.data = bytearray()

    @property
    def end_s(self) -> float:
        return (self.origin + len(self.data) // 2) / self.sample_rate_hz

    def slice(self, start_s: float, end_s: float) -> bytes:
        first, last = (max(0, self._sample(s) - self.origin) for s in (start_s, end_s))
        return bytes(self.data[2 * first : 2 * last])

    def drop_before(self, start_s: float) -> None:
        drop = min(len(self.data) // 2, max(0, self._sample(start_s) - self.origin))
        del self.data[: 2 * drop]
        self.origin += drop

    def drop_partial_sample(self) -> None:
        """Forget the first byte of a sample whose second byte never came (a clear ends the stream)."""
        if len(self.data) % 2:
            del self.data[-1]

    @property
    def start_s(self) -> float:
        return self.origin / self.sample_rate_hz

    def _sample(self, seconds: float) -> int:
        return round(seconds * self.sample_rate_hz)
