// The dashboard in a real browser: Debian's chromium driven by playwright-core, each page
// scanned by axe-core. Started by tests/tests/end_to_end/dashboard.rs with the stack running
// (Envoy with the guard, the legacy backend, the host service with an api_token and the Envoy
// admin URL). Line protocol with the Rust test: this script prints `READY` once the calls list is
// open, the test then places a call through Envoy with twilio-sim and writes `CALL <CallSid>`.
// Every wait has a deadline; any failure prints `FAIL <check>: <why>` and exits 1.
import { chromium } from "playwright-core";
import { readFileSync, mkdirSync } from "node:fs";
import { createRequire } from "node:module";
import { createInterface } from "node:readline";
import { join } from "node:path";

const require = createRequire(import.meta.url);
const AXE = readFileSync(require.resolve("axe-core/axe.min.js"), "utf8");
const BASE = need("DASHBOARD_URL");
const TOKEN = need("API_TOKEN");
const SEED = readFileSync(need("SEED_TWIML"), "utf8");
const SHOTS = need("SCREENSHOT_DIR");
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
/** Whisper on a loaded 2-core machine: the call's pipeline may take this long. */
const PIPELINE_MS = 150_000;
const WAIT_MS = 20_000;

function need(name) {
  const v = process.env[name];
  if (!v) fail("setup", `${name} is not set`);
  return v;
}

function fail(check, why) {
  console.log(`FAIL ${check}: ${why}`);
  process.exit(1);
}

function check(cond, what) {
  if (!cond) throw new Error(what);
}

const started = Date.now();
const timings = [];
async function step(name, fn) {
  const t = Date.now();
  try {
    await fn();
  } catch (e) {
    fail(name, e && e.stack ? e.stack : String(e));
  }
  timings.push([name, Date.now() - t]);
  console.log(`ok ${name} (${Date.now() - t} ms)`);
}

const stdin = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
async function readLine(timeoutMs) {
  let timer;
  const timeout = new Promise((_, rej) => {
    timer = setTimeout(() => rej(new Error(`no line on stdin within ${timeoutMs} ms`)), timeoutMs);
  });
  try {
    const { value, done } = await Promise.race([stdin.next(), timeout]);
    if (done) throw new Error("stdin closed");
    return value.trim();
  } finally {
    clearTimeout(timer);
  }
}

/** axe-core on the page as it is now: no serious or critical violation. */
async function axe(page, name) {
  // Evaluated through the DevTools protocol, which the page's CSP does not govern.
  await page.evaluate(AXE);
  const violations = await page.evaluate(async () => {
    const r = await window.axe.run(document, { resultTypes: ["violations"] });
    return r.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map((n) => n.target.join(" ")) }));
  });
  const bad = violations.filter((v) => v.impact === "serious" || v.impact === "critical");
  check(bad.length === 0, `${name}: axe found ${JSON.stringify(bad, null, 1)}`);
  return violations.length;
}

async function shot(page, name) {
  await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
}

mkdirSync(SHOTS, { recursive: true });
const browser = await chromium.launch({
  executablePath: CHROMIUM,
  // As root (CI) Chromium's sandbox cannot start; the pages are the project's own.
  args: ["--no-sandbox", "--autoplay-policy=no-user-gesture-required"],
});
const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
const page = await context.newPage();
page.setDefaultTimeout(WAIT_MS);
const pageErrors = [];
page.on("pageerror", (e) => pageErrors.push(String(e)));
// Refused requests (the 401s this test asks for) are logged by Chromium as failed loads.
page.on("console", (m) => {
  if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) pageErrors.push(m.text());
});

await step("signed out: pages answer the sign-in page, the API 401", async () => {
  for (const path of ["/dashboard/", "/dashboard/edge", "/dashboard/playground",
    "/dashboard/calls/CA0123456789abcdef0123456789abcdef"]) {
    const r = await fetch(BASE + path, { redirect: "manual" });
    const body = await r.text();
    check(r.status === 401, `${path}: status ${r.status}`);
    check(body.includes('action="/dashboard/signin"'), `${path}: not the sign-in page`);
  }
  for (const path of ["/api/calls", "/api/events", "/api/edge"]) {
    const r = await fetch(BASE + path);
    check(r.status === 401, `${path}: status ${r.status}`);
    check((await r.json()).error.code === "unauthorized", `${path}: not unauthorized`);
  }
  const r = await fetch(BASE + "/api/calls", { headers: { cookie: "tg_session=" + "0".repeat(64) } });
  check(r.status === 401, `a made-up session: ${r.status}`);
});

await step("sign in: a wrong token is refused, the right one sets the session cookie", async () => {
  const resp = await page.goto(BASE + "/dashboard/");
  check(resp.status() === 401, `status ${resp.status()}`);
  await page.getByRole("heading", { name: "Sign in" }).waitFor();
  await axe(page, "sign-in");
  await shot(page, "signin");
  await page.getByLabel("API token").fill("not-the-token-at-all");
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.locator("#signin-error").waitFor();
  await page.getByLabel("API token").fill(TOKEN);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("heading", { name: "Calls" }).waitFor();
  const cookie = (await context.cookies()).find((c) => c.name === "tg_session");
  check(cookie, "no tg_session cookie");
  check(cookie.httpOnly && cookie.sameSite === "Strict" && cookie.path === "/",
    `cookie attributes ${JSON.stringify(cookie)}`);
  check(/^[0-9a-f]{64}$/.test(cookie.value), "session id is not 32 random bytes in hex");
  const status = await page.evaluate(async () => (await fetch("/api/calls")).status);
  check(status === 200, `the API with the cookie: ${status}`);
});

