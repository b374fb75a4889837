// Envoy Gateway's dynamic-module fields, which @kubernetes-models/envoy-gateway 2.0.0 predates:
// EnvoyProxy.spec.dynamicModules (the allowlist of modules and where each is loaded from) and
// EnvoyExtensionPolicy.spec.dynamicModule (the filters a policy runs). The model passes any field
// it does not know, so these are checked here instead: a JSON Schema of the two types as Envoy
// Gateway's API (gateway.envoyproxy.io/v1alpha1 DynamicModuleEntry, DynamicModuleSource and
// DynamicModule) defines them, unknown fields refused as the API server's structural schema
// would prune them, with its validation rules written as if/then; then what Envoy Gateway
// checks across objects (a policy may only name a registered module) and what the guard needs
// (filterName twiml_guard, its configuration accepted by its own parser, the module file under
// a mount of the proxy container, the secrets it reads in that container's environment, and
// the Envoy 1.40 its ABI is pinned to).

import Ajv from "ajv";

const NAME = { type: "string", minLength: 1, maxLength: 253, pattern: "^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$" };

const ENTRY = {
  type: "object",
  additionalProperties: false,
  required: ["name", "source"],
  properties: {
    name: NAME,
    source: {
      type: "object",
      additionalProperties: false,
      properties: {
        type: { enum: ["Local", "Remote"], default: "Local" },
        local: {
          type: "object",
          additionalProperties: false,
          required: ["path"],
          properties: { path: { type: "string", minLength: 1, maxLength: 4096 } },
        },
        remote: {
          type: "object",
          additionalProperties: false,
          required: ["url", "sha256"],
          properties: {
            url: { type: "string", minLength: 1, maxLength: 4096, pattern: "^https?://[^/?#]+(?:[/?#].*)?$" },
            sha256: { type: "string", pattern: "^[a-f0-9]{64}$" },
          },
        },
      },
      // Local (the default) needs `local`; Remote needs `remote` and no `local`.
      if: { properties: { type: { const: "Remote" } }, required: ["type"] },
      then: { required: ["remote"], not: { required: ["local"] } },
      else: { required: ["local"], not: { required: ["remote"] } },
    },
    doNotClose: { type: "boolean" },
    loadGlobally: { type: "boolean" },
  },
};

const FILTER = {
  type: "object",
  additionalProperties: false,
  required: ["name"],
  properties: {
    name: NAME,
    filterName: { type: "string", maxLength: 253 },
    config: {},
    terminalFilter: { type: "boolean" },
  },
};

const ajv = new Ajv({ allErrors: true });
const validateEntries = ajv.compile({ type: "array", items: ENTRY });
const validateFilters = ajv.compile({ type: "array", items: FILTER });

const schemaErrors = (validate, value, at) =>
  validate(value)
    ? []
    : validate.errors.map((e) => {
        const extra = e.params?.additionalProperty ? ` (${e.params.additionalProperty})` : "";
        return `${at}${e.instancePath} ${e.message}${extra}`;
      });

// The environment variables a plugin configuration reads its secrets from.
const secretEnvNames = (config) =>
  ["auth_token_env", "media_key_env"].map((k) => config?.signature?.[k]).filter(Boolean);

// The Envoy release the native module's ABI belongs to.
const ENVOY_IMAGE = /envoy:[^:]*v1\.40\.\d+$/;

function checkProxy(where, proxy, fail) {
  const entries = proxy.spec?.dynamicModules;
  if (entries === undefined) return new Map();
  for (const e of schemaErrors(validateEntries, entries, "spec.dynamicModules")) fail(where, `schema: ${e}`);
  const registered = new Map();
  const deployment = proxy.spec?.provider?.kubernetes?.envoyDeployment ?? {};
  const container = deployment.container ?? {};
  const volumes = new Set((deployment.pod?.volumes ?? []).map((v) => v.name));
  for (const entry of Array.isArray(entries) ? entries : []) {
    if (registered.has(entry.name)) fail(where, `dynamicModules: ${entry.name} is registered twice`);
    registered.set(entry.name, { proxy, container });
    const path = entry.source?.local?.path;
    if (!path) continue;
    const mount = (container.volumeMounts ?? []).find((m) => path.startsWith(`${m.mountPath.replace(/\/+$/, "")}/`));
    if (!mount || !volumes.has(mount.name)) {
      fail(
        where,
        `dynamicModules ${entry.name}: ${path} is under no volume mounted into the proxy container ` +
          `(envoyDeployment.container.volumeMounts and pod.volumes): Envoy could not load it`,
      );
    }
  }
  if (registered.size && !ENVOY_IMAGE.test(container.image ?? "")) {
    fail(
      where,
      `envoyDeployment.container.image ${JSON.stringify(container.image ?? null)}: the native ` +
        `module is built for Envoy 1.40's ABI, pin the proxy to an Envoy v1.40.x image`,
    );
  }
  return registered;
}

function checkPolicy(where, policy, registered, checkPluginConfig, fail) {
  const filters = policy.spec?.dynamicModule;
  if (filters === undefined) return;
  for (const e of schemaErrors(validateFilters, filters, "spec.dynamicModule")) fail(where, `schema: ${e}`);
  for (const f of Array.isArray(filters) ? filters : []) {
    const at = `${where} dynamicModule ${f.name}`;
    const module = registered.get(f.name);
    if (!module) {
      fail(at, `no EnvoyProxy in this file registers ${f.name} in spec.dynamicModules: Envoy Gateway rejects the policy`);
      continue;
    }
    if (f.filterName !== "twiml_guard") {
      fail(at, `filterName ${JSON.stringify(f.filterName ?? null)}: the module answers to "twiml_guard"`);
    }
    checkPluginConfig(at, f.config ?? {});
    const env = new Set((module.container.env ?? []).map((e) => e.name));
    for (const name of secretEnvNames(f.config)) {
      if (!env.has(name)) {
        fail(
          at,
          `the configuration reads ${name} from the proxy's environment, which EnvoyProxy/` +
            `${module.proxy.metadata?.name} does not set (envoyDeployment.container.env)`,
        );
      }
    }
  }
}

// Check every EnvoyProxy and EnvoyExtensionPolicy of one file. `name` prefixes each failure;
// `checkPluginConfig(where, config)` runs the guard's parser on a configuration.
export function checkDynamicModules(name, objects, checkPluginConfig, fail) {
  const registered = new Map();
  const where = (o) => `${name}: ${o.kind}/${o.metadata?.name}`;
  for (const o of objects.filter((o) => o.kind === "EnvoyProxy")) {
    for (const [k, v] of checkProxy(where(o), o, fail)) registered.set(k, v);
  }
  for (const o of objects.filter((o) => o.kind === "EnvoyExtensionPolicy")) {
    checkPolicy(where(o), o, registered, checkPluginConfig, fail);
  }
}
