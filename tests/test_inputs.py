"""Input discovery: files, recursive directories, globs and @manifests, each file once."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from isoscribe.inputs import InputError, discover_inputs


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    for name in ["a.wav", "b.flac", "notes.txt", "sub/c.mp3", "sub/deeper/d.WAV", "sub/readme.md"]:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    return tmp_path


def test_directory_is_searched_recursively_for_audio_only(tree: Path) -> None:
    found = discover_inputs([tree])
    assert [p.relative_to(tree).as_posix() for p in found] == ["a.wav", "b.flac", "sub/c.mp3", "sub/deeper/d.WAV"]


def test_named_file_is_taken_whatever_its_extension(tree: Path) -> None:
    assert discover_inputs([tree / "notes.txt"]) == [(tree / "notes.txt").resolve()]


def test_glob_keeps_audio_and_expands_matched_directories(tree: Path) -> None:
    found = discover_inputs([str(tree / "*")])
    names = sorted(p.name for p in found)
    assert names == ["a.wav", "b.flac", "c.mp3", "d.WAV"]
    assert [p.name for p in discover_inputs([str(tree / "**" / "*.mp3")])] == ["c.mp3"]


def test_a_glob_under_the_home_folder_is_expanded(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tree))
    assert sorted(p.name for p in discover_inputs(["~/sub/*.mp3"])) == ["c.mp3"]


def test_an_existing_file_with_glob_characters_in_its_name_is_that_file(tree: Path) -> None:
    named = tree / "Talk [dQw4w9WgXcQ].wav"
    named.write_bytes(b"x")
    assert discover_inputs([str(named)]) == [named.resolve()]


def test_a_link_keeps_its_own_name_and_counts_once_with_its_target(tree: Path, caplog) -> None:
    link = tree / "meeting-2024-05-01.wav"
    link.symlink_to(tree / "a.wav")
    caplog.set_level(logging.INFO, logger="isoscribe")
    assert discover_inputs([link, tree / "a.wav"]) == [link]
    assert f"event=input_listed_twice file={tree / 'a.wav'} runs_as={link}" in caplog.text, "not dropped silently"


def test_a_linked_folder_inside_a_folder_is_searched_and_a_link_back_up_is_no_loop(tree: Path, tmp_path_factory) -> None:
    """A folder of links to recording folders ran none of them: rglob does not follow linked folders."""
    elsewhere = tmp_path_factory.mktemp("nas")
    (elsewhere / "e.ogg").write_bytes(b"x")
    (tree / "sub" / "nas").symlink_to(elsewhere)
    (tree / "sub" / "deeper" / "up").symlink_to(tree)
    assert [p.relative_to(tree).as_posix() for p in discover_inputs([tree])] == [
        "a.wav", "b.flac", "sub/c.mp3", "sub/deeper/d.WAV", "sub/nas/e.ogg",
    ]


def test_manifest_lines_are_relative_to_the_manifest(tree: Path) -> None:
    manifest = tree / "list.txt"
    manifest.write_text(f"# batch\n\nsub/c.mp3\n{tree / 'a.wav'}\n")
    assert [p.name for p in discover_inputs([f"@{manifest}"])] == ["c.mp3", "a.wav"]


def test_each_file_once_in_first_seen_order(tree: Path) -> None:
    found = discover_inputs([tree / "sub" / "c.mp3", tree, str(tree / "a.wav")])
    assert [p.name for p in found] == ["c.mp3", "a.wav", "b.flac", "d.WAV"]


@pytest.mark.parametrize(
    "spec, message",
    [("missing.wav", "input not found"), ("nothing-*.wav", "no audio files match"), ("@absent.txt", "manifest not found")],
)
def test_inputs_that_name_nothing_are_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, spec: str, message: str) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError, match=message):
        discover_inputs([spec])


def test_manifest_entry_that_does_not_exist_names_its_line(tree: Path) -> None:
    manifest = tree / "list.txt"
    manifest.write_text("a.wav\ngone.wav\n")
    with pytest.raises(InputError, match=r"list.txt:2: file not found: gone.wav"):
        discover_inputs([f"@{manifest}"])


@pytest.mark.parametrize(
    "encoded",
    [b"\xef\xbb\xbfsub/c.mp3\r\na.wav\r\n", "sub/c.mp3\r\na.wav\r\n".encode("utf-16")],
    ids=["utf-8 with BOM", "utf-16 (Notepad's Unicode)"],
)
def test_a_manifest_saved_by_windows_tools_is_read(tree: Path, encoded: bytes) -> None:
    """A UTF-8 byte-order mark was read into the first path ('file not found: \ufeffsub/c.mp3'); UTF-16 was a
    UnicodeDecodeError traceback."""
    manifest = tree / "list.txt"
    manifest.write_bytes(encoded)
    assert [p.name for p in discover_inputs([f"@{manifest}"])] == ["c.mp3", "a.wav"]


def test_a_manifest_that_lists_nothing_or_is_not_text_is_an_error(tree: Path) -> None:
    """An empty manifest was a run of no file with exit 0; README: an input that matches nothing exits 2."""
    manifest = tree / "list.txt"
    manifest.write_text("# to do\n\n")
    with pytest.raises(InputError, match="no audio files listed in .*list.txt"):
        discover_inputs([f"@{manifest}"])
    manifest.write_bytes(b"a.wav\n\xff\xfe\x00")
    with pytest.raises(InputError, match=r"manifest .*list.txt is not UTF-8 text \(byte 6"):
        discover_inputs([f"@{manifest}"])


def test_directory_without_audio_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no audio files under"):
        discover_inputs([tmp_path / "empty"])
