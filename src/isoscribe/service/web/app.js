// The isoscribe web page: uploads become async jobs, the job list polls the API, a finished job opens
// in a player with its transcript, speaker names, summary and downloads. No build step, no libraries.
"use strict";

const KEY_STORAGE = "isoscribe.apiKey";
const POLL_ACTIVE_MS = 1000;
const POLL_IDLE_MS = 5000;
const JOBS_LISTED = 50;
const SPEAKER_COLOURS = 8;
const UNFINISHED = new Set(["queued", "running"]);

const $ = (id) => document.getElementById(id);

const state = {
  jobRows: new Map(), // job id -> <li>
  uploads: [], // {name, fraction, row}
  openJob: null, // the job object shown in the viewer
  transcript: null,
  summary: null,
  wordStarts: [], // start time of each word span, in order
  wordSpans: [],
  currentWord: null,
  audioUrl: null,
  pollTimer: null,
  downloads: null, // the server's formats for the web page (GET /v1/formats), fetched once
};

class KeyNeeded extends Error {}

// ---- API -----------------------------------------------------------------------------------------

function authHeaders() {
  const key = sessionStorage.getItem(KEY_STORAGE);
  return key ? { Authorization: `Bearer ${key}` } : {};
}

async function api(path, options = {}) {
  const response = await fetch(path, { ...options, headers: { ...authHeaders(), ...(options.headers || {}) } });
  if (response.status === 401) {
    showKeyPanel(sessionStorage.getItem(KEY_STORAGE) ? "That key was not accepted." : "");
    throw new KeyNeeded("API key needed");
  }
  if (!response.ok) throw new Error(await errorMessage(response));
  return response;
}

async function errorMessage(response) {
  try {
    const body = await response.json();
    return body.error?.message || `${response.status} ${response.statusText}`;
  } catch {
    return `${response.status} ${response.statusText}`;
  }
}

// ---- API key -------------------------------------------------------------------------------------

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

function forgetKey() {
  sessionStorage.removeItem(KEY_STORAGE);
  closeViewer();
  showKeyPanel("");
  $("forget-key").hidden = true;
}

async function start() {
  try {
    await refreshJobs();
  } catch (error) {
    if (error instanceof KeyNeeded) return;
    $("upload-status").textContent = `Cannot reach the service: ${error.message}`;
  }
  $("key-panel").hidden = true;
  $("workspace").hidden = false;
  $("forget-key").hidden = !sessionStorage.getItem(KEY_STORAGE);
  await loadModels();
  const wanted = new URLSearchParams(location.hash.slice(1)).get("job");
  if (wanted && state.jobRows.has(wanted)) openJob(wanted);
}

// ---- Upload --------------------------------------------------------------------------------------

async function loadModels() {
  const select = $("model");
  if (select.options.length) return;
  try {
    const models = (await (await api("/v1/models")).json()).data;
    for (const model of models) select.add(new Option(model.id === "whisper-1" ? "default" : model.id, model.id));
  } catch (error) {
    select.add(new Option("default", "whisper-1"));
  }
}

function showChosenFiles() {
  const list = $("chosen-files");
  list.replaceChildren(...[...$("file-input").files].map((file) => element("li", {}, `${file.name} (${megabytes(file.size)})`)));
}

function jobForm(file) {
  const form = new FormData();
  form.append("file", file, file.name);
  form.append("model", $("model").value || "whisper-1");
  const language = $("language").value.trim();
  if (language) form.append("language", language);
  form.append("diarize", String($("diarize").checked));
  if ($("diarize").checked && $("num-speakers").value) form.append("num_speakers", $("num-speakers").value);
  form.append("summarize", String($("summarize").checked));
  return form;
}

async function submitUploads(event) {
  event.preventDefault();
  const files = [...$("file-input").files];
  if (!files.length) {
    $("upload-status").textContent = "Choose or drop at least one file first.";
    $("file-input").focus();
    return;
  }
  $("upload-status").textContent = `Uploading ${files.length} file${files.length > 1 ? "s" : ""}…`;
  $("file-input").value = "";
  showChosenFiles();
  const failures = [];
  for (const file of files) {
    try {
      await uploadOne(file);
    } catch (error) {
      failures.push(`${file.name}: ${error.message}`);
    }
  }
  $("upload-status").textContent = failures.length ? `Not queued: ${failures.join("; ")}` : "Queued.";
  await refreshJobs().catch(() => {});
}

