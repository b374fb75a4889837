//! The media token step: the answer to a signed voice webhook leaves with a per-call token in each
//! `<Stream>` it opens (`twiml::media_token`), so the host accepts that call's streams and no
//! other's. Runs after the verdict, on whatever TwiML the verdict lets through.

use twiml::media_token;

use super::{coding, Effect, Encoding, Label, Outcome};
use crate::config::Config;

/// What a token is minted for: the call a signed webhook named, and the time (Unix seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaGrant<'a> {
    pub call_sid: &'a str,
    pub now_s: u64,
}

/// `outcome` with the media token added to the TwiML it lets through: the backend's own body
/// (`received`, as it came, possibly compressed) when kept, or the rewritten one. Unchanged without a
/// media key, without a grant (not a signed webhook), for refusals and fallbacks, and for a body
/// with no `<Stream>` to stamp.
pub fn stamp_media_token(
    cfg: &Config,
    mut outcome: Outcome,
    received: &[u8],
    enc: Encoding,
    grant: Option<MediaGrant<'_>>,
) -> Outcome {
    let (Some(grant), Some(sc)) = (grant, cfg.signature.as_ref()) else {
        return outcome;
    };
    let Some(key) = sc.media_key.as_deref() else {
        return outcome;
    };
    let wire: &[u8] = match (&outcome.label, &outcome.effect) {
        (Label::Clean | Label::Detected, Effect::Keep) => received,
        (Label::Rewritten, Effect::Replace(new)) => new,
        _ => return outcome,
    };
    let plain = coding::decode(enc, wire, cfg.max_body_bytes)
        .ok()
        .map(|p| p.into_owned());
    let expires_at = grant.now_s.saturating_add(sc.media_token_ttl_seconds);
    let token = media_token::mint(key.as_bytes(), grant.call_sid, expires_at);
    let Some(stamped) = plain.and_then(|p| media_token::insert(&p, &token)) else {
        return outcome;
    };
    let Ok(new_wire) = coding::encode(enc, &stamped) else {
        return outcome;
    };
    if outcome.after.is_some() {
        outcome.after = Some(stamped);
    }
    outcome.effect = Effect::Replace(new_wire);
    outcome.detail.push_str(" media_token=added");
    outcome
}

#[cfg(test)]
mod tests;
