// Run by test/runtimes.test.js under Deno (kept out of test/, whose every file node --test runs):
// the package's web build on the seed, printed as JSON.
const [pkg, fixtures] = Deno.args.map((a) => new URL(a));
const { lint, guardResponse } = await import(new URL("web.js", pkg).href);
const seed = await Deno.readFile(new URL("seed_001.xml", fixtures));
const xml = { "content-type": "text/xml" };
const bytes = async (res) => Array.from(new Uint8Array(await res.arrayBuffer()));
const fixed = await guardResponse(new Response(seed, { headers: xml }));
const strict = await guardResponse(new Response(seed, { headers: xml }), { mode: "strict" });
console.log(
  JSON.stringify({
    lint: lint(seed),
    fixed: { header: fixed.headers.get("x-twiml-guard"), body: await bytes(fixed) },
    strict: { status: strict.status, body: await bytes(strict) },
  }),
);
