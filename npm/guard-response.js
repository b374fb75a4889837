// guardResponse: the edge filter's guard for runtimes that answer with a fetch-API `Response`
// (Next.js route handlers, Deno, Workers, Bun, Hono). The core's `Guard` decides, as it does for
// the Express middleware; this file only moves bytes: it reads no more of a body than a decision
// needs, and a body that is not TwiML streams through as it came.

const HEADER = "x-twiml-guard";

function concat(chunks, size) {
  if (chunks.length === 1) return chunks[0];
  const out = new Uint8Array(size);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

/** The rest of a body: the chunks already read, then whatever the reader still has. */
function resume(held, reader) {
  let i = 0;
  return new ReadableStream({
    async pull(controller) {
      if (i < held.length) return controller.enqueue(held[i++]);
      const { done, value } = await reader.read();
      if (done) controller.close();
      else controller.enqueue(value);
    },
    cancel: (reason) => reader.cancel(reason),
  });
}

function init(response, headers, status = response.status) {
  return { status, statusText: status === response.status ? response.statusText : "", headers };
}

/** `response` as `outcome` says, with `body` (a stream or bytes) when its own bytes go out. */
function apply(response, outcome, body) {
  const headers = new Headers(response.headers);
  headers.set(HEADER, outcome.header);
  if (outcome.body === undefined) return new Response(body, init(response, headers));
  if (body instanceof ReadableStream) body.cancel().catch(() => {});
  if (outcome.status !== undefined) {
    // A rejection, as the filter's local reply: its own status, type and body, nothing else.
    const reply = new Headers({ "content-type": "application/json", [HEADER]: outcome.header });
    reply.set("content-length", String(outcome.body.length));
    return new Response(outcome.body, init(response, reply, outcome.status));
  }
  headers.delete("etag");
  headers.set("content-length", String(outcome.body.length));
  return new Response(outcome.body, init(response, headers));
}

/** Reads the body while `more(held, size)` asks for more; returns what was read. */
async function readWhile(reader, more) {
  const chunks = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return { chunks, size, done: true };
    chunks.push(value);
    size += value.length;
    if (!more(chunks, size)) return { chunks, size, done: false };
  }
}

async function judge(guard, response) {
  if (!(response instanceof Response)) {
    throw new TypeError("twiml-guard: guardResponse needs a Response");
  }
  if (response.body === null) return response;
  const h = response.headers;
  const get = (name) => h.get(name) ?? undefined;
  const start = guard.start(response.status, get("content-type"), get("content-encoding"), get("content-length"));
  if (start.kind === "pass") return response;
  if (start.kind === "decided") return apply(response, start.outcome, response.body);
  if (response.bodyUsed) throw new TypeError("twiml-guard: the response's body was already read");
  const reader = response.body.getReader();
  const limit = guard.maxBodyBytes;
  let sniff = start.kind === "sniff" ? "need_more" : "twiml";
  const read = await readWhile(reader, (chunks, size) => {
    if (size > limit) return false;
    if (sniff === "need_more") sniff = guard.sniff(concat(chunks, size), start.gzip, false);
    return sniff !== "not_twiml";
  });
  const held = concat(read.chunks, read.size);
  // No body after all: nothing to judge (the filter sees the end of the stream with the headers).
  if (read.done && read.size === 0) return new Response(held, init(response, new Headers(h)));
  if (read.done && sniff === "need_more") sniff = guard.sniff(held, start.gzip, true);
  if (sniff === "not_twiml") {
    // Not TwiML (a web page): untouched, no header, as in the filter.
    return new Response(read.done ? held : resume(read.chunks, reader), init(response, new Headers(h)));
  }
  const outcome = guard.evaluate(held, start.gzip);
  return apply(response, outcome, read.done ? held : resume(read.chunks, reader));
}

/** guardResponse for one build of the core (`Guard` from it). */
export function makeGuardResponse(Guard) {
  return async function guardResponse(response, options = {}) {
    const guard = new Guard(options);
    try {
      return await judge(guard, response);
    } finally {
      guard.free();
    }
  };
}
