// An Express (or Connect) middleware that applies the edge filter's verdict to the TwiML a route
// answers with, in process: for Node voice backends with no Envoy in front. The decisions (which
// responses are judged, gzip, the modes, the `x-twiml-guard` values and the rejection bodies)
// are the core's `Guard`, the same ones `guardResponse` makes for fetch-API runtimes.
"use strict";

const { Guard } = require("./index.cjs");

const HEADER = "x-twiml-guard";

/** A header's values as the filter reads them: a repeated header joined with ", ". */
function headerValue(res, name) {
  const value = res.getHeader(name);
  if (value === undefined) return undefined;
  return Array.isArray(value) ? value.join(", ") : String(value);
}

function chunkBytes(chunk, encoding) {
  if (chunk == null) return null;
  if (Buffer.isBuffer(chunk)) return chunk;
  if (chunk instanceof Uint8Array) return Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
  return Buffer.from(String(chunk), typeof encoding === "string" ? encoding : "utf8");
}

/** The response `outcome` asks for, sent with `end`; `held` is the body as the route wrote it. */
function send(res, end, outcome, held, cb) {
  res.setHeader(HEADER, outcome.header);
  if (outcome.body === undefined) return end(held, cb);
  const body = Buffer.from(outcome.body.buffer, outcome.body.byteOffset, outcome.body.byteLength);
  res.removeHeader("etag");
  if (outcome.status !== undefined) {
    res.statusCode = outcome.status;
    res.removeHeader("content-encoding");
    res.setHeader("content-type", "application/json");
  }
  res.setHeader("content-length", body.length);
  return end(body, cb);
}

/** The middleware: mount it before the routes that answer Twilio. */
function twimlGuard(options = {}) {
  const guard = new Guard(options);
  return function twimlGuardMiddleware(req, res, next) {
    if (req.method === "HEAD") return next();
    const original = { write: res.write, end: res.end, writeHead: res.writeHead };
    const chunks = [];
    let size = 0;
    // "undecided", then "buffering" (start.kind inspect or sniff), "passing", or "decided"
    // (the outcome is known from the headers and the body written is not sent).
    let state = "undecided";
    let start = null;

    const restore = () => {
      res.write = original.write;
      res.end = original.end;
      res.writeHead = original.writeHead;
    };
    const end = (body, cb) => original.end.call(res, body, cb);

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

    const passThrough = (label) => {
      restore();
      state = "passing";
      if (label) res.setHeader(HEADER, label);
      const held = Buffer.concat(chunks);
      chunks.length = 0;
      if (held.length > 0) original.write.call(res, held);
    };

    const begin = () => {
      if (state !== "undecided") return;
      start = guard.start(
        res.statusCode,
        headerValue(res, "content-type"),
        headerValue(res, "content-encoding"),
        headerValue(res, "content-length"),
      );
      if (start.kind === "pass") return passThrough(null);
      if (start.kind === "decided" && start.outcome.body === undefined) {
        return passThrough(start.outcome.header);
      }
      state = start.kind === "decided" ? "decided" : "buffering";
    };

    /** The body grew past maxBodyBytes: a page sniffed as not TwiML passes, anything else is judged (oversize). */
    const overflow = () => {
      const held = Buffer.concat(chunks);
      if (start.kind === "sniff" && guard.sniff(held, start.gzip, false) === "not_twiml") return passThrough(null);
      const outcome = guard.evaluate(held, start.gzip);
      if (outcome.body === undefined) return passThrough(outcome.header);
      start = { kind: "decided", outcome };
      state = "decided";
    };

    res.write = function write(chunk, encoding, cb) {
      begin();
      if (state === "passing") return res.write(chunk, encoding, cb);
      const bytes = chunkBytes(chunk, encoding);
      if (bytes && state === "buffering") {
        chunks.push(bytes);
        size += bytes.length;
        if (size > guard.maxBodyBytes) overflow();
      }
      const done = typeof encoding === "function" ? encoding : cb;
      if (typeof done === "function") process.nextTick(done);
      return true;
    };

    res.end = function endResponse(chunk, encoding, cb) {
      if (typeof chunk === "function") [cb, chunk, encoding] = [chunk, undefined, undefined];
      else if (typeof encoding === "function") [cb, encoding] = [encoding, undefined];
      begin();
      if (state === "passing") return res.end(chunk, encoding, cb);
      restore();
      if (state === "decided") return send(res, end, start.outcome, null, cb);
      const last = chunkBytes(chunk, encoding);
      if (last) chunks.push(last);
      const body = Buffer.concat(chunks);
      if (body.length === 0) return end(body, cb);
      if (start.kind === "sniff" && guard.sniff(body, start.gzip, true) === "not_twiml") {
        // Not TwiML (an HTML page): untouched, no header, as in the filter.
        return end(body, cb);
      }
      return send(res, end, guard.evaluate(body, start.gzip), body, cb);
    };

    next();
  };
}

module.exports = { twimlGuard };
