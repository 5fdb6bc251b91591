"""``isoscribe bench accuracy``: isoscribe's transcription and diarization against the engine's defaults.

In one run, on the same decoded audio and the same loaded model:
* isoscribe: ``stages.transcribe.transcribe`` with the configured settings (language per stretch of
  speech, loop guard, VAD, word timestamps), the code the speech worker runs;
* direct: ``WhisperModel.transcribe(audio)`` with faster-whisper's default options.
* direct with isoscribe's options: ``WhisperModel.transcribe(audio, **transcription_options(...).engine_kwargs())`` (VAD,
  word timestamps, ...), which isolates what the language and loop handling change.
Reported: WER per shared clip with a reference (``asr.model``, tiny.en by default, and ``base`` in the
full run, where the language is detected per stretch of speech); on the rendered
English→German recording (``base``): WER per language, the share of segments tagged with the
language spoken there, and the languages reported; repetition loops left in the output of the
loop clips; diarization (``benchmarks/diarization.py``): CAM++ against resemblyzer, each with its
speaker-count rule and known-speaker threshold chosen by leave-one-source-out (rendered meetings, the
shared real recordings, long files of real speakers) and measured per held-out source (count accuracy,
DER at collar 0.25 s and 0), and the 60-minute five-voice file in pieces and on one worker (speakers,
real-time factor, peak memory). Skipped-speech recovery (``benchmarks/recovery.py``): its false
fragments per minute and its WER gain on the shared clips, rendered dialogues and a long file.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from isoscribe.audio import decode_audio
from isoscribe.benchmarks.diarization import diarization_acceptance, diarization_section
from isoscribe.benchmarks.meetings import MIXED_LANGUAGE_SCRIPT, make_mixed_language, script_turns
from isoscribe.benchmarks.recovery import recovery_section
from isoscribe.config import Settings
from isoscribe.files import write_atomic
from isoscribe.logs import log_event
from isoscribe.repetition import MAX_COMPRESSION_RATIO, compression_ratio, find_loop, words_of
from isoscribe.transcript import SpeechRequest

__all__ = ["main", "loops_in", "looping", "wer"]

logger = logging.getLogger("isoscribe.bench.accuracy")

SHARED_DATA = Path(__file__).resolve().parents[4] / "shared" / "data"
MULTILINGUAL_MODEL = "base"
def main(quick: bool, results_dir: Path, settings: Settings, data_dir: Path = SHARED_DATA) -> dict[str, Any]:
    started = time.perf_counter()
    settings = settings.model_copy(deep=True)
    settings.asr.device = "cpu" if settings.asr.device == "auto" else settings.asr.device
    results: dict[str, Any] = {"mode": "quick" if quick else "full", "model": settings.asr.model}
    with tempfile.TemporaryDirectory(prefix="isoscribe-accuracy-") as temp:
        models = list(dict.fromkeys([settings.asr.model] + ([] if quick else [MULTILINGUAL_MODEL])))
        results["wer"] = {model: _wer_section(settings, model, data_dir, quick) for model in models}
        results["recovery"] = recovery_section(_Engines(settings, settings.asr.model), data_dir, Path(temp), quick)
        results["mixed_language"], results["loops"] = _language_and_loop_sections(settings, Path(temp), quick)
        results["diarization"] = diarization_section(settings, data_dir, Path(temp), quick)
    results["acceptance"] = _acceptance(results)
    results["wall_s"] = round(time.perf_counter() - started, 1)
    path = Path(results_dir) / "accuracy.json"
    write_atomic(path, json.dumps(results, indent=2, sort_keys=True) + "\n")
    log_event(logger, "bench_accuracy_done", path=path, **results["acceptance"])
    return results


def wer(reference: str, hypothesis: str) -> float:
    import jiwer

    reference_words, hypothesis_words = " ".join(words_of(reference)), " ".join(words_of(hypothesis))
    if not reference_words:
        return 0.0 if not hypothesis_words else 1.0
    return float(jiwer.wer(reference_words, hypothesis_words or "<empty>"))


def loops_in(texts: list[str]) -> int:
    return len(looping(texts))


def looping(texts: list[str]) -> list[str]:
    """Segments that repeat a phrase or compress like a loop, and third identical segments in a row."""
    found, recent = [], []
    for text in texts:
        words = words_of(text)
        if find_loop(words) is not None or compression_ratio(text) > MAX_COMPRESSION_RATIO:
            found.append(text.strip())
        elif words and recent[-2:] == [words, words]:
            found.append(text.strip())
        recent.append(words)
    return found


class _Engines:
    """One loaded model, called two ways: isoscribe's transcribe and faster-whisper's defaults."""

    def __init__(self, settings: Settings, model_name: str) -> None:
        from isoscribe.stages import transcribe

        self.settings = settings.model_copy(update={"asr": settings.asr.model_copy(update={"model": model_name})})
        self.transcriber = transcribe.load(self.settings)

    def isoscribe(self, audio, path: Path, recover: bool = True, **request: Any):
        """``recover``: skipped-speech recovery on (the default setting) or off."""
        from isoscribe.stages import transcribe

        transcriber = self.transcriber
        if recover != transcriber.asr.recover_skipped_speech:
            asr = transcriber.asr.model_copy(update={"recover_skipped_speech": recover})
            transcriber = replace(transcriber, asr=asr)
        return transcribe.transcribe(transcriber, audio, SpeechRequest(str(path), **request))

    def options(self, path: Path) -> dict[str, Any]:
        """isoscribe's engine options (VAD, word timestamps, beam, temperatures, silence threshold)."""
        from isoscribe.stages.options import transcription_options

        options = transcription_options(self.settings.asr, SpeechRequest(str(path)), self.transcriber.english_only)
        return options.engine_kwargs()

    def direct(self, audio, **options: Any):
        segments, info = self.transcriber.whisper.transcribe(audio, **options)
        return list(segments), info


