"""Decisions, action items and open questions, read from the speaker turns by rule (no model).

An action item is future work someone takes on:

* a commitment: "I'll send the figures by Friday", "I'm going to check the prices", "I have to look at it
  again", "I can do that for next week" (what one can do only with a deadline): owner = speaker;
* a named person's or role's task: "Bob will draft the budget": owner = the name; a colleague's reported
  work: "he's going to vary that number";
* what "we'll" commits the team to, when it is work for after the meeting ("we'll rerun the script", "we'll
  try to explore these two options"), not an agenda ("we'll look at the project plan") nor a forecast;
* work handed out: "I will ask the Industrial Designer to find out …", "you're going to look at the
  components concept" (not "if you're gonna …", nor what "you can" or "you'll have to" do in general);
* a team obligation with a deadline or a deliverable: "we need to finalize the budget by May 5th", "we have
  to complete the final questionnaire": owner = none; an instruction with a deadline: "try to find that
  for next meeting";
* a request the addressee accepts in the next turn: "Can you send me the slides?" — "Sure."; or one that
  hands work over ("can you put your reports in the project folder") and is not declined.

Not action items (each seen on QMSum meetings, see tests/data/action_items.tsv): past narration
("I went to the dentist on Monday"), questions, discourse phrases ("I'll tell you what", "let me just
say"), what is done in the meeting itself ("I'll go first", "I'll draw a cat"), bare agreement ("I
can do that") and a request nobody accepts. The rules were tuned on the "tune" rows of
tests/data/action_items.tsv and on the items they find in other QMSum train meetings, and are measured on
its "held-out" rows (``isoscribe bench summary``). A logistic regression over sentence embeddings
(all-MiniLM-L6-v2) and these rules' signals, fitted on the tune rows and added to the rules, found more
(held-out recall 0.44) but mostly false ones (precision 0.45), and was not kept.
"""

from __future__ import annotations

import re
from dataclasses import replace

from isoscribe.summary.dates import find_due, without_due
from isoscribe.summary.text import SpeakerSentence, at_most_words, clean_disfluencies, first_clause, task_text
from isoscribe.summary.types import ActionItem, Decision, OpenQuestion, SourceSpan

__all__ = ["extract_action_items", "extract_decisions", "extract_open_questions", "span_of"]

MAX_ITEMS = 12
MAX_QUESTIONS = 5
MAX_TASK_WORDS = 24
"""Longer, and the "task" is a run-on of speech (a role described at length, a plan thought aloud), not a task."""

