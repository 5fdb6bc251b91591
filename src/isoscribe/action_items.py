"""Action items and decisions read from a diarized transcript by rule, each with its source span.

A small model invents owners and deadlines; the transcript does not. Candidates come from the
speaker turns themselves:

* a commitment: the speaker says "I will …", "I'll …", "I'm going to …", "let me …": owner = speaker;
* a request: "can you …", "could you …", "please …", "I need you to …": owner = the person named in it
  ("Bob, can you …"), else the next speaker; a request the next speaker turns down is no item;
* a request answered by its owner's commitment in the next turn is one item, worded as asked;
* a deadline in the item's sentence ("by Tuesday", "before the end of the month", "next week") is ``due``;
* a decision: "we agreed to …", "we decided …", "the plan is …", "let's go with …".

Someone's report of another person's plan ("Dave said he will move the servers") names no owner in
the first or second person and is not an item. Plain functions over ``SpeakerSentence``s: no model.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from isoscribe.transcript import ActionItem, Decision, Segment, SourceSpan, Transcript

__all__ = [
    "SpeakerSentence",
    "speaker_sentences",
    "extract_action_items",
    "extract_decisions",
    "find_due",
    "speaker_names",
    "split_sentences",
]


@dataclass(frozen=True)
class SpeakerSentence:
    turn: int
    """Index of the speaker turn (a run of segments with one speaker) the sentence belongs to."""
    speaker: str | None
    start: float
    end: float
    text: str

    def span(self) -> SourceSpan:
        return SourceSpan(start=round(self.start, 2), end=round(self.end, 2), speaker=self.speaker, quote=self.text)


_WEEKDAY = r"(?:monday|tuesday|wednesday|thursday|friday|saturday|sunday)"
_MONTH = r"(?:january|february|march|april|june|july|august|september|october|november|december)"
_COUNT = r"(?:a|an|one|two|three|four|five|six|seven|eight|nine|ten|\d+)"
_PART = r"(?:\s+(?:morning|afternoon|evening|night|at\s+noon))?"
_ORDINAL = (
    r"(?:\d{1,2}(?:st|nd|rd|th)|first|second|third|fourth|fifth|sixth|seventh|eighth|ninth|tenth|eleventh"
    r"|twelfth|\w+teenth|twentieth|twenty[- ]\w+|thirtieth|thirty[- ]first)"
)
_DAY = (
    rf"(?:{_WEEKDAY}|tomorrow|today|tonight|noon|midday|lunch(?:time)?|{_MONTH}(?:\s+(?:the\s+)?{_ORDINAL})?"
    rf"|the\s+{_ORDINAL}(?:\s+of\s+{_MONTH})?)"
)
_PERIOD = r"(?:day|week|month|year|quarter|sprint|weekend)"
_DUE = re.compile(
    rf"\b(?:(?:by|before|until|till|no later than)\s+(?:the\s+)?end\s+of\s+(?:the\s+|this\s+|next\s+)?{_PERIOD}"
    rf"|(?:by|before|until|till|no later than)\s+(?:(?:this|next)\s+)?{_DAY}{_PART}"
    rf"|(?:the\s+)?end\s+of\s+(?:the\s+|this\s+|next\s+)?{_PERIOD}"
    rf"|(?:next|this)\s+(?:{_PERIOD}|{_WEEKDAY}){_PART}"
    rf"|(?:on\s+)?{_WEEKDAY}{_PART}"
    rf"|(?:today|tomorrow|tonight){_PART}|this\s+(?:morning|afternoon|evening)"
    rf"|(?:within|in)\s+{_COUNT}\s+(?:hours?|days?|weeks?|months?))\b",
    re.IGNORECASE,
)

_COMMITMENT = re.compile(
    r"(?:^|[,;:]\s*|\b(?:and|so|then|yes|yeah|okay|ok|sure|fine|right)\s+)"
    r"(?:I(?:'ll|\s+will|\s+shall|'m\s+going\s+to|\s+am\s+going\s+to|\s+can)|let\s+me)\s+"
    r"(?:also\s+|then\s+|definitely\s+|just\s+|personally\s+)?(?P<task>.+)",
    re.IGNORECASE,
)
# ASR often drops the "'ll" of "I'll": "I write the offer by Friday" is a commitment when it has a deadline.
_DATED_PRESENT = re.compile(
    r"(?:^|[,;:]\s*|\b(?:and|so|then|yes|yeah|okay|ok|sure|fine|good|right)\W+)I\s+"
    r"(?!(?:am|was|have|had|think|thought|heard|hear|like|liked|love|know|knew|said|say|feel|felt|guess|hope|"
    r"mean|see|saw|wish|want|would|could|should|did|do|don't|can't|need|must|might)\b)(?P<task>[a-z]+\b.+)",
    re.IGNORECASE,
)
_REQUEST = re.compile(
    r"(?:\b(?:can|could|would|will)\s+you|\bI\s+(?:need|want|would\s+like|'d\s+like)\s+you\s+to"
    r"|(?:^|[,;:]\s*)please)\s+(?:please\s+)?(?:also\s+)?(?P<task>.+)",
    re.IGNORECASE,
)
_DECISION = re.compile(
    r"\b(?:we(?:'ve|\s+have)?\s+(?:all\s+)?(?:agreed|decided)|(?:the|our)\s+plan\s+is|let's\s+go\s+with"
    r"|we(?:'ll|\s+will)\s+go\s+with|(?:it's|it\s+is)\s+decided)\b",
    re.IGNORECASE,
)
# A task must be something to do: "I'll be on holiday", "can you hear me" are not tasks.
_NOT_A_TASK = re.compile(
    r"^(?:(?:\w+\s+)?not\b|never|be\s+(?!\w+ing\b)|have\s+to\s+think|hear|see|believe|imagine|remember|recall|guess|think"
    r"|try|repeat|like\b(?!\s+to))",
    re.IGNORECASE,
)
# What the deadline leaves behind: "order the posters by Tuesday" → "order the posters by"; ASR also
# hears "by" as "my" or "at" ("send it my Monday").
_DANGLING = re.compile(r"\s+(?:by|my|at|on|before|until|for|to|the)(?=[\s.?!,]*$)", re.IGNORECASE)
_DECLINE = re.compile(r"^\W*(?:no\b|nope|sorry|unfortunately|I\s+can(?:'t|not)|I\s+won't|not\s+me)", re.IGNORECASE)
_PRONOUN_TASK = re.compile(r"^(?:\w+\s+){1,3}(?:it|that|this|them|those)$", re.IGNORECASE)
_NAME = r"([A-Z][a-z]+)"
_NOT_NAMES = frozenset(
    "okay ok yes yeah no sure right great good thanks thank so well then and but hi hello hey morning afternoon "
    "evening also please sorry fine perfect alright everyone team i".split()
)
_VOCATIVE_START = re.compile(
    rf"^(?:(?:good\s+)?(?:morning|afternoon|evening)|hi|hello|hey|thanks|thank\s+you|okay|ok|right|so|great)?"
    rf"[,\s]*{_NAME}(?=[,.!?])"
)
_VOCATIVE_END = re.compile(rf",\s*{_NAME}[.?!]*$")
_SELF_NAME = re.compile(rf"\b(?:I'm|I\s+am|this\s+is|my\s+name\s+is)\s+{_NAME}\b")


_SENTENCE_END = re.compile(r"(?:(?<=[.!?])|(?<=[.!?][\"”']))\s+(?=[\"“'(]?[A-Z0-9])")
"""After . ! or ? (and a closing quote, which stays with its sentence), before a capital or digit."""


def split_sentences(text: str) -> list[str]:
    return [sentence.strip() for sentence in _SENTENCE_END.split(text.strip()) if sentence.strip()]


def speaker_sentences(transcript: Transcript) -> list[SpeakerSentence]:
    """The transcript's sentences in order, each with its speaker, turn and (word-level) times."""
    sentences: list[SpeakerSentence] = []
    turn, previous = -1, object()
    for segment in transcript.segments:
        if not segment.text.strip():
            continue
        if segment.speaker != previous or segment.speaker is None:
            turn, previous = turn + 1, segment.speaker
        sentences += [
            SpeakerSentence(turn=turn, speaker=segment.speaker, start=start, end=end, text=text)
            for start, end, text in _timed_sentences(segment)
        ]
    return sentences


