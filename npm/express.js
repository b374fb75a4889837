// An Express (or Connect) middleware that applies the edge filter's verdict to the TwiML a route
// answers with, in process: for Node voice backends with no Envoy in front. Same modes, same
// `x-twiml-guard` header values and the same strict-mode rejection body as the filter
// (docs/filter.md); docs/lint.md lists where it differs (no gzip decoding, no counters).
import { analyze, rewrite, sniff } from "./index.js";

const HEADER = "x-twiml-guard";
const XML_TYPES = new Set(["text/xml", "application/xml"]);
const MODES = new Set(["rewrite", "strict", "monitor"]);
const ACTIONS = new Set(["strip", "start-recording"]);
const POLICIES = new Set(["pass", "reject"]);

function options(given) {
  const o = {
    mode: "rewrite",
    action: "strip",
    recordingStatusCallback: undefined,
    onMalformed: "pass",
    rejectStatus: 502,
    maxBodyBytes: 262144,
    contentTypes: ["text/xml", "application/xml", "text/html"],
    ...given,
  };
  const bad = (key, want) => {
    throw new TypeError(`twimlGuard: ${key} must be ${want}, not ${JSON.stringify(o[key])}`);
  };
  if (!MODES.has(o.mode)) bad("mode", '"rewrite", "strict" or "monitor"');
  if (!ACTIONS.has(o.action)) bad("action", '"strip" or "start-recording"');
  if (!POLICIES.has(o.onMalformed)) bad("onMalformed", '"pass" or "reject"');
  if (!Number.isInteger(o.rejectStatus) || o.rejectStatus < 100 || o.rejectStatus > 599) {
    bad("rejectStatus", "an integer 100..599");
  }
  if (!Number.isInteger(o.maxBodyBytes) || o.maxBodyBytes < 1) bad("maxBodyBytes", "a positive integer");
  if (!Array.isArray(o.contentTypes) || o.contentTypes.length === 0) bad("contentTypes", "a non-empty array");
  o.contentTypes = o.contentTypes.map((t) => String(t).toLowerCase());
  return o;
}

function mediaType(res) {
  const value = res.getHeader("content-type");
  return String(Array.isArray(value) ? value[0] : value ?? "")
    .split(";")[0]
    .trim()
    .toLowerCase();
}

function isXml(type) {
  return XML_TYPES.has(type) || type.endsWith("+xml");
}

/** The filter's `reject_style: status` body, keys in the same (sorted) order. */
function rejectBody(problem) {
  return `${JSON.stringify(problem)}\n`;
}

function conflictBody(verdict) {
  const [verb, noun] = verdict.blocks.split("/");
  return rejectBody({
    blocks: verdict.blocks,
    error: "twiml_conflict",
    message: `a <Record> verb before <${verb}><${noun}> blocks the real-time stream`,
    records: verdict.conflicts.map((c) => ({ column: c.column, end: c.end, line: c.line, start: c.start })),
  });
}

function malformedBody(m) {
  return rejectBody({
    column: m.column,
    error: "twiml_malformed",
    line: m.line,
    message: `malformed XML: ${m.reason}`,
    offset: m.offset,
  });
}

/**
 * What to send for a whole candidate body: `{ label, body?, status?, type? }`; no `body` means
 * the original bytes go out.
 */
function decide(o, body) {
  const verdict = analyze(body);
  switch (verdict.verdict) {
    case "clean":
    case "not_twiml":
      return { label: "clean" };
    case "malformed":
      if (o.mode !== "monitor" && o.onMalformed === "reject") {
        return { label: "malformed", reject: malformedBody(verdict.malformed) };
      }
      return { label: "malformed" };
    default:
      break;
  }
  if (o.mode === "monitor") return { label: "detected" };
  if (o.mode === "strict") return { label: "rejected", reject: conflictBody(verdict) };
  try {
    const out = rewrite(body, { action: o.action, recordingStatusCallback: o.recordingStatusCallback });
    return { label: "rewritten", body: Buffer.from(out.twiml, "utf8") };
  } catch (e) {
    // A conflict left in place would loop the call; refusing is the safer failure.
    return {
      label: "rejected",
      reject: rejectBody({ error: "twiml_guard_error", message: `rewrite failed: ${e.message}` }),
    };
  }
}

