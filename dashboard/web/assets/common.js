// What every dashboard page shares: the API client, DOM building (text only: call data never
// goes through innerHTML), formatting, and the live event source.

/** GET or POST a JSON API path; a 401 means the session ended: reload to get the sign-in page. */
export async function api(path, options = {}) {
  const resp = await fetch(path, { credentials: "same-origin", ...options });
  if (resp.status === 401) {
    location.reload();
    throw new Error("signed out");
  }
  let body = null;
  try {
    body = await resp.json();
  } catch {
    body = null;
  }
  if (!resp.ok) {
    const msg = body && body.error ? `${body.error.code}: ${body.error.message}` : `HTTP ${resp.status}`;
    throw new Error(msg);
  }
  return body;
}

/** `el("td", {class: "x", dataset: {a: 1}}, "text", child)`. */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "dataset") Object.assign(node.dataset, v);
    else if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

const STATUS_TEXT = {
  in_progress: "In progress",
  ended: "Ended",
  processing: "Processing",
  completed: "Completed",
  failed: "Failed",
};

export function statusText(status) {
  return STATUS_TEXT[status] || status || "unknown";
}

export function badge(status) {
  return el("span", { class: `badge badge-${status}` }, statusText(status));
}

export function fmtTime(ms) {
  if (ms === null || ms === undefined) return "";
  const d = new Date(ms);
  return d.toLocaleString(undefined, {
    year: "numeric", month: "short", day: "numeric",
    hour: "2-digit", minute: "2-digit", second: "2-digit",
  });
}

export function fmtDuration(ms) {
  if (ms === null || ms === undefined || ms < 0) return "";
  const s = Math.round(ms / 100) / 10;
  if (s < 60) return `${s.toFixed(1)} s`;
  const m = Math.floor(s / 60);
  return `${m} min ${Math.round(s - m * 60)} s`;
}

/** Seconds as m:ss.s, for transcript times. */
export function fmtClock(seconds) {
  const m = Math.floor(seconds / 60);
  const s = (seconds - m * 60).toFixed(1).padStart(4, "0");
  return `${m}:${s}`;
}

/**
 * The live calls feed (`/api/events`): `onSnapshot(calls)` on every (re)connect, `onCall(row)`
 * for each change, `onState(text)` for the connection. EventSource reconnects by itself.
 */
export function liveCalls({ onSnapshot, onCall, onState }) {
  const source = new EventSource("/api/events");
  source.addEventListener("open", () => onState && onState("Live"));
  source.addEventListener("error", () => onState && onState("Reconnecting…"));
  source.addEventListener("snapshot", (e) => onSnapshot && onSnapshot(JSON.parse(e.data).calls));
  source.addEventListener("call", (e) => onCall && onCall(JSON.parse(e.data)));
  return source;
}

export function showError(node, err) {
  node.hidden = !err;
  node.textContent = err ? String(err.message || err) : "";
}
