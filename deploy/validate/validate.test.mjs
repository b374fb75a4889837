// The manifest check must pass on deploy/ as shipped and fail, naming the problem, on each kind of
// mistake it exists to catch: a misspelt field, a wrong type in a CRD (Envoy Gateway's
// dynamic-module fields included), a native policy Envoy Gateway or the module would refuse, a
// plugin configuration the filter refuses, a host configuration the service refuses, a grace
// period shorter than the drain, several replicas (or a rolling update) on SQLite, replicas on
// PostgreSQL without one shared ReadWriteMany volume.

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { parseAllDocuments } from "yaml";

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
  assert.match(r.out, /^ok: 16 object\(s\) valid$/m);
});

test("the host's webhook paths must reach the host, whatever prefix covers them", () => {
  expectFailure(
    "deploy/envoy-gateway/routes.yaml",
    "    - path: {type: Exact, value: /webhook/stream_ended}\n",
    "",
    /HTTPRoute\/voice-webhooks: \/webhook\/stream_ended \(a host service webhook\) is routed to legacy-backend, not host-service/,
  );
  expectFailure(
    "deploy/envoy-gateway/routes.yaml",
    "{name: host-service, port: 7000}\n---",
    "{name: legacy-backend, port: 5000}\n---",
    /\/webhook\/recording_status \(a host service webhook\) is routed to legacy-backend, not host-service/,
  );
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
  // The native module's JSON string in an EnvoyFilter, and the name it answers to.
  expectFailure(
    "deploy/istio/native-envoyfilter.yaml",
    '"mode": "rewrite"',
    '"mode": "strcit"',
    /EnvoyFilter\/twiml-guard-native twiml_guard: plugin configuration refused by the filter's parser: .*unknown variant `strcit`/,
  );
  expectFailure(
    "deploy/istio/native-envoyfilter.yaml",
    "filter_name: twiml_guard",
    "filter_name: twiml-guard",
    /filter_name "twiml-guard": the module answers to "twiml_guard"/,
  );
});

test("Envoy Gateway's dynamic-module fields are checked against their schema", () => {
  const file = "deploy/envoy-gateway/native-extension-policy.yaml";
  // A misspelt field, which the CRD model would let through.
  expectFailure(file, "filterName: twiml_guard", "filtername: twiml_guard",
    /EnvoyExtensionPolicy\/twiml-guard: schema: spec.dynamicModule\/0 must NOT have additional properties \(filtername\)/);
  expectFailure(file, "      local: {path:", "      lokal: {path:",
    /EnvoyProxy\/twiml-guard-native: schema: spec.dynamicModules\/0\/source must NOT have additional properties \(lokal\)/,
    /spec.dynamicModules\/0\/source must have required property 'local'/);
  // A wrong type, a bad name, and a Remote source without its checksum.
  expectFailure(file, "  - name: twiml-guard\n    source:", "  - name: twiml-guard\n    doNotClose: yes\n    source:",
    /spec.dynamicModules\/0\/doNotClose must be boolean/);
  expectFailure(file, "  dynamicModule:\n  - name: twiml-guard", "  dynamicModule:\n  - name: Twiml_Guard",
    /spec.dynamicModule\/0\/name must match pattern/);
  expectFailure(file, "type: Local\n      local: {path: /usr/local/lib/twiml-guard/libtwiml_guard_native.so}",
    "type: Remote\n      remote: {url: https://registry.example.com/libtwiml_guard_native.so}",
    /spec.dynamicModules\/0\/source\/remote must have required property 'sha256'/);
});

