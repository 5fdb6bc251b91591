// The API client: the key kept in this tab, fetch with it, errors in plain words, and a job's event feed.

export const KEY_STORAGE = "isoscribe.apiKey";

export class KeyNeeded extends Error {}

/** An API answer that was not 2xx: ``message`` is for people, ``code`` and ``status`` for the page. */
export class ApiFailure extends Error {
  constructor(message, status, code) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

let onKeyNeeded = () => {};

export function whenKeyNeeded(callback) {
  onKeyNeeded = callback;
}

export function authHeaders() {
  const key = sessionStorage.getItem(KEY_STORAGE);
  return key ? { Authorization: `Bearer ${key}` } : {};
}

export async function api(path, options = {}) {
  const response = await fetch(path, { ...options, headers: { ...authHeaders(), ...(options.headers || {}) } });
  if (response.status === 401) {
    onKeyNeeded(sessionStorage.getItem(KEY_STORAGE) ? "That key was not accepted." : "");
    throw new KeyNeeded("API key needed");
  }
  if (!response.ok) throw await failureOf(response.status, await response.text());
  return response;
}

export async function apiJson(path, options = {}) {
  return (await api(path, options)).json();
}

// Browsers let a keepalive request (one that outlives its page) carry at most 64 KiB.
const KEEPALIVE_MAX_BYTES = 60000;

/** ``body`` as JSON that still arrives if the page is left meanwhile, when it is small enough for that. */
export function jsonRequest(method, body) {
  const json = JSON.stringify(body);
  const keepalive = new TextEncoder().encode(json).length <= KEEPALIVE_MAX_BYTES;
  return { method, keepalive, headers: { "Content-Type": "application/json" }, body: json };
}

export function sendJson(path, method, body) {
  return apiJson(path, jsonRequest(method, body));
}

export function failureOf(status, bodyText) {
  let error = {};
  try {
    error = JSON.parse(bodyText).error || {};
  } catch {}
  return new ApiFailure(plainWords(error.message, status), status, error.code);
}

const PLAIN = [
  [/not decodable audio|invalid data found|no audio stream|not an audio/i, "This file could not be read as audio or video."],
  [/unknown language/i, "That language is not one the model knows."],
];

/** The server's message without the parts meant for programmers ("Value error, ", "[Errno 5] "). */
export function plainWords(message, status) {
  if (!message) return status >= 500 ? "The service had a problem; try again." : "The service refused it without a reason.";
  for (const [pattern, sentence] of PLAIN) if (pattern.test(message)) return sentence;
  const cleaned = message.replace(/^Value error, /, "").replace(/\[Errno -?\d+\]\s*/g, "");
  return cleaned.charAt(0).toUpperCase() + cleaned.slice(1);
}

export function describeError(error) {
  if (error instanceof ApiFailure) return error.message;
  if (error instanceof TypeError) return "The service cannot be reached; check the connection.";
  return error.message;
}

/**
 * Read a server-sent event stream with the key (EventSource cannot send headers): ``onEvent(name, data)``
 * for each event, until the stream ends or ``signal`` aborts. Rejects with ApiFailure for a non-2xx answer.
 */
export async function readEvents(path, signal, onEvent) {
  const response = await api(path, { signal, headers: { Accept: "text/event-stream" } });
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffered = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffered += value.replace(/\r\n?/g, "\n");
    let end;
    while ((end = buffered.indexOf("\n\n")) >= 0) {
      dispatch(buffered.slice(0, end), onEvent);
      buffered = buffered.slice(end + 2);
    }
  }
}

function dispatch(block, onEvent) {
  let name = "message";
  const data = [];
  for (const line of block.split("\n")) {
    if (line.startsWith("event:")) name = line.slice(6).trim();
    else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
  }
  if (data.length) onEvent(name, JSON.parse(data.join("\n")));
}
