"""The known-speaker threshold chosen by leave-one-source-out, and what it gives on each held-out source.

A voice is a reference sample (2–10 s) and other speech of the same person (its centroid). Three sources:
* ``rendered``: espeak-ng voices (``meetings.MEETING_VOICES``), three sentences for the centroid, another
  for the reference;
* ``conversation``: the speakers of the shared real conversations (pyannote's sample, AMI's tst00), each
  with one of their own turns as the reference and their other turns as the centroid;
* ``read``: real readers of the shared clips (LibriSpeech, LibriVox, the sonnet, JFK, MFA's speaker with a
  cold against the same speaker without).

Within a source every reference meets every centroid: same person or not. For each source the
cosine threshold with the best balanced accuracy (same-person pairs accepted, others refused) on the
other two is measured on it; the threshold chosen on all three is the backend's
(``stages.diarize.CAMPPLUS_KNOWN_SIMILARITY``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from isoscribe.audio import SAMPLE_RATE, decode_audio
from isoscribe.benchmarks.meetings import MEETING_VOICES
from isoscribe.demo import render_script
from isoscribe.stages import diarize, vad
from isoscribe.transcript import REFERENCE_MAX_S, REFERENCE_MIN_S

__all__ = ["Voice", "voices", "similarity_pairs", "leave_one_source_out", "choose_threshold"]

SOURCES = ("rendered", "conversation", "read")
THRESHOLDS = tuple(round(x, 2) for x in np.arange(0.0, 1.0, 0.01))
_SENTENCES = (
    "The quarterly numbers arrived this morning and they look better than we expected.",
    "Could you please send the updated schedule to everyone before the meeting on Friday?",
    "We will need two more people on the project if the deadline stays where it is.",
    "I spoke to the supplier yesterday, and they promised to deliver the parts next week.",
)
Span = tuple[Path, float, float]


@dataclass(frozen=True)
class Voice:
    source: str
    name: str
    reference: Span
    speech: tuple[Span, ...]


def voices(data_dir: Path, folder: Path) -> list[Voice]:
    return _rendered(folder) + _conversation(data_dir) + _read(data_dir)


def similarity_pairs(model: diarize.Diarizer, all_voices: list[Voice]) -> list[dict[str, Any]]:
    """(source, similarity, same person) for every reference and centroid of one source."""
    references = {v: diarize.reference_embedding(model, _cut(v.reference)) for v in all_voices}
    centroids = {v: _centroid(model, v.speech) for v in all_voices}
    return [
        {"source": a.source, "similarity": float(references[a] @ centroids[b]), "same": a.name == b.name}
        for a in all_voices for b in all_voices if a.source == b.source
    ]


def choose_threshold(pairs: list[dict[str, Any]], sources: tuple[str, ...]) -> float:
    """The threshold with the best mean balanced accuracy over ``sources``; among equals, the middle one."""
    scores = np.mean([_balanced_accuracy([p for p in pairs if p["source"] == s]) for s in sources], axis=0)
    best = np.flatnonzero(np.isclose(scores, scores.max()))
    return THRESHOLDS[int(best[len(best) // 2])]


def leave_one_source_out(pairs: list[dict[str, Any]]) -> dict[str, Any]:
    report: dict[str, Any] = {}
    for held_out in SOURCES:
        threshold = choose_threshold(pairs, tuple(s for s in SOURCES if s != held_out))
        mine = [p for p in pairs if p["source"] == held_out]
        same = [p["similarity"] for p in mine if p["same"]]
        other = [p["similarity"] for p in mine if not p["same"]]
        report[held_out] = {
            "threshold": threshold,
            "same_person_accepted": f"{sum(s >= threshold for s in same)}/{len(same)}",
            "other_person_refused": f"{sum(s < threshold for s in other)}/{len(other)}",
            "same_person_similarity": [round(min(same), 3), round(max(same), 3)],
            "other_person_similarity": [round(min(other), 3), round(max(other), 3)],
        }
    report["chosen_on_all_sources"] = choose_threshold(pairs, SOURCES)
    return report


def _balanced_accuracy(pairs: list[dict[str, Any]]) -> np.ndarray:
    similarity = np.array([p["similarity"] for p in pairs])[:, None]
    same = np.array([p["same"] for p in pairs])[:, None]
    accepted = similarity >= np.array(THRESHOLDS)[None, :]
    return (accepted[same[:, 0]].mean(axis=0) + (~accepted[~same[:, 0]]).mean(axis=0)) / 2


def _cut(span: Span) -> np.ndarray:
    path, start, end = span
    audio = decode_audio(path)
    return audio[int(start * SAMPLE_RATE) : int(end * SAMPLE_RATE)]


def _centroid(model: diarize.Diarizer, spans: tuple[Span, ...]) -> np.ndarray:
    vectors = []
    for span in spans:
        audio = _cut(span)
        regions = vad.detect(audio).seconds or [(0.0, audio.size / SAMPLE_RATE)]
        vectors.append(diarize.speaker_vectors(model, audio, regions).vectors)
    mean = np.concatenate(vectors).mean(axis=0)
    return mean / max(float(np.linalg.norm(mean)), 1e-9)


def _rendered(folder: Path) -> list[Voice]:
    found = []
    for index, voice in enumerate(MEETING_VOICES):
        voices_map = {"v": voice}
        speech = render_script(folder / f"voice{index}.wav", [("v", s) for s in _SENTENCES[:3]], voices_map)
        reference = render_script(folder / f"voice{index}_reference.wav", [("v", _SENTENCES[3])], voices_map, 0.1)
        found.append(Voice("rendered", voice[0] + str(voice[1]), (reference, 0.0, 60.0), ((speech, 0.0, 600.0),)))
    return found


def _conversation(data_dir: Path) -> list[Voice]:
    """Each speaker's longest turn of 2–10 s is the reference; the turns that do not overlap it, the rest."""
    found = []
    for clip in ("diarization/sample", "diarization/tst00"):
        rows = [line.split() for line in (data_dir / f"{clip}.rttm").read_text().splitlines() if line.strip()]
        turns = [(row[7], float(row[3]), float(row[3]) + float(row[4])) for row in rows]
        for name in sorted({t[0] for t in turns}):
            own = [t for t in turns if t[0] == name]
            fitting = [t for t in own if REFERENCE_MIN_S <= t[2] - t[1] <= REFERENCE_MAX_S]
            if not fitting:
                continue
            reference = max(fitting, key=lambda t: t[2] - t[1])
            rest = tuple((data_dir / f"{clip}.wav", s, e) for _, s, e in own if e <= reference[1] or s >= reference[2])
            if sum(e - s for _, s, e in rest) >= 3.0:
                found.append(Voice("conversation", name, (data_dir / f"{clip}.wav", reference[1], reference[2]), rest))
    return found


