//! The token format (mint, verify, every refusal) and the byte-exact insertion.

use super::*;

const KEY: &[u8] = b"media-key";
const CALL_A: &str = "CA0123456789abcdef0123456789abcdef";
const CALL_B: &str = "CAffffffffffffffffffffffffffffffff";

#[test]
fn a_token_verifies_for_its_call_until_it_expires() {
    let token = mint(KEY, CALL_A, 1_000);
    assert!(token.starts_with("v1.1000."));
    assert_eq!(token.len(), "v1.1000.".len() + 64);
    assert_eq!(verify(KEY, CALL_A, Some(&token), 999), Ok(()));
    assert_eq!(verify(KEY, CALL_A, Some(&token), 1_000), Ok(()));
    assert_eq!(
        verify(KEY, CALL_A, Some(&token), 1_001),
        Err(TokenError::Expired {
            expired_at: 1_000,
            now: 1_001
        })
    );
}

#[test]
fn a_token_is_worth_nothing_for_another_call_or_key() {
    let token = mint(KEY, CALL_A, 1_000);
    assert_eq!(
        verify(KEY, CALL_B, Some(&token), 0),
        Err(TokenError::Mismatch)
    );
    assert_eq!(
        verify(b"other-key", CALL_A, Some(&token), 0),
        Err(TokenError::Mismatch)
    );
    // A later expiry with the same MAC is a forgery.
    let stretched = token.replace("v1.1000.", "v1.9000.");
    assert_eq!(
        verify(KEY, CALL_A, Some(&stretched), 0),
        Err(TokenError::Mismatch)
    );
}

#[test]
fn bad_tokens_are_named() {
    assert_eq!(verify(KEY, CALL_A, None, 0), Err(TokenError::Missing));
    for bad in [
        "",
        "v1",
        "v1.10",
        "v2.10.00",
        "v1.x.00",
        "v1.10.abc",
        "v1.10.00.00",
    ] {
        assert_eq!(
            verify(KEY, CALL_A, Some(bad), 0),
            Err(TokenError::Malformed),
            "{bad:?}"
        );
    }
    assert_eq!(TokenError::Missing.kind(), "media_token_missing");
}

#[test]
fn parameter_fits_twilio_limit() {
    let token = mint(KEY, CALL_A, u64::MAX);
    assert!(PARAMETER.len() + token.len() < TWILIO_PARAMETER_LIMIT);
}

fn inserted(body: &str) -> Option<String> {
    insert(body.as_bytes(), "v1.5.ab").map(|b| String::from_utf8(b).unwrap())
}

const P: &str = r#"<Parameter name="twiml_guard_token" value="v1.5.ab"/>"#;

#[test]
fn a_self_closing_stream_gets_the_parameter_and_an_end_tag() {
    let body = "<?xml version=\"1.0\"?>\n<Response>\n  <Connect><Stream url=\"wss://h/media\" /></Connect>\n</Response>\n";
    assert_eq!(
        inserted(body).unwrap(),
        format!("<?xml version=\"1.0\"?>\n<Response>\n  <Connect><Stream url=\"wss://h/media\" >{P}</Stream></Connect>\n</Response>\n")
    );
}

#[test]
fn an_open_stream_gets_the_parameter_first() {
    let body = r#"<Response><Start><Stream url="wss://h/a"><Parameter name="From" value="x"/></Stream></Start><Say>hi</Say><Connect><Stream url="wss://h/b"/></Connect></Response>"#;
    assert_eq!(
        inserted(body).unwrap(),
        format!(
            r#"<Response><Start><Stream url="wss://h/a">{P}<Parameter name="From" value="x"/></Stream></Start><Say>hi</Say><Connect><Stream url="wss://h/b">{P}</Stream></Connect></Response>"#
        )
    );
}

#[test]
fn nothing_to_stamp_leaves_the_body_alone() {
    for body in [
        "<Response><Say>hi</Say></Response>",
        "<Response><Connect><ConversationRelay url=\"wss://h\"/></Connect></Response>",
        "<Other><Connect><Stream url=\"wss://h\"/></Connect></Other>",
        "<Response><Stream url=\"wss://h\"/></Response>",
        "<Response><Connect><Stream url=\"wss://h\"></Connect>",
        "not xml at all",
    ] {
        assert_eq!(inserted(body), None, "{body}");
    }
}
