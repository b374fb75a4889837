//! Turning the shipped `envoy.yaml` and the guard's shipped ECDS resources
//! (`deploy/ecds/twiml_guard.json` for the wasm filter, `twiml_guard.native.json` for the native
//! module) into a test's [`EnvoyConfig`], so the shipped files are what gets tested.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::{io, native_module, repo_root, wasm_module, HarnessError, Result};

/// The shipped `envoy.yaml`, as text.
pub fn shipped_envoy_yaml() -> Result<String> {
    let path = repo_root().join("envoy.yaml");
    std::fs::read_to_string(&path).map_err(io(format!("reading {}", path.display())))
}

/// Where the repo keeps the guard's initial ECDS resource (`make run` copies it to
/// [`ECDS_FILE`]).
pub const SHIPPED_ECDS_SEED: &str = "deploy/ecds/twiml_guard.json";
/// The same resource loading the native shim (`make run GUARD=native`).
pub const SHIPPED_NATIVE_SEED: &str = "deploy/ecds/twiml_guard.native.json";
/// The directory the shipped `envoy.yaml` watches, relative to Envoy's working directory.
pub const ECDS_DIR: &str = "run/ecds";
/// The resource file in it.
pub const ECDS_FILE: &str = "run/ecds/twiml_guard.json";

/// Which Envoy shim of the guard runs: the proxy-wasm filter or the native dynamic module.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shim {
    Wasm,
    Native,
}

impl Shim {
    pub const BOTH: [Shim; 2] = [Shim::Wasm, Shim::Native];

    /// Its shipped ECDS resource.
    pub fn seed(self) -> &'static str {
        match self {
            Shim::Wasm => SHIPPED_ECDS_SEED,
            Shim::Native => SHIPPED_NATIVE_SEED,
        }
    }

    /// The module path its shipped resource names, relative to the repo.
    pub fn shipped_module(self) -> &'static str {
        match self {
            Shim::Wasm => SHIPPED_WASM_PATH,
            Shim::Native => SHIPPED_NATIVE_PATH,
        }
    }

    /// The built module this checkout tests.
    pub fn module(self) -> Result<PathBuf> {
        match self {
            Shim::Wasm => wasm_module(),
            Shim::Native => native_module(),
        }
    }

    /// Where the module's path sits in the resource's `typed_config`.
    fn module_pointer(self) -> &'static str {
        match self {
            Shim::Wasm => "/config/vm_config/code/local/filename",
            Shim::Native => "/dynamic_module_config/module/local/filename",
        }
    }

    /// Where the plugin JSON string sits in the resource's `typed_config`.
    pub fn plugin_pointer(self) -> &'static str {
        match self {
            Shim::Wasm => "/config/configuration/value",
            Shim::Native => "/filter_config/value",
        }
    }
}

/// A shipped ECDS resource, parsed.
pub fn shipped_resource(shim: Shim) -> Result<serde_json::Value> {
    let seed = shim.seed();
    let path = repo_root().join(seed);
    let text = std::fs::read_to_string(&path).map_err(io(format!("reading {}", path.display())))?;
    serde_json::from_str(&text).map_err(|e| HarnessError::Config(format!("{seed}: {e}")))
}

/// The shipped ECDS resource of the wasm filter, parsed.
pub fn shipped_guard_resource() -> Result<serde_json::Value> {
    shipped_resource(Shim::Wasm)
}

/// A test's Envoy: the bootstrap (`envoy.yaml`) and the guard's ECDS resource, written to
/// [`ECDS_FILE`] under Envoy's working directory before it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct EnvoyConfig {
    pub bootstrap: String,
    pub guard: serde_json::Value,
    pub shim: Shim,
}

impl EnvoyConfig {
    /// The Wasm filter config inside the resource (`resources[0].typed_config.config`): the
    /// place to change `vm_config`, `failure_policy` or `allow_on_headers_stop_iteration`.
    pub fn guard_config_mut(&mut self) -> &mut serde_json::Value {
        &mut self.guard["resources"][0]["typed_config"]["config"]
    }

    /// The resource's `typed_config`: the Wasm or the DynamicModuleFilter entry.
    pub fn typed_config_mut(&mut self) -> &mut serde_json::Value {
        &mut self.guard["resources"][0]["typed_config"]
    }

    /// The plugin JSON the guard gets.
    pub fn plugin_json(&self) -> Option<&str> {
        self.guard["resources"][0]["typed_config"]
            .pointer(self.shim.plugin_pointer())?
            .as_str()
    }

