//! The decision table: routing, the candidate check, and every mode x verdict x style outcome.

use super::*;
use crate::config::parse;

pub(super) const CONFLICT: &[u8] = b"<?xml version=\"1.0\"?>\n<Response>\n  <Record maxLength=\"30\"/>\n  <Connect><Stream url=\"wss://h/ws\"/></Connect>\n</Response>";
pub(super) const STRIPPED: &[u8] = b"<?xml version=\"1.0\"?>\n<Response>\n  <Connect><Stream url=\"wss://h/ws\"/></Connect>\n</Response>";
pub(super) const CLEAN: &[u8] =
    b"<Response><Connect><Stream url=\"wss://h/ws\"/></Connect></Response>";
pub(super) const FALLBACK: &str = "<Response><Hangup/></Response>";

pub(super) fn cfg(json: &str) -> Config {
    parse(json.as_bytes()).unwrap()
}

fn req(method: &str, path: &str, upgrade: Option<&str>) -> RequestInfo {
    RequestInfo {
        method: method.into(),
        path: path.into(),
        upgrade: upgrade.map(Into::into),
    }
}

pub(super) fn resp(status: &str, ct: Option<&str>) -> ResponseInfo {
    ResponseInfo {
        status: Some(status.into()),
        content_type: ct.map(Into::into),
        ..ResponseInfo::default()
    }
}

#[test]
fn media_path_upgrades_pass_and_plain_requests_get_426() {
    let c = Config::default();
    assert_eq!(
        route_request(&c, &req("GET", "/ws/twilio-media", Some("websocket"))),
        RequestRoute::MediaUpgrade
    );
    assert_eq!(
        route_request(&c, &req("GET", "/ws/twilio-media?x=1", Some("WebSocket"))),
        RequestRoute::MediaUpgrade
    );
    assert_eq!(
        route_request(&c, &req("GET", "/ws/twilio-media", None)),
        RequestRoute::MediaNotUpgrade
    );
    assert_eq!(
        route_request(&c, &req("GET", "/ws/twilio-media", Some("h2c"))),
        RequestRoute::MediaNotUpgrade
    );
    assert_eq!(
        route_request(&c, &req("POST", "/ws/twilio-media/x", None)),
        RequestRoute::Inspect
    );
}

