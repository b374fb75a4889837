// The package where it runs outside Node: Deno (the `deno` npm package's binary) importing web.js
// as a Deno program would, and Cloudflare Workers (workerd, through Miniflare) importing
// workerd.js with the module bundled as a compiled WebAssembly.Module, as Wrangler does. Each
// must give Node's answers: the seed fixed to its hand fix, strict replies byte for byte.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

import { Miniflare } from "miniflare";
import { lint } from "../index.js";
import { lintDir, read, twimlDir } from "./helpers.js";

const require = createRequire(import.meta.url);
const SEED = read(new URL("seed_001.xml", twimlDir));
const STRIPPED = read(new URL("seed_001.strip.xml", twimlDir));
const STRICT_REPLY = read(new URL("seed_001.strict.json", lintDir));
const pkg = new URL("../", import.meta.url);

test("Deno: web.js gives Node's lint and guardResponse answers", async () => {
  const deno = require.resolve("deno/bin.cjs");
  const script = fileURLToPath(new URL("../test-runtimes/deno.mjs", import.meta.url));
  const { stdout } = await promisify(execFile)(
    process.execPath,
    [deno, "run", `--allow-read=${fileURLToPath(new URL("../", pkg))}`, script, pkg.href, twimlDir.href],
    { timeout: 60_000, env: { ...process.env, DENO_NO_UPDATE_CHECK: "1", NO_COLOR: "1" } },
  );
  const r = JSON.parse(stdout);
  assert.deepEqual(r.lint, lint(SEED));
  assert.equal(r.fixed.header, "rewritten; blocks=Connect/Stream");
  assert.deepEqual(Buffer.from(r.fixed.body), STRIPPED);
  assert.equal(r.strict.status, 502);
  assert.deepEqual(Buffer.from(r.strict.body), STRICT_REPLY);
});

test("Workers: workerd.js in workerd (Miniflare) gives Node's answers", async () => {
  const mf = new Miniflare({
    modules: true,
    scriptPath: fileURLToPath(new URL("../test-runtimes/worker.js", import.meta.url)),
    modulesRoot: fileURLToPath(pkg),
    // As Wrangler bundles: .js files are ES modules, a .wasm import a compiled module.
    modulesRules: [
      { type: "ESModule", include: ["**/*.js"] },
      { type: "CompiledWasm", include: ["**/*.wasm"] },
    ],
    compatibilityDate: "2025-01-01",
  });
  try {
    const post = (path) => mf.dispatchFetch(`http://voice.example${path}`, { method: "POST", body: SEED });
    const fixed = await post("/rewrite");
    assert.equal(fixed.headers.get("x-twiml-guard"), "rewritten; blocks=Connect/Stream");
    assert.deepEqual(Buffer.from(await fixed.arrayBuffer()), STRIPPED);
    const strict = await post("/strict");
    assert.equal(strict.status, 502);
    assert.deepEqual(Buffer.from(await strict.arrayBuffer()), STRICT_REPLY);
    const linted = await post("/lint");
    assert.deepEqual(await linted.json(), lint(SEED));
  } finally {
    await mf.dispose();
  }
});
