// The middleware in a real Express app on a real socket, answering signed Twilio webhooks (the
// `twilio` package's own webhook() check) with TwiML built by its VoiceResponse: the seed comes
// back fixed, clean TwiML byte-identical, strict mode refused with the filter's exact reply.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { once } from "node:events";

import express from "express";
import twilio from "twilio";
import { twimlGuard } from "../express.js";
import { lint, rewrite } from "../index.js";
import { lintDir, read, twimlDir } from "./helpers.js";

const AUTH_TOKEN = "12345";
const SEED = read(new URL("seed_001.xml", twimlDir));
const STRICT_REPLY = read(new URL("seed_001.strict.json", lintDir));
const MALFORMED = read(new URL("malformed_mismatched.xml", twimlDir));
const MALFORMED_REPLY = read(new URL("malformed_mismatched.reject.json", lintDir));
const CLEAN =
  '<?xml version="1.0" encoding="UTF-8"?><Response><Connect action="https://a.example/end"><Stream url="wss://media.example/ws"/></Connect></Response>';
const HTML = "<!DOCTYPE html><html><body><Record>not TwiML</Record></body></html>";

function legacyTwiml() {
  const vr = new twilio.twiml.VoiceResponse();
  vr.record({ maxLength: 600, playBeep: false });
  vr.connect({ action: "https://voice.example.com/webhook/stream_ended" }).stream({
    url: "wss://voice.example.com/ws/twilio-media",
  });
  return vr.toString();
}

function app(options) {
  const a = express();
  a.use(express.urlencoded({ extended: false }));
  a.use(twimlGuard(options));
  const voice = twilio.webhook(AUTH_TOKEN, { protocol: "http" });
  a.post("/voice", voice, (req, res) => res.type("text/xml").send(legacyTwiml()));
  a.post("/seed", voice, (req, res) => res.type("text/xml").send(SEED));
  a.post("/clean", voice, (req, res) => res.type("text/xml").send(CLEAN));
  a.post("/broken", voice, (req, res) => res.type("application/xml").send(MALFORMED));
  // Flask-style: TwiML sent as text/html, written in pieces with an explicit writeHead.
  a.post("/chunked", voice, (req, res) => {
    res.writeHead(200, { "Content-Type": "text/html; charset=utf-8" });
    const xml = legacyTwiml();
    res.write(xml.slice(0, 60));
    res.write(Buffer.from(xml.slice(60)));
    res.end();
  });
  a.get("/page", (req, res) => res.type("text/html").send(HTML));
  a.get("/json", (req, res) => res.json({ twiml: SEED.toString() }));
  return a;
}

const servers = {};

async function listen(name, options) {
  const server = app(options).listen(0, "127.0.0.1");
  await once(server, "listening");
  servers[name] = server;
}

before(async () => {
  await listen("rewrite", { mode: "rewrite" });
  await listen("recording", {
    mode: "rewrite",
    action: "start-recording",
    recordingStatusCallback: "https://guard.example/recording-status",
  });
  await listen("strict", { mode: "strict" });
  await listen("monitor", { mode: "monitor" });
  await listen("rejectMalformed", { mode: "rewrite", onMalformed: "reject" });
  await listen("tiny", { mode: "strict", maxBodyBytes: 100 });
});

after(() => Object.values(servers).forEach((s) => s.close()));

/** A webhook as Twilio sends it: form fields, signed with the auth token. */
async function call(name, path, method = "POST") {
  const url = `http://127.0.0.1:${servers[name].address().port}${path}`;
  const params = { CallSid: "CA0123456789abcdef0123456789abcdef", From: "+15005550006", To: "+15005550001" };
  const init = { method };
  if (method === "POST") {
    init.body = new URLSearchParams(params);
    init.headers = { "x-twilio-signature": twilio.getExpectedTwilioSignature(AUTH_TOKEN, url, params) };
  }
  const res = await fetch(url, init);
  const body = Buffer.from(await res.arrayBuffer());
  return { res, body };
}

test("forged and unsigned webhooks are refused by twilio.webhook(), not answered", async () => {
  const url = `http://127.0.0.1:${servers.rewrite.address().port}/voice`;
  const body = () => new URLSearchParams({ CallSid: "CA1" });
  const forged = await fetch(url, { method: "POST", body: body(), headers: { "x-twilio-signature": "AAAA" } });
  assert.equal(forged.status, 403);
  assert.equal(forged.headers.get("x-twiml-guard"), null);
  const unsigned = await fetch(url, { method: "POST", body: body() });
  assert.equal(unsigned.status, 400);
});

