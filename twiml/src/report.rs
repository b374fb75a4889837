//! The core's answers as data for other programs: the JSON of `lint`, `analyze`, `rewrite` and
//! `sniff` that the npm package returns, `twiml-guard lint --format json` prints and the host's
//! playground shows, documented in docs/lint.md. One set of types, so no two callers disagree on
//! a field. Fields are declared in alphabetical order: the JSON keeps the key order it has always
//! had (sorted), byte for byte. Behind the `report` feature, so the filter links no serde; the
//! `ts` feature also derives their TypeScript declarations (tsify), for the npm package.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::lint::Report;
use crate::{line_column, RewriteAction, RewriteOptions, Sniff, Verdict};

/// The core's verdict, by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(tsify::Tsify))]
#[serde(rename_all = "snake_case")]
pub enum VerdictName {
    Clean,
    Conflict,
    NotTwiml,
    Malformed,
}

impl From<&Verdict> for VerdictName {
    fn from(verdict: &Verdict) -> Self {
        match verdict {
            Verdict::Clean => VerdictName::Clean,
            Verdict::Conflict(_) => VerdictName::Conflict,
            Verdict::NotTwiml => VerdictName::NotTwiml,
            Verdict::Malformed(_) => VerdictName::Malformed,
        }
    }
}

/// A lint rule's severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(tsify::Tsify))]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

impl From<crate::lint::Severity> for Severity {
    fn from(severity: crate::lint::Severity) -> Self {
        match severity {
            crate::lint::Severity::Error => Severity::Error,
            crate::lint::Severity::Warning => Severity::Warning,
        }
    }
}

/// A rewrite action, by its configuration name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(tsify::Tsify))]
#[serde(rename_all = "kebab-case")]
pub enum ActionName {
    Strip,
    StartRecording,
}

impl From<ActionName> for RewriteAction {
    fn from(action: ActionName) -> Self {
        match action {
            ActionName::Strip => RewriteAction::Strip,
            ActionName::StartRecording => RewriteAction::StartRecording,
        }
    }
}

impl From<RewriteAction> for ActionName {
    fn from(action: RewriteAction) -> Self {
        match action {
            RewriteAction::Strip => ActionName::Strip,
            RewriteAction::StartRecording => ActionName::StartRecording,
        }
    }
}

/// One lint finding: rule, severity, message, help, and its span as bytes and as lines/columns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(tsify::Tsify))]
pub struct Diagnostic {
    /// Stable rule code, `TG001` ...
    pub code: String,
    /// 1-based byte column of `start`.
    pub column: u32,
    /// Byte offset (exclusive) of the span's end in the UTF-8 document.
    pub end: usize,
    pub end_column: u32,
    pub end_line: u32,
    /// How to fix it.
    pub help: String,
    /// 1-based line of `start`.
    pub line: u32,
    pub message: String,
    /// Stable rule name, e.g. `record-blocks-stream`.
    pub name: String,
    pub severity: Severity,
    /// Byte offset of the span's start.
    pub start: usize,
    /// The Twilio error code the mistake produces, where Twilio documents one.
    pub twilio_error: Option<u32>,
}

/// A whole lint report: the filter's verdict, the counts and the diagnostics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(tsify::Tsify))]
pub struct LintReport {
    pub diagnostics: Vec<Diagnostic>,
    pub errors: usize,
    /// Exactly the edge filter's verdict for the same bytes.
    pub verdict: VerdictName,
    pub warnings: usize,
}

/// One blocking `<Record>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(tsify::Tsify))]
pub struct ConflictSpot {
    pub column: u32,
    pub end: usize,
    pub line: u32,
    pub start: usize,
}

/// Where and why a body is not well-formed XML.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(tsify::Tsify))]
pub struct MalformedSpot {
    pub column: u32,
    pub line: u32,
    pub offset: usize,
    pub reason: String,
}

