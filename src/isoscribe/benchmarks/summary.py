"""``isoscribe bench summary``: the digest on real meetings, QMSum train and val (shared/data/qmsum).

Per split (train: what the rules and thresholds were tuned on; val: where they are measured):
* non-empty rate of the overview, and ROUGE-1/2 F1 (rouge-score, Porter stemming) of the overview
  against the human "Summarize the whole meeting." answer;
* topic boundaries against QMSum's ``topic_list`` spans: Pk over turns (lower is better), with the
  baseline of one topic for the whole meeting in the same run;
* grounding: the share of human-summary sentences it keeps, and of planted errors it catches, per
  kind (``benchmarks.planted``);
* action items: precision and recall on the annotated sentences of tests/data/action_items.tsv, on the
  rows the rules were tuned on and on the held-out rows apart, and a second annotator's agreement with the
  held-out labels (tests/data/action_items_second.tsv);
* seconds per 1k words of the summary stage in its isolated worker (warm), with the longest meeting.
``--quick``: the first four meetings of each split.
"""

from __future__ import annotations

import csv
import json
import logging
import statistics
import time
from collections import Counter
from pathlib import Path
from typing import Any

from isoscribe.benchmarks.planted import KINDS, plant
from isoscribe.benchmarks.qmsum import Meeting, load_meetings
from isoscribe.config import Settings
from isoscribe.files import write_atomic
from isoscribe.isolation import StageSpec, WorkerPool
from isoscribe.logs import log_event
from isoscribe.pipeline.stages import stage_limits
from isoscribe.summary.extraction import extract_action_items
from isoscribe.summary.grounding import TranscriptIndex, check_sentence
from isoscribe.summary.text import clean_disfluencies, speaker_sentences, split_sentences
from isoscribe.summary.topics import TopicSettings, topic_starts
from isoscribe.summary.types import SummaryRequest

__all__ = ["main", "pk", "action_item_scores", "annotator_agreement", "grounding_scores", "ANNOTATIONS", "QMSUM"]

QMSUM = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "qmsum"
ANNOTATIONS = Path(__file__).resolve().parents[3] / "tests" / "data" / "action_items.tsv"
SECOND_ANNOTATIONS = ANNOTATIONS.with_name("action_items_second.tsv")
SPLITS = ("train", "val")
logger = logging.getLogger("isoscribe.bench.summary")


def main(quick: bool, results_dir: Path, settings: Settings, qmsum: Path = QMSUM) -> dict[str, Any]:
    results: dict[str, Any] = {"mode": "quick" if quick else "full", "model": settings.llm.model_path or "default"}
    for split in SPLITS:
        meetings = load_meetings(qmsum, split)[: 4 if quick else None]
        results[split] = {
            "meetings": len(meetings),
            **_digests(settings, meetings),
            "topics": _topics(meetings),
            "grounding": grounding_scores(meetings),
        }
        log_event(logger, "bench_summary_split", split=split, meetings=len(meetings))
    every_meeting = [meeting for split in SPLITS for meeting in load_meetings(qmsum, split)]
    results["action_items"] = {use: action_item_scores(every_meeting, use) for use in ("tune", "held-out")}
    results["action_items"]["agreement"] = annotator_agreement(every_meeting)
    results_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(results_dir / "summary.json", json.dumps(results, indent=2) + "\n")
    return _headline(results)


def _headline(results: dict[str, Any]) -> dict[str, Any]:
    """What ``isoscribe bench summary`` prints: each figure the issue sets a goal for (the rest is in the file)."""
    splits = {split: {
        "non_empty_rate": results[split]["non_empty_rate"],
        "rouge1_f1_mean": results[split]["rouge1_f1_mean"],
        "human_sentences_kept_rate": results[split]["grounding"]["human_sentences_kept_rate"],
        "planted_errors_caught_rate": results[split]["grounding"]["caught_rate"],
        "seconds_per_1k_words": results[split]["seconds_per_1k_words"],
    } for split in SPLITS}  # fmt: skip
    items = results["action_items"]
    return {
        **splits,
        "action_items": {use: {"precision": items[use]["precision"], "recall": items[use]["recall"]}
                         for use in ("tune", "held-out")},
        "annotator_agreement_kappa": items["agreement"]["cohen_kappa"],
    }


def _digests(settings: Settings, meetings: list[Meeting]) -> dict[str, Any]:
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2"], use_stemmer=True)
    spec = StageSpec(settings.isolation.summary_stage, settings, "summary")
    limits = stage_limits(settings.isolation, settings.isolation.llm_timeout_s)
    rows = []
    with WorkerPool(spec, size=1, limits=limits) as pool:
        for meeting in meetings:
            started = time.perf_counter()
            summary = pool.submit(SummaryRequest(meeting.turns)).result().value
            wall_s = time.perf_counter() - started
            scores = scorer.score(meeting.human_summary, summary.overview)
            rows.append({
                "meeting": meeting.name, "words": meeting.words, "wall_s": round(wall_s, 3),
                "overview_sentences": len([s for s in summary.sentences if s.supported]),
                "rouge1": round(scores["rouge1"].fmeasure, 4), "rouge2": round(scores["rouge2"].fmeasure, 4),
                "topics": len(summary.topics), "action_items": len(summary.action_items),
                "warnings": summary.warnings,
            })  # fmt: skip
    longest = max(rows, key=lambda row: row["words"])
    return {
        "non_empty_rate": sum(row["overview_sentences"] > 0 for row in rows) / len(rows),
        "rouge1_f1_mean": round(statistics.mean(row["rouge1"] for row in rows), 4),
        "rouge2_f1_mean": round(statistics.mean(row["rouge2"] for row in rows), 4),
        "seconds_per_1k_words": round(1000 * sum(r["wall_s"] for r in rows) / sum(r["words"] for r in rows), 3),
        "longest_meeting": {key: longest[key] for key in ("meeting", "words", "wall_s")},
        "per_meeting": rows,
    }


