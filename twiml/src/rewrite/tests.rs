//! Unit tests for rewriting: exact output bytes for strip and start-recording, and refusal of
//! spans that do not hold a `<Record>`.

use super::*;
use crate::{analyze, Verdict};

const SEED: &[u8] = include_bytes!("../../fixtures/seed_001.xml");
const SEED_AFTER: &[u8] = include_bytes!("../../fixtures/seed_001.strip.xml");

fn strip() -> RewriteOptions {
    RewriteOptions::default()
}

fn start_rec(callback: Option<&str>) -> RewriteOptions {
    RewriteOptions {
        action: RewriteAction::StartRecording,
        recording_status_callback: callback.map(str::to_owned),
    }
}

fn rewritten(body: &[u8], opts: &RewriteOptions) -> String {
    let Verdict::Conflict(c) = analyze(body) else {
        panic!("expected a conflict in {}", String::from_utf8_lossy(body));
    };
    String::from_utf8(rewrite(body, &c, opts).unwrap()).unwrap()
}

#[test]
fn strip_turns_the_seed_before_into_its_after() {
    let Verdict::Conflict(c) = analyze(SEED) else {
        panic!("seed must conflict")
    };
    assert_eq!(rewrite(SEED, &c, &strip()).unwrap(), SEED_AFTER);
    assert_eq!(strip_ranges(SEED, &c).unwrap(), vec![50..152]);
}

#[test]
fn strip_keeps_the_line_when_the_record_shares_it() {
    let body = b"<Response>\n  <Say>a</Say><Record/>\n  <Connect><Stream url=\"wss://a\"/></Connect>\n</Response>";
    assert_eq!(
        rewritten(body, &strip()),
        "<Response>\n  <Say>a</Say>\n  <Connect><Stream url=\"wss://a\"/></Connect>\n</Response>"
    );
}

#[test]
fn strip_removes_a_multi_line_record_with_body_and_its_crlf() {
    let body = b"<Response>\r\n\t<Record>\r\n\t\tjunk\r\n\t</Record>  \r\n\t<Connect><Stream url=\"wss://a\"/></Connect>\r\n</Response>";
    assert_eq!(
        rewritten(body, &strip()),
        "<Response>\r\n\t<Connect><Stream url=\"wss://a\"/></Connect>\r\n</Response>"
    );
}

#[test]
fn strip_removes_every_record_verb_on_one_line_documents() {
    let body = b"<Response><Record/><Say>x</Say><Record></Record><Connect><Stream url=\"wss://a\"/></Connect></Response>";
    assert_eq!(
        rewritten(body, &strip()),
        "<Response><Say>x</Say><Connect><Stream url=\"wss://a\"/></Connect></Response>"
    );
}

#[test]
fn start_recording_replaces_the_first_and_removes_the_rest() {
    let body = b"<Response>\n  <Record trim=\"do-not-trim\" recordingStatusCallbackEvent=\"in-progress completed\" maxLength=\"60\" recordingStatusCallbackMethod=\"GET\"/>\n  <Record/>\n  <Connect><Stream url=\"wss://a\"/></Connect>\n</Response>";
    assert_eq!(
        rewritten(body, &start_rec(Some("https://cb.example/rec?a=1&b=2"))),
        "<Response>\n  <Start><Recording recordingStatusCallback=\"https://cb.example/rec?a=1&amp;b=2\" recordingStatusCallbackMethod=\"GET\" recordingStatusCallbackEvent=\"in-progress completed\" trim=\"do-not-trim\" channels=\"dual\"/></Start>\n  <Connect><Stream url=\"wss://a\"/></Connect>\n</Response>"
    );
}

#[test]
fn start_recording_keeps_the_records_own_callback_escaped_as_it_was() {
    let body = br#"<Response><Record recordingStatusCallback='https://x/cb?a=1&amp;q="z"'>body</Record><Connect><Stream url="wss://a"/></Connect></Response>"#;
    assert_eq!(
        rewritten(body, &start_rec(Some("https://ignored"))),
        r#"<Response><Start><Recording recordingStatusCallback="https://x/cb?a=1&amp;q=&quot;z&quot;" channels="dual"/></Start><Connect><Stream url="wss://a"/></Connect></Response>"#
    );
}

#[test]
fn start_recording_without_callback_configured_adds_only_channels() {
    assert_eq!(
        rewritten(SEED, &start_rec(None)),
        String::from_utf8_lossy(SEED).replace(
            r#"<Record maxLength="600" playBeep="false" recordingTrack="inbound" timeout="3" transcribe="false" />"#,
            r#"<Start><Recording channels="dual"/></Start>"#
        )
    );
}

#[test]
fn configured_callback_with_quotes_and_newlines_is_escaped() {
    let body = b"<Response><Record/><Connect><Stream url=\"wss://a\"/></Connect></Response>";
    assert_eq!(
        rewritten(body, &start_rec(Some("https://x/\"<>\n"))),
        "<Response><Start><Recording recordingStatusCallback=\"https://x/&quot;&lt;&gt;&#10;\" channels=\"dual\"/></Start><Connect><Stream url=\"wss://a\"/></Connect></Response>"
    );
}

fn conflict(span: Range<usize>) -> Conflict {
    Conflict {
        span,
        line: 1,
        column: 1,
        blocks: crate::StreamOpener {
            verb: "Connect".into(),
            noun: "Stream".into(),
            offset: 0,
            line: 1,
            column: 1,
        },
    }
}

#[test]
#[allow(clippy::reversed_empty_ranges)] // a backwards span is one of the bad inputs
fn spans_that_are_not_record_elements_are_refused() {
    let body = b"<Response><Record/><Recorder/></Response>";
    let opts = strip();
    for span in [0..10, 10..99, 19..30, 10..18, 12..10] {
        assert_eq!(
            rewrite(body, &[conflict(span.clone())], &opts),
            Err(RewriteError::BadSpan(span))
        );
    }
    assert_eq!(
        rewrite(body, &[conflict(10..19), conflict(10..19)], &opts),
        Err(RewriteError::BadSpan(10..19))
    );
    assert_eq!(
        rewrite(body, &[conflict(10..19)], &opts).unwrap(),
        b"<Response><Recorder/></Response>"
    );
}

#[test]
fn no_conflicts_leave_the_body_unchanged() {
    assert_eq!(
        rewrite(b"<Response/>", &[], &start_rec(Some("https://x"))).unwrap(),
        b"<Response/>"
    );
}

#[test]
fn action_names_match_the_configuration() {
    assert_eq!(RewriteAction::Strip.name(), "strip");
    assert_eq!(RewriteAction::StartRecording.name(), "start-recording");
}
