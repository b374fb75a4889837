// guardResponse under Node's own fetch-API Request and Response: a Next.js-style route handler
// answering Twilio with the seed gets the fixed TwiML back; strict, monitor, gzip, oversize and
// malformed bodies get the filter's header values and replies byte for byte; a web page streams
// through as it comes.
import { test } from "node:test";
import assert from "node:assert/strict";
import { gunzipSync, gzipSync } from "node:zlib";
import { createRequire } from "node:module";

import twilio from "twilio";
import { guardResponse, rewrite } from "../index.js";
import { lintDir, read, twimlDir } from "./helpers.js";

const require = createRequire(import.meta.url);
const SEED = read(new URL("seed_001.xml", twimlDir));
const STRIPPED = read(new URL("seed_001.strip.xml", twimlDir));
const STRICT_REPLY = read(new URL("seed_001.strict.json", lintDir));
const MALFORMED = read(new URL("malformed_mismatched.xml", twimlDir));
const MALFORMED_REPLY = read(new URL("malformed_mismatched.reject.json", lintDir));
const FALLBACK = "<Response><Say>We are sorry, this line is not available.</Say><Hangup/></Response>";
const XML = { "content-type": "text/xml" };

/** A Next.js App Router handler (app/voice/route.js) answering Twilio's voice webhook. */
async function POST(request) {
  const form = await request.formData();
  assert.equal(form.get("CallSid"), "CA0123456789abcdef0123456789abcdef");
  return new Response(SEED, { headers: { "content-type": "text/xml; charset=utf-8", etag: '"v1"' } });
}

const webhook = () =>
  new Request("https://voice.example.com/voice", {
    method: "POST",
    body: new URLSearchParams({ CallSid: "CA0123456789abcdef0123456789abcdef" }),
  });

const bytes = async (res) => Buffer.from(await res.arrayBuffer());

test("a Next.js-style handler returning the seed gets the fixed TwiML back", async () => {
  const res = await guardResponse(await POST(webhook()));
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("x-twiml-guard"), "rewritten; blocks=Connect/Stream");
  assert.equal(res.headers.get("content-type"), "text/xml; charset=utf-8");
  assert.equal(res.headers.get("etag"), null);
  const body = await bytes(res);
  assert.deepEqual(body, STRIPPED);
  assert.equal(Number(res.headers.get("content-length")), body.length);
});

test("start-recording with a callback, as the filter writes it", async () => {
  const callback = "https://guard.example/recording-status?src=twiml-guard&v=1";
  const res = await guardResponse(new Response(SEED, { headers: XML }), {
    action: "start-recording",
    recordingStatusCallback: callback,
  });
  assert.deepEqual(await bytes(res), read(new URL("seed_001.start-recording.xml", twimlDir)));
});

test("TwiML built by the twilio library is fixed too", async () => {
  const vr = new twilio.twiml.VoiceResponse();
  vr.record({ maxLength: 600 });
  vr.connect({ action: "https://a.example/end" }).stream({ url: "wss://media.example/ws" });
  const res = await guardResponse(new Response(vr.toString(), { headers: XML }));
  assert.equal(await res.text(), rewrite(vr.toString()).twiml);
});

test("strict: the filter's reply, byte for byte; twiml style: the fallback with the status kept", async () => {
  const res = await guardResponse(new Response(SEED, { headers: XML }), { mode: "strict" });
  assert.equal(res.status, 502);
  assert.equal(res.headers.get("x-twiml-guard"), "rejected; blocks=Connect/Stream");
  assert.equal(res.headers.get("content-type"), "application/json");
  assert.deepEqual(await bytes(res), STRICT_REPLY);
  const fallback = await guardResponse(new Response(SEED, { status: 201, headers: XML }), {
    mode: "strict",
    rejectStyle: "twiml",
  });
  assert.equal(fallback.status, 201);
  assert.equal(fallback.headers.get("x-twiml-guard"), "rejected; blocks=Connect/Stream");
  assert.equal(await fallback.text(), FALLBACK);
});

test("monitor flags and passes; clean TwiML passes byte-identical", async () => {
  const res = await guardResponse(new Response(SEED, { headers: XML }), { mode: "monitor" });
  assert.equal(res.headers.get("x-twiml-guard"), "detected; blocks=Connect/Stream");
  assert.deepEqual(await bytes(res), SEED);
  const clean = await guardResponse(new Response(STRIPPED, { headers: XML }), { mode: "strict" });
  assert.equal(clean.status, 200);
  assert.equal(clean.headers.get("x-twiml-guard"), "clean");
  assert.deepEqual(await bytes(clean), STRIPPED);
});

test("gzip is decoded, judged and the rewrite compressed again", async () => {
  const headers = { ...XML, "content-encoding": "gzip" };
  const res = await guardResponse(new Response(gzipSync(SEED), { headers }));
  assert.equal(res.headers.get("x-twiml-guard"), "rewritten; blocks=Connect/Stream");
  assert.equal(res.headers.get("content-encoding"), "gzip");
  const wire = await bytes(res);
  assert.equal(Number(res.headers.get("content-length")), wire.length);
  assert.deepEqual(gunzipSync(wire), STRIPPED);
  const strict = await guardResponse(new Response(gzipSync(SEED), { headers }), { mode: "strict" });
  assert.equal(strict.status, 502);
  assert.equal(strict.headers.get("content-encoding"), null);
  assert.deepEqual(await bytes(strict), STRICT_REPLY);
});