// XMLHttpRequest rather than fetch: it reports upload progress, which matters for long recordings.
function uploadOne(file) {
  const upload = { name: file.name, fraction: 0, row: null };
  state.uploads.push(upload);
  renderUploadRow(upload);
  return new Promise((resolve, reject) => {
    const request = new XMLHttpRequest();
    request.open("POST", "/v1/jobs");
    for (const [name, value] of Object.entries(authHeaders())) request.setRequestHeader(name, value);
    request.upload.onprogress = (progress) => {
      upload.fraction = progress.lengthComputable ? progress.loaded / progress.total : 0;
      renderUploadRow(upload);
    };
    request.onload = () => {
      finishUpload(upload);
      if (request.status === 202) return resolve(JSON.parse(request.responseText));
      let message = `${request.status} ${request.statusText}`;
      try {
        message = JSON.parse(request.responseText).error.message;
      } catch {}
      reject(new Error(message));
    };
    request.onerror = () => {
      finishUpload(upload);
      reject(new Error("the upload was interrupted"));
    };
    request.send(jobForm(file));
  });
}

function renderUploadRow(upload) {
  if (!upload.row) {
    upload.row = element("li", { class: "job uploading" });
    $("job-list").prepend(upload.row);
  }
  const percent = Math.round(upload.fraction * 100);
  upload.row.replaceChildren(
    element("span", { class: "job-name" }, upload.name),
    element("span", { class: "badge" }, "uploading"),
    element("progress", { max: "1", value: String(upload.fraction), "aria-label": `Upload of ${upload.name}` }),
    element("span", { class: "job-detail" }, `${percent}% sent`),
  );
  $("jobs-empty").hidden = true;
}

function finishUpload(upload) {
  upload.row?.remove();
  state.uploads = state.uploads.filter((other) => other !== upload);
}

function dropFiles(event) {
  event.preventDefault();
  $("drop-zone").classList.remove("dragging");
  if (!event.dataTransfer?.files.length) return;
  $("file-input").files = event.dataTransfer.files;
  showChosenFiles();
  $("upload-status").textContent = `${event.dataTransfer.files.length} file(s) ready: press Transcribe.`;
}

// ---- Job list ------------------------------------------------------------------------------------

async function refreshJobs() {
  const jobs = (await (await api(`/v1/jobs?limit=${JOBS_LISTED}`)).json()).data;
  renderJobs(jobs);
  schedulePoll(jobs.some((job) => UNFINISHED.has(job.status)) ? POLL_ACTIVE_MS : POLL_IDLE_MS);
  return jobs;
}

function schedulePoll(delayMs) {
  stopPolling();
  state.pollTimer = setTimeout(() => refreshJobs().catch(() => schedulePoll(POLL_IDLE_MS)), delayMs);
}

function stopPolling() {
  clearTimeout(state.pollTimer);
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
    // Rows stay in place (and keep focus) when nothing changed; new ones go under pending uploads.
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
  ];
  if (UNFINISHED.has(job.status)) {
    children.push(
      element("progress", { max: "1", value: String(job.progress || 0), "aria-label": `Progress of ${name}` }),
      element("span", { class: "job-detail" }, progressText(job)),
    );
  } else if (job.error) {
    children.push(element("span", { class: "job-detail error" }, `${job.error.type}: ${job.error.message}`));
  } else if (job.status === "succeeded") {
    children.push(element("span", { class: "job-detail" }, finishedText(job)));
  }
  children.push(jobButtons(job, name));
  row.replaceChildren(...children);
}

function jobButtons(job, name) {
  const buttons = element("span", { class: "job-actions" });
  if (job.status === "succeeded") {
    buttons.append(button("Open", `Open the transcript of ${name}`, () => openJob(job.id), "primary"));
  }
  if (UNFINISHED.has(job.status)) {
    buttons.append(button("Cancel", `Cancel ${name}`, () => cancelJob(job.id)));
  }
  buttons.append(button("Delete", `Delete ${name}`, () => deleteJob(job, name), "danger"));
  return buttons;
}

function progressText(job) {
  if (job.status === "queued") return "waiting in the queue";
  const stage = job.stage ? `${job.stage}` : "starting";
  const percent = `${Math.round((job.progress || 0) * 100)}%`;
  if (job.audio_duration_s) {
    return `${stage} · ${percent} · ${clock(job.audio_done_s || 0)} of ${clock(job.audio_duration_s)} of audio`;
  }
  return `${stage} · ${percent}`;
}

