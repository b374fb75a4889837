// Checks every manifest in deploy/ the way a cluster would, before one is at hand: each object
// against its schema (Kubernetes, Gateway API, Istio and Envoy Gateway models generated from the
// published OpenAPI and CRD schemas, and Envoy Gateway's dynamic-module fields, which those
// models predate, in dynamic-modules.mjs), the core kinds again with `kubernetes-validate
// --strict` (unknown fields refused), the guard's plugin configurations with the filter's own
// parser (`twiml-guard config check`), and the host service's configuration with the service
// itself (`host-service --check-config`), whose drain time must fit terminationGracePeriodSeconds
// and whose probes must be /livez and /readyz with explicit timeouts. The host's storage must fit
// its replicas: SQLite (no database URL) is one replica with the Recreate strategy; several
// replicas on PostgreSQL share data_dir on one ReadWriteMany claim.
//
// Usage: node validate.mjs [FILE.yaml...]   (default: every *.yaml under deploy/k8s, deploy/istio,
// deploy/envoy-gateway). Needs TWIML_GUARD_BIN_DIR (default target/release) and
// KUBERNETES_VALIDATE (default .venv/bin/kubernetes-validate). Exit 0 when all pass, 1 otherwise.

import { execFileSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseAllDocuments } from "yaml";
import { checkDynamicModules } from "./dynamic-modules.mjs";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const binDir = process.env.TWIML_GUARD_BIN_DIR || join(root, "target/release");
const kubeValidate =
  process.env.KUBERNETES_VALIDATE || join(root, ".venv/bin/kubernetes-validate");
const MANIFEST_DIRS = ["deploy/k8s", "deploy/istio", "deploy/envoy-gateway"];

// apiVersion → the package that models it; the core API group has no prefix.
const MODEL_PACKAGES = {
  "extensions.istio.io": "@kubernetes-models/istio",
  "networking.istio.io": "@kubernetes-models/istio",
  "gateway.envoyproxy.io": "@kubernetes-models/envoy-gateway",
  "gateway.networking.k8s.io": "@kubernetes-models/gateway-api",
};
const CORE_GROUPS = new Set(["", "apps", "policy", "autoscaling", "networking.k8s.io"]);

// What a variable taken from a Secret stands for when the service checks its configuration: a
// value of the right shape where the service parses it, a plain word elsewhere. A database URL
// kept in a Secret is PostgreSQL's (SQLite's holds no password to keep).
const SECRET_PLACEHOLDERS = {
  HOST_SERVICE_DATABASE_URL:
    "postgres://host_service:placeholder@postgres.voice.svc:5432/host_service",
};
const SECRET_PLACEHOLDER = "placeholder-from-secret";

const failures = [];
const fail = (where, message) => failures.push(`${where}: ${message}`);

const groupOf = (apiVersion) => apiVersion.split("/").slice(0, -1).join("/");
const isCore = (apiVersion) => CORE_GROUPS.has(groupOf(apiVersion));

async function modelFor(apiVersion, kind) {
  const group = groupOf(apiVersion);
  const version = apiVersion.split("/").pop();
  const pkg = MODEL_PACKAGES[group] ?? (CORE_GROUPS.has(group) ? "kubernetes-models" : null);
  if (!pkg) return null;
  const path = group ? `${pkg}/${group}/${version}/${kind}` : `${pkg}/${version}/${kind}`;
  try {
    return (await import(path))[kind] ?? null;
  } catch {
    return null;
  }
}

function run(cmd, args, env = {}) {
  try {
    const out = execFileSync(cmd, args, {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "pipe"],
      env: { PATH: process.env.PATH, ...env },
    });
    return { ok: true, out };
  } catch (e) {
    return { ok: false, out: `${e.stdout ?? ""}${e.stderr ?? ""}`.trim() || String(e) };
  }
}

function checkPluginConfig(where, config, tmp) {
  const file = join(tmp, "plugin.json");
  writeFileSync(file, JSON.stringify(config));
  const r = run(join(binDir, "twiml-guard"), ["config", "check", file]);
  if (!r.ok) fail(where, `plugin configuration refused by the filter's parser: ${r.out}`);
  return r.ok;
}

