"""Text utilities of the summary: speaker turns, sentence splitting, disfluency cleanup, word stems.

One splitter, one speaker-label rule and one cleaner serve every part of the summary (overview,
extraction, grounding), so that a sentence means the same span of transcript everywhere.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

from isoscribe.summary.types import SummaryTurn
from isoscribe.transcript import Segment, Transcript

__all__ = [
    "SpeakerSentence",
    "turns_of",
    "turns_from_text",
    "transcript_from_text",
    "speaker_label",
    "split_sentences",
    "first_clause",
    "is_question",
    "SENTENCE_ENDS",
    "speaker_sentences",
    "clean_disfluencies",
    "has_words",
    "content_words",
    "stem",
    "lemma",
    "STOPWORDS",
]

MAX_PAUSE_IN_TURN_S = 2.0
"""A speaker silent longer than this, with nobody else speaking, starts a new turn."""
_NAME = r"\w[\w.'-]*(?: [\w.'-]+){0,2}"
_SPEAKER_LABEL = re.compile(rf"^({_NAME}):\s+")
"""A "SPEAKER_00: " or "Project Manager: " prefix: at most three words before the colon."""
_LABEL_ALONE = re.compile(rf"({_NAME}):")
_SENTENCE_END = re.compile(
    r"(?:(?<=[.!?])|(?<=[.!?][\"”']))(?<![ .][A-Za-z]\.)\s+(?=[\"“'(]?[^\W_])|(?<=[。！？])\s*(?=\S)"
)
"""After . ! or ? (a closing quote stays with its sentence), not after an initial or "p.m."; after 。！？."""
_TITLE_BEFORE_NAME = re.compile(r"(?:^|[\s(])(?:Mr|Mrs|Ms|Mx|Dr|Prof|St|Jr|Sr|Mt|vs|approx|cf)\.$", re.I)
"""An abbreviation that does not end a sentence: "Dr. Smith", "Apple vs. Google"."""
SENTENCE_ENDS = (".", "!", "?", "…", "。", "！", "？")


@dataclass(frozen=True)
class SpeakerSentence:
    turn: int
    """Index of the speaker turn the sentence belongs to."""
    speaker: str | None
    start: float
    end: float
    text: str


def turns_of(transcript: Transcript) -> list[SummaryTurn]:
    """Consecutive segments of one speaker joined into a turn, unless a pause parts them (sentences are timed
    by their share of a turn: across a long pause that would be minutes off); without speakers, one turn per
    segment."""
    turns: list[SummaryTurn] = []
    for segment in sorted(transcript.segments, key=lambda segment: segment.start):  # an edit may leave them unsorted
        text = segment.text.strip()
        if not text:
            continue
        if (
            turns and segment.speaker is not None and turns[-1].speaker == segment.speaker
            and segment.start - turns[-1].end <= MAX_PAUSE_IN_TURN_S
        ):
            last = turns[-1]
            turns[-1] = SummaryTurn(last.speaker, last.start, max(last.end, segment.end), f"{last.text} {text}")
        else:
            turns.append(SummaryTurn(segment.speaker, segment.start, segment.end, text))
    return turns


def speaker_label(line: str) -> tuple[str | None, str]:
    """(speaker, words) of a ``Diane: Hello?`` line; (None, line) for a line without a label."""
    label = _SPEAKER_LABEL.match(line)
    if not label:
        return None, line
    return label.group(1), line[label.end() :].strip()


def transcript_from_text(text: str) -> Transcript:
    """A plain-text transcript: one segment per line, ``Name: text`` keeps its speaker, as do the lines under a
    ``Name:`` line of its own (a script's layout); line N is second N."""
    segments: list[Segment] = []
    heading = None
    for line in (line.strip() for line in text.splitlines() if line.strip()):
        if label := _LABEL_ALONE.fullmatch(line):
            heading = label[1]
            continue
        speaker, words = speaker_label(line)
        heading = None if speaker else heading  # a "Name: words" line ends the heading's turn
        index = len(segments)
        segments.append(Segment(id=index, start=float(index), end=index + 1.0, text=words, speaker=speaker or heading))
    speakers = list(dict.fromkeys(segment.speaker for segment in segments if segment.speaker))
    return Transcript(
        segments=segments, language="", language_probability=0.0, duration_s=float(len(segments)),
        model="text", speakers=speakers,
    )  # fmt: skip


def turns_from_text(text: str) -> list[SummaryTurn]:
    return turns_of(transcript_from_text(text))


def split_sentences(text: str) -> list[str]:
    sentences: list[str] = []
    for piece in _SENTENCE_END.split(text.strip()):
        piece = piece.strip()
        if not piece:
            continue
        if sentences and _TITLE_BEFORE_NAME.search(sentences[-1]):
            sentences[-1] = f"{sentences[-1]} {piece}"
        else:
            sentences.append(piece)
    return sentences


_FULL_STOP = r"(?<![ .][A-Za-z])(?<!Mr)(?<!Mrs)(?<!Ms)(?<!Dr)(?<!Prof)(?<!St)\.(?=\s|$)"
"""A "." that ends a clause: not a title's ("Dr. Smith"), an initialism's ("e.g.") nor a decimal point."""


def first_clause(text: str) -> str:
    """``text`` up to the end of its first clause: "send it, and then we can..." keeps "send it"."""
    text = re.split(rf"{_FULL_STOP}|[!?;]|,\s*(?:and|but|so|because|cos|which)\b|\s+(?:but|because|cos)\s+", text)[0]
    text = re.sub(r"\s+or\s+(?:something|so|whatever|anything)\s*$", "", text.strip())
    return re.sub(r"[\s,]+$", "", text).strip()


def task_text(words: str) -> str:
    """An action item's words as its task: capitalised, without the conjunction or interjection it trails off
    into ("I will call them and", "make a nice menu with pages and yeah", "send it or something so")."""
    words = _DANGLING_WORDS.sub("", _TRAILING_CONJUNCTION.sub("", words))
    return words[:1].upper() + words[1:]


_TRAILING_CONJUNCTION = re.compile(
    r"(?:[\s,]+(?:or\s+(?:something|whatever|anything)|and|or|but|so|yeah|yes|okay|ok|right))+\W*$", re.IGNORECASE
)
_DANGLING_WORDS = re.compile(r"(?:\s+(?:in|at|on|to|with|for|the|a|an))+\W*$", re.IGNORECASE)


def at_most_words(text: str, max_words: int = 50) -> str:
    """``text`` cut to ``max_words`` (a transcript without punctuation is one endless sentence)."""
    words = text.split()
    return text if len(words) <= max_words else " ".join(words[:max_words]) + " …"


def is_question(sentence: str) -> bool:
    return sentence.rstrip().endswith(("?", "？"))


def speaker_sentences(turns: list[SummaryTurn]) -> list[SpeakerSentence]:
    """Every sentence of every turn, timed by its share of the turn's characters (turns carry no word times)."""
    sentences: list[SpeakerSentence] = []
    for index, turn in enumerate(turns):
        parts = split_sentences(turn.text)
        total = sum(len(part) + 1 for part in parts) or 1
        seconds_per_char = (turn.end - turn.start) / total
        offset = 0
        for part in parts:
            start = turn.start + offset * seconds_per_char
            offset += len(part) + 1
            end = turn.start + offset * seconds_per_char
            sentences.append(SpeakerSentence(index, turn.speaker, round(start, 2), round(end, 2), part))
    return sentences


_MARKUP = re.compile(r"\{\w+\}|\[[^\]]*\]|<[^>]*>")
_FILLER = re.compile(r"(?<![\w'-])(?:u+h+m*|u+m+|e+r+m+|e+r+|h+m+|m+-?hmm+|mm+|a+h+|o+h+)(?![\w'-])[,.]?", re.I)
_STUTTER = re.compile(r"(?<![\w'])(\w{1,3})(-?)\s+(?=(\1[\w']*))", re.I)
"""What may be a cut-off start of the next word: "w we", "th- the"; but "to Tom", "we were" and "an answer" are
said as written (``_stutter``)."""
_NOT_WORDS = frozenset({"s", "t", "ll", "re", "ve", "d", "m"})
"""Stopwords that are pieces of a contraction ("don't" is "don", "t"), not words said alone."""
_REPEAT = re.compile(r"(?<![\w'])((?:[\w']+\s+){0,4}[\w']+)(?:\s*,?\s+\1(?![\w']))+", re.I)
"""A word or a phrase of up to five words said again right away: "the the", "I don't want to I don't want to"."""
_SPACE_BEFORE_PUNCT = re.compile(r"\s+([,.?!;:])")
_SPLIT_CONTRACTION = re.compile(r"(?<=\w) +'(s|ll|re|ve|d|m)\b", re.I)
"""Some corpora write "I 'll", "he 's" (QMSum's ICSI meetings): speech is written "I'll", "he's"."""
_DOUBLE_PUNCT = re.compile(r"([,.?!;:])(?:\s*[,;:])+|,\s*([.?!])")


def clean_disfluencies(text: str) -> str:
    """Speech as one would write it: no markup, fillers, stutters or repeated words; first letter capital.
    Cleaning clean text changes nothing (annotations store cleaned sentences and are matched cleaned again)."""
    for _ in range(4):  # "there's a there's a a very": one pass leaves "a a"
        cleaned = _clean_once(text)
        if cleaned == text:
            break
        text = cleaned
    return text


def has_words(text: str) -> bool:
    """Something is said: not only fillers, markup ("[Music]", "{vocalsound}") or signs ("♪", "...")."""
    return bool(words_of(clean_disfluencies(text)))


def _clean_once(text: str) -> str:
    text = _SPLIT_CONTRACTION.sub(r"'\1", _MARKUP.sub(" ", text))
    text = _FILLER.sub(" ", text)
    text = _STUTTER.sub(_stutter, text)
    text = _REPEAT.sub(r"\1", text)
    text = _SPACE_BEFORE_PUNCT.sub(r"\1", re.sub(r"\s+", " ", text)).strip()
    text = _DOUBLE_PUNCT.sub(lambda m: m.group(2) or m.group(1), text)
    text = re.sub(r"^[,.;:\s-]+", "", text).strip()
    return text[:1].upper() + text[1:]


def _stutter(match: re.Match[str]) -> str:
    """A hyphen cuts a word off; otherwise only a start that is no word is one ("th the", a lower-case "i"), an
    "a" (never said before an a-word), or "an", "the" or "I" before a function word ("an and", "I it's",
    "the there"): "we were", "talk to Tom", "an answer", "I integrated" keep every word."""
    start, hyphen, word = match[1].lower(), match[2], match[3].lower()
    if start == word and not hyphen:
        return match[0]  # a word said twice: _REPEAT's
    if hyphen or match[1] in ("a", "i") or not _is_word(start):
        return ""
    return "" if start in ("an", "the", "i") and word.split("'")[0] in STOPWORDS else match[0]


@cache
def _is_word(text: str) -> bool:
    from lemminflect import getAllLemmas  # only here: a parent that never cleans speech need not load it

    return text in STOPWORDS and text not in _NOT_WORDS or bool(getAllLemmas(text))


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
    yes yeah okay ok oh well like really right sure please thanks thank hello hi good
    s t ll re ve d m don didn doesn isn aren wasn weren won wouldn cannot couldn shouldn
    gonna wanna kind sort thing things something anything stuff lot bit actually basically maybe mean know think
    """.split()
)

_IRREGULAR = {
    "said": "say", "sent": "send", "went": "go", "gone": "go", "made": "make", "took": "take", "taken": "take",
    "gave": "give", "given": "give", "told": "tell", "thought": "think", "bought": "buy", "brought": "bring",
    "wrote": "write", "written": "write", "met": "meet", "left": "leave", "spoke": "speak", "spoken": "speak",
    "found": "find", "kept": "keep", "held": "hold", "paid": "pay", "ran": "run", "sold": "sell", "built": "build",
    "chose": "choose", "chosen": "choose", "began": "begin", "begun": "begin", "knew": "know", "known": "know",
    "saw": "see", "seen": "see", "came": "come", "became": "become", "felt": "feel", "heard": "hear",
    "children": "child", "people": "person", "men": "man", "women": "woman", "better": "good", "best": "good",
}  # fmt: skip
_SUFFIXES = (
    "ational", "ization", "fulness", "iveness", "ations", "ation", "ments", "ment", "ness", "ities", "ity",
    "ions", "ion", "ings", "ing", "ies", "ied", "ers", "er", "ed", "es", "ly", "al", "s",
)  # fmt: skip
_WORD = re.compile(r"[^\W\d_](?:[^\W\d_]|['-])*|\d+(?:[.,]\d+)*")
"""Letters of any alphabet (with apostrophes and hyphens inside), or a number."""


def stem(word: str) -> str:
    """A crude stem that joins inflections and derivations: "decided"/"decision"/"decides" → "decid"."""
    word = word.lower().replace("’", "'").removesuffix("'s").strip("'-")
    if word in _IRREGULAR:
        return _IRREGULAR[word]
    if word.isdigit() or len(word) <= 4:
        return word
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 4 and not word.endswith("ss"):
            word = word[: -len(suffix)]
            break
    if len(word) > 4 and word[-1] == word[-2]:
        word = word[:-1]
    word = word[:-1] if len(word) > 4 and word.endswith(("e", "i", "y")) else word
    return word[:6]


_INFLECTIONS = (
    ("ies", "y"), ("ied", "y"), ("sses", "ss"), ("ches", "ch"), ("shes", "sh"), ("xes", "x"), ("ing", ""), ("ed", ""),
    ("es", "e"), ("s", ""),
)  # fmt: skip


def lemma(word: str) -> str:
    """``word`` without its inflection, derivation kept: "servers" → "server" (a stem would join it to "serve"),
    "discussing" → "discuss", "ideas" → "idea"."""
    word = word.lower()
    for suffix, replacement in _INFLECTIONS:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3 and not word.endswith("ss"):
            return word[: -len(suffix)] + replacement
    return word


def words_of(text: str) -> list[str]:
    return _WORD.findall(text.replace("’", "'"))


def content_words(text: str) -> list[str]:
    """Stems of the words that carry content, in order: no stopwords, fillers or markup."""
    return [stem(word) for word in words_of(_MARKUP.sub(" ", text)) if word.lower() not in STOPWORDS and len(word) > 1]
