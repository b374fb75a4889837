// The TwiML playground: each edit is linted and rewritten by the core (POST /api/lint), the
// newest answer wins (older requests are aborted).
import { api, el, showError } from "./common.js";

// The seed: the `twilio` library's TwiML for vr.record(...) followed by Connect().stream(...).
const EXAMPLE = `<?xml version="1.0" encoding="UTF-8"?>
<Response>
  <Record maxLength="600" playBeep="false" recordingTrack="inbound" timeout="3" transcribe="false" />
  <Connect action="https://voice.example.com/webhook/stream_ended">
    <Stream track="inbound_track" url="wss://voice.example.com/ws/twilio-media" />
  </Connect>
</Response>
`;
const DEBOUNCE_MS = 150;
const input = document.getElementById("twiml");
const action = document.getElementById("action");
const verdict = document.getElementById("verdict");
const diags = document.getElementById("diagnostics");
const rewrite = document.getElementById("rewrite");
const error = document.getElementById("pg-error");

let timer = null;
let inflight = null;

function render(out) {
  const l = out.lint;
  verdict.replaceChildren(el("span", { class: `verdict verdict-${l.verdict}` }, l.verdict),
    ` · ${l.errors} error${l.errors === 1 ? "" : "s"}, ${l.warnings} warning${l.warnings === 1 ? "" : "s"}`);
  document.body.dataset.verdict = l.verdict;
  diags.replaceChildren(...l.diagnostics.map((d) => el("li", { class: `diag diag-${d.severity}`, dataset: { code: d.code } },
    el("strong", {}, d.code), ` ${d.severity} at line ${d.line}, column ${d.column}: `, d.message,
    d.help ? el("div", { class: "help" }, d.help) : null)));
  if (!l.diagnostics.length) diags.replaceChildren(el("li", { class: "muted" }, "No diagnostics."));
  const r = out.rewrite;
  rewrite.textContent = r.error ? `rewrite failed: ${r.error}` : (r.changed ? r.twiml : "(unchanged: nothing to rewrite)");
}

async function check() {
  if (inflight) inflight.abort();
  if (!input.value.trim()) {
    verdict.textContent = "Nothing to check yet.";
    diags.replaceChildren();
    rewrite.textContent = "";
    return;
  }
  const ctl = new AbortController();
  inflight = ctl;
  try {
    const out = await api(`/api/lint?action=${encodeURIComponent(action.value)}`, {
      method: "POST",
      headers: { "content-type": "application/xml" },
      body: input.value,
      signal: ctl.signal,
    });
    if (inflight === ctl) {
      render(out);
      showError(error, null);
    }
  } catch (e) {
    if (e.name !== "AbortError") showError(error, e);
  }
}

function schedule() {
  clearTimeout(timer);
  timer = setTimeout(check, DEBOUNCE_MS);
}

input.addEventListener("input", schedule);
action.addEventListener("change", check);
document.getElementById("load-example").addEventListener("click", () => {
  input.value = EXAMPLE;
  check();
});
