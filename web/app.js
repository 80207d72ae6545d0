// rtasr's web client: microphone or file -> AudioWorklet -> 100 ms PCM frames -> /ws.
// No build step and no dependencies; every message it handles is in docs/protocol.md.

const $ = (id) => document.getElementById(id);
const ui = {
  start: $("start"), stop: $("stop"), file: $("file"), language: $("language"),
  languageLabel: $("language-label"), translate: $("translate"),
  translateLabel: $("translate-label"), speakers: $("speakers"), speakersNote: $("speakers-note"),
  state: $("state"), speech: $("speech"), level: $("level"),
  latency: $("latency"), message: $("message"), finals: $("finals"), partial: $("partial"),
  placeholder: $("placeholder"), drop: $("drop"), info: $("server-info"),
  clear: $("clear"), copy: $("copy"), txt: $("download-txt"), srt: $("download-srt"),
};

const TARGET_RATE = 16000;
const finals = []; // {utterance, start, end, text, speaker, words, latency}: the downloads' finals
const SPEAKER_COLOURS = 8; // style.css: .speaker-0 ... .speaker-7
let diarizeOffered = false; // the server runs with --diarize (/healthz)
let lastSpeaker = null; // the speaker of the line shown last (null: none known)
let run = null; // the live stream: {ws, context, source, node, media, sent, rate, ...}
let partialUtterance = -1; // the utterance the partial line shows
let openUtterance = -1; // the utterance the server last opened

// ---------------------------------------------------------------------------- server info

async function loadServerInfo() {
  try {
    const response = await fetch("healthz", { cache: "no-store" });
    const health = await response.json();
    ui.info.textContent = `${health.model} on ${health.device} · ${health.sessions} open ` +
      `session${health.sessions === 1 ? "" : "s"}` + (health.ready ? "" : " · server full");
    if (health.multilingual && ui.languageLabel.hidden) { // once: keep the user's choice
      ui.language.replaceChildren(new Option("auto-detect", ""), ...languageOptions(health));
      ui.languageLabel.hidden = false;
      ui.translateLabel.hidden = false;
    }
    diarizeOffered = Boolean(health.diarize);
    ui.speakersNote.hidden = diarizeOffered;
    ui.speakers.disabled = !diarizeOffered || Boolean(run);
  } catch {
    ui.info.textContent = "The server is not answering.";
  }
}

// The model's languages by name ("Spanish (es)"), sorted by name; codes where the browser
// has no name for one.
function languageOptions(health) {
  let names = null;
  try { names = new Intl.DisplayNames(["en"], { type: "language" }); } catch { /* old browser */ }
  const named = health.languages.map((code) => {
    let name = code;
    try { name = names ? names.of(code) || code : code; } catch { /* not a valid tag */ }
    return [name === code ? code : `${name} (${code})`, code];
  });
  named.sort(([a], [b]) => a.localeCompare(b));
  return named.map(([label, code]) => new Option(label, code));
}

// ------------------------------------------------------------------------------ the socket

function socketUrl(rate) {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const params = new URLSearchParams({ sample_rate: String(rate), encoding: "pcm_s16le" });
  if (ui.language.value) params.set("language", ui.language.value);
  if (!ui.translateLabel.hidden && ui.translate.checked) params.set("task", "translate");
  if (diarizeOffered && ui.speakers.checked) params.set("diarize", "true");
  const token = new URLSearchParams(location.search).get("token"); // servers with --api-key
  if (token) params.set("token", token);
  return `${scheme}//${location.host}/ws?${params}`;
}

function openSocket(state) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(socketUrl(state.rate));
    state.ws = ws; // so that stop() can close it while it connects
    ws.binaryType = "arraybuffer";
    let opened = false;
    ws.onopen = () => { opened = true; };
    ws.onmessage = (event) => {
      const msg = JSON.parse(event.data);
      if (msg.type === "ready") {
        ws.onmessage = (e) => onMessage(JSON.parse(e.data));
        resolve();
      } else if (msg.type === "error") {
        reject(new Error(describeError(msg)));
      }
    };
    ws.onerror = () => {
      if (!opened) reject(new Error("Cannot reach the server: is `rtasr serve` running? " +
        "(If it has API keys, open this page as /?token=KEY.)"));
    };
    ws.onclose = (event) => {
      if (!opened) reject(new Error("Cannot reach the server: is `rtasr serve` running?"));
      else onClose(state, event);
    };
  });
}

function describeError(msg) {
  if (msg.code === "overloaded") return `The server is busy: ${msg.message}`;
  return `${msg.message} (${msg.code})`;
}

