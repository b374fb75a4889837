// Types of the twiml-guard package: the core's functions, results and options are declared by
// wasm-bindgen from the Rust types (pkg/node/twiml_guard.d.ts); guardResponse is JavaScript.
import type { ActionName, GuardOptions } from "./pkg/node/twiml_guard.js";

export * from "./pkg/node/twiml_guard.js";
/** `strip` or `start-recording` (the name the package's earlier declarations used). */
export type RewriteAction = ActionName;

/**
 * The edge filter's guard for a fetch-API `Response` (Next.js, Deno, Workers, Bun, Hono): the
 * same modes, `x-twiml-guard` values and rejection bodies. A body that is not TwiML streams
 * through untouched.
 */
export declare function guardResponse(response: Response, options?: GuardOptions): Promise<Response>;
