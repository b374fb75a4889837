// twiml-guard for Node's require(): the core built with wasm-bindgen for Node (loaded
// synchronously), the same lint rules, verdicts and rewrites as the Envoy filter and the CLI.
"use strict";

const core = require("./pkg/node/twiml_guard.js");

// guardResponse lives in an ES module (it runs in browsers too): loaded on its first call.
let guardResponse;

module.exports = {
  lint: core.lint,
  analyze: core.analyze,
  rewrite: core.rewrite,
  sniff: core.sniff,
  Guard: core.Guard,
  async guardResponse(response, options) {
    guardResponse ??= import("./guard-response.js").then((m) => m.makeGuardResponse(core.Guard));
    return (await guardResponse)(response, options);
  },
};
