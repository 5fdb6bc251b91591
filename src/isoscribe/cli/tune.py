"""``isoscribe tune``: measure this machine's speech layouts now."""

from __future__ import annotations

import argparse

from isoscribe.config import Settings
from isoscribe.tuning import cache_path, calibrate

__all__ = ["tune_command"]


def tune_command(settings: Settings, args: argparse.Namespace) -> int:
    """``isoscribe tune``: measure this machine now and print the layouts, the chosen one last."""
    calibration = calibrate(settings, args.max_workers)
    for layout in calibration.layouts:
        print(
            f"{layout.workers} workers × {layout.threads} threads: {layout.audio_s_per_s:.1f} s audio/s, "
            f"peak {layout.peak_rss_mb:.0f} MB per worker"
        )
    best = calibration.best
    print(f"chosen: {best.workers} workers × {best.threads} threads (cached in {cache_path(settings.asr)})")
    return 0
