"""Speaker assignment in the parent: turns → words → segments, splitting segments at speaker changes.

Light post-processing on the small Transcript the speech stage returns; no models, linear time
(words and turns are both sorted by time, so one forward scan pairs them).
"""

from __future__ import annotations

from isoscribe.transcript import Segment, SpeakerTurn, Transcript, Word

__all__ = ["assign_speakers", "assign_word_speakers", "split_at_speaker_changes", "speaker_order", "speaker_runs"]


def assign_speakers(transcript: Transcript) -> Transcript:
    """Give every word and segment a speaker from ``transcript.speaker_turns``; split mixed segments.
    Where two voices overlap, the words go to the dominant one (turns marked ``overlapped`` take none)."""
    turns = sorted(transcript.speaker_turns, key=lambda t: (t.start, t.end))
    dominant = [turn for turn in turns if not turn.overlapped]
    if not dominant:
        return transcript
    for segment in transcript.segments:
        if segment.words:
            assign_word_speakers(segment.words, dominant)
            segment.speaker = _majority([(w.end - w.start, w.speaker) for w in segment.words])
        else:
            segment.speaker = _best_turn(segment.start, segment.end, dominant, 0)[1]
    transcript.segments = split_at_speaker_changes(transcript.segments)
    transcript.speakers = speaker_order(turns)
    return transcript


def assign_word_speakers(words: list[Word], turns: list[SpeakerTurn]) -> None:
    """Speaker of each word = the turn overlapping it most; the nearest turn when none overlaps."""
    cursor = 0
    for word in words:
        while cursor < len(turns) - 1 and turns[cursor].end <= word.start:
            cursor += 1
        cursor_back = max(0, cursor - 1)
        word.speaker = _best_turn(word.start, word.end, turns, cursor_back)[1]


def split_at_speaker_changes(segments: list[Segment]) -> list[Segment]:
    """One segment per run of same-speaker words; ids renumbered from 0."""
    result: list[Segment] = []
    for segment in segments:
        runs = speaker_runs(segment.words)
        if len(runs) <= 1:
            result.append(segment)
            continue
        for words in runs:
            result.append(
                Segment(
                    id=0,
                    start=words[0].start if words is not runs[0] else segment.start,
                    end=words[-1].end if words is not runs[-1] else segment.end,
                    text="".join(w.text for w in words).strip(),
                    words=words,
                    speaker=words[0].speaker,
                    avg_logprob=segment.avg_logprob,
                    no_speech_prob=segment.no_speech_prob,
                    compression_ratio=segment.compression_ratio,
                    temperature=segment.temperature,
                    language=segment.language,
                )
            )
    for index, segment in enumerate(result):
        segment.id = index
    return result


def speaker_order(turns: list[SpeakerTurn]) -> list[str]:
    return list(dict.fromkeys(turn.speaker for turn in sorted(turns, key=lambda t: t.start)))


def speaker_runs(words: list[Word]) -> list[list[Word]]:
    """Consecutive words grouped while the speaker stays the same."""
    runs: list[list[Word]] = []
    for word in words:
        if runs and runs[-1][-1].speaker == word.speaker:
            runs[-1].append(word)
        else:
            runs.append([word])
    return runs


def _best_turn(start: float, end: float, turns: list[SpeakerTurn], first: int) -> tuple[float, str]:
    """(overlap, speaker) of the best turn from index ``first`` on; negative overlap = distance."""
    best: tuple[float, str] | None = None
    for turn in turns[first:]:
        if turn.start > end and best is not None and best[0] >= 0:
            break
        overlap = min(end, turn.end) - max(start, turn.start)
        if best is None or overlap > best[0]:
            best = (overlap, turn.speaker)
        if turn.start > end:
            break
    return best if best is not None else (0.0, turns[-1].speaker)


def _majority(weighted: list[tuple[float, str | None]]) -> str | None:
    totals: dict[str | None, float] = {}
    for weight, speaker in weighted:
        totals[speaker] = totals.get(speaker, 0.0) + max(weight, 1e-3)
    return max(totals, key=totals.__getitem__) if totals else None
