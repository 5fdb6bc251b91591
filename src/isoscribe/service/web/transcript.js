// The transcript in the main pane: segments with their speaker, time and language, words that play from
// where they are clicked, and the edits (text, split, merge, speaker) that go into the edit history.
import { $, button, clock, element, languageName } from "./dom.js";
import { editText, mergeWithNext, moveToSpeaker, newSpeakerLabel, splitAt } from "./edits.js";
import { scheduleSave } from "./save.js";
import { refreshSearch } from "./search.js";
import { state } from "./state.js";
import { playFrom, renderSpeakerFields } from "./viewer.js";

export const SPEAKER_COLOURS = 8;
const NEW_SPEAKER = "<new>"; // not a speaker's name: the server refuses names with "<"

function speakerIndex(speakers, speaker) {
  const index = speakers.indexOf(speaker);
  return index < 0 ? SPEAKER_COLOURS : index % SPEAKER_COLOURS;
}

/** The transcript's speakers, and the labels edits brought in (a segment moved to a new speaker). */
function shownSpeakers() {
  const speakers = [...state.transcript.speakers];
  for (const { speaker } of state.history.segments) if (speaker && !speakers.includes(speaker)) speakers.push(speaker);
  return speakers;
}

/** Draw the current segment list; the focused control (by segment and action) keeps the focus. */
export function renderTranscript() {
  const focus = focusedControl();
  state.wordSpans = [];
  state.wordStarts = [];
  state.currentWord = null;
  const segments = state.history.segments;
  const speakers = shownSpeakers();
  $("transcript").replaceChildren(...segments.map((segment, index) => segmentView(segment, index, segments[index - 1], speakers)));
  restoreFocus(focus);
  refreshSearch();
}

function segmentView(segment, index, previous, speakers) {
  const head = element("div", { class: "segment-head" });
  head.append(button(clock(segment.start), `Play from ${clock(segment.start)}`, () => playFrom(segment.start), "time"));
  if (speakers.length) head.append(speakerChoice(segment, index, speakers));
  if (segment.language && (previous ? previous.language !== segment.language : state.transcript.languages?.length > 1)) {
    head.append(element("span", { class: "language", title: "Language of this part" }, languageName(segment.language)));
  }
  head.append(segmentActions(index, segment));
  const body = state.editing === index ? textEditor(segment, index) : wordsView(segment);
  return element("div", { class: "segment", "data-index": String(index), "data-speaker": String(speakerIndex(speakers, segment.speaker)) }, head, body);
}

function speakerChoice(segment, index, speakers) {
  const id = `segment-speaker-${index}`;
  const select = element("select", { id, class: "speaker-name", "data-action": "speaker" });
  for (const speaker of speakers) select.add(new Option(speaker, speaker, false, speaker === segment.speaker));
  if (!speakers.includes(segment.speaker)) select.add(new Option(segment.speaker || "nobody", "", false, true));
  select.add(new Option("New speaker", NEW_SPEAKER));
  select.addEventListener("change", () => {
    const speaker = select.value === NEW_SPEAKER ? newSpeakerLabel(speakers) : select.value;
    keepingOpenEditor(() => applyEdit(moveToSpeaker(state.history.segments, index, speaker)));
  });
  const label = element("label", { for: id, class: "visually-hidden" }, `Speaker of the part at ${clock(segment.start)}`);
  return element("span", { class: "speaker-choice" }, label, select);
}

function segmentActions(index, segment) {
  const at = clock(segment.start);
  const actions = element("span", { class: "segment-actions" });
  if (state.editing === index) {
    actions.append(
      action("Done", `Keep the new text of the part at ${at}`, "done", () => finishEditing(true)),
      action("Split", `Split the part at ${at} where the cursor is`, "split", () => splitHere(index)),
      action("Cancel", `Discard the changes to the part at ${at}`, "cancel", () => finishEditing(false)),
    );
  } else {
    actions.append(action("Edit", `Edit the text of the part at ${at}`, "edit", () => startEditing(index)));
    if (index + 1 < state.history.segments.length) {
      const merge = () => keepingOpenEditor(() => applyEdit(mergeWithNext(state.history.segments, index)));
      actions.append(action("Merge ↓", `Merge the part at ${at} with the next one`, "merge", merge));
    }
  }
  return actions;
}

function action(text, label, name, onClick) {
  const node = button(text, label, onClick, "segment-action");
  node.dataset.action = name;
  return node;
}

function wordsView(segment) {
  const words = segment.words?.length ? segment.words : [{ start: segment.start, text: segment.text }];
  const text = element("p", { class: "words" });
  for (const word of words) {
    const span = element("span", { class: "word", "data-start": String(word.start) }, word.text);
    state.wordSpans.push(span);
    state.wordStarts.push(word.start);
    text.append(span);
  }
  return text;
}

