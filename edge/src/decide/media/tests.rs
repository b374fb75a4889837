//! The media token step, natively: a signed webhook's clean or rewritten answer gets the token,
//! anything else (no key, no grant, refusals, not a stream) is left exactly as it was, and the
//! webhook step names the call only when its signature held.

use super::*;
use crate::config;
use crate::decide::evaluate;
use crate::route::{RequestInfo, RequestRoute};
use crate::signature::{on_request_body, on_request_headers, Pending, Step};
use twiml::gzip;
use twiml::signature::{compute, Algorithm};

const CALL: &str = "CA0123456789abcdef0123456789abcdef";
const MEDIA_KEY: &str = "media-key-1";
const AUTH: &str = "tok-123";
const CLEAN: &str =
    r#"<Response><Connect><Stream url="wss://h.example.com/media"/></Connect></Response>"#;

fn cfg(mode: &str, media_key: bool) -> Config {
    let key = if media_key {
        r#", "media_key_env": "TWIML_GUARD_MEDIA_KEY", "media_token_ttl_seconds": 120"#
    } else {
        ""
    };
    let json = format!(
        r#"{{"mode": "{mode}", "signature": {{"public_base_url": "https://voice.example.com",
        "paths": ["/webhook/"]{key}}}}}"#
    );
    let mut c = config::parse(json.as_bytes()).unwrap();
    c.load_secrets(|name| match name {
        "TWILIO_AUTH_TOKEN" => Some(AUTH.into()),
        "TWIML_GUARD_MEDIA_KEY" => Some(MEDIA_KEY.into()),
        _ => None,
    })
    .unwrap();
    c
}

const GRANT: MediaGrant<'static> = MediaGrant {
    call_sid: CALL,
    now_s: 1_000,
};

fn stamped(c: &Config, body: &[u8], enc: Encoding, grant: Option<MediaGrant<'_>>) -> Outcome {
    stamp_media_token(c, evaluate(c, body, enc), body, enc, grant)
}

