//! Lint rules over a TwiML document: the mistakes that break calls on Twilio, each with a stable
//! code, a severity, the exact bytes at fault, and the fix. Well-formedness and the
//! `<Record>`/`<Stream>` conflict come from `scan` (the same code the filter runs, so a `TG001`
//! here is a `conflict` there, and a `<Record>` after the first stream is no `TG001`); the other
//! rules read the verbs `lint::doc` lists, in the order Twilio runs them.

mod doc;
mod rules;

use std::ops::Range;

use crate::{inspect, line_column, Verdict};
use doc::Element;
pub use rules::{
    rule, Rule, Severity, CONNECT_WITHOUT_ACTION, MALFORMED, NOT_TWIML, RECORD_BLOCKS_STREAM,
    RECORD_WITHOUT_ACTION, RULES, STREAM_URL_HAS_QUERY, STREAM_URL_NOT_WSS, UNREACHABLE_VERB,
};

/// One finding: which rule, where (a byte span of the body and the 1-based line and column of
/// its start), what is wrong and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub rule: &'static Rule,
    pub span: Range<usize>,
    pub line: u32,
    pub column: u32,
    pub message: String,
    pub help: String,
}

impl Diagnostic {
    fn new(
        rule: &'static Rule,
        body: &[u8],
        span: Range<usize>,
        message: String,
        help: String,
    ) -> Self {
        let (line, column) = line_column(body, span.start);
        Diagnostic {
            rule,
            span,
            line,
            column,
            message,
            help,
        }
    }

    pub fn severity(&self) -> Severity {
        self.rule.severity
    }
}

/// What `lint` found: the filter's verdict for the same body and every diagnostic, ordered by
/// position (then code).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Exactly `twiml::analyze(body)`: what the edge filter would decide.
    pub verdict: Verdict,
    pub diagnostics: Vec<Diagnostic>,
}

impl Report {
    /// The worst severity found, if anything was.
    pub fn worst(&self) -> Option<Severity> {
        self.diagnostics.iter().map(Diagnostic::severity).max()
    }
}

/// Every rule over `body`. Unlike `analyze`, the whole document is always parsed: a body without
/// `<Record` can still be malformed, not TwiML, or open a stream Twilio refuses.
pub fn lint(body: &[u8]) -> Report {
    let verdict = crate::analyze(body);
    let inspection = match inspect(body) {
        Ok(inspection) => inspection,
        Err(m) => {
            let start = m.offset.min(body.len());
            let end = next_char_end(body, start);
            let d = Diagnostic::new(
                &MALFORMED,
                body,
                start..end,
                format!("not well-formed XML: {}", m.reason),
                "fix the XML at this spot; Twilio refuses the whole document".into(),
            );
            return Report {
                verdict,
                diagnostics: vec![d],
            };
        }
    };
    let doc = doc::read(body);
    let mut out = Vec::new();
    if !inspection.root_is_response {
        let (name, span) = match &doc.root {
            Some(root) => (root.name.clone(), name_span(root)),
            None => (String::new(), 0..0),
        };
        out.push(Diagnostic::new(
            &NOT_TWIML,
            body,
            span,
            format!("the root element is <{name}>, not <Response>"),
            "a TwiML answer is one <Response> element holding the verbs".into(),
        ));
        return Report {
            verdict,
            diagnostics: out,
        };
    }
    for c in inspection.verdict(body).conflicts() {
        out.push(Diagnostic::new(
            &RECORD_BLOCKS_STREAM,
            body,
            c.span.clone(),
            format!(
                "<Record> blocks before the {} at line {}, column {}, so the stream never opens",
                c.blocks, c.blocks.line, c.blocks.column
            ),
            "record with the non-blocking <Start><Recording channels=\"dual\"/> instead, or remove the <Record> (`twiml-guard lint --fix --action start-recording|strip`)".into(),
        ));
    }
    if let Some(root) = &doc.root {
        verbs(body, root, &mut out);
    }
    out.sort_by(|a, b| {
        (a.span.start, a.rule.code, a.span.end).cmp(&(b.span.start, b.rule.code, b.span.end))
    });
    Report {
        verdict,
        diagnostics: out,
    }
}