_LEAD = r"(?:^|[,;:]\s*|\b(?!(?:if|when|whether|unless|that|what|which|how|because|cause|cos|once|whatever|where|who|than|as|time)\s)[a-z]+\s+)"
"""What may stand before "I'll" or "we need to": anything but a word that makes it a condition or a clause
("if we need to", "what I'll do")."""
_COMMITMENT = re.compile(
    _LEAD + r"I(?:'ll|(?:\s+(?:probably|definitely|also))?\s+will|\s+shall"
    r"|'m\s+(?:probably\s+|definitely\s+|also\s+)?(?:going\s+to|gonna)|\s+am\s+going\s+to"
    r"|(?:\s+(?:also|just|really|still|definitely))?\s+(?:have|need)\s+to(?!\s+(?:say|admit|tell|inform|mention|ask\s+you|go|leave|run)\b)"
    r"|\s+should(?!\s+(?:have|say|think|mention|admit|probably|be)\b))\s+"
    r"(?:also\s+|then\s+|definitely\s+|try\s+(?:and|to)\s+|probably\s+)?(?P<task>.+)",
    re.IGNORECASE,
)
_SUBORDINATE = re.compile(r"\b(?:if|which|what|whatever|where|how|whether|unless)\b", re.IGNORECASE)
_EVERY_COMMITMENT = re.compile(f"(?={_COMMITMENT.pattern})", re.IGNORECASE)
"""Each "I'll …" of a sentence, overlapping: "I'll take minutes, and then I'll send them after the meeting"."""
_ASK = re.compile(
    _LEAD + r"I(?:'ll|\s+will|'d\s+like\s+to|\s+would\s+like\s+to)\s+(?:just\s+|also\s+)?ask\s+"
    r"(?P<owner>the\s+\w+(?:\s+\w+){0,3}?|you(?:\s+(?:two|three|all|guys))?|(?-i:(?:(?:Mr|Mrs|Ms|Dr|Prof)\.?\s+)?[A-Z][a-z]+))"
    r"\s+to\s+(?P<task>.+)",
    re.IGNORECASE,
)
"""A chair handing out work: "I will ask the Industrial Designer to find out more about …"."""
_WEEKDAY_NAME = r"(?:monday|tuesday|wednesday|thursday|friday|saturday|sunday)"
_SENTENCE_ADVERB = (
    r"(?:(?i:maybe|perhaps|actually|hopefully|probably|also|ok|okay|well|now|tomorrow|today|tonight|next\s+week"
    rf"|(?:on\s+)?{_WEEKDAY_NAME})),?\s+"
)
"""What may open a sentence before the one who will do the work: "Tomorrow Bob will send …"."""
_THIRD_PERSON = re.compile(
    rf"(?:^|[,;:]\s*|\b(?i:and|so|then|the|our|but)\s+)(?:{_SENTENCE_ADVERB})?"
    r"(?P<owner>(?!(?:And|So|But|Then|Or)\s)(?:(?:Mr|Mrs|Ms|Dr|Prof)\.?\s+)?[A-Z][a-z]+(?:\s+[A-Z][a-z]+){0,2}"
    r"(?:\s+and\s+(?:the\s+)?[A-Z][a-z]+(?:\s+[A-Z][a-z]+){0,2})?)"
    r"(?:\s+(?:will|is\s+going\s+to|is\s+gonna|are\s+going\s+to|are\s+gonna|gonna)|'s\s+(?:going\s+to|gonna))\s+(?P<task>.+)"
)
_THIRD_PRONOUN = re.compile(
    _LEAD + r"(?:he|she)(?:(?:'s|\s+is)\s+(?:(?:completely|also|just|probably|definitely)\s+)?(?:going\s+to|gonna)\s+(?P<task>.+)|\s+(?:needs|has)\s+to\s+(?P<task2>.+))",
    re.IGNORECASE,
)
"""Work reported for a colleague: "he's going to vary that number", "he needs to play with the window sizes"."""
_ABLE = re.compile(_LEAD + r"I\s+(?:can|could)\s+(?:probably\s+|maybe\s+|try\s+to\s+)?(?P<task>.+)", re.IGNORECASE)
"""What the speaker can do is a commitment only with a deadline: "I can do that for next week"."""
_TEAM_FUTURE = re.compile(
    _LEAD + r"we(?:'ll|\s+will)\s+(?:(?:perhaps|probably|definitely|also|then|just|maybe)\s+)*(?:try\s+(?:and|to)\s+)?"
    r"(?P<task>.+)",
    re.IGNORECASE,
)
_TEAM_WORK = re.compile(
    r"^(?:(?:send|e-?mail|mail|put|save|upload)\b.*\b(?:folder|file|documents?|drive|list|minutes|notes|slides|results|report|link)s?\b"
    r"|send\s+(?:it|them|that|this)\b|write\s+up|prepare|explor|train|re-?\s*run|run\s+(?:the|some)|test|"
    r"do\s+the\s+\w+ing|contact|talk\s+to|ask\s+(?-i:[A-Z])|check\s+with|get\s+back\s+to|set\s+up|organi[sz]|arrange|book|"
    r"order|buy|chang|visit|convinc|let\s+(?:you|them|him|her|everybody)\s+know|have\s+a\s+(?:dialogue|discussion|talk)\s+with|"
    r"try\s+(?!to\b|and\b|it\b|that\b|this\b)(?-i:[A-Z])|do\s+a\s+field\s+trip|get\s+something\s+in)",
    re.IGNORECASE,
)
"""What "we'll …" commits the team to, unlike an agenda ("we'll look at the project plan") or a forecast ("we'll
have something", "we'll see")."""
_ASSIGNMENT = re.compile(
    r"\byou(?:\s+(?:two|three|all|guys))?\s*(?:'re|\s+are)?\s+(?P<modal>gonna|going\s+to|will|'ll|can)\s+"
    r"(?P<task>.+)|\byou'll\s+(?P<task2>.+)|\b(?:next\s+meeting|for\s+the\s+next\s+meeting),?\s+you\s+(?P<task3>.+)",
    re.IGNORECASE,
)
_FUTURE_WORK = re.compile(
    r"^(?:send|e-?mail|mail|put|post|upload|writ|draft|prepar|produc|mak|build|design|bring|check|"
    r"find\s+out|research|investigat|work|contact|ask\s+(?:the|my|our|him|her|them)\b|call|ring|phon|book|order|buy|fix|updat|finish|complet|"
    r"finali[sz]|specif|organi[sz]|arrang|set\s+up|schedul|test|review|list\b|sort\s+out|look\s+into|"
    r"get\s+back\s+to\s+(?:you|him|her|them|us|everyone|everybody|(?-i:[A-Z]))|follow\s+up|circulat|distribut|forward|hire|think(?:ing)?\s+about|look(?:ing)?\s+(?:more\s+)?(?:at|into)|"
    r"responsible\s+for|sav|store|"
    r"train\b|re-?\s*run|run\s+(?:the|it|some|a|an)\b|vary|plot|print|writ(?:e|ing)\s+up|explor|implement|comput|analy[sz]|"
    r"measur|collect|transcrib|label|install|download|integrat|extend|debug|play\s+(?:\w+\s+){0,3}with|"
    r"talk\s+(?:to|with)|meet\s+(?:with|up)|connect\s+with|let\s+(?:you|him|her|them|everybody|everyone)\s+know|"
    r"dig\s+(?:\w+\s+)?up|ask\s+(?-i:[A-Z][a-z]+)|get\s+(?:you|him|her|them|us)\s+(?:some|the|a|an|that)\b|"
    r"set\s+(?:that|it|this|them)\s+up|try(?:ing)?\s+\w+ing\b|continu\w*\s+(?:to\s+)?(?:work|look)|"
    r"pick\s+(?:a|an|another|some)\b|try\s+(?-i:[A-Z]{2,})|run\s+(?:that|this|it|them)\s+again|re-?do\b|pass\s+(?:\w+\s+){0,2}on|provid|read\s+up|"
    r"acquaint|writ(?:e|ing)\s+to|convinc|visit|rewrit|go\s+(?:and\s+)?(?:check|ask|look|talk|find)|"
    r"double[- ]?check|look\s+(?:it|that|them|this)\s+up|look\s+to\s+see|listen\s+to|enter\s+(?:the|this|that|these)\b|"
    r"spend\s+(?:another|a|the|some)\s+(?:\w+\s+)?(?:day|days|week|time|hours?)\b|"
    r"focus(?:ed|ing)?\s+on|concentrat|"
    r"do(?:ing)?\s+(?:the|some|a|an)\s+(?!I\b)[a-z]\w+)",
    re.IGNORECASE,
)
_ADVERB = r"(?:just|also|together|mainly|really|probably|basically)"
_IMPERATIVE = re.compile(
    r"^(?:(?:okay|ok|so|and|then|right|alright|now|please|just)\W+)*(?:try\s+(?:and|to)\s+)?(?P<task>[a-z]+\b.+)",
    re.IGNORECASE,
)
"""A bare instruction, an item only with a deadline: "Okay, so try to find that for next meeting"."""
_PROGRESSIVE = re.compile(rf"^be\s+(?:{_ADVERB}\s+)?\w+ing\b", re.IGNORECASE)
_HEDGES = re.compile(
    r"^(?:(?:you|just|also|then|probably|definitely|actually|basically|again|all|can|will|should|be\s+able\s+to|have\s+to|need\s+to|"
    rf"try\s+(?:and|to)|go\s+(?:ahead\s+)?and|be(?=\s+(?:{_ADVERB}\s+)?\w+ing\b|\s+(?:responsible|focused)\b)|{_ADVERB})\s+)+",
    re.IGNORECASE,
)
_IN_MEETING = re.compile(
    r"\b(?:(?<!from\s)now|in\s+a\s+(?:second|sec|minute|moment)|on\s+the\s+(?:white-?)?board|(?<!of\s)this\s+meeting|"
    r"next\s+slide|presentation\s+running|^take\s+(?:the\s+|some\s+)?minutes|minutes\s+again|"
    r"first|go\s+over|go\s+through|finish\s+up|something\s+up|(?:make|take)\s+a\s+note|(?:that|it|stuff|this)\s+down|"
    r"for\s+a\s+(?:second|sec|minute|moment)|this\s+quick|to\s+a\s+close|in\s+here|back\s+on|(?:last|previous)\s+meeting|"
    r"(?:that|it|this)\s+there$|animals?|ice-?breaker|^make\s+(?:a\s+(?:phone\s+)?call|sure)|^write\s+down|sheet|beeps?|^put\s+(?:the|my|your)\s+mi(?:ke|c|crophone)|^(?:put|give|make\s+it)\s+(?:it\s+)?(?:a\s+)?(?:\d+|one|two|three|four|five|six|seven))\b",
    re.IGNORECASE,
)
_CUT_OFF = re.compile(r"\b(?:my|your|our|their|the|a|an|with|to)$", re.IGNORECASE)
"""A task that stops mid-phrase ("check with my") was cut off: what was to be done is not known."""
_OWN_PRONOUN_TASK = re.compile(
    r"^(?:do|find|finish|send|prepare|check|have|work\s+on|look\s+(?:at|into))\s+(?:that|this|it)\b", re.IGNORECASE
)
_JUST_NOW = re.compile(r"^just\s+(?!(?:send|e-?mail|mail|put|post|upload)\b)", re.IGNORECASE)
"""I'll just check …": done there and then, unless it is sending something."""
_NOT_OWNERS = frozenset(
    "that this it there which what who we you they he she i so and but then well okay yes yeah no one everything just "
    "something nothing were was are is has had have do does did can could would should will nobody everyone "
    "everybody someone somebody anyone anybody".split()
)
_OBLIGATION = re.compile(
    _LEAD + r"(?:we(?:'ll)?\s+(?:need\s+to|have\s+to|must|should|got\s+to|'ve\s+got\s+to|will\s+have\s+to|can\s+all)\s+"
    r"|(?:it|this|that)\s+(?:has|needs)\s+to\s+(?=be\s+(?:ready|done|finished|sent)))(?P<task>.+)",
    re.IGNORECASE,
)
_REQUEST = re.compile(
    r"(?:\b(?:would|do)\s+you(?:\s+\w+)?\s+mind|\b(?:can|could|would|will)\s+you(?:\s+(?:two|three|all|guys))?"
    r"|\bI\s+(?:need|want|would\s+like|'d\s+like)\s+you\s+to|(?:^|[,;:]\s*)please)\s+(?:please\s+)?(?:also\s+)?(?P<task>.+)",
    re.IGNORECASE,
)
_ACCEPT = re.compile(
    r"^\W*(?:(?:yes|yeah|yep|sure|okay|ok|alright|all\s+right|fine|of\s+course|certainly|will\s+do|no\s+problem)\b"
    r"|I(?:'ll|\s+will|\s+can)\b(?!\s*not))",
    re.IGNORECASE,
)
_WORK_VERB = re.compile(
    r"(?:send|e-?mail|mail|forward|upload|circulate|put|save|write|draft|prepare|make|build|design|bring|check|find|"
    r"research|investigate|contact|call|book|order|buy|fix|update|finish|complete|finalize|finalise|specify|"
    r"organize|organise|arrange|schedule|test|review|think|look|work|read)\b",
    re.IGNORECASE,
)
"""The base form of a work verb, as an instruction starts."""
_DELIVERABLE = re.compile(
    r"^(?:complete|fill\s+(?:in|out)|finish|submit|hand\s+in|write|prepare|do)\s+(?:the|our|a|an|this)\s+(?:[\w-]+\s+){0,2}"
    r"(?:questionnaires?|reports?|summar(?:y|ies)|minutes|documents?|forms?|proposals?|budgets?)\b",
    re.IGNORECASE,
)
"""A team's obligation is an item without a deadline when it names a deliverable: "we have to complete the
final questionnaire"."""
_HANDOVER = re.compile(
    r"^(?:send|e-?mail|mail|forward|upload|circulate|(?:put|save|store)\b.*\b(?:folder|file|documents?|drive|share))",
    re.IGNORECASE,
)
_DECLINE = re.compile(r"^\W*(?:no|nope|sorry|I\s+can't|I\s+cannot|not\s+really)\b", re.IGNORECASE)
# Words a task starts with that say it happens here and now, or is talk about talk.
_IMMEDIATE = re.compile(
    r"^(?:just\s+|quickly\s+|now\s+|first\s+)?(?:say|tell|talk|speak|explain|admit|be\s+honest|answer|ask\s+(?:you|a\s+question)|show|"
    r"present|start|begin|go|try|put|read|repeat|stop|pass|move|draw|turn|open|switch|sum|leave|let|have\s+a|"
    r"take\s+(?:a|notes)|give\s+you|hand|wait|hold|sit|stand|come|pick|play|guess|see|hear|think|wonder|"
    r"mention|add|point|note|skip|finish|continue|introduce|do\s+(?:that|this|it|so|earlier|later)\b|get\s+(?:on|back|started)|"
    r"need|want|like|know|receiv|get(?:ting)?\s+(?:\w+\s+)?instructions|decide|take\s+(?:a\s+)?decisions?|reach\s+(?:a\s+)?decisions?|make\s+(?:a\s+)?decisions?|have\s+to\b|be\b(?!\s+(?:ready|done|finished|sent)\b)|not\b|never\b|probably\b|bet|assume|keep\s+(?:it|that))",
    re.IGNORECASE,
)
_PRONOUN_ONLY = re.compile(r"^(?:\w+\s+){0,2}(?:it|that|this|them|those|so|one)\W*$|^find\s+out\W*$", re.IGNORECASE)
_DECISION = re.compile(
    r"\b(?:we(?:'ve|\s+have)?\s+(?:all\s+)?(?:agreed|decided)|(?:the|our)\s+(?:plan|decision)\s+is"
    r"|let's\s+go\s+with|we(?:'ll|\s+will|'re\s+going\s+to)\s+(?:go|stick)\s+with|(?:it's|it\s+is)\s+decided"
    r"|we(?:'ve|\s+have)\s+settled\s+on)\b",
    re.IGNORECASE,
)
_UNDECIDED = re.compile(
    r"\b(?:if|whether|unless|not\s+sure|(?:don't|do\s+not|didn't)\s+think|nobody|no\s+one|(?:have|did)\s+we)\b"
    r"|\bhave\s*$|\b(?:maybe|perhaps|possibly)\W*$",
    re.IGNORECASE,
)
"""Before "we agreed": what makes it a doubt, a condition or a question ("I don't think we agreed", "if we decided")."""
_DOUBTED = re.compile(r"\b(?:I\s+don't\s+know|not\s+sure|we'll\s+see|or\s+not|maybe\s+not)\b", re.IGNORECASE)
"""After it, the same ("Maybe we'll go with the blue one, I don't know")."""
_QUESTION_START = re.compile(
    r"^(?:so\s+|and\s+|but\s+)?(?:what|which|how|why|when|where|who|should|shall|do|does|can|could|would|will|is|are)\b",
    re.IGNORECASE,
)
_UNRESOLVED = re.compile(
    r"\b(?:don't\s+know|not\s+sure|no\s+idea|good\s+question|we'll\s+see|find\s+out|have\s+to\s+(?:check|see)"
    r"|depends|unclear|hard\s+to\s+say)\b",
    re.IGNORECASE,
)
_TAG_QUESTION = re.compile(r"\b(?:right|isn't\s+it|don't\s+you|you\s+know|okay|yeah|huh|or\s+not)\W*\?$", re.I)


