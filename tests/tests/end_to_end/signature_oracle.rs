//! Holds `twiml::signature` to Twilio's own Python `RequestValidator`: random requests signed by
//! the reference library must validate, and every one-character change the library refuses (URL,
//! parameter, signature, settings header) must be refused here too. It lives in the end-to-end
//! crate because it needs the project's Python (`.venv`): `cargo test -p twiml` runs anywhere
//! Rust does.

use crate::oracle::text;
use serde_json::Value;
use twiml::signature::{parse_form, validate, Body, Keys, Request, SignatureError};

const CASES: usize = 1500;

fn oracle(args: &[&str]) -> Value {
    crate::oracle::cases(args)
}

/// Our verdict on one oracle request, parsing the body the way the filter does.
fn verdict(case: &Value, keys: &Keys) -> Result<(), SignatureError> {
    let body = text(case, "body");
    let params = parse_form(body.as_bytes());
    let body = match text(case, "kind") {
        "form" => Body::Form(&params),
        "json" => Body::Raw(body.as_bytes()),
        "none" => Body::None,
        other => panic!("unknown kind {other}"),
    };
    validate(
        &Request {
            url: text(case, "url"),
            body,
            signature: Some(text(case, "signature")),
            settings: case["settings"].as_str(),
        },
        keys,
    )
}

#[test]
fn agrees_with_twilios_request_validator() {
    let doc = oracle(&["--count", &CASES.to_string()]);
    let keys = Keys {
        auth_token: Some(text(&doc, "auth_token").to_owned()),
        shared_key: Some(text(&doc, "shared_key").to_owned()),
    };
    let cases = doc["cases"].as_array().expect("cases");
    assert_eq!(cases.len(), CASES);

    let mut checked = 0;
    let mut refused = std::collections::BTreeMap::<String, usize>::new();
    let mut accepted_port_flips = 0;
    for case in cases {
        assert_eq!(
            case["valid"], true,
            "the oracle signs its own cases: {case}"
        );
        assert_eq!(
            verdict(case, &keys),
            Ok(()),
            "valid request refused: {case}"
        );
        checked += 1;
        for m in case["mutations"].as_array().expect("mutations") {
            let what = text(m, "what");
            let ours = verdict(m, &keys);
            assert_eq!(
                ours.is_ok(),
                m["valid"] == true,
                "disagreement with the Python validator on a {what} change ({ours:?}): {m}"
            );
            if ours.is_ok() {
                // Twilio's validator drops whatever port the URL names, so a changed port digit
                // still validates; nothing else may.
                let url = text(m, "url");
                let pos = m["position"].as_u64().expect("position") as usize;
                let authority_end = url[8..].find('/').map_or(url.len(), |i| i + 8);
                let port_start = url[..authority_end].rfind(':').expect("a port");
                assert!(
                    what == "url" && pos > port_start && pos < authority_end,
                    "a {what} change outside the port validated: {m}"
                );
                accepted_port_flips += 1;
            } else {
                *refused.entry(what.to_owned()).or_default() += 1;
            }
            checked += 1;
        }
    }
    eprintln!(
        "{checked} requests checked; refused changes: {refused:?}; port-digit changes accepted \
         as Twilio does: {accepted_port_flips}"
    );
    assert_eq!(refused["signature"], CASES);
    assert_eq!(refused["settings"], CASES);
    assert!(refused["url"] + accepted_port_flips == CASES);
    assert!(refused["param"] >= CASES * 3 / 4, "{refused:?}");
}

#[test]
fn behind_a_fixed_public_base_url() {
    // The shape the filter sees: one public origin, paths under a prefix.
    let doc = oracle(&[
        "--count",
        "200",
        "--seed",
        "7",
        "--base-url",
        "https://voice.example.com",
        "--path-prefix",
        "/webhook/",
    ]);
    let keys = Keys {
        auth_token: Some(text(&doc, "auth_token").to_owned()),
        shared_key: Some(text(&doc, "shared_key").to_owned()),
    };
    for case in doc["cases"].as_array().expect("cases") {
        assert!(text(case, "url").starts_with("https://voice.example.com/webhook/"));
        assert_eq!(verdict(case, &keys), Ok(()), "{case}");
        for m in case["mutations"].as_array().expect("mutations") {
            assert_eq!(m["valid"], false, "{m}");
            assert!(verdict(m, &keys).is_err(), "{m}");
        }
    }
}