def pk(reference: list[int], hypothesis: list[int], units: int) -> float:
    """Beeferman's Pk over ``units`` turns, for segmentations given as the first unit of each segment."""
    if units < 2:
        return 0.0
    segment_sizes = [b - a for a, b in zip(reference, [*reference[1:], units])]
    window = max(1, round(statistics.mean(segment_sizes) / 2))
    label = lambda starts, unit: sum(start <= unit for start in starts)  # noqa: E731
    probes = range(units - window)
    errors = sum(
        (label(reference, i) == label(reference, i + window)) != (label(hypothesis, i) == label(hypothesis, i + window))
        for i in probes
    )
    return errors / max(1, len(probes))


def _topics(meetings: list[Meeting]) -> dict[str, Any]:
    scored = [m for m in meetings if len(m.topic_starts) > 1]
    ours = [pk(_from_zero(m.topic_starts), topic_starts(list(m.turns), TopicSettings()), len(m.turns)) for m in scored]
    single = [pk(_from_zero(m.topic_starts), [0], len(m.turns)) for m in scored]
    return {
        "meetings": len(scored),
        "pk_mean": round(statistics.mean(ours), 4) if ours else None,
        "pk_one_topic_baseline": round(statistics.mean(single), 4) if single else None,
    }


def _from_zero(starts: tuple[int, ...]) -> list[int]:
    return sorted({0, *starts})


def grounding_scores(meetings: list[Meeting]) -> dict[str, Any]:
    """How many human-summary sentences grounding keeps, and how many planted errors it catches, per kind."""
    kept = total = 0
    planted: Counter[str] = Counter()
    caught: Counter[str] = Counter()
    for meeting in meetings:
        index = TranscriptIndex.of(speaker_sentences(list(meeting.turns)))
        for sentence in split_sentences(meeting.human_summary):
            total += 1
            kept += check_sentence(sentence, index).supported
            for kind in KINDS:
                wrong = plant(kind, sentence, index)
                if wrong is not None and wrong != sentence:
                    planted[kind] += 1
                    caught[kind] += not check_sentence(wrong, index).supported
    return {
        "human_sentences": total,
        "human_sentences_kept_rate": round(kept / total, 4) if total else None,
        "planted": dict(planted),
        "caught_rate": {kind: round(caught[kind] / planted[kind], 4) for kind in KINDS if planted[kind]},
        "caught_rate_all": round(sum(caught.values()) / sum(planted.values()), 4) if planted else None,
    }


def action_item_scores(meetings: list[Meeting], use: str) -> dict[str, Any]:
    """Precision and recall on the annotated meetings of one ``use`` (tune or held-out) of
    tests/data/action_items.tsv; an item whose source sentence was not annotated counts as a false positive."""
    labels = _annotations(use)
    return {"meetings": sorted({meeting for meeting, _, _ in labels}), **_extractor_scores(meetings, labels)}


def annotator_agreement(meetings: list[Meeting]) -> dict[str, Any]:
    """How far a second annotator (tests/data/action_items_second.tsv) agrees with the held-out labels: Cohen's
    kappa, the second's labels scored as if they were an extractor's, and the extractor scored on the second's."""
    from sklearn.metrics import cohen_kappa_score

    first, second = _annotations("held-out"), _annotations(None, SECOND_ANNOTATIONS)
    if first.keys() != second.keys():
        raise ValueError("the second annotation must label exactly the held-out rows")
    both = sum(first[key] and second[key] for key in first)
    return {
        "sentences": len(first),
        "items": {"first": sum(first.values()), "second": sum(second.values()), "both": both},
        "cohen_kappa": round(float(cohen_kappa_score(list(first.values()), [second[key] for key in first])), 4),
        "second_against_first": {"precision": round(both / sum(second.values()), 4),
                                 "recall": round(both / sum(first.values()), 4)},
        "extractor_against_second": _extractor_scores(meetings, second),
    }


def _extractor_scores(meetings: list[Meeting], labels: dict[tuple[str, int, str], bool]) -> dict[str, Any]:
    names = {meeting for meeting, _, _ in labels}
    true_positive = predicted = 0
    for meeting in (m for m in meetings if m.name in names):
        sentences = speaker_sentences(list(meeting.turns))
        turn_at = {(s.start, clean_disfluencies(s.text)): s.turn for s in sentences}
        for item in extract_action_items(sentences):
            predicted += 1
            key = (meeting.name, turn_at.get((item.source.start, item.source.quote), -1), item.source.quote)
            true_positive += labels.get(key, False)
    positives = sum(labels.values())
    return {
        "annotated_sentences": len(labels),
        "positives": positives,
        "predicted": predicted,
        "precision": round(true_positive / predicted, 4) if predicted else None,
        "recall": round(true_positive / positives, 4) if positives else None,
    }


def _annotations(use: str | None, path: Path = ANNOTATIONS) -> dict[tuple[str, int, str], bool]:
    """(meeting, turn, cleaned sentence) → is an action item, for the annotated rows of one ``use`` (None: every
    row, for a file without that column)."""
    with path.open(newline="") as file:
        rows = csv.DictReader((line for line in file if not line.startswith("#")), delimiter="\t")
        return {
            (r["meeting"], int(r["turn"]), clean_disfluencies(r["sentence"])): r["label"] == "yes"
            for r in rows
            if use is None or r["use"] == use
        }