def find_due(text: str) -> str | None:
    """The first deadline phrase in ``text`` as said ("by Tuesday"), or None."""
    match = _DUE.search(text)
    return match.group(0) if match else None


def speaker_names(sentences: list[SpeakerSentence]) -> dict[str, str]:
    """Name → speaker label, from self-introductions and from names the previous turn addressed."""
    votes: dict[str, dict[str, int]] = {}
    for index, sentence in enumerate(sentences):
        for name in _SELF_NAME.findall(sentence.text):
            _vote(votes, name, sentence.speaker)
        # Only a name at the end of a turn is a clue to who speaks next: "Thanks, Emma. Mark, could you …"
        ends_turn = index + 1 == len(sentences) or sentences[index + 1].turn != sentence.turn
        addressed = _addressed_name(sentence.text)
        listener = _next_speaker(sentences, index)
        if ends_turn and addressed and listener:
            _vote(votes, addressed, listener)
    return {name: max(labels, key=labels.__getitem__) for name, labels in votes.items()}


def extract_action_items(sentences: list[SpeakerSentence]) -> list[ActionItem]:
    """Commitments and accepted requests, one item each, in the order they were said."""
    names = speaker_names(sentences)
    items: list[tuple[SpeakerSentence, ActionItem]] = []
    answered: set[int] = set()
    for index, sentence in enumerate(sentences):
        item = _commitment(sentence) or _request(sentences, index, names)
        if item is None:
            continue
        request = _answered_request(items, sentence, item)
        if request is not None and request not in answered:
            answered.add(request)
            items[request] = (items[request][0], _merged(items[request][1], item))
        elif not any(_same_task(item, other) for _, other in items):
            items.append((sentence, item))
    return [item for _, item in items]


