"""Events from inside the stages, through the one pipeline, to every consumer: the event stream itself,
a job's progress, the batch's partial transcript, and the tracker that folds events into a fraction."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from service_support import ServerProcess, base_config

from isoscribe.config import load_settings
from isoscribe.executors import PooledExecutor
from isoscribe.isolation import WorkerPool
from isoscribe.pipeline import (
    FileDone,
    FilePipeline,
    Policy,
    Probed,
    Progress,
    ProgressTracker,
    SegmentReady,
    StageFinished,
    StageStarted,
    speech_request,
    stage_specs,
)

SONNET = Path("long") / "sonnet001.wav"


def test_the_tracker_moves_forward_through_the_stages() -> None:
    tracker = ProgressTracker(diarize=True, summarize=True)
    fractions = []
    for event in (
        StageStarted("probe"),
        Probed(50.0),
        StageStarted("speech"),
        Progress("speech", 10.0, 50.0),
        Progress("speech", 50.0, 50.0),
        Progress("diarize", 50.0, 50.0),
        StageStarted("summary"),
        FileDone(50.0),
    ):
        tracker.update(event)
        fractions.append(tracker.fraction)
    assert fractions == sorted(fractions) and len(set(fractions)) >= 5
    assert tracker.audio_done_s == 50.0 and tracker.audio_total_s == 50.0 and fractions[-1] == 1.0


@pytest.mark.slow
def test_segments_stream_out_of_the_speech_worker_before_the_stage_finishes(shared_data: Path) -> None:
    settings = load_settings(overrides={"asr": {"device": "cpu", "cpu_threads": 1}})
    specs = stage_specs(settings)
    events: list = []
    pools = {stage: WorkerPool(specs[stage][0], limits=specs[stage][1], prespawn=False) for stage in ("probe", "speech")}
    executor = PooledExecutor(pools)
    try:
        result = FilePipeline(executor, Policy(), events.append).run(speech_request(settings, shared_data / SONNET))
    finally:
        executor.shutdown()
    kinds = [type(event).__name__ for event in events]
    segments = [event.segment for event in events if isinstance(event, SegmentReady)]
    speech_done = next(i for i, e in enumerate(events) if isinstance(e, StageFinished) and e.stage == "speech")
    assert kinds.index("Probed") < kinds.index("SegmentReady") < speech_done
    assert [segment.text for segment in segments] == [segment.text for segment in result.transcript.segments]
    progress = [event.done_s for event in events if isinstance(event, Progress) and event.stage == "speech"]
    assert progress == sorted(progress) and progress[-1] == pytest.approx(53.27, abs=0.05)
    assert isinstance(events[-1], FileDone)


@pytest.mark.slow
def test_a_job_reports_progress_while_it_runs(tmp_path: Path, shared_data: Path) -> None:
    server = ServerProcess(tmp_path, base_config(tmp_path / "data")).start()
    try:
        with server.client() as client, open(shared_data / SONNET, "rb") as audio:
            job_id = client.post("/v1/jobs", files={"file": audio}, data={"diarize": "true"}).json()["id"]
            seen = []
            deadline = time.monotonic() + 180
            while (status := client.get(f"/v1/jobs/{job_id}").json())["status"] in ("queued", "running"):
                assert time.monotonic() < deadline
                seen.append((status["progress"], status["stage"], status["audio_done_s"]))
                time.sleep(0.05)
    finally:
        assert server.stop() == 0, server.log()
    assert status["status"] == "succeeded", status
    intermediate = sorted({progress for progress, _, _ in seen if 0 < progress < 1})
    assert len(intermediate) >= 3, seen
    assert [progress for progress, _, _ in seen] == sorted(progress for progress, _, _ in seen)
    assert {"speech", "diarize"} <= {stage for _, stage, _ in seen}
    assert max(done or 0 for _, _, done in seen) > 20
    assert status["audio_duration_s"] == pytest.approx(53.27, abs=0.05)


@pytest.mark.slow
def test_the_batch_partial_transcript_grows_then_gives_way_to_the_outputs(
    shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from isoscribe.batch import partial as partial_module
    from isoscribe.batch import run_batch

    out = tmp_path / "out"
    partial = out / "sonnet001" / "sonnet001.partial.txt"
    sizes = []
    append = partial_module.PartialTranscript.append

    def append_and_measure(self, segment) -> None:
        append(self, segment)
        sizes.append(partial.stat().st_size)  # what a reader sees after each segment, not at a polling tick

    monkeypatch.setattr(partial_module.PartialTranscript, "append", append_and_measure)
    settings = load_settings(overrides={"batch": {"summarize": False, "formats": ["json", "txt"]}})
    report = run_batch(settings, [shared_data / SONNET], out, progress=False, notify=False)
    assert report.counts["done"] == 1, report.failures
    assert len(sizes) >= 2 and sizes == sorted(sizes), sizes
    assert not partial.exists() and (out / "sonnet001" / "sonnet001.txt").read_text().strip()
