// The calls list: a snapshot and then live changes from /api/events, newest first, filtered by
// status. Rows are focusable: Enter or a click opens the call.
import { liveCalls, el, badge, fmtTime, fmtDuration } from "./common.js";

const calls = new Map();
const tbody = document.querySelector("#calls tbody");
const filter = document.getElementById("status-filter");
const live = document.getElementById("live");
const empty = document.getElementById("empty");

const params = new URLSearchParams(location.search);
filter.value = params.get("status") || "";
filter.addEventListener("change", () => {
  const url = new URL(location.href);
  if (filter.value) url.searchParams.set("status", filter.value);
  else url.searchParams.delete("status");
  history.replaceState(null, "", url);
  render();
});

function open(sid) {
  location.href = `/dashboard/calls/${encodeURIComponent(sid)}`;
}

function row(c) {
  const duration = c.ended_at_ms ? fmtDuration(c.ended_at_ms - c.created_at_ms) : "";
  const tr = el(
    "tr",
    {
      tabindex: 0,
      dataset: { callSid: c.call_sid, status: c.status },
      onclick: () => open(c.call_sid),
      onkeydown: (e) => {
        if (e.key === "Enter" || e.key === " ") {
          e.preventDefault();
          open(c.call_sid);
        }
      },
    },
    el("td", { "data-label": "Call" },
      el("a", { href: `/dashboard/calls/${c.call_sid}`, tabindex: -1 }, el("code", {}, c.call_sid))),
    el("td", { "data-label": "Status" }, badge(c.status)),
    el("td", { "data-label": "From" }, c.from || ""),
    el("td", { "data-label": "To" }, c.to || ""),
    el("td", { "data-label": "Started" }, fmtTime(c.created_at_ms)),
    el("td", { "data-label": "Duration" }, duration),
    el("td", { "data-label": "Recording" }, c.recording_status || ""),
  );
  return tr;
}

function render() {
  const focused = document.activeElement && document.activeElement.dataset
    ? document.activeElement.dataset.callSid : null;
  const rows = [...calls.values()]
    .filter((c) => !filter.value || c.status === filter.value)
    .sort((a, b) => b.created_at_ms - a.created_at_ms || (a.call_sid < b.call_sid ? 1 : -1))
    .map(row);
  tbody.replaceChildren(...rows);
  empty.hidden = rows.length > 0;
  if (focused) {
    const again = tbody.querySelector(`tr[data-call-sid="${focused}"]`);
    if (again) again.focus();
  }
}

liveCalls({
  onSnapshot: (list) => {
    calls.clear();
    for (const c of list) calls.set(c.call_sid, c);
    render();
  },
  onCall: (c) => {
    const known = calls.has(c.call_sid);
    calls.set(c.call_sid, c);
    render();
    if (!known) live.textContent = `Live: new call ${c.call_sid}`;
  },
  onState: (text) => {
    live.textContent = text;
  },
});
