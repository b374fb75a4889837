// One call: facts, the recording with a waveform per channel, the transcript as timed segments
// (a click seeks the audio), the summary and extracted fields (each linked to its segment), and
// the status timeline. Refreshed when the live feed says the call changed.
import { api, el, badge, liveCalls, fmtTime, fmtDuration, fmtClock, showError } from "./common.js";

const sid = decodeURIComponent(location.pathname.split("/").pop());
const player = document.getElementById("player");
const loadError = document.getElementById("load-error");
/** Waveforms are drawn for recordings up to this long (the browser decodes the whole file). */
const MAX_WAVE_MS = 30 * 60 * 1000;

document.getElementById("sid").textContent = sid;
document.title = `Call ${sid} · twiml-guard`;

let shown = {};
let peaks = null;

function changed(key, value) {
  const text = JSON.stringify(value);
  if (shown[key] === text) return false;
  shown[key] = text;
  return true;
}

function renderFacts(c) {
  const facts = [
    ["From", c.from], ["To", c.to], ["Twilio status", c.call_status],
    ["Created", fmtTime(c.created_at_ms)],
    ["Ended", fmtTime(c.ended_at_ms)],
    ["Call length", c.ended_at_ms ? fmtDuration(c.ended_at_ms - c.created_at_ms) : ""],
    ["Pipeline finished", fmtTime(c.completed_at_ms)],
  ].filter(([, v]) => v);
  document.getElementById("facts").replaceChildren(
    ...facts.map(([k, v]) => el("div", {}, el("dt", {}, k), el("dd", {}, v))),
  );
  const status = document.getElementById("status");
  status.replaceWith(Object.assign(badge(c.status), { id: "status" }));
}

function seek(seconds, segIndex) {
  if (!player.hidden) player.currentTime = seconds;
  if (segIndex !== undefined && segIndex !== null) {
    const b = document.querySelector(`#segments button[data-index="${segIndex}"]`);
    if (b) b.focus();
  }
  markCurrent();
}

function markCurrent() {
  const t = player.currentTime;
  for (const b of document.querySelectorAll("#segments button")) {
    const on = t >= Number(b.dataset.start) && t < Number(b.dataset.end);
    if (on) b.setAttribute("aria-current", "true");
    else b.removeAttribute("aria-current");
  }
  drawWaves();
}

function renderRecording(c) {
  const r = c.recording;
  const text = [r.source, r.status, r.duration_ms != null ? fmtDuration(r.duration_ms) : null]
    .filter(Boolean).join(" · ");
  document.getElementById("rec-status").textContent = r.available ? text : `No recording yet (${text})`;
  if (r.available && player.hidden) {
    const url = `/api/calls/${sid}/recording.wav`;
    player.src = url;
    player.hidden = false;
    if (r.duration_ms != null && r.duration_ms <= MAX_WAVE_MS) loadWaves(url);
  }
}

async function loadWaves(url) {
  try {
    const resp = await fetch(url, { credentials: "same-origin" });
    if (!resp.ok) throw new Error(`HTTP ${resp.status}`);
    const ctx = new OfflineAudioContext(1, 1, 8000);
    const audio = await ctx.decodeAudioData(await resp.arrayBuffer());
    peaks = { duration: audio.duration, channels: [] };
    for (let ch = 0; ch < Math.min(2, audio.numberOfChannels); ch++) {
      peaks.channels.push(audio.getChannelData(ch));
    }
    document.getElementById("waves").hidden = false;
    drawWaves();
  } catch (e) {
    document.getElementById("rec-status").append(` · waveform unavailable: ${e.message}`);
  }
}

function drawWave(canvas, samples) {
  const ratio = window.devicePixelRatio || 1;
  const width = Math.max(1, Math.floor(canvas.clientWidth * ratio));
  const height = Math.floor(72 * ratio);
  if (canvas.width !== width) canvas.width = width;
  canvas.height = height;
  const g = canvas.getContext("2d");
  g.fillStyle = "#f8f9fa";
  g.fillRect(0, 0, width, height);
  g.fillStyle = "#1a56c4";
  const mid = height / 2;
  if (samples) {
    const per = samples.length / width;
    for (let x = 0; x < width; x++) {
      let lo = 0, hi = 0;
      const end = Math.min(samples.length, Math.floor((x + 1) * per));
      for (let i = Math.floor(x * per); i < end; i++) {
        const v = samples[i];
        if (v < lo) lo = v;
        if (v > hi) hi = v;
      }
      g.fillRect(x, mid - hi * mid, 1, Math.max(1, (hi - lo) * mid));
    }
  }
  if (peaks && peaks.duration > 0) {
    g.fillStyle = "#b3261e";
    g.fillRect(Math.floor((player.currentTime / peaks.duration) * width), 0, Math.ceil(ratio), height);
  }
}

function drawWaves() {
  if (!peaks) return;
  drawWave(document.getElementById("wave-caller"), peaks.channels[0]);
  drawWave(document.getElementById("wave-agent"), peaks.channels[1] || null);
}

for (const id of ["wave-caller", "wave-agent"]) {
  document.getElementById(id).addEventListener("click", (e) => {
    if (!peaks) return;
    const rect = e.currentTarget.getBoundingClientRect();
    seek(((e.clientX - rect.left) / rect.width) * peaks.duration);
  });
}
player.addEventListener("timeupdate", markCurrent);
player.addEventListener("seeked", markCurrent);
window.addEventListener("resize", drawWaves);