/// The rules that read verbs: TG002 to TG006.
fn verbs(body: &[u8], root: &Element, out: &mut Vec<Diagnostic>) {
    let mut ended_by: Option<&Element> = None;
    let last = root.children.len().saturating_sub(1);
    for (i, verb) in root.children.iter().enumerate() {
        if let Some(end) = ended_by.take() {
            out.push(unreachable(body, end, verb, root));
        }
        match verb.name.as_str() {
            "Record" if verb.non_blank("action").is_none() => {
                out.push(Diagnostic::new(
                    &RECORD_WITHOUT_ACTION,
                    body,
                    name_span(verb),
                    "<Record> has no action: when it ends Twilio requests this same document again"
                        .into(),
                    "add action=\"https://.../after-recording\" answering with what comes next"
                        .into(),
                ));
            }
            "Connect" => {
                // Without an action Twilio goes on with the next verb when the stream ends (the
                // voicemail fallback); only with nothing after it does the call just hang up.
                let realtime = verb.children.iter().any(|c| {
                    crate::REALTIME_NOUNS
                        .iter()
                        .any(|n| n.verb == "Connect" && n.noun == c.name.as_str())
                });
                if realtime && i == last && verb.non_blank("action").is_none() {
                    out.push(Diagnostic::new(
                        &CONNECT_WITHOUT_ACTION,
                        body,
                        name_span(verb),
                        "<Connect> has no action and nothing follows it: when the stream ends the call hangs up and no webhook hears of it".into(),
                        "add action=\"https://.../stream-ended\" so the end of the stream is reported, or verbs after <Connect> for the call to go on with".into(),
                    ));
                }
                verb.children
                    .iter()
                    .filter(|c| c.name == "Stream")
                    .for_each(|s| stream(body, s, out));
            }
            "Start" => verb
                .children
                .iter()
                .filter(|c| c.name == "Stream")
                .for_each(|s| stream(body, s, out)),
            _ => {}
        }
        if ends_document(verb) {
            ended_by = Some(verb);
        }
    }
}

/// The verb after which Twilio does not go on with the document.
fn ends_document(verb: &Element) -> bool {
    match verb.name.as_str() {
        "Hangup" | "Reject" | "Redirect" => true,
        "Connect" => verb.non_blank("action").is_some(),
        // With an action, a silent caller makes Twilio skip the action and go on with the next
        // verb, so only an action-less `<Record>` ends the document for sure.
        "Record" => verb.non_blank("action").is_none(),
        _ => false,
    }
}

/// TG005, once per verb that ends the document, pointing at the first verb after it.
fn unreachable(body: &[u8], end: &Element, first: &Element, root: &Element) -> Diagnostic {
    let after: Vec<&Element> = root
        .children
        .iter()
        .skip_while(|v| v.span.start < first.span.start)
        .collect();
    let (line, column) = line_column(body, end.tag.start);
    let why = match end.name.as_str() {
        "Record" => "(without an action, Twilio requests this same URL again)",
        "Connect" => "(its action takes the call over when it ends)",
        "Redirect" => "(the call goes on with the redirect's TwiML)",
        _ => "(the call ends there)",
    };
    let names = after
        .iter()
        .map(|v| format!("<{}>", v.name))
        .collect::<Vec<_>>()
        .join(", ");
    Diagnostic::new(
        &UNREACHABLE_VERB,
        body,
        name_span(first),
        format!(
            "{} never run{}: <{}> at line {line}, column {column} ends the document {why}",
            names,
            if after.len() == 1 { "s" } else { "" },
            end.name
        ),
        format!(
            "move the verbs before <{}>, or into the TwiML its next request answers with",
            end.name
        ),
    )
}

/// TG003 and TG004 for one `<Stream>`.
fn stream(body: &[u8], s: &Element, out: &mut Vec<Diagnostic>) {
    let Some(url) = s.non_blank("url") else {
        out.push(Diagnostic::new(
            &STREAM_URL_NOT_WSS,
            body,
            name_span(s),
            "<Stream> has no url".into(),
            "add url=\"wss://host/path\"".into(),
        ));
        return;
    };
    let value = url.value.trim();
    let is_wss = value
        .get(..6)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("wss://"));
    if !is_wss {
        let scheme = value.split_once("://").map_or("no", |(s, _)| s);
        out.push(Diagnostic::new(
            &STREAM_URL_NOT_WSS,
            body,
            url.value_span.clone(),
            format!("stream url {value:?} has {scheme} scheme, not wss://"),
            "serve the media WebSocket over TLS and use a wss:// URL".into(),
        ));
    }
    if let Some(q) = value.find('?') {
        // Point at the query in the raw bytes when it is there as written.
        let raw = body.get(url.value_span.clone()).unwrap_or_default();
        let span = match memchr::memchr(b'?', raw) {
            Some(i) => url.value_span.start + i..url.value_span.end,
            None => url.value_span.clone(),
        };
        let query = value.get(q..).unwrap_or_default();
        out.push(Diagnostic::new(
            &STREAM_URL_HAS_QUERY,
            body,
            span,
            format!("stream url has a query string ({query}): Twilio fails the handshake"),
            "drop the query and send each value as <Parameter name=\"...\" value=\"...\"/> inside the <Stream>".into(),
        ));
    }
}

/// The element's `<` and name, where an editor should put the caret.
fn name_span(el: &Element) -> Range<usize> {
    let end = el.tag.start + 1 + el.name.len();
    el.tag.start..end.min(el.tag.end)
}

/// The end of the (UTF-8) character at `at`, so a one-character span never splits one; `at`
/// itself at the end of the body.
fn next_char_end(body: &[u8], at: usize) -> usize {
    match body.get(at) {
        None => at,
        Some(&b) => {
            let len = match b {
                0xF0..=0xF7 => 4,
                0xE0..=0xEF => 3,
                0xC0..=0xDF => 2,
                _ => 1,
            };
            (at + len).min(body.len())
        }
    }
}

#[cfg(test)]
mod tests;