function textEditor(segment, index) {
  const id = `segment-text-${index}`;
  const area = element("textarea", { id, class: "segment-text", rows: "3" });
  area.value = segment.text.trim();
  area.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey) {
      event.preventDefault();
      finishEditing(true);
    } else if (event.key === "Escape") {
      finishEditing(false);
    }
  });
  const label = element("label", { for: id, class: "visually-hidden" }, `Text of the part at ${clock(segment.start)}`);
  return element("div", { class: "segment-editor" }, label, area);
}

function startEditing(index) {
  if (state.editing !== null) finishEditing(true);
  state.editing = index;
  renderTranscript();
  const area = $(`segment-text-${index}`);
  area.focus();
  area.setSelectionRange(area.value.length, area.value.length);
}

/** Close the open text editor; ``keep``: its text becomes an edit. */
export function finishEditing(keep) {
  const index = state.editing;
  if (index === null) return;
  const text = $(`segment-text-${index}`)?.value ?? "";
  state.editing = null;
  if (!(keep && applyEdit(editText(state.history.segments, index, text)))) renderTranscript();
  focusSegment(index, "edit");
}

/** Another part's control is used while a part's text editor is open: the typed text is kept as an edit
 * first (a redraw would drop it), and the focus stays on the control. */
function keepingOpenEditor(change) {
  const focus = focusedControl();
  finishEditing(true);
  restoreFocus(focus);
  change();
}

function splitHere(index) {
  const area = $(`segment-text-${index}`);
  const next = splitAt(state.history.segments, index, area.value, area.selectionStart);
  if (!next) {
    $("save-status").textContent = "Put the cursor between two words to split there.";
    area.focus();
    return;
  }
  state.editing = null;
  applyEdit(next);
  focusSegment(index + 1, "edit");
}

/** Make ``segments`` the current list (an undoable step) and save it soon; false when nothing changed. */
export function applyEdit(segments) {
  if (!state.history.change(segments)) return false;
  afterChange();
  return true;
}

export function undo() {
  if (state.editing !== null || !state.history?.undo()) return;
  afterChange();
}

export function redo() {
  if (state.editing !== null || !state.history?.redo()) return;
  afterChange();
}

function afterChange() {
  renderTranscript();
  syncSpeakerFields();
  highlightAt($("player").currentTime);
  updateEditButtons();
  scheduleSave();
}

/** The name fields follow the speakers the edits leave (a new one, or one no part has any more). */
function syncSpeakerFields() {
  const speakers = shownSpeakers();
  const fields = [...$("speaker-fields").querySelectorAll("input")].map((input) => input.dataset.label);
  if (speakers.join("\n") !== fields.join("\n")) renderSpeakerFields(speakers);
}

export function updateEditButtons() {
  $("undo").disabled = !state.history?.canUndo;
  $("redo").disabled = !state.history?.canRedo;
}

function focusedControl() {
  const active = document.activeElement;
  const segment = active?.closest?.("#transcript .segment");
  return segment && active.dataset.action ? { index: Number(segment.dataset.index), action: active.dataset.action } : null;
}

function restoreFocus(focus) {
  if (focus) focusSegment(focus.index, focus.action);
}

function focusSegment(index, actionName) {
  const segment = $("transcript").querySelector(`.segment[data-index="${Math.min(index, state.history.segments.length - 1)}"]`);
  (segment?.querySelector(`[data-action="${actionName}"]`) || segment?.querySelector("[data-action]"))?.focus();
}

// ---- Playback and the current word -----------------------------------------------------------------

function seekToWord(event) {
  const word = event.target.closest(".word");
  if (word) playFrom(Number(word.dataset.start));
}

function followPlayback() {
  const player = $("player");
  highlightAt(player.currentTime);
  if (!player.paused) requestAnimationFrame(followPlayback);
}

export function highlightAt(seconds) {
  const index = lastStartAtOrBefore(state.wordStarts, seconds + 0.01);
  const span = index >= 0 ? state.wordSpans[index] : null;
  if (span === state.currentWord) return;
  state.currentWord?.classList.remove("current");
  state.currentWord = span;
  if (!span) return;
  span.classList.add("current");
  if (!$("player").paused) span.scrollIntoView({ block: "nearest" });
}

function lastStartAtOrBefore(starts, seconds) {
  let low = 0;
  let high = starts.length - 1;
  let found = -1;
  while (low <= high) {
    const middle = (low + high) >> 1;
    if (starts[middle] <= seconds) {
      found = middle;
      low = middle + 1;
    } else {
      high = middle - 1;
    }
  }
  return found;
}

export function wireTranscript() {
  $("transcript").addEventListener("click", seekToWord);
  $("undo").addEventListener("click", undo);
  $("redo").addEventListener("click", redo);
  const player = $("player");
  player.addEventListener("play", () => requestAnimationFrame(followPlayback));
  player.addEventListener("seeked", () => highlightAt(player.currentTime));
  player.addEventListener("timeupdate", () => highlightAt(player.currentTime));
}
