// The job list: polled from the API; each row says what the job is (date, model, languages, speakers,
// length) and how far it got. Rows stay in place (and keep focus) when nothing changed.
import { api, apiJson, describeError, KeyNeeded, plainWords } from "./api.js";
import { $, button, clock, dateText, element, etaText, languageName, say } from "./dom.js";
import { state, UNFINISHED } from "./state.js";
import { closeViewer, openJob } from "./viewer.js";
import { stageText } from "./running.js";

const POLL_ACTIVE_MS = 1000;
const POLL_IDLE_MS = 5000;
const JOBS_PAGE = 50;

export async function refreshJobs() {
  const { jobs, hasMore } = await listJobs(state.jobsListed);
  renderJobs(jobs);
  $("jobs-more").hidden = !hasMore;
  schedulePoll(jobs.some((job) => UNFINISHED.has(job.status)) ? POLL_ACTIVE_MS : POLL_IDLE_MS);
  return jobs;
}

/** The newest ``wanted`` jobs at least, a page at a time, and on until ``untilId`` is among them. */
async function listJobs(wanted, untilId = null) {
  const jobs = [];
  let page = { has_more: true, last_id: null };
  while (page.has_more && (jobs.length < wanted || (untilId && !jobs.some((job) => job.id === untilId)))) {
    const after = page.last_id ? `&after=${encodeURIComponent(page.last_id)}` : "";
    page = await apiJson(`/v1/jobs?limit=${JOBS_PAGE}${after}`);
    jobs.push(...page.data);
  }
  return { jobs, hasMore: page.has_more };
}

async function showOlderJobs() {
  state.jobsListed = state.jobRows.size + JOBS_PAGE;
  await refreshJobs().catch((error) => {
    if (!(error instanceof KeyNeeded)) say("upload-status", describeError(error), true);
  });
}

/** List jobs down to ``jobId`` (a link to an older job); false when the key has no such job. */
export async function listJobsDownTo(jobId) {
  try {
    await apiJson(`/v1/jobs/${encodeURIComponent(jobId)}`);
  } catch (error) {
    if (error instanceof KeyNeeded) throw error;
    return false;
  }
  const { jobs } = await listJobs(state.jobsListed, jobId);
  state.jobsListed = Math.max(state.jobsListed, jobs.length);
  await refreshJobs();
  return state.jobRows.has(jobId);
}

export function wireJobs() {
  $("jobs-more").addEventListener("click", showOlderJobs);
}

function schedulePoll(delayMs) {
  stopPolling();
  state.pollTimer = setTimeout(() => refreshJobs().catch(() => schedulePoll(POLL_IDLE_MS)), delayMs);
}

export function stopPolling() {
  clearTimeout(state.pollTimer);
}

export function jobSnapshot(jobId) {
  return JSON.parse(state.jobRows.get(jobId)?.dataset.snapshot || "null");
}

function renderJobs(jobs) {
  const list = $("job-list");
  const seen = new Set();
  let previous = null;
  for (const job of jobs) {
    seen.add(job.id);
    let row = state.jobRows.get(job.id);
    if (!row) {
      row = element("li", { class: "job", "data-job-id": job.id });
      state.jobRows.set(job.id, row);
    }
    if (row.dataset.snapshot !== JSON.stringify(job)) renderJobRow(row, job);
    const anchor = previous ? previous.nextSibling : firstJobSlot(list);
    if (row !== anchor) list.insertBefore(row, anchor);
    previous = row;
  }
  for (const [id, row] of state.jobRows) {
    if (!seen.has(id)) {
      row.remove();
      state.jobRows.delete(id);
    }
  }
  $("jobs-empty").hidden = jobs.length > 0 || state.uploads.length > 0;
  for (const row of state.jobRows.values()) row.classList.toggle("open", row.dataset.jobId === state.openJob?.id);
  if (state.openJob && !seen.has(state.openJob.id)) closeViewer();
}

