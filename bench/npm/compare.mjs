// The npm package against an earlier build of it, in one Node process: packed tarball and module
// sizes, and the time of lint() on the seed and on a 100 KiB document, the two packages taking
// turns so both see the same machine. Usage: node bench/npm/compare.mjs BEFORE_DIR AFTER_DIR
// (each an unpacked package: package.json, its files, and the .tgz beside it or inside).
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";

const [beforeDir, afterDir] = process.argv.slice(2).map((d) => resolve(d));
if (!beforeDir || !afterDir) {
  console.error("usage: node bench/npm/compare.mjs BEFORE_DIR AFTER_DIR");
  process.exit(2);
}

const SEED = readFileSync(new URL("../../twiml/fixtures/seed_001.xml", import.meta.url));

/** A 100 KiB voice menu with the seed's blocking <Record>: every rule runs over all of it. */
function big() {
  const lines = ['<?xml version="1.0" encoding="UTF-8"?>', "<Response>", '  <Record maxLength="600"/>'];
  for (let i = 0; lines.join("\n").length < 100 * 1024 - 200; i++) {
    lines.push(`  <Say voice="alice">Menu line ${i}: press ${i % 10} for the department you want.</Say>`);
  }
  lines.push('  <Connect action="https://a.example/end"><Stream url="wss://media.example/ws"/></Connect>');
  lines.push("</Response>");
  return Buffer.from(lines.join("\n"));
}
const BIG = big();

function tarball(dir) {
  for (const d of [dir, join(dir, "..")]) {
    const tgz = readdirSync(d).find((f) => f.endsWith(".tgz"));
    if (tgz) return statSync(join(d, tgz)).size;
  }
  throw new Error(`no .tgz in or beside ${dir}`);
}

function modules(dir) {
  const found = [];
  const walk = (d) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      if (e.name === "node_modules" || e.name === "crate" || e.name === "test") continue;
      if (e.isDirectory()) walk(join(d, e.name));
      else if (e.name.endsWith(".wasm")) found.push(statSync(join(d, e.name)).size);
    }
  };
  walk(dir);
  return found.reduce((a, b) => a + b, 0);
}

/** Median microseconds of `fn` over `rounds` rounds of `n` calls. */
function time(fn, n, rounds) {
  const per = [];
  for (let r = 0; r < rounds; r++) {
    const t = process.hrtime.bigint();
    for (let i = 0; i < n; i++) fn();
    per.push(Number(process.hrtime.bigint() - t) / 1000 / n);
  }
  per.sort((a, b) => a - b);
  return per[Math.floor(per.length / 2)];
}

const packages = {};
for (const [name, dir] of [["before", beforeDir], ["after", afterDir]]) {
  const pkg = await import(pathToFileURL(join(dir, "index.js")).href);
  packages[name] = { dir, lint: pkg.lint, seed: [], big: [] };
}
const [b, a] = [packages.before, packages.after];
// Same answer first: a faster wrong answer is no result.
const same = (x) => JSON.stringify(b.lint(x)) === JSON.stringify(a.lint(x));
if (!same(SEED) || !same(BIG)) throw new Error("the two packages disagree on lint()");

for (let turn = 0; turn < 5; turn++) {
  for (const p of turn % 2 ? [a, b] : [b, a]) {
    p.seed.push(time(() => p.lint(SEED), 2000, 7));
    p.big.push(time(() => p.lint(BIG), 20, 7));
  }
}
const median = (xs) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)];
const rows = [
  ["packed tarball (bytes)", tarball(b.dir), tarball(a.dir)],
  ["WebAssembly module (bytes)", modules(b.dir), modules(a.dir)],
  [`lint() of the seed (${SEED.length} B), µs`, median(b.seed), median(a.seed)],
  [`lint() of a ${(BIG.length / 1024).toFixed(0)} KiB document, µs`, median(b.big), median(a.big)],
];
console.log(`node ${process.version}`);
console.log("| | before | after | after / before |");
console.log("|---|---:|---:|---:|");
for (const [what, x, y] of rows) {
  const f = (v) => (Number.isInteger(v) ? v.toLocaleString("en") : v.toFixed(1));
  console.log(`| ${what} | ${f(x)} | ${f(y)} | ${(y / x).toFixed(2)} |`);
}