function finishedText(job) {
  const took = job.finished_at && job.created_at ? ` in ${Math.round(job.finished_at - job.created_at)} s` : "";
  const audio = job.audio_duration_s ? `${clock(job.audio_duration_s)} of audio` : "done";
  return `${audio}${took}`;
}

function jobName(job) {
  return job.options?.filename || job.id;
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
    if (!(error instanceof KeyNeeded)) $("upload-status").textContent = error.message;
  }
  await refreshJobs().catch(() => {});
}

// ---- Transcript viewer ---------------------------------------------------------------------------

async function openJob(jobId) {
  const job = JSON.parse(state.jobRows.get(jobId)?.dataset.snapshot || "null");
  if (!job) return;
  state.openJob = job;
  history.replaceState(null, "", `#job=${jobId}`);
  $("viewer").hidden = false;
  $("viewer-title").textContent = jobName(job);
  $("viewer-facts").textContent = "Loading…";
  try {
    const [transcript, summary] = await Promise.all([
      api(`/v1/jobs/${jobId}/result?format=transcript`).then((r) => r.json()),
      job.options?.summarize ? api(`/v1/jobs/${jobId}/result?format=summary`).then((r) => r.json()) : null,
    ]);
    showResult(transcript, summary);
    $("viewer-title").focus();
    await loadAudio(jobId);
  } catch (error) {
    if (!(error instanceof KeyNeeded)) $("viewer-facts").textContent = `Could not load it: ${error.message}`;
  }
}

// The <audio> element cannot send the Authorization header, so the audio comes in as a blob.
async function loadAudio(jobId) {
  const player = $("player");
  releaseAudio();
  try {
    const blob = await (await api(`/v1/jobs/${jobId}/audio`)).blob();
    if (state.openJob?.id !== jobId) return;
    state.audioUrl = URL.createObjectURL(blob);
    player.src = state.audioUrl;
    player.hidden = false;
  } catch (error) {
    player.hidden = true;
  }
}

function releaseAudio() {
  const player = $("player");
  player.pause();
  player.removeAttribute("src");
  player.load();
  if (state.audioUrl) URL.revokeObjectURL(state.audioUrl);
  state.audioUrl = null;
}

function closeViewer() {
  releaseAudio();
  state.openJob = null;
  $("viewer").hidden = true;
  history.replaceState(null, "", location.pathname);
}

function showResult(transcript, summary) {
  state.transcript = transcript;
  state.summary = summary;
  const speakers = transcript.speakers?.length ? `${transcript.speakers.length} speakers · ` : "";
  $("viewer-facts").textContent =
    `${clock(transcript.duration_s)} · ${speakers}language ${transcript.language} · model ${transcript.model}`;
  renderTranscript(transcript);
  renderSpeakerFields(transcript);
  renderSummary(summary);
  renderDownloads(Boolean(summary));
}

function speakerIndex(speaker) {
  const index = state.transcript.speakers.indexOf(speaker);
  return index < 0 ? SPEAKER_COLOURS : index % SPEAKER_COLOURS;
}

function renderTranscript(transcript) {
  state.wordSpans = [];
  state.wordStarts = [];
  state.currentWord = null;
  const segments = transcript.segments.map((segment) => {
    const speaker = segment.speaker;
    const words = segment.words.length ? segment.words : [{ start: segment.start, text: segment.text }];
    const text = element("p", { class: "words" });
    for (const word of words) {
      const span = element("span", { class: "word", "data-start": String(word.start) }, word.text);
      state.wordSpans.push(span);
      state.wordStarts.push(word.start);
      text.append(span);
    }
    const seek = button(clock(segment.start), `Play from ${clock(segment.start)}`, () => playFrom(segment.start), "time");
    const head = element("div", { class: "segment-head" }, seek);
    if (speaker) head.append(element("span", { class: "speaker-name" }, speaker));
    return element("div", { class: "segment", "data-speaker": String(speakerIndex(speaker)) }, head, text);
  });
  $("transcript").replaceChildren(...segments);
}

