// The upload form: models and their languages, the settings remembered in this browser, uploads with
// progress, drag and drop. A rejected file stays chosen so it can be sent again.
import { apiJson, authHeaders, describeError, failureOf, KeyNeeded } from "./api.js";
import { $, element, languageName, megabytes, say } from "./dom.js";
import { refreshJobs } from "./jobs.js";
import { state } from "./state.js";
import { watchJob } from "./running.js";

const SETTINGS_STORAGE = "isoscribe.formSettings";
const REMEMBERED = ["model", "language", "diarize", "num-speakers", "summarize"];

let models = []; // GET /v1/models, each with its languages

export async function loadModels() {
  if (models.length) return;
  try {
    models = (await apiJson("/v1/models")).data;
  } catch (error) {
    if (error instanceof KeyNeeded) throw error;
    models = [{ id: "whisper-1" }];
  }
  const select = $("model");
  select.replaceChildren(...models.map((m) => new Option(m.id === "whisper-1" ? "default" : m.id, m.id)));
  await restoreSettings();
}

// GET /v1/models may name a model's languages; else the page asks its own route (routers/web.py).
async function languagesOf(model) {
  model.languages ??= await fetch(`/ui/languages.json?model=${encodeURIComponent(model.id)}`)
    .then((response) => response.json())
    .catch(() => []);
  return model.languages;
}

async function fillLanguages() {
  const select = $("language");
  const wanted = select.value;
  const model = models.find((m) => m.id === $("model").value) || models[0];
  const codes = model ? await languagesOf(model) : [];
  const choices = [...codes].sort((a, b) => languageName(a).localeCompare(languageName(b)));
  select.replaceChildren(
    new Option("Detect automatically", ""),
    ...choices.map((code) => new Option(`${languageName(code)} (${code})`, code)),
  );
  select.value = choices.includes(wanted) ? wanted : "";
}

async function restoreSettings() {
  let saved = {};
  try {
    saved = JSON.parse(localStorage.getItem(SETTINGS_STORAGE) || "{}");
  } catch {}
  if (models.some((m) => m.id === saved.model)) $("model").value = saved.model;
  await fillLanguages();
  if ([...$("language").options].some((option) => option.value === saved.language)) $("language").value = saved.language;
  for (const id of ["diarize", "summarize"]) if (typeof saved[id] === "boolean") $(id).checked = saved[id];
  $("num-speakers").value = saved["num-speakers"] ?? "";
  $("num-speakers").disabled = !$("diarize").checked;
}

function rememberSettings() {
  const values = {};
  for (const id of REMEMBERED) values[id] = $(id).type === "checkbox" ? $(id).checked : $(id).value;
  localStorage.setItem(SETTINGS_STORAGE, JSON.stringify(values));
}

function showChosenFiles() {
  const files = [...$("file-input").files];
  $("chosen-files").replaceChildren(...files.map((file) => element("li", {}, `${file.name} (${megabytes(file.size)})`)));
}

function jobForm(file) {
  const form = new FormData();
  form.append("file", file, file.name);
  form.append("model", $("model").value || "whisper-1");
  if ($("language").value) form.append("language", $("language").value);
  form.append("diarize", String($("diarize").checked));
  if ($("diarize").checked && $("num-speakers").value) form.append("num_speakers", $("num-speakers").value);
  form.append("summarize", String($("summarize").checked));
  return form;
}

async function submitUploads(event) {
  event.preventDefault();
  const files = [...$("file-input").files];
  if (!files.length) {
    say("upload-status", "Choose or drop at least one file first.", true);
    $("file-input").focus();
    return;
  }
  rememberSettings();
  say("upload-status", `Uploading ${files.length} file${files.length > 1 ? "s" : ""}…`);
  const failures = [];
  let firstJob = null;
  for (const file of files) {
    try {
      const job = await uploadOne(file);
      firstJob ??= job;
    } catch (error) {
      if (error instanceof KeyNeeded) return;
      failures.push({ file, message: describeError(error) });
    }
  }
  keepChosen(failures.map((failure) => failure.file));
  const report = failures.map((failure) => `${failure.file.name}: ${failure.message}`).join(" ");
  say("upload-status", failures.length ? `Not sent. ${report}` : "Sent: it is being transcribed.", failures.length > 0);
  await refreshJobs().catch(() => {});
  if (firstJob) watchJob(firstJob);
}

/** Leave exactly ``files`` chosen: the ones the service refused, to send again after a change. */
function keepChosen(files) {
  const chosen = new DataTransfer();
  for (const file of files) chosen.items.add(file);
  $("file-input").files = chosen.files;
  showChosenFiles();
}

// XMLHttpRequest rather than fetch: it reports upload progress, which matters for long recordings.
export function uploadOne(file) {
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
      if (request.status === 202) resolve(JSON.parse(request.responseText));
      else reject(failureOf(request.status, request.responseText));
    };
    request.onerror = () => {
      finishUpload(upload);
      reject(new Error("The upload was interrupted; check the connection and send it again."));
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
  say("upload-status", `${event.dataTransfer.files.length} file(s) ready: press Transcribe.`);
}

export function wireForm() {
  $("upload-form").addEventListener("submit", submitUploads);
  $("file-input").addEventListener("change", showChosenFiles);
  $("model").addEventListener("change", fillLanguages);
  $("upload-form").addEventListener("change", rememberSettings);
  $("diarize").addEventListener("change", () => ($("num-speakers").disabled = !$("diarize").checked));
  const zone = $("drop-zone");
  zone.addEventListener("dragover", (event) => {
    event.preventDefault();
    zone.classList.add("dragging");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("dragging"));
  zone.addEventListener("drop", dropFiles);
}