def _read(data_dir: Path) -> list[Voice]:
    def whole(path: str) -> Span:
        return (data_dir / path, 0.0, 600.0)

    austen = "librivox/sense_and_sensibility_01_austen_64kb-0{}.wav"
    return [
        Voice("read", "librispeech 1089", whole("librispeech/1089-134686-0002.wav"),
              (whole("librispeech/1089-134686-0000.wav"), whole("librispeech/1089-134686-0001.wav"))),
        Voice("read", "librivox reader", whole(austen.format(920)),
              tuple(whole(austen.format(n)) for n in (870, 880, 890, 930))),
        Voice("read", "librispeech 2412", (data_dir / "librispeech/2412-153948-0000.flac", 0.0, 5.0),
              ((data_dir / "librispeech/2412-153948-0000.flac", 5.0, 12.0),)),
        Voice("read", "sonnet reader", (data_dir / "long/sonnet001.wav", 44.0, 53.3),
              ((data_dir / "long/sonnet001.wav", 0.0, 42.0),)),
        Voice("read", "jfk", (data_dir / "jfk/jfk.wav", 0.0, 5.5), ((data_dir / "jfk/jfk.wav", 5.5, 11.0),)),
        Voice("read", "mfa speaker", (data_dir / "long/michaelandsickmichael.wav", 30.0, 40.0),
              (whole("long/acoustic_corpus.wav"),)),
    ]
