//! The signature step's decisions, natively: config checks, which requests are signed, the URL
//! each is checked against, holding for bodies, limits and enforce=false.

use super::*;
use crate::config::{self, Config};
use twiml::signature::{compute, Algorithm};

const TOKEN: &str = "tok-123";
const SHARED: &str = "shared-456";

fn cfg(json: &str) -> Config {
    let mut c = config::parse(json.as_bytes()).unwrap();
    c.load_secrets(|name| match name {
        "TWILIO_AUTH_TOKEN" => Some(TOKEN.into()),
        "TWILIO_WEBHOOK_KEY" => Some(SHARED.into()),
        _ => None,
    })
    .unwrap();
    c
}

const SIGNED: &str = r#"{"signature": {"auth_token_env": "TWILIO_AUTH_TOKEN",
    "shared_key_env": "TWILIO_WEBHOOK_KEY", "public_base_url": "https://voice.example.com/",
    "paths": ["/webhook/"], "enforce": true}}"#;

fn req(method: &str, path: &str, upgrade: bool) -> RequestInfo {
    RequestInfo {
        method: method.into(),
        path: path.into(),
        upgrade: upgrade.then(|| "websocket".to_string()),
    }
}

fn headers(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let pairs: Vec<(String, String)> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    }
}

fn sign(url: &str, params: &[(&str, &str)]) -> String {
    compute(url, params, TOKEN.as_bytes(), Algorithm::HmacSha1)
}

fn verdict(step: Step) -> Verdict {
    match step {
        Step::Decided(v) => v,
        other => panic!("expected a verdict, got {other:?}"),
    }
}

#[test]
fn absent_means_off() {
    let c = cfg("{}");
    assert_eq!(c.signature, None);
    let mut p = Pending::default();
    let step = on_request_headers(
        &c,
        &mut p,
        &req("POST", "/webhook/x", false),
        RequestRoute::Inspect,
        &headers(&[]),
        true,
    );
    assert_eq!(step, Step::Pass);
    assert_eq!(describe(&c), "signature=off");
}