def span_of(sentence: SpeakerSentence) -> SourceSpan:
    return SourceSpan(sentence.start, sentence.end, sentence.speaker, clean_disfluencies(sentence.text))


def extract_action_items(sentences: list[SpeakerSentence]) -> list[ActionItem]:
    """Commitments, named tasks, dated obligations and accepted requests, in the order said."""
    items: list[ActionItem] = []
    for index, sentence in enumerate(sentences):
        item = _action_item(sentences, index)
        if item is not None and not any(_same(item, other) for other in items):
            items.append(item)
    return items[:MAX_ITEMS]


def _action_item(sentences: list[SpeakerSentence], index: int) -> ActionItem | None:
    sentence = sentences[index]
    text = clean_disfluencies(sentence.text)
    if text.endswith("?") or _REQUEST.match(text):
        return _request(sentences, index, text)
    if match := _ASK.search(text):
        return _asked(match, sentence)
    commitments = (
        _item(sentence.speaker, m.group("task"), sentence, own=True)
        for m in _EVERY_COMMITMENT.finditer(text)
        if not _IN_MEETING.search(clause := re.split(r"[,;.]|\band\b", text[: m.start("task")])[-1])  # "now I'm …"
        and not _SUBORDINATE.search(clause)  # "which one of these I have to bring", "if ..., then maybe I will"
        and text[: m.start("task")].count('"') % 2 == 0  # quoted: 'do you say "alright I'm going to do …"'?
    )
    if commitment := next((item for item in commitments if item is not None), None):
        return commitment
    if _COMMITMENT.search(text):
        return None
    if (match := _THIRD_PERSON.search(text)) and match.group("owner").lower() not in _NOT_OWNERS:
        return _item(match.group("owner"), match.group("task"), sentence)
    if match := _THIRD_PRONOUN.search(text):
        return _item(None, match.group("task") or match.group("task2"), sentence)
    if (match := _ABLE.search(text)) and find_due(text):
        return _item(sentence.speaker, match.group("task"), sentence, own=True)
    if match := _ASSIGNMENT.search(text):
        return _assignment(text, match, sentence)
    if (match := _OBLIGATION.search(text)) and (find_due(text) or _DELIVERABLE.match(match.group("task"))):
        item = _item(None, match.group("task"), sentence, dated=True)
        return replace(item, due=find_due(text)) if item is not None and item.due is None else item
    if (match := _TEAM_FUTURE.search(text)) and _TEAM_WORK.match(_HEDGES.sub("", match.group("task"))):
        return _item(None, match.group("task"), sentence)
    if (match := _IMPERATIVE.match(text)) and _WORK_VERB.match(match.group("task")) and find_due(match.group("task")):
        return _item(None, match.group("task"), sentence, own=True)
    return None