function renderTranscript(c) {
  const status = document.getElementById("tr-status");
  const list = document.getElementById("segments");
  const segs = (c.transcript && c.transcript.segments) || [];
  status.textContent = c.transcription_status
    ? (typeof c.transcription_status === "string" ? c.transcription_status : JSON.stringify(c.transcription_status))
    : (c.transcript ? "" : "Not transcribed yet.");
  list.replaceChildren(...segs.map((s, i) => el("li", {},
    el("button", {
      type: "button",
      class: `seg seg-${s.speaker}`,
      dataset: { index: i, start: s.start, end: s.end, speaker: s.speaker },
      onclick: () => seek(s.start),
    },
    el("span", { class: "who" }, s.speaker === "agent" ? "Agent" : "Caller"),
    el("span", { class: "when" }, `${fmtClock(s.start)}–${fmtClock(s.end)}`),
    el("span", { class: "text" }, s.text)))));
  markCurrent();
}

/** A button that seeks to a segment and focuses it. */
function segLink(label, segIndex, segs) {
  const s = segs[segIndex];
  if (!s) return el("span", {}, label);
  return el("button", {
    type: "button",
    class: "link",
    title: `Segment ${segIndex + 1} at ${fmtClock(s.start)}`,
    onclick: () => seek(s.start, segIndex),
  }, label);
}

function renderSummary(c) {
  const segs = (c.transcript && c.transcript.segments) || [];
  const f = c.fields || {};
  const summary = document.getElementById("summary");
  if (Array.isArray(f.summary_sentences) && f.summary_sentences.length) {
    summary.replaceChildren(el("p", {}, ...f.summary_sentences.flatMap((s) => [segLink(s.text, s.segment, segs), " "])));
  } else {
    summary.replaceChildren(el("p", { class: "muted" }, c.summary || "No summary yet."));
  }
  const rows = [];
  const list = (title, items) => {
    if (!Array.isArray(items) || !items.length) return;
    rows.push(el("div", {}, el("dt", {}, title), ...items.map((it) =>
      el("dd", {}, segLink(it.value === it.text ? it.value : `${it.value} (“${it.text}”)`, it.segment, segs)))));
  };
  list("Phone numbers", f.phone_numbers);
  list("E-mail addresses", f.emails);
  list("Dates and times", f.datetimes);
  if (f.callback && f.callback.requested) {
    const when = f.callback.at ? ` at ${f.callback.at}` : "";
    rows.push(el("div", {}, el("dt", {}, "Callback"),
      el("dd", {}, segLink(`requested${when} (“${f.callback.text}”)`, f.callback.segment, segs))));
  }
  if (!rows.length) rows.push(el("div", {}, el("dt", {}, "Fields"), el("dd", { class: "muted" }, c.fields ? "none found" : "not extracted yet")));
  document.getElementById("fields").replaceChildren(...rows);
}

function renderTimeline(c) {
  const items = [];
  const add = (at, text, kind = "") => { if (at != null) items.push({ at, text, kind }); };
  add(c.created_at_ms, "Call created");
  for (const s of c.streams || []) {
    add(s.started_at_ms, `Stream ${s.index + 1} started (${s.stream_sid})`);
    add(s.stopped_at_ms, `Stream ${s.index + 1} stopped: ${s.close_reason || s.status}; ` +
      `${s.frames_in} frames in, ${s.frames_out} out, ${s.bad_messages} refused`);
  }
  add(c.ended_at_ms, `stream_ended webhook${c.call_status ? ` (CallStatus ${c.call_status})` : ""}`);
  for (const j of c.stages || []) {
    add(j.started_at_ms, `Stage ${j.stage} started (attempt ${j.attempts})`);
    const err = j.last_error ? `; last error: ${j.last_error}` : "";
    add(j.finished_at_ms ?? (j.state === "queued" ? j.run_at_ms : null),
      `Stage ${j.stage} ${j.state} after ${j.attempts} attempt${j.attempts === 1 ? "" : "s"}` +
      `${j.duration_ms != null ? ` (${fmtDuration(j.duration_ms)})` : ""}${err}`,
      j.state === "failed" ? "bad" : "");
  }
  for (const e of c.errors || []) add(e.at_ms, `Error in ${e.stage}: ${e.message}`, "bad");
  add(c.completed_at_ms, c.status === "failed" ? "Pipeline failed" : "Pipeline completed",
    c.status === "failed" ? "bad" : "");
  items.sort((a, b) => a.at - b.at);
  document.getElementById("timeline").replaceChildren(...items.map((i) =>
    el("li", { class: i.kind }, el("time", { datetime: new Date(i.at).toISOString() }, fmtTime(i.at)), " ", i.text)));
}

async function load() {
  try {
    const c = await api(`/api/calls/${sid}`);
    showError(loadError, null);
    if (changed("facts", [c.status, c.from, c.to, c.call_status, c.ended_at_ms, c.completed_at_ms])) renderFacts(c);
    if (changed("rec", c.recording)) renderRecording(c);
    if (changed("tr", [c.transcript, c.transcription_status])) renderTranscript(c);
    if (changed("sum", [c.summary, c.fields, c.transcript])) renderSummary(c);
    if (changed("tl", [c.streams, c.stages, c.errors, c.ended_at_ms, c.completed_at_ms])) renderTimeline(c);
    document.body.dataset.callStatus = c.status;
  } catch (e) {
    showError(loadError, e);
  }
}

let pending = null;
function reload() {
  if (pending) return;
  pending = setTimeout(() => { pending = null; load(); }, 100);
}

load();
liveCalls({
  onSnapshot: reload,
  onCall: (row) => { if (row.call_sid === sid) reload(); },
});
