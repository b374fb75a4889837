// The package's functions on small documents: fields, errors for bad arguments, the same core
// through require(), and the generated declarations.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";

import { analyze, lint, rewrite, sniff } from "../index.js";
import { read, twimlDir } from "./helpers.js";

const require = createRequire(import.meta.url);
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
  assert.throws(() => lint(42), { name: "TypeError", message: "twiml-guard: the TwiML must be a string or a Uint8Array" });
  assert.throws(() => rewrite(SEED, { action: "delete" }), /rewrite options: unknown variant `delete`, expected `strip` or `start-recording`/);
  assert.throws(() => rewrite(SEED, { acton: "strip" }), /unknown field `acton`/);
});

test("require() gets the same functions as import", () => {
  const cjs = require("../index.cjs");
  assert.deepEqual(cjs.lint(SEED), lint(SEED));
  assert.deepEqual(cjs.rewrite(SEED), rewrite(SEED));
  assert.equal(typeof require("../express.cjs").twimlGuard, "function");
});

test("every export has a type declaration, generated from the Rust types", () => {
  const dts = readFileSync(new URL("../pkg/node/twiml_guard.d.ts", import.meta.url), "utf8");
  for (const name of ["lint", "analyze", "rewrite", "sniff"]) {
    assert.match(dts, new RegExp(`export function ${name}\\(xml: string \\| Uint8Array`));
  }
  for (const type of ["LintReport", "Diagnostic", "Analysis", "RewriteResult", "GuardOptions", "GuardOutcome"]) {
    assert.match(dts, new RegExp(`export (interface|type) ${type}\\b`));
  }
  assert.match(dts, /export type VerdictName = "clean" \| "conflict" \| "not_twiml" \| "malformed";/);
  const index = readFileSync(new URL("../index.d.ts", import.meta.url), "utf8");
  assert.match(index, /export declare function guardResponse\(/);
  const express = readFileSync(new URL("../express.d.ts", import.meta.url), "utf8");
  assert.match(express, /export declare function twimlGuard\(/);
});