def _assignment(text: str, match: re.Match[str], sentence: SpeakerSentence) -> ActionItem | None:
    """ "As the industrial designer, you're gonna be working on …": work given to the addressee, named by role
    when the sentence names one, and only when it is future work (a deadline, "next meeting", "be working on", a
    work verb); not a condition ("if you're gonna make …") nor what anyone can or will have to do."""
    task = match.group("task") or match.group("task2") or match.group("task3")
    role = next(iter(_ROLE.findall(text)), None)
    next_meeting = re.search(r"next\s+(?:meeting|time)", text, re.I)
    if _CONDITION.search(text[: match.start()]) or _GENERIC.match(task):
        return None
    if (match.group("modal") or "").lower() == "can" and not next_meeting:
        return None  # "you can make the TV do what you want": what one can do, unless it is for the next meeting
    if not (find_due(text) or next_meeting or _PROGRESSIVE.match(task) or _FUTURE_WORK.match(_HEDGES.sub("", task))):
        return None
    return _item(role.title() if role else None, task, sentence, dated=True)


_PERSON = re.compile(r"(?:(?:Mr|Mrs|Ms|Dr|Prof)\.?\s+)?[A-Z][a-z]+")


def _asked(match: re.Match[str], sentence: SpeakerSentence) -> ActionItem | None:
    addressee = match.group("owner")
    role = next(iter(_ROLE.findall(addressee)), None)
    owner = role.title() if role else addressee if _PERSON.fullmatch(addressee) else None
    return _item(owner, match.group("task"), sentence, dated=True)


