// The package's functions on small documents: fields, errors for bad arguments, and the same
// core loaded from bytes and over HTTP (the browser path: fetch, no file system).
import { test } from "node:test";
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { once } from "node:events";
import { readFileSync } from "node:fs";

import { analyze, lint, loadCore, rewrite, sniff } from "../index.js";
import { read, twimlDir } from "./helpers.js";

const SEED = read(new URL("seed_001.xml", twimlDir));

test("analyze gives the filter's verdict and the conflict's place", () => {
  const v = analyze(SEED);
  assert.equal(v.verdict, "conflict");
  assert.deepEqual(v.conflicts, [{ line: 3, column: 3, start: 52, end: 151 }]);
  assert.equal(v.malformed, null);
  assert.equal(analyze("<Response><Hangup/></Response>").verdict, "clean");
  const m = analyze("<Response><Record></Response>");
  assert.equal(m.verdict, "malformed");
  assert.equal(m.malformed.offset, 18);
});

test("lint reports codes, severities and spans", () => {
  const r = lint(SEED);
  assert.equal(r.verdict, "conflict");
  assert.deepEqual(
    r.diagnostics.map((d) => [d.code, d.severity, d.line, d.column]),
    [
      ["TG001", "error", 3, 3],
      ["TG002", "warning", 3, 3],
      ["TG005", "warning", 4, 3],
    ],
  );
  assert.equal(r.errors, 1);
  assert.equal(r.warnings, 2);
  assert.deepEqual(lint("<Response><Hangup/></Response>").diagnostics, []);
});

test("rewrite strips or starts a recording; clean input comes back as it is", () => {
  const strip = rewrite(SEED);
  assert.equal(strip.changed, true);
  assert.equal(strip.action, "strip");
  assert.deepEqual(Buffer.from(strip.twiml), read(new URL("seed_001.strip.xml", twimlDir)));
  const rec = rewrite(SEED, {
    action: "start-recording",
    recordingStatusCallback: "https://guard.example/recording-status?src=twiml-guard&v=1",
  });
  assert.deepEqual(Buffer.from(rec.twiml), read(new URL("seed_001.start-recording.xml", twimlDir)));
  const clean = "<Response><Say>hi</Say></Response>";
  assert.deepEqual(rewrite(clean), { verdict: "clean", action: "strip", changed: false, twiml: clean });
});

test("sniff tells TwiML from an HTML page", () => {
  assert.equal(sniff("<!DOCTYPE html><html><body>hi</body></html>"), false);
  assert.equal(sniff("\n<?xml version='1.0'?><Response/>"), true);
});

test("bad arguments are TypeErrors, not wrong answers", () => {
  assert.throws(() => lint(42), TypeError);
  assert.throws(() => rewrite(SEED, { action: "delete" }), /action must be "strip" or "start-recording"/);
});

test("a second copy loads from bytes and over HTTP with fetch, and agrees", async () => {
  const wasm = readFileSync(new URL("../twiml_guard.wasm", import.meta.url));
  const fromBytes = await loadCore(wasm);
  assert.deepEqual(fromBytes.lint(SEED), lint(SEED));
  const server = createServer((req, res) => {
    res.writeHead(200, { "content-type": "application/wasm" });
    res.end(wasm);
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  try {
    const { port } = server.address();
    const overHttp = await loadCore(new URL(`http://127.0.0.1:${port}/twiml_guard.wasm`));
    assert.deepEqual(overHttp.lint(SEED), lint(SEED));
    assert.deepEqual(overHttp.rewrite(SEED), rewrite(SEED));
  } finally {
    server.close();
  }
});

test("a module asking for imports the loader does not know is refused", async () => {
  // (module (import "env" "f" (func)))
  const bytes = new Uint8Array([
    0, 97, 115, 109, 1, 0, 0, 0, 1, 4, 1, 96, 0, 0, 2, 9, 1, 3, 101, 110, 118, 1, 102, 0, 0,
  ]);
  await assert.rejects(loadCore(bytes), /unexpected wasm import env\.f/);
});

test("every export has a type declaration", () => {
  const dts = readFileSync(new URL("../index.d.ts", import.meta.url), "utf8");
  for (const name of ["lint", "analyze", "rewrite", "sniff", "loadCore"]) {
    assert.match(dts, new RegExp(`export declare function ${name}\\(`));
  }
  const express = readFileSync(new URL("../express.d.ts", import.meta.url), "utf8");
  assert.match(express, /export declare function twimlGuard\(/);
});
