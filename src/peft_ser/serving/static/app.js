// The page of `peft-ser serve`: pick a model and how a recording is cut, upload or record a
// clip, see every class's probability and, for a recording cut into windows or speech
// segments, the label of each segment on a timeline, at its times; or stream the microphone
// live and watch the timeline grow window by window.
"use strict";

const SETTINGS = { whole: [], window: ["window"], vad: ["min_segment", "max_segment"] };
const TICK_STEPS = [0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600];
const $ = (id) => document.getElementById(id);
// Each label's colour, as the server's palette ties it to the label's name (GET /v1/models):
// the same as in the timeline pictures, whatever the order of a model's classes.
let colours = {};

function status(text, isError = false) {
  $("status").textContent = text;
  $("status").className = isError ? "error" : "";
}

function colour(label) {
  return colours[label] || "#7a7a7a";
}

async function api(path, options = {}) {
  const headers = new Headers(options.headers || {});
  if ($("key").value) headers.set("X-API-Key", $("key").value);
  // location.origin, not the page's URL: a page opened as http://user:key@host/ cannot fetch
  // relative URLs; the browser still sends the HTTP Basic key it was given to its origin.
  const response = await fetch(new URL(path, location.origin), { ...options, headers });
  const body = await response.json().catch(() => ({ detail: response.statusText }));
  if (response.status === 401) $("key-box").hidden = false;
  if (!response.ok) throw new Error(`${response.status}: ${body.detail}`);
  return body;
}

async function loadModels() {
  try {
    const { models } = await api("/v1/models");
    const select = $("model");
    select.replaceChildren(...models.map((model) => {
      const option = document.createElement("option");
      option.value = model.name;
      option.textContent = `${model.name} (${model.backbone}, ${model.method})`;
      option.dataset.labels = JSON.stringify(model.labels);
      option.dataset.colours = JSON.stringify(model.colours);
      return option;
    }));
    status("Upload or record a clip.");
  } catch (error) {
    status(`Cannot list the models: ${error.message}`, true);
  }
}

async function send(blob, name) {
  const model = $("model").value;
  const form = new FormData();
  form.append("file", blob, name);
  const segment = $("segment").value;
  const query = new URLSearchParams({ model, segment });
  for (const field of SETTINGS[segment]) {
    if ($(field).value) query.set(field, $(field).value);
  }
  status(`Asking ${model} about ${name}…`);
  $("result").hidden = true;  // an earlier answer must not stand beside this one's error
  try {
    const answer = await api(`/v1/predict?${query}`, { method: "POST", body: form });
    colours = JSON.parse($("model").selectedOptions[0].dataset.colours);
    show(answer, segment);
    status("");
  } catch (error) {
    status(error.message, true);
  }
}

function bar(label, probability) {
  const row = document.createElement("div");
  row.className = "bar";
  row.dataset.label = label;
  const name = document.createElement("span");
  name.textContent = label;
  const track = document.createElement("div");
  track.className = "track";
  const fill = document.createElement("div");
  fill.className = "fill";
  fill.style.width = `${(100 * probability).toFixed(1)}%`;
  fill.style.background = colour(label);
  track.append(fill);
  const value = document.createElement("span");
  value.className = "value";
  value.textContent = probability.toFixed(3);
  row.append(name, track, value);
  return row;
}

function show(answer, mode) {
  const prediction = answer.prediction;
  const labels = Object.keys(prediction.probabilities);
  $("source").textContent = prediction.source;
  $("label").textContent = prediction.label;
  $("bars").replaceChildren(
    ...labels.map((label) => bar(label, prediction.probabilities[label])));
  const windows = prediction.windows;
  const percent = (seconds) => `${(100 * seconds) / prediction.duration}%`;
  $("timeline-box").hidden = windows.length === 0;
  $("timeline-title").textContent = mode === "vad" ? "Speech segments" : "Windows";
  $("timeline").replaceChildren(...windows.map((window, index) => {
    // Each segment sits at its own start. Windows overlap, so each is drawn up to the next
    // one's start; speech segments end before the next begins, and the silence between them
    // stays empty.
    const next = index + 1 < windows.length ? windows[index + 1].start : window.end;
    const segment = document.createElement("div");
    segment.style.left = percent(window.start);
    segment.style.width = percent(Math.min(window.end, next) - window.start);
    segment.style.background = colour(window.label);
    segment.title = `${window.start.toFixed(2)}–${window.end.toFixed(2)} s: ${window.label}`;
    segment.dataset.label = window.label;
    segment.dataset.start = window.start;
    segment.dataset.end = window.end;
    return segment;
  }));
  $("legend").replaceChildren(...labels.filter((label) => windows.some((w) => w.label === label))
    .map((label) => {
      const key = document.createElement("span");
      key.dataset.label = label;
      const swatch = document.createElement("i");
      swatch.style.background = colour(label);
      key.append(swatch, label);
      return key;
    }));
  $("times").replaceChildren(...ticks(prediction.duration).map((seconds) => {
    const span = document.createElement("span");
    span.textContent = `${seconds} s`;
    span.style.left = percent(seconds);
    return span;
  }));
  $("result").hidden = false;
}

// Time marks at a round step (0.5, 1, 2, 5, 10 s…), at most eight along the timeline.
function ticks(duration) {
  const step = TICK_STEPS.find((candidate) => duration / candidate <= 8) || 3600;
  const marks = [];
  for (let seconds = 0; seconds <= duration + 1e-9; seconds += step) marks.push(seconds);
  return marks;
}

