//! Unit tests for signatures: Twilio's published vectors, both algorithms, JSON bodies, the port
//! quirk, and the parsing of forms and URLs.

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
    let p = parse_form(b"a=1&b=x+y&c=%41%zz%4&&d&e=&caf%C3%A9=%E2%9C%93&bad=%FF&a=2&f=%2B1+5");
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
            ("a", "2"),
            ("f", "+1 5"),
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