def extract_decisions(sentences: list[SpeakerSentence]) -> list[Decision]:
    return [
        Decision(text=_clean_clause(sentence.text), source=sentence.span())
        for sentence in sentences
        if _DECISION.search(sentence.text)
    ]


def _commitment(sentence: SpeakerSentence) -> ActionItem | None:
    match = _COMMITMENT.search(sentence.text)
    if match is None:
        match = _DATED_PRESENT.search(sentence.text)
        match = match if match and find_due(match.group("task")) else None
    if match is None or _NOT_A_TASK.match(match.group("task")) or sentence.speaker is None:
        return None
    return _item(sentence.speaker, match.group("task"), sentence)


def _request(sentences: list[SpeakerSentence], index: int, names: dict[str, str]) -> ActionItem | None:
    sentence = sentences[index]
    match = _REQUEST.search(sentence.text)
    if match is None or _NOT_A_TASK.match(match.group("task")):
        return None
    addressed = _addressed_name(sentence.text)
    owner = names.get(addressed, addressed) if addressed else _next_speaker(sentences, index)
    reply = _reply_of(sentences, index, owner)
    if reply is not None and _DECLINE.match(reply.text):
        return None
    task = match.group("task")
    if sentence.speaker:
        task = re.sub(r"\bme\b", sentence.speaker, task)
    return _item(owner, task, sentence)


