// Live mode: microphone → AudioWorklet (PCM16 at 24 kHz) → /v1/realtime?intent=transcription (OpenAI's
// Realtime transcription protocol) → captions as deltas and completed utterances arrive. The recording
// stays in the tab and can be saved as a job, like an uploaded file (speakers, summary, all formats).
import { KEY_STORAGE } from "./api.js";
import { $, element } from "./dom.js";
import { uploadOne } from "./form.js";
import { refreshJobs } from "./jobs.js";

const LIVE_RATE_HZ = 24000;
const LIVE_FINISH_MS = 8000;

const live = { socket: null, context: null, stream: null, chunks: [], lines: new Map(), stopping: null };

async function startLive() {
  setLiveStatus("Starting the microphone…");
  try {
    live.stream = await navigator.mediaDevices.getUserMedia({ audio: { channelCount: 1 } });
  } catch (error) {
    setLiveStatus(`No microphone: ${error.message}`);
    return;
  }
  live.context = new AudioContext({ sampleRate: LIVE_RATE_HZ });
  await live.context.audioWorklet.addModule("/ui/live-worklet.js");
  const chunker = new AudioWorkletNode(live.context, "pcm16-chunker");
  live.context.createMediaStreamSource(live.stream).connect(chunker);
  chunker.connect(live.context.destination); // pulls the graph; the chunker's output is silence
  live.chunks = [];
  live.lines = new Map();
  $("live-captions").replaceChildren();
  live.socket = openLiveSocket();
  chunker.port.onmessage = (message) => sendLiveChunk(message.data);
  showLiveButtons("recording");
}

function openLiveSocket() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const key = sessionStorage.getItem(KEY_STORAGE);
  // Browsers cannot set headers on a WebSocket: the key travels as OpenAI's subprotocol does.
  const protocols = ["realtime", ...(key ? [`openai-insecure-api-key.${key}`] : [])];
  const socket = new WebSocket(`${scheme}://${location.host}/v1/realtime?intent=transcription`, protocols);
  socket.onopen = () => {
    const language = $("language").value || null;
    const input = {
      format: { type: "audio/pcm", rate: LIVE_RATE_HZ },
      transcription: { model: "whisper-1", language },
      turn_detection: { type: "server_vad" },
    };
    socket.send(JSON.stringify({ type: "session.update", session: { type: "transcription", audio: { input } } }));
    setLiveStatus("Listening…");
  };
  socket.onmessage = (message) => onLiveEvent(JSON.parse(message.data));
  socket.onclose = (close) => {
    if (live.socket !== socket) return;
    live.socket = null;
    if (!live.stopping) setLiveStatus(`The live session ended: ${close.reason || `code ${close.code}`}.`);
    stopMicrophone();
    showLiveButtons(live.chunks.length ? "stopped" : "idle");
  };
  return socket;
}

function sendLiveChunk(pcm16) {
  live.chunks.push(pcm16);
  if (live.socket?.readyState !== WebSocket.OPEN) return;
  const bytes = new Uint8Array(pcm16.buffer);
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  live.socket.send(JSON.stringify({ type: "input_audio_buffer.append", audio: btoa(binary) }));
}

function onLiveEvent(event) {
  if (event.type === "input_audio_buffer.speech_started") {
    captionLine(event.item_id);
  } else if (event.type === "conversation.item.input_audio_transcription.delta") {
    captionLine(event.item_id).textContent += event.delta;
  } else if (event.type === "conversation.item.input_audio_transcription.completed") {
    const line = captionLine(event.item_id);
    line.textContent = event.transcript;
    line.classList.remove("partial");
    if (!event.transcript.trim()) line.remove();
    live.lines.delete(event.item_id);
    if (live.stopping && !live.lines.size) live.stopping();
  } else if (event.type === "conversation.item.input_audio_transcription.failed") {
    captionLine(event.item_id).remove();
    live.lines.delete(event.item_id);
  } else if (event.type === "error") {
    setLiveStatus(event.error.message);
  }
}

function captionLine(itemId) {
  let line = live.lines.get(itemId);
  if (!line) {
    line = element("p", { class: "caption partial", "data-item": itemId });
    live.lines.set(itemId, line);
    $("live-captions").append(line);
    line.scrollIntoView({ block: "nearest" });
  }
  return line;
}

// Stop: the microphone goes off at once; the socket stays open until the last utterance is transcribed.
async function stopLive() {
  stopMicrophone();
  setLiveStatus("Finishing the last words…");
  const socket = live.socket;
  if (socket?.readyState === WebSocket.OPEN) {
    const finished = new Promise((resolve) => (live.stopping = resolve));
    if (live.lines.size) socket.send(JSON.stringify({ type: "input_audio_buffer.commit" }));
    if (live.lines.size) await Promise.race([finished, new Promise((r) => setTimeout(r, LIVE_FINISH_MS))]);
    live.socket = null;
    socket.close(1000);
  }
  live.stopping = null;
  setLiveStatus("Stopped. Save it to get speakers, a summary and every download format.");
  showLiveButtons(live.chunks.length ? "stopped" : "idle");
}

function stopMicrophone() {
  live.stream?.getTracks().forEach((track) => track.stop());
  live.context?.close();
  live.stream = live.context = null;
}

async function saveLive() {
  const name = `live-${new Date().toISOString().slice(0, 19).replace(/[:T]/g, "-")}.wav`;
  const file = new File([wavOf(live.chunks, LIVE_RATE_HZ)], name, { type: "audio/wav" });
  setLiveStatus("Saving…");
  try {
    await uploadOne(file);
    live.chunks = [];
    showLiveButtons("idle");
    setLiveStatus(`Saved as ${name}: it is in the job list.`);
  } catch (error) {
    setLiveStatus(`Not saved: ${error.message}`);
  }
  await refreshJobs().catch(() => {});
}

function wavOf(chunks, rateHz) {
  const samples = chunks.reduce((total, chunk) => total + chunk.length, 0);
  const view = new DataView(new ArrayBuffer(44 + samples * 2));
  const text = (offset, value) => [...value].forEach((c, i) => view.setUint8(offset + i, c.charCodeAt(0)));
  text(0, "RIFF");
  view.setUint32(4, 36 + samples * 2, true);
  text(8, "WAVEfmt ");
  view.setUint32(16, 16, true);
  view.setUint16(20, 1, true);
  view.setUint16(22, 1, true);
  view.setUint32(24, rateHz, true);
  view.setUint32(28, rateHz * 2, true);
  view.setUint16(32, 2, true);
  view.setUint16(34, 16, true);
  text(36, "data");
  view.setUint32(40, samples * 2, true);
  let offset = 44;
  for (const chunk of chunks) {
    new Int16Array(view.buffer, offset, chunk.length).set(chunk);
    offset += chunk.length * 2;
  }
  return view.buffer;
}

function showLiveButtons(phase) {
  $("live-start").hidden = phase === "recording";
  $("live-stop").hidden = phase !== "recording";
  $("live-save").hidden = phase !== "stopped";
}

function setLiveStatus(text) {
  $("live-status").textContent = text;
}

export function wireLive() {
  $("live-start").addEventListener("click", startLive);
  $("live-stop").addEventListener("click", stopLive);
  $("live-save").addEventListener("click", saveLive);
}