/// The filter's verdict for a document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(tsify::Tsify))]
pub struct Analysis {
    /// The verb and noun the blocking `<Record>`s keep from opening (`Connect/Stream`); null
    /// unless `conflict`.
    pub blocks: Option<String>,
    /// Each blocking `<Record>` (empty unless `conflict`).
    pub conflicts: Vec<ConflictSpot>,
    /// One line, as the filter logs it.
    pub description: String,
    pub malformed: Option<MalformedSpot>,
    pub verdict: VerdictName,
}

/// A rewritten document (or the input, when it was not a conflict).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(tsify::Tsify))]
pub struct RewriteResult {
    pub action: ActionName,
    /// False when the document was not a conflict: `twiml` is then the input.
    pub changed: bool,
    pub twiml: String,
    pub verdict: VerdictName,
}

/// Whether a whole body holds TwiML.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(tsify::Tsify))]
pub struct SniffResult {
    pub twiml: bool,
}

fn diagnostic(body: &[u8], d: &crate::lint::Diagnostic) -> Diagnostic {
    let (end_line, end_column) = line_column(body, d.span.end);
    Diagnostic {
        code: d.rule.code.to_owned(),
        column: d.column,
        end: d.span.end,
        end_column,
        end_line,
        help: d.help.clone(),
        line: d.line,
        message: d.message.clone(),
        name: d.rule.name.to_owned(),
        severity: d.severity().into(),
        start: d.span.start,
        twilio_error: d.rule.twilio_error,
    }
}

/// `report` (the result of `twiml::lint::lint(body)`) as data.
pub fn lint_report(body: &[u8], report: &Report) -> LintReport {
    let count = |severity: crate::lint::Severity| {
        report
            .diagnostics
            .iter()
            .filter(|d| d.severity() == severity)
            .count()
    };
    LintReport {
        diagnostics: report
            .diagnostics
            .iter()
            .map(|d| diagnostic(body, d))
            .collect(),
        errors: count(crate::lint::Severity::Error),
        verdict: (&report.verdict).into(),
        warnings: count(crate::lint::Severity::Warning),
    }
}

/// Every lint rule over `body`.
pub fn lint(body: &[u8]) -> LintReport {
    lint_report(body, &crate::lint::lint(body))
}

/// `verdict` as data.
pub fn analysis(verdict: &Verdict) -> Analysis {
    Analysis {
        blocks: verdict.blocked().map(crate::StreamOpener::path),
        conflicts: verdict
            .conflicts()
            .iter()
            .map(|c| ConflictSpot {
                column: c.column,
                end: c.span.end,
                line: c.line,
                start: c.span.start,
            })
            .collect(),
        description: verdict.describe(),
        malformed: match verdict {
            Verdict::Malformed(m) => Some(MalformedSpot {
                column: m.column,
                line: m.line,
                offset: m.offset,
                reason: m.reason.clone(),
            }),
            _ => None,
        },
        verdict: verdict.into(),
    }
}

/// The edge filter's verdict for `body`.
pub fn analyze(body: &[u8]) -> Analysis {
    analysis(&crate::analyze(body))
}

/// `sniff` on a whole body: whether a type Twilio only sometimes runs as TwiML (`text/html`)
/// holds TwiML here.
pub fn sniff(body: &[u8]) -> SniffResult {
    let twiml = match crate::sniff(body, true) {
        Sniff::NotTwiml => false,
        Sniff::Twiml | Sniff::NeedMore => true,
    };
    SniffResult { twiml }
}

/// `body` rewritten with `options` when it is a conflict; any other body comes back as it is.
pub fn rewrite(
    body: &[u8],
    options: &RewriteOptions,
) -> Result<RewriteResult, crate::RewriteError> {
    let verdict = crate::analyze(body);
    let out = match &verdict {
        Verdict::Conflict(conflicts) => crate::rewrite(body, conflicts, options)?,
        _ => body.to_vec(),
    };
    Ok(RewriteResult {
        action: options.action.into(),
        changed: out != body,
        twiml: String::from_utf8_lossy(&out).into_owned(),
        verdict: (&verdict).into(),
    })
}

/// `value` as JSON; a value that cannot be serialized becomes `{"error": ...}`.
fn to_json(value: &impl Serialize) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_else(|e| error_json(&e.to_string()))
}

