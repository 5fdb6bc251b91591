"""Rebuild the word lists that grounding reads (``isoscribe.summary``: summary_words.txt, meeting_words.tsv) from
QMSum train (shared/data/qmsum): ``python -m isoscribe.benchmarks.summary_words``. Val is never read.

* summary_words.txt: lemmas that at least ``MIN_SUMMARIES`` train meetings' human answers (the summary and the
  answers to specific queries) use without their transcript saying them in any form: what summaries say of
  any meeting ("discussed", "team", "proposal"), free in grounding. One meeting is enough: in two folds of
  train (each half's words, checked on the other half), grounding keeps 94.1 % of the human-summary sentences
  with words from one meeting and 93.2 % with words from two, and catches as many planted objects (81.3 and
  81.4 %); none of the planted objects is such a word.
* meeting_words.tsv: for each word said at least ``MIN_SAID`` times in train transcripts, the share of those
  times it heads a noun phrase (after a determiner, with no content word after it): "laptop" 0.67,
  "upper" 0.0. Grounding takes a word the transcript never says as an invented object only when it is such
  a noun.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from isoscribe.benchmarks.qmsum import load_meetings
from isoscribe.benchmarks.summary import QMSUM
from isoscribe.summary.grounding import TranscriptIndex
from isoscribe.summary.text import STOPWORDS, clean_disfluencies, lemma, speaker_sentences, split_sentences, words_of

__all__ = ["main"]

MIN_SUMMARIES = 1
MIN_SAID = 8
DETERMINERS = frozenset("the a an this that these those my our your their his her its some any each every another no".split())
OUT = Path(__file__).resolve().parents[1] / "summary"


def main(qmsum: Path = QMSUM, out: Path = OUT) -> None:
    meetings = load_meetings(qmsum, "train")
    unsaid: Counter[str] = Counter()
    heads: Counter[str] = Counter()
    said: Counter[str] = Counter()
    for meeting in meetings:
        index = TranscriptIndex.of(speaker_sentences(list(meeting.turns)))
        unsaid.update(_unsaid_lemmas(_answers(qmsum / "train" / f"{meeting.name}.json"), index))
        for turn in meeting.turns:
            for sentence in split_sentences(clean_disfluencies(turn.text)):
                _count_heads([word.lower() for word in words_of(sentence)], heads, said)
    header = (
        f"# Free in grounding: lemmas (isoscribe.summary.text.lemma) that >= {MIN_SUMMARIES} QMSum train meetings' "
        "human answers use\n# without their transcript saying them. Rebuilt by python -m isoscribe.benchmarks.summary_words.\n"
    )
    (out / "summary_words.txt").write_text(header + "".join(f"{w}\n" for w in sorted(unsaid) if unsaid[w] >= MIN_SUMMARIES))
    rows = [f"{word}\t{heads[word] / count:.2f}\n" for word, count in sorted(said.items()) if count >= MIN_SAID]
    (out / "meeting_words.tsv").write_text(
        f"# Words said >= {MIN_SAID} times in QMSum train transcripts, and the share of those times they head a noun "
        "phrase.\n# Rebuilt by python -m isoscribe.benchmarks.summary_words.\n" + "".join(rows)
    )


def _answers(path: Path) -> list[str]:
    data = json.loads(path.read_text())
    return [query["answer"] for key in ("general_query_list", "specific_query_list") for query in data.get(key, [])]


def _unsaid_lemmas(answers: list[str], index: TranscriptIndex) -> set[str]:
    words = (word.lower() for answer in answers for word in words_of(answer))
    return {lemma(word) for word in words if index.never_says(word)}


def _count_heads(words: list[str], heads: Counter[str], said: Counter[str]) -> None:
    for i, word in enumerate(words):
        said[word] += 1
        after_determiner = i > 0 and words[i - 1] in DETERMINERS or (
            i > 1 and words[i - 2] in DETERMINERS and words[i - 1] not in DETERMINERS
        )
        if after_determiner and (i + 1 == len(words) or words[i + 1] in STOPWORDS):
            heads[word] += 1


if __name__ == "__main__":
    main()
