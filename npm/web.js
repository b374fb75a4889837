// twiml-guard for browsers (a bundler or a plain <script type="module">) and Deno: the core built
// with wasm-bindgen for the web, its module fetched from beside this file.
import init, { lint, analyze, rewrite, sniff, Guard } from "./pkg/twiml_guard.js";
import { makeGuardResponse } from "./guard-response.js";

await init({ module_or_path: new URL("./pkg/twiml_guard_bg.wasm", import.meta.url) });

export { lint, analyze, rewrite, sniff, Guard };
export const guardResponse = makeGuardResponse(Guard);
