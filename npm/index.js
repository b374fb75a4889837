// twiml-guard for JavaScript: the same lint rules, verdicts and rewrites as the Envoy filter and
// the `twiml-guard` CLI, from one Rust core compiled to WebAssembly. Loaded once, at import.
import { loadCore } from "./loader.js";

const core = await loadCore(new URL("./twiml_guard.wasm", import.meta.url));

/** Every lint rule over a TwiML document. */
export const lint = core.lint;
/** The edge filter's verdict for a document. */
export const analyze = core.analyze;
/** Rewrite a conflicting document so its <Record> no longer blocks the <Stream>. */
export const rewrite = core.rewrite;
/** Whether a whole body opens with a <Response> element (how text/html answers are told apart). */
export const sniff = core.sniff;
export { loadCore };
