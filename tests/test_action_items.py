"""Action items, decisions and open questions read from speaker turns: what is and is not an action item."""

from __future__ import annotations

import pytest

from isoscribe.summary.extraction import extract_action_items, extract_decisions, extract_open_questions
from isoscribe.summary.text import clean_disfluencies, speaker_sentences, turns_from_text


def _items(dialogue: str):
    return extract_action_items(speaker_sentences(turns_from_text(dialogue)))


@pytest.mark.parametrize(
    "dialogue",
    [
        "Anna: I went to the dentist on Monday.",
        "Anna: Can you tell me more about the trip?\nBob: It was long.",
        "Anna: Let me just say that it went well.",
        "Anna: I'll tell you what, the design is fine.",
        "Bob: I can do that.",
        "Anna: So you get to draw your favourite animal. Who would like to go first?\nBob: I will go. That's fine.",
        "Anna: Go first, and sum up the characteristics of that animal.\nBob: Have a go. Put the top in.",
        "Anna: I'll just switch that back here.",
        "Anna: Could you send me the slides?\nBob: No, sorry, I'm away.",
        "Anna: If you're gonna make a remote control only for the TV, there's not much you gain.",
        "Anna: You can make the TV do what you want from the bathroom.",
        "Anna: Yeah because you'll be touching the buttons more.",
        "Anna: You're gonna have to set up a call centre for that one per cent.",
        "Anna: I'll be looking out next time I need to write an essay.",
        "Anna: I'm gonna check that out for a second.",
        "Anna: I'm gonna design a remote control animal.",
        "Anna: I'll make a note of that, Kate.",
        "Anna: Okay I'm gonna review the minutes of the last meeting.",
        "Anna: Then I will present you some new project requirements.",
        "Anna: I guess I'll find out.",
        "Anna: No let's say I'll put two.",
        "Anna: Now I'm gonna have to work between the slides and the white board.",
        "Anna: At the end of the meeting we should take decision on that point.",
        "Anna: We have to do a product evaluation.",
        "Anna: I have to make a call.",
        "Anna: So I have to inform you that the management has new requirements.",
        'Anna: Like, do you say "alright I\'m going to send the report to the group"?',
        "Anna: I wonder, how would you do a forced alignment?\nBob: Sure, good question.",
        "Anna: We'll put the price up at the top.",
        "Anna: Cuz then you'll find out more about what we're making.",
        "Anna: Next time I need to write an essay I'll ask.",
    ],
)
def test_narration_questions_discourse_games_agreement_and_declined_requests_are_not_items(dialogue):
    assert _items(dialogue) == []