let rewrittenBefore = 0;
await step("edge panel reads Envoy's counters", async () => {
  await page.goto(BASE + "/dashboard/edge");
  await page.waitForFunction(() => /^\d+$/.test(document.getElementById("count-rewritten")?.textContent || ""));
  rewrittenBefore = Number(await page.textContent("#count-rewritten"));
  check((await page.textContent("#mode")) === "rewrite", `mode ${await page.textContent("#mode")}`);
  await axe(page, "edge");
});

let sid = "";
await step("a call through Envoy appears in the list without a reload", async () => {
  await page.goto(BASE + "/dashboard/");
  await page.waitForFunction(() => document.getElementById("live").textContent.startsWith("Live"));
  await page.evaluate(() => { window.__sameDocument = true; });
  await axe(page, "calls list");
  console.log("READY");
  const line = await readLine(60_000);
  check(line.startsWith("CALL CA"), `unexpected line ${line}`);
  sid = line.slice(5);
  await page.locator(`tr[data-call-sid="${sid}"]`).waitFor();
  check(await page.evaluate(() => window.__sameDocument === true), "the page was reloaded");
});

await step("the edge panel's rewritten count went up", async () => {
  const edge = await context.newPage();
  await edge.goto(BASE + "/dashboard/edge");
  await edge.waitForFunction((before) => Number(document.getElementById("count-rewritten")?.textContent) > before,
    rewrittenBefore, { timeout: WAIT_MS });
  await shot(edge, "edge");
  await edge.close();
});

await step("the row opens with the keyboard; the call completes on the page", async () => {
  await page.locator(`tr[data-call-sid="${sid}"]`).waitFor();
  await page.waitForFunction((s) => document.querySelector(`tr[data-call-sid="${s}"]`)?.dataset.status === "completed",
    sid, { timeout: PIPELINE_MS });
  await shot(page, "calls");
  await page.focus(`tr[data-call-sid="${sid}"]`);
  await page.keyboard.press("Enter");
  await page.waitForURL(`**/dashboard/calls/${sid}`);
  await page.waitForFunction(() => document.body.dataset.callStatus === "completed");
  await page.locator("#segments button").first().waitFor();
});

await step("the recording plays: canplay, and its duration is the recording's", async () => {
  await page.waitForFunction(() => document.getElementById("player").readyState >= 3);
  const apiMs = await page.evaluate(async (s) => (await (await fetch(`/api/calls/${s}`)).json()).recording.duration_ms, sid);
  const duration = await page.evaluate(() => document.getElementById("player").duration);
  check(Math.abs(duration - apiMs / 1000) < 0.02, `audio ${duration} s, recording ${apiMs} ms`);
  await page.locator("#waves").waitFor();
});

await step("clicking a transcript segment seeks the audio to its start", async () => {
  const segs = page.locator("#segments button");
  const n = await segs.count();
  const last = segs.nth(n - 1);
  const start = Number(await last.getAttribute("data-start"));
  // Away from it first, so landing on its start is the click's doing.
  await page.evaluate(() => { const p = document.getElementById("player"); p.currentTime = p.duration - 0.05; });
  await last.click();
  const t = await page.evaluate(() => document.getElementById("player").currentTime);
  check(Math.abs(t - start) < 0.01, `currentTime ${t}, segment start ${start}`);
  // Keyboard: the first segment is a button too.
  await segs.first().focus();
  await page.keyboard.press("Enter");
  const first = Number(await segs.first().getAttribute("data-start"));
  const t2 = await page.evaluate(() => document.getElementById("player").currentTime);
  check(Math.abs(t2 - first) < 0.01, `after Enter: currentTime ${t2}, first segment ${first}`);
  await axe(page, "call");
  await shot(page, "call");
});

await step("the playground shows TG001 for the seed TwiML", async () => {
  await page.goto(BASE + "/dashboard/playground");
  await page.getByLabel("TwiML", { exact: true }).fill(SEED);
  await page.locator('#diagnostics li[data-code="TG001"]').waitFor();
  const verdict = await page.textContent("#verdict");
  check(verdict.startsWith("conflict"), `verdict ${verdict}`);
  const out = await page.textContent("#rewrite");
  check(out.includes("<Connect") && !out.includes("<Record"), `rewrite ${out}`);
  await axe(page, "playground");
  await shot(page, "playground");
});

await step("phone width: no sideways scrolling", async () => {
  await page.setViewportSize({ width: 390, height: 844 });
  for (const path of ["/dashboard/", `/dashboard/calls/${sid}`, "/dashboard/edge", "/dashboard/playground"]) {
    await page.goto(BASE + path);
    await page.locator("h1").waitFor();
    const wide = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    check(wide <= 1, `${path}: ${wide} px wider than the screen`);
  }
  await page.goto(BASE + "/dashboard/");
  await page.locator(`tr[data-call-sid="${sid}"]`).waitFor();
  await shot(page, "calls-phone");
});

await step("sign out ends the session", async () => {
  await page.getByRole("button", { name: "Sign out" }).click();
  await page.getByRole("heading", { name: "Sign in" }).waitFor();
  const status = await page.evaluate(async () => (await fetch("/api/calls")).status);
  check(status === 401, `the API after sign-out: ${status}`);
});

await browser.close();
if (pageErrors.length) fail("page errors", pageErrors.join("\n"));
console.log(`PASS ${timings.length} checks in ${Date.now() - started} ms: ` +
  timings.map(([n, ms]) => `${ms}`).join("/"));
process.exit(0);
