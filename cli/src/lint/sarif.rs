//! `--format sarif`: a SARIF 2.1.0 log for code scanning (GitHub's `upload-sarif` and others):
//! the rule table as the driver's rules, one result per diagnostic with its region, and an
//! invocation that records unreadable inputs.

use std::io::{self, Write};

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde_json::{json, Value};
use twiml::lint::{Diagnostic, Severity, RULES};

use super::Outcome;

const SCHEMA: &str = "https://json.schemastore.org/sarif-2.1.0.json";

/// What stays as it is in a relative URI path: unreserved characters and `/`.
const PATH: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'/');

fn level(s: Severity) -> &'static str {
    match s {
        Severity::Error => "error",
        Severity::Warning => "warning",
    }
}

fn rules() -> Vec<Value> {
    RULES
        .iter()
        .map(|r| {
            json!({
                "id": r.code,
                "name": r.name,
                "shortDescription": {"text": r.summary},
                "fullDescription": {"text": r.rationale},
                "defaultConfiguration": {"level": level(r.severity)},
                "properties": {"twilioError": r.twilio_error},
            })
        })
        .collect()
}

/// A file name as a relative URI reference (forward slashes, percent-encoded).
fn uri(name: &str) -> String {
    let slashed = name.replace('\\', "/");
    utf8_percent_encode(&slashed, PATH).to_string()
}

/// 1-based line and column in Unicode code points (SARIF's `unicodeCodePoints` column kind) of
/// byte `offset`; a leading byte order mark is not a column, as in the core.
fn position(body: &[u8], offset: usize) -> (u32, u32) {
    let (line, _) = twiml::line_column(body, offset);
    let before = body.get(..offset.min(body.len())).unwrap_or_default();
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |nl| nl + 1);
    let mut text = before.get(line_start..).unwrap_or_default();
    if line_start == 0 {
        text = text.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(text);
    }
    let chars = text.iter().filter(|&&b| (b & 0xC0) != 0x80).count();
    (line, u32::try_from(chars + 1).unwrap_or(u32::MAX))
}

fn result(name: &str, body: &[u8], d: &Diagnostic) -> Value {
    let rule_index = RULES.iter().position(|r| r.code == d.rule.code);
    let (start_line, start_column) = position(body, d.span.start);
    let (end_line, end_column) = position(body, d.span.end);
    json!({
        "ruleId": d.rule.code,
        "ruleIndex": rule_index,
        "level": level(d.severity()),
        "message": {"text": format!("{} (help: {})", d.message, d.help)},
        "locations": [{
            "physicalLocation": {
                "artifactLocation": {"uri": uri(name)},
                "region": {
                    "startLine": start_line,
                    "startColumn": start_column,
                    "endLine": end_line,
                    "endColumn": end_column,
                    "byteOffset": d.span.start,
                    "byteLength": d.span.end - d.span.start,
                },
            },
        }],
    })
}

pub fn write(out: &mut impl Write, outcomes: &[Outcome]) -> io::Result<()> {
    let mut results = Vec::new();
    let mut notifications = Vec::new();
    for o in outcomes {
        match o {
            Outcome::Checked(c) => results.extend(
                c.report
                    .diagnostics
                    .iter()
                    .map(|d| result(&c.input.name, &c.input.bytes, d)),
            ),
            Outcome::Failed { name, error } => notifications.push(json!({
                "level": "error",
                "message": {"text": format!("{name}: {error}")},
                "locations": [{"physicalLocation": {"artifactLocation": {"uri": uri(name)}}}],
            })),
        }
    }
    let doc = json!({
        "$schema": SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "twiml-guard",
                "version": env!("CARGO_PKG_VERSION"),
                "rules": rules(),
            }},
            "columnKind": "unicodeCodePoints",
            "invocations": [{
                "executionSuccessful": notifications.is_empty(),
                "toolExecutionNotifications": notifications,
            }],
            "results": results,
        }],
    });
    serde_json::to_writer_pretty(&mut *out, &doc)?;
    writeln!(out)
}