function firstJobSlot(list) {
  return [...list.children].find((child) => !child.classList.contains("uploading")) || null;
}

function renderJobRow(row, job) {
  if (UNFINISHED.has(row.dataset.status) && !UNFINISHED.has(job.status)) {
    $("job-announcer").textContent = `${jobName(job)}: ${job.status}`;
  }
  row.dataset.snapshot = JSON.stringify(job);
  row.dataset.status = job.status;
  const name = jobName(job);
  const children = [
    element("span", { class: "job-name", title: name }, name),
    element("span", { class: `badge ${job.status}` }, job.status),
    element("span", { class: "job-facts" }, jobFacts(job)),
  ];
  if (UNFINISHED.has(job.status)) {
    children.push(
      element("progress", { max: "1", value: String(job.progress || 0), "aria-label": `Progress of ${name}` }),
      element("span", { class: "job-detail" }, progressText(job)),
    );
  } else if (job.error) {
    children.push(element("span", { class: "job-detail error" }, plainWords(job.error.message)));
  }
  children.push(jobButtons(job, name));
  row.replaceChildren(...children);
}

/** "3 Dec, 14:02 · base · English, German · 2 speakers · 1:00" */
export function jobFacts(job) {
  const options = job.options || {};
  const detected = job.languages?.length ? job.languages : options.language ? [options.language] : [];
  const speakers = job.speakers ?? options.num_speakers;
  return [
    dateText(job.created_at),
    options.model === "whisper-1" ? "default model" : options.model,
    detected.length ? detected.map(languageName).join(", ") : "any language",
    options.diarize === false ? "no speakers" : speakers ? `${speakers} speaker${speakers > 1 ? "s" : ""}` : "",
    job.audio_duration_s ? clock(job.audio_duration_s) : "",
  ].filter(Boolean).join(" · ");
}

function jobButtons(job, name) {
  const buttons = element("span", { class: "job-actions" });
  const label = job.status === "succeeded" ? "Open" : "Show";
  buttons.append(button(label, `${label} ${name}`, () => openJob(job.id), "primary"));
  if (UNFINISHED.has(job.status)) buttons.append(button("Cancel", `Cancel ${name}`, () => cancelJob(job.id)));
  buttons.append(button("Delete", `Delete ${name}`, () => deleteJob(job, name), "danger"));
  return buttons;
}

export function progressText(job) {
  if (job.status === "queued") return "waiting in the queue";
  const parts = [stageText(job.stage), `${Math.round((job.progress || 0) * 100)}%`];
  if (job.audio_duration_s) parts.push(`${clock(job.audio_done_s || 0)} of ${clock(job.audio_duration_s)} of audio`);
  const eta = etaText(job.eta_s);
  if (eta) parts.push(eta);
  return parts.join(" · ");
}

/** Why a job that ended without success has no transcript, in words: [text, whether it is an error]. */
export function endedWithout(job) {
  if (job.status === "cancelled") return ["This job was cancelled before it finished: no transcript was made.", false];
  return [`This job ${job.status}: ${job.error ? plainWords(job.error.message) : "no reason was given."}`, true];
}

export function jobName(job) {
  return job.filename || job.options?.filename || job.id;
}

async function cancelJob(jobId) {
  await runAction(() => api(`/v1/jobs/${jobId}`, { method: "DELETE" }));
}

async function deleteJob(job, name) {
  if (!confirm(`Delete ${name} with its transcript and audio?`)) return;
  await runAction(() => api(`/v1/jobs/${job.id}?purge=true`, { method: "DELETE" }));
  if (state.openJob?.id === job.id) closeViewer();
  $("jobs-title").focus();
}

async function runAction(call) {
  try {
    await call();
  } catch (error) {
    if (!(error instanceof KeyNeeded)) say("upload-status", describeError(error), true);
  }
  await refreshJobs().catch(() => {});
}
