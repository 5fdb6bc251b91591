"""The decoding options without a model: each has a CLI flag, an [asr] key and a form field; bad values are
a 400 that names the field; the server refuses what ``service.client_options`` keeps closed; defaults decode
as faster-whisper's own; the batch ledger's fingerprint follows every option.

Their effect on a real decode is in test_decoding_options_models.py."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from service_support import NoWorkers

from isoscribe.cli import build_parser, main, settings_overrides
from isoscribe.config import SettingsError, load_settings
from isoscribe.decoding import CLIENT_OPTIONS, DECODING_OPTIONS, setting_name
from isoscribe.ledger import fingerprinted_settings, settings_fingerprint
from isoscribe.service.app import create_app
from isoscribe.service.errors import ApiError
from isoscribe.service.job_store import JobOptions
from isoscribe.service.routers.forms import refuse_closed_options
from isoscribe.service.schemas import JobParams, TranscriptionParams, TranslationParams, check_fields, from_form
from isoscribe.service.transcription import SpeechOptions, service_speech_request
from isoscribe.service.uploads import UploadedForm
from isoscribe.stages.options import transcription_options
from isoscribe.transcript import SpeechRequest

API_KEY = "test-key"
ENDPOINTS = ("/v1/audio/transcriptions", "/v1/audio/translations", "/v1/jobs")

CLI_VALUES = {
    "prompt": (["--prompt", "Dr. Quarmby"], "Dr. Quarmby"),
    "hotwords": (["--hotwords", "Quarmby"], "Quarmby"),
    "beam_size": (["--beam-size", "2"], 2),
    "temperature": (["--temperature", "0,0.5"], [0.0, 0.5]),
    "vad_filter": (["--no-vad-filter"], False),
    "condition_on_previous_text": (["--no-condition-on-previous-text"], False),
    "word_timestamps": (["--no-word-timestamps"], False),
    "no_speech_threshold": (["--no-speech-threshold", "0.3"], 0.3),
}


@pytest.mark.parametrize("command", ["transcribe", "run"])
@pytest.mark.parametrize("option", DECODING_OPTIONS)
def test_every_option_is_a_flag_of_both_commands_onto_its_asr_key(command: str, option: str) -> None:
    flags, value = CLI_VALUES[option]
    head = ["transcribe", "a.wav"] if command == "transcribe" else ["run", "a.wav", "--out", "out"]
    settings = load_settings(overrides=settings_overrides(build_parser().parse_args([*head, *flags])))
    assert getattr(settings.asr, setting_name(option)) == value
    untouched = load_settings(overrides=settings_overrides(build_parser().parse_args(head)))
    assert getattr(untouched.asr, setting_name(option)) != value


@pytest.mark.parametrize("params", [TranscriptionParams, TranslationParams, JobParams])
def test_every_option_is_a_form_field_of_every_endpoint(params) -> None:
    assert set(DECODING_OPTIONS) <= set(params.model_fields)


def test_the_toml_file_sets_every_option_and_a_bad_value_names_its_key(tmp_path: Path) -> None:
    config = tmp_path / "isoscribe.toml"
    config.write_text(
        '[asr]\ninitial_prompt = "Dr. Quarmby"\nhotwords = "Quarmby"\nbeam_size = 3\ntemperatures = [0.0]\n'
        "vad_filter = false\ncondition_on_previous_text = false\nword_timestamps = false\nno_speech_threshold = 0.4\n"
        '[service]\nclient_options = ["prompt"]\n'
    )
    settings = load_settings(config)
    asr = settings.asr
    assert (asr.initial_prompt, asr.hotwords, asr.beam_size, asr.temperatures) == ("Dr. Quarmby", "Quarmby", 3, [0.0])
    assert (asr.vad_filter, asr.condition_on_previous_text, asr.word_timestamps) == (False, False, False)
    assert asr.no_speech_threshold == 0.4 and settings.service.client_options == ["prompt"]
    for bad, key in [
        ("[asr]\nno_speech_threshold = 3\n", "asr.no_speech_threshold"),
        ("[asr]\ntemperatures = [0.0, 1.5]\n", "asr.temperatures.1"),
        ("[asr]\ntemperatures = []\n", "asr.temperatures"),
        ("[asr]\nbeam_size = 0\n", "asr.beam_size"),
        ('[service]\nclient_options = ["beam_width"]\n', "service.client_options.0"),
    ]:
        config.write_text(bad)
        with pytest.raises(SettingsError, match=rf"invalid setting {key}:"):
            load_settings(config)


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--beam-size", "0"], "asr.beam_size"),
        (["--beam-size", "11"], "asr.beam_size"),
        (["--temperature", "0,1.5"], "asr.temperatures.1"),
        (["--no-speech-threshold", "1.2"], "asr.no_speech_threshold"),
    ],
)
def test_a_bad_flag_value_exits_2_naming_the_setting(
    flags: list[str], named: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["transcribe", "a.wav", *flags]) == 2
    assert f"invalid setting {named}" in capsys.readouterr().err


def test_a_temperature_that_is_no_number_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["transcribe", "a.wav", "--temperature", "warm"])
    assert exited.value.code == 2 and "--temperature" in capsys.readouterr().err


@pytest.fixture
def open_server(tmp_path: Path) -> Iterator[TestClient]:
    """The app in-process, with no model workers, letting clients set every option."""
    service = {"data_dir": tmp_path, "api_key": API_KEY, "client_options": list(DECODING_OPTIONS)}
    with TestClient(create_app(load_settings(overrides={"service": service}), NoWorkers())) as client:
        client.headers["Authorization"] = f"Bearer {API_KEY}"
        yield client


BAD_VALUES = [
    ("beam_size", "0"),
    ("beam_size", "11"),
    ("beam_size", "wide"),
    ("temperature", "1.5"),
    ("temperature", "hot"),
    ("vad_filter", "maybe"),
    ("condition_on_previous_text", "sometimes"),
    ("word_timestamps", "2"),
    ("no_speech_threshold", "-0.1"),
    ("no_speech_threshold", "quiet"),
    ("hotwords", "Quarmby " * 200),
]


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize(("field", "value"), BAD_VALUES, ids=[f"{f}={v[:8]}" for f, v in BAD_VALUES])
def test_a_bad_value_is_400_naming_the_field(open_server: TestClient, endpoint: str, field: str, value: str) -> None:
    answer = open_server.post(endpoint, data={field: value}, files={"file": ("a.wav", b"RIFF0000", "audio/wav")})
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["param"] == field and f"parameter {field}" in error["message"]
    assert error["type"] == "invalid_request_error" and error["code"] == "invalid_parameter"


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_a_closed_option_is_400_with_the_reason(tmp_path: Path, endpoint: str) -> None:
    service = {"data_dir": tmp_path, "api_key": API_KEY, "client_options": ["prompt"]}
    with TestClient(create_app(load_settings(overrides={"service": service}), NoWorkers())) as client:
        answer = client.post(
            endpoint,
            data={"prompt": "Dr. Quarmby", "hotwords": "Quarmby"},
            files={"file": ("a.wav", b"RIFF0000", "audio/wav")},
            headers={"Authorization": f"Bearer {API_KEY}"},
        )
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["param"] == "hotwords" and error["code"] == "option_not_allowed"
    assert "service.client_options allows: prompt" in error["message"]


def test_beam_size_is_closed_by_default_and_blank_fields_set_nothing() -> None:
    assert "beam_size" not in load_settings().service.client_options
    assert set(CLIENT_OPTIONS) == set(DECODING_OPTIONS) - {"beam_size"}
    refuse_closed_options({"beam_size": [""], "prompt": ["  "]}, [])
    blank = TranscriptionParams.model_validate({"beam_size": "", "vad_filter": " ", "prompt": ""})
    assert (blank.beam_size, blank.vad_filter, blank.prompt) == (None, None, None)
    with pytest.raises(ApiError) as refused:
        refuse_closed_options({"beam_size": ["4"]}, list(CLIENT_OPTIONS))
    assert refused.value.status_code == 400 and refused.value.param == "beam_size"


@pytest.mark.parametrize("params_type", [TranscriptionParams, TranslationParams, JobParams])
def test_every_decoding_option_sent_blank_keeps_the_servers_setting(params_type: type) -> None:
    """A client that sends every field, empty ones too (``curl -F temperature=``), asks for nothing."""
    blank = {name: [""] for name in DECODING_OPTIONS}
    check_fields(params_type, blank)
    form = UploadedForm(fields=blank)
    assert from_form(params_type, form).speech_options() == params_type.model_validate({}).speech_options()


def test_form_values_reach_the_speech_request_and_survive_a_stored_job() -> None:
    form = {
        "prompt": "Dr. Quarmby", "hotwords": "Quarmby", "beam_size": "2", "temperature": "0.3", "vad_filter": "false",
        "condition_on_previous_text": "off", "word_timestamps": "no", "no_speech_threshold": "0.25",
    }
    options = JobParams.model_validate(form).speech_options()
    stored = JobOptions.from_json(JobOptions(**options.__dict__).to_json())
    request = service_speech_request(load_settings(), Path("a.wav"), stored)
    assert (request.initial_prompt, request.hotwords, request.beam_size, request.temperatures) == (
        "Dr. Quarmby", "Quarmby", 2, (0.3,)
    )
    assert (request.vad_filter, request.condition_on_previous_text, request.word_timestamps) == (False, False, False)
    assert request.no_speech_threshold == 0.25
    unset = service_speech_request(load_settings(), Path("a.wav"), SpeechOptions())
    assert (unset.hotwords, unset.beam_size, unset.vad_filter, unset.word_timestamps) == (None, None, None, None)


def test_words_are_aligned_when_diarizing_or_when_the_answer_needs_them() -> None:
    asr = load_settings(overrides={"asr": {"word_timestamps": False}}).asr
    assert not transcription_options(asr, SpeechRequest("a.wav")).word_timestamps
    assert transcription_options(asr, SpeechRequest("a.wav", diarize=True)).word_timestamps
    assert transcription_options(asr, SpeechRequest("a.wav", word_timestamps=True)).word_timestamps
    no_words = {"word_timestamps": "false"}
    assert TranscriptionParams.model_validate(no_words).speech_options().word_timestamps is False
    words = {"word_timestamps": "false", "timestamp_granularities": ["word"]}
    assert TranscriptionParams.model_validate({**words, "response_format": "verbose_json"}).speech_options().word_timestamps
    for ignored in ("json", "text"):  # OpenAI's json and text carry no words, whatever the granularities
        params = TranscriptionParams.model_validate({**words, "response_format": ignored})
        assert params.speech_options().word_timestamps is False
    logprobs = TranscriptionParams.model_validate({"word_timestamps": "false", "include": ["logprobs"]})
    assert logprobs.speech_options().word_timestamps is True
    assert TranscriptionParams.model_validate({}).speech_options().word_timestamps is None


def test_a_request_overrides_the_settings_and_leaves_the_rest_to_them() -> None:
    asr = load_settings(overrides={"asr": {"hotwords": "Quarmby", "beam_size": 4, "no_speech_threshold": 0.5}}).asr
    options = transcription_options(asr, SpeechRequest("a.wav", beam_size=1, vad_filter=False))
    kwargs = options.engine_kwargs()
    assert (kwargs["beam_size"], kwargs["vad_filter"], kwargs["hotwords"], kwargs["no_speech_threshold"]) == (
        1, False, "Quarmby", 0.5
    )


def test_defaults_decode_as_faster_whisper_does_by_itself() -> None:
    """Options nobody sets pass faster-whisper's own defaults, so a default request decodes (and costs) as before."""
    from faster_whisper import WhisperModel

    defaults = {name: p.default for name, p in inspect.signature(WhisperModel.transcribe).parameters.items()}
    kwargs = transcription_options(load_settings().asr, SpeechRequest("a.wav")).engine_kwargs()
    unset = ("hotwords", "no_speech_threshold", "condition_on_previous_text", "beam_size", "prefix", "max_new_tokens")
    for name in unset:
        assert kwargs[name] == defaults[name], name
    assert kwargs["word_timestamps"] is True and kwargs["vad_filter"] is True and kwargs["initial_prompt"] is None
    assert kwargs["temperature"] == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]


def test_the_fingerprint_follows_every_option_and_keeps_older_ledgers() -> None:
    base = settings_fingerprint(load_settings())
    changed = {
        "initial_prompt": "Dr. Quarmby", "hotwords": "Quarmby", "beam_size": 2, "temperatures": [0.0],
        "vad_filter": False, "condition_on_previous_text": False, "word_timestamps": False, "no_speech_threshold": 0.3,
    }
    assert set(changed) == {setting_name(option) for option in DECODING_OPTIONS}
    prints = {settings_fingerprint(load_settings(overrides={"asr": {key: value}})) for key, value in changed.items()}
    assert len(prints) == len(changed) and base not in prints
    # The [asr] keys ledgers were fingerprinted with before these options: defaults add none, so those keep theirs.
    older = {"model", "compute_type", "language", "beam_size", "temperatures", "initial_prompt", "vad_filter"}
    assert set(fingerprinted_settings(load_settings())["asr"]) == older