function onMessage(msg) {
  switch (msg.type) {
    case "speech_start":
      openUtterance = Math.max(openUtterance, msg.utterance);
      setSpeech(true);
      break;
    case "speech_end": // the pause, before the final (an utterance of noise gets none)
      if (msg.utterance >= openUtterance) setSpeech(false);
      break;
    case "partial":
      partialUtterance = msg.utterance;
      showPartial(msg.committed, msg.text);
      break;
    case "final":
      addFinal(msg);
      // a late final of an earlier utterance leaves the next one's partial and speech alone
      if (msg.utterance >= partialUtterance) showPartial("", "");
      if (msg.utterance >= openUtterance) setSpeech(false);
      break;
    case "error":
      showMessage(describeError(msg));
      break;
    case "end":
      if (run) run.ended = true;
      break;
  }
}

function onClose(state, event) {
  if (run !== state) return; // stopped (or replaced) already
  const expected = state.stopping && (event.code === 1000 || state.ended);
  if (!expected) {
    const why = event.reason ? `: ${event.reason}` : "";
    showMessage(`The connection closed (code ${event.code}${why}).`);
  }
  teardown(expected ? "idle" : "error");
}

// ----------------------------------------------------------------------------- audio input

async function startMicrophone() {
  let media;
  try {
    media = await navigator.mediaDevices.getUserMedia({
      audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true },
    });
  } catch (error) {
    const denied = error.name === "NotAllowedError" || error.name === "SecurityError";
    showMessage(denied
      ? "Microphone access was denied. Allow it in the browser's site settings and try again."
      : `No microphone available (${error.name}).`);
    return;
  }
  await startStream((context) => context.createMediaStreamSource(media), media, "Listening");
}

async function startFile(file) {
  if (!file) return;
  const context = newContext();
  let buffer;
  try {
    buffer = await context.decodeAudioData(await file.arrayBuffer());
  } catch {
    await context.close();
    showMessage(`Cannot decode ${file.name}: not an audio format this browser reads.`);
    return;
  }
  await startStream(() => {
    const source = context.createBufferSource();
    source.buffer = buffer;
    source.onended = () => stop();
    return source;
  }, null, `Streaming ${file.name}`, context);
}

function newContext(rate = TARGET_RATE) {
  try {
    return new AudioContext({ sampleRate: rate, latencyHint: "interactive" });
  } catch {
    return new AudioContext({ latencyHint: "interactive" }); // the server resamples
  }
}

// The source on a 16 kHz context, where the browser resamples; Firefox cannot join a
// microphone running at another rate to it (NotSupportedError), so the microphone then gets a
// context at its own rate and the server resamples (the socket URL says which rate).
function connectSource(state, makeSource) {
  try {
    return makeSource(state.context);
  } catch (error) {
    if (!state.media || state.context.sampleRate !== TARGET_RATE) throw error;
    state.context.close().catch(() => {});
    state.context = new AudioContext({ latencyHint: "interactive" });
    state.rate = state.context.sampleRate;
    return makeSource(state.context);
  }
}

async function startStream(makeSource, media, label, context) {
  hideMessage();
  setState("connecting", "Connecting…");
  setBusy(true);
  const state = { ws: null, context: null, media, node: null, source: null, sent: 0,
                  marks: [], rate: 0, stopping: false, ended: false, endSent: false };
  run = state;
  partialUtterance = openUtterance = -1; // a new session numbers its utterances from 0
  lastSpeaker = null; // ... and its speakers: the first line of its own gets a label
  try {
    state.context = context ?? newContext();
    state.rate = state.context.sampleRate;
    state.source = connectSource(state, makeSource);
    await state.context.audioWorklet.addModule("worklet.js");
    if (run !== state) return; // stopped while connecting: teardown() closed everything
    await openSocket(state);
    if (run !== state) return;
    const node = new AudioWorkletNode(state.context, "pcm-capture",
                                      { channelCount: 1, channelCountMode: "explicit" });
    node.port.onmessage = (event) => {
      if (event.data === "flushed") state.flushed?.();
      else sendFrame(state, event.data);
    };
    state.source.connect(node);
    const mute = state.context.createGain();
    mute.gain.value = 0;
    node.connect(mute).connect(state.context.destination); // keeps the graph pulling, silently
    state.node = node;
    if (state.source.start) state.source.start();
    await state.context.resume();
  } catch (error) {
    if (run !== state) return; // the user stopped it; nothing failed
    showMessage(error.name && error.name !== "Error"
      ? `Cannot start the audio (${error.name}: ${error.message})` : error.message);
    teardown("error");
    return;
  }
  if (run === state && !state.stopping) setState("live", label);
}

function sendFrame(state, { pcm, level }) {
  ui.level.style.width = `${Math.min(100, Math.round(level * 400))}%`;
  if (state.endSent || state.ws.readyState !== WebSocket.OPEN) return;
  state.ws.send(pcm);
  state.sent += pcm.byteLength / 2;
  state.marks.push([state.sent / state.rate, performance.now()]);
  if (state.marks.length > 6000) state.marks.splice(0, 3000);
}

