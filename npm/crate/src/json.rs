//! The JSON shapes of `lint`, `analyze`, `rewrite` and `sniff`, documented in docs/lint.md and
//! typed in npm/index.d.ts. Field names are stable: the npm package, the CLI's `--format json`
//! and the Node tests all read them.

use serde_json::{json, Value};
use twiml::lint::{Diagnostic, Report};
use twiml::{line_column, RewriteAction, RewriteOptions, Sniff, Verdict};

/// One diagnostic: rule, severity, message, help, and its span as bytes and as lines/columns.
pub fn diagnostic_value(body: &[u8], d: &Diagnostic) -> Value {
    let (end_line, end_column) = line_column(body, d.span.end);
    json!({
        "code": d.rule.code,
        "name": d.rule.name,
        "severity": d.severity().name(),
        "message": d.message,
        "help": d.help,
        "start": d.span.start,
        "end": d.span.end,
        "line": d.line,
        "column": d.column,
        "end_line": end_line,
        "end_column": end_column,
        "twilio_error": d.rule.twilio_error,
    })
}

/// A whole lint report: the filter's verdict, the counts and the diagnostics.
pub fn lint_value(body: &[u8], report: &Report) -> Value {
    let count = |name: &str| {
        report
            .diagnostics
            .iter()
            .filter(|d| d.severity().name() == name)
            .count()
    };
    json!({
        "verdict": report.verdict.name(),
        "errors": count("error"),
        "warnings": count("warning"),
        "diagnostics": report
            .diagnostics
            .iter()
            .map(|d| diagnostic_value(body, d))
            .collect::<Vec<_>>(),
    })
}

fn verdict_value(verdict: &Verdict) -> Value {
    let conflicts: Vec<Value> = verdict
        .conflicts()
        .iter()
        .map(|c| json!({"line": c.line, "column": c.column, "start": c.span.start, "end": c.span.end}))
        .collect();
    let malformed = match verdict {
        Verdict::Malformed(m) => {
            json!({"line": m.line, "column": m.column, "offset": m.offset, "reason": m.reason})
        }
        _ => Value::Null,
    };
    json!({
        "verdict": verdict.name(),
        "conflicts": conflicts,
        "malformed": malformed,
        "description": verdict.describe(),
    })
}

fn to_bytes(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}").into_bytes())
}

pub fn lint_json(body: &[u8]) -> Vec<u8> {
    to_bytes(&lint_value(body, &twiml::lint::lint(body)))
}

pub fn analyze_json(body: &[u8]) -> Vec<u8> {
    to_bytes(&verdict_value(&twiml::analyze(body)))
}

/// `sniff` on a whole body: whether a type Twilio only sometimes runs as TwiML (`text/html`)
/// holds TwiML here.
pub fn sniff_json(body: &[u8]) -> Vec<u8> {
    let twiml = match twiml::sniff(body, true) {
        Sniff::NotTwiml => false,
        Sniff::Twiml | Sniff::NeedMore => true,
    };
    to_bytes(&json!({ "twiml": twiml }))
}

/// `action`: 0 strip, 1 start-recording. A body that is not a conflict comes back as it is.
pub fn rewrite_json(body: &[u8], action: u32, recording_status_callback: Option<&str>) -> Vec<u8> {
    let action = match action {
        0 => RewriteAction::Strip,
        1 => RewriteAction::StartRecording,
        n => return to_bytes(&json!({"error": format!("unknown rewrite action {n}")})),
    };
    let verdict = twiml::analyze(body);
    let opts = RewriteOptions {
        action,
        recording_status_callback: recording_status_callback.map(str::to_owned),
    };
    let out = match &verdict {
        Verdict::Conflict(conflicts) => match twiml::rewrite(body, conflicts, &opts) {
            Ok(out) => out,
            Err(e) => return to_bytes(&json!({"error": e.to_string()})),
        },
        _ => body.to_vec(),
    };
    let changed = out != body;
    to_bytes(&json!({
        "verdict": verdict.name(),
        "action": action.name(),
        "changed": changed,
        "twiml": String::from_utf8_lossy(&out),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(bytes: Vec<u8>) -> Value {
        serde_json::from_slice(&bytes).unwrap()
    }

    const SEED: &str = "<Response>\n  <Record/>\n  <Connect action=\"https://a\"><Stream url=\"wss://h/p\"/></Connect>\n</Response>";

    #[test]
    fn lint_fields() {
        let v = parse(lint_json(SEED.as_bytes()));
        assert_eq!(v["verdict"], "conflict");
        assert_eq!(
            (v["errors"].as_u64(), v["warnings"].as_u64()),
            (Some(1), Some(2))
        );
        let d = &v["diagnostics"][0];
        assert_eq!(d["code"], "TG001");
        assert_eq!(d["name"], "record-blocks-stream");
        assert_eq!(d["severity"], "error");
        assert_eq!(
            (d["start"].as_u64(), d["end"].as_u64()),
            (Some(13), Some(22))
        );
        assert_eq!(
            (d["line"].as_u64(), d["column"].as_u64()),
            (Some(2), Some(3))
        );
        assert_eq!(
            (d["end_line"].as_u64(), d["end_column"].as_u64()),
            (Some(2), Some(12))
        );
        assert_eq!(d["twilio_error"], Value::Null);
    }

    #[test]
    fn analyze_fields() {
        let v = parse(analyze_json(SEED.as_bytes()));
        assert_eq!(v["verdict"], "conflict");
        assert_eq!(
            v["conflicts"],
            json!([{"line": 2, "column": 3, "start": 13, "end": 22}])
        );
        assert_eq!(v["malformed"], Value::Null);
        let m = parse(analyze_json(b"<Response><Record></Response>"));
        assert_eq!(m["verdict"], "malformed");
        assert_eq!(m["malformed"]["offset"], 18);
    }

    #[test]
    fn rewrite_strip_and_start_recording() {
        let v = parse(rewrite_json(SEED.as_bytes(), 0, None));
        assert_eq!(v["changed"], true);
        assert_eq!(
            v["twiml"],
            "<Response>\n  <Connect action=\"https://a\"><Stream url=\"wss://h/p\"/></Connect>\n</Response>"
        );
        let v = parse(rewrite_json(
            SEED.as_bytes(),
            1,
            Some("https://cb/x?a=1&b=2"),
        ));
        assert_eq!(v["action"], "start-recording");
        assert!(v["twiml"]
            .as_str()
            .unwrap()
            .contains("<Start><Recording recordingStatusCallback=\"https://cb/x?a=1&amp;b=2\" channels=\"dual\"/></Start>"));
        let clean = "<Response><Hangup/></Response>";
        let v = parse(rewrite_json(clean.as_bytes(), 0, None));
        assert_eq!(
            (v["changed"].as_bool(), v["twiml"].as_str()),
            (Some(false), Some(clean))
        );
        assert_eq!(
            parse(rewrite_json(b"x", 7, None))["error"],
            "unknown rewrite action 7"
        );
    }

    #[test]
    fn sniff_whole_bodies() {
        assert_eq!(parse(sniff_json(b"<!DOCTYPE html><html/>"))["twiml"], false);
        assert_eq!(
            parse(sniff_json(b"<?xml version=\"1.0\"?><Response/>"))["twiml"],
            true
        );
    }
}