def _wer_section(settings: Settings, model: str, data_dir: Path, quick: bool) -> dict[str, Any]:
    manifest = json.loads((data_dir / "manifest.json").read_text())["clips"]
    prefixes = ("jfk/jfk.wav", "librispeech/") if quick else ("jfk/", "librispeech/", "librivox/", "long/")
    clips = [c for c in manifest if c["reference_text"] and c["path"].startswith(prefixes) and c["channels"] == 1]
    engines = _Engines(settings, model)
    rows = []
    for clip in clips:
        audio = decode_audio(data_dir / clip["path"])
        ours = engines.isoscribe(audio, data_dir / clip["path"])
        direct, _ = engines.direct(audio)
        same, _ = engines.direct(audio, **engines.options(data_dir / clip["path"]))
        rows.append({
            "clip": clip["path"],
            "isoscribe": round(wer(clip["reference_text"], ours.text), 4),
            "direct": round(wer(clip["reference_text"], " ".join(s.text.strip() for s in direct)), 4),
            "direct_same_options": round(wer(clip["reference_text"], " ".join(s.text.strip() for s in same)), 4),
            "isoscribe_warnings": ours.warnings,
        })
        log_event(logger, "bench_wer", model=model, **{k: v for k, v in rows[-1].items() if k != "isoscribe_warnings"})
    return {
        "clips": rows,
        "mean_isoscribe": round(sum(r["isoscribe"] for r in rows) / len(rows), 4),
        "mean_direct": round(sum(r["direct"] for r in rows) / len(rows), 4),
        "mean_direct_same_options": round(sum(r["direct_same_options"] for r in rows) / len(rows), 4),
        "clips_not_worse_than_same_options": sum(r["isoscribe"] <= r["direct_same_options"] + 1e-9 for r in rows),
        "clips_not_worse": sum(r["isoscribe"] <= r["direct"] + 1e-9 for r in rows),
    }


