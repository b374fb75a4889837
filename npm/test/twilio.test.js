// TwiML written by the real `twilio` npm package, linted: the legacy pattern (record(), then
// connect().stream()) and the mistakes Twilio's own builder lets through.
import { test } from "node:test";
import assert from "node:assert/strict";

import twilio from "twilio";
import { lint, rewrite } from "../index.js";

const { VoiceResponse } = twilio.twiml;

function legacy() {
  const vr = new VoiceResponse();
  vr.record({ maxLength: 600, playBeep: false, timeout: 3, transcribe: false });
  const connect = vr.connect({ action: "https://voice.example.com/webhook/stream_ended" });
  const stream = connect.stream({ url: "wss://voice.example.com/ws/twilio-media", track: "inbound_track" });
  stream.parameter({ name: "CallSid", value: "CA0123456789abcdef0123456789abcdef" });
  return vr.toString();
}

const codes = (xml) => lint(xml).diagnostics.map((d) => d.code);

test("record() before connect().stream() is TG001, TG002 and TG005", () => {
  const xml = legacy();
  assert.ok(xml.startsWith('<?xml version="1.0" encoding="UTF-8"?><Response><Record '), xml);
  const r = lint(xml);
  assert.equal(r.verdict, "conflict");
  assert.deepEqual(codes(xml), ["TG001", "TG002", "TG005"]);
  const tg001 = r.diagnostics[0];
  assert.equal(xml.slice(tg001.start, tg001.end).startsWith("<Record "), true);
  assert.equal(xml.slice(tg001.start, tg001.end).endsWith("/>"), true);
});

test("the rewritten document lints clean", () => {
  const fixed = rewrite(legacy()).twiml;
  assert.deepEqual(lint(fixed).diagnostics, []);
  assert.equal(fixed, legacy().replace(/<Record [^>]*\/>/, ""));
  const recorded = rewrite(legacy(), { action: "start-recording" }).twiml;
  assert.deepEqual(lint(recorded).diagnostics, []);
  assert.match(recorded, /<Response><Start><Recording channels="dual"\/><\/Start><Connect /);
});

test("stream urls twilio's builder accepts but Twilio refuses", () => {
  const vr = new VoiceResponse();
  vr.connect({ action: "https://a.example/end" }).stream({ url: "ws://media.example/ws?tenant=1&lang=he" });
  const r = lint(vr.toString());
  assert.deepEqual(
    r.diagnostics.map((d) => [d.code, d.twilio_error]),
    [
      ["TG003", 31922],
      ["TG004", 31920],
    ],
  );
  const q = r.diagnostics[1];
  assert.equal(vr.toString().slice(q.start, q.end), "?tenant=1&amp;lang=he");
});

test("connect().stream() without an action goes on with the next verb; verbs after hangup() never run", () => {
  const vr = new VoiceResponse();
  vr.connect().stream({ url: "wss://media.example/ws" });
  vr.say("after the stream");
  vr.hangup();
  vr.say("never said");
  assert.deepEqual(codes(vr.toString()), ["TG005"]);
});

test("voicemail built with record({action}) is clean", () => {
  const vr = new VoiceResponse();
  vr.say("Leave a message.");
  vr.record({ action: "https://voice.example.com/after-recording", maxLength: 120 });
  vr.hangup();
  assert.deepEqual(codes(vr.toString()), []);
});