test("rewrite: the twilio-built seed comes back fixed", async () => {
  const { res, body } = await call("rewrite", "/voice");
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("x-twiml-guard"), "rewritten; blocks=Connect/Stream");
  assert.equal(body.toString(), rewrite(legacyTwiml()).twiml);
  assert.equal(Number(res.headers.get("content-length")), body.length);
  assert.equal(res.headers.get("etag"), null);
  assert.deepEqual(lint(body).diagnostics, []);
});

test("rewrite: the incident's seed comes back as its team's hand fix", async () => {
  const { res, body } = await call("rewrite", "/seed");
  assert.equal(res.headers.get("x-twiml-guard"), "rewritten; blocks=Connect/Stream");
  assert.deepEqual(body, read(new URL("seed_001.strip.xml", twimlDir)));
});

test("rewrite start-recording keeps the recording without blocking", async () => {
  const { res, body } = await call("recording", "/voice");
  assert.equal(res.headers.get("x-twiml-guard"), "rewritten; blocks=Connect/Stream");
  assert.match(
    body.toString(),
    /^<\?xml version="1.0" encoding="UTF-8"\?><Response><Start><Recording recordingStatusCallback="https:\/\/guard.example\/recording-status" channels="dual"\/><\/Start><Connect /,
  );
});

test("clean TwiML passes byte-identical in every mode", async () => {
  for (const mode of ["rewrite", "strict", "monitor"]) {
    const { res, body } = await call(mode, "/clean");
    assert.equal(res.status, 200, mode);
    assert.equal(res.headers.get("x-twiml-guard"), "clean", mode);
    assert.equal(body.toString(), CLEAN, mode);
    assert.equal(Number(res.headers.get("content-length")), Buffer.byteLength(CLEAN), mode);
  }
});

test("strict: the seed is refused with the filter's reply, byte for byte", async () => {
  const { res, body } = await call("strict", "/seed");
  assert.equal(res.status, 502);
  assert.equal(res.headers.get("x-twiml-guard"), "rejected; blocks=Connect/Stream");
  assert.equal(res.headers.get("content-type"), "application/json");
  assert.deepEqual(body, STRICT_REPLY);
});

test("monitor: the conflict is flagged and passed unchanged", async () => {
  const { res, body } = await call("monitor", "/voice");
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("x-twiml-guard"), "detected; blocks=Connect/Stream");
  assert.equal(body.toString(), legacyTwiml());
});

test("text/html TwiML written in chunks after writeHead is judged and rewritten", async () => {
  const { res, body } = await call("rewrite", "/chunked");
  assert.equal(res.headers.get("x-twiml-guard"), "rewritten; blocks=Connect/Stream");
  assert.equal(body.toString(), rewrite(legacyTwiml()).twiml);
});

test("an HTML page and JSON are not touched and get no header", async () => {
  for (const [path, type] of [
    ["/page", "text/html"],
    ["/json", "application/json"],
  ]) {
    const { res, body } = await call("strict", path, "GET");
    assert.equal(res.status, 200, path);
    assert.equal(res.headers.get("x-twiml-guard"), null, path);
    assert.ok(res.headers.get("content-type").startsWith(type), path);
    if (path === "/page") assert.equal(body.toString(), HTML);
    else assert.deepEqual(JSON.parse(body), { twiml: SEED.toString() });
  }
});

test("malformed TwiML passes by default and is refused with the filter's reply on request", async () => {
  const passed = await call("rewrite", "/broken");
  assert.equal(passed.res.status, 200);
  assert.equal(passed.res.headers.get("x-twiml-guard"), "malformed");
  assert.deepEqual(passed.body, MALFORMED);
  const refused = await call("rejectMalformed", "/broken");
  assert.equal(refused.res.status, 502);
  assert.equal(refused.res.headers.get("x-twiml-guard"), "malformed");
  assert.deepEqual(refused.body, MALFORMED_REPLY);
});

test("a body over maxBodyBytes passes unjudged, even in strict mode", async () => {
  for (const path of ["/seed", "/chunked"]) {
    const { res, body } = await call("tiny", path);
    assert.equal(res.status, 200, path);
    assert.equal(res.headers.get("x-twiml-guard"), "oversize", path);
    assert.equal(body.toString(), path === "/seed" ? SEED.toString() : legacyTwiml(), path);
  }
});

test("bad options are refused when the middleware is made", () => {
  assert.throws(() => twimlGuard({ mode: "strcit" }), {
    name: "TypeError",
    message: "twiml-guard: mode: unknown variant `strcit`, expected one of `rewrite`, `strict`, `monitor`",
  });
  assert.throws(() => twimlGuard({ action: "delete" }), /^TypeError: twiml-guard: action: unknown variant `delete`/);
  assert.throws(() => twimlGuard({ maxBodyBytes: 0 }), /^TypeError: twiml-guard: maxBodyBytes: /);
});
