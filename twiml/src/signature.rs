//! Twilio request signatures (`X-Twilio-Signature`), computed and checked exactly as Twilio's own
//! `RequestValidator` does, so the Envoy filter and the host service share one implementation.
//!
//! The scheme: take the full URL Twilio requested (scheme through query string), append every form
//! parameter as name then value, sorted by name (byte order) with a repeated name contributing each
//! of its distinct values in sorted order, HMAC it and Base64 the digest. The secret and the hash
//! come from `X-Twilio-Webhooks-Signature-Settings`: absent (or without `algorithm=`) means
//! HMAC-SHA1 with the account auth token, `algorithm=HMAC_SHA256` means HMAC-SHA256 with a shared
//! key. JSON bodies are not signed as parameters: the URL carries `bodySHA256` (hex SHA-256 of the
//! raw body), the URL alone is signed and the hash is checked as well.
//!
//! Twilio is inconsistent about default ports, so a URL is accepted with the port removed or the
//! default port added, and every comparison is constant-time.
//!
//! Everything here runs inside Envoy's wasm VM on untrusted bytes: nothing may panic.

use std::fmt;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The request header carrying the signature.
pub const SIGNATURE_HEADER: &str = "x-twilio-signature";
/// The request header naming the key and algorithm of a shared-key signature.
pub const SETTINGS_HEADER: &str = "x-twilio-webhooks-signature-settings";
/// The query parameter holding the hex SHA-256 of a JSON body.
pub const BODY_SHA256_PARAM: &str = "bodySHA256";

/// Longest algorithm name echoed back in an error, so a hostile header cannot flood a log line.
const MAX_ECHOED_ALGORITHM: usize = 32;

/// The HMAC a request was signed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// The classic signature, keyed by the account auth token.
    HmacSha1,
    /// The newer signature, keyed by a webhook shared key.
    HmacSha256,
}

impl Algorithm {
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::HmacSha1 => "HMAC_SHA1",
            Algorithm::HmacSha256 => "HMAC_SHA256",
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What `X-Twilio-Webhooks-Signature-Settings` announced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureSettings {
    /// The shared key's id (`key=`), when given. Informational: one shared key is configured.
    pub key_id: Option<String>,
    pub algorithm: Algorithm,
}

/// Why a request's signature was refused. Never carries a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("no X-Twilio-Signature header")]
    MissingSignature,
    #[error("unsupported signature algorithm {0:?}")]
    UnsupportedAlgorithm(String),
    #[error("no secret configured for {0} signatures")]
    NoKey(Algorithm),
    #[error("raw (JSON) body but no bodySHA256 in the URL")]
    MissingBodyHash,
    #[error("bodySHA256 does not match the body")]
    BodyHashMismatch,
    #[error("signature does not match")]
    Mismatch,
}

impl SignatureError {
    /// A short stable name for counters and log fields.
    pub fn kind(&self) -> &'static str {
        match self {
            SignatureError::MissingSignature => "missing_signature",
            SignatureError::UnsupportedAlgorithm(_) => "unsupported_algorithm",
            SignatureError::NoKey(_) => "no_key",
            SignatureError::MissingBodyHash => "missing_body_hash",
            SignatureError::BodyHashMismatch => "body_hash_mismatch",
            SignatureError::Mismatch => "mismatch",
        }
    }
}

/// The secrets requests may be signed with. `Debug` never prints them.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Keys {
    /// The account auth token: the key of HMAC-SHA1 signatures.
    pub auth_token: Option<String>,
    /// The webhook shared key's secret: the key of HMAC-SHA256 signatures.
    pub shared_key: Option<String>,
}

impl Keys {
    pub fn key_for(&self, algorithm: Algorithm) -> Option<&str> {
        let key = match algorithm {
            Algorithm::HmacSha1 => self.auth_token.as_deref(),
            Algorithm::HmacSha256 => self.shared_key.as_deref(),
        };
        // An empty secret would make every signature forgeable.
        key.filter(|k| !k.is_empty())
    }
}

impl fmt::Debug for Keys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = |k: &Option<String>| if k.is_some() { "<set>" } else { "<unset>" };
        f.debug_struct("Keys")
            .field("auth_token", &shown(&self.auth_token))
            .field("shared_key", &shown(&self.shared_key))
            .finish()
    }
}

/// What was signed besides the URL.
#[derive(Debug, Clone, Copy)]
pub enum Body<'a> {
    /// No body (GET, or the WebSocket handshake): the URL alone is signed.
    None,
    /// Decoded form parameters, in any order, repeats allowed (see [`parse_form`]).
    Form(&'a [(String, String)]),
    /// A raw body (JSON): signed through `bodySHA256` in the URL.
    Raw(&'a [u8]),
}

/// One request as Twilio sent it. `url` is the public URL Twilio requested, never an internal one.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub url: &'a str,
    pub body: Body<'a>,
    /// The `X-Twilio-Signature` header value.
    pub signature: Option<&'a str>,
    /// The `X-Twilio-Webhooks-Signature-Settings` header value.
    pub settings: Option<&'a str>,
}

