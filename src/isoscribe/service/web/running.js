// A running job in the main pane: its stage in words, percentage and time left from the job's event feed
// (GET /v1/jobs/{id}/events), and its text as segments arrive. When the feed breaks, the job is polled.
import { apiJson, describeError, KeyNeeded, readEvents } from "./api.js";
import { $, clock, element, languageName, say } from "./dom.js";
import { endedWithout, progressText } from "./jobs.js";
import { state, UNFINISHED } from "./state.js";
import { loadFinished, showJobPane } from "./viewer.js";

const POLL_MS = 1000;

const STAGES = {
  queued: "Waiting in the queue",
  load_model: "Loading the model",
  probe: "Reading the file",
  speech: "Transcribing",
  finish: "Placing words and speakers",
  diarize: "Telling speakers apart",
  summary: "Writing the summary",
  done: "Done",
};

export function stageText(stage) {
  return STAGES[stage] || (stage ? stage.replace(/_/g, " ") : "Starting");
}

export async function watchJob(job) {
  await showJobPane(job);
  const feed = new AbortController();
  state.watch = feed;
  $("job-progress").hidden = false;
  shown.ticker = setInterval(paintProgress, 1000);
  showProgress(job);
  let last = job;
  try {
    await readEvents(`/v1/jobs/${job.id}/events`, feed.signal, (name, data) => {
      if (name === "progress") showProgress((last = { ...last, ...data }));
      else if (name === "segment") showSegment(data);
    });
  } catch (error) {
    if (feed.signal.aborted || error instanceof KeyNeeded) return;
  }
  await pollUntilFinished(job.id, feed.signal);
}

export function stopWatching() {
  state.watch?.abort();
  state.watch = null;
  clearInterval(shown.ticker);
  shown.job = null;
}

async function pollUntilFinished(jobId, signal) {
  for (;;) {
    let job;
    try {
      job = await apiJson(`/v1/jobs/${jobId}`);
    } catch (error) {
      if (signal.aborted || error instanceof KeyNeeded) return;
      say("job-error", `Cannot follow this job: ${describeError(error)}`, true);
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
      continue;
    }
    if (signal.aborted) return;
    if (!UNFINISHED.has(job.status)) return finished(job);
    showProgress(job);
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
}

function finished(job) {
  $("job-progress").hidden = true;
  stopWatching();
  if (job.status === "succeeded") return loadFinished(job);
  say("job-error", ...endedWithout(job));
}

// The time left counts down between the server's updates, from the end time it last predicted.
const shown = { job: null, doneAtMs: null, ticker: null };

function showProgress(job) {
  shown.job = job;
  shown.doneAtMs = job.eta_s == null ? null : Date.now() + job.eta_s * 1000;
  $("job-progress-bar").value = job.progress || 0;
  $("job-progress").dataset.expectedDoneAt = shown.doneAtMs == null ? "" : String(shown.doneAtMs / 1000);
  say("job-error", "");
  paintProgress();
}

function paintProgress() {
  if (!shown.job) return;
  const etaS = shown.doneAtMs == null ? null : Math.max(0, (shown.doneAtMs - Date.now()) / 1000);
  $("job-progress-text").textContent = progressText({ ...shown.job, status: shown.job.status || "running", eta_s: etaS });
}

function showSegment(segment) {
  const transcript = $("transcript");
  const previous = transcript.lastElementChild;
  const head = element("div", { class: "segment-head" }, element("span", { class: "time" }, clock(segment.start)));
  if (segment.speaker) head.append(element("span", { class: "speaker-label" }, segment.speaker));
  if (segment.language && previous?.dataset.language !== segment.language) {
    head.append(element("span", { class: "language" }, languageName(segment.language)));
  }
  const part = element("div", { class: "segment partial" }, head, element("p", { class: "words" }, segment.text.trim()));
  part.dataset.language = segment.language || "";
  transcript.append(part);
}
