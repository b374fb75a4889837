//! The configuration's shared vocabulary: the error every layer of configuration reports, and the
//! syntax checks (URLs, path prefixes, media types) that both the main configuration and its
//! `signature` object apply. A leaf: it imports nothing from the crate, so `config` and
//! `signature` can both build on it without importing each other.

/// A configuration the filter refuses, naming the key at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("plugin configuration is not valid JSON: {0}")]
    Json(String),
    #[error("plugin configuration must be a JSON object")]
    NotObject,
    /// A top-level key the filter does not know; the message lists the ones it does.
    #[error("{message}")]
    UnknownField { field: String, message: String },
    #[error("field `{field}`: {message}")]
    Field { field: String, message: String },
}

impl ConfigError {
    /// The offending top-level key, when the problem is one key.
    pub fn field(&self) -> Option<&str> {
        match self {
            ConfigError::UnknownField { field, .. } | ConfigError::Field { field, .. } => {
                Some(field)
            }
            ConfigError::Json(_) | ConfigError::NotObject => None,
        }
    }
}

/// A [`ConfigError::Field`] for `field`.
pub fn bad(field: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Field {
        field: field.to_string(),
        message: message.into(),
    }
}

/// An absolute http(s) URL with a host and no whitespace: Twilio will call it, so a relative or
/// mistyped URL must be caught here, not on a live call.
pub fn is_absolute_url(s: &str) -> bool {
    let rest = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"));
    let Some(rest) = rest else { return false };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit('@').next().unwrap_or("");
    !host.is_empty()
        && !host.starts_with(':')
        && !s.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// A path prefix as configured: starts with `/`, no query or fragment, no whitespace.
pub fn valid_path(p: &str) -> bool {
    p.starts_with('/') && !p.contains(['?', '#']) && !p.chars().any(|c| c.is_whitespace())
}

/// `type/subtype` of RFC 9110 tokens, without parameters.
pub fn valid_media_type(t: &str) -> bool {
    let mut parts = t.split('/');
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
    };
    matches!((parts.next(), parts.next(), parts.next()), (Some(a), Some(b), None) if token(a) && token(b))
}

/// A rule's host: a DNS name or IP (`voice.example.com`, `127.0.0.1`), or `*.` and a name for
/// every name under it. Lowercase, no port, no whitespace.
pub fn valid_host_pattern(h: &str) -> bool {
    let name = h.strip_prefix("*.").unwrap_or(h);
    !name.is_empty()
        && !name.starts_with('.')
        && !name.ends_with('.')
        && !name.contains("..")
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
}
