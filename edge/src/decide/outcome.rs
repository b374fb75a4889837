//! What an inspected response comes to: its label (the `x-twiml-guard` value and the counter it
//! bumps), what happens to the body, the strict-mode rejection body, and the one log line, apart
//! from the decisions in `decide` that produce them.

use serde_json::json;

use crate::config::Mode;

/// The outcome of one inspected response: the `x-twiml-guard` value and the counter it bumps.
/// Each inspected response gets exactly one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Label {
    Clean,
    Rewritten,
    Rejected,
    Detected,
    Oversize,
    Malformed,
}

impl Label {
    pub const ALL: [Label; 6] = [
        Label::Clean,
        Label::Rewritten,
        Label::Rejected,
        Label::Detected,
        Label::Oversize,
        Label::Malformed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Label::Clean => "clean",
            Label::Rewritten => "rewritten",
            Label::Rejected => "rejected",
            Label::Detected => "detected",
            Label::Oversize => "oversize",
            Label::Malformed => "malformed",
        }
    }
}

/// What happens to the response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Forward the upstream response as it is.
    Keep,
    /// Forward with this body instead (already in the response's content-encoding).
    Replace(Vec<u8>),
    /// Answer locally instead of forwarding (needs held headers).
    Reply {
        status: u32,
        content_type: &'static str,
        body: Vec<u8>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub label: Label,
    pub effect: Effect,
    /// Why, in a few words, for the log line (core verdict, error).
    pub detail: String,
    /// The TwiML as inspected (decoded) and as sent, for `log_twiml`.
    pub before: Option<Vec<u8>>,
    pub after: Option<Vec<u8>>,
    /// For a conflict, the stream its `<Record>`s block (`Connect/Stream`): named in the
    /// header, the log line and the rejection.
    pub blocks: Option<String>,
}

impl Outcome {
    pub(crate) fn new(label: Label, effect: Effect, detail: String) -> Self {
        Outcome {
            label,
            effect,
            detail,
            before: None,
            after: None,
            blocks: None,
        }
    }
}

fn to_json(v: &serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(v).unwrap_or_else(|_| b"{\"error\":\"twiml_guard\"}".to_vec())
}

/// The JSON body of a `reject_style: status` reply: what the problem is and where.
pub fn reject_body(problem: &Problem) -> Vec<u8> {
    let v = match problem {
        Problem::Conflicts(conflicts) => json!({
            "error": "twiml_conflict",
            "message": match conflicts.first() {
                Some(c) => format!("a <Record> verb before {} blocks the real-time stream", c.blocks),
                None => "a <Record> verb blocks the real-time stream".to_string(),
            },
            "blocks": conflicts.first().map(|c| c.blocks.path()),
            "records": conflicts.iter().map(|c| json!({
                "line": c.line,
                "column": c.column,
                "start": c.span.start,
                "end": c.span.end,
            })).collect::<Vec<_>>(),
        }),
        Problem::Malformed {
            message,
            line,
            column,
            offset,
        } => json!({
            "error": "twiml_malformed",
            "message": message,
            "line": line,
            "column": column,
            "offset": offset,
        }),
        Problem::Oversize { message, limit } => json!({
            "error": "twiml_oversize",
            "message": message,
            "max_body_bytes": limit,
        }),
        Problem::Internal(message) => json!({
            "error": "twiml_guard_error",
            "message": message,
        }),
    };
    let mut body = to_json(&v);
    body.push(b'\n');
    body
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    Conflicts(Vec<twiml::Conflict>),
    Malformed {
        message: String,
        line: Option<u32>,
        column: Option<u32>,
        offset: Option<usize>,
    },
    Oversize {
        message: String,
        limit: usize,
    },
    Internal(String),
}

/// The `x-twiml-guard` value: the outcome, then the rule that chose the mode when one matched
/// (`rewritten; rule=canary`). Without a rule it is the bare outcome, as before rules existed.
pub fn guard_header_value(label: Label, rule: Option<&str>) -> String {
    match rule {
        Some(rule) => format!("{}; rule={rule}", label.as_str()),
        None => label.as_str().to_string(),
    }
}

/// [`guard_header_value`] for an outcome, naming the stream a conflict blocks last
/// (`rewritten; rule=canary; blocks=Connect/Stream`).
pub fn guard_header(outcome: &Outcome, rule: Option<&str>) -> String {
    let value = guard_header_value(outcome.label, rule);
    match &outcome.blocks {
        Some(blocks) => format!("{value}; blocks={blocks}"),
        None => value,
    }
}

/// [`verdict_line`] with the rule that applied (`rule=default` when none matched) and the mode
/// the verdict was made under.
pub fn verdict_line_ruled(
    context_id: u32,
    path: &str,
    rule: Option<&str>,
    mode: Mode,
    outcome: &Outcome,
) -> String {
    format!(
        "{} rule={} mode={}",
        verdict_line(context_id, path, outcome),
        rule.unwrap_or("default"),
        mode.as_str()
    )
}

/// The one log line per verdict.
pub fn verdict_line(context_id: u32, path: &str, outcome: &Outcome) -> String {
    let action = match &outcome.effect {
        Effect::Keep => "pass".to_string(),
        Effect::Replace(b) => format!("replace_body({} bytes)", b.len()),
        Effect::Reply { status, .. } => format!("reply({status})"),
    };
    format!(
        "ctx={context_id} path={path} verdict={} action={action} detail={}",
        outcome.label.as_str(),
        outcome.detail
    )
}
