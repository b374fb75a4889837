// The browser build (web.js) in Debian's chromium, driven by playwright-core: a plain
// <script type="module"> served over HTTP imports the package as a browser would, with no
// bundler and no file system, and must agree with Node on lint and on guardResponse (plain,
// strict and gzip), under the browser's own fetch-API Response.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { once } from "node:events";
import { readFile } from "node:fs/promises";
import { gunzipSync, gzipSync } from "node:zlib";

import { chromium } from "playwright-core";
import { lint } from "../index.js";
import { lintDir, read, twimlDir } from "./helpers.js";

const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const SEED = read(new URL("seed_001.xml", twimlDir));
const STRIPPED = read(new URL("seed_001.strip.xml", twimlDir));
const STRICT_REPLY = read(new URL("seed_001.strict.json", lintDir));
const TYPES = { ".js": "text/javascript", ".wasm": "application/wasm", ".html": "text/html" };

const PAGE = `<!DOCTYPE html><html><head><title>twiml-guard</title></head><body>
<script type="module">
try {
const { lint, guardResponse } = await import("/web.js");
const seed = await (await fetch("/seed.xml")).text();
const gz = new Uint8Array(await (await fetch("/seed.xml.gz")).arrayBuffer());
const bytes = async (res) => Array.from(new Uint8Array(await res.arrayBuffer()));
const xml = { "content-type": "text/xml" };
const fixed = await guardResponse(new Response(seed, { headers: xml }));
const strict = await guardResponse(new Response(seed, { headers: xml }), { mode: "strict" });
const zipped = await guardResponse(new Response(gz, { headers: { ...xml, "content-encoding": "gzip" } }));
window.result = {
  lint: lint(seed),
  fixed: { label: fixed.headers.get("x-twiml-guard"), body: await bytes(fixed) },
  strict: { status: strict.status, label: strict.headers.get("x-twiml-guard"), body: await bytes(strict) },
  zipped: { encoding: zipped.headers.get("content-encoding"), body: await bytes(zipped) },
};
} catch (e) {
  window.result = { error: String(e && e.stack || e) };
}
</script></body></html>`;

let server;
let browser;

before(async () => {
  const root = new URL("../", import.meta.url);
  server = createServer(async (req, res) => {
    const path = new URL(req.url, "http://x").pathname;
    const send = (type, body) => res.writeHead(200, { "content-type": type }).end(body);
    if (path === "/") return send("text/html", PAGE);
    if (path === "/seed.xml") return send("text/xml", SEED);
    if (path === "/seed.xml.gz") return send("application/octet-stream", gzipSync(SEED));
    // Only what the browser build needs: web.js, guard-response.js and pkg/ (not pkg/node/).
    if (!/^\/(web\.js|guard-response\.js|pkg\/[\w.]+)$/.test(path)) return res.writeHead(404).end();
    try {
      send(TYPES[path.slice(path.lastIndexOf("."))], await readFile(new URL(`.${path}`, root)));
    } catch {
      res.writeHead(404).end();
    }
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  // As root (CI) Chromium's sandbox cannot start; the page is the project's own.
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] });
});

after(async () => {
  await browser?.close();
  server?.close();
});

test("a plain <script type=module> gets Node's answers from the browser build", async () => {
  const page = await browser.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(`http://127.0.0.1:${server.address().port}/`);
  await page.waitForFunction(() => window.result !== undefined, null, { timeout: 30_000 });
  const r = await page.evaluate(() => window.result);
  assert.deepEqual([r.error, errors], [undefined, []]);
  assert.deepEqual(r.lint, lint(SEED));
  assert.equal(r.fixed.label, "rewritten; blocks=Connect/Stream");
  assert.deepEqual(Buffer.from(r.fixed.body), STRIPPED);
  assert.deepEqual([r.strict.status, r.strict.label], [502, "rejected; blocks=Connect/Stream"]);
  assert.deepEqual(Buffer.from(r.strict.body), STRICT_REPLY);
  assert.equal(r.zipped.encoding, "gzip");
  assert.deepEqual(gunzipSync(Buffer.from(r.zipped.body)), STRIPPED);
});
