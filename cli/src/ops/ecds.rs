//! The guard's ECDS resource file: read the one Envoy watches, swap in a plugin configuration
//! the filter's own parser accepts, and rename the result into place under a new
//! `version_info`. Envoy only notices a file moved into the watched directory; an overwrite in
//! place is never seen.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// The file Envoy reads (`path_config_source.path` in the shipped `envoy.yaml`), inside the
/// watched directory.
pub const RESOURCE_FILE: &str = "twiml_guard.json";

/// The key the CLI writes the new `version_info` into, so the filter's configure log line and
/// Envoy's `version_text` carry the same version.
pub const VERSION_KEY: &str = "config_version";

#[derive(Debug, thiserror::Error)]
pub enum EcdsError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not an ECDS resource file the guard can use: {why}")]
    Shape { path: PathBuf, why: String },
    #[error("{what} is not valid JSON: {why}")]
    Json { what: String, why: String },
    #[error("refused, Envoy would refuse it too: {0}")]
    Invalid(#[from] twiml_guard_edge::config::ConfigError),
    #[error(
        "refused, Envoy would refuse it too: field `signature`: environment variable {name} is \
         not passed to the VM: list it in vm_config.environment_variables.host_env_keys of {path}"
    )]
    EnvNotPassed { name: String, path: PathBuf },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> EcdsError + '_ {
    move |source| EcdsError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The resource file as read: the whole document, and where it came from.
#[derive(Debug, Clone)]
pub struct Resource {
    pub path: PathBuf,
    pub doc: Value,
}

impl Resource {
    /// Read `DIR/twiml_guard.json`.
    pub fn load(dir: &Path) -> Result<Resource, EcdsError> {
        let path = dir.join(RESOURCE_FILE);
        let text = fs::read_to_string(&path).map_err(io(&path))?;
        let doc: Value = serde_json::from_str(&text).map_err(|e| EcdsError::Shape {
            path: path.clone(),
            why: format!("not JSON: {e}"),
        })?;
        let r = Resource { path, doc };
        r.plugin_json()?;
        Ok(r)
    }

    fn shape(&self, why: impl Into<String>) -> EcdsError {
        EcdsError::Shape {
            path: self.path.clone(),
            why: why.into(),
        }
    }

    /// `version_info` as written (empty when absent).
    pub fn version(&self) -> String {
        match &self.doc["version_info"] {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            _ => String::new(),
        }
    }

    /// Whether the resource loads the native shim (a `DynamicModuleFilter`) rather than the
    /// proxy-wasm one: the two keep the plugin JSON in different places.
    pub fn is_native(&self) -> bool {
        self.doc["resources"][0]["typed_config"]["@type"] == NATIVE_TYPE
    }

    /// Where the plugin configuration string is: `resources[0].typed_config.config.configuration
    /// .value` for the wasm filter, `resources[0].typed_config.filter_config.value` for the
    /// native one.
    fn plugin_pointer(&self) -> &'static str {
        if self.is_native() {
            "/resources/0/typed_config/filter_config/value"
        } else {
            "/resources/0/typed_config/config/configuration/value"
        }
    }

    /// The variable names the Wasm entry passes into the VM (`host_env_keys` and the keys of
    /// `key_values` under `vm_config.environment_variables`).
    pub fn vm_env_names(&self) -> Vec<String> {
        let vars = &self.doc["resources"][0]["typed_config"]["config"]["vm_config"]
            ["environment_variables"];
        let listed = vars["host_env_keys"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(String::from));
        let inline = vars["key_values"]
            .as_object()
            .into_iter()
            .flat_map(|m| m.keys().cloned());
        listed.chain(inline).collect()
    }

    /// The plugin configuration string.
    pub fn plugin_json(&self) -> Result<&str, EcdsError> {
        let resources = self.doc["resources"]
            .as_array()
            .ok_or_else(|| self.shape("no `resources` list"))?;
        let [resource] = resources.as_slice() else {
            return Err(self.shape(format!(
                "`resources` holds {} entries, the guard's file holds one",
                resources.len()
            )));
        };
        if resource["name"] != "twiml_guard" {
            return Err(self.shape("the resource is not named `twiml_guard`"));
        }
        let pointer = self.plugin_pointer();
        self.doc
            .pointer(pointer)
            .and_then(Value::as_str)
            .ok_or_else(|| {
                let path = pointer
                    .trim_start_matches("/resources/0/")
                    .replace('/', ".");
                self.shape(format!("no string at resources[0].{path}"))
            })
    }

    fn plugin_slot(&mut self) -> Option<&mut Value> {
        let pointer = self.plugin_pointer();
        self.doc.pointer_mut(pointer)
    }
}

