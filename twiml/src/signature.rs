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
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

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
    use std::fmt::Write as _;
    let digest = Sha256::digest(body);
    let mut out = String::with_capacity(64);
    for b in digest {
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

/// Decode an `application/x-www-form-urlencoded` body (or a query string) into name/value pairs,
/// in order, repeats kept. `+` is a space, `%XX` is a byte, a malformed escape stays literal,
/// invalid UTF-8 becomes U+FFFD, a pair without `=` has an empty value, empty pairs are skipped.
/// Never fails: what Twilio signed is what Twilio sent, and a mangled body just fails to match.
pub fn parse_form(body: &[u8]) -> Vec<(String, String)> {
    body.split(|&b| b == b'&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = match pair.iter().position(|&b| b == b'=') {
                Some(eq) => {
                    let (name, rest) = pair.split_at(eq);
                    (name, rest.get(1..).unwrap_or_default())
                }
                None => (pair, &[][..]),
            };
            (percent_decode(name), percent_decode(value))
        })
        .collect()
}

fn percent_decode(input: &[u8]) -> String {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while let Some(&b) = input.get(i) {
        match b {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => {
                let hi = input.get(i + 1).and_then(|&c| hex_value(c));
                let lo = input.get(i + 2).and_then(|&c| hex_value(c));
                if let (Some(hi), Some(lo)) = (hi, lo) {
                    out.push(hi << 4 | lo);
                    i += 3;
                } else {
                    out.push(b'%');
                    i += 1;
                }
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    match String::from_utf8(out) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    }
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// The first non-empty value of query parameter `name` in `url`, decoded.
fn query_value(url: &str, name: &str) -> Option<String> {
    let query = split_url(url).query;
    parse_form(query.as_bytes())
        .into_iter()
        .find(|(k, v)| k == name && !v.is_empty())
        .map(|(_, v)| v)
}

// === URL variants ===

/// A URL split the way Python's `urllib.parse.urlsplit` splits it, which is what Twilio's
/// validator normalises through.
#[derive(Debug, Clone, PartialEq, Eq)]
struct UrlParts {
    scheme: String,
    netloc: Option<String>,
    path: String,
    query: String,
    fragment: String,
}

/// The URLs a signature is checked against: the URL with its port removed, with the scheme's
/// default port added, and exactly as given, without duplicates.
pub fn url_variants(url: &str) -> Vec<String> {
    let parts = split_url(url);
    let mut out: Vec<String> = Vec::with_capacity(3);
    let mut push = |u: String| {
        if !out.contains(&u) {
            out.push(u);
        }
    };
    match parts.netloc.as_deref().map(split_port) {
        Some(HostPort::Port { host, .. }) => {
            push(join_url(&parts, Some(&host)));
            push(join_url(&parts, parts.netloc.as_deref()));
        }
        Some(HostPort::NoPort) => {
            push(join_url(&parts, parts.netloc.as_deref()));
            let port = default_port(&parts.scheme);
            let netloc = format!("{}:{port}", parts.netloc.as_deref().unwrap_or(""));
            push(join_url(&parts, Some(&netloc)));
        }
        Some(HostPort::Invalid) | None => push(join_url(&parts, parts.netloc.as_deref())),
    }
    push(url.to_owned());
    out
}

fn default_port(scheme: &str) -> u16 {
    match scheme {
        "https" | "wss" => 443,
        _ => 80,
    }
}

enum HostPort {
    /// `host` is the netloc without its `:port` (userinfo kept).
    Port {
        host: String,
    },
    NoPort,
    /// A port that is not a number in 1..=65535: no variants are made.
    Invalid,
}

fn split_port(netloc: &str) -> HostPort {
    let (userinfo, hostinfo) = match netloc.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, netloc),
    };
    // An IPv6 literal holds colons of its own: the port comes after the `]`.
    let search_from = hostinfo.find(']').unwrap_or(0);
    let colon = hostinfo
        .get(search_from..)
        .and_then(|tail| tail.find(':'))
        .map(|i| i + search_from);
    let Some(colon) = colon else {
        return HostPort::NoPort;
    };
    let (host, port) = hostinfo.split_at(colon);
    let port = port.get(1..).unwrap_or("");
    if port.is_empty() {
        return HostPort::NoPort;
    }
    let valid =
        port.bytes().all(|b| b.is_ascii_digit()) && matches!(port.parse::<u32>(), Ok(1..=65535));
    if !valid {
        return HostPort::Invalid;
    }
    let host = match userinfo {
        Some(u) => format!("{u}@{host}"),
        None => host.to_owned(),
    };
    HostPort::Port { host }
}

fn is_c0_or_space(c: char) -> bool {
    c <= ' '
}

fn split_url(url: &str) -> UrlParts {
    let cleaned: String = url
        .trim_start_matches(is_c0_or_space)
        .chars()
        .filter(|c| !matches!(c, '\t' | '\r' | '\n'))
        .collect();
    let mut rest = cleaned.as_str();

    let mut scheme = String::new();
    if let Some((candidate, after)) = rest.split_once(':') {
        let mut chars = candidate.chars();
        let starts_alpha = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
        let all_scheme_chars = candidate
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
        if starts_alpha && all_scheme_chars {
            scheme = candidate.to_ascii_lowercase();
            rest = after;
        }
    }

    let mut netloc = None;
    if let Some(after) = rest.strip_prefix("//") {
        let end = after.find(['/', '?', '#']).unwrap_or(after.len());
        let (n, r) = after.split_at(end);
        netloc = Some(n.to_owned());
        rest = r;
    }
    let (rest, fragment) = rest.split_once('#').unwrap_or((rest, ""));
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    UrlParts {
        scheme,
        netloc,
        path: path.to_owned(),
        query: query.to_owned(),
        fragment: fragment.to_owned(),
    }
}

/// Put a split URL back together as Python's `urlunsplit` does (an empty `?` or `#` is dropped).
fn join_url(parts: &UrlParts, netloc: Option<&str>) -> String {
    let mut url = String::new();
    let netloc_scheme = matches!(
        parts.scheme.as_str(),
        "http" | "https" | "ws" | "wss" | "ftp" | "file" | ""
    ) && !parts.scheme.is_empty();
    let has_netloc = netloc.is_some_and(|n| !n.is_empty());
    if !parts.scheme.is_empty() {
        url.push_str(&parts.scheme);
        url.push(':');
    }
    if has_netloc || (netloc_scheme && !parts.path.starts_with("//")) {
        url.push_str("//");
        url.push_str(netloc.unwrap_or(""));
        if !parts.path.is_empty() && !parts.path.starts_with('/') {
            url.push('/');
        }
    }
    url.push_str(&parts.path);
    if !parts.query.is_empty() {
        url.push('?');
        url.push_str(&parts.query);
    }
    if !parts.fragment.is_empty() {
        url.push('#');
        url.push_str(&parts.fragment);
    }
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "12345";
    const URL: &str = "https://mycompany.com/myapp.php?foo=1&bar=2";
    const URL_443: &str = "https://mycompany.com:443/myapp.php?foo=1&bar=2";
    const SIG: &str = "RSOYDt4T1cUTdK1PDd93/VVr8B8=";
    const SIG_443: &str = "kvajT1Ptam85bY51eRf/AJRuM3w=";
    const JSON_BODY: &str = r#"{"property": "value", "boolean": true}"#;
    const JSON_HASH: &str = "0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620";
    const JSON_SIG: &str = "a9nBmqA0ju/hNViExpshrM61xv4=";

    fn params() -> Vec<(String, String)> {
        [
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+14158675309"),
            ("Digits", "1234"),
            ("From", "+14158675309"),
            ("To", "+18005551212"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    fn keys() -> Keys {
        Keys {
            auth_token: Some(TOKEN.into()),
            shared_key: Some("shared-secret".into()),
        }
    }

    fn form<'a>(url: &'a str, params: &'a [(String, String)], sig: &'a str) -> Request<'a> {
        Request {
            url,
            body: Body::Form(params),
            signature: Some(sig),
            settings: None,
        }
    }

    #[test]
    fn computes_the_documented_vectors() {
        let p = params();
        assert_eq!(compute(URL, &p, TOKEN.as_bytes(), Algorithm::HmacSha1), SIG);
        assert_eq!(
            compute(URL_443, &p, TOKEN.as_bytes(), Algorithm::HmacSha1),
            SIG_443
        );
        let mut reversed = p.clone();
        reversed.reverse();
        assert_eq!(
            compute(URL, &reversed, TOKEN.as_bytes(), Algorithm::HmacSha1),
            SIG
        );
    }

    #[test]
    fn validates_the_documented_vectors_with_and_without_port() {
        let p = params();
        for (url, sig) in [
            (URL, SIG),
            (URL, SIG_443),
            (URL_443, SIG),
            (URL_443, SIG_443),
        ] {
            assert_eq!(
                validate(&form(url, &p, sig), &keys()),
                Ok(()),
                "{url} {sig}"
            );
        }
    }

    #[test]
    fn refuses_a_wrong_signature_param_or_url() {
        let p = params();
        assert_eq!(
            validate(&form(URL, &p, "RSOYDt4T1cUTdK1PDd93/VVr8B8X"), &keys()),
            Err(SignatureError::Mismatch)
        );
        let mut changed = params();
        changed[2].1 = "1235".into();
        assert_eq!(
            validate(&form(URL, &changed, SIG), &keys()),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            validate(
                &form("https://mycompany.com/myapp.php?foo=1&bar=3", &p, SIG),
                &keys()
            ),
            Err(SignatureError::Mismatch)
        );
        // Twilio's validator drops any explicit port, not only the default one.
        assert_eq!(
            validate(
                &form("https://mycompany.com:8443/myapp.php?foo=1&bar=2", &p, SIG),
                &keys()
            ),
            Ok(())
        );
        assert_eq!(
            validate(
                &form("https://mycompany.co/myapp.php?foo=1&bar=2", &p, SIG),
                &keys()
            ),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            validate(&form(URL, &p, ""), &keys()),
            Err(SignatureError::MissingSignature)
        );
        let none = Request {
            signature: None,
            ..form(URL, &p, SIG)
        };
        assert_eq!(
            validate(&none, &keys()),
            Err(SignatureError::MissingSignature)
        );
    }

    #[test]
    fn json_body_vector() {
        assert_eq!(body_sha256_hex(JSON_BODY.as_bytes()), JSON_HASH);
        let url = format!("{URL}&bodySHA256={JSON_HASH}");
        let no_params: &[(String, String)] = &[];
        assert_eq!(
            compute(&url, no_params, TOKEN.as_bytes(), Algorithm::HmacSha1),
            JSON_SIG
        );
        let req = Request {
            url: &url,
            body: Body::Raw(JSON_BODY.as_bytes()),
            signature: Some(JSON_SIG),
            settings: None,
        };
        assert_eq!(validate(&req, &keys()), Ok(()));
        let tampered = Request {
            body: Body::Raw(br#"{"property": "value", "boolean": false}"#),
            ..req
        };
        assert_eq!(
            validate(&tampered, &keys()),
            Err(SignatureError::BodyHashMismatch)
        );
        let unhashed = Request { url: URL, ..req };
        assert_eq!(
            validate(&unhashed, &keys()),
            Err(SignatureError::MissingBodyHash)
        );
    }

    #[test]
    fn sha256_with_the_shared_key() {
        let p = params();
        let sig = compute(URL, &p, b"shared-secret", Algorithm::HmacSha256);
        let settings = "key=webhooks_sharedkey_1,algorithm=HMAC_SHA256";
        let req = Request {
            settings: Some(settings),
            ..form(URL, &p, &sig)
        };
        assert_eq!(validate(&req, &keys()), Ok(()));
        // The SHA1 signature keyed by the auth token is not accepted in its place.
        let classic = Request {
            signature: Some(SIG),
            ..req
        };
        assert_eq!(validate(&classic, &keys()), Err(SignatureError::Mismatch));
        let no_shared = Keys {
            shared_key: None,
            ..keys()
        };
        assert_eq!(
            validate(&req, &no_shared),
            Err(SignatureError::NoKey(Algorithm::HmacSha256))
        );
        let empty_shared = Keys {
            shared_key: Some(String::new()),
            ..keys()
        };
        assert_eq!(
            validate(&req, &empty_shared),
            Err(SignatureError::NoKey(Algorithm::HmacSha256))
        );
    }

    #[test]
    fn parses_the_settings_header() {
        let s = parse_settings(Some("key=abc , algorithm = hmac_sha256")).unwrap();
        assert_eq!(s.algorithm, Algorithm::HmacSha256);
        assert_eq!(s.key_id.as_deref(), Some("abc"));
        assert_eq!(parse_settings(None).unwrap().algorithm, Algorithm::HmacSha1);
        assert_eq!(
            parse_settings(Some("key=abc,algorithm="))
                .unwrap()
                .algorithm,
            Algorithm::HmacSha1
        );
        assert_eq!(
            parse_settings(Some("algorithm=HMAC_MD5")),
            Err(SignatureError::UnsupportedAlgorithm("HMAC_MD5".into()))
        );
    }

    #[test]
    fn repeated_names_contribute_each_distinct_value_sorted() {
        let p: Vec<(String, String)> = [("b", "2"), ("a", "z"), ("a", "y"), ("a", "z")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(signing_string("u", &p), "uayazb2");
    }

    #[test]
    fn websocket_with_and_without_trailing_slash() {
        let url = "wss://voice.example.com/media";
        let no_params: &[(String, String)] = &[];
        let sig = compute(url, no_params, TOKEN.as_bytes(), Algorithm::HmacSha1);
        let slash_sig = compute(
            "wss://voice.example.com/media/",
            no_params,
            TOKEN.as_bytes(),
            Algorithm::HmacSha1,
        );
        assert_eq!(validate_websocket(url, Some(&sig), None, &keys()), Ok(()));
        assert_eq!(
            validate_websocket(url, Some(&slash_sig), None, &keys()),
            Ok(())
        );
        assert_eq!(
            validate_websocket("wss://voice.example.com/media/", Some(&sig), None, &keys()),
            Ok(())
        );
        assert_eq!(
            validate_websocket("wss://voice.example.com/other", Some(&sig), None, &keys()),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            validate_websocket(url, None, None, &keys()),
            Err(SignatureError::MissingSignature)
        );
    }

    #[test]
    fn url_variants_follow_twilios_port_quirk() {
        assert_eq!(
            url_variants("https://a.com/x?y=1"),
            ["https://a.com/x?y=1", "https://a.com:443/x?y=1"]
        );
        assert_eq!(
            url_variants("http://a.com:8080/x"),
            ["http://a.com/x", "http://a.com:8080/x"]
        );
        assert_eq!(
            url_variants("wss://a.com/media"),
            ["wss://a.com/media", "wss://a.com:443/media"]
        );
        assert_eq!(
            url_variants("HTTPS://a.com/x?"),
            ["https://a.com/x", "https://a.com:443/x", "HTTPS://a.com/x?"]
        );
        assert_eq!(
            url_variants("https://[::1]:8443/x"),
            ["https://[::1]/x", "https://[::1]:8443/x"]
        );
        assert_eq!(
            url_variants("https://a.com:99999/x"),
            ["https://a.com:99999/x"]
        );
        assert_eq!(url_variants(""), [""]);
    }

    #[test]
    fn parses_form_bodies() {
        let p = parse_form(b"a=1&b=x+y&c=%41%zz%4&&d&e=&caf%C3%A9=%E2%9C%93&bad=%FF");
        let got: Vec<(&str, &str)> = p.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(
            got,
            [
                ("a", "1"),
                ("b", "x y"),
                ("c", "A%zz%4"),
                ("d", ""),
                ("e", ""),
                ("café", "✓"),
                ("bad", "\u{FFFD}"),
            ]
        );
        assert!(parse_form(b"").is_empty());
    }

    #[test]
    fn keys_debug_hides_secrets() {
        let shown = format!("{:?}", keys());
        assert!(!shown.contains(TOKEN), "{shown}");
        assert!(!shown.contains("shared-secret"), "{shown}");
    }
}
