// twiml-guard for Cloudflare Workers: there the module cannot be fetched or compiled at run time,
// so it is imported as a compiled WebAssembly.Module (how Wrangler bundles a .wasm import).
import { initSync, lint, analyze, rewrite, sniff, Guard } from "./pkg/twiml_guard.js";
import wasm from "./pkg/twiml_guard_bg.wasm";
import { makeGuardResponse } from "./guard-response.js";

initSync({ module: wasm });

export { lint, analyze, rewrite, sniff, Guard };
export const guardResponse = makeGuardResponse(Guard);