    /// Write both files into `dir` (Envoy's working directory): `envoy.yaml` and [`ECDS_FILE`].
    pub fn write_to(&self, dir: &Path) -> Result<PathBuf> {
        let config = dir.join("envoy.yaml");
        std::fs::write(&config, &self.bootstrap).map_err(io("writing envoy.yaml"))?;
        let ecds = dir.join(ECDS_DIR);
        std::fs::create_dir_all(&ecds).map_err(io(format!("creating {}", ecds.display())))?;
        let text = serde_json::to_string_pretty(&self.guard)
            .map_err(|e| HarnessError::Config(format!("writing the ECDS resource: {e}")))?;
        std::fs::write(dir.join(ECDS_FILE), text).map_err(io("writing the ECDS resource"))?;
        Ok(config)
    }
}

// === rendering the shipped config ===

/// What a test changes in the shipped `envoy.yaml`.
#[derive(Debug, Clone)]
pub struct EnvoySetup {
    /// Where the `legacy_backend` cluster points (shipped: 127.0.0.1:5000).
    pub backend: SocketAddr,
    /// Where the `host_service` cluster points (shipped: 127.0.0.1:7000).
    pub host_service: SocketAddr,
    /// The plugin's JSON configuration; `None` keeps the shipped one.
    pub plugin_config: Option<String>,
    /// More endpoints of the `host_service` cluster (replicas), after `host_service`.
    pub host_replicas: Vec<SocketAddr>,
    /// Environment variables for the Envoy process (the shipped config passes
    /// `TWILIO_AUTH_TOKEN` from it to the filter). Nothing else of the caller's
    /// `TWILIO_AUTH_TOKEN` reaches Envoy.
    pub env: Vec<(String, String)>,
    /// Which shim runs the guard (shipped: wasm).
    pub shim: Shim,
    /// Envoy's worker threads (`--concurrency`); 1 unless a benchmark asks for more.
    pub workers: u32,
}

impl EnvoySetup {
    pub fn new(backend: SocketAddr, host_service: SocketAddr) -> Self {
        EnvoySetup {
            backend,
            host_service,
            host_replicas: Vec::new(),
            plugin_config: None,
            env: Vec::new(),
            shim: Shim::Wasm,
            workers: 1,
        }
    }

    /// Run Envoy with `n` worker threads instead of one.
    pub fn workers(mut self, n: u32) -> Self {
        self.workers = n;
        self
    }

    /// Run the guard as `shim`, from its own shipped resource.
    pub fn shim(mut self, shim: Shim) -> Self {
        self.shim = shim;
        self
    }

    pub fn plugin_config(mut self, json: impl Into<String>) -> Self {
        self.plugin_config = Some(json.into());
        self
    }

    /// One more host-service replica behind the `host_service` cluster.
    pub fn host_replica(mut self, addr: SocketAddr) -> Self {
        self.host_replicas.push(addr);
        self
    }

    /// Start Envoy with `TWILIO_AUTH_TOKEN` set, as the shipped config's signature checks need,
    /// and `TWIML_GUARD_MEDIA_KEY` ([`MEDIA_KEY`]) for its per-call media tokens.
    pub fn auth_token(mut self, token: &str) -> Self {
        self.env
            .push((AUTH_TOKEN_ENV.to_string(), token.to_string()));
        self.env
            .push((MEDIA_KEY_ENV.to_string(), MEDIA_KEY.to_string()));
        self
    }
}

pub const SHIPPED_WASM_PATH: &str = "target/wasm32-wasip1/release/twiml_guard_filter.wasm";
pub const SHIPPED_NATIVE_PATH: &str = "target/release/libtwiml_guard_native.so";

/// The variable the shipped config passes to the filter for Twilio signatures.
pub const AUTH_TOKEN_ENV: &str = "TWILIO_AUTH_TOKEN";

/// The variable the shipped config reads the media key from (`signature.media_key_env`).
pub const MEDIA_KEY_ENV: &str = "TWIML_GUARD_MEDIA_KEY";

/// The media key the harness gives Envoy and, in a [`crate::stack::Stack`], the host service.
pub const MEDIA_KEY: &str = "e2e-media-key-0123456789abcdef";

fn replace_once(text: &str, from: &str, to: &str) -> Result<String> {
    match text.matches(from).count() {
        1 => Ok(text.replacen(from, to, 1)),
        n => Err(HarnessError::Config(format!(
            "expected `{from}` exactly once, found it {n} times"
        ))),
    }
}