// The native module's entries in an EnvoyFilter: its plugin configuration is a JSON string in
// filter_config, checked like any other; filter_name must be the one the module answers to.
const NATIVE_TYPE =
  "type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter";
function checkNativeFilters(where, obj, tmp) {
  for (const patch of obj.spec?.configPatches ?? []) {
    const typed = patch.patch?.value?.typed_config;
    if (typed?.["@type"] !== NATIVE_TYPE) continue;
    const at = `${where} ${patch.patch.value.name}`;
    if (typed.filter_name !== "twiml_guard") {
      fail(at, `filter_name ${JSON.stringify(typed.filter_name)}: the module answers to "twiml_guard"`);
    }
    let config;
    try {
      config = JSON.parse(typed.filter_config?.value ?? "");
    } catch (e) {
      fail(at, `filter_config.value is not the plugin JSON: ${e.message}`);
      continue;
    }
    checkPluginConfig(at, config, tmp);
  }
}

// A string key of host-service.toml, `key` in `[section]` ("" for the top level) or written
// dotted at the top level; enough for the plain strings read here (data_dir, database.url), the
// service itself checks the whole file.
function tomlString(text, section, key) {
  let current = "";
  for (const line of text.split("\n")) {
    const header = /^\s*\[([^\]]+)\]\s*(#.*)?$/.exec(line);
    if (header) {
      current = header[1].trim();
      continue;
    }
    const m = /^\s*([A-Za-z0-9_.]+)\s*=\s*(?:"([^"]*)"|'([^']*)')/.exec(line);
    if (!m) continue;
    const full = current ? `${current}.${m[1]}` : m[1];
    if (full === (section ? `${section}.${key}` : key)) return m[2] ?? m[3];
  }
  return undefined;
}

// SQLite is one writer on one volume; PostgreSQL lets replicas share the database, but then they
// must also share the recordings: data_dir on one claim every pod mounts, ReadWriteMany.
function checkStorage(where, deployment, container, env, toml, claims) {
  const spec = deployment.spec ?? {};
  const replicas = spec.replicas ?? 1;
  const url = env.HOST_SERVICE_DATABASE_URL ?? tomlString(toml, "database", "url");
  const postgres = /^postgres(ql)?:\/\//.test(url ?? "");
  if (!postgres) {
    if (replicas !== 1) {
      fail(
        where,
        `${replicas} replicas on SQLite (no PostgreSQL database.url): SQLite is one writer on ` +
          `one volume, so keep replicas 1 or set HOST_SERVICE_DATABASE_URL to PostgreSQL`,
      );
    }
    const strategy = spec.strategy?.type ?? "RollingUpdate";
    if (strategy !== "Recreate") {
      fail(
        where,
        `strategy ${strategy} on SQLite: the old pod must release the database before the new ` +
          `one opens it (Recreate)`,
      );
    }
    return;
  }
  if (replicas <= 1) return;
  const dataDir = env.HOST_SERVICE_DATA_DIR ?? tomlString(toml, "", "data_dir") ?? "./data";
  const mount = (container.volumeMounts ?? [])
    .filter((m) => dataDir === m.mountPath || dataDir.startsWith(`${m.mountPath}/`))
    .sort((a, b) => b.mountPath.length - a.mountPath.length)[0];
  const volume = (spec.template?.spec?.volumes ?? []).find((v) => v.name === mount?.name);
  const claimName = volume?.persistentVolumeClaim?.claimName;
  const shared = `${replicas} replicas share data_dir ${dataDir}`;
  if (!claimName) {
    fail(where, `${shared}, on no PersistentVolumeClaim: mount one ReadWriteMany claim there`);
    return;
  }
  const claim = claims.get(claimName);
  if (!claim) {
    fail(where, `${shared}: PersistentVolumeClaim ${claimName} is not in this file to check`);
    return;
  }
  const modes = claim.spec?.accessModes ?? [];
  if (!modes.includes("ReadWriteMany")) {
    fail(
      where,
      `${shared} on PersistentVolumeClaim ${claimName} (${modes.join(", ") || "no mode"}): ` +
        `every replica must mount the same volume, ReadWriteMany`,
    );
  }
}

