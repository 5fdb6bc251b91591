"""Every command's flags, and their mapping onto Settings."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from isoscribe.decoding import DECODING_OPTIONS, setting_name
from isoscribe.formats import names as format_names

__all__ = ["BENCHMARKS", "build_parser", "settings_overrides"]

_DECODING_SETTINGS = tuple(setting_name(option) for option in DECODING_OPTIONS)
BENCHMARKS = ("isolation", "asr", "pipeline", "service", "summary", "accuracy", "throughput", "realtime", "deltas", "overlap")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="isoscribe", description=__doc__)
    _add_global_flags(parser, default=None)
    # Also after the command (`isoscribe run … --log-level debug`); there, absent leaves the one given before it.
    after_command = argparse.ArgumentParser(add_help=False)
    _add_global_flags(after_command, default=argparse.SUPPRESS)
    commands = _Commands(parser.add_subparsers(dest="command", required=True), after_command)

    run = commands.add_parser("run", help="batch: transcribe, diarize and summarize many files")
    run.add_argument("inputs", nargs="+", help="audio files, directories, globs, or @manifest.txt")
    run.add_argument("-o", "--out", type=Path, required=True, help="output directory (holds the ledger)")
    _add_asr_flags(run)
    _add_decoding_flags(run)
    _add_subtitle_flags(run)
    run.add_argument("--summarize", action=argparse.BooleanOptionalAction, default=None)
    run.add_argument("--formats", help=f"comma-separated: {','.join(format_names('batch'))}")
    run.add_argument("--workers", type=int)
    run.add_argument("--isolation", choices=["pooled", "per-file"])
    run.add_argument("--memory-budget", dest="memory_budget_mb", type=float, help="MB for all running stages")
    run.add_argument("--max-attempts", type=int)
    run.add_argument("--retry-failed", action="store_true", help="run files that failed before again")
    run.add_argument("--executor", choices=["local", "celery"])
    run.add_argument("--log-file", type=Path)
    run.add_argument("--email-to", action="append", help="completion email recipient (repeatable)")
    run.add_argument("--no-progress", action="store_true", help="plain log lines even on a terminal")

    transcribe = commands.add_parser("transcribe", help="transcribe one file in an isolated worker")
    transcribe.add_argument("file", type=Path)
    _add_asr_flags(transcribe)
    _add_decoding_flags(transcribe)
    _add_subtitle_flags(transcribe)
    transcribe.add_argument("-f", "--format", choices=format_names("cli"), default="txt")
    transcribe.add_argument("-o", "--out", help="write here instead of stdout; into this folder when it ends with /")
    transcribe.add_argument("--no-progress", action="store_true", help="no progress bar even on a terminal")

    summarize = commands.add_parser("summarize", help="summarize a transcript in an isolated worker")
    summarize.add_argument("transcript", type=Path, help="isoscribe JSON transcript or plain text")
    summarize.add_argument("--format", choices=["md", "json"], default="md", help="markdown digest or the summary object")
    summarize.add_argument("--llm-model", dest="llm_model_path", type=Path, help="GGUF file")
    summarize.add_argument("--llm-backend", choices=["llama_cpp", "openai"])

    serve = commands.add_parser("serve", help="OpenAI-compatible transcription server")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument(
        "--insecure-no-auth", action="store_true", help="serve a non-loopback address without an API key"
    )
    serve.add_argument(
        "--hash-key", action="store_true", help="read a key on stdin, print its line for service.api_keys_file, and exit"
    )

    worker = commands.add_parser("worker", help="Celery worker for the asr and llm queues")
    worker.add_argument("--queues", default="asr,llm")
    worker.add_argument("--concurrency", type=int, default=1)

    tune = commands.add_parser("tune", help="measure the best speech workers × threads for this machine and model")
    tune.add_argument("--model", help="model name (tiny.en, base) or a local model directory")
    tune.add_argument("--max-workers", type=int, help="try at most this many workers")

    bench = commands.add_parser("bench", help="benchmarks; results go to bench/results/")
    bench.add_argument("name", choices=BENCHMARKS)
    bench.add_argument("--quick", action="store_true")
    bench.add_argument("--results-dir", type=Path, default=Path("bench/results"))

    models = commands.add_parser("models", help="the Whisper models installed here: name, where from, size")
    models.add_argument("--json", action="store_true", help="one JSON list instead of a table")

    demo = commands.add_parser("demo", help="make the two-voice demo dialogue and run the batch on it")
    demo.add_argument("--out", type=Path, default=Path("demo-out"))
    return parser


def _add_global_flags(parser: argparse.ArgumentParser, default: object) -> None:
    parser.add_argument("--config", type=Path, default=default, help="TOML settings file (else $ISOSCRIBE_CONFIG)")
    parser.add_argument("--log-level", choices=["debug", "info", "warning", "error"], default=default)


class _Commands:
    """The subparsers, each made with the global flags too."""

    def __init__(self, subparsers: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
        self.subparsers, self.parent = subparsers, parent

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser:
        return self.subparsers.add_parser(name, parents=[self.parent], **kwargs)


def _add_asr_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", help="model name (tiny.en, base) or a local model directory")
    parser.add_argument("--language", help="code or name (de, German); else detected")
    parser.add_argument(
        "--task",
        choices=["transcribe", "translate"],
        help="translate: English text from speech in any language (multilingual models)",
    )
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], help="auto: CUDA when there is one")
    parser.add_argument("--compute-type", help="CTranslate2's: int8, float16, int8_float16, float32 … (int8 on CPU, "
                        "float16 on CUDA)")
    parser.add_argument("--threads", dest="cpu_threads", type=int, help="CPU threads a speech worker (auto: calibrated)")
    parser.add_argument("--diarize", action=argparse.BooleanOptionalAction, default=None, help="label who speaks when")
    parser.add_argument("--num-speakers", type=int, help="exactly this many speakers (turns --diarize on)")
    parser.add_argument("--min-speakers", type=int, help="at least this many (1)")
    parser.add_argument("--max-speakers", type=int, help="at most this many (8, or --min-speakers when higher)")
    parser.add_argument(
        "--speakers", dest="speakers_dir", type=Path, help="folder of 2-10 s voice samples named after their speaker"
    )


def _add_decoding_flags(parser: argparse.ArgumentParser) -> None:
    """The decoding options (isoscribe.decoding), each onto its [asr] key."""
    decoding = parser.add_argument_group("decoding")
    decoding.add_argument("--prompt", "--initial-prompt", dest="initial_prompt", help="text that biases spelling and vocabulary (names)")
    decoding.add_argument("--hotwords", help="words to make likelier in every window")
    decoding.add_argument("--beam-size", type=int, help="beam search width (5)")
    decoding.add_argument(
        "--temperature", dest="temperatures", type=temperatures, help="fallback temperatures, comma-separated (0,0.2,…,1)"
    )
    decoding.add_argument(
        "--vad-filter", action=argparse.BooleanOptionalAction, default=None, help="decode only the speech the VAD finds"
    )
    decoding.add_argument("--condition-on-previous-text", action=argparse.BooleanOptionalAction, default=None)
    decoding.add_argument(
        "--word-timestamps", action=argparse.BooleanOptionalAction, default=None,
        help="align words (always on with --diarize)",
    )
    decoding.add_argument("--no-speech-threshold", type=float, help="skip windows this likely silent (0.6)")


def temperatures(text: str) -> list[float]:
    return [float(value) for value in text.split(",")]


def _add_subtitle_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--max-line-width", type=int, help="subtitles: characters a line (42)")
    parser.add_argument("--max-line-count", type=int, help="subtitles: lines a cue (2)")
    parser.add_argument("--max-cue-duration", dest="max_cue_duration_s", type=float, help="subtitles: seconds a cue (7)")
    parser.add_argument(
        "--highlight-words", action=argparse.BooleanOptionalAction, default=None, help="subtitles: karaoke cues"
    )


SPEAKER_COUNT_FLAGS = ("num_speakers", "min_speakers", "max_speakers")


def _diarize(args: argparse.Namespace) -> bool | None:
    """``--diarize`` or ``--no-diarize`` as given; a speaker count without either asks for diarization."""
    asked = getattr(args, "diarize", None)
    if asked is None and any(getattr(args, name, None) is not None for name in SPEAKER_COUNT_FLAGS):
        return True
    return asked


def settings_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Map CLI flags onto the nested settings; absent flags are None and ignored."""
    flag = lambda name: getattr(args, name, None)  # noqa: E731
    formats = flag("formats")
    return {
        "log_level": flag("log_level"),
        "subtitles": {
            "max_line_width": flag("max_line_width"),
            "max_line_count": flag("max_line_count"),
            "max_cue_duration_s": flag("max_cue_duration_s"),
            "highlight_words": flag("highlight_words"),
        },
        "asr": {
            "model": flag("model"), "language": flag("language"), "device": flag("device"), "task": flag("task"),
            "compute_type": flag("compute_type"), "cpu_threads": flag("cpu_threads"),
            **{name: flag(name) for name in _DECODING_SETTINGS},
        },
        "diarization": {
            "enabled": _diarize(args),
            "num_speakers": flag("num_speakers"),
            "min_speakers": flag("min_speakers"),
            "max_speakers": flag("max_speakers"),
            "speakers_dir": flag("speakers_dir"),
        },
        "llm": {"model_path": flag("llm_model_path"), "backend": flag("llm_backend")},
        "batch": {
            "summarize": flag("summarize"),
            "formats": formats.split(",") if formats else None,
            "workers": flag("workers"),
            "isolation": flag("isolation"),
            "memory_budget_mb": flag("memory_budget_mb"),
            "max_attempts": flag("max_attempts"),
            "executor": flag("executor"),
        },
        "service": {"host": flag("host"), "port": flag("port")},
        "notify": {"recipients": flag("email_to")},
    }
