//! The rule table: each rule's stable code, name, severity, Twilio error and why it exists. The
//! CLI, the npm package and docs/lint.md all read these; a code is never reused for another rule.

/// How bad a finding is. `Error` means Twilio fails the call or the document; `Warning` means the
/// call runs but not the way the author most likely meant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Warning,
    Error,
}

impl Severity {
    pub fn name(self) -> &'static str {
        match self {
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

/// One lint rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// Stable code, `TG` and three digits.
    pub code: &'static str,
    /// Stable kebab-case name.
    pub name: &'static str,
    pub severity: Severity,
    /// The Twilio error code the mistake produces, where Twilio documents one.
    pub twilio_error: Option<u32>,
    /// One line: what the rule finds.
    pub summary: &'static str,
    /// Why it matters on a real call.
    pub rationale: &'static str,
}

pub const RECORD_BLOCKS_STREAM: Rule = Rule {
    code: "TG001",
    name: "record-blocks-stream",
    severity: Severity::Error,
    twilio_error: None,
    summary: "a <Record> verb that runs before the first verb opening a real-time stream",
    rationale: "Twilio runs verbs in order, and <Record> blocks until silence, a key or maxLength and then requests its action (or the same URL again), so a <Connect><Stream>, <Start><Stream> or <Connect><ConversationRelay> after it is never reached; the media WebSocket never opens and a voice agent behind it fails on every call. A <Record> after the first stream is not this mistake (a voicemail fallback after <Connect>, a recording while a <Start> fork streams). This is the conflict the edge filter rewrites.",
};

pub const RECORD_WITHOUT_ACTION: Rule = Rule {
    code: "TG002",
    name: "record-without-action",
    severity: Severity::Warning,
    twilio_error: None,
    summary: "a <Record> verb without an action URL",
    rationale: "When a <Record> ends, Twilio requests its action; without one it requests the current document's URL again. A backend that answers that URL with the same TwiML records again: the call loops, one recording per turn.",
};

pub const STREAM_URL_NOT_WSS: Rule = Rule {
    code: "TG003",
    name: "stream-url-not-wss",
    severity: Severity::Error,
    twilio_error: Some(31922),
    summary: "a <Stream> whose url is missing or not wss://",
    rationale: "Twilio opens Media Streams only to secure WebSocket URLs (wss://); any other scheme, or no url, fails the stream with error 31922 and the call never reaches the stream's server.",
};

pub const STREAM_URL_HAS_QUERY: Rule = Rule {
    code: "TG004",
    name: "stream-url-has-query",
    severity: Severity::Error,
    twilio_error: Some(31920),
    summary: "a <Stream> url with a query string",
    rationale: "Twilio does not support query strings in a stream url: the WebSocket handshake fails (error 31920). Pass values as <Parameter name value> children instead; they arrive in the start message's customParameters.",
};

pub const UNREACHABLE_VERB: Rule = Rule {
    code: "TG005",
    name: "unreachable-verb",
    severity: Severity::Warning,
    twilio_error: None,
    summary: "verbs after a verb that never continues with the next one",
    rationale: "After <Hangup>, <Reject>, <Redirect>, a <Connect> with an action (requested when the connection ends) or a <Record> without an action (Twilio requests the same URL again), Twilio does not run the rest of the document: the verbs after it are dead code that a reader believes will run.",
};

pub const CONNECT_WITHOUT_ACTION: Rule = Rule {
    code: "TG006",
    name: "connect-without-action",
    severity: Severity::Warning,
    twilio_error: None,
    summary: "a <Connect><Stream> (or <ConversationRelay>) without an action URL and with no verb after it",
    rationale: "Twilio requests <Connect>'s action when the stream ends; without one it goes on with the next verb, and with none left the call hangs up when the agent does: the end of the stream never reaches a webhook, so whatever runs after the call (the post-call pipeline, a summary, a callback) never starts. Verbs after an action-less <Connect> (a voicemail fallback) are Twilio's documented behaviour and not flagged.",
};

pub const MALFORMED: Rule = Rule {
    code: "TG007",
    name: "malformed",
    severity: Severity::Error,
    twilio_error: Some(12100),
    summary: "not well-formed XML",
    rationale: "Twilio cannot parse the document (error 12100, document parse failure) and the caller hears an application error. The edge filter passes or rejects such bodies (on_malformed), it never rewrites them.",
};

pub const NOT_TWIML: Rule = Rule {
    code: "TG008",
    name: "not-twiml",
    severity: Severity::Error,
    twilio_error: Some(12100),
    summary: "well-formed XML whose root element is not <Response>",
    rationale: "TwiML is a <Response> document; Twilio does not run any other root and fails the document (error 12100, whose documented causes include a missing <Response> root). Names are case-sensitive: <response> is not <Response>.",
};

/// Every rule, in code order.
pub const RULES: [Rule; 8] = [
    RECORD_BLOCKS_STREAM,
    RECORD_WITHOUT_ACTION,
    STREAM_URL_NOT_WSS,
    STREAM_URL_HAS_QUERY,
    UNREACHABLE_VERB,
    CONNECT_WITHOUT_ACTION,
    MALFORMED,
    NOT_TWIML,
];

/// The rule with this code or name (`TG001` or `record-blocks-stream`).
pub fn rule(code_or_name: &str) -> Option<&'static Rule> {
    RULES
        .iter()
        .find(|r| r.code.eq_ignore_ascii_case(code_or_name) || r.name == code_or_name)
}