// Liveness on /livez (never the database: an outage must not get every replica restarted with
// its live calls), readiness on /readyz (or its alias /healthz), each with an explicit
// timeoutSeconds, and the readiness timeout longer than the database deadline the service says
// /readyz keeps (`readyMs`, from --check-config).
function checkProbes(where, container, readyMs) {
  const live = container.livenessProbe;
  const ready = container.readinessProbe;
  const path = (probe) => probe?.httpGet?.path;
  if (path(live) !== "/livez") {
    fail(
      where,
      `livenessProbe on ${path(live) ?? "nothing"}: use /livez, which never touches the ` +
        `database (a database outage would restart every replica with its live calls)`,
    );
  }
  if (!["/readyz", "/healthz"].includes(path(ready))) {
    fail(where, `readinessProbe on ${path(ready) ?? "nothing"}: use /readyz`);
  }
  for (const [name, probe] of [["livenessProbe", live], ["readinessProbe", ready]]) {
    if (probe && probe.timeoutSeconds === undefined) {
      fail(where, `${name} has no timeoutSeconds: set it (the kubelet's default is 1 s)`);
    }
  }
  if (ready?.timeoutSeconds !== undefined && !(readyMs < ready.timeoutSeconds * 1000)) {
    fail(
      where,
      `readinessProbe timeoutSeconds ${ready.timeoutSeconds} s is not longer than /readyz's ` +
        `database deadline ${readyMs} ms (database.ready_timeout_ms)`,
    );
  }
}

// The host service's own check of its ConfigMap with the Deployment's environment (values from
// Secrets stand in as placeholders), its storage against its replicas, and its drain time against
// the grace period.
function checkHostService(where, deployment, configMaps, claims, tmp) {
  const pod = deployment.spec?.template?.spec ?? {};
  for (const c of pod.containers ?? []) {
    const args = c.args ?? [];
    const at = args.indexOf("--config");
    const env = {};
    for (const e of c.env ?? []) {
      env[e.name] = e.value ?? SECRET_PLACEHOLDERS[e.name] ?? SECRET_PLACEHOLDER;
    }
    const cmdArgs = ["--check-config"];
    let toml = "";
    if (at >= 0) {
      const path = args[at + 1];
      const mount = (c.volumeMounts ?? []).find((m) => path.startsWith(`${m.mountPath}/`));
      const volume = (pod.volumes ?? []).find((v) => v.name === mount?.name);
      const data = configMaps.get(volume?.configMap?.name)?.data ?? {};
      const key = path.slice(mount.mountPath.length + 1);
      if (!(key in data)) {
        fail(where, `--config ${path}: no key ${key} in the mounted ConfigMap`);
        continue;
      }
      toml = data[key];
      const file = join(tmp, "host-service.toml");
      writeFileSync(file, toml);
      cmdArgs.push("--config", file);
    }
    checkStorage(where, deployment, c, env, toml, claims);
    const r = run(join(binDir, "host-service"), cmdArgs, env);
    if (!r.ok) {
      fail(where, `host-service refuses its configuration: ${r.out}`);
      continue;
    }
    checkProbes(where, c, Number(/\/readyz answers within (\d+) ms/.exec(r.out)?.[1]));
    const drainMs = Number(/at most (\d+) ms/.exec(r.out)?.[1]);
    const preStopMs = (c.lifecycle?.preStop?.sleep?.seconds ?? 0) * 1000;
    const graceMs = (pod.terminationGracePeriodSeconds ?? 30) * 1000;
    if (!(preStopMs + drainMs < graceMs)) {
      fail(
        where,
        `terminationGracePeriodSeconds ${graceMs / 1000} s does not cover preStop ${preStopMs} ms ` +
          `+ the drain ${drainMs} ms: the kubelet would SIGKILL a draining pod`,
      );
    }
  }
}

// The host service's webhooks: whatever route covers them must send them to the host, or its
// stream ends and recording callbacks go to a backend that does not know them.
const HOST_WEBHOOK_PATHS = ["/webhook/stream_ended", "/webhook/recording_status"];
const HOST_SERVICE = "host-service";

