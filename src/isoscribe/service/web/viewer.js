// The main pane: one job at a time. A finished job shows its player, its editable transcript, speaker
// names, summary and downloads; a running one (running.js) its progress and the text so far.
import { api, apiJson, describeError, KeyNeeded, sendJson } from "./api.js";
import { $, button, clock, element, fileStem, languageName, say } from "./dom.js";
import { EditHistory } from "./edits.js";
import { endedWithout, jobFacts, jobName, jobSnapshot } from "./jobs.js";
import { stopWatching, watchJob } from "./running.js";
import { flushSave, resetSaving } from "./save.js";
import { state, UNFINISHED } from "./state.js";
import { highlightAt, renderTranscript, SPEAKER_COLOURS, updateEditButtons } from "./transcript.js";
import { renderVersions } from "./versions.js";

export async function openJob(jobId) {
  const job = jobSnapshot(jobId);
  if (!job) return;
  if (UNFINISHED.has(job.status)) return watchJob(job);
  await showJobPane(job);
  if (job.status !== "succeeded") return say("job-error", ...endedWithout(job));
  await loadFinished(job);
}

/** Make ``job`` the one in the main pane, empty, with the focus on its title. */
export async function showJobPane(job) {
  await leaveOpenJob();
  state.openJob = job;
  history.replaceState(null, "", `#job=${job.id}`);
  $("workspace").classList.add("job-open");
  $("viewer-empty").hidden = true;
  $("viewer-job").hidden = false;
  $("viewer-title").textContent = jobName(job);
  $("viewer-facts").textContent = jobFacts(job);
  for (const id of ["job-error", "player-status", "download-status", "save-status", "search-count", "versions-status"]) say(id, "");
  $("versions").replaceChildren();
  $("job-progress").hidden = true;
  $("tools").hidden = true;
  $("side").hidden = true;
  $("transcript").replaceChildren();
  for (const row of state.jobRows.values()) row.classList.toggle("open", row.dataset.jobId === job.id);
  $("viewer-title").focus();
}

async function leaveOpenJob() {
  stopWatching();
  await flushSave().catch(() => {});
  resetSaving();
  releaseAudio();
  state.openJob = state.transcript = state.history = state.summary = null;
  state.editing = null;
}

export async function loadFinished(job) {
  $("viewer-facts").textContent = "Loading…";
  try {
    const [edited, summary] = await latestResult(job);
    if (state.openJob?.id !== job.id) return;
    showResult(edited, summary);
    await loadAudio(job.id);
  } catch (error) {
    if (!(error instanceof KeyNeeded)) say("job-error", `Could not load it: ${describeError(error)}`, true);
  }
}

/** [the latest revision, the summary or null]. */
function latestResult(job) {
  return Promise.all([
    loadTranscript(job.id),
    job.options?.summarize ? apiJson(`/v1/jobs/${job.id}/result?format=summary`) : null,
  ]);
}

/** The latest revision: {revision, transcript}. */
export function loadTranscript(jobId) {
  return apiJson(`/v1/jobs/${jobId}/transcript`);
}

function showResult(edited, summary) {
  state.transcript = edited.transcript;
  state.revision = edited.revision;
  state.history = new EditHistory(edited.transcript.segments);
  state.summary = summary;
  $("viewer-facts").textContent = transcriptFacts(edited.transcript, edited.revision);
  $("tools").hidden = false;
  $("side").hidden = false;
  renderTranscript();
  renderSpeakerFields(edited.transcript.speakers);
  renderVersions(state.openJob.id);
  renderSummary(summary);
  renderDownloads(Boolean(summary));
  updateEditButtons();
}

/** "1:00 · 2 speakers · English, German · model base · edited (revision 2)" */
function transcriptFacts(transcript, revision) {
  const languages = transcript.languages?.length ? transcript.languages : [transcript.language];
  return [
    clock(transcript.duration_s),
    speakerCount(transcript.speakers?.length),
    languages.filter(Boolean).map(languageName).join(", "),
    `model ${transcript.model}`,
    revision ? `edited (revision ${revision})` : "",
  ].filter(Boolean).join(" · ");
}

function speakerCount(count) {
  return count ? `${count} speaker${count > 1 ? "s" : ""}` : "";
}

export function showRevision(revision) {
  state.revision = revision;
  if (state.transcript) $("viewer-facts").textContent = transcriptFacts(state.transcript, revision);
}

// The <audio> element cannot send the Authorization header, so the audio comes in as a blob.
async function loadAudio(jobId) {
  const player = $("player");
  try {
    const blob = await (await api(`/v1/jobs/${jobId}/audio`)).blob();
    if (state.openJob?.id !== jobId) return;
    state.audioUrl = URL.createObjectURL(blob);
    player.src = state.audioUrl;
    player.hidden = false;
  } catch (error) {
    player.hidden = true;
    if (error instanceof KeyNeeded || state.openJob?.id !== jobId) return;
    say("player-status", error.code === "no_audio"
      ? "The server did not keep this job's audio (its keep_job_audio setting is off), so the transcript cannot play here."
      : `The audio cannot be played: ${describeError(error)}`);
  }
}

function releaseAudio() {
  const player = $("player");
  player.pause();
  player.removeAttribute("src");
  player.load();
  player.hidden = true;
  if (state.audioUrl) URL.revokeObjectURL(state.audioUrl);
  state.audioUrl = null;
}

export async function closeViewer() {
  await leaveOpenJob();
  $("workspace").classList.remove("job-open");
  $("viewer-job").hidden = true;
  $("viewer-empty").hidden = false;
  for (const row of state.jobRows.values()) row.classList.remove("open");
  history.replaceState(null, "", location.pathname);
}

