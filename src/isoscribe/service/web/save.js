// Autosave: an edit is PUT about a second after the last one, as the whole segment list on top of the
// revision it was made on. The server answers with the new revision; then the page takes the server's
// words (recomputed timings) unless more edits are waiting.
import { authHeaders, describeError, jsonRequest, KeyNeeded, sendJson } from "./api.js";
import { $, say } from "./dom.js";
import { forServer } from "./edits.js";
import { state } from "./state.js";
import { finishEditing, highlightAt, renderTranscript } from "./transcript.js";
import { renderVersions } from "./versions.js";
import { loadTranscript, showRevision } from "./viewer.js";

const SAVE_AFTER_MS = 1000;

const saving = { timer: null, running: null, dirty: false };

export function scheduleSave() {
  saving.dirty = true;
  say("save-status", "Unsaved changes");
  clearTimeout(saving.timer);
  saving.timer = setTimeout(() => saveNow().catch(() => {}), SAVE_AFTER_MS); // put() reports it
}

/** Save what is waiting now (a download or a rename must see it); resolves once nothing is waiting, rejects
 * when the server refuses the edits (a conflict with another tab's save). */
export async function flushSave() {
  finishEditing(true); // text typed in a part's open editor is on the page: it is kept as an edit
  clearTimeout(saving.timer);
  while (saving.running || saving.dirty) {
    await (saving.running || saveNow());
  }
}

export function resetSaving() {
  clearTimeout(saving.timer);
  saving.dirty = false;
}

function saveNow() {
  clearTimeout(saving.timer);
  if (saving.running) return saving.running;
  if (!saving.dirty || !state.history) return Promise.resolve();
  saving.dirty = false;
  saving.running = put(state.openJob.id).finally(() => (saving.running = null));
  return saving.running;
}

function editBody() {
  return { base_revision: state.revision, segments: forServer(state.history.segments) };
}

async function put(jobId) {
  say("save-status", "Saving…");
  try {
    const saved = await sendJson(`/v1/jobs/${jobId}/transcript`, "PUT", editBody());
    if (state.openJob?.id !== jobId) return;
    showRevision(saved.revision);
    say("save-status", "All changes saved");
    renderVersions(jobId);
    if (!saving.dirty) await takeServerWords(jobId, saved.revision);
  } catch (error) {
    if (state.openJob?.id !== jobId) return;
    saving.dirty = true; // still unsaved: a download or rename that flushes must not pass over them
    if (error instanceof KeyNeeded) throw error; // saved once the key is given: the job reopens, flushing
    const conflict = error.code === "revision_conflict";
    say("save-status", conflict
      ? "Not saved: the transcript was changed somewhere else. Reload the page to see the latest version."
      : `Not saved: ${describeError(error)}`, true);
    throw error;
  }
}

async function takeServerWords(jobId, revision) {
  const latest = await loadTranscript(jobId);
  const unchanged = state.openJob?.id === jobId && !saving.dirty && state.editing === null;
  if (!unchanged || latest.revision !== revision) return;
  state.history.refresh(latest.transcript.segments);
  renderTranscript();
  highlightAt($("player").currentTime);
}

// Leaving the page (reload, close, another address) inside the autosave delay would drop the last edits:
// they go out at once as a keepalive request, which outlives the page. Edits that cannot (waiting on a
// save still running, or over keepalive's size) make the browser ask before leaving.
function saveBeforeLeaving(event) {
  finishEditing(true);
  if (!saving.dirty || !state.history) return;
  const request = jsonRequest("PUT", editBody());
  if (saving.running || !request.keepalive) {
    event.preventDefault();
    event.returnValue = "";
    return;
  }
  clearTimeout(saving.timer);
  saving.dirty = false;
  fetch(`/v1/jobs/${state.openJob.id}/transcript`, { ...request, headers: { ...request.headers, ...authHeaders() } });
}

export function wireSaving() {
  addEventListener("beforeunload", saveBeforeLeaving);
  addEventListener("pagehide", saveBeforeLeaving);
}
