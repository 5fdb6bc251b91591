// Transcript edits as pure functions over a list of segments ({start, end, speaker, language, text, words}),
// and the undo/redo history of those lists. Nothing here touches the page or the network.

/** Segments as the server takes them in a PUT: it recomputes the words (WEB_CONTRACT.md). */
export function forServer(segments) {
  return segments.map(({ start, end, speaker, language, text }) => ({
    start, end, speaker: speaker ?? null, language: language ?? null, text,
  }));
}

export function editText(segments, index, text) {
  const segment = segments[index];
  const cleaned = text.replace(/\s+/g, " ").trim();
  if (!cleaned || cleaned === segment.text.trim()) return null;
  return replaced(segments, index, 1, { ...segment, text: ` ${cleaned}`, words: [] });
}

export function mergeWithNext(segments, index) {
  const first = segments[index];
  const second = segments[index + 1];
  if (!second) return null;
  const merged = {
    ...first,
    end: Math.max(first.end, second.end),
    text: ` ${first.text.trim()} ${second.text.trim()}`,
    words: first.words.length && second.words.length ? [...first.words, ...second.words] : [],
  };
  return replaced(segments, index, 2, merged);
}

/**
 * Split segment ``index`` whose (possibly edited) text is ``text`` at character ``caret``. The cut time is
 * the start of the first word after the cut when the words are unchanged, else a share of the segment's
 * time by characters. A cut inside a word moves to that word's end. Null when the cut leaves one side empty.
 */
export function splitAt(segments, index, text, caret) {
  const segment = segments[index];
  while (caret > 0 && caret < text.length && /\S/.test(text[caret - 1]) && /\S/.test(text[caret])) caret += 1;
  const before = text.slice(0, caret).trim();
  const after = text.slice(caret).trim();
  if (!before || !after) return null;
  const wordsKept = segment.words.length && normalise(text) === normalise(segment.text);
  const firstAfter = wordsKept ? before.split(/\s+/).length : -1;
  const cutS = wordsKept && segment.words[firstAfter]
    ? segment.words[firstAfter].start
    : segment.start + ((segment.end - segment.start) * before.length) / (before.length + after.length);
  const head = { ...segment, end: cutS, text: ` ${before}`, words: wordsKept ? segment.words.slice(0, firstAfter) : [] };
  const tail = { ...segment, start: cutS, text: ` ${after}`, words: wordsKept ? segment.words.slice(firstAfter) : [] };
  return replaced(segments, index, 1, head, tail);
}

export function moveToSpeaker(segments, index, speaker) {
  const segment = segments[index];
  if (segment.speaker === speaker) return null;
  const words = segment.words.map((word) => ({ ...word, speaker }));
  return replaced(segments, index, 1, { ...segment, speaker, words });
}

/** A label no speaker has: SPEAKER_NN, counting on from the speakers there are. */
export function newSpeakerLabel(speakers) {
  for (let number = speakers.length; ; number += 1) {
    const label = `SPEAKER_${String(number).padStart(2, "0")}`;
    if (!speakers.includes(label)) return label;
  }
}

function replaced(segments, index, count, ...replacements) {
  return [...segments.slice(0, index), ...replacements, ...segments.slice(index + count)];
}

function normalise(text) {
  return text.replace(/\s+/g, " ").trim();
}

/** The current segment list, with the lists before it (undo) and the ones undone (redo). */
export class EditHistory {
  constructor(segments) {
    this.segments = segments;
    this.done = [];
    this.undone = [];
  }

  /** Make ``segments`` current; null (an edit that changed nothing) is ignored. True when it changed. */
  change(segments) {
    if (!segments) return false;
    this.done.push(this.segments);
    this.segments = segments;
    this.undone = [];
    return true;
  }

  undo() {
    if (!this.done.length) return false;
    this.undone.push(this.segments);
    this.segments = this.done.pop();
    return true;
  }

  redo() {
    if (!this.undone.length) return false;
    this.done.push(this.segments);
    this.segments = this.undone.pop();
    return true;
  }

  /** The server's version of the current list (same text, recomputed words), without a history step. */
  refresh(segments) {
    this.segments = segments;
  }

  get canUndo() {
    return this.done.length > 0;
  }

  get canRedo() {
    return this.undone.length > 0;
  }
}
