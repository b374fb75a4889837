// The twiml-guard core (Rust, wasm32-wasip1) without wasm-bindgen: fetch or read the module,
// give it a stub for each WASI function it imports, and call its small C ABI. The same code
// runs in Node 20 and in browsers; nothing here needs node:wasi.

const WASI = "wasi_snapshot_preview1";
// WASI's ENOSYS: the core does no I/O, so any WASI call it makes (only std's panic path, which
// the core is written never to reach) is refused.
const ERRNO_NOSYS = 52;
const ACTIONS = { strip: 0, "start-recording": 1 };

/** Bytes of the module at `source` (a URL: file: in Node, anything fetch takes elsewhere). */
async function readModule(source) {
  const url = source instanceof URL ? source : new URL(String(source));
  if (url.protocol === "file:") {
    const { readFile } = await import("node:fs/promises");
    return readFile(url);
  }
  const response = await fetch(url);
  if (!response.ok) {
    throw new Error(`twiml-guard: cannot load ${url}: HTTP ${response.status}`);
  }
  return response.arrayBuffer();
}

/** One stub per WASI import; any other import means a module this loader does not know. */
function stubImports(module) {
  const wasi = {};
  for (const imp of WebAssembly.Module.imports(module)) {
    if (imp.module !== WASI || imp.kind !== "function") {
      throw new Error(`twiml-guard: unexpected wasm import ${imp.module}.${imp.name}`);
    }
    wasi[imp.name] =
      imp.name === "proc_exit"
        ? (code) => {
            throw new Error(`twiml-guard: the core exited with code ${code}`);
          }
        : () => ERRNO_NOSYS;
  }
  return { [WASI]: wasi };
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

function toBytes(input, what) {
  if (typeof input === "string") return encoder.encode(input);
  if (input instanceof Uint8Array) return input;
  throw new TypeError(`twiml-guard: ${what} must be a string or a Uint8Array`);
}

/**
 * Instantiate the core from `source` (bytes, or a URL) and return its functions.
 * @returns {Promise<import("./index.js").Core>}
 */
export async function loadCore(source) {
  const bytes =
    source instanceof Uint8Array || source instanceof ArrayBuffer ? source : await readModule(source);
  const module = await WebAssembly.compile(bytes);
  const instance = await WebAssembly.instantiate(module, stubImports(module));
  const ex = instance.exports;
  if (typeof ex._initialize === "function") ex._initialize();

  function put(slot, data) {
    const ptr = ex.tg_input(slot, data.length);
    if (ptr === 0 && data.length > 0) {
      throw new RangeError(`twiml-guard: input of ${data.length} bytes is too large`);
    }
    // The memory may have grown: take a fresh view every time.
    new Uint8Array(ex.memory.buffer, ptr, data.length).set(data);
  }

  function call(op, xml, ...args) {
    put(0, toBytes(xml, "the TwiML"));
    const len = op(...args);
    const out = new Uint8Array(ex.memory.buffer, ex.tg_output(), len);
    const value = JSON.parse(decoder.decode(out));
    if (value && typeof value.error === "string") throw new Error(`twiml-guard: ${value.error}`);
    return value;
  }

  return {
    lint: (xml) => call(ex.tg_lint, xml),
    analyze: (xml) => call(ex.tg_analyze, xml),
    sniff: (xml) => call(ex.tg_sniff, xml).twiml,
    rewrite(xml, options = {}) {
      const action = options.action ?? "strip";
      if (!Object.hasOwn(ACTIONS, action)) {
        throw new TypeError(`twiml-guard: action must be "strip" or "start-recording", not ${JSON.stringify(action)}`);
      }
      put(1, toBytes(options.recordingStatusCallback ?? "", "recordingStatusCallback"));
      return call(ex.tg_rewrite, xml, ACTIONS[action]);
    },
  };
}
