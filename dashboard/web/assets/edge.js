// The edge panel: the guard's counters and mode from /api/edge (the host reads Envoy's admin
// API), every 2 s while the page is visible. A failed read is shown, and the last numbers are
// marked stale rather than replaced by zeros.
import { api, el, showError } from "./common.js";

const MEANING = {
  inspected: "responses inspected (the sum of the next six)",
  clean: "clean TwiML, or XML that is not TwiML",
  rewritten: "conflicts rewritten (rewrite mode)",
  rejected: "conflicts refused (strict mode)",
  detected: "conflicts found and left alone (monitor mode)",
  oversize: "bodies over max_body_bytes",
  malformed: "malformed XML, corrupt gzip, unreadable encodings",
  ws_upgrades: "media WebSocket upgrades answered 101",
  signature_ok: "signed requests that passed the signature check",
  signature_rejected: "signed requests that failed it",
};
const PERIOD_MS = 2000;
const error = document.getElementById("edge-error");
const tbody = document.querySelector("#counters tbody");
const updated = document.getElementById("updated");

function render(stats) {
  document.getElementById("source").textContent = stats.source || "";
  document.getElementById("mode").textContent = stats.mode || "unknown (no guard configured yet)";
  document.getElementById("rules").textContent = stats.rules ?? "unknown";
  tbody.replaceChildren(...Object.keys(MEANING).map((name) => el("tr", { dataset: { counter: name } },
    el("th", { scope: "row" }, name),
    el("td", { id: `count-${name}`, class: "num" }, stats.counters[name] ?? "–"),
    el("td", {}, MEANING[name]))));
  updated.textContent = `Read at ${new Date().toLocaleTimeString()}`;
  document.body.classList.remove("stale");
}

async function refresh() {
  try {
    render(await api("/api/edge"));
    showError(error, null);
  } catch (e) {
    showError(error, e);
    document.body.classList.add("stale");
    updated.textContent = `Last read failed at ${new Date().toLocaleTimeString()}`;
  } finally {
    setTimeout(refresh, document.hidden ? PERIOD_MS * 5 : PERIOD_MS);
  }
}
refresh();