/// `{"error": message}`, the shape every JSON entry point answers a failure with.
pub fn error_json(message: &str) -> Vec<u8> {
    let mut out = b"{\"error\":".to_vec();
    out.extend(serde_json::to_vec(message).unwrap_or_default());
    out.push(b'}');
    out
}

/// `lint_report` as a JSON value, for callers that add fields of their own (the CLI adds
/// `file` and `fixed`).
pub fn lint_value(body: &[u8], report: &Report) -> Value {
    serde_json::to_value(lint_report(body, report)).unwrap_or(Value::Null)
}

pub fn lint_json(body: &[u8]) -> Vec<u8> {
    to_json(&lint(body))
}

pub fn analyze_json(body: &[u8]) -> Vec<u8> {
    to_json(&analyze(body))
}

pub fn sniff_json(body: &[u8]) -> Vec<u8> {
    to_json(&sniff(body))
}

/// `rewrite` as JSON: the result, or `{"error": ...}` when the rewrite failed.
pub fn rewrite_json(
    body: &[u8],
    action: RewriteAction,
    recording_status_callback: Option<&str>,
) -> Vec<u8> {
    let options = RewriteOptions {
        action,
        recording_status_callback: recording_status_callback.map(str::to_owned),
    };
    match rewrite(body, &options) {
        Ok(result) => to_json(&result),
        Err(e) => error_json(&e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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

    /// The key order is the sorted one the JSON has always had (a `serde_json::Value` map).
    #[test]
    fn json_keys_stay_sorted() {
        for bytes in [
            lint_json(SEED.as_bytes()),
            analyze_json(SEED.as_bytes()),
            analyze_json(b"<Response><Record></Response>"),
            rewrite_json(SEED.as_bytes(), RewriteAction::Strip, None),
            sniff_json(SEED.as_bytes()),
        ] {
            let sorted = serde_json::to_vec(&parse(bytes.clone())).unwrap();
            assert_eq!(
                String::from_utf8(bytes).unwrap(),
                String::from_utf8(sorted).unwrap()
            );
        }
    }

    #[test]
    fn analyze_fields() {
        let v = parse(analyze_json(SEED.as_bytes()));
        assert_eq!(v["verdict"], "conflict");
        assert_eq!(
            v["conflicts"],
            json!([{"line": 2, "column": 3, "start": 13, "end": 22}])
        );
        assert_eq!(v["blocks"], "Connect/Stream");
        assert_eq!(v["malformed"], Value::Null);
        let m = parse(analyze_json(b"<Response><Record></Response>"));
        assert_eq!(m["verdict"], "malformed");
        assert_eq!(m["malformed"]["offset"], 18);
    }

    #[test]
    fn rewrite_strip_and_start_recording() {
        let v = parse(rewrite_json(SEED.as_bytes(), RewriteAction::Strip, None));
        assert_eq!(v["changed"], true);
        assert_eq!(
            v["twiml"],
            "<Response>\n  <Connect action=\"https://a\"><Stream url=\"wss://h/p\"/></Connect>\n</Response>"
        );
        let v = parse(rewrite_json(
            SEED.as_bytes(),
            RewriteAction::StartRecording,
            Some("https://cb/x?a=1&b=2"),
        ));
        assert_eq!(v["action"], "start-recording");
        assert!(v["twiml"]
            .as_str()
            .unwrap()
            .contains("<Start><Recording recordingStatusCallback=\"https://cb/x?a=1&amp;b=2\" channels=\"dual\"/></Start>"));
        let clean = "<Response><Hangup/></Response>";
        let v = parse(rewrite_json(clean.as_bytes(), RewriteAction::Strip, None));
        assert_eq!(
            (v["changed"].as_bool(), v["twiml"].as_str()),
            (Some(false), Some(clean))
        );
    }

    #[test]
    fn errors_are_json() {
        assert_eq!(
            parse(error_json("a \"quoted\" reason")),
            json!({"error": "a \"quoted\" reason"})
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