test("a native policy must name a registered module that Envoy 1.40 can load, with its secrets", () => {
  const file = "deploy/envoy-gateway/native-extension-policy.yaml";
  expectFailure(file, "  dynamicModule:\n  - name: twiml-guard", "  dynamicModule:\n  - name: twiml-guard-v2",
    /dynamicModule twiml-guard-v2: no EnvoyProxy in this file registers twiml-guard-v2/);
  expectFailure(file, "filterName: twiml_guard", "filterName: twiml-guard",
    /filterName "twiml-guard": the module answers to "twiml_guard"/);
  expectFailure(file, "mode: rewrite", "mode: strcit",
    /dynamicModule twiml-guard: plugin configuration refused by the filter's parser: .*unknown variant `strcit`/);
  expectFailure(file, "local: {path: /usr/local/lib/twiml-guard/", "local: {path: /usr/lib/twiml-guard/",
    /dynamicModules twiml-guard: \/usr\/lib\/twiml-guard\/libtwiml_guard_native.so is under no volume mounted into the proxy container/);
  expectFailure(file, "envoy:distroless-v1.40.0", "envoy:distroless-v1.41.0",
    /the native module is built for Envoy 1.40's ABI, pin the proxy to an Envoy v1.40.x image/);
  expectFailure(file, "          - name: TWIML_GUARD_MEDIA_KEY\n", "          - name: MEDIA_KEY\n",
    /the configuration reads TWIML_GUARD_MEDIA_KEY from the proxy's environment, which EnvoyProxy\/twiml-guard-native does not set/);
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

test("the PostgreSQL Deployment's grace period must exceed its drain, margin included", () => {
  // preStop 5 s + drain 25 s = 30 s: a grace period of exactly that leaves no margin.
  expectFailure(
    "deploy/k8s/host-service-postgres.yaml",
    "terminationGracePeriodSeconds: 35",
    "terminationGracePeriodSeconds: 30",
    /host-service-postgres\.yaml: Deployment\/host-service: terminationGracePeriodSeconds 30 s does not cover preStop 5000 ms \+ the drain 25000 ms/,
  );
});

// The shipped objects by kind, straight from the YAML.
function objects(path) {
  const docs = parseAllDocuments(readFileSync(join(root, path), "utf8")).map((d) => d.toJS());
  return (kind) => docs.filter((o) => o?.kind === kind);
}

// http.shutdown_timeout_ms + pipeline.drain_timeout_ms, read from the ConfigMap's TOML.
function drainMs(configMap) {
  const toml = configMap.data["host-service.toml"];
  const key = (section, name) => {
    const m = new RegExp(`\\[${section}\\][^\\[]*?\\n${name} = (\\d+)\\n`).exec(toml);
    assert.ok(m, `no ${section}.${name} in the ConfigMap`);
    return Number(m[1]);
  };
  return key("http", "shutdown_timeout_ms") + key("pipeline", "drain_timeout_ms");
}

test("both host-service Deployments drain alike: preStop + drain + 5 s is the grace period", () => {
  for (const path of ["deploy/k8s/host-service.yaml", "deploy/k8s/host-service-postgres.yaml"]) {
    const of = objects(path);
    const [deployment] = of("Deployment");
    const pod = deployment.spec.template.spec;
    const preStopMs = pod.containers[0].lifecycle.preStop.sleep.seconds * 1000;
    const drain = drainMs(of("ConfigMap")[0]);
    assert.deepEqual([preStopMs, drain], [5000, 25000], path);
    assert.equal(pod.terminationGracePeriodSeconds * 1000, preStopMs + drain + 5000, path);
  }
});

test("SQLite runs one replica, Recreate; PostgreSQL three, rolling, shared, spread, budgeted", () => {
  const sqlite = objects("deploy/k8s/host-service.yaml");
  const [one] = sqlite("Deployment");
  assert.equal(one.spec.replicas, 1);
  assert.deepEqual(one.spec.strategy, { type: "Recreate" });
  assert.ok(!one.spec.template.spec.containers[0].env.some((e) => e.name.includes("DATABASE")));

  const pg = objects("deploy/k8s/host-service-postgres.yaml");
  const [many] = pg("Deployment");
  const pod = many.spec.template.spec;
  assert.equal(many.spec.replicas, 3);
  assert.deepEqual(many.spec.strategy, {
    type: "RollingUpdate",
    rollingUpdate: { maxUnavailable: 0, maxSurge: 1 },
  });
  assert.deepEqual(
    pod.containers[0].env.find((e) => e.name === "HOST_SERVICE_DATABASE_URL").valueFrom,
    { secretKeyRef: { name: "host-service", key: "database-url" } },
  );
  assert.ok(!pg("ConfigMap")[0].data["host-service.toml"].includes("database"));
  const recordings = pod.volumes.find((v) => v.name === "recordings");
  const [claim] = pg("PersistentVolumeClaim");
  assert.equal(recordings.persistentVolumeClaim.claimName, claim.metadata.name);
  assert.deepEqual(claim.spec.accessModes, ["ReadWriteMany"]);
  assert.deepEqual(
    pod.containers[0].volumeMounts.find((m) => m.name === "recordings").mountPath,
    "/data",
  );
  assert.deepEqual(
    pod.topologySpreadConstraints.map((t) => [t.topologyKey, t.maxSkew, t.whenUnsatisfiable]),
    [["kubernetes.io/hostname", 1, "DoNotSchedule"]],
  );
  const [budget] = pg("PodDisruptionBudget");
  assert.equal(budget.spec.minAvailable, 2);
  assert.deepEqual(budget.spec.selector, many.spec.selector);
  assert.deepEqual(pg("Service")[0].spec.selector, many.spec.selector.matchLabels);
});

test("several replicas on SQLite are refused", () => {
  expectFailure(
    "deploy/k8s/host-service.yaml",
    "replicas: 1",
    "replicas: 2",
    /Deployment\/host-service: 2 replicas on SQLite \(no PostgreSQL database\.url\): SQLite is one writer on one volume, so keep replicas 1 or set HOST_SERVICE_DATABASE_URL to PostgreSQL/,
  );
});

test("a rolling update on SQLite is refused", () => {
  expectFailure(
    "deploy/k8s/host-service.yaml",
    "type: Recreate",
    "type: RollingUpdate",
    /Deployment\/host-service: strategy RollingUpdate on SQLite: the old pod must release the database before the new one opens it \(Recreate\)/,
  );
});

test("the PostgreSQL manifest without its database URL is SQLite, and refused as such", () => {
  expectFailure(
    "deploy/k8s/host-service-postgres.yaml",
    "        - name: HOST_SERVICE_DATABASE_URL\n" +
      "          valueFrom:\n" +
      "            secretKeyRef: {name: host-service, key: database-url}\n",
    "",
    /Deployment\/host-service: 3 replicas on SQLite/,
    /Deployment\/host-service: strategy RollingUpdate on SQLite/,
  );
});

test("replicas on PostgreSQL with recordings on a ReadWriteOnce claim are refused", () => {
  expectFailure(
    "deploy/k8s/host-service-postgres.yaml",
    "accessModes: [ReadWriteMany]",
    "accessModes: [ReadWriteOnce]",
    /Deployment\/host-service: 3 replicas share data_dir \/data on PersistentVolumeClaim host-service-recordings \(ReadWriteOnce\): every replica must mount the same volume, ReadWriteMany/,
  );
});

test("replicas on PostgreSQL with recordings on a volume of their own are refused", () => {
  expectFailure(
    "deploy/k8s/host-service-postgres.yaml",
    "persistentVolumeClaim: {claimName: host-service-recordings}",
    "emptyDir: {}",
    /Deployment\/host-service: 3 replicas share data_dir \/data, on no PersistentVolumeClaim: mount one ReadWriteMany claim there/,
  );
});

test("a liveness probe on the database-checking endpoint is refused", () => {
  for (const path of ["deploy/k8s/host-service.yaml", "deploy/k8s/host-service-postgres.yaml"]) {
    expectFailure(
      path,
      "httpGet: {path: /livez, port: http}",
      "httpGet: {path: /healthz, port: http}",
      /Deployment\/host-service: livenessProbe on \/healthz: use \/livez, which never touches the database/,
    );
  }
});

test("a probe without an explicit timeoutSeconds is refused", () => {
  expectFailure(
    "deploy/k8s/host-service.yaml",
    "          periodSeconds: 10\n          timeoutSeconds: 2\n",
    "          periodSeconds: 10\n",
    /Deployment\/host-service: livenessProbe has no timeoutSeconds: set it \(the kubelet's default is 1 s\)/,
  );
});

test("a readiness timeout within /readyz's database deadline is refused", () => {
  expectFailure(
    "deploy/k8s/host-service-postgres.yaml",
    "        - name: HOST_SERVICE_DATABASE_URL\n",
    "        - name: HOST_SERVICE_DATABASE_READY_TIMEOUT_MS\n" +
      '          value: "2500"\n' +
      "        - name: HOST_SERVICE_DATABASE_URL\n",
    /Deployment\/host-service: readinessProbe timeoutSeconds 2 s is not longer than \/readyz's database deadline 2500 ms \(database\.ready_timeout_ms\)/,
  );
});
