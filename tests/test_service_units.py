"""Fast checks of the service's parts that need no server: upload streaming, the job store, response shapes."""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from isoscribe.config import load_settings
from isoscribe.formats import RenderContext
from isoscribe.models import cannot_transcribe, cannot_translate, model_info
from isoscribe.service.app import create_app
from isoscribe.service.errors import ApiError
from isoscribe.service.execution import PipelineRunner
from isoscribe.service.job_loops import JobLoops
from isoscribe.openai_shapes import diarized_json, speaker_labels, verbose_json
from isoscribe.service.job_store import Job, JobOptions, JobStore
from isoscribe.service.known_speakers import save_references
from isoscribe.service.schemas import TranscriptionParams, from_form
from isoscribe.service.policy import service_policy
from isoscribe.service.render import render
from isoscribe.service.uploads import UploadedForm, receive_multipart, safe_extension
from isoscribe.transcript import Segment, Transcript, Word

BOUNDARY = "isoscribe-test-boundary"


def _multipart(fields: list[tuple[str, str]], filename: str, content: bytes) -> bytes:
    parts = []
    for name, value in fields:
        parts.append(f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    parts.append(
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        f"Content-Type: application/octet-stream\r\n\r\n".encode()
        + content
        + b"\r\n"
    )
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


async def _chunks(body: bytes, size: int = 1000):
    for start in range(0, len(body), size):
        yield body[start : start + size]


def _receive(body: bytes, folder: Path, max_bytes: int):
    content_type = f"multipart/form-data; boundary={BOUNDARY}"
    return asyncio.run(receive_multipart(content_type, _chunks(body), folder, "file", max_bytes))


def test_upload_streams_to_a_server_named_file(tmp_path: Path) -> None:
    content = bytes(range(256)) * 40
    fields = [("model", "whisper-1"), ("timestamp_granularities[]", "word"), ("timestamp_granularities[]", "segment")]
    form = _receive(_multipart(fields, "../../../etc/passwd.WAV", content), tmp_path, 1_000_000)
    assert form.file_path is not None and form.file_path.parent == tmp_path
    assert form.file_path.suffix == ".wav" and "passwd" not in form.file_path.name
    assert form.file_path.read_bytes() == content and form.file_bytes == len(content)
    assert form.first("model") == "whisper-1"
    assert form.fields["timestamp_granularities[]"] == ["word", "segment"]


def test_a_filename_as_browsers_and_httpx_escape_it_reads_as_the_user_named_it(tmp_path: Path) -> None:
    form = _receive(_multipart([], "%22Q3%22 review%0D%0Atake 2.wav", b"RIFF"), tmp_path, 1_000_000)
    assert form.filename == '"Q3" review  take 2.wav' and form.file_path.suffix == ".wav"


def test_upload_over_the_limit_is_413_and_the_partial_file_is_deleted(tmp_path: Path) -> None:
    with pytest.raises(ApiError) as raised:
        _receive(_multipart([], "big.wav", b"x" * 50_000), tmp_path, 10_000)
    assert raised.value.status_code == 413
    assert list(tmp_path.iterdir()) == []


def test_a_body_cut_before_its_closing_boundary_is_400_and_nothing_is_kept(tmp_path: Path) -> None:
    whole = _multipart([("model", "whisper-1")], "talk.wav", b"x" * 20_000)
    assert _receive(whole, tmp_path / "whole", 1_000_000).file_bytes == 20_000
    for cut in (whole[: len(whole) // 2], whole[: -len(f"--{BOUNDARY}--\r\n")]):
        with pytest.raises(ApiError) as raised:
            _receive(cut, tmp_path / "cut", 1_000_000)
        assert raised.value.status_code == 400 and raised.value.code == "invalid_multipart"
        assert list((tmp_path / "cut").iterdir()) == []


def test_a_malformed_body_is_400_not_a_crash(tmp_path: Path) -> None:
    oversized_header = f"--{BOUNDARY}\r\nX-Padding: {'a' * 20_000}\r\n\r\n".encode()
    for body in (b"garbage", oversized_header):
        with pytest.raises(ApiError) as raised:
            _receive(body, tmp_path, 1_000_000)
        assert raised.value.status_code == 400 and raised.value.code == "invalid_multipart"


def test_non_multipart_body_is_400(tmp_path: Path) -> None:
    with pytest.raises(ApiError) as raised:
        asyncio.run(receive_multipart("application/json", _chunks(b"{}"), tmp_path, "file", 100))
    assert raised.value.status_code == 400


@pytest.mark.parametrize(
    ("filename", "extension"),
    [
        ("a.wav", ".wav"),
        ("A.FLAC", ".flac"),
        ("../x.mp3", ".mp3"),
        ("noext", ""),
        ("a.w/av", ""),
        ("x.toolongext", ""),
        ("page.html", ""),  # only audio and video extensions: a browser must never see a stored upload as HTML
        ("x.svg", ""),
        (None, ""),
    ],
)
def test_safe_extension(filename: str | None, extension: str) -> None:
    assert safe_extension(filename) == extension


def test_job_store_requeues_running_jobs_after_a_restart(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs.sqlite3")
    first = store.create(tmp_path / "a.wav", JobOptions(model="whisper-1", summarize=True), "http://127.0.0.1:1/hook")
    second = store.create(tmp_path / "b.wav", JobOptions())
    claimed = store.claim_next()
    assert claimed is not None and claimed.id == first.id and claimed.status == "running" and claimed.attempts == 1
    store.close()

    reopened = JobStore(tmp_path / "jobs.sqlite3")
    assert reopened.requeue_running() == [first.id]
    assert reopened.claim_next().id == first.id
    assert reopened.succeed(first.id, {"segments": []}, None, {"total_s": 1.0})
    job = reopened.get(first.id)
    assert job.status == "succeeded" and job.options.summarize and job.webhook_url == "http://127.0.0.1:1/hook"
    assert reopened.cancel(second.id) == "queued" and reopened.cancel(second.id) is None
    assert reopened.claim_next() is None
    assert not reopened.fail(second.id, "x", "cancelled jobs stay cancelled", {})


class _Submissions:
    def __init__(self) -> None:
        self.stages: list[str] = []

    def submit(self, stage, request, on_event=None):
        self.stages.append(stage)
        raise AssertionError("a cancelled job must not run")


class _Outbox:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    def put_finished(self, job) -> None:
        self.sent.append((job.id, job.status))


class _BlinkingStore(JobStore):
    """A job store whose next ``failing_gets`` reads fail, as Redis does while it is away."""

    failing_gets: float = 0

    def get(self, job_id: str):
        if self.failing_gets > 0:
            self.failing_gets -= 1
            raise ConnectionError("job store unreachable")
        return super().get(job_id)


def _job_loops(store: JobStore, tmp_path: Path) -> tuple[JobLoops, _Outbox]:
    settings = load_settings(overrides={"service": {"data_dir": tmp_path, "asr_workers": 1}})
    outbox = _Outbox()
    return JobLoops(store, PipelineRunner(_Submissions(), 1, 1, 1), settings, lambda model: "speech", outbox), outbox


def _running_job_with_audio(store: JobStore, tmp_path: Path) -> tuple[JobLoops, _Outbox, Path, Job]:
    """Job loops on ``store``, and a job of theirs claimed (running) with its audio file."""
    loops, outbox = _job_loops(store, tmp_path)
    audio = tmp_path / "a.wav"
    audio.write_bytes(b"RIFF")
    store.create(audio, JobOptions(model="whisper-1"))
    return loops, outbox, audio, store.claim_next()


def _run_until_cancelled(loops: JobLoops) -> asyncio.Event:
    """The job loops' pipeline runs until cancelled; the event is set once one runs."""
    running = asyncio.Event()

    async def run(pipeline, call):
        running.set()
        await asyncio.Event().wait()

    loops.pipelines.run = run
    return running


def test_a_job_cancelled_or_purged_between_its_claim_and_its_start_runs_nothing_and_gets_one_webhook(
    tmp_path: Path,
) -> None:
    """A cancel that lands after the claim, before the job loop's task exists, finds no task to stop: the job
    loop sees the cancel itself. A purged job is gone from the store, and its webhook still says cancelled."""
    store = JobStore(tmp_path / "jobs.sqlite3")
    loops, outbox = _job_loops(store, tmp_path)
    cancelled, purged = (store.create(tmp_path / f"{name}.wav", JobOptions(model="whisper-1")) for name in "ab")
    claimed = [store.claim_next(), store.claim_next()]
    assert store.cancel(cancelled.id) == "running"
    assert store.cancel(purged.id) == "running" and store.delete(purged.id)
    for job in claimed:
        asyncio.run(loops._process(job))
    assert loops.pipelines.executor.stages == []
    assert outbox.sent == [(cancelled.id, "cancelled"), (purged.id, "cancelled")]
    store.close()


def test_a_store_error_as_a_cancelled_running_job_stops_is_retried_and_the_job_ends_cancelled(tmp_path: Path) -> None:
    """A running job that DELETE stops asks the store whether it was cancelled (or the server drains it): a
    store that fails that read once is asked again, and the job gets its webhook and loses its audio."""
    store = _BlinkingStore(tmp_path / "jobs.sqlite3")
    loops, outbox, audio, job = _running_job_with_audio(store, tmp_path)

    async def cancel_while_running() -> None:
        running = _run_until_cancelled(loops)
        loops._active[job.id] = task = asyncio.create_task(loops._process(job))
        await running.wait()
        assert store.cancel(job.id) == "running"
        store.failing_gets = 1
        loops.stop_running(job.id)
        await task

    asyncio.run(cancel_while_running())
    assert store.failing_gets == 0 and outbox.sent == [(job.id, "cancelled")] and not audio.exists()
    store.close()


def test_a_drain_with_the_store_away_ends_and_leaves_the_running_job_to_the_next_start(tmp_path: Path) -> None:
    store = _BlinkingStore(tmp_path / "jobs.sqlite3")
    loops, outbox = _job_loops(store, tmp_path)
    job = store.create(tmp_path / "a.wav", JobOptions(model="whisper-1"))

    async def drain_while_the_store_is_away() -> None:
        running = _run_until_cancelled(loops)
        loops.start()
        await running.wait()
        store.failing_gets = math.inf
        await asyncio.wait_for(loops.drain(timeout_s=0.1), timeout=10)

    asyncio.run(drain_while_the_store_is_away())
    store.failing_gets = 0
    assert store.get(job.id).status == "running" and outbox.sent == []
    store.close()


def test_verbose_json_shapes_words_segments_and_speakers() -> None:
    words = [Word(0.0, 0.5, " Hello", 0.9, "SPEAKER_00"), Word(0.5, 1.0, " there.", 0.8, "SPEAKER_00")]
    segments = [Segment(0, 0.0, 1.0, " Hello there.", words, "SPEAKER_00")]
    transcript = Transcript(segments, "de", 0.99, 1.2, "base", ["SPEAKER_00"])
    both = verbose_json(transcript, ["word", "segment"])
    assert both["text"] == "Hello there." and both["duration"] == 1.2 and both["language"] == "german"
    assert both["task"] == "transcribe" and both["usage"] == {"type": "duration", "seconds": 1.2}
    # One label scheme in every format and the JSON API (issue 23): the transcript's own labels.
    assert both["words"][0] == {"word": " Hello", "start": 0.0, "end": 0.5, "speaker": "SPEAKER_00"}
    assert both["segments"][0]["speaker"] == diarized_json(transcript)["segments"][0]["speaker"] == "SPEAKER_00"
    assert both["segments"][0]["seek"] == 0
    translated = verbose_json(transcript, task="translate")
    assert translated["task"] == "translate" and translated["language"] == "english"
    assert "words" not in verbose_json(transcript) and "segments" not in verbose_json(transcript, ["word"])


def test_verbose_json_segments_start_with_a_space_so_they_join_into_the_text() -> None:
    """As OpenAI's and Whisper's segments (" The beach was…"): a client that joins them gets the words apart."""
    segments = [Segment(0, 0.0, 1.0, "ask not", []), Segment(1, 1.0, 2.0, "what your country", [])]
    verbose = verbose_json(Transcript(segments, "en", 0.99, 2.0, "tiny.en", []))
    assert [s["text"] for s in verbose["segments"]] == [" ask not", " what your country"]
    assert "".join(s["text"] for s in verbose["segments"]).strip() == verbose["text"]


def test_json_logprobs_send_each_byte_as_an_integer() -> None:
    """As OpenAI and the stream send them: ``bytes(p["bytes"])`` is the token (32.0 would make it a TypeError)."""
    words = [Word(0.0, 0.5, " Grüß", 0.9), Word(0.5, 1.0, " dich.", 0.8)]
    transcript = Transcript([Segment(0, 0.0, 1.0, "Grüß dich.", words)], "de", 0.99, 1.2, "base", [])
    answer = render(transcript, None, "json", "transcription", RenderContext(logprobs=True))
    logprobs = json.loads(answer.body)["logprobs"]
    assert [bytes(p["bytes"]).decode() for p in logprobs] == [" Grüß", " dich."]
    assert "32.0" not in answer.body.decode()


@pytest.mark.parametrize("language", ["xx", "english", "e"])
def test_an_unknown_language_is_400_naming_the_parameter(tmp_path: Path, language: str) -> None:
    from isoscribe.service.schemas import TranscriptionParams, from_form

    form = _receive(_multipart([("language", language)], "a.wav", b"RIFF"), tmp_path, 1_000_000)
    with pytest.raises(ApiError) as raised:
        from_form(TranscriptionParams, form)
    assert raised.value.status_code == 400 and raised.value.param == "language"
    assert language in raised.value.message


def test_a_known_language_is_accepted_in_any_case(tmp_path: Path) -> None:
    from isoscribe.service.schemas import TranscriptionParams, from_form

    form = _receive(_multipart([("language", "DE")], "a.wav", b"RIFF"), tmp_path, 1_000_000)
    assert from_form(TranscriptionParams, form).language == "de"


def test_diarized_labels_are_the_transcripts_own_and_names_stay() -> None:
    segments = [
        Segment(0, 0.0, 1.0, "Hi.", speaker="SPEAKER_01"),
        Segment(1, 1.0, 2.0, "Hello.", speaker="Alice"),
        Segment(2, 2.0, 3.0, "Bye.", speaker="SPEAKER_00"),
    ]
    transcript = Transcript(segments, "en", 1.0, 3.0, "tiny.en", speakers=["SPEAKER_01", "Alice", "SPEAKER_00"])
    body = diarized_json(transcript)
    assert [s["speaker"] for s in body["segments"]] == ["SPEAKER_01", "Alice", "SPEAKER_00"]
    assert body["task"] == "transcribe" and body["usage"] == {"type": "duration", "seconds": 3.0}
    many = Transcript([], "en", 1.0, 1.0, "tiny.en", speakers=[f"SPEAKER_{k:02d}" for k in range(28)])
    assert list(speaker_labels(many).values())[24:] == ["SPEAKER_24", "SPEAKER_25", "SPEAKER_26", "SPEAKER_27"]
    unlabelled = Transcript([Segment(0, 0.0, 1.0, "Hi.")], "en", 1.0, 1.0, "tiny.en", speakers=["SPEAKER_00"])
    assert diarized_json(unlabelled)["segments"][0]["speaker"] == "UNKNOWN"


def test_known_speakers_must_pair_up_and_be_data_urls(tmp_path: Path) -> None:
    def form(**fields: list[str]) -> UploadedForm:
        return UploadedForm(fields={f"{name}[]": values for name, values in fields.items()})

    with pytest.raises(ApiError) as unpaired:
        from_form(TranscriptionParams, form(known_speaker_names=["Alice", "Bob"], known_speaker_references=["x"]))
    assert unpaired.value.status_code == 400 and "2 known_speaker_names[] but 1" in unpaired.value.message
    params = from_form(TranscriptionParams, form(known_speaker_names=["Alice"], known_speaker_references=["x"]))
    assert params.diarized
    with pytest.raises(ApiError) as generated_label:
        from_form(TranscriptionParams, form(known_speaker_names=["SPEAKER_01"], known_speaker_references=["x"]))
    assert "labels of unnamed speakers" in generated_label.value.message
    with pytest.raises(ApiError) as not_a_data_url:
        save_references(["Alice"], ["https://example.com/alice.wav"], tmp_path)
    assert "known_speaker_references[0] (for 'Alice')" in not_a_data_url.value.message
    assert not list(tmp_path.iterdir())


def test_only_multilingual_models_translate() -> None:
    assert cannot_translate("base") is None
    refusal = cannot_translate("tiny.en")
    assert refusal is not None and "English-only" in refusal and "base" in refusal


def test_a_model_transcribes_only_the_languages_it_has_a_token_for(tmp_path: Path) -> None:
    """base predates large-v3's <|yue|>; a model directory is judged by its vocabulary's size."""
    assert cannot_transcribe("base", "de") is None and cannot_transcribe("base", None) is None
    assert "no token for language 'yue'" in cannot_transcribe("base", "yue")
    assert "English-only" in cannot_transcribe("tiny.en", "de")
    large_v3 = tmp_path / "large-v3"
    large_v3.mkdir()
    (large_v3 / "model.bin").write_bytes(b"")
    (large_v3 / "vocabulary.json").write_text(json.dumps(["t"] * 51866))
    assert cannot_transcribe(str(large_v3), "yue") is None
    assert model_info("base").languages == model_info(str(large_v3)).languages - {"yue"}


def test_the_model_router_refuses_what_an_english_only_model_cannot_do_and_routes_whisper1_translations() -> None:
    from isoscribe.service.model_routing import ModelRouter
    from isoscribe.service.schemas import TranslationParams

    settings = load_settings(overrides={"asr": {"model": "tiny.en"}, "service": {"translation_model": "base"}})
    router = ModelRouter(settings, _Submissions(), owns_executor=False)
    assert router.served("whisper-1") == "tiny.en" and router.served("whisper-1", "translate") == "base"
    assert router.check(TranscriptionParams(model="tiny.en", language="en")) == "speech"
    with pytest.raises(ApiError) as untranslatable:
        router.check(TranslationParams(model="tiny.en"))
    assert untranslatable.value.code == "model_cannot_translate" and "base" in untranslatable.value.message
    with pytest.raises(ApiError) as unsupported:
        router.check(TranscriptionParams(model="whisper-1", language="de"))
    assert unsupported.value.code == "unsupported_language" and "English-only" in unsupported.value.message


def test_voice_samples_may_be_megabytes_other_fields_not(tmp_path: Path) -> None:
    sample = "data:audio/wav;base64," + "A" * 1_000_000
    form = _receive(_multipart([("known_speaker_references[]", sample)], "a.wav", b"x"), tmp_path, 10_000)
    assert form.fields["known_speaker_references[]"] == [sample]
    with pytest.raises(ApiError) as raised:
        _receive(_multipart([("prompt", "A" * 1_000_000)], "b.wav", b"x"), tmp_path, 10_000)
    assert raised.value.status_code == 413 and "'prompt'" in raised.value.message


def test_a_long_upload_spreads_over_the_speech_workers() -> None:
    settings = load_settings(overrides={"asr": {"model": "tiny.en"}, "service": {"asr_workers": 2}})
    assert service_policy(settings).piece_workers == 2
    detecting = load_settings(overrides={"asr": {"model": "base"}, "service": {"asr_workers": 2}})
    assert service_policy(detecting).piece_workers == 1, "per-stretch language detection needs the whole file"


def test_a_quiet_stream_sends_keep_alive_comments() -> None:
    """A stream with no event for longer than the keep-alive interval carries comment lines meanwhile."""
    import asyncio

    from isoscribe.service.streaming import sse_body

    class _Run:
        cancelled = False

        def cancel(self) -> None:
            self.cancelled = True

    async def slow_events():
        await asyncio.sleep(0.5)
        yield {"type": "transcript.text.done", "text": "Hi."}

    async def never_disconnects() -> dict:
        await asyncio.Event().wait()
        return {}

    async def collect() -> list[str]:
        return [chunk async for chunk in sse_body(slow_events(), _Run(), never_disconnects, str, keepalive_s=0.05)]

    chunks = asyncio.run(collect())
    assert chunks[0] == ": keep-alive\n\n" and chunks.count(": keep-alive\n\n") >= 2
    assert chunks[-1].startswith("data: ") and '"Hi."' in chunks[-1]


def test_a_bug_in_a_route_still_answers_in_openai_shape() -> None:
    app = create_app(load_settings(None))

    @app.get("/v1/boom")
    async def boom() -> None:
        raise RuntimeError("a bug")

    answer = TestClient(app, base_url="http://127.0.0.1", raise_server_exceptions=False).get("/v1/boom")
    assert answer.status_code == 500 and answer.headers["content-type"] == "application/json"
    assert answer.json()["error"]["type"] == "server_error"


def test_a_job_taken_back_while_it_ran_keeps_its_audio_and_sends_no_webhook(tmp_path: Path) -> None:
    """An instance that was away (its heartbeat lapsed) finishes a job that was put back in the queue meanwhile:
    its result is not recorded, and the audio and the webhook stay for the run that has it now."""
    store = JobStore(tmp_path / "jobs.sqlite3")
    loops, outbox, audio, job = _running_job_with_audio(store, tmp_path)

    async def run(pipeline, call):
        assert store.requeue(job.id)
        return SimpleNamespace(transcript=SimpleNamespace(to_dict=lambda: {"text": "late"}), summary=None)

    loops.pipelines.run = run
    asyncio.run(loops._process(job))
    assert store.get(job.id).status == "queued" and audio.exists() and outbox.sent == []
    store.close()