/// The shipped config with: both Envoy ports set to 0 (Envoy picks; [`Envoy::start`] finds
/// them), the listener on 127.0.0.1, the clusters pointed at `setup`'s addresses; and the
/// shim's shipped ECDS resource with the module path made absolute (`module`) and the plugin
/// JSON replaced when `setup` has one. Each substitution must match exactly once, so a change to
/// the shipped files that the harness would silently miss fails loudly.
pub fn render_envoy_config(
    shipped: &str,
    setup: &EnvoySetup,
    module: &Path,
) -> Result<EnvoyConfig> {
    let mut y = replace_once(
        shipped,
        "{ address: 127.0.0.1, port_value: 9901 }",
        "{ address: 127.0.0.1, port_value: 0 }",
    )?;
    y = replace_once(
        &y,
        "{ address: 0.0.0.0, port_value: 8080 }",
        "{ address: 127.0.0.1, port_value: 0 }",
    )?;
    let at = |a: SocketAddr| format!("{{ address: {}, port_value: {} }}", a.ip(), a.port());
    y = replace_once(
        &y,
        "{ address: 127.0.0.1, port_value: 5000 }",
        &at(setup.backend),
    )?;
    // Replicas are more entries of the same lb_endpoints list, indented as the first.
    let endpoint = |a: SocketAddr| {
        format!(
            "        - endpoint:\n            address:\n              socket_address: {}",
            at(a)
        )
    };
    let endpoints: Vec<String> = std::iter::once(setup.host_service)
        .chain(setup.host_replicas.iter().copied())
        .map(endpoint)
        .collect();
    y = replace_once(
        &y,
        "        - endpoint:\n            address:\n              socket_address: { address: 127.0.0.1, port_value: 7000 }",
        &endpoints.join("\n"),
    )?;
    replace_once(
        &y,
        &format!("path: {ECDS_FILE}"),
        &format!("path: {ECDS_FILE}"),
    )?;
    replace_once(
        &y,
        &format!("watched_directory: {{ path: {ECDS_DIR} }}"),
        &format!("watched_directory: {{ path: {ECDS_DIR} }}"),
    )?;
    let shim = setup.shim;
    let mut cfg = EnvoyConfig {
        bootstrap: y,
        guard: shipped_resource(shim)?,
        shim,
    };
    let seed = shim.seed();
    let filename = cfg
        .typed_config_mut()
        .pointer_mut(shim.module_pointer())
        .ok_or_else(|| HarnessError::Config(format!("{seed}: no module path")))?;
    if filename != shim.shipped_module() {
        return Err(HarnessError::Config(format!(
            "{seed}: the module is {filename}, expected {}",
            shim.shipped_module()
        )));
    }
    *filename = module.display().to_string().into();
    if cfg.plugin_json().is_none() {
        return Err(HarnessError::Config(format!(
            "{seed}: no plugin configuration string"
        )));
    }
    if let Some(json) = &setup.plugin_config {
        if let Some(slot) = cfg.typed_config_mut().pointer_mut(shim.plugin_pointer()) {
            *slot = json.clone().into();
        }
    }
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_shipped_config() {
        let shipped = shipped_envoy_yaml().unwrap();
        let setup = EnvoySetup::new(
            "127.0.0.1:15000".parse().unwrap(),
            "127.0.0.1:17000".parse().unwrap(),
        )
        .plugin_config(
            r#"{"mode": "strict", "fallback_twiml": "<Response><Say>it's</Say></Response>"}"#,
        );
        let mut c = render_envoy_config(&shipped, &setup, Path::new("/abs/guard.wasm")).unwrap();
        let y = &c.bootstrap;
        assert!(y.contains("{ address: 127.0.0.1, port_value: 15000 }"));
        assert!(y.contains("{ address: 127.0.0.1, port_value: 17000 }"));
        assert_eq!(y.matches("port_value: 0 }").count(), 2);
        assert!(!y.contains("9901") && !y.contains("8080"));
        assert!(y.contains(&format!("path: {ECDS_FILE}")));
        assert_eq!(
            c.guard_config_mut()["vm_config"]["code"]["local"]["filename"],
            "/abs/guard.wasm"
        );
        assert_eq!(
            c.plugin_json(),
            Some(r#"{"mode": "strict", "fallback_twiml": "<Response><Say>it's</Say></Response>"}"#)
        );
        // Without a plugin config the shipped one stays.
        let c = render_envoy_config(
            &shipped,
            &EnvoySetup::new(setup.backend, setup.host_service),
            Path::new("/w.wasm"),
        )
        .unwrap();
        let seed = shipped_guard_resource().unwrap();
        assert_eq!(
            c.plugin_json(),
            seed["resources"][0]["typed_config"]["config"]["configuration"]["value"].as_str()
        );
        assert!(c
            .plugin_json()
            .unwrap()
            .contains("\"auth_token_env\": \"TWILIO_AUTH_TOKEN\""));
    }

    #[test]
    fn a_config_the_harness_cannot_map_is_an_error() {
        let setup = EnvoySetup::new(
            "127.0.0.1:1".parse().unwrap(),
            "127.0.0.1:2".parse().unwrap(),
        );
        let err = render_envoy_config("admin: {}", &setup, Path::new("/w")).unwrap_err();
        assert!(err.to_string().contains("exactly once"), "{err}");
    }
}
