"""Settings precedence (defaults < TOML < env < CLI) and start-up errors that name the key."""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from isoscribe.cli import build_parser, settings_overrides
from isoscribe.config import Settings, SettingsError, load_settings


def _toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "isoscribe.toml"
    path.write_text(text)
    return path


def test_defaults_without_file_or_env():
    settings = load_settings()
    assert settings.asr.model == "tiny.en"
    assert settings.batch.isolation == "pooled"
    assert settings.diarization.enabled is False


def test_toml_overrides_defaults(tmp_path):
    settings = load_settings(_toml(tmp_path, '[asr]\nmodel = "base"\nbeam_size = 2\n'))
    assert (settings.asr.model, settings.asr.beam_size) == ("base", 2)


def test_env_overrides_toml(tmp_path, monkeypatch):
    monkeypatch.setenv("ISOSCRIBE_ASR__MODEL", "from-env")
    settings = load_settings(_toml(tmp_path, '[asr]\nmodel = "from-toml"\nbeam_size = 2\n'))
    assert settings.asr.model == "from-env"
    assert settings.asr.beam_size == 2, "keys the environment does not set still come from the file"


def test_cli_overrides_env_and_toml(tmp_path, monkeypatch):
    monkeypatch.setenv("ISOSCRIBE_ASR__MODEL", "from-env")
    config = _toml(tmp_path, '[asr]\nmodel = "from-toml"\n[diarization]\nnum_speakers = 3\n')
    args = build_parser().parse_args(["transcribe", "a.wav", "--model", "from-cli"])
    settings = load_settings(config, settings_overrides(args))
    assert settings.asr.model == "from-cli"
    assert settings.diarization.num_speakers == 3, "an absent CLI flag does not mask the file"


def test_config_path_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("ISOSCRIBE_CONFIG", str(_toml(tmp_path, "[llm]\nn_ctx = 1024\n")))
    assert load_settings().llm.n_ctx == 1024


@pytest.mark.parametrize(
    ("toml_text", "key"),
    [
        ("[asr]\nbeam_size = 0\n", "asr.beam_size"),
        ('[batch]\nisolation = "threads"\n', "batch.isolation"),
        ("[asr]\nno_such_key = 1\n", "asr.no_such_key"),
    ],
)
def test_invalid_value_names_the_key(tmp_path, toml_text, key):
    with pytest.raises(SettingsError, match=key.replace(".", r"\.")):
        load_settings(_toml(tmp_path, toml_text))


def test_invalid_env_value_names_the_key(monkeypatch):
    monkeypatch.setenv("ISOSCRIBE_SERVICE__PORT", "not-a-port")
    with pytest.raises(SettingsError, match=r"service\.port"):
        load_settings()


def test_missing_config_file_is_an_error(tmp_path):
    with pytest.raises(SettingsError, match="config file not found"):
        load_settings(tmp_path / "absent.toml")


def test_settings_cross_process_boundaries_by_pickle(tmp_path):
    settings = load_settings(_toml(tmp_path, '[asr]\nmodel = "base"\n'))
    clone = pickle.loads(pickle.dumps(settings))
    assert isinstance(clone, Settings) and clone.asr.model == "base"