_GENERIC = re.compile(r"(?:(?:just|still|also|really|probably)\s+)*(?:(?:have|need)\s+to|be\s+able\s+to)", re.IGNORECASE)
"""Generic "you": "you're gonna have to set up a call centre", "you'll still be able to put a new cover on it"."""
_CONDITION = re.compile(
    r"\b(?:if|when|whether|unless|once|because|cause|cos|cuz|what|which|where|how)\s+(?:\w{1,4}\s+)?$", re.IGNORECASE
)
"""Words before "you're gonna …" that make it a condition, not an assignment: "if you're gonna make a remote"."""

_ROLE = re.compile(
    r"\b(project\s+manager|industrial\s+designer|user\s+interface(?:\s+designer)?|marketing(?:\s+expert|\s+executive)?)\b",
    re.IGNORECASE,
)


_WH_YOU = re.compile(r"\b(?:how|what|why|where|which|who)\s+(?:can|could|would|will|do)\s+you\b", re.IGNORECASE)
"""A question about how one would do it, not a request: "I wonder, how would you do a forced alignment?"."""


def _request(sentences: list[SpeakerSentence], index: int, text: str) -> ActionItem | None:
    """A request the addressee accepts in the next turn; or one to hand work over after the meeting ("can you
    put your reports in the project folder"), which is often accepted without a word, unless it is declined."""
    match = _REQUEST.search(text)
    if match is None or _WH_YOU.search(text):
        return None
    reply = _reply(sentences, index)
    reply_text = clean_disfluencies(reply.text) if reply is not None else ""
    task = match.group("task").rstrip("?")
    if not _ACCEPT.match(reply_text) and (_DECLINE.match(reply_text) or not _HANDOVER.match(_HEDGES.sub("", task))):
        return None
    if sentences[index].speaker:
        task = re.sub(r"\bme\b", sentences[index].speaker, task)
    return _item(reply.speaker if reply is not None else None, task, sentences[index])