@pytest.mark.parametrize(
    ("dialogue", "owner", "task", "due"),
    [
        ("Anna: We need to finalize the budget by May 5th.", None, "Finalize the budget", "by May 5th"),
        ("Anna: Bob will draft the press release by Friday.", "Bob", "Draft the press release", "by Friday"),
        ("Anna: I'll send the figures to finance before the next meeting.", "Anna", "Send the figures to finance",
         "before the next meeting"),
        ("Anna: Could you book the room for Tuesday?\nBob: Sure, no problem.", "Bob", "Book the room", "for Tuesday"),
        ("Anna: As the industrial designer, you're gonna be working on the working design.", "Industrial Designer",
         "Working on the working design", None),
        ("Anna: I'm going to check the prices by the end of the week.", "Anna", "Check the prices",
         "by the end of the week"),
        ("Anna: So I will ask the Industrial Designer to find out more about the working functions.",
         "Industrial Designer", "Find out more about the working functions", None),
        ("Anna: Can you put all your reports in the project documents folder.", None,
         "Put all your reports in the project documents folder", None),
        ("Anna: Would you three mind emailing me your presentations?\nBob: Okay, yeah, afterwards.", "Bob",
         "Emailing Anna your presentations", None),
        ("Anna: Okay so try to find that for next meeting.", None, "Find that", "for next meeting"),
        ("Anna: Right, so we have to complete the final questionnaire and meeting summary.", None,
         "Complete the final questionnaire and meeting summary", None),
        ("Anna: As to where we're going from here, you're going to look at the components concept.", None,
         "Look at the components concept", None),
        ("Anna: So you two will be together working on two prototypes.", None, "Working on two prototypes", None),
        ("Anna: So I'll have to ask the manufacturing department.", "Anna", "Ask the manufacturing department", None),
        ("Anna: But I don't know, so that is something I'll have to look into.", "Anna", "Look into", None),
        ("Anna: So the Industrial Designer and User Interface Designer are going to work together on this one.",
         "Industrial Designer and User Interface Designer", "Work together on this one", None),
        ("Anna: So now for the next meeting we'll have to look at the look-and-feel design.", None,
         "Look at the look-and-feel design", "for the next meeting"),
        ("Anna: So I 'll try training on a larger data set.", "Anna", "Try training on a larger data set", None),
        ("Anna: He was taking everything over two hundred milliseconds, and he's going to vary that number.", None,
         "Vary that number", None),
        ("Anna: I can do that for next week.", "Anna", "Do that", "for next week"),
        ("Anna: I'm gonna work on that today and tomorrow.", "Anna", "Work on that", "today and tomorrow"),
        ("Anna: And then we'll rerun the script and produce better versions.", None,
         "Rerun the script and produce better versions", None),
        ("Anna: I have to look at it again.", "Anna", "Look at it again", None),
        ("Anna: I'll send mail to Dan and ask.", "Anna", "Send mail to Dan and ask", None),
        ("Anna: We will try to explore these two options.", None, "Explore these two options", None),
        ("Anna: But I'll double check.", "Anna", "Double check", None),
        ("Anna: I have to look it up and see.", "Anna", "Look it up and see", None),
        ("Anna: Yeah, I'll have to look more into that data.", "Anna", "Look more into that data", None),
        ("Anna: So I'll go ahead and enter this data.", "Anna", "Enter this data", None),
        ("Anna: So I'll listen to it and find out.", "Anna", "Listen to it and find out", None),
        ("Anna: And Thilo's gonna do the instructing.", "Thilo", "Do the instructing", None),
        ("Anna: I'm probably going to spend another day or so trying to improve things.", "Anna",
         "Spend another day or so trying to improve things", None),
        ("Anna: So we'll perhaps try to convince the OGI people to use the new filters.", None,
         "Convince the OGI people to use the new filters", None),
        ("Anna: I'll ask Dr. Smith to review the paper by Monday.", "Dr. Smith", "Review the paper", "by Monday"),
        ("Anna: And I'll send the draft to Prof. Brown by Friday.", "Anna", "Send the draft to Prof. Brown", "by Friday"),
        ("Anna: Tomorrow Bob will send the report.", "Bob", "Send the report", "Tomorrow"),
        ("Anna: Maybe Carol will book the room by Friday.", "Carol", "Book the room", "by Friday"),
        ("Anna: By Friday, I'll send the report.", "Anna", "Send the report", "By Friday"),
        ("Anna: I'll update the roadmap two weeks from now.", "Anna", "Update the roadmap", "two weeks from now"),
        ("Anna: But I wi I will email them and", "Anna", "Email them", None),  # the task trails off: its end goes
        ("Anna: And I'm going to make a nice menu with pages and yeah.", "Anna", "Make a nice menu with pages", None),
        ("Anna: OK, so I'll send the slides or something so.", "Anna", "Send the slides", None),
    ],
)  # fmt: skip
def test_commitments_named_tasks_dated_obligations_and_accepted_requests_are_items(dialogue, owner, task, due):
    [item] = _items(dialogue)
    assert (item.owner, item.task, item.due) == (owner, task, due)
    assert item.source.quote and item.source.start >= 0


def test_an_item_quotes_its_source_sentence_with_its_time():
    [item] = _items("Anna: Hello all.\nBob: Fine.\nAnna: I'll email the minutes tomorrow.")
    assert item.source.quote == "I'll email the minutes tomorrow." and item.source.start == 2.0
    assert item.source.speaker == "Anna"


