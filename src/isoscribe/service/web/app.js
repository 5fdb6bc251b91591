// The isoscribe web page: uploads become async jobs; a job opens in the main pane at once (progress and
// text as it comes), then as an editable, searchable transcript with its player, speakers, summary and
// downloads. ES modules, no build step, no libraries. This module: the API key and the start.
import { KEY_STORAGE, KeyNeeded, describeError, whenKeyNeeded } from "./api.js";
import { $, say } from "./dom.js";
import { loadModels, wireForm } from "./form.js";
import { listJobsDownTo, refreshJobs, stopPolling, wireJobs } from "./jobs.js";
import { wireKeys } from "./keys.js";
import { wireLive } from "./live.js";
import { wireSaving } from "./save.js";
import { wireSearch } from "./search.js";
import { state } from "./state.js";
import { wireTranscript } from "./transcript.js";
import { closeViewer, openJob, wireViewer } from "./viewer.js";

function showKeyPanel(message) {
  stopPolling();
  $("workspace").hidden = true;
  $("key-panel").hidden = false;
  $("key-error").textContent = message;
  $("key-input").focus();
}

async function useKey(event) {
  event.preventDefault();
  sessionStorage.setItem(KEY_STORAGE, $("key-input").value.trim());
  $("key-input").value = "";
  await start();
}

async function forgetKey() {
  sessionStorage.removeItem(KEY_STORAGE);
  await closeViewer();
  showKeyPanel("");
  $("forget-key").hidden = true;
}

async function start() {
  try {
    await refreshJobs();
    await loadModels();
  } catch (error) {
    if (error instanceof KeyNeeded) return;
    say("upload-status", `Cannot reach the service: ${describeError(error)}`, true);
  }
  $("key-panel").hidden = true;
  $("workspace").hidden = false;
  $("forget-key").hidden = !sessionStorage.getItem(KEY_STORAGE);
  await openLinkedJob(linkedJobId());
}

function linkedJobId() {
  return new URLSearchParams(location.hash.slice(1)).get("job");
}

// A job's link pasted into a tab where the page is open changes only the address's #: no reload.
function followLink() {
  const jobId = linkedJobId();
  if (jobId && jobId !== state.openJob?.id && !$("workspace").hidden) openLinkedJob(jobId);
}

/** The job the address names (#job=ID), older than the list's first page or not. */
async function openLinkedJob(jobId) {
  if (!jobId) return;
  try {
    if (state.jobRows.has(jobId) || (await listJobsDownTo(jobId))) openJob(jobId);
  } catch (error) {
    if (!(error instanceof KeyNeeded)) say("upload-status", `Cannot open the linked job: ${describeError(error)}`, true);
  }
}

function wire() {
  whenKeyNeeded(showKeyPanel);
  $("key-form").addEventListener("submit", useKey);
  $("forget-key").addEventListener("click", forgetKey);
  window.addEventListener("hashchange", followLink);
  wireForm();
  wireJobs();
  wireViewer();
  wireSaving();
  wireTranscript();
  wireSearch();
  wireKeys();
  wireLive();
}

wire();
start();