async function stop() {
  const state = run;
  if (!state || state.stopping) return;
  state.stopping = true;
  if (state.ws?.readyState !== WebSocket.OPEN || !state.node) {
    teardown("idle"); // still connecting: nothing to finish
    return;
  }
  setState("stopping", "Finishing…");
  // The worklet sends what it holds of the last 100 ms frame, then says so.
  await new Promise((resolve) => {
    state.flushed = resolve;
    state.node.port.postMessage("flush");
    setTimeout(resolve, 500); // a suspended audio thread never answers
  });
  state.media?.getTracks().forEach((track) => track.stop());
  if (state.ws.readyState === WebSocket.OPEN) {
    state.ws.send(JSON.stringify({ type: "end" })); // the server sends the last finals, then end
    state.endSent = true;
  } else if (run === state) {
    teardown("idle");
  }
}

function teardown(next) {
  const state = run;
  run = null;
  if (state) {
    state.media?.getTracks().forEach((track) => track.stop());
    state.context?.close().catch(() => {});
    if (state.ws && state.ws.readyState <= WebSocket.OPEN) state.ws.close();
  }
  ui.level.style.width = "0";
  setSpeech(false);
  setBusy(false);
  setState(next, next === "error" ? "Stopped" : "Idle");
  loadServerInfo();
}

// ---------------------------------------------------------------------------- transcript

// mm:ss.mmm on the page (hh: added past an hour).
function fmt(seconds) {
  const ms = Math.round(seconds * 1000);
  const h = Math.floor(ms / 3600000);
  const m = Math.floor((ms % 3600000) / 60000);
  const s = Math.floor((ms % 60000) / 1000);
  const pad = (n, w = 2) => String(n).padStart(w, "0");
  return `${h ? pad(h) + ":" : ""}${pad(m)}:${pad(s)}.${pad(ms % 1000, 3)}`;
}

function latencyOf(end) {
  if (!run) return null;
  const mark = run.marks.find(([t]) => t >= end);
  return mark ? (performance.now() - mark[1]) / 1000 : null;
}

function addFinal(msg) {
  const latency = latencyOf(msg.end);
  finals.push({ utterance: msg.utterance, start: msg.start, end: msg.end, text: msg.text,
                speaker: msg.speaker ?? null, words: msg.words ?? [], latency });
  const parts = turns(msg);
  parts.forEach((part, i) => {
    const li = document.createElement("li");
    if (part.speaker !== null) labelSpeaker(li, part.speaker);
    const time = document.createElement("span");
    time.className = "time";
    time.textContent = `${fmt(part.start)} → ${fmt(part.end)}`;
    const text = document.createElement("span");
    text.className = "text";
    text.textContent = part.text;
    li.append(time, text);
    if (msg.language) li.lang = ui.translate.checked ? "en" : msg.language; // screen readers
    if (latency !== null && i === parts.length - 1) {
      const lat = document.createElement("span");
      lat.className = "lat";
      lat.textContent = `${latency.toFixed(2)} s`;
      lat.title = "final latency: arrival minus the moment its last sample was sent";
      li.append(lat);
      ui.latency.textContent = `last final ${latency.toFixed(2)} s after its audio`;
    }
    ui.finals.append(li);
  });
  ui.placeholder.hidden = true;
}

// Colour a line by its speaker; where the speaker changes, a new paragraph with its label.
function labelSpeaker(li, speaker) {
  li.dataset.speaker = String(speaker);
  li.classList.add(`speaker-${speaker % SPEAKER_COLOURS}`);
  if (speaker === lastSpeaker) return;
  lastSpeaker = speaker;
  li.classList.add("turn");
  const label = document.createElement("span");
  label.className = "speaker";
  label.textContent = speakerLabel(speaker);
  li.prepend(label);
}

function showPartial(committed, text) {
  const rest = text.startsWith(committed) ? text.slice(committed.length) : text;
  ui.partial.querySelector(".committed").textContent = committed;
  ui.partial.querySelector(".tentative").textContent = rest;
  if (text) ui.placeholder.hidden = true;
}

// The shown lines and the downloads mirror rtasr/core/subtitles.py: `turns`, `stamp`, `cue`,
// `finalCues` and `transcript` are its `turns`, `stamp`, `cue`, `final_cues` and `render`
// (tests/test_web.py compares the downloads with the module's output).

// People count from 1: the wire's speaker 0 is "Speaker 1".
function speakerLabel(speaker) {
  return `Speaker ${speaker + 1}`;
}

