"""Shared by the batch tests that use a test double of the executor."""

from __future__ import annotations

from pathlib import Path


def write_inputs(tmp_path: Path, *names: str) -> list[Path]:
    """Tiny input files under ``tmp_path/in``, each holding its own name (so each has its own content hash)."""
    paths = []
    for name in names:
        path = tmp_path / "in" / name
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(name.encode())
        paths.append(path)
    return paths