def _item(
    owner: str | None, task_words: str, sentence: SpeakerSentence, dated: bool = False, own: bool = False
) -> ActionItem | None:
    """An item when the words are future work: a work verb, or a deadline; nothing done in the meeting itself.
    ``own``: the speaker's own commitment, where "I'll do that next time" is a task (the deadline makes it one)."""
    if _JUST_NOW.match(task_words) and not find_due(task_words):
        return None
    task = _HEDGES.sub("", first_clause(task_words))
    due = find_due(task)
    task = first_clause(without_due(task)) if due else task
    # "By Friday, I'll send the report", "Tomorrow Bob will …": a deadline may open the sentence, in its first clause.
    due = due or find_due(re.split(r"[,;]", clean_disfluencies(sentence.text).split(task_words)[0])[0])
    if not 2 <= len(task.split()) <= MAX_TASK_WORDS or _IN_MEETING.search(task) or _CUT_OFF.search(task):
        return None
    if own and due and _OWN_PRONOUN_TASK.match(task):
        return ActionItem(owner=owner, task=task_text(task), due=due, source=span_of(sentence))
    if _PRONOUN_ONLY.match(task):
        return None
    if not (_FUTURE_WORK.match(_HEDGES.sub("", task)) or (due or dated) and not _IMMEDIATE.match(task)):
        return None
    return ActionItem(owner=owner, task=task_text(task), due=due, source=span_of(sentence))