/// The `@type` of the native shim's filter entry.
pub const NATIVE_TYPE: &str =
    "type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter";

/// The version after `current`: the next integer when it is one (the CLI's own versions are),
/// else the Unix time in seconds, which is larger than any version the CLI wrote before.
pub fn next_version(current: &str) -> String {
    match current.trim().parse::<u64>() {
        Ok(n) => n.saturating_add(1).to_string(),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(1)
            .to_string(),
    }
}

/// Parse `text` as a plugin configuration object (as an operator wrote it).
pub fn plugin_object(text: &str, what: &str) -> Result<serde_json::Map<String, Value>, EcdsError> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(twiml_guard_edge::config::ConfigError::NotObject.into()),
        Err(e) => Err(EcdsError::Json {
            what: what.to_string(),
            why: e.to_string(),
        }),
    }
}

/// The plugin configuration as Envoy will hand it to the filter, checked by the filter's own
/// parser: the exact bytes, so what passes here passes there.
pub fn checked_plugin_json(
    mut plugin: serde_json::Map<String, Value>,
    version: &str,
) -> Result<String, EcdsError> {
    plugin.insert(VERSION_KEY.into(), Value::String(version.to_string()));
    let text = Value::Object(plugin).to_string();
    twiml_guard_edge::config::parse(text.as_bytes())?;
    Ok(text)
}

/// The secrets a configuration names are read from the VM's environment, which holds only what
/// the Wasm entry passes in: a name it does not pass would be refused by Envoy at load. (Whether
/// Envoy's own environment has the variable, only Envoy can tell.)
pub fn check_env_passed(resource: &Resource, plugin_json: &str) -> Result<(), EcdsError> {
    let cfg = twiml_guard_edge::config::parse(plugin_json.as_bytes())?;
    let Some(sig) = cfg.signature else {
        return Ok(());
    };
    // The native module reads Envoy's own environment: nothing to pass.
    if resource.is_native() {
        return Ok(());
    }
    let passed = resource.vm_env_names();
    let needed = std::iter::once(&sig.auth_token_env).chain(sig.shared_key_env.as_ref());
    for name in needed {
        if !passed.contains(name) {
            return Err(EcdsError::EnvNotPassed {
                name: name.clone(),
                path: resource.path.clone(),
            });
        }
    }
    Ok(())
}

/// What was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub previous: String,
    pub version: String,
    pub path: PathBuf,
}

/// Replace the plugin configuration in `dir`'s resource with `plugin` (validated first), under
/// the next version, and rename it into place.
pub fn apply(dir: &Path, plugin: serde_json::Map<String, Value>) -> Result<Applied, EcdsError> {
    let mut resource = Resource::load(dir)?;
    let previous = resource.version();
    let version = next_version(&previous);
    let text = checked_plugin_json(plugin, &version)?;
    check_env_passed(&resource, &text)?;
    let path = resource.path.clone();
    let shape = resource.shape("no plugin configuration slot");
    *resource.plugin_slot().ok_or(shape)? = Value::String(text);
    resource.doc["version_info"] = Value::String(version.clone());
    write_atomically(&path, &resource.doc)?;
    Ok(Applied {
        previous,
        version,
        path,
    })
}

