"""A real ``isoscribe run`` stopped by real signals: nothing interrupted counts as failed, and the speech
a stop interrupted after it finished is not decoded again."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from isoscribe.ledger import FileStatus, Ledger

CLIP = "librispeech/1089-134686-0001.wav"


class _Run:
    """The CLI in a child process, its stderr read line by line; ``wait_for`` blocks until a line has ``text``."""

    def __init__(self, command: list[str], env: dict[str, str]) -> None:
        self.process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stderr:
            with self._changed:
                self.lines.append(line)
                self._changed.notify_all()
        with self._changed:
            self.lines.append("<eof>")
            self._changed.notify_all()

    def wait_for(self, text: str, timeout_s: float = 300) -> None:
        with self._changed:
            found = self._changed.wait_for(lambda: any(text in line or line == "<eof>" for line in self.lines), timeout_s)
        assert found and any(text in line for line in self.lines), f"no {text!r} in:\n{self.log[-3000:]}"

    def finish(self, timeout_s: float) -> int:
        try:
            code = self.process.wait(timeout_s)
        finally:
            if self.process.poll() is None:
                self.process.kill()
        self._reader.join(10)
        return code

    @property
    def log(self) -> str:
        return "".join(self.lines)


@pytest.fixture
def silent_llm_server():
    """An OpenAI-compatible address that accepts connections and never answers: the summary stage stays
    running for as long as the test needs, whatever the machine's speed."""
    server = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                held.append(server.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}/v1"
    server.close()
    for connection in held:
        connection.close()


@pytest.mark.slow
def test_a_stop_during_the_summary_counts_no_failure_and_the_rerun_does_not_decode_again(
    shared_data: Path, tmp_path: Path, silent_llm_server: str
) -> None:
    out_dir = tmp_path / "out"
    command = [sys.executable, "-m", "isoscribe.cli", "run", str(shared_data / CLIP), "--out", str(out_dir),
               "--model", "tiny.en", "--no-diarize", "--summarize", "--formats", "json,summary", "--no-progress"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("ISOSCRIBE_")}
    env.update(ISOSCRIBE_BATCH__STOP_GRACE_S="600", ISOSCRIBE_LLM__BACKEND="openai",
               ISOSCRIBE_LLM__BASE_URL=silent_llm_server, ISOSCRIBE_ASR__CPU_THREADS="1", ISOSCRIBE_BATCH__WORKERS="1")
    name = Path(CLIP).stem

    stopped = _Run(command, env)
    stopped.wait_for(f"event=file_stage file={name} stage=summary")
    stopped.process.send_signal(signal.SIGHUP)  # a closed terminal stops the batch like SIGTERM
    stopped.wait_for("event=batch_stopping")
    stopped.process.send_signal(signal.SIGTERM)  # a second stop does not wait out the 600 s grace
    code = stopped.finish(timeout_s=120)
    assert code == 128 + signal.SIGHUP, stopped.log[-3000:]
    assert "event=batch_stop_now" in stopped.log
    assert f"event=file_finished file={name} status=interrupted done=0 failed=0" in stopped.log, stopped.log[-3000:]
    assert "failed=1" not in stopped.log
    report = json.loads((out_dir / "report.json").read_text())
    assert report["counts"]["failed"] == 0 and report["counts"]["interrupted"] == 1
    with Ledger.in_dir(out_dir) as ledger:
        [row] = ledger.rows()
        assert row.status == FileStatus.QUEUED and row.error is None

    # The rerun's summary gives up on the silent server (an empty summary with a warning; the file is done).
    resumed = _Run(command, {**env, "ISOSCRIBE_ISOLATION__LLM_TIMEOUT_S": "3", "ISOSCRIBE_ISOLATION__LOAD_TIMEOUT_S": "3"})
    assert resumed.finish(timeout_s=600) == 0, resumed.log[-3000:]
    assert f"event=file_resumed file={(shared_data / CLIP).resolve()} after=speech" in resumed.log
    assert f"file={name} stage=speech" not in resumed.log and f"file={name} stage=probe" not in resumed.log
    with sqlite3.connect(out_dir / "ledger.sqlite") as db:
        speech_runs = db.execute("SELECT COUNT(*) FROM stage_runs WHERE stage = 'speech'").fetchone()[0]
    assert speech_runs == 1, "the file's speech was decoded once, by the stopped run"
    assert (out_dir / name / f"{name}.summary.md").is_file() and (out_dir / name / f"{name}.json").is_file()
    with Ledger.in_dir(out_dir) as ledger:
        assert [row.status for row in ledger.rows()] == [FileStatus.DONE]
