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

/// Every key of the host's own sections with its kind, read off the type itself (the defaults,
/// serialized): a new field gets its variable without being listed anywhere. An optional key
/// serializes as `null`; every optional key of the host is text (a path, a URL, a secret), which
/// `optional_keys_are_text` checks.
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
                serde_json::Value::Object(_) if !OPEN_SECTIONS.contains(&key.as_str()) => {
                    walk(&key, v, out)
                }
                serde_json::Value::Object(_) | serde_json::Value::Array(_) => {}
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

/// Sections owned by the engines: their keys are passed through and checked by the engines'
/// own config types.
const OPEN_SECTIONS: [&str; 2] = ["transcription", "extraction"];

/// The environment variable for a key: `pipeline.lease_ms` -> `HOST_SERVICE_PIPELINE_LEASE_MS`.
pub fn env_name(key: &str) -> String {
    format!("{ENV_PREFIX}{}", key.replace('.', "_").to_ascii_uppercase())
}

/// Every documented key and its variable (for `--print-keys` and the README).
pub fn env_names() -> Vec<(String, String)> {
    keys()
        .into_iter()
        .map(|(k, _)| {
            let env = env_name(&k);
            (k, env)
        })
        .collect()
}

/// The engines' default configuration as TOML, to learn the shape of their sections.
fn engine_defaults(section: &str) -> toml::Table {
    let value = match section {
        "transcription" => toml::Value::try_from(postcall::TranscriptionConfig::default()),
        _ => toml::Value::try_from(postcall::ExtractionConfig::default()),
    };
    match value {
        Ok(toml::Value::Table(t)) => t,
        _ => toml::Table::new(),
    }
}

/// A variable's text as the type of the value it replaces; for a key with no default (unset
/// options), as TOML would read a bare value.
fn typed_like(default: Option<&toml::Value>, value: &str) -> toml::Value {
    match default {
        Some(toml::Value::String(_)) => toml::Value::String(value.to_owned()),
        Some(toml::Value::Integer(_)) => value
            .parse::<i64>()
            .map(toml::Value::Integer)
            .unwrap_or_else(|_| toml::Value::String(value.to_owned())),
        Some(toml::Value::Float(_)) => value
            .parse::<f64>()
            .map(toml::Value::Float)
            .unwrap_or_else(|_| toml::Value::String(value.to_owned())),
        Some(toml::Value::Boolean(_)) => value
            .parse::<bool>()
            .map(toml::Value::Boolean)
            .unwrap_or_else(|_| toml::Value::String(value.to_owned())),
        _ => {
            if let Ok(i) = value.parse::<i64>() {
                toml::Value::Integer(i)
            } else if let Ok(b) = value.parse::<bool>() {
                toml::Value::Boolean(b)
            } else {
                toml::Value::String(value.to_owned())
            }
        }
    }
}

/// Set the key `name` stands for; returns that key, dotted.
pub(super) fn apply_env(
    table: &mut toml::Table,
    name: &str,
    value: &str,
) -> Result<String, ConfigError> {
    let bad = |message: String| ConfigError::BadEnv {
        name: name.to_owned(),
        message,
    };
    let known = keys().into_iter().find(|(k, _)| env_name(k) == name);
    let (path, value) = match known {
        Some((key, kind)) => {
            let v = match kind {
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
            (key.split('.').map(str::to_owned).collect::<Vec<_>>(), v)
        }
        None => {
            let rest = &name[ENV_PREFIX.len()..];
            let section = OPEN_SECTIONS
                .iter()
                .find(|s| rest.starts_with(&format!("{}_", s.to_ascii_uppercase())))
                .ok_or_else(|| ConfigError::UnknownEnv(name.to_owned()))?;
            let key = rest[section.len() + 1..].to_ascii_lowercase();
            // The engines' keys are not listed here: their shape comes from their defaults
            // (`HOST_SERVICE_TRANSCRIPTION_WHISPER_MODEL_DIR` is `transcription.whisper.model_dir`)
            // and a value takes the type of the default it replaces.
            let defaults = engine_defaults(section);
            let sub = defaults
                .iter()
                .filter(|(_, v)| v.is_table())
                .map(|(k, _)| k)
                .find(|k| key.starts_with(&format!("{k}_")));
            let (path, default) = match sub {
                Some(sub) => {
                    let leaf = key[sub.len() + 1..].to_owned();
                    let default = defaults.get(sub).and_then(|t| t.get(&leaf)).cloned();
                    (vec![section.to_string(), sub.clone(), leaf], default)
                }
                None => {
                    let default = defaults.get(&key).cloned();
                    (vec![section.to_string(), key], default)
                }
            };
            (path, typed_like(default.as_ref(), value))
        }
    };
    let mut node = table;
    for part in &path[..path.len() - 1] {
        let entry = node
            .entry(part.clone())
            .or_insert_with(|| toml::Value::Table(Default::default()));
        node = entry
            .as_table_mut()
            .ok_or_else(|| bad(format!("{part} is not a table in the config file")))?;
    }
    node.insert(path[path.len() - 1].clone(), value);
    Ok(path.join("."))
}