fn token_param() -> String {
    let token = twiml::media_token::mint(MEDIA_KEY.as_bytes(), CALL, 1_120);
    format!(r#"<Parameter name="twiml_guard_token" value="{token}"/>"#)
}

#[test]
fn clean_twiml_gets_the_token_of_the_signed_call() {
    let c = cfg("rewrite", true);
    let out = stamped(&c, CLEAN.as_bytes(), Encoding::Identity, Some(GRANT));
    assert_eq!(out.label, Label::Clean);
    assert_eq!(out.detail, "clean media_token=added");
    let expected = format!(
        r#"<Response><Connect><Stream url="wss://h.example.com/media">{}</Stream></Connect></Response>"#,
        token_param()
    );
    assert_eq!(out.effect, Effect::Replace(expected.into_bytes()));
}

#[test]
fn gzip_answers_are_stamped_and_recompressed() {
    let c = cfg("rewrite", true);
    let body = gzip::encode(CLEAN.as_bytes()).unwrap();
    let out = stamped(&c, &body, Encoding::Gzip, Some(GRANT));
    let Effect::Replace(wire) = out.effect else {
        panic!("not stamped: {out:?}")
    };
    let plain = gzip::decode(&wire, 1 << 20).unwrap();
    assert!(String::from_utf8(plain).unwrap().contains(&token_param()));
}

#[test]
fn a_rewritten_answer_is_stamped_after_the_rewrite() {
    let c = cfg("rewrite", true);
    let body = r#"<Response><Record/><Connect><Stream url="wss://h/m"/></Connect></Response>"#;
    let out = stamped(&c, body.as_bytes(), Encoding::Identity, Some(GRANT));
    assert_eq!(out.label, Label::Rewritten);
    let expected = format!(
        r#"<Response><Connect><Stream url="wss://h/m">{}</Stream></Connect></Response>"#,
        token_param()
    );
    assert_eq!(out.effect, Effect::Replace(expected.into_bytes()));
}

#[test]
fn nothing_changes_without_a_key_a_grant_or_a_stream() {
    let keyless = cfg("rewrite", false);
    let keyed = cfg("rewrite", true);
    for (c, body, grant) in [
        (&keyless, CLEAN, Some(GRANT)),
        (&keyed, CLEAN, None),
        (&keyed, "<Response><Say>hi</Say></Response>", Some(GRANT)),
        (&keyed, "<html>page</html>", Some(GRANT)),
    ] {
        let out = stamped(c, body.as_bytes(), Encoding::Identity, grant);
        assert_eq!(out.effect, Effect::Keep, "{body}");
        assert!(!out.detail.contains("media_token"), "{body}");
    }
    // A strict refusal stays the refusal.
    let strict = cfg("strict", true);
    let body = r#"<Response><Record/><Connect><Stream url="wss://h/m"/></Connect></Response>"#;
    let out = stamped(&strict, body.as_bytes(), Encoding::Identity, Some(GRANT));
    assert_eq!(out.label, Label::Rejected);
    assert!(matches!(out.effect, Effect::Reply { .. }));
}

fn webhook(c: &Config, params: &[(&str, &str)], signature: Option<String>) -> Step {
    let url = "https://voice.example.com/webhook/voice";
    let body: String = params
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let signature =
        signature.unwrap_or_else(|| compute(url, params, AUTH.as_bytes(), Algorithm::HmacSha1));
    let mut pending = Pending::default();
    let req = RequestInfo {
        method: "POST".into(),
        path: "/webhook/voice".into(),
        upgrade: None,
    };
    let header = move |name: &str| match name.to_ascii_lowercase().as_str() {
        "x-twilio-signature" => Some(signature.clone()),
        "content-type" => Some("application/x-www-form-urlencoded".into()),
        _ => None,
    };
    let first = on_request_headers(c, &mut pending, &req, RequestRoute::Inspect, &header, false);
    assert_eq!(first, Step::Hold);
    on_request_body(c, &mut pending, body.len(), true, |_| Ok(body.into_bytes()))
}

#[test]
fn the_webhook_step_names_the_call_only_when_signed() {
    let c = cfg("rewrite", true);
    let Step::Decided(ok) = webhook(&c, &[("CallSid", CALL), ("From", "alice")], None) else {
        panic!("undecided")
    };
    assert!(ok.ok());
    assert_eq!(ok.call_sid.as_deref(), Some(CALL));
    let Step::Decided(forged) = webhook(&c, &[("CallSid", CALL)], Some("bm9wZQ==".into())) else {
        panic!("undecided")
    };
    assert!(!forged.ok());
    assert_eq!(forged.call_sid, None);
    let Step::Decided(odd) = webhook(&c, &[("CallSid", "CA../x")], None) else {
        panic!("undecided")
    };
    assert!(odd.ok());
    assert_eq!(odd.call_sid, None);
}

#[test]
fn media_key_config_is_checked() {
    let c = cfg("rewrite", true);
    let sc = c.signature.as_ref().unwrap();
    assert_eq!(sc.media_token_ttl_seconds, 120);
    assert!(crate::signature::describe(&c).ends_with("media_token=on"));
    for json in [
        r#"{"signature": {"public_base_url": "https://v.example.com", "media_key_env": "A B"}}"#,
        r#"{"signature": {"public_base_url": "https://v.example.com", "media_token_ttl_seconds": 0}}"#,
    ] {
        assert_eq!(
            config::parse(json.as_bytes()).unwrap_err().field(),
            Some("signature")
        );
    }
    let mut c = config::parse(
        br#"{"signature": {"public_base_url": "https://v.example.com", "media_key_env": "MK"}}"#,
    )
    .unwrap();
    let e = c
        .load_secrets(|name| (name == "TWILIO_AUTH_TOKEN").then(|| AUTH.to_string()))
        .unwrap_err();
    assert!(e
        .to_string()
        .contains("media_key_env: environment variable MK"));
}
