//! Per-call media tokens: the edge, which has seen a call's signed voice webhook, adds a short-lived
//! HMAC over the CallSid and an expiry to each `<Stream>` it lets through, and the host accepts a
//! stream's `start` only with a token for that same call. A captured WebSocket handshake is then
//! worth nothing for any other call. The format and the byte-exact insertion live here, so the
//! proxy-wasm filter, the native module and the npm package produce the same bytes.

use hmac::{Hmac, Mac};
use quick_xml::events::Event;
use quick_xml::Reader;
use sha2::Sha256;

use crate::signature::hex;

/// The `<Parameter>` name the token travels under; Twilio hands it back in
/// `start.customParameters`.
pub const PARAMETER: &str = "twiml_guard_token";

/// The token version, first in every token, so the format can change without ambiguity.
const VERSION: &str = "v1";

/// Twilio's limit on a `<Parameter>`: its name plus its value under 500 characters.
pub const TWILIO_PARAMETER_LIMIT: usize = 500;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("no media token")]
    Missing,
    #[error("media token is not v1.<expiry>.<hmac>")]
    Malformed,
    #[error("media token expired at {expired_at} (now {now})")]
    Expired { expired_at: u64, now: u64 },
    #[error("media token is not for this call")]
    Mismatch,
}

impl TokenError {
    /// A short stable name for counters and close reasons.
    pub fn kind(&self) -> &'static str {
        match self {
            TokenError::Missing => "media_token_missing",
            TokenError::Malformed => "media_token_malformed",
            TokenError::Expired { .. } => "media_token_expired",
            TokenError::Mismatch => "media_token_mismatch",
        }
    }
}

fn mac(key: &[u8], call_sid: &str, expires_at: u64) -> Option<Vec<u8>> {
    let mut mac = <Hmac<Sha256> as hmac::digest::KeyInit>::new_from_slice(key).ok()?;
    // The version and a separator that no CallSid holds keep one message from reading as another.
    mac.update(format!("twiml-guard media {VERSION}\n{call_sid}\n{expires_at}").as_bytes());
    Some(mac.finalize().into_bytes().to_vec())
}

/// The token for `call_sid`, valid until `expires_at` (Unix seconds): `v1.<expiry>.<hex hmac>`.
pub fn mint(key: &[u8], call_sid: &str, expires_at: u64) -> String {
    // HMAC takes keys of any length, so `None` cannot happen; an empty MAC never verifies.
    let digest = mac(key, call_sid, expires_at).unwrap_or_default();
    format!("{VERSION}.{expires_at}.{}", hex(&digest))
}

/// Check `token` (as `start.customParameters` carried it) for `call_sid` at `now` (Unix seconds).
pub fn verify(key: &[u8], call_sid: &str, token: Option<&str>, now: u64) -> Result<(), TokenError> {
    let token = token.ok_or(TokenError::Missing)?;
    let mut parts = token.split('.');
    let (Some(VERSION), Some(expiry), Some(given), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed);
    };
    if expiry.is_empty() || !expiry.bytes().all(|b| b.is_ascii_digit()) || given.len() != 64 {
        return Err(TokenError::Malformed);
    }
    let expires_at: u64 = expiry.parse().map_err(|_| TokenError::Malformed)?;
    let expected = hex(&mac(key, call_sid, expires_at).unwrap_or_default());
    if !crate::signature::constant_time_eq(expected.as_bytes(), given.as_bytes()) {
        return Err(TokenError::Mismatch);
    }
    if now > expires_at {
        return Err(TokenError::Expired {
            expired_at: expires_at,
            now,
        });
    }
    Ok(())
}

/// `body` with `<Parameter name="{PARAMETER}" value="{token}"/>` as the first child of every
/// `<Stream>` under a top-level `<Connect>` or `<Start>` of a `<Response>` root; every other byte
/// is kept as it is. A self-closing `<Stream .../>` becomes `<Stream ...>` + the parameter +
/// `</Stream>`. `None` when there is no such `<Stream>`, or the body does not parse: the body is
/// then left alone. The token is ASCII with no XML metacharacter, so it needs no escaping.
pub fn insert(body: &[u8], token: &str) -> Option<Vec<u8>> {
    let param = format!("<Parameter name=\"{PARAMETER}\" value=\"{token}\"/>");
    // (offset, bytes to drop there, what to put there)
    let mut edits: Vec<(usize, usize, String)> = Vec::new();
    let mut reader = Reader::from_reader(body);
    let mut path: Vec<Vec<u8>> = Vec::new();
    loop {
        let before = usize::try_from(reader.buffer_position()).ok()?;
        let event = reader.read_event().ok()?;
        let after = usize::try_from(reader.buffer_position()).ok()?;
        let under_verb = |path: &[Vec<u8>]| {
            matches!(path, [root, verb] if root == b"Response"
                && (verb == b"Connect" || verb == b"Start"))
        };
        match event {
            Event::Start(e) => {
                if e.name().as_ref() == b"Stream" && under_verb(&path) {
                    edits.push((after, 0, param.clone()));
                }
                path.push(e.name().as_ref().to_vec());
            }
            Event::Empty(e) if e.name().as_ref() == b"Stream" && under_verb(&path) => {
                // The tag ends in `/>`: drop those two bytes, close the element after the
                // parameter.
                let slash = after.checked_sub(2).filter(|s| *s >= before)?;
                edits.push((slash, 2, format!(">{param}</Stream>")));
            }
            Event::End(_) => {
                path.pop();
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if edits.is_empty() {
        return None;
    }
    let extra: usize = edits.iter().map(|(_, _, s)| s.len()).sum();
    let mut out = Vec::with_capacity(body.len() + extra);
    let mut at = 0;
    for (offset, drop, text) in edits {
        out.extend_from_slice(body.get(at..offset)?);
        out.extend_from_slice(text.as_bytes());
        at = offset + drop;
    }
    out.extend_from_slice(body.get(at..)?);
    Some(out)
}

#[cfg(test)]
mod tests;