def test_cli_rejects_invalid_setting_at_start_up(tmp_path):
    config = _toml(tmp_path, "[asr]\nbeam_size = -1\n")
    completed = subprocess.run(
        [sys.executable, "-m", "isoscribe.cli", "--config", str(config), "transcribe", "x.wav"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode == 2
    assert "asr.beam_size" in completed.stderr


def test_an_unknown_asr_language_stops_at_start_up() -> None:
    with pytest.raises(SettingsError, match="asr.language"):
        load_settings(overrides={"asr": {"language": "klingon"}})


def test_worker_memory_is_bounded_out_of_the_box() -> None:
    """Without any setting, every stage's workers are recycled past a quarter of RAM after a task and
    killed past half of it during one, and a hung model load is killed."""
    from isoscribe.executors import build_executor

    ram_mb = psutil.virtual_memory().total / 2**20
    settings = load_settings(overrides={"batch": {"workers": 1}})  # the executor takes resolved worker counts
    executor = build_executor(settings, lazy=True)
    try:
        for stage, make_pool in executor.factories.items():
            pool = make_pool()
            try:
                assert pool.max_rss_mb == pytest.approx(ram_mb / 4, abs=1), stage
                assert pool.limits.hard_rss_mb == pytest.approx(ram_mb / 2, abs=1), stage
                assert pool.limits.load_timeout_s == settings.isolation.load_timeout_s == 600, stage
            finally:
                pool.shutdown()
    finally:
        executor.shutdown()


def test_speaker_bounds_that_contradict_each_other_stop_at_start_up(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="min_speakers 5 is above max_speakers 2"):
        load_settings(overrides={"diarization": {"min_speakers": 5, "max_speakers": 2}})
    assert load_settings(overrides={"diarization": {"num_speakers": 10}}).diarization.num_speakers == 10
    for flags in (["--num-speakers", "3", "--max-speakers", "2"], ["--num-speakers", "1", "--min-speakers", "2"]):
        refused = subprocess.run(
            [sys.executable, "-m", "isoscribe.cli", "transcribe", str(tmp_path / "any.wav"), *flags],
            capture_output=True, text=True, timeout=120,
        )
        assert refused.returncode == 2 and "is outside --min-speakers/--max-speakers" in refused.stderr, refused.stderr
    refused = subprocess.run(
        [sys.executable, "-m", "isoscribe.cli", "transcribe", str(tmp_path / "any.wav"), "--no-diarize", "--num-speakers", "2"],
        capture_output=True, text=True, timeout=120,
    )
    assert refused.returncode == 2 and "needs diarization" in refused.stderr, refused.stderr


def test_a_minimum_above_the_default_maximum_raises_it_unless_a_maximum_is_given(tmp_path: Path) -> None:
    bounds = load_settings(overrides={"diarization": {"min_speakers": 9}}).diarization
    assert (bounds.min_speakers, bounds.max_speakers) == (9, 9)
    config = tmp_path / "isoscribe.toml"
    config.write_text("[diarization]\nmax_speakers = 4\n")
    with pytest.raises(SettingsError, match="min_speakers 9 is above max_speakers 4"):
        load_settings(config, overrides={"diarization": {"min_speakers": 9}})


def test_a_speaker_count_asks_for_diarization() -> None:
    from isoscribe.cli.parser import build_parser, settings_overrides

    counted = settings_overrides(build_parser().parse_args(["transcribe", "a.wav", "--min-speakers", "2"]))
    assert counted["diarization"]["enabled"] is True
    assert settings_overrides(build_parser().parse_args(["transcribe", "a.wav"]))["diarization"]["enabled"] is None


def test_a_batch_that_would_write_nothing_stops_at_start_up(tmp_path: Path) -> None:
    refused = subprocess.run(
        [sys.executable, "-m", "isoscribe.cli", "run", str(tmp_path / "any.wav"), "--out", str(tmp_path / "out"),
         "--formats", "summary", "--no-summarize"],
        capture_output=True, text=True, timeout=120,
    )
    assert refused.returncode == 2 and "would write nothing" in refused.stderr, refused.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("samples", "message"),
    [
        (["Alice.wav", "Alice.flac"], "more than one voice sample named Alice"),
        (["0.wav", "Bob.wav"], "0 cannot name a speaker"),
        (["SPEAKER_00.flac"], "SPEAKER_00 cannot name a speaker"),
        ([" .wav", "Bob.wav"], "' .wav' cannot name a speaker"),
        (["Bo\nb.wav"], "cannot name a speaker"),
        (["notes.txt"], "holds no voice sample"),
    ],
)
def test_voice_samples_that_cannot_name_a_speaker_stop_at_start_up(tmp_path: Path, samples: list, message: str) -> None:
    for name in samples:
        (tmp_path / name).write_bytes(b"x")
    with pytest.raises(SettingsError, match=message):
        load_settings(overrides={"diarization": {"speakers_dir": tmp_path}})


def test_a_language_may_be_named_on_the_command_line_as_whisper_takes_it() -> None:
    """whisper's and WhisperX's ``--language English``; the HTTP API keeps to codes, as OpenAI's does."""
    for named, code in (("English", "en"), ("haitian  creole", "ht"), ("Mandarin", "zh"), ("DE", "de")):
        assert load_settings(overrides={"asr": {"language": named}}).asr.language == code
    with pytest.raises(SettingsError, match="unknown language 'klingon'"):
        load_settings(overrides={"asr": {"language": "klingon"}})


def test_compute_type_and_threads_are_flags_and_a_misspelt_type_stops_at_start() -> None:
    from isoscribe.cli.parser import build_parser, settings_overrides

    flags = ["run", "a.wav", "--out", "o", "--compute-type", "int8_float32", "--threads", "3"]
    asr = load_settings(overrides=settings_overrides(build_parser().parse_args(flags))).asr
    assert (asr.compute_type, asr.cpu_threads) == ("int8_float32", 3)
    with pytest.raises(SettingsError, match="invalid setting asr.compute_type"):  # it failed in the worker, exit 1
        load_settings(overrides={"asr": {"compute_type": "int7"}})


def test_config_and_log_level_may_follow_the_command() -> None:
    from isoscribe.cli.parser import build_parser

    parse = build_parser().parse_args
    assert parse(["transcribe", "a.wav", "--log-level", "debug"]).log_level == "debug"
    assert parse(["--log-level", "error", "run", "a.wav", "--out", "o"]).log_level == "error", "kept when not repeated"
    assert parse(["--log-level", "error", "serve", "--log-level", "info"]).log_level == "info", "the later one wins"
    assert parse(["summarize", "t.json", "--config", "x.toml"]).config == Path("x.toml")
    assert parse(["models"]).config is None


def test_whispers_short_and_long_flag_names_are_taken_too() -> None:
    from isoscribe.cli.parser import build_parser

    parse = build_parser().parse_args
    args = parse(["transcribe", "a.wav", "-f", "srt", "-o", "out/", "--initial-prompt", "Kubernetes"])
    assert (args.format, args.out, args.initial_prompt) == ("srt", "out/", "Kubernetes")
    assert parse(["run", "a.wav", "-o", "out"]).out == Path("out")


def test_a_format_named_twice_is_written_once() -> None:
    twice = load_settings(overrides={"batch": {"formats": ["txt", "srt", "txt"]}})
    assert twice.batch.formats == ["txt", "srt"]
    from isoscribe.ledger import settings_fingerprint

    assert settings_fingerprint(twice) == settings_fingerprint(load_settings(overrides={"batch": {"formats": ["txt", "srt"]}}))
