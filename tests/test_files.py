"""Outputs are written atomically and are readable like any other file the user writes."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from isoscribe.files import cut_utf8, write_atomic


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


def test_a_link_is_written_through_and_a_fifo_is_written_into_not_replaced(tmp_path: Path) -> None:
    target = tmp_path / "kept" / "target.txt"
    target.parent.mkdir()
    target.write_text("old")
    link = tmp_path / "link.txt"
    link.symlink_to(target)
    write_atomic(link, "new")
    assert link.is_symlink() and target.read_text() == "new"
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # a reader waiting, as `cat fifo` would
    try:
        write_atomic(fifo, "through the pipe")
        assert os.read(reader, 100) == b"through the pipe"
    finally:
        os.close(reader)
    assert stat.S_ISFIFO(fifo.stat().st_mode)


def test_a_multibyte_name_near_the_limit_is_written_and_its_temp_name_fits_too(tmp_path: Path) -> None:
    target = tmp_path / f"{'語' * 80}.json"  # 245 bytes: kept whole in a temp name, that name would be 259
    write_atomic(target, "{}")
    assert target.read_text() == "{}"
    assert [p.name for p in tmp_path.iterdir()] == [target.name]


def test_a_cut_keeps_whole_characters_within_the_bytes() -> None:
    assert cut_utf8("ab語", 4) == "ab"
    assert cut_utf8("ab語", 5) == "ab語"
    assert cut_utf8("abc", 10) == "abc"
