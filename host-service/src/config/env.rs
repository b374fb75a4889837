//! The environment overlay: `HOST_SERVICE_<SECTION>_<KEY>` sets the key it names, typed as the
//! key's default; an unknown `HOST_SERVICE_*` variable is an error naming it.

use super::{Config, ConfigError};

pub const ENV_PREFIX: &str = "HOST_SERVICE_";
/// Variables with the prefix that are not configuration keys (read by the CLI itself).
pub(super) const ENV_NOT_KEYS: [&str; 2] = ["HOST_SERVICE_CONFIG", "HOST_SERVICE_LOG"];

/// What an environment variable's text must parse as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Str,
    Int,
    Bool,
}

/// Every key with its kind, read off the type itself (the defaults, serialized), the engines'
/// sections as much as the host's: a new field gets its variable without being listed
/// anywhere, typed as its default. An optional key serializes as `null`; every optional key is
/// text (a path, a URL, a secret, a language), which `optional_keys_are_text` checks.
pub(super) fn keys() -> Vec<(String, Kind)> {
    fn walk(prefix: &str, value: &serde_json::Value, out: &mut Vec<(String, Kind)>) {
        let serde_json::Value::Object(map) = value else {
            return;
        };
        for (name, v) in map {
            let key = if prefix.is_empty() {
                name.clone()
            } else {
                format!("{prefix}.{name}")
            };
            match v {
                serde_json::Value::Object(_) => walk(&key, v, out),
                serde_json::Value::Array(_) => {}
                serde_json::Value::Number(_) => out.push((key, Kind::Int)),
                serde_json::Value::Bool(_) => out.push((key, Kind::Bool)),
                serde_json::Value::String(_) | serde_json::Value::Null => {
                    out.push((key, Kind::Str))
                }
            }
        }
    }
    let mut out = Vec::new();
    if let Ok(defaults) = serde_json::to_value(Config::default()) {
        walk("", &defaults, &mut out);
    }
    out
}

/// The environment variable for a key: `pipeline.lease_ms` -> `HOST_SERVICE_PIPELINE_LEASE_MS`.
pub fn env_name(key: &str) -> String {
    format!("{ENV_PREFIX}{}", key.replace('.', "_").to_ascii_uppercase())
}

/// Every key and its variable (for `--print-keys` and the documented table).
pub fn env_names() -> Vec<(String, String)> {
    keys()
        .into_iter()
        .map(|(k, _)| {
            let env = env_name(&k);
            (k, env)
        })
        .collect()
}

/// Set the key `name` stands for, its text typed as the key's default; returns that key, dotted.
pub(super) fn apply_env(
    table: &mut toml::Table,
    name: &str,
    value: &str,
) -> Result<String, ConfigError> {
    let bad = |message: String| ConfigError::BadEnv {
        name: name.to_owned(),
        message,
    };
    let (key, kind) = keys()
        .into_iter()
        .find(|(k, _)| env_name(k) == name)
        .ok_or_else(|| ConfigError::UnknownEnv(name.to_owned()))?;
    let value = match kind {
        Kind::Str => toml::Value::String(value.to_owned()),
        Kind::Int => toml::Value::Integer(
            value
                .trim()
                .parse()
                .map_err(|_| bad(format!("{value:?} is not an integer")))?,
        ),
        Kind::Bool => toml::Value::Boolean(match value.trim() {
            "true" | "1" => true,
            "false" | "0" => false,
            _ => return Err(bad(format!("{value:?} is not true or false"))),
        }),
    };
    let path: Vec<&str> = key.split('.').collect();
    let mut node = table;
    for part in &path[..path.len() - 1] {
        let entry = node
            .entry(part.to_string())
            .or_insert_with(|| toml::Value::Table(Default::default()));
        node = entry
            .as_table_mut()
            .ok_or_else(|| bad(format!("{part} is not a table in the config file")))?;
    }
    node.insert(path[path.len() - 1].to_owned(), value);
    Ok(key)
}
