// Keys for a transcript: Space/K play-pause, ← → ±5 s, J L ±10 s, Ctrl+Z undo, Ctrl+Shift+Z (or Ctrl+Y)
// redo, / search. None of them fires while the focus is in a field, where the keys are the field's.
import { $ } from "./dom.js";
import { focusSearch } from "./search.js";
import { state } from "./state.js";
import { redo, undo } from "./transcript.js";
import { skip, togglePlayback } from "./viewer.js";

const FIELDS = "input, textarea, select, [contenteditable]:not([contenteditable='false'])";
// A focused button or link takes Space and Enter itself; the audio element takes the arrows itself.
const OWN_KEYS = { " ": "button, a, summary, audio", ArrowLeft: "audio", ArrowRight: "audio" };

const PLAIN_KEYS = {
  " ": togglePlayback,
  k: togglePlayback,
  ArrowLeft: () => skip(-5),
  ArrowRight: () => skip(5),
  j: () => skip(-10),
  l: () => skip(10),
  "/": focusSearch,
};

function onKey(event) {
  if (!state.history || event.defaultPrevented || event.isComposing || event.altKey || event.metaKey) return;
  const target = event.target instanceof Element ? event.target : document.body;
  if (target.closest(FIELDS)) return;
  const key = event.key.length === 1 ? event.key.toLowerCase() : event.key;
  let command;
  if (event.ctrlKey) {
    if (key === "z") command = event.shiftKey ? redo : undo;
    else if (key === "y") command = redo;
  } else if (!(OWN_KEYS[event.key] && target.closest(OWN_KEYS[event.key]))) {
    command = PLAIN_KEYS[key];
  }
  if (!command) return;
  event.preventDefault();
  command();
}

export function wireKeys() {
  document.addEventListener("keydown", onKey);
  $("player").addEventListener("keydown", (event) => event.key === " " && event.stopPropagation());
}
