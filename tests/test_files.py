"""Outputs are written atomically and are readable like any other file the user writes."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from isoscribe.files import write_atomic


@pytest.mark.parametrize(("umask", "expected_mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_written_files_follow_the_umask(tmp_path: Path, umask: int, expected_mode: int) -> None:
    previous = os.umask(umask)
    try:
        write_atomic(tmp_path / "out" / "a.txt", "hello")
    finally:
        os.umask(previous)
    written = tmp_path / "out" / "a.txt"
    assert written.read_text() == "hello"
    assert stat.S_IMODE(written.stat().st_mode) == expected_mode


def test_a_failed_write_leaves_the_old_file_and_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "a.txt"
    write_atomic(target, "old")
    with pytest.raises(TypeError):
        write_atomic(target, 42)  # type: ignore[arg-type]
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]