def test_decisions_and_open_questions_come_with_their_source():
    sentences = speaker_sentences(turns_from_text(
        "Anna: We decided to use a rubber case.\n"
        "Bob: Which battery should we use for the prototype?\n"
        "Anna: I don't know yet, we'll see.\n"
        "Bob: Is that right?\nAnna: Yes."
    ))  # fmt: skip
    assert [d.text for d in extract_decisions(sentences)] == ["We decided to use a rubber case."]
    doubts = speaker_sentences(turns_from_text(
        "Anna: I don't think we agreed on the colour yet.\nBob: If we decided to go with rubber, it would cost more.\n"
        "Anna: Nobody knows if we agreed on that.\nBob: I'm not sure what the plan is.\n"
        "Anna: Maybe we'll go with the blue one, I don't know.\nBob: We'll go with rubber, or not.\n"
        "Anna: Perhaps let's go with the yellow one."
    ))  # fmt: skip
    assert extract_decisions(doubts) == []
    questions = extract_open_questions(sentences)
    assert [q.text for q in questions] == ["Which battery should we use for the prototype?"]
    assert questions[0].source.speaker == "Bob" and questions[0].source.start == 1.0


def test_every_annotated_row_is_a_sentence_of_its_meeting():
    """Scores match items to rows by (meeting, turn, cleaned sentence): a row that matches no sentence would
    silently count as a miss, or let an item on it count as a false positive."""
    from isoscribe.benchmarks.qmsum import _meeting
    from isoscribe.benchmarks.summary import QMSUM, _annotations

    keys = {key for use in ("tune", "held-out") for key in _annotations(use)}
    sentences = set()
    for name in {meeting for meeting, _, _ in keys}:
        path = next(QMSUM.glob(f"*/{name}.json"))
        for sentence in speaker_sentences(list(_meeting(path, path.parent.name).turns)):
            sentences.add((name, sentence.turn, clean_disfluencies(sentence.text)))
    assert keys - sentences == set()
    assert len(keys) > 2000


def test_precision_and_recall_on_the_held_out_meetings():
    """The rules were tuned on the tune rows; these are the held-out figures reached (bench/results/summary.json:
    P 0.71, R 0.25).
    Precision is short of the goal of 0.8 and recall far short of 0.6: research meetings (ICSI) phrase plans in
    more ways than the rules know. A learned scorer added to the rules (all-MiniLM-L6-v2 embeddings and the rules'
    signals, logistic regression fitted on the tune rows) reached P 0.45, R 0.44 here and was not kept."""
    from isoscribe.benchmarks.summary import action_item_scores

    scores = action_item_scores(_held_out_meetings(), "held-out")
    assert scores["positives"] == 100 and scores["annotated_sentences"] == 975
    assert scores["precision"] >= 0.7 and scores["recall"] >= 0.25


def test_a_second_annotator_agrees_with_the_held_out_labels():
    """The held-out labels are not one annotator's whim: a second annotator, blind to them, agrees on them
    with Cohen's kappa 0.77 (bench/results/summary.json) and finds 96 of their 100 items, so the extractor's
    held-out recall of 0.25 is the rules' shortfall, not noise in the labels."""
    from isoscribe.benchmarks.summary import annotator_agreement

    agreement = annotator_agreement(_held_out_meetings())
    assert agreement["sentences"] == 975 and agreement["items"]["first"] == 100
    assert agreement["cohen_kappa"] >= 0.7 and agreement["second_against_first"]["recall"] >= 0.9


def _held_out_meetings():
    from isoscribe.benchmarks.qmsum import _meeting
    from isoscribe.benchmarks.summary import QMSUM, _annotations

    names = {meeting for meeting, _, _ in _annotations("held-out")}
    return [_meeting(path, path.parent.name) for name in names for path in QMSUM.glob(f"*/{name}.json")]


def test_a_decision_or_question_of_an_unpunctuated_run_on_turn_is_cut_to_fifty_words():
    run_on = " ".join(["and then we looked at the numbers again"] * 20)
    sentences = speaker_sentences(turns_from_text(
        f"Anna: We decided to use a rubber case {run_on}.\nBob: Which battery should we use {run_on}?\nAnna: No idea."
    ))  # fmt: skip
    [decision] = extract_decisions(sentences)
    [question] = extract_open_questions(sentences)
    for text in (decision.text, question.text):
        assert len(text.split()) == 51 and text.endswith(" …"), text
    assert decision.text.startswith("We decided to use a rubber case") and len(decision.source.quote.split()) > 100
