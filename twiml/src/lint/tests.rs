//! Each rule on a small document: code, span and message, and what must not fire.

use super::*;

fn codes(body: &str) -> Vec<&'static str> {
    lint(body.as_bytes())
        .diagnostics
        .iter()
        .map(|d| d.rule.code)
        .collect()
}

fn spanned(body: &str, code: &str) -> Vec<String> {
    lint(body.as_bytes())
        .diagnostics
        .iter()
        .filter(|d| d.rule.code == code)
        .map(|d| body.get(d.span.clone()).unwrap().to_owned())
        .collect()
}

const STREAM: &str = r#"<Connect action="https://a/b"><Stream url="wss://h/p"/></Connect>"#;

#[test]
fn clean_stream_has_no_findings() {
    let body = format!("<Response>{STREAM}</Response>");
    assert_eq!(codes(&body), Vec::<&str>::new());
    assert_eq!(lint(body.as_bytes()).worst(), None);
}

#[test]
fn conflict_is_tg001_with_the_core_span() {
    let body = format!(r#"<Response><Record action="https://a/r"/>{STREAM}</Response>"#);
    let report = lint(body.as_bytes());
    assert_eq!(report.verdict.name(), "conflict");
    assert_eq!(codes(&body), ["TG001"]);
    let d = &report.diagnostics[0];
    assert_eq!(d.span, report.verdict.conflicts()[0].span);
    assert_eq!((d.line, d.column), (1, 11));
    assert_eq!(report.worst(), Some(Severity::Error));
}

#[test]
fn seed_gets_conflict_no_action_and_unreachable() {
    let body = format!("<Response>\n  <Record maxLength=\"600\"/>\n  {STREAM}\n</Response>");
    assert_eq!(codes(&body), ["TG001", "TG002", "TG005"]);
    assert_eq!(spanned(&body, "TG002"), ["<Record"]);
    assert_eq!(spanned(&body, "TG005"), ["<Connect"]);
    let r = lint(body.as_bytes());
    let d = r
        .diagnostics
        .iter()
        .find(|d| d.rule.code == "TG005")
        .unwrap();
    assert_eq!(
        d.message,
        "<Connect> never runs: <Record> at line 2, column 3 ends the document (without an action, Twilio requests this same URL again)"
    );
}

#[test]
fn voicemail_record_without_action_is_only_a_warning() {
    let body = "<Response><Say>hi</Say><Record/></Response>";
    assert_eq!(codes(body), ["TG002"]);
    assert_eq!(lint(body.as_bytes()).worst(), Some(Severity::Warning));
    assert_eq!(lint(body.as_bytes()).verdict, Verdict::Clean);
}

#[test]
fn stream_url_scheme_and_query() {
    let body = r#"<Response><Connect action="https://a"><Stream url="ws://h/p?x=1&amp;y=2"/></Connect></Response>"#;
    assert_eq!(codes(body), ["TG003", "TG004"]);
    assert_eq!(spanned(body, "TG003"), ["ws://h/p?x=1&amp;y=2"]);
    assert_eq!(spanned(body, "TG004"), ["?x=1&amp;y=2"]);
    let r = lint(body.as_bytes());
    assert_eq!(
        r.diagnostics[0].message,
        "stream url \"ws://h/p?x=1&y=2\" has ws scheme, not wss://"
    );
}

#[test]
fn start_stream_urls_are_checked_and_wss_is_case_insensitive() {
    let body = r#"<Response><Start><Stream url="https://h/p"/></Start><Start><Stream url="WSS://h/p"/></Start><Pause/></Response>"#;
    assert_eq!(codes(body), ["TG003"]);
    assert_eq!(spanned(body, "TG003"), ["https://h/p"]);
}

#[test]
fn stream_without_url() {
    let body = r#"<Response><Connect action="https://a"><Stream name="x"/></Connect></Response>"#;
    assert_eq!(codes(body), ["TG003"]);
    assert_eq!(spanned(body, "TG003"), ["<Stream"]);
}

#[test]
fn connect_stream_without_action() {
    let body = r#"<Response><Connect><Stream url="wss://h/p"/></Connect></Response>"#;
    assert_eq!(codes(body), ["TG006"]);
    assert_eq!(spanned(body, "TG006"), ["<Connect"]);
    // <Connect> to something else is not this rule's business.
    assert_eq!(
        codes("<Response><Connect><Room>r</Room></Connect></Response>"),
        Vec::<&str>::new()
    );
}

#[test]
fn connect_without_action_followed_by_verbs_is_the_voicemail_fallback() {
    let body = r#"<Response><Connect><Stream url="wss://h/p"/></Connect><Say>busy</Say><Record action="https://a/vm"/></Response>"#;
    assert_eq!(codes(body), Vec::<&str>::new());
    assert_eq!(lint(body.as_bytes()).verdict, Verdict::Clean);
    let relay = r#"<Response><Connect><ConversationRelay url="wss://h/p"/></Connect></Response>"#;
    assert_eq!(codes(relay), ["TG006"]);
}

#[test]
fn records_after_the_stream_get_the_warning_of_their_place() {
    // After <Connect> without action, a <Record> without action loops: TG002, not TG001.
    let looped = r#"<Response><Connect><Stream url="wss://h/p"/></Connect><Record/></Response>"#;
    assert_eq!(codes(looped), ["TG002"]);
    // After <Connect action>, it never runs: TG005 (and TG002 for its own missing action).
    let dead = format!("<Response>{STREAM}<Record/></Response>");
    assert_eq!(codes(&dead), ["TG002", "TG005"]);
    // After <Start><Stream>, recording while the fork streams is fine.
    let fork = r#"<Response><Start><Stream url="wss://h/p"/></Start><Say/><Record action="https://a/vm"/></Response>"#;
    assert_eq!(codes(fork), Vec::<&str>::new());
    // Only the first of two records around a stream is TG001, and it names what it blocks.
    let both = format!(
        r#"<Response><Record action="https://a/r"/>{STREAM}<Record action="https://a/vm"/></Response>"#
    );
    assert_eq!(codes(&both), ["TG001", "TG005"]);
    assert_eq!(
        lint(both.as_bytes()).diagnostics[0].message,
        "<Record> blocks before the <Connect><Stream> at line 1, column 41, so the stream never opens"
    );
}

#[test]
fn unreachable_after_each_ending_verb() {
    for (end, expect) in [
        ("<Hangup/>", true),
        ("<Reject/>", true),
        ("<Redirect>https://a/x</Redirect>", true),
        (
            r#"<Connect action="https://a"><Room>r</Room></Connect>"#,
            true,
        ),
        ("<Connect><Room>r</Room></Connect>", false),
        (r#"<Record action="https://a/r"/>"#, false),
        ("<Say>x</Say>", false),
    ] {
        let body = format!("<Response>{end}<Say>a</Say><Play>b</Play></Response>");
        let found = spanned(&body, "TG005");
        if expect {
            assert_eq!(found, ["<Say"], "{end}");
            let d = lint(body.as_bytes());
            let d = d
                .diagnostics
                .iter()
                .find(|d| d.rule.code == "TG005")
                .unwrap();
            assert!(
                d.message.starts_with("<Say>, <Play> never run: "),
                "{}",
                d.message
            );
        } else {
            assert!(found.is_empty(), "{end}: {found:?}");
        }
    }
}

#[test]
fn malformed_points_at_the_core_offset() {
    let body = "<Response>\n  <Say>x</Sya>\n</Response>";
    let r = lint(body.as_bytes());
    assert_eq!(codes(body), ["TG007"]);
    let m = match twiml_inspect(body) {
        Err(m) => m,
        Ok(_) => panic!("well-formed?"),
    };
    assert_eq!(r.diagnostics[0].span.start, m.offset);
    assert_eq!(
        (r.diagnostics[0].line, r.diagnostics[0].column),
        (m.line, m.column)
    );
    assert_eq!(
        r.diagnostics[0].message,
        format!("not well-formed XML: {}", m.reason)
    );
}

fn twiml_inspect(body: &str) -> Result<crate::Inspection, crate::Malformed> {
    crate::inspect(body.as_bytes())
}

#[test]
fn malformed_without_record_is_found_though_the_verdict_is_clean() {
    // The filter's fast path clears bodies without `<Record`; lint parses everything.
    let r = lint(b"<Response><Say>x</Response>");
    assert_eq!(r.verdict, Verdict::Clean);
    assert_eq!(r.diagnostics[0].rule.code, "TG007");
}

#[test]
fn malformed_at_end_of_input_has_an_empty_span_at_the_end() {
    let body = b"<Response><Say>x</Say>";
    let r = lint(body);
    assert_eq!(r.diagnostics[0].span, body.len()..body.len());
}

#[test]
fn not_twiml_points_at_the_root_name() {
    let body = "<?xml version=\"1.0\"?>\n<html><Record/></html>";
    assert_eq!(codes(body), ["TG008"]);
    assert_eq!(spanned(body, "TG008"), ["<html"]);
    assert_eq!(
        lint(body.as_bytes()).diagnostics[0].message,
        "the root element is <html>, not <Response>"
    );
}

#[test]
fn bom_offsets_count_the_bom() {
    let body = "\u{FEFF}<Response><Connect><Stream url=\"wss://h\"/></Connect></Response>";
    let r = lint(body.as_bytes());
    assert_eq!(spanned(body, "TG006"), ["<Connect"]);
    assert_eq!(r.diagnostics[0].span.start, 13);
    assert_eq!(r.diagnostics[0].column, 11);
}

#[test]
fn rules_table_is_in_code_order_and_found_by_code_or_name() {
    let codes: Vec<_> = RULES.iter().map(|r| r.code).collect();
    assert_eq!(
        codes,
        ["TG001", "TG002", "TG003", "TG004", "TG005", "TG006", "TG007", "TG008"]
    );
    assert_eq!(rule("tg004").map(|r| r.name), Some("stream-url-has-query"));
    assert_eq!(rule("unreachable-verb").map(|r| r.code), Some("TG005"));
    assert_eq!(rule("TG999"), None);
}

#[test]
fn arbitrary_prefixes_never_panic() {
    let body = "\u{FEFF}<Response><Record a='>'/><Connect action=\"x\"><Stream url=\"ws://h?q\"><Parameter name=\"a\" value=\"b\"/></Stream></Connect><Hangup/><Say>é</Say></Response>";
    for end in 0..=body.len() {
        let _ = lint(&body.as_bytes()[..end]);
    }
}