def _item(owner: str | None, task_words: str, sentence: SpeakerSentence) -> ActionItem | None:
    due = find_due(task_words)
    task = _clean_clause(_DANGLING.sub("", _DUE.sub("", task_words)) if due else task_words)
    if len(task.split()) < 2 and not _PRONOUN_TASK.match(task):
        return None
    return ActionItem(owner=owner, task=task, due=due, source=sentence.span())


def _answered_request(
    items: list[tuple[SpeakerSentence, ActionItem]], sentence: SpeakerSentence, item: ActionItem
) -> int | None:
    """Index of the request of the previous turn that this commitment by its owner answers."""
    for index in range(len(items) - 1, -1, -1):
        asked, request = items[index]
        if asked.turn < sentence.turn - 1:
            return None
        if (
            asked.turn == sentence.turn - 1
            and request.owner == item.owner
            and asked.speaker != item.owner
            and (_PRONOUN_TASK.match(item.task) or _shared_words(request.task, item.task))
        ):
            return index
    return None


def _merged(request: ActionItem, commitment: ActionItem) -> ActionItem:
    """The request's wording unless the answer names the task itself; the deadline from either."""
    base = request if _PRONOUN_TASK.match(commitment.task) else commitment
    return ActionItem(owner=commitment.owner, task=base.task, due=commitment.due or request.due, source=base.source)


def _shared_words(task: str, other: str) -> bool:
    content = lambda text: set(re.findall(r"[a-z]{4,}", text.lower()))  # noqa: E731
    return bool(content(task) & content(other))


def _same_task(item: ActionItem, other: ActionItem) -> bool:
    return item.owner == other.owner and item.task.lower() == other.task.lower()


def _reply_of(sentences: list[SpeakerSentence], index: int, owner: str | None) -> SpeakerSentence | None:
    for later in sentences[index + 1 :]:
        if later.turn != sentences[index].turn:
            return later if later.speaker == owner else None
    return None


def _next_speaker(sentences: list[SpeakerSentence], index: int) -> str | None:
    speaker = sentences[index].speaker
    return next((s.speaker for s in sentences[index + 1 :] if s.speaker and s.speaker != speaker), None)


def _addressed_name(text: str) -> str | None:
    for pattern in (_VOCATIVE_START, _VOCATIVE_END):
        match = pattern.search(text)
        if match and match.group(1).lower() not in _NOT_NAMES and not re.fullmatch(_DAY, match.group(1), re.I):
            return match.group(1)
    return None


def _vote(votes: dict[str, dict[str, int]], name: str, speaker: str | None) -> None:
    if speaker and name.lower() not in _NOT_NAMES:
        labels = votes.setdefault(name, {})
        labels[speaker] = labels.get(speaker, 0) + 1


def _clean_clause(text: str) -> str:
    text = re.sub(r"\s+", " ", text).strip()
    text = re.sub(r"^(?:(?:and|so|then|also|okay|ok|yes|yeah|well|right)\b[,\s]*)+", "", text, flags=re.I)
    text = re.sub(r",\s*[A-Z][a-z]+[.?!]*$", "", text)  # a name addressed at the end: "…, Carol?"
    text = re.sub(r"(?:[,\s]+(?:please|too|as\s+well))?[.?!,;\s]*$", "", text)
    return text[:1].upper() + text[1:]


def _timed_sentences(segment: Segment) -> list[tuple[float, float, str]]:
    """(start, end, text) of each sentence in a segment, timed by its words when it has them."""
    if not segment.words:
        return [(segment.start, segment.end, sentence) for sentence in split_sentences(segment.text)]
    sentences: list[tuple[float, float, str]] = []
    words: list = []
    for word in segment.words:
        words.append(word)
        if word.text.strip().endswith((".", "?", "!")):
            sentences.append((words[0].start, words[-1].end, "".join(w.text for w in words).strip()))
            words = []
    if words:
        sentences.append((words[0].start, words[-1].end, "".join(w.text for w in words).strip()))
    return sentences