// A final cut where its words' speaker changes (a word without one has the final's): the
// first turn starts at the final's start, the last ends at its end. A final whose words all
// have one speaker (or none) is one turn, its own span and text.
function turns(final) {
  const own = final.speaker ?? null;
  const runs = []; // {speaker, words}
  for (const w of final.words ?? []) {
    const speaker = w.speaker ?? own;
    const last = runs[runs.length - 1];
    if (last && last.speaker === speaker) last.words.push(w);
    else runs.push({ speaker, words: [w] });
  }
  if (runs.length < 2) {
    return [{ start: final.start, end: final.end, text: final.text.trim(),
              speaker: runs.length ? runs[0].speaker : own }];
  }
  return runs.map(({ speaker, words }, k) => ({
    start: k === 0 ? final.start : words[0].start,
    end: k === runs.length - 1 ? final.end : words[words.length - 1].end,
    text: words.map((w) => String(w.word).trim()).join(" "),
    speaker,
  }));
}

// hh:mm:ss,mmm, rounded to the millisecond, halves up (the page offers text and SRT, so
// only SRT's stamp).
function stamp(seconds) {
  const ms = Math.round(seconds * 1000);
  const pad = (n, w = 2) => String(n).padStart(w, "0");
  const h = Math.floor(ms / 3600000), m = Math.floor(ms / 60000) % 60;
  const s = Math.floor(ms / 1000) % 60;
  return `${pad(h)}:${pad(m)}:${pad(s)},${pad(ms % 1000, 3)}`;
}

// A cue per format: the `number`th (from 1), of `text` from `start` to `end` (seconds);
// `label` (or null) names its speaker.
function textCue(number, start, end, text, label) {
  return label === null ? `${text}\n` : `${label}: ${text}\n`;
}

function srtCue(number, start, end, text, label) {
  const line = label === null ? text : `[${label}] ${text}`;
  return `${number}\n${stamp(start)} --> ${stamp(end)}\n${line}\n\n`;
}

const CUES = { text: textCue, srt: srtCue };

function cue(number, start, end, text, format, label = null) {
  return CUES[format](number, start, end, text.trim(), label);
}

// A final as cues numbered from `first`: one, or one per turn when it has speakers.
function finalCues(first, final, format) {
  return turns(final).map((t, i) => cue(first + i, t.start, t.end, t.text, format,
                                        t.speaker === null ? null : speakerLabel(t.speaker)));
}

function transcript(format) {
  const cues = [];
  for (const final of finals) cues.push(...finalCues(cues.length + 1, final, format));
  return cues.join("");
}

function download(name, text) {
  const url = URL.createObjectURL(new Blob([text], { type: "text/plain;charset=utf-8" }));
  const a = Object.assign(document.createElement("a"), { href: url, download: name });
  a.click();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

// ------------------------------------------------------------------------------------- UI

function setState(state, text) {
  ui.state.dataset.state = state;
  ui.state.textContent = text;
}

function setSpeech(on) {
  ui.speech.dataset.speech = on ? "yes" : "no";
  ui.speech.textContent = on ? "Speech" : "No speech";
}

function setBusy(busy) {
  ui.start.disabled = busy;
  ui.file.disabled = busy;
  ui.language.disabled = busy;
  ui.translate.disabled = busy;
  ui.speakers.disabled = busy || !diarizeOffered;
  ui.stop.disabled = !busy;
}

function showMessage(text) {
  ui.message.textContent = text;
  ui.message.hidden = false;
}

function hideMessage() {
  ui.message.hidden = true;
}

ui.start.addEventListener("click", startMicrophone);
ui.stop.addEventListener("click", stop);
ui.file.addEventListener("change", () => {
  const [file] = ui.file.files;
  ui.file.value = "";
  startFile(file);
});
ui.drop.addEventListener("dragover", (event) => {
  event.preventDefault();
  ui.drop.classList.add("dragging");
});
ui.drop.addEventListener("dragleave", () => ui.drop.classList.remove("dragging"));
ui.drop.addEventListener("drop", (event) => {
  event.preventDefault();
  ui.drop.classList.remove("dragging");
  if (!run) startFile(event.dataTransfer.files[0]);
});
ui.clear.addEventListener("click", () => {
  finals.length = 0;
  lastSpeaker = null;
  ui.finals.replaceChildren();
  showPartial("", "");
  ui.latency.textContent = "";
  ui.placeholder.hidden = false;
});
ui.copy.addEventListener("click", async () => {
  try {
    await navigator.clipboard.writeText(transcript("text").trimEnd());
  } catch {
    showMessage("The browser did not allow copying; select the text instead.");
  }
});
ui.txt.addEventListener("click", () => download("transcript.txt", transcript("text")));
ui.srt.addEventListener("click", () => download("transcript.srt", transcript("srt")));
document.addEventListener("keydown", (event) => {
  if (event.key === "Escape" && run) stop();
});

loadServerInfo();