// Gateway API path matching: Exact beats any prefix, a longer prefix beats a shorter one, and a
// prefix matches whole path elements (`/webhook` covers `/webhook/x`, not `/webhooks`).
function pathScore(match, path) {
  const { type = "PathPrefix", value = "/" } = match.path ?? {};
  if (type === "Exact") return value === path ? Infinity : null;
  if (type !== "PathPrefix") return null;
  const prefix = value.replace(/\/+$/, "");
  return prefix === "" || path === prefix || path.startsWith(`${prefix}/`) ? prefix.length : null;
}

function checkHostWebhooks(name, routes) {
  for (const path of HOST_WEBHOOK_PATHS) {
    let best = null;
    for (const route of routes) {
      for (const rule of route.spec?.rules ?? []) {
        for (const match of rule.matches ?? [{}]) {
          const score = pathScore(match, path);
          if (score !== null && (!best || score > best.score)) {
            best = { score, route: route.metadata?.name, backends: (rule.backendRefs ?? []).map((b) => b.name) };
          }
        }
      }
    }
    if (best && !(best.backends.length && best.backends.every((b) => b === HOST_SERVICE))) {
      fail(
        `${name}: HTTPRoute/${best.route}`,
        `${path} (a host service webhook) is routed to ${best.backends.join(", ") || "no backend"}, not ${HOST_SERVICE}`,
      );
    }
  }
}

function manifestFiles(args) {
  if (args.length) return args.map((a) => resolve(a));
  return MANIFEST_DIRS.flatMap((d) =>
    readdirSync(join(root, d))
      .filter((f) => f.endsWith(".yaml"))
      .map((f) => join(root, d, f)),
  );
}

const tmp = mkdtempSync(join(tmpdir(), "deploy-validate-"));
let objects = 0;
try {
  const files = manifestFiles(process.argv.slice(2));
  const strictFiles = [];
  for (const file of files) {
    const name = relative(root, file);
    const docs = parseAllDocuments(readFileSync(file, "utf8"));
    const parsed = [];
    for (const doc of docs) {
      if (doc.errors.length) fail(name, `YAML: ${doc.errors[0].message}`);
      else if (doc.contents !== null) parsed.push(doc.toJS());
    }
    const byName = (kind) =>
      new Map(parsed.filter((o) => o.kind === kind).map((o) => [o.metadata?.name, o]));
    const configMaps = byName("ConfigMap");
    const claims = byName("PersistentVolumeClaim");
    let core = false;
    for (const obj of parsed) {
      const where = `${name}: ${obj.kind}/${obj.metadata?.name}`;
      objects += 1;
      const Model = await modelFor(obj.apiVersion ?? "", obj.kind ?? "");
      if (!Model) {
        fail(where, `no schema for ${obj.apiVersion} ${obj.kind}`);
        continue;
      }
      try {
        new Model(obj).validate();
      } catch (e) {
        fail(where, `schema: ${e.message}`);
      }
      if (isCore(obj.apiVersion ?? "")) core = true;
      if (obj.kind === "WasmPlugin") checkPluginConfig(where, obj.spec?.pluginConfig ?? {}, tmp);
      if (obj.kind === "EnvoyExtensionPolicy") {
        for (const w of obj.spec?.wasm ?? []) checkPluginConfig(`${where} wasm ${w.name}`, w.config ?? {}, tmp);
      }
      if (obj.kind === "EnvoyFilter") checkNativeFilters(where, obj, tmp);
      if (obj.kind === "Deployment" && obj.metadata?.name === "host-service") {
        checkHostService(where, obj, configMaps, claims, tmp);
      }
    }
    checkHostWebhooks(name, parsed.filter((o) => o.kind === "HTTPRoute"));
    checkDynamicModules(name, parsed, (where, config) => checkPluginConfig(where, config, tmp), fail);
    if (core) strictFiles.push(file);
  }
  if (strictFiles.length) {
    const r = run(kubeValidate, ["--strict", "--quiet", ...strictFiles]);
    if (!r.ok) fail("kubernetes-validate --strict", r.out);
  }
} finally {
  rmSync(tmp, { recursive: true, force: true });
}

if (failures.length) {
  for (const f of failures) console.error(`FAIL ${f}`);
  console.error(`${failures.length} problem(s) in ${objects} object(s)`);
  process.exit(1);
}
console.log(`ok: ${objects} object(s) valid`);
