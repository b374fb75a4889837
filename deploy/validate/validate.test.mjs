// The manifest check must pass on deploy/ as shipped and fail, naming the problem, on each kind of
// mistake it exists to catch: a misspelt field, a wrong type in a CRD, a plugin configuration the
// filter refuses, a host configuration the service refuses, a grace period shorter than the drain.

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, "../..");
const validate = join(here, "validate.mjs");

function check(files) {
  try {
    const out = execFileSync(process.execPath, [validate, ...files], {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "pipe"],
    });
    return { code: 0, out };
  } catch (e) {
    return { code: e.status, out: `${e.stdout}${e.stderr}` };
  }
}

// A copy of a shipped manifest with one edit, in a temp dir.
function edited(path, from, to) {
  const text = readFileSync(join(root, path), "utf8");
  assert.ok(text.includes(from), `${path} no longer contains ${JSON.stringify(from)}`);
  const dir = mkdtempSync(join(tmpdir(), "manifest-"));
  const file = join(dir, path.split("/").pop());
  writeFileSync(file, text.replace(from, to));
  return { file, done: () => rmSync(dir, { recursive: true, force: true }) };
}

function expectFailure(path, from, to, ...expected) {
  const { file, done } = edited(path, from, to);
  try {
    const r = check([file]);
    assert.equal(r.code, 1, r.out);
    for (const e of expected) assert.match(r.out, e);
  } finally {
    done();
  }
}

test("the shipped manifests pass", () => {
  const r = check([]);
  assert.equal(r.code, 0, r.out);
  assert.match(r.out, /^ok: 8 object\(s\) valid$/m);
});

test("a misspelt Deployment field is refused (strict)", () => {
  expectFailure(
    "deploy/k8s/host-service.yaml",
    "periodSeconds: 2",
    "periodSecond: 2",
    /kubernetes-validate --strict/,
    /'periodSecond' was unexpected/,
  );
});

test("a wrong type in a CRD is refused by its schema", () => {
  expectFailure(
    "deploy/envoy-gateway/envoy-extension-policy.yaml",
    "failOpen: false",
    "failOpen: sometimes",
    /EnvoyExtensionPolicy\/twiml-guard: schema: .*failOpen must be boolean/,
  );
});

test("a plugin configuration the filter refuses is named", () => {
  expectFailure(
    "deploy/istio/wasmplugin.yaml",
    "mode: rewrite",
    "mode: strcit",
    /WasmPlugin\/twiml-guard: plugin configuration refused by the filter's parser: .*unknown variant `strcit`/,
  );
});

test("a host configuration the service refuses is named", () => {
  expectFailure(
    "deploy/k8s/host-service.yaml",
    "max_sockets = 256",
    "max_socket = 256",
    /Deployment\/host-service: host-service refuses its configuration: .*max_socket/,
  );
});

test("a grace period shorter than the drain is refused", () => {
  expectFailure(
    "deploy/k8s/host-service.yaml",
    "terminationGracePeriodSeconds: 35",
    "terminationGracePeriodSeconds: 20",
    /terminationGracePeriodSeconds 20 s does not cover preStop 5000 ms \+ the drain 25000 ms/,
  );
});