function chunkBytes(chunk, encoding) {
  if (chunk == null) return null;
  if (Buffer.isBuffer(chunk)) return chunk;
  if (chunk instanceof Uint8Array) return Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
  return Buffer.from(String(chunk), typeof encoding === "string" ? encoding : "utf8");
}

/** The middleware: mount it before the routes that answer Twilio. */
export function twimlGuard(given = {}) {
  const o = options(given);
  return function twimlGuardMiddleware(req, res, next) {
    if (req.method === "HEAD") return next();
    const original = { write: res.write, end: res.end, writeHead: res.writeHead };
    const chunks = [];
    let size = 0;
    let state = "undecided"; // then "buffering" or "passing"

    const restore = () => {
      res.write = original.write;
      res.end = original.end;
      res.writeHead = original.writeHead;
    };

    // Held until the verdict, like the filter's held headers: the status and headers may still
    // change (strict mode), and content-length must match the body that goes out.
    res.writeHead = function writeHead(status, reason, headers) {
      if (typeof reason !== "string") [headers, reason] = [reason, undefined];
      res.statusCode = status;
      if (reason !== undefined) res.statusMessage = reason;
      if (Array.isArray(headers)) {
        for (let i = 0; i + 1 < headers.length; i += 2) res.setHeader(headers[i], headers[i + 1]);
      } else if (headers) {
        for (const [k, v] of Object.entries(headers)) res.setHeader(k, v);
      }
      return res;
    };

    const isCandidate = () => {
      const status = res.statusCode;
      if (status < 200 || status > 299 || status === 204 || status === 205) return false;
      const type = mediaType(res);
      if (!o.contentTypes.includes(type)) return false;
      return true;
    };

    const passThrough = (label) => {
      restore();
      state = "passing";
      if (label && !res.headersSent) res.setHeader(HEADER, label);
      const held = Buffer.concat(chunks);
      chunks.length = 0;
      if (held.length > 0) original.write.call(res, held);
    };

    const start = () => {
      if (state !== "undecided") return;
      if (!isCandidate()) return passThrough(null);
      const coding = String(res.getHeader("content-encoding") ?? "identity").trim().toLowerCase();
      if (coding !== "" && coding !== "identity") {
        // The filter decodes gzip; here an encoded body is one the guard cannot read.
        return passThrough("malformed");
      }
      const declared = Number(res.getHeader("content-length"));
      if (Number.isFinite(declared) && declared > o.maxBodyBytes) return passThrough("oversize");
      state = "buffering";
    };

    res.write = function write(chunk, encoding, cb) {
      start();
      if (state === "passing") return res.write(chunk, encoding, cb);
      const bytes = chunkBytes(chunk, encoding);
      if (bytes) {
        chunks.push(bytes);
        size += bytes.length;
      }
      if (size > o.maxBodyBytes) passThrough("oversize");
      const done = typeof encoding === "function" ? encoding : cb;
      if (typeof done === "function") process.nextTick(done);
      return true;
    };

    res.end = function end(chunk, encoding, cb) {
      if (typeof chunk === "function") [cb, chunk, encoding] = [chunk, undefined, undefined];
      else if (typeof encoding === "function") [cb, encoding] = [encoding, undefined];
      start();
      if (state === "passing") return res.end(chunk, encoding, cb);
      const last = chunkBytes(chunk, encoding);
      if (last) chunks.push(last);
      const body = Buffer.concat(chunks);
      restore();
      if (body.length > o.maxBodyBytes) {
        res.setHeader(HEADER, "oversize");
        return res.end(body, cb);
      }
      const type = mediaType(res);
      if (!isXml(type) && !sniff(body)) {
        // Not TwiML (an HTML page): untouched, no header, as in the filter.
        return res.end(body, cb);
      }
      const d = decide(o, body);
      res.setHeader(HEADER, d.label);
      if (d.reject !== undefined) {
        const out = Buffer.from(d.reject, "utf8");
        res.statusCode = o.rejectStatus;
        res.removeHeader("etag");
        res.setHeader("content-type", "application/json");
        res.setHeader("content-length", out.length);
        return res.end(out, cb);
      }
      if (d.body !== undefined) {
        res.removeHeader("etag");
        res.setHeader("content-length", d.body.length);
        return res.end(d.body, cb);
      }
      return res.end(body, cb);
    };

    next();
  };
}
