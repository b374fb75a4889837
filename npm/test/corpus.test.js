// The npm package against the CLI over the whole fixture corpus: tests/fixtures/lint/corpus.json
// is `twiml-guard lint --format json` (checked against the core and the filter by
// cli/tests/lint_cli.rs); the package must give the same verdict and the same diagnostics, and
// rewrite every conflict exactly as the core's goldens.
import { test } from "node:test";
import assert from "node:assert/strict";

import { analyze, guardResponse, lint, rewrite } from "../index.js";
import { lintDir, read, readText, repo, twimlDir } from "./helpers.js";

const CALLBACK = "https://guard.example/recording-status?src=twiml-guard&v=1";
const corpus = JSON.parse(readText(new URL("corpus.json", lintDir)));

test("the corpus is all there", () => {
  assert.ok(corpus.length >= 35, String(corpus.length));
});

for (const entry of corpus) {
  test(`lint ${entry.file} as the CLI does`, () => {
    const { file, fixed, ...expected } = entry;
    assert.equal(fixed, 0);
    assert.deepEqual(lint(read(new URL(file, repo))), expected);
  });
}

const manifest = readText(new URL("manifest.txt", twimlDir))
  .split("\n")
  .filter((l) => l.trim() && !l.startsWith("#"))
  .map((l) => l.trim().split(/\s+/))
  .filter(([, verdict]) => verdict === "conflict")
  .map(([file]) => file);

for (const file of manifest) {
  test(`rewrite ${file} to the core's goldens`, () => {
    const body = read(new URL(file, twimlDir));
    const stem = file.replace(/\.xml$/, "");
    const strip = rewrite(body, { action: "strip" });
    assert.deepEqual(Buffer.from(strip.twiml), read(new URL(`${stem}.strip.xml`, twimlDir)));
    const rec = rewrite(body, { action: "start-recording", recordingStatusCallback: CALLBACK });
    assert.deepEqual(Buffer.from(rec.twiml), read(new URL(`${stem}.start-recording.xml`, twimlDir)));
  });
}

// The public-pattern corpus (twiml/fixtures/corpus/manifest.json, written from Twilio's order of
// execution, the same file the core, the CLI and the filter in Envoy are held to): the verdict,
// the stream blocked, each conflict's place and both rewrites byte for byte, from analyze(),
// rewrite() and guardResponse() alike.
const corpusDir = new URL("corpus/", twimlDir);
const publicCorpus = JSON.parse(readText(new URL("manifest.json", corpusDir)));

test("the public-pattern corpus is all there", () => {
  assert.ok(publicCorpus.documents.length >= 20, String(publicCorpus.documents.length));
  assert.ok(publicCorpus.documents.some((d) => d.verdict === "conflict"));
});

for (const doc of publicCorpus.documents) {
  test(`public pattern ${doc.file}: ${doc.shape}`, async () => {
    const body = read(new URL(doc.file, corpusDir));
    const a = analyze(body);
    assert.equal(a.verdict, doc.verdict);
    assert.equal(a.blocks, doc.blocks);
    assert.deepEqual(a.conflicts.map((c) => `${c.line}:${c.column}`), doc.conflicts);
    const strip = read(new URL(doc.strip, corpusDir));
    const recording = read(new URL(doc.start_recording, corpusDir));
    assert.deepEqual(Buffer.from(rewrite(body).twiml), strip);
    const callback = publicCorpus.recording_status_callback;
    assert.deepEqual(
      Buffer.from(rewrite(body, { action: "start-recording", recordingStatusCallback: callback }).twiml),
      recording,
    );
    const guarded = await guardResponse(new Response(body, { headers: { "content-type": "text/xml" } }), {
      action: "start-recording",
      recordingStatusCallback: callback,
    });
    const header = doc.verdict === "conflict" ? `rewritten; blocks=${doc.blocks}` : "clean";
    assert.equal(guarded.headers.get("x-twiml-guard"), header);
    assert.deepEqual(Buffer.from(await guarded.arrayBuffer()), recording);
  });
}