def _language_and_loop_sections(settings: Settings, temp: Path, quick: bool) -> tuple[dict, dict]:
    engines = _Engines(settings, MULTILINGUAL_MODEL)
    mixed_path = make_mixed_language(temp / "english_then_german.wav")
    mixed_audio = decode_audio(mixed_path)
    ours = engines.isoscribe(mixed_audio, mixed_path)
    direct, direct_info = engines.direct(mixed_audio)
    turns = script_turns(mixed_path)
    ours_segments = [(s.start, s.end, s.text, s.language) for s in ours.segments]
    direct_segments = [(s.start, s.end, s.text, direct_info.language) for s in direct]
    mixed = {
        "clip": "rendered: MIXED_LANGUAGE_SCRIPT (English 0-34 s, German 34-64 s), model base",
        "isoscribe": _language_scores(turns, ours_segments, ours.languages),
        "direct": _language_scores(turns, direct_segments, [direct_info.language]),
    }
    german_path = make_mixed_language(temp / "german.wav", MIXED_LANGUAGE_SCRIPT[2:])
    german_audio = decode_audio(german_path)
    cases = [
        ("english_then_german, base, no language", ours, direct),
        ("german read as English (--language en), base",
         engines.isoscribe(german_audio, german_path, language="en"), engines.direct(german_audio, language="en")[0]),
    ]
    loops = {"cases": [
        {
            "clip": name,
            "isoscribe": loops_in([s.text for s in transcript.segments]),
            "direct": loops_in([s.text for s in direct_segments]),
            "isoscribe_warnings": transcript.warnings,
            "direct_looping_text": looping([s.text for s in direct_segments])[:3],
        }
        for name, transcript, direct_segments in cases
    ]}
    loops["isoscribe"] = sum(c["isoscribe"] for c in loops["cases"])
    loops["direct"] = sum(c["direct"] for c in loops["cases"])
    return mixed, loops


def _language_scores(turns: list[dict], segments: list[tuple], languages: list[str]) -> dict[str, Any]:
    """WER per spoken language (segments by their midpoint) and the share of segments tagged right."""
    spoken = {}
    for turn in turns:
        spoken.setdefault(turn["speaker"], []).append(turn)
    scores: dict[str, Any] = {"languages": languages, "wer_by_language": {}}
    for language, language_turns in spoken.items():
        low, high = language_turns[0]["start"] - 0.4, language_turns[-1]["end"] + 0.4
        heard = " ".join(text for start, end, text, _ in segments if low <= (start + end) / 2 <= high)
        scores["wer_by_language"][language] = round(wer(" ".join(t["text"] for t in language_turns), heard), 4)
    tagged_right = [
        any(t["start"] - 0.4 <= (start + end) / 2 <= t["end"] + 0.4 and t["speaker"] == tag for t in turns)
        for start, end, _, tag in segments
    ]
    scores["segments"] = len(segments)
    scores["segment_language_accuracy"] = round(sum(tagged_right) / max(1, len(tagged_right)), 4)
    return scores


def _acceptance(results: dict[str, Any]) -> dict[str, Any]:
    mixed, loops = results["mixed_language"], results["loops"]
    return {
        "wer_not_worse_on_every_clip": all(w["clips_not_worse"] == len(w["clips"]) for w in results["wer"].values()),
        "wer_not_worse_than_same_engine_options_on_every_clip": all(
            w["clips_not_worse_than_same_options"] == len(w["clips"]) for w in results["wer"].values()
        ),
        "mixed_language_better": (
            max(mixed["isoscribe"]["wer_by_language"].values()) < max(mixed["direct"]["wer_by_language"].values())
            and len(mixed["isoscribe"]["languages"]) > len(mixed["direct"]["languages"])
        ),
        "fewer_loops": loops["isoscribe"] < loops["direct"],
        **diarization_acceptance(results["diarization"]),
        "recovery_worth_it_everywhere": results["recovery"]["recovery_worth_it_everywhere"],
    }