/** A name field per speaker label (a segment moved to a new speaker brings one more). */
export function renderSpeakerFields(speakers) {
  const fields = speakers.map((speaker, index) => {
    const id = `speaker-name-${index}`;
    return element(
      "div",
      { class: "speaker-field", "data-speaker": String(index % SPEAKER_COLOURS) },
      element("span", { class: "swatch", "aria-hidden": "true" }),
      element("label", { for: id }, `Name for ${speaker}`),
      element("input", { id, value: speaker, "data-label": speaker, maxlength: "64", required: "", autocomplete: "off" }),
    );
  });
  $("speakers-form").hidden = fields.length === 0;
  $("speaker-fields").replaceChildren(...fields);
  say("speakers-status", "");
}

// A rename rewrites the labels in every revision's latest text, so the edit history starts again from it.
async function saveSpeakerNames(event) {
  event.preventDefault();
  const names = {};
  for (const input of $("speaker-fields").querySelectorAll("input")) {
    const name = input.value.trim();
    if (name && name !== input.dataset.label) names[input.dataset.label] = name;
  }
  if (!Object.keys(names).length) return say("speakers-status", "No name changed.");
  const job = state.openJob;
  try {
    await flushSave();
    const renamed = await sendJson(`/v1/jobs/${job.id}/speakers`, "PATCH", names);
    const position = $("player").currentTime;
    showResult(await loadTranscript(job.id), renamed.summary);
    highlightAt(position);
    say("speakers-status", `Saved: ${Object.values(names).join(", ")}.`);
  } catch (error) {
    if (error instanceof KeyNeeded) return;
    if (error.code !== "unknown_speaker") return say("speakers-status", describeError(error), true);
    // Renamed in another tab or window since this one loaded: show the names as they are now.
    const position = $("player").currentTime;
    const latest = await latestResult(job).catch(() => null);
    if (!latest || state.openJob?.id !== job.id) return say("speakers-status", describeError(error), true);
    showResult(...latest);
    highlightAt(position);
    say("speakers-status", "Not saved: the speakers were renamed somewhere else; these are their names now.", true);
  }
}

function renderSummary(summary) {
  $("summary-block").hidden = !summary;
  if (!summary) return;
  const warnings = (summary.warnings || []).map((warning) => `(${warning})`);
  $("summary-text").textContent = [summary.overview, ...warnings].filter(Boolean).join(" ");
  $("action-items").replaceChildren(
    ...listOrNone(summary.action_items, (item) => {
      const who = [item.owner || "unassigned", item.due].filter(Boolean).join(", ");
      return sourcedItem(`${who}: ${item.task}`, item.source);
    }),
  );
  $("decisions").replaceChildren(...listOrNone(summary.decisions, (decision) => sourcedItem(decision.text, decision.source)));
  $("topics").replaceChildren(...listOrNone(summary.topics || [], topicItem));
  $("open-questions").replaceChildren(
    ...listOrNone(summary.open_questions || [], (question) => sourcedItem(question.text, question.source)),
  );
}

function topicItem(topic) {
  const item = sourcedItem(topic.title, topic);
  const points = (topic.key_points || []).map((point) => element("li", {}, point.text));
  if (points.length) item.append(element("ul", { class: "key-points" }, ...points));
  return item;
}

function listOrNone(items, render) {
  return items.length ? items.map(render) : [element("li", { class: "muted" }, "None")];
}

function sourcedItem(text, source) {
  const seek = button(clock(source.start), `Play from ${clock(source.start)}`, () => playFrom(source.start), "time");
  return element("li", {}, element("span", {}, text), " ", seek);
}

async function renderDownloads(hasSummary) {
  try {
    state.downloads ??= (await apiJson("/v1/formats")).data.filter((fmt) => fmt.where.includes("web"));
  } catch (error) {
    if (!(error instanceof KeyNeeded)) say("download-status", describeError(error), true);
    return;
  }
  const buttons = state.downloads
    .filter((fmt) => hasSummary || !fmt.needs_summary)
    .map((fmt) => button(fmt.label, `Download ${fmt.label}`, () => download(fmt.name, fmt.extension)));
  $("downloads").replaceChildren(...buttons);
}

// Pending edits are saved first, so a download always holds what the page shows.
async function download(format, extension) {
  const job = state.openJob;
  try {
    await flushSave();
    const blob = await (await api(`/v1/jobs/${job.id}/result?format=${format}`)).blob();
    const link = element("a", { href: URL.createObjectURL(blob), download: `${fileStem(jobName(job))}.${extension}` });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 10000);
    say("download-status", `Downloaded ${link.download}.`);
  } catch (error) {
    if (!(error instanceof KeyNeeded)) say("download-status", `Not downloaded: ${describeError(error)}`, true);
  }
}

export function playFrom(seconds) {
  const player = $("player");
  player.currentTime = seconds;
  highlightAt(seconds); // the seek itself lands later; the clicked word is current from now on
  player.play().catch(() => {});
}

export function togglePlayback() {
  const player = $("player");
  if (!player.src) return;
  if (player.paused) player.play().catch(() => {});
  else player.pause();
}

export function skip(seconds) {
  const player = $("player");
  if (!player.src) return;
  const end = Number.isFinite(player.duration) ? player.duration : Infinity;
  player.currentTime = Math.min(end, Math.max(0, player.currentTime + seconds));
  highlightAt(player.currentTime);
}

export function wireViewer() {
  $("close-viewer").addEventListener("click", closeViewer);
  $("speakers-form").addEventListener("submit", saveSpeakerNames);
}