def _same(item: ActionItem, other: ActionItem) -> bool:
    return item.owner == other.owner and item.task.lower() == other.task.lower()


def _reply(sentences: list[SpeakerSentence], index: int) -> SpeakerSentence | None:
    """The first sentence another speaker says next (one speaker's turns parted by a pause are passed over)."""
    speaker = sentences[index].speaker
    for later in sentences[index + 1 :]:
        if later.turn == sentences[index].turn:
            continue
        if later.speaker != speaker:
            return later
        if speaker is None:  # unlabelled turns: the next one may be anyone
            return None
    return None


def extract_decisions(sentences: list[SpeakerSentence]) -> list[Decision]:
    decisions = []
    for sentence in sentences:
        text = clean_disfluencies(sentence.text)
        match = _DECISION.search(text)
        if match and not text.endswith("?") and not _UNDECIDED.search(text[: match.start()]) \
                and not _DOUBTED.search(text[match.end() :]):
            decisions.append(Decision(text=at_most_words(text), source=span_of(sentence)))
    return decisions


def extract_open_questions(sentences: list[SpeakerSentence]) -> list[OpenQuestion]:
    """Real questions (not tags, not short) that the next speaker leaves unresolved or nobody answers."""
    questions = []
    for index, sentence in enumerate(sentences):
        text = clean_disfluencies(sentence.text)
        if not text.endswith("?") or len(text.split()) < 6 or _TAG_QUESTION.search(text):
            continue
        if not _QUESTION_START.match(text) or _REQUEST.search(text):
            continue
        reply = _reply(sentences, index)
        if reply is None or _UNRESOLVED.search(reply.text):
            questions.append(OpenQuestion(text=at_most_words(text), source=span_of(sentence)))
    return questions[:MAX_QUESTIONS]