#[test]
fn config_defaults_and_errors() {
    let c =
        config::parse(br#"{"signature": {"public_base_url": "https://v.example.com"}}"#).unwrap();
    let sc = c.signature.unwrap();
    assert_eq!(sc.auth_token_env, "TWILIO_AUTH_TOKEN");
    assert_eq!(sc.shared_key_env, None);
    assert!(sc.enforce);
    assert!(sc.paths.is_empty());
    assert_eq!(sc.public_ws_url, "wss://v.example.com");

    for (json, needle) in [
        (r#"{"signature": {}}"#, "public_base_url"),
        (
            r#"{"signature": {"public_base_url": "voice.example.com"}}"#,
            "not an absolute",
        ),
        (
            r#"{"signature": {"public_base_url": "https://v.example.com/?a=1"}}"#,
            "without query",
        ),
        (
            r#"{"signature": {"public_base_url": "https://v.example.com", "paths": ["webhook"]}}"#,
            "not a path prefix",
        ),
        (
            r#"{"signature": {"public_base_url": "https://v.example.com", "auth_token_env": "A B"}}"#,
            "not an environment variable name",
        ),
        (
            r#"{"signature": {"public_base_url": "https://v.example.com", "enforc": true}}"#,
            "enforc",
        ),
    ] {
        let e = config::parse(json.as_bytes()).unwrap_err();
        assert_eq!(e.field(), Some("signature"), "{json}");
        assert!(e.to_string().contains(needle), "{json}: {e}");
    }
}

#[test]
fn missing_secret_refuses_the_config_without_printing_values() {
    let mut c = config::parse(SIGNED.as_bytes()).unwrap();
    let e = c
        .load_secrets(|name| (name == "TWILIO_AUTH_TOKEN").then(|| TOKEN.to_string()))
        .unwrap_err();
    let text = e.to_string();
    assert!(text.contains("TWILIO_WEBHOOK_KEY"), "{text}");
    assert!(!text.contains(TOKEN), "{text}");

    let mut c = config::parse(SIGNED.as_bytes()).unwrap();
    let e = c.load_secrets(|_| Some(String::new())).unwrap_err();
    assert!(e.to_string().contains("TWILIO_AUTH_TOKEN"), "{e}");

    let c = cfg(SIGNED);
    let line = describe(&c);
    assert!(!line.contains(TOKEN) && !line.contains(SHARED), "{line}");
    assert!(!format!("{c:?}").contains(TOKEN));
}

#[test]
fn get_webhook_is_checked_at_once_against_the_public_url() {
    let c = cfg(SIGNED);
    let good = sign("https://voice.example.com/webhook/voice?CallSid=CA1", &[]);
    for (sig, ok) in [(good.as_str(), true), ("AAAA", false)] {
        let mut p = Pending::default();
        let v = verdict(on_request_headers(
            &c,
            &mut p,
            &req("GET", "/webhook/voice?CallSid=CA1", false),
            RequestRoute::Inspect,
            &headers(&[("x-twilio-signature", sig)]),
            true,
        ));
        assert_eq!(v.ok(), ok);
        assert_eq!(v.gate() == Gate::Allow, ok);
    }
}

#[test]
fn form_post_is_held_then_checked() {
    let c = cfg(SIGNED);
    let body = b"CallSid=CA1&From=%2B15550001111&Digits=1+2";
    let good = sign(
        "https://voice.example.com/webhook/voice",
        &[
            ("CallSid", "CA1"),
            ("From", "+15550001111"),
            ("Digits", "1 2"),
        ],
    );
    for (sig, ok) in [(good.as_str(), true), ("wrong", false)] {
        let mut p = Pending::default();
        let h = headers(&[
            ("x-twilio-signature", sig),
            (
                "content-type",
                "application/x-www-form-urlencoded; charset=utf-8",
            ),
            ("content-length", "41"),
        ]);
        let step = on_request_headers(
            &c,
            &mut p,
            &req("POST", "/webhook/voice", false),
            RequestRoute::Inspect,
            &h,
            false,
        );
        assert_eq!(step, Step::Hold);
        assert_eq!(
            on_request_body(&c, &mut p, 10, false, |_| panic!(
                "the body is not read yet"
            )),
            Step::Hold
        );
        let v = verdict(on_request_body(&c, &mut p, body.len(), true, |n| {
            assert_eq!(n, body.len());
            Ok(body.to_vec())
        }));
        assert_eq!(v.ok(), ok, "{v:?}");
        if !ok {
            assert_eq!(
                v.gate(),
                Gate::Deny {
                    status: 403,
                    body: FORBIDDEN_BODY.to_vec()
                }
            );
            assert_eq!(
                v.log_line(),
                "signature rejected what=webhook reason=mismatch (signature does not match)"
            );
            assert!(!v.log_line().contains(sig));
        }
        // Done: later body callbacks pass.
        assert_eq!(
            on_request_body(&c, &mut p, 0, true, |_| panic!("the body is not read yet")),
            Step::Pass
        );
    }
}

#[test]
fn json_body_with_body_sha256() {
    let c = cfg(SIGNED);
    let body = br#"{"a": 1}"#;
    let path = format!(
        "/webhook/events?bodySHA256={}",
        twiml::signature::body_sha256_hex(body)
    );
    let good = sign(&format!("https://voice.example.com{path}"), &[]);
    let mut p = Pending::default();
    let h = headers(&[
        ("x-twilio-signature", &good),
        ("content-type", "application/json"),
    ]);
    let r = req("POST", &path, false);
    assert_eq!(
        on_request_headers(&c, &mut p, &r, RequestRoute::Inspect, &h, false),
        Step::Hold
    );
    let v = verdict(on_request_body(&c, &mut p, body.len(), true, |_| {
        Ok(body.to_vec())
    }));
    assert!(v.ok(), "{v:?}");
    let mut p = Pending::default();
    on_request_headers(&c, &mut p, &r, RequestRoute::Inspect, &h, false);
    let v = verdict(on_request_body(&c, &mut p, 8, true, |_| {
        Ok(br#"{"a": 2}"#.to_vec())
    }));
    assert_eq!(
        v.result,
        Err(Failure::Signature(SignatureError::BodyHashMismatch))
    );
}

#[test]
fn sha256_signature_uses_the_shared_key() {
    let c = cfg(SIGNED);
    let url = "https://voice.example.com/webhook/x";
    let good = compute(url, &[("a", "1")], SHARED.as_bytes(), Algorithm::HmacSha256);
    let mut p = Pending::default();
    let h = headers(&[
        ("x-twilio-signature", &good),
        (
            "x-twilio-webhooks-signature-settings",
            "key=k1,algorithm=HMAC_SHA256",
        ),
        ("content-type", "application/x-www-form-urlencoded"),
    ]);
    on_request_headers(
        &c,
        &mut p,
        &req("POST", "/webhook/x", false),
        RequestRoute::Inspect,
        &h,
        false,
    );
    let v = verdict(on_request_body(
        &c,
        &mut p,
        3,
        true,
        |_| Ok(b"a=1".to_vec()),
    ));
    assert!(v.ok(), "{v:?}");
}

#[test]
fn oversize_bodies_are_refused_before_and_while_buffering() {
    let c = cfg(&SIGNED.replace("{\"signature\"", "{\"max_body_bytes\": 100, \"signature\""));
    let mut p = Pending::default();
    let h = headers(&[("content-length", "101")]);
    let v = verdict(on_request_headers(
        &c,
        &mut p,
        &req("POST", "/webhook/x", false),
        RequestRoute::Inspect,
        &h,
        false,
    ));
    assert_eq!(v.result, Err(Failure::TooLarge(101)));
    assert_eq!(
        v.gate(),
        Gate::Deny {
            status: 413,
            body: TOO_LARGE_BODY.to_vec()
        }
    );

    let mut p = Pending::default();
    let step = on_request_headers(
        &c,
        &mut p,
        &req("POST", "/webhook/x", false),
        RequestRoute::Inspect,
        &headers(&[]),
        false,
    );
    assert_eq!(step, Step::Hold);
    let v = verdict(on_request_body(&c, &mut p, 150, false, |_| {
        panic!("the body is not read yet")
    }));
    assert_eq!(v.result, Err(Failure::TooLarge(150)));
}

#[test]
fn media_handshake_is_always_checked_with_and_without_slash() {
    let c = cfg(SIGNED);
    let no_slash = sign("wss://voice.example.com/ws/twilio-media", &[]);
    let slash = sign("wss://voice.example.com/ws/twilio-media/", &[]);
    for (sig, ok) in [
        (no_slash.as_str(), true),
        (slash.as_str(), true),
        (
            sign("https://voice.example.com/ws/twilio-media", &[]).as_str(),
            false,
        ),
        ("", false),
    ] {
        let mut p = Pending::default();
        let v = verdict(on_request_headers(
            &c,
            &mut p,
            &req("GET", "/ws/twilio-media", true),
            RequestRoute::MediaUpgrade,
            &headers(&[("x-twilio-signature", sig)]),
            true,
        ));
        assert_eq!(v.ok(), ok, "{sig}");
        assert_eq!(v.what, "media_handshake");
    }
}

#[test]
fn unsigned_paths_pass_and_path_tricks_do_not() {
    let c = cfg(SIGNED);
    for (path, signed) in [
        ("/voice/answer", false),
        ("/webhook/x", true),
        ("/webhookx", false),
        ("/voice/../webhook/x", true),
        ("/voice/%2e%2e/webhook/x", true),
        ("//webhook//x", true),
        ("/%77ebhook/x", true),
        ("/voice\\..\\webhook\\x", true),
        ("/webhook;jsessionid=1/x", true),
        ("/voice/..;/webhook/x", true),
    ] {
        let mut p = Pending::default();
        let step = on_request_headers(
            &c,
            &mut p,
            &req("GET", path, false),
            RequestRoute::Inspect,
            &headers(&[]),
            true,
        );
        assert_eq!(matches!(step, Step::Decided(_)), signed, "{path}");
    }
}

#[test]
fn enforce_false_counts_and_lets_through() {
    let c = cfg(&SIGNED.replace("\"enforce\": true", "\"enforce\": false"));
    let mut p = Pending::default();
    let v = verdict(on_request_headers(
        &c,
        &mut p,
        &req("GET", "/webhook/x", false),
        RequestRoute::Inspect,
        &headers(&[("x-twilio-signature", "nope")]),
        true,
    ));
    assert!(!v.ok());
    assert_eq!(v.gate(), Gate::Allow);
    assert!(
        v.log_line()
            .starts_with("signature allowed (enforce=false)"),
        "{}",
        v.log_line()
    );
}

#[test]
fn normalizes_paths_like_a_lenient_backend() {
    assert_eq!(normalize_path("/a/./b/../c"), "/a/c");
    assert_eq!(normalize_path("/../../etc"), "/etc");
    assert_eq!(normalize_path("/a%2Fb/"), "/a/b/");
    assert_eq!(normalize_path("/%zz/%4"), "/%zz/%4");
    assert_eq!(normalize_path(""), "/");
}

#[test]
fn without_held_headers_only_the_body_is_held() {
    let c = cfg(&SIGNED.replace(
        "{\"signature\"",
        "{\"reject_style\": \"twiml\", \"signature\"",
    ));
    assert!(!c.holds_headers());
    let mut p = Pending::default();
    let h = headers(&[
        ("x-twilio-signature", "wrong"),
        ("content-type", "application/x-www-form-urlencoded"),
    ]);
    let step = on_request_headers(
        &c,
        &mut p,
        &req("POST", "/webhook/x", false),
        RequestRoute::Inspect,
        &h,
        false,
    );
    assert_eq!(step, Step::HoldBody);
    assert_eq!(
        on_request_body(&c, &mut p, 3, false, |_| panic!("the body is not read yet")),
        Step::Hold
    );
    let v = verdict(on_request_body(
        &c,
        &mut p,
        3,
        true,
        |_| Ok(b"a=1".to_vec()),
    ));
    assert_eq!(
        v.gate(),
        Gate::Deny {
            status: 403,
            body: FORBIDDEN_BODY.to_vec()
        }
    );
}

#[test]
fn a_body_ending_in_trailers_is_checked_at_the_last_size() {
    let c = cfg(SIGNED);
    let mut p = Pending::default();
    let h = headers(&[
        ("x-twilio-signature", "forged"),
        ("content-type", "application/x-www-form-urlencoded"),
    ]);
    let r = req("POST", "/webhook/x", false);
    assert_eq!(
        on_request_headers(&c, &mut p, &r, RequestRoute::Inspect, &h, false),
        Step::Hold
    );
    assert_eq!(
        on_request_body(&c, &mut p, 4, false, |_| panic!("the body is not read yet")),
        Step::Hold
    );
    assert_eq!(
        on_request_body(&c, &mut p, 11, false, |_| panic!(
            "the body is not read yet"
        )),
        Step::Hold
    );
    assert_eq!(p.body_size(), 11);
    let size = p.body_size();
    let v = verdict(on_request_body(&c, &mut p, size, true, |n| {
        assert_eq!(n, 11);
        Ok(b"CallSid=CA1".to_vec())
    }));
    assert_eq!(v.result, Err(Failure::Signature(SignatureError::Mismatch)));
    assert_eq!(p.body_size(), 0);
}
