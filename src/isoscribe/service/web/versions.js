// The transcript's saved versions (GET /v1/jobs/{id}/revisions): the model's original, then one per saved
// edit or rename. Restoring one makes its segments the current list, an edit like any other: it is saved
// as the newest revision, and Undo takes it back.
import { apiJson, describeError, KeyNeeded } from "./api.js";
import { $, button, dateText, element, say } from "./dom.js";
import { state } from "./state.js";
import { applyEdit, finishEditing } from "./transcript.js";

export async function renderVersions(jobId) {
  let listed;
  try {
    listed = (await apiJson(`/v1/jobs/${jobId}/revisions`)).data;
  } catch (error) {
    if (!(error instanceof KeyNeeded)) say("versions-status", `Cannot list them: ${describeError(error)}`, true);
    return;
  }
  if (state.openJob?.id !== jobId) return;
  const newestFirst = [...listed].sort((a, b) => b.revision - a.revision);
  $("versions").replaceChildren(...newestFirst.map((version) => versionItem(jobId, version)));
}

function versionItem(jobId, version) {
  const name = version.revision === 0 ? "Original" : `Revision ${version.revision}`;
  const shown = version.revision === state.revision;
  const facts = [dateText(version.created_at), `${version.segments} parts`, shown ? "shown now" : ""].filter(Boolean);
  const item = element("li", { "data-revision": String(version.revision) }, element("span", {}, `${name} · ${facts.join(" · ")}`));
  if (!shown) item.append(button("Restore", `Restore ${name.toLowerCase()} (${facts.join(", ")})`, () => restore(jobId, version.revision, name), "quiet"));
  return item;
}

async function restore(jobId, revision, name) {
  try {
    const older = await apiJson(`/v1/jobs/${jobId}/transcript?revision=${revision}`);
    if (state.openJob?.id !== jobId) return;
    finishEditing(true);
    const changed = applyEdit(older.transcript.segments);
    say("versions-status", changed ? `${name} restored; Undo takes it back.` : `${name} has the text shown now.`);
  } catch (error) {
    if (!(error instanceof KeyNeeded)) say("versions-status", `Cannot restore it: ${describeError(error)}`, true);
  }
}
