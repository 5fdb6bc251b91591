"""The summary that is printed: only what the transcript supports.

``ground_summary`` runs in the parent on text only (no model), after the summary stage and for any
backend. Every summary sentence is checked against the transcript: its names, numbers and content
words must occur there, within a few consecutive sentences (``Evidence``), compared after
normalisation (case, inflection, number words vs digits); a sentence that fails is dropped and counted. Action items and decisions are taken from the
transcript's speaker turns (``isoscribe.action_items``), each with the span it comes from, so they
come back even when the model failed; the model's own action-item lines are used only to phrase an
item whose every content word its source turn contains.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from isoscribe.action_items import (
    extract_action_items,
    extract_decisions,
    speaker_names,
    speaker_sentences,
    split_sentences,
)
from isoscribe.transcript import ActionItem, Segment, Summary, Transcript

__all__ = [
    "ground_summary",
    "Evidence",
    "Vocabulary",
    "is_supported",
    "unsupported_terms",
    "split_sentences",
    "normalize_word",
    "transcript_from_text",
]

# Words that describe the conversation itself rather than its content: a summary may use them freely.
_CONVERSATION_WORDS = frozenset(
    """
    conversation discussion discuss talk speak speaker participant meeting call dialogue chat exchange
    mention say tell ask answer reply respond agree decide suggest propose explain describe confirm
    express topic also then both each other person people summary summarize briefly overall
    """.split()
)

STOPWORDS = frozenset(
    """
    a an the and or but nor so yet if then than that this these those there here what which who whom whose
    when where why how all any some no not none each every either neither both few more most other such own
    same only very too just even also still again ever never always often already soon now
    i me my mine myself we us our ours ourselves you your yours yourself yourselves he him his himself she her
    hers herself it its itself they them their theirs themselves one ones
    be am is are was were been being have has had having do does did doing done get gets got getting
    will would shall should can could may might must need needs ought let lets
    to of in on at by for with about against between into through during before after above below from up
    down out off over under as until while because since though although unless whether within without
    upon onto toward towards around across along among per via
    yes yeah okay ok oh well like really right sure please thanks thank hello hi good morning
    s t ll re ve d m don didn doesn isn aren wasn weren won wouldn can't cannot couldn shouldn
    """.split()
)

WINDOW_SENTENCES = 5
"""About two turns either side: enough for "Alice asks Bob to …", too few to join distant remarks."""

_NUMBER_WORDS = {
    word: value
    for value, word in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
        "sixteen seventeen eighteen nineteen".split()
    )
} | {word: 10 * (index + 2) for index, word in enumerate("twenty thirty forty fifty sixty seventy eighty ninety".split())}
_ORDINAL_WORDS = {
    "first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5, "sixth": 6, "seventh": 7, "eighth": 8,
    "ninth": 9, "tenth": 10, "eleventh": 11, "twelfth": 12, "thirteenth": 13, "fifteenth": 15,
    "twentieth": 20, "thirtieth": 30,
}
_MULTIPLIERS = {"hundred": 100, "thousand": 1000, "million": 1_000_000}
_IRREGULAR = {
    "said": "say", "sent": "send", "went": "go", "gone": "go", "made": "make", "took": "take", "taken": "take",
    "gave": "give", "given": "give", "told": "tell", "thought": "think", "bought": "buy", "brought": "bring",
    "wrote": "write", "written": "write", "met": "meet", "left": "leave", "spoke": "speak", "spoken": "speak",
    "found": "find", "kept": "keep", "held": "hold", "paid": "pay", "ran": "run", "sold": "sell", "built": "build",
    "chose": "choose", "chosen": "choose", "began": "begin", "begun": "begin", "knew": "know", "known": "know",
    "saw": "see", "seen": "see", "came": "come", "became": "become", "felt": "feel", "heard": "hear",
    "children": "child", "people": "person", "men": "man", "women": "woman",
}
_QUOTATION = re.compile(r"[\"“”]")
_PRONOUN_SUBJECT = re.compile(r"^\W*(?:(?:also|then|and|but|so|later),?\s+)?(?:he|she|they)\b", re.IGNORECASE)
_TOKEN = re.compile(r"[A-Za-z]+(?:_\d+)?|\d[\d,]*(?:\.\d+)?(?:st|nd|rd|th)?")


@dataclass(frozen=True)
class Vocabulary:
    """What a stretch of transcript says, normalised: word stems and the numbers it mentions."""

    stems: frozenset[str]
    numbers: frozenset[str]

    @classmethod
    def of(cls, text: str) -> Vocabulary:
        stems, numbers = _normalized_terms(text)
        return cls(frozenset(stems), frozenset(numbers))


@dataclass(frozen=True)
class Evidence:
    """A transcript as overlapping windows of ``WINDOW_SENTENCES`` sentences, each with its speakers' names.

    A summary sentence must be supported by one window, not by words scattered over the meeting:
    "Bob plans to fly next week" fails when Bob spoke at the start and someone's sister flies at the end.
    """

    windows: tuple[Vocabulary, ...]

    @classmethod
    def of(cls, transcript: Transcript) -> Evidence:
        sentences = speaker_sentences(transcript)
        names_of = _names_by_speaker(sentences)
        texts = [" ".join([s.text, s.speaker or "", *names_of.get(s.speaker, [])]) for s in sentences]
        starts = range(max(1, len(texts) - WINDOW_SENTENCES + 1))
        return cls(tuple(Vocabulary.of(" ".join(texts[i : i + WINDOW_SENTENCES])) for i in starts))


def ground_summary(summary: Summary | None, transcript: Transcript) -> Summary:
    """The summary to print and store: supported sentences only, action items and decisions with sources."""
    summary = summary if summary is not None else Summary(summary="", chunks=0)
    evidence = Evidence.of(transcript)
    sentences = split_sentences(summary.summary)
    kept = [sentence for sentence in sentences if is_supported(sentence, evidence)]
    sentences_of_turns = speaker_sentences(transcript)
    items = [_phrased(item, summary.model_action_items) for item in extract_action_items(sentences_of_turns)]
    return replace(
        summary,
        summary=" ".join(kept),
        action_items=items,
        decisions=extract_decisions(sentences_of_turns),
        model_action_items=[],
        sentences_checked=len(sentences),
        sentences_dropped=len(sentences) - len(kept),
        grounded=True,
    )


def is_supported(sentence: str, evidence: Evidence) -> bool:
    """Every term in one stretch of the transcript, and nothing whose attribution cannot be checked:
    no quotation (it passes for someone's words) and no he/she/they subject (SmolLM2 uses them to pin
    one speaker's plan on another: "they will be flying next week" when a sister flies)."""
    if _QUOTATION.search(sentence) or _PRONOUN_SUBJECT.match(sentence):
        return False
    return not unsupported_terms(sentence, evidence)


def unsupported_terms(sentence: str, evidence: Evidence) -> list[str]:
    """The names, numbers and content words of ``sentence`` that no single window of the transcript has."""
    stems, numbers = _normalized_terms(sentence)
    stems = [stem for stem in stems if stem not in _CONVERSATION_STEMS]
    missing = [numbers + stems]
    for window in evidence.windows:
        missing.append([n for n in numbers if n not in window.numbers] + [s for s in stems if s not in window.stems])
    return min(missing, key=len)


def normalize_word(word: str) -> str:
    """Lower case, without possessive or inflection: "Released" and "releasing" both become "releas"."""
    word = word.lower().removesuffix("'s")
    if word in _IRREGULAR:
        return _IRREGULAR[word]
    if re.fullmatch(r"speaker_\d+", word):
        return word
    for suffix, tail in (("ies", "y"), ("ied", "y"), ("ing", ""), ("ed", ""), ("es", ""), ("s", "")):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3 and not word.endswith("ss"):
            word = word[: -len(suffix)] + tail
            break
    if len(word) > 3 and word[-1] == word[-2] and word[-1] not in "aeiouls":
        word = word[:-1]  # shipped → shipp → ship
    return word[:-1] if len(word) > 3 and word.endswith("e") else word


def transcript_from_text(text: str) -> Transcript:
    """A plain-text transcript as a ``Transcript``: one segment per line; ``Name: text`` keeps its speaker.

    Lines have no times, so each is given the next whole second: the sources of action items then
    point at the line (second N = line N + 1).
    """
    from isoscribe.llm_summary import speaker_label  # the same "Name:" rule the prompt uses

    segments = []
    for index, line in enumerate(line for line in text.splitlines() if line.strip()):
        speaker, words = speaker_label(line.strip())
        segments.append(Segment(id=index, start=float(index), end=index + 1.0, text=words, speaker=speaker))
    speakers = list(dict.fromkeys(segment.speaker for segment in segments if segment.speaker))
    return Transcript(
        segments=segments,
        language="",
        language_probability=0.0,
        duration_s=float(len(segments)),
        model="text",
        speakers=speakers,
    )


def _phrased(item: ActionItem, model_items: list[str]) -> ActionItem:
    """The item worded as the model put it, when one of its lines says only what the source turn says."""
    source_stems, source_numbers = (set(terms) for terms in _normalized_terms(item.source.quote))
    task_stems = set(_normalized_terms(item.task)[0])
    for line in model_items:
        task = re.sub(r"^[\w ]{1,30}?:\s+", "", line).strip().rstrip(".")
        stems, numbers = (set(terms) for terms in _normalized_terms(task))
        if task_stems <= stems <= source_stems and set(numbers) <= source_numbers:
            return replace(item, task=task[:1].upper() + task[1:])
    return item


def _names_by_speaker(sentences) -> dict[str | None, list[str]]:
    names: dict[str | None, list[str]] = {}
    for name, label in speaker_names(sentences).items():
        names.setdefault(label, []).append(name)
    return names


def _normalized_terms(text: str) -> tuple[list[str], list[str]]:
    """(content-word stems, numbers as digit strings) in order of appearance."""
    stems: list[str] = []
    numbers: list[str] = []
    pending: list[str] = []
    for token in _TOKEN.findall(text.replace("’", "'")):
        lower = token.lower()
        # "one" alone is usually a pronoun ("one of them"); after "twenty" it is a number.
        is_number = (lower in _NUMBER_WORDS and (lower != "one" or pending)) or lower in _MULTIPLIERS
        if is_number or (pending and pending[-1] in _MULTIPLIERS and lower == "and"):
            pending.append(lower)
            continue
        if pending:
            numbers.append(_spoken_number(pending))
            pending = []
        if token[0].isdigit():
            numbers.append(re.sub(r"(st|nd|rd|th)$", "", token.replace(",", "")))
        elif lower in _ORDINAL_WORDS:
            numbers.append(str(_ORDINAL_WORDS[lower]))
        elif lower not in STOPWORDS:
            stems.append(normalize_word(lower))
    if pending:
        numbers.append(_spoken_number(pending))
    return stems, numbers


def _spoken_number(words: list[str]) -> str:
    """ "twenty five" → "25", "two thousand and five" → "2005"; a trailing "and" is not part of it."""
    total = current = 0
    for word in words:
        if word in _NUMBER_WORDS:
            current += _NUMBER_WORDS[word]
        elif word in _MULTIPLIERS:
            current = max(current, 1) * _MULTIPLIERS[word]
            if _MULTIPLIERS[word] >= 1000:
                total, current = total + current, 0
    return str(total + current)


_CONVERSATION_STEMS = frozenset(normalize_word(word) for word in _CONVERSATION_WORDS)