// A recording (webm/ogg/mp4, whatever the browser records) becomes a 16-bit mono WAV here,
// so the server only ever decodes formats libsndfile reads.
async function toWav(blob) {
  const context = new AudioContext();
  const audio = await context.decodeAudioData(await blob.arrayBuffer());
  await context.close();
  const mono = new Float32Array(audio.length);
  for (let channel = 0; channel < audio.numberOfChannels; channel++) {
    audio.getChannelData(channel).forEach((x, i) => { mono[i] += x / audio.numberOfChannels; });
  }
  const buffer = new ArrayBuffer(44 + 2 * mono.length);
  const view = new DataView(buffer);
  const text = (offset, value) => [...value].forEach((c, i) => view.setUint8(offset + i, c.charCodeAt(0)));
  text(0, "RIFF"); view.setUint32(4, 36 + 2 * mono.length, true); text(8, "WAVE");
  text(12, "fmt "); view.setUint32(16, 16, true); view.setUint16(20, 1, true);
  view.setUint16(22, 1, true); view.setUint32(24, audio.sampleRate, true);
  view.setUint32(28, 2 * audio.sampleRate, true); view.setUint16(32, 2, true);
  view.setUint16(34, 16, true); text(36, "data"); view.setUint32(40, 2 * mono.length, true);
  mono.forEach((x, i) => view.setInt16(44 + 2 * i, Math.max(-1, Math.min(1, x)) * 32767, true));
  return new Blob([buffer], { type: "audio/wav" });
}

// The microphone's stream, or null (with the reason shown) when the browser refuses it.
async function microphone() {
  try {
    return await navigator.mediaDevices.getUserMedia({ audio: true });
  } catch (error) {
    status(`No microphone: ${error.message}`, true);
    return null;
  }
}

let recorder = null;

async function toggleRecording() {
  if (recorder) {
    recorder.stop();
    return;
  }
  const stream = await microphone();
  if (!stream) return;
  const chunks = [];
  recorder = new MediaRecorder(stream);
  recorder.ondataavailable = (event) => chunks.push(event.data);
  recorder.onstop = async () => {
    stream.getTracks().forEach((track) => track.stop());
    recorder = null;
    $("record").textContent = "Record";
    $("record").classList.remove("recording");
    try {
      await send(await toWav(new Blob(chunks)), "recording.wav");
    } catch (error) {
      status(`Cannot read the recording: ${error.message}`, true);
    }
  };
  recorder.start();
  $("record").textContent = "Stop";
  $("record").classList.add("recording");
  status("Recording… press Stop to send.");
}

// Live: the microphone at 16 kHz, sent as float32 frames over /v1/stream; each answered
// window joins the timeline as it arrives (2-s windows every second unless set).
let live = null;

function stopLive(message = "") {
  if (!live) return;
  const { socket, stream, context } = live;
  live = null;
  stream.getTracks().forEach((track) => track.stop());
  context.close();
  if (socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify({ event: "end" }));
  $("live").textContent = "Live";
  $("live").classList.remove("recording");
  if (message) status(message);
}

async function toggleLive() {
  if (live) {
    stopLive("Stopped; the last windows are on their way.");
    return;
  }
  const stream = await microphone();
  if (!stream) return;
  const seconds = $("window").value || "2";
  const query = new URLSearchParams({ model: $("model").value, window: seconds, hop: seconds / 2 });
  const url = `${location.origin.replace(/^http/, "ws")}/v1/stream?${query}`;
  const socket = new WebSocket(url);
  socket.binaryType = "arraybuffer";
  const context = new AudioContext({ sampleRate: 16000 });
  const source = context.createMediaStreamSource(stream);
  const processor = context.createScriptProcessor(4096, 1, 1);
  processor.onaudioprocess = (event) => {
    if (socket.readyState === WebSocket.OPEN) {
      socket.send(new Float32Array(event.inputBuffer.getChannelData(0)).buffer);
    }
  };
  source.connect(processor);
  processor.connect(context.destination);
  const windows = [];
  socket.onmessage = (event) => {
    const message = JSON.parse(event.data);
    if (message.error) {
      stopLive();
      status(message.error, true);
    } else if (message.event === "end") {
      status(`Live: ${message.windows} windows over ${message.seconds.toFixed(1)} s.`);
    } else {
      windows.push(message);
      const prediction = { source: "microphone", label: message.label, windows,
        probabilities: message.probabilities, duration: message.end };
      show({ prediction }, "window");
    }
  };
  socket.onerror = () => {
    stopLive();
    status("The live stream was refused or broken.", true);
  };
  live = { socket, stream, context };
  $("live").textContent = "Stop live";
  $("live").classList.add("recording");
  status("Live: listening…");
}

$("file").addEventListener("change", () => {
  const [file] = $("file").files;
  if (file) send(file, file.name);
  $("file").value = "";
});
$("record").addEventListener("click", toggleRecording);
$("live").addEventListener("click", toggleLive);
$("segment").addEventListener("change", () => {
  // Only the chosen mode's settings are shown (and sent): the API refuses the others.
  document.querySelectorAll("[data-mode]").forEach((field) => {
    field.hidden = field.dataset.mode !== $("segment").value;
  });
});
$("key").addEventListener("change", loadModels);
loadModels();