/// Write next to `path` (same directory, so the same filesystem), flush to disk, then
/// `rename(2)` over it: Envoy sees one complete file appear, never a half-written one.
pub fn write_atomically(path: &Path, doc: &Value) -> Result<(), EcdsError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(".{RESOURCE_FILE}.{}.tmp", std::process::id()));
    let mut text = serde_json::to_string_pretty(doc).map_err(|e| EcdsError::Json {
        what: "the resource".into(),
        why: e.to_string(),
    })?;
    text.push('\n');
    let written = (|| {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(io(&tmp)(e));
    }
    fs::rename(&tmp, path).map_err(|e| {
        let _ = fs::remove_file(&tmp);
        io(path)(e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed(dir: &Path, version: &str, plugin: &str) {
        let doc = serde_json::json!({
            "version_info": version,
            "resources": [{
                "@type": "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig",
                "name": "twiml_guard",
                "typed_config": {"config": {"vm_config": {"vm_id": "twiml_guard"},
                    "configuration": {"value": plugin}}}
            }]
        });
        fs::write(dir.join(RESOURCE_FILE), doc.to_string()).unwrap();
    }

    #[test]
    fn apply_validates_versions_and_keeps_the_envelope() {
        let dir = tempfile::tempdir().unwrap();
        seed(dir.path(), "7", r#"{"mode": "rewrite"}"#);
        let plugin = plugin_object(r#"{"mode": "strict", "max_body_bytes": 1000}"#, "f").unwrap();
        let applied = apply(dir.path(), plugin).unwrap();
        assert_eq!(
            (applied.previous.as_str(), applied.version.as_str()),
            ("7", "8")
        );
        let r = Resource::load(dir.path()).unwrap();
        assert_eq!(r.version(), "8");
        let got: Value = serde_json::from_str(r.plugin_json().unwrap()).unwrap();
        assert_eq!(
            got,
            serde_json::json!({"mode": "strict", "max_body_bytes": 1000, "config_version": "8"})
        );
        assert_eq!(
            r.doc["resources"][0]["typed_config"]["config"]["vm_config"]["vm_id"],
            "twiml_guard"
        );
        // Nothing is left behind but the resource.
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, [RESOURCE_FILE]);
    }

    #[test]
    fn a_bad_field_is_refused_and_the_file_is_untouched() {
        let dir = tempfile::tempdir().unwrap();
        seed(dir.path(), "3", r#"{"mode": "rewrite"}"#);
        let before = fs::read(dir.path().join(RESOURCE_FILE)).unwrap();
        let plugin = plugin_object(r#"{"mode": "stirct"}"#, "f").unwrap();
        let err = apply(dir.path(), plugin).unwrap_err();
        assert!(
            matches!(&err, EcdsError::Invalid(e) if e.field() == Some("mode")),
            "{err}"
        );
        assert!(
            err.to_string()
                .contains("field `mode`: unknown variant `stirct`"),
            "{err}"
        );
        assert_eq!(fs::read(dir.path().join(RESOURCE_FILE)).unwrap(), before);
        assert!(matches!(
            plugin_object("[1]", "f").unwrap_err(),
            EcdsError::Invalid(twiml_guard_edge::config::ConfigError::NotObject)
        ));
        assert!(plugin_object("{", "f.json")
            .unwrap_err()
            .to_string()
            .starts_with("f.json is not valid JSON"));
    }

    #[test]
    fn a_secret_the_vm_is_not_given_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        seed(dir.path(), "1", "{}");
        let mut r = Resource::load(dir.path()).unwrap();
        r.doc["resources"][0]["typed_config"]["config"]["vm_config"]["environment_variables"] =
            serde_json::json!({"host_env_keys": ["TWILIO_AUTH_TOKEN"], "key_values": {"K2": "v"}});
        write_atomically(&r.path, &r.doc).unwrap();
        let signed = |extra: &str| {
            plugin_object(
                &format!(r#"{{"signature": {{"public_base_url": "https://h"{extra}}}}}"#),
                "f",
            )
            .unwrap()
        };
        apply(dir.path(), signed("")).unwrap();
        apply(dir.path(), signed(r#", "shared_key_env": "K2""#)).unwrap();
        let err = apply(dir.path(), signed(r#", "shared_key_env": "K3""#)).unwrap_err();
        assert!(
            err.to_string()
                .contains("field `signature`: environment variable K3 is not passed to the VM"),
            "{err}"
        );
        assert_eq!(Resource::load(dir.path()).unwrap().version(), "3");
    }

    #[test]
    fn a_file_that_is_not_the_guards_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(RESOURCE_FILE), r#"{"resources": []}"#).unwrap();
        let err = Resource::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("`resources` holds 0 entries"), "{err}");
        let err = Resource::load(&dir.path().join("nope"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("No such file"), "{err}");
    }

    #[test]
    fn versions_count_up() {
        assert_eq!(next_version("1"), "2");
        assert_eq!(next_version(" 41 "), "42");
        assert!(next_version("v1").parse::<u64>().unwrap() > 1_700_000_000);
        assert!(next_version("").parse::<u64>().unwrap() > 1_700_000_000);
    }
}