test("corrupt gzip and unreadable codings are malformed, refused on request", async () => {
  const corrupt = () => new Response(Buffer.from("\x1f\x8b\x08\x00garbage"), { headers: { ...XML, "content-encoding": "gzip" } });
  const passed = await guardResponse(corrupt());
  assert.equal(passed.headers.get("x-twiml-guard"), "malformed");
  assert.deepEqual(await bytes(passed), Buffer.from("\x1f\x8b\x08\x00garbage"));
  const refused = await guardResponse(corrupt(), { onMalformed: "reject" });
  assert.equal(refused.status, 502);
  const problem = JSON.parse(await refused.text());
  assert.equal(problem.error, "twiml_malformed");
  assert.match(problem.message, /^gzip: /);
  const br = await guardResponse(new Response(SEED, { headers: { ...XML, "content-encoding": "br" } }), {
    mode: "strict",
    onMalformed: "reject",
  });
  assert.equal(br.status, 502);
  assert.deepEqual(JSON.parse(await br.text()), {
    column: null,
    error: "twiml_malformed",
    line: null,
    message: 'content-encoding "br" cannot be inspected (only gzip and deflate, at most twice, and identity)',
    offset: null,
  });
});

test("malformed XML passes by default and gets the filter's reply on request", async () => {
  const passed = await guardResponse(new Response(MALFORMED, { headers: XML }));
  assert.equal(passed.headers.get("x-twiml-guard"), "malformed");
  assert.deepEqual(await bytes(passed), MALFORMED);
  const refused = await guardResponse(new Response(MALFORMED, { headers: XML }), { onMalformed: "reject" });
  assert.deepEqual(await bytes(refused), MALFORMED_REPLY);
});

test("over maxBodyBytes: oversize, by declared length and by streamed size", async () => {
  const declared = await guardResponse(
    new Response(SEED, { headers: { ...XML, "content-length": String(SEED.length) } }),
    { mode: "strict", maxBodyBytes: 100 },
  );
  assert.equal(declared.headers.get("x-twiml-guard"), "oversize");
  assert.deepEqual(await bytes(declared), SEED);
  const streamed = await guardResponse(new Response(SEED, { headers: XML }), {
    maxBodyBytes: 100,
    onOversize: "reject",
  });
  assert.equal(streamed.status, 502);
  assert.deepEqual(JSON.parse(await streamed.text()), {
    error: "twiml_oversize",
    max_body_bytes: 100,
    message: `body of ${SEED.length} bytes exceeds max_body_bytes 100`,
  });
});

/** A body whose second half is produced only once the first has been consumed downstream. */
function trickle(first, rest) {
  let consumed;
  const firstTaken = new Promise((resolve) => (consumed = resolve));
  let step = 0;
  const stream = new ReadableStream({
    async pull(controller) {
      step += 1;
      if (step === 1) return controller.enqueue(first);
      if (step === 2) {
        await firstTaken;
        return controller.enqueue(rest);
      }
      controller.close();
    },
  });
  return { stream, consumed };
}

test("a web page sent as text/html streams through untouched, with no header", async () => {
  const head = new TextEncoder().encode("<!DOCTYPE html><html><body>");
  const tail = new TextEncoder().encode("<Record>not TwiML</Record></body></html>");
  const { stream, consumed } = trickle(head, tail);
  const original = new Response(stream, { headers: { "content-type": "text/html", "content-length": "67" } });
  // A guard that buffered the page would wait for the tail, which waits for the head to arrive.
  const res = await guardResponse(original, { mode: "strict" });
  assert.equal(res.headers.get("x-twiml-guard"), null);
  assert.equal(res.headers.get("content-length"), "67");
  const reader = res.body.getReader();
  assert.deepEqual((await reader.read()).value, head);
  consumed();
  assert.deepEqual((await reader.read()).value, tail);
  assert.equal((await reader.read()).done, true);
});

test("JSON, errors, 204 and bodiless responses are the very same object", async () => {
  for (const res of [
    Response.json({ twiml: SEED.toString() }),
    new Response(SEED, { status: 500, headers: XML }),
    new Response(null, { status: 204, headers: XML }),
    new Response(null, { headers: XML }),
  ]) {
    assert.equal(await guardResponse(res, { mode: "strict" }), res);
  }
});

test("bad options and arguments are TypeErrors", async () => {
  await assert.rejects(guardResponse(new Response(SEED), { mode: "strcit" }), {
    name: "TypeError",
    message: "twiml-guard: mode: unknown variant `strcit`, expected one of `rewrite`, `strict`, `monitor`",
  });
  await assert.rejects(guardResponse(new Response(SEED), { mdoe: "strict" }), /options: unknown field `mdoe`, expected one of `mode`, `action`/);
  await assert.rejects(guardResponse("<Response/>"), { name: "TypeError", message: "twiml-guard: guardResponse needs a Response" });
});

test("require() users get guardResponse too", async () => {
  const cjs = require("../index.cjs");
  const res = await cjs.guardResponse(new Response(SEED, { headers: XML }));
  assert.deepEqual(await bytes(res), STRIPPED);
});