function renderSpeakerFields(transcript) {
  const fields = transcript.speakers.map((speaker, index) => {
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
  $("speakers-status").textContent = "";
}

async function saveSpeakerNames(event) {
  event.preventDefault();
  const names = {};
  for (const input of $("speaker-fields").querySelectorAll("input")) {
    const name = input.value.trim();
    if (name && name !== input.dataset.label) names[input.dataset.label] = name;
  }
  if (!Object.keys(names).length) {
    $("speakers-status").textContent = "No name changed.";
    return;
  }
  try {
    const job = state.openJob;
    const response = await api(`/v1/jobs/${job.id}/speakers`, {
      method: "PATCH",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(names),
    });
    const renamed = await response.json();
    const position = $("player").currentTime;
    showResult(renamed.transcript, renamed.summary);
    highlightAt(position);
    $("speakers-status").textContent = `Saved: ${Object.values(names).join(", ")}.`;
  } catch (error) {
    if (!(error instanceof KeyNeeded)) $("speakers-status").textContent = error.message;
  }
}

function renderSummary(summary) {
  $("summary-block").hidden = !summary;
  if (!summary) return;
  $("summary-text").textContent = summaryText(summary);
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

function summaryText(summary) {
  const warnings = (summary.warnings || []).map((warning) => `(${warning})`);
  return [summary.overview, ...warnings].filter(Boolean).join(" ");
}

// A topic: its start as a button that plays from there, its title, and its key points.
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
  $("download-status").textContent = "";
  try {
    state.downloads ??= (await (await api("/v1/formats")).json()).data.filter((fmt) => fmt.where.includes("web"));
  } catch (error) {
    if (!(error instanceof KeyNeeded)) $("download-status").textContent = error.message;
    return;
  }
  const buttons = state.downloads
    .filter((fmt) => hasSummary || !fmt.needs_summary)
    .map((fmt) => button(fmt.label, `Download ${fmt.label}`, () => download(fmt.name, fmt.extension)));
  $("downloads").replaceChildren(...buttons);
}

async function download(format, extension) {
  const job = state.openJob;
  try {
    const blob = await (await api(`/v1/jobs/${job.id}/result?format=${format}`)).blob();
    const link = element("a", { href: URL.createObjectURL(blob), download: `${fileStem(jobName(job))}.${extension}` });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 10000);
    $("download-status").textContent = `Downloaded ${link.download}.`;
  } catch (error) {
    if (!(error instanceof KeyNeeded)) $("download-status").textContent = error.message;
  }
}

// ---- Playback and the current word ---------------------------------------------------------------

function playFrom(seconds) {
  const player = $("player");
  player.currentTime = seconds;
  highlightAt(seconds); // the seek itself lands later; the clicked word is current from now on
  player.play().catch(() => {});
}

function seekToWord(event) {
  const word = event.target.closest(".word");
  if (word) playFrom(Number(word.dataset.start));
}

function followPlayback() {
  const player = $("player");
  highlightAt(player.currentTime);
  if (!player.paused) requestAnimationFrame(followPlayback);
}

function highlightAt(seconds) {
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

// ---- Small helpers -------------------------------------------------------------------------------

function element(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  node.append(...children);
  return node;
}

function button(text, label, onClick, className = "") {
  const node = element("button", { type: "button", class: className }, text);
  if (label !== text) node.setAttribute("aria-label", label);
  node.addEventListener("click", onClick);
  return node;
}

function clock(seconds) {
  const total = Math.max(0, Math.floor(seconds || 0));
  const hours = Math.floor(total / 3600);
  const minutes = String(Math.floor((total % 3600) / 60));
  const secs = String(total % 60).padStart(2, "0");
  return hours ? `${hours}:${minutes.padStart(2, "0")}:${secs}` : `${minutes}:${secs}`;
}

function megabytes(bytes) {
  return `${(bytes / 1e6).toFixed(1)} MB`;
}

function fileStem(name) {
  const stem = name.replace(/\.[^.]+$/, "");
  return stem.replace(/[^\w.-]+/g, "_") || "transcript";
}

// ---- Wiring --------------------------------------------------------------------------------------

function wire() {
  $("key-form").addEventListener("submit", useKey);
  $("forget-key").addEventListener("click", forgetKey);
  $("upload-form").addEventListener("submit", submitUploads);
  $("file-input").addEventListener("change", showChosenFiles);
  $("diarize").addEventListener("change", () => ($("num-speakers").disabled = !$("diarize").checked));
  const zone = $("drop-zone");
  zone.addEventListener("dragover", (event) => {
    event.preventDefault();
    zone.classList.add("dragging");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("dragging"));
  zone.addEventListener("drop", dropFiles);
  $("close-viewer").addEventListener("click", closeViewer);
  $("transcript").addEventListener("click", seekToWord);
  $("speakers-form").addEventListener("submit", saveSpeakerNames);
  const player = $("player");
  player.addEventListener("play", () => requestAnimationFrame(followPlayback));
  player.addEventListener("seeked", () => highlightAt(player.currentTime));
  player.addEventListener("timeupdate", () => highlightAt(player.currentTime));
}

wire();
start();
