"""``isoscribe bench deltas``: do a live session's deltas add up to its utterances' final text?

The realtime stage in this process, on every mono shared clip with a reference transcript, replayed as a
session decodes it: utterances where the VAD finds them (500 ms of silence closes one, 0.3 s of padding,
at most 28 s), each previewed from 3 s on every 1.5-2.5 s (the spread stands in for the decode and
VAD timing of a live server; one schedule per seed), the recent finals as the prompt. A delta is what
two previews in a row agree on past what was already sent. Four arms: greedy or beam previews, and a
final decode that is free or continues the words already sent (the shipped one: beam, continued).

Per arm: WER of the joined finals against the reference (mean over clips and seeds, and per clip),
utterances whose final text does not begin with their deltas (revised), the share of final words sent
before their utterance ended, and the seconds of a preview decode. Results in ``deltas.json``.
"""

from __future__ import annotations

import json
import random
import statistics
import time
from dataclasses import replace
from itertools import takewhile
from pathlib import Path
from typing import Any

import numpy as np

from isoscribe.benchmarks.accuracy import wer
from isoscribe.config import Settings
from isoscribe.stages import realtime as realtime_stage

__all__ = ["main"]

SHARED_DATA = Path(__file__).resolve().parents[4] / "shared" / "data"
RATE_HZ = 16000
FIRST_PREVIEW_S = 3.0
PREVIEW_EVERY_S = 1.5
PROMPT_CHARS = 200
ARMS = {  # name: (preview beam, final continues the deltas)
    "greedy_free": (False, False),
    "beam_free": (True, False),
    "greedy_continued": (False, True),
    "beam_continued": (True, True),
}


def main(quick: bool, results_dir: Path, settings: Settings, data_dir: Path = SHARED_DATA) -> dict[str, Any]:
    from faster_whisper.audio import decode_audio

    models = realtime_stage.load(settings)
    greedy_asr = models.transcriber.asr.model_copy(update={"beam_size": 1})
    greedy = realtime_stage.RealtimeModels(replace(models.transcriber, asr=greedy_asr), models.vad)
    clips = [c for c in json.loads((data_dir / "manifest.json").read_text())["clips"]
             if c.get("reference_text") and c["channels"] == 1]
    seeds = range(1 if quick else 2)
    arms: dict[str, Any] = {}
    for arm, (beam_previews, continued) in ARMS.items():
        totals = _Totals()
        for clip in clips:
            audio = decode_audio(str(data_dir / clip["path"]), sampling_rate=RATE_HZ)
            for seed in seeds:
                schedule, finals = random.Random(seed), []
                for utterance in _utterances(audio):
                    previews = models if beam_previews else greedy
                    finals.append(_utterance(models, previews, utterance, finals, continued, schedule, totals))
                totals.wer_by_clip.setdefault(clip["path"], []).append(round(wer(clip["reference_text"], " ".join(finals)), 4))
        arms[arm] = totals.summary()
    results = {"model": settings.asr.model, "seeds": len(seeds), "clips": len(clips), "arms": arms}
    (results_dir / "deltas.json").write_text(json.dumps(results, indent=2, sort_keys=True))
    return results


class _Totals:
    def __init__(self) -> None:
        self.wer_by_clip: dict[str, list[float]] = {}
        self.with_deltas = self.revised = self.words_early = self.words = 0
        self.preview_s: list[float] = []

    def summary(self) -> dict[str, Any]:
        return {
            "wer": round(statistics.mean(w for ws in self.wer_by_clip.values() for w in ws), 4),
            "wer_by_clip": self.wer_by_clip,
            "utterances_with_deltas": self.with_deltas,
            "revised": self.revised,
            "share_of_words_sent_early": round(self.words_early / max(self.words, 1), 3),
            "preview_s_mean": round(statistics.mean(self.preview_s), 3) if self.preview_s else None,
        }


def _utterances(audio: np.ndarray) -> list[np.ndarray]:
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    options = VadOptions(min_silence_duration_ms=500, max_speech_duration_s=28, speech_pad_ms=300)
    return [audio[span["start"] : span["end"]] for span in get_speech_timestamps(audio, options)]


def _utterance(models, preview_models, audio: np.ndarray, finals: list[str], continued: bool,
               schedule: random.Random, totals: _Totals) -> str:
    """One utterance's previews and final decode; its final text."""
    prompt = " ".join(finals)[-PROMPT_CHARS:]
    sent: list[str] = []
    before: list[str] = []
    end_s = FIRST_PREVIEW_S + schedule.uniform(0, 0.5)
    while end_s < audio.size / RATE_HZ - 0.3:
        started = time.perf_counter()
        words = _decode(preview_models, audio[: int(end_s * RATE_HZ)], prompt, sent if continued else [], False).split()
        totals.preview_s.append(time.perf_counter() - started)
        agreed = [word for word, _ in takewhile(lambda pair: pair[0] == pair[1], zip(before, words))]
        if agreed[: len(sent)] == sent and len(agreed) > len(sent):
            sent = agreed
        before = words
        end_s += PREVIEW_EVERY_S + schedule.uniform(0, 1.0)
    final = _decode(models, audio, prompt, sent if continued else [], True)
    final_words = final.split()
    totals.words += len(final_words)
    if sent:
        totals.with_deltas += 1
        if final_words[: len(sent)] == sent:
            totals.words_early += len(sent)
        else:
            totals.revised += 1
    return final


def _decode(models, audio: np.ndarray, prompt: str, sent: list[str], final: bool) -> str:
    pcm16 = (np.clip(audio, -1.0, 1.0) * 32767).astype("<i2").tobytes()
    request = realtime_stage.UtteranceRequest(pcm16, RATE_HZ, None, prompt or None, final, " ".join(sent) or None)
    return realtime_stage.run(models, request).text