/// Parse `X-Twilio-Webhooks-Signature-Settings` (`key=<id>,algorithm=<name>`). No header, or no
/// non-empty `algorithm=`, means HMAC-SHA1; names are case-insensitive; any other name is refused.
pub fn parse_settings(header: Option<&str>) -> Result<SignatureSettings, SignatureError> {
    let mut key_id = None;
    let mut algorithm = None;
    for part in header.unwrap_or("").split(',') {
        let Some((name, value)) = part.split_once('=') else {
            continue;
        };
        let (name, value) = (name.trim(), value.trim());
        if value.is_empty() {
            continue;
        }
        if name == "algorithm" && algorithm.is_none() {
            algorithm = Some(value);
        } else if name == "key" && key_id.is_none() {
            key_id = Some(value.to_owned());
        }
    }
    let algorithm = match algorithm {
        None => Algorithm::HmacSha1,
        Some(a) if a.eq_ignore_ascii_case("HMAC_SHA1") => Algorithm::HmacSha1,
        Some(a) if a.eq_ignore_ascii_case("HMAC_SHA256") => Algorithm::HmacSha256,
        Some(a) => {
            let shown: String = a.chars().take(MAX_ECHOED_ALGORITHM).collect();
            return Err(SignatureError::UnsupportedAlgorithm(shown));
        }
    };
    Ok(SignatureSettings { key_id, algorithm })
}

/// The signature Twilio sends for `url` plus form `params`, keyed by `key`.
pub fn compute<K: AsRef<str>, V: AsRef<str>>(
    url: &str,
    params: &[(K, V)],
    key: &[u8],
    algorithm: Algorithm,
) -> String {
    let data = signing_string(url, params);
    let digest = match algorithm {
        Algorithm::HmacSha1 => hmac_digest::<Hmac<Sha1>>(key, data.as_bytes()),
        Algorithm::HmacSha256 => hmac_digest::<Hmac<Sha256>>(key, data.as_bytes()),
    };
    // HMAC takes keys of any length, so `None` cannot happen; an empty string never validates.
    digest
        .map(|d| base64::engine::general_purpose::STANDARD.encode(d))
        .unwrap_or_default()
}

/// The bytes that are signed: the URL, then each name and value, names sorted, a repeated name's
/// distinct values sorted.
fn signing_string<K: AsRef<str>, V: AsRef<str>>(url: &str, params: &[(K, V)]) -> String {
    let mut pairs: Vec<(&str, &str)> = params
        .iter()
        .map(|(k, v)| (k.as_ref(), v.as_ref()))
        .collect();
    // Byte order of UTF-8 is code point order, the order Twilio's libraries sort in.
    pairs.sort_unstable();
    pairs.dedup();
    let len = url.len() + pairs.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>();
    let mut s = String::with_capacity(len);
    s.push_str(url);
    for (k, v) in pairs {
        s.push_str(k);
        s.push_str(v);
    }
    s
}

fn hmac_digest<M: Mac + hmac::digest::KeyInit>(key: &[u8], data: &[u8]) -> Option<Vec<u8>> {
    let mut mac = <M as hmac::digest::KeyInit>::new_from_slice(key).ok()?;
    mac.update(data);
    Some(mac.finalize().into_bytes().to_vec())
}

/// Lowercase hex SHA-256 of a body, as `bodySHA256` carries it.
pub fn body_sha256_hex(body: &[u8]) -> String {
    hex(&Sha256::digest(body))
}

/// Lowercase hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        // Writing to a String cannot fail.
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// Constant-time equality (the length is not secret).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// Check a webhook's signature. `Ok(())` only when the signature matches `url` (as given, with
/// the default port removed, or with it added) and, for a raw body, `bodySHA256` matches too.
pub fn validate(req: &Request<'_>, keys: &Keys) -> Result<(), SignatureError> {
    let signature = req
        .signature
        .filter(|s| !s.is_empty())
        .ok_or(SignatureError::MissingSignature)?;
    let algorithm = parse_settings(req.settings)?.algorithm;
    let key = keys
        .key_for(algorithm)
        .ok_or(SignatureError::NoKey(algorithm))?;

    let no_params: &[(String, String)] = &[];
    let (params, body_hash_ok) = match req.body {
        Body::None => (no_params, true),
        Body::Form(params) => (params, true),
        Body::Raw(body) => match query_value(req.url, BODY_SHA256_PARAM) {
            Some(expected) => (
                no_params,
                constant_time_eq(body_sha256_hex(body).as_bytes(), expected.as_bytes()),
            ),
            None if body.is_empty() => (no_params, true),
            None => return Err(SignatureError::MissingBodyHash),
        },
    };

    let mut matched = false;
    for candidate in url_variants(req.url) {
        let computed = compute(&candidate, params, key.as_bytes(), algorithm);
        // Every candidate is computed and compared, matched or not.
        matched |=
            !computed.is_empty() && constant_time_eq(computed.as_bytes(), signature.as_bytes());
    }
    if !matched {
        Err(SignatureError::Mismatch)
    } else if !body_hash_ok {
        Err(SignatureError::BodyHashMismatch)
    } else {
        Ok(())
    }
}

/// Check a Media Streams WebSocket handshake, signed over the `wss://host/path` URL it connected
/// to. Twilio advises trying the URL with and without a trailing `/`, so both are accepted.
pub fn validate_websocket(
    url: &str,
    signature: Option<&str>,
    settings: Option<&str>,
    keys: &Keys,
) -> Result<(), SignatureError> {
    let request = |url| Request {
        url,
        body: Body::None,
        signature,
        settings,
    };
    let first = validate(&request(url), keys);
    if first != Err(SignatureError::Mismatch) {
        return first;
    }
    let toggled = match url.strip_suffix('/') {
        Some(stripped) => stripped.to_owned(),
        None => format!("{url}/"),
    };
    validate(&request(&toggled), keys)
}

mod url;

use url::query_value;
pub use url::{parse_form, url_variants};

#[cfg(test)]
mod tests;