#[test]
fn paths_are_prefixes_and_head_is_skipped() {
    let c = cfg(r#"{"paths": ["/voice", "/twiml/"]}"#);
    assert_eq!(
        route_request(&c, &req("POST", "/voice", None)),
        RequestRoute::Inspect
    );
    assert_eq!(
        route_request(&c, &req("POST", "/voice/incoming?CallSid=CA1", None)),
        RequestRoute::Inspect
    );
    assert_eq!(
        route_request(&c, &req("POST", "/twiml/a", None)),
        RequestRoute::Inspect
    );
    assert_eq!(
        route_request(&c, &req("POST", "/twiml", None)),
        RequestRoute::Skip("path outside paths")
    );
    assert_eq!(
        route_request(&c, &req("POST", "/other?p=/voice", None)),
        RequestRoute::Skip("path outside paths")
    );
    assert_eq!(
        route_request(&c, &req("HEAD", "/voice", None)),
        RequestRoute::Skip("head request")
    );
    assert_eq!(
        route_request(&Config::default(), &req("GET", "/anything", None)),
        RequestRoute::Inspect
    );
}

#[test]
fn candidate_check() {
    let c = Config::default();
    let inspect = ResponseStart::Inspect(Encoding::Identity);
    assert_eq!(start_response(&c, &resp("200", Some("text/xml"))), inspect);
    assert_eq!(
        start_response(&c, &resp("201", Some("Application/XML; charset=utf-8"))),
        inspect
    );
    let mut r = resp("200", Some("text/xml"));
    r.end_of_stream = true;
    assert_eq!(start_response(&c, &r), ResponseStart::Pass("no body"));
    assert_eq!(
        start_response(&c, &resp("204", Some("text/xml"))),
        ResponseStart::Pass("status not inspected")
    );
    assert_eq!(
        start_response(&c, &resp("302", Some("text/xml"))),
        ResponseStart::Pass("status not inspected")
    );
    assert_eq!(
        start_response(&c, &resp("500", Some("text/xml"))),
        ResponseStart::Pass("status not inspected")
    );
    // Twilio runs text/html as TwiML: inspected by default, after a look at its first bytes.
    assert_eq!(
        start_response(&c, &resp("200", Some("text/html; charset=utf-8"))),
        ResponseStart::Sniff(Encoding::Identity)
    );
    assert_eq!(
        start_response(
            &cfg(r#"{"content_types": ["text/xml"]}"#),
            &resp("200", Some("text/html"))
        ),
        ResponseStart::Pass("content-type not inspected")
    );
    assert_eq!(
        start_response(&c, &resp("200", Some("application/json"))),
        ResponseStart::Pass("content-type not inspected")
    );
    assert_eq!(
        start_response(&c, &resp("200", None)),
        ResponseStart::Pass("no content-type")
    );
    let mut r = resp("200", Some("text/xml"));
    r.content_length = Some("0".into());
    assert_eq!(start_response(&c, &r), ResponseStart::Pass("empty body"));
    r.content_length = Some("262144".into());
    assert_eq!(start_response(&c, &r), inspect);
    r.content_encoding = Some("gzip".into());
    assert_eq!(
        start_response(&c, &r),
        ResponseStart::Inspect(Encoding::Gzip)
    );
    r.content_encoding = Some("identity".into());
    assert_eq!(start_response(&c, &r), inspect);
}

#[test]
fn declared_length_over_the_limit_is_oversize_without_buffering() {
    let mut r = resp("200", Some("text/xml"));
    r.content_length = Some("262145".into());
    let ResponseStart::Early(o) = start_response(&Config::default(), &r) else {
        panic!("not early");
    };
    assert_eq!(o.label, Label::Oversize);
    assert_eq!(o.effect, Effect::Keep);
    assert_eq!(
        o.detail,
        "content-length 262145 exceeds max_body_bytes 262144"
    );

    let c = cfg(r#"{"on_oversize": "reject"}"#);
    let ResponseStart::Early(o) = start_response(&c, &r) else {
        panic!("not early");
    };
    let Effect::Reply {
        status,
        content_type,
        body,
    } = o.effect
    else {
        panic!("{:?}", o.effect);
    };
    assert_eq!((status, content_type), (502, "application/json"));
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["error"], "twiml_oversize");
    assert_eq!(v["max_body_bytes"], 262144);
}

#[test]
fn several_content_types_are_judged_in_full() {
    let c = Config::default();
    let inspect = ResponseStart::Inspect(Encoding::Identity);
    for ct in [
        "text/html, text/xml",
        "text/plain, text/html",
        "application/json, text/xml; charset=utf-8",
        "text/html; charset=\"a,b\", application/xml",
    ] {
        assert_eq!(start_response(&c, &resp("200", Some(ct))), inspect, "{ct}");
    }
    // The same type twice is that type.
    assert_eq!(
        start_response(&c, &resp("200", Some("text/html, text/html;charset=utf-8"))),
        ResponseStart::Sniff(Encoding::Identity)
    );
    assert_eq!(
        start_response(&c, &resp("200", Some("application/json, text/plain"))),
        ResponseStart::Pass("content-type not inspected")
    );
    assert_eq!(
        media_types("Text/HTML; q=\"x,y\" , text/xml,,"),
        ["text/html", "text/xml"]
    );
}

#[test]
fn a_sniffed_page_over_the_limit_is_looked_at_first() {
    let mut r = resp("200", Some("text/html"));
    r.content_length = Some("1048576".into());
    assert_eq!(
        start_response(&Config::default(), &r),
        ResponseStart::Sniff(Encoding::Identity)
    );
}

#[test]
fn rewrite_mode_strips() {
    let o = evaluate(&Config::default(), CONFLICT, Encoding::Identity);
    assert_eq!(o.label, Label::Rewritten);
    assert_eq!(o.effect, Effect::Replace(STRIPPED.to_vec()));
    assert_eq!(o.detail, "conflict records=1 at=3:3 blocks=Connect/Stream");
    assert_eq!((o.before, o.after), (None, None));
}

#[test]
fn rewrite_mode_start_recording() {
    let c = cfg(
        r#"{"rewrite_action": "start-recording", "recording_status_callback": "https://cb.example/rec"}"#,
    );
    let o = evaluate(&c, CONFLICT, Encoding::Identity);
    assert_eq!(o.label, Label::Rewritten);
    let Effect::Replace(body) = o.effect else {
        panic!()
    };
    let body = String::from_utf8(body).unwrap();
    assert!(body.contains("<Start><Recording"), "{body}");
    assert!(body.contains("https://cb.example/rec"), "{body}");
    assert!(!body.contains("<Record "), "{body}");
    assert_eq!(twiml::analyze(body.as_bytes()), Verdict::Clean);
}

#[test]
fn strict_mode_status_reply_names_each_record() {
    let c = cfg(r#"{"mode": "strict", "reject_status": 503}"#);
    let two = b"<Response>\n<Record/>\n  <Record></Record><Connect><Stream url=\"wss://h\"/></Connect></Response>";
    let o = evaluate(&c, two, Encoding::Identity);
    assert_eq!(o.label, Label::Rejected);
    let Effect::Reply {
        status,
        content_type,
        body,
    } = o.effect
    else {
        panic!()
    };
    assert_eq!((status, content_type), (503, "application/json"));
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["error"], "twiml_conflict");
    assert_eq!(v["blocks"], "Connect/Stream");
    assert_eq!(
        v["records"],
        serde_json::json!([
            {"line": 2, "column": 1, "start": 11, "end": 20},
            {"line": 3, "column": 3, "start": 23, "end": 40},
        ])
    );
}

#[test]
fn strict_mode_twiml_style_replaces_the_body() {
    let c = cfg(&format!(
        r#"{{"mode": "strict", "reject_style": "twiml", "fallback_twiml": "{FALLBACK}"}}"#
    ));
    let o = evaluate(&c, CONFLICT, Encoding::Identity);
    assert_eq!(o.label, Label::Rejected);
    assert_eq!(o.effect, Effect::Replace(FALLBACK.as_bytes().to_vec()));
}

#[test]
fn monitor_mode_changes_nothing() {
    let c = cfg(
        r#"{"mode": "monitor", "on_malformed": "reject", "on_oversize": "reject", "max_body_bytes": 10}"#,
    );
    let o = evaluate(&c, CONFLICT, Encoding::Identity);
    assert_eq!((o.label, o.effect), (Label::Oversize, Effect::Keep));
    let c = cfg(r#"{"mode": "monitor", "on_malformed": "reject"}"#);
    let o = evaluate(&c, CONFLICT, Encoding::Identity);
    assert_eq!((o.label, o.effect), (Label::Detected, Effect::Keep));
    let o = evaluate(&c, b"<Response><Record>", Encoding::Identity);
    assert_eq!((o.label, o.effect), (Label::Malformed, Effect::Keep));
}

#[test]
fn clean_and_not_twiml_pass() {
    for mode in ["rewrite", "strict", "monitor"] {
        let c = cfg(&format!(r#"{{"mode": "{mode}"}}"#));
        let o = evaluate(&c, CLEAN, Encoding::Identity);
        assert_eq!(
            (o.label, &o.effect, o.detail.as_str()),
            (Label::Clean, &Effect::Keep, "clean")
        );
        let o = evaluate(&c, b"<feed><Record/><Stream/></feed>", Encoding::Identity);
        assert_eq!(
            (o.label, &o.effect, o.detail.as_str()),
            (Label::Clean, &Effect::Keep, "not_twiml")
        );
        // Voicemail: a <Record> without any <Stream> does not block anything.
        let o = evaluate(
            &c,
            b"<Response><Say>Leave a message</Say><Record/></Response>",
            Encoding::Identity,
        );
        assert_eq!((o.label, &o.effect), (Label::Clean, &Effect::Keep));
    }
}

#[test]
fn malformed_follows_on_malformed() {
    let garbage = b"hello <Record but not xml";
    let o = evaluate(&Config::default(), garbage, Encoding::Identity);
    assert_eq!((o.label, &o.effect), (Label::Malformed, &Effect::Keep));
    assert!(o.detail.starts_with("malformed XML: "), "{}", o.detail);
    let c = cfg(r#"{"on_malformed": "reject"}"#);
    let o = evaluate(&c, b"<Response>\n<Record></Response>", Encoding::Identity);
    let Effect::Reply { status, body, .. } = o.effect else {
        panic!()
    };
    assert_eq!(status, 502);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["error"], "twiml_malformed");
    assert_eq!(v["line"], 2);
    assert!(v["column"].is_u64() && v["offset"].is_u64(), "{v}");
    let c = cfg(&format!(
        r#"{{"on_malformed": "reject", "reject_style": "twiml", "fallback_twiml": "{FALLBACK}"}}"#
    ));
    let o = evaluate(&c, garbage, Encoding::Identity);
    assert_eq!(
        (o.label, o.effect),
        (
            Label::Malformed,
            Effect::Replace(FALLBACK.as_bytes().to_vec())
        )
    );
}

#[test]
fn buffered_body_over_the_limit_is_oversize() {
    let c = cfg(r#"{"max_body_bytes": 16}"#);
    let o = evaluate(&c, CONFLICT, Encoding::Identity);
    assert_eq!(o.label, Label::Oversize);
}

#[test]
fn log_twiml_carries_before_and_after() {
    let c = cfg(r#"{"log_twiml": true}"#);
    let o = evaluate(&c, CONFLICT, Encoding::Identity);
    assert_eq!(o.before.as_deref(), Some(CONFLICT));
    assert_eq!(o.after.as_deref(), Some(STRIPPED));
    let o = evaluate(&c, &gzip::encode(CLEAN).unwrap(), Encoding::Gzip);
    assert_eq!(o.before.as_deref(), Some(CLEAN));
    assert_eq!(o.after.as_deref(), Some(CLEAN));
}

#[test]
fn verdict_line_names_context_path_and_verdict() {
    let o = evaluate(&Config::default(), CONFLICT, Encoding::Identity);
    assert_eq!(
        verdict_line(7, "/voice", &o),
        format!(
            "ctx=7 path=/voice verdict=rewritten action=replace_body({} bytes) detail=conflict records=1 at=3:3 blocks=Connect/Stream",
            STRIPPED.len()
        )
    );
}

#[test]
fn arbitrary_bytes_never_panic() {
    // The filter sees whatever an upstream sends; every byte pattern must end in an outcome.
    const ALPHABET: &[u8] = b"<>/=\" RecordStreamConnectResponse\x00\xff?!-[]";
    let c = cfg(r#"{"on_malformed": "reject"}"#);
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for len in 0..400usize {
        let body: Vec<u8> = (0..len)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                ALPHABET[(seed % ALPHABET.len() as u64) as usize]
            })
            .collect();
        let _ = evaluate(&c, &body, Encoding::Identity);
        let _ = evaluate(&c, &body, Encoding::Gzip);
    }
}

#[test]
fn the_guard_header_names_the_rule_only_when_one_matched() {
    assert_eq!(guard_header_value(Label::Rewritten, None), "rewritten");
    assert_eq!(
        guard_header_value(Label::Rejected, Some("canary")),
        "rejected; rule=canary"
    );
    let o = evaluate(&cfg(r#"{"mode": "monitor"}"#), CONFLICT, Encoding::Identity);
    assert_eq!(
        verdict_line_ruled(3, "/v", Some("canary"), Mode::Monitor, &o),
        "ctx=3 path=/v verdict=detected action=pass detail=conflict records=1 at=3:3 \
         blocks=Connect/Stream rule=canary mode=monitor"
    );
    assert!(
        verdict_line_ruled(3, "/v", None, Mode::Strict, &o).ends_with(" rule=default mode=strict")
    );
}

#[test]
fn the_guard_header_names_the_stream_a_conflict_blocks() {
    let monitor = cfg(r#"{"mode": "monitor"}"#);
    let o = evaluate(&monitor, CONFLICT, Encoding::Identity);
    assert_eq!(guard_header(&o, None), "detected; blocks=Connect/Stream");
    assert_eq!(
        guard_header(&o, Some("canary")),
        "detected; rule=canary; blocks=Connect/Stream"
    );
    let relay =
        b"<Response><Record/><Connect><ConversationRelay url=\"wss://a\"/></Connect></Response>";
    let o = evaluate(&cfg("{}"), relay, Encoding::Identity);
    assert_eq!(
        guard_header(&o, None),
        "rewritten; blocks=Connect/ConversationRelay"
    );
    let clean = evaluate(
        &cfg("{}"),
        b"<Response><Say>x</Say></Response>",
        Encoding::Identity,
    );
    assert_eq!(guard_header(&clean, None), "clean");
}

#[test]
fn a_record_after_the_first_stream_passes_byte_for_byte_in_every_mode() {
    let fallback = b"<Response>\n  <Connect><Stream url=\"wss://a\"/></Connect>\n  <Say>busy</Say>\n  <Record action=\"/vm\"/>\n</Response>";
    for mode in ["rewrite", "strict", "monitor"] {
        let c = cfg(&format!(r#"{{"mode": "{mode}"}}"#));
        let o = evaluate(&c, fallback, Encoding::Identity);
        assert_eq!(
            (o.label, &o.effect),
            (Label::Clean, &Effect::Keep),
            "{mode}"
        );
        assert_eq!(guard_header(&o, None), "clean");
    }
}

#[test]
fn configured_realtime_nouns_replace_the_defaults() {
    let session = b"<Response><Record/><Connect><AiSession url=\"wss://a\"/></Connect></Response>";
    assert_eq!(
        evaluate(&cfg("{}"), session, Encoding::Identity).label,
        Label::Clean
    );
    let c = cfg(r#"{"mode": "strict", "realtime_nouns": ["Connect/Stream", "Connect/AiSession"]}"#);
    let o = evaluate(&c, session, Encoding::Identity);
    assert_eq!(o.label, Label::Rejected);
    let Effect::Reply { body, .. } = &o.effect else {
        panic!("{o:?}")
    };
    let v: serde_json::Value = serde_json::from_slice(body).unwrap();
    assert_eq!(v["blocks"], "Connect/AiSession");
    assert_eq!(
        v["message"],
        "a <Record> verb before <Connect><AiSession> blocks the real-time stream"
    );
    let relay =
        b"<Response><Record/><Connect><ConversationRelay url=\"wss://a\"/></Connect></Response>";
    assert_eq!(evaluate(&c, relay, Encoding::Identity).label, Label::Clean);
}

#[test]
fn request_and_response_info_from_headers_read_once() {
    let h: Vec<(String, String)> = [
        (":method", "POST"),
        (":path", "/webhook/voice?x=1"),
        (":authority", "voice.example.com"),
        ("content-type", "text/html"),
        ("Content-Type", "text/xml"),
        ("upgrade", "websocket"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(
        request_info(&h),
        req("POST", "/webhook/voice?x=1", Some("websocket"))
    );
    let r = response_info(&h, false);
    assert_eq!(r.content_type.as_deref(), Some("text/html, text/xml"));
    assert_eq!(r.status, None);
    assert!(!r.end_of_stream);
}

#[test]
fn log_lines_under_the_host_level_are_not_made() {
    use LogLevel as L;
    assert!(keeps_log(L::Info, L::Info));
    assert!(keeps_log(L::Info, L::Warn));
    assert!(!keeps_log(L::Info, L::Debug));
    assert!(!keeps_log(L::Warn, L::Info));
    assert!(keeps_log(L::Trace, L::Debug));
    assert!(!keeps_log(L::Critical, L::Error));
}
