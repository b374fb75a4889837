//! The pure core of twiml-guard: decide whether a TwiML document would keep a real-time stream
//! from opening, and rewrite it so it does not. No proxy-wasm and no I/O, so the Envoy filter, the host service and
//! the tests all share one implementation.
//!
//! CONTRACT (other crates build against these names; keep them stable):
//! - `analyze(body) -> Verdict`
//! - `Verdict::{Clean, Conflict(Vec<Conflict>), NotTwiml, Malformed(Malformed)}` and `Verdict::name()`
//!   giving "clean" | "conflict" | "not_twiml" | "malformed"
//! - `Conflict { span, line, column, blocks }`: the byte span of one offending `<Record>` element
//!   and the `StreamOpener` it keeps from running
//! - `Malformed { offset, line, column, reason }`
//! - `rewrite(body, conflicts, &RewriteOptions) -> Result<Vec<u8>, RewriteError>`
//! - `RewriteAction::{Strip, StartRecording}`, `RewriteOptions { action, recording_status_callback }`
//!
//! Also: `describe()`/`Display` on `Verdict`, `Conflict` and `Malformed` (one line for logs and
//! error bodies); `inspect(body)`, a full parse without the fast path (to validate configured
//! TwiML, or to see voicemail `<Record>`s); `has_record_bytes`/`needs_full_scan` (the fast path);
//! `strip_ranges` (the exact bytes strip removes); `line_column`; `sniff(prefix, complete)`
//! (whether a body's first bytes open a `<Response>`, for types such as `text/html` that are
//! TwiML only sometimes).
//!
//! The rule, in Twilio's order: Twilio runs the verbs of a `<Response>` one after another, and
//! `<Record>` blocks (then leaves the document for its `action`, or requests the same URL again).
//! So a conflict is a `<Record>` verb that comes before the first verb opening a real-time stream
//! (a `RealtimeNoun` under it: `<Connect><Stream>`, `<Start><Stream>`,
//! `<Connect><ConversationRelay>` by default; `analyze_with` takes another list). A `<Record>` after
//! it is left alone: after a `<Connect>` without `action` it is the voicemail fallback Twilio runs
//! when the stream ends, after `<Connect action>` it is never reached, after `<Start><Stream>` it
//! records while the fork keeps streaming.
//!
//! Layout: `scan` parses (well-formedness and the conflict rule), `rewrite` edits bytes in place
//! of the spans `scan` found, `position` turns offsets into lines and columns, `sniff` looks at
//! the opening bytes only, `nouns` says which nouns open a stream, `lint` runs the lint rules
//! (TG001-TG008) over `scan`'s parse, and `report` (feature `report`) gives every answer as the
//! JSON the npm package, the CLI and the host's playground share.
//!
//! Decisions for odd input (the README's "Verdicts and rewrite actions" repeats them):
//! - A UTF-8 byte order mark is accepted and skipped; offsets still count it, columns do not.
//! - An XML declaration is accepted only as the very first thing; an `encoding` other than UTF-8
//!   (or an ASCII superset such as ISO-8859-1) is `malformed`, and so is UTF-16, with a byte order
//!   mark or without one (a zero byte among the first two; any U+0000 is malformed anyway).
//! - A `<!DOCTYPE` is `malformed`: entities are never expanded, and a DTD could define one that
//!   expands to a `<Record>` the scanner cannot see. Only the five predefined entities and
//!   character references are accepted.
//! - Precedence: `malformed` beats `not_twiml`, which beats `conflict`/`clean`.
//! - Element names are case-sensitive and unprefixed, like Twilio's: `<record>` and `<tw:Record>`
//!   are not the `<Record>` verb.

pub mod lint;
mod nouns;
mod position;
#[cfg(feature = "report")]
pub mod report;
mod rewrite;
mod scan;
pub mod sniff;

use std::fmt;
pub mod gzip;
pub mod media_token;
pub mod signature;

use std::ops::Range;
use std::sync::LazyLock;

use memchr::memmem::Finder;

pub use nouns::{BadNoun, RealtimeNoun, StreamOpener, REALTIME_NOUNS};
pub use position::line_column;
pub use rewrite::strip_ranges;
pub use scan::{inspect, inspect_with, needs_full_scan, Inspection};
pub use sniff::{sniff, Sniff};

/// One `<Record>` verb that Twilio runs before the first stream opens, so the stream never does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// Byte range of the whole element (`<Record .../>` or `<Record ...>...</Record>`).
    pub span: Range<usize>,
    /// 1-based line and column (in bytes) of the element's `<`.
    pub line: u32,
    pub column: u32,
    /// The verb and noun this `<Record>` keeps from running.
    pub blocks: StreamOpener,
}

impl Conflict {
    /// One line for logs and strict-mode error bodies.
    pub fn describe(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for Conflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "blocking <Record> verb at line {}, column {} (bytes {}..{}) runs before the {} at line {}, column {}",
            self.line,
            self.column,
            self.span.start,
            self.span.end,
            self.blocks,
            self.blocks.line,
            self.blocks.column
        )
    }
}

/// Where and why a body is not well-formed XML.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed {
    pub offset: usize,
    pub line: u32,
    pub column: u32,
    pub reason: String,
}

impl Malformed {
    /// One line for logs and error bodies.
    pub fn describe(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "not well-formed XML at line {}, column {} (byte {}): {}",
            self.line, self.column, self.offset, self.reason
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Clean,
    Conflict(Vec<Conflict>),
    NotTwiml,
    Malformed(Malformed),
}

impl Verdict {
    pub fn name(&self) -> &'static str {
        match self {
            Verdict::Clean => "clean",
            Verdict::Conflict(_) => "conflict",
            Verdict::NotTwiml => "not_twiml",
            Verdict::Malformed(_) => "malformed",
        }
    }

    /// The offending `<Record>` elements, in document order; empty unless `Conflict`.
    pub fn conflicts(&self) -> &[Conflict] {
        match self {
            Verdict::Conflict(c) => c,
            _ => &[],
        }
    }

    /// The stream the conflicting `<Record>`s keep from opening; `None` unless `Conflict`.
    pub fn blocked(&self) -> Option<&StreamOpener> {
        self.conflicts().first().map(|c| &c.blocks)
    }

    /// One line for logs: the verdict name, plus where for conflicts and malformed bodies.
    pub fn describe(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Clean => f.write_str("clean"),
            Verdict::NotTwiml => f.write_str("not_twiml: the root element is not <Response>"),
            Verdict::Malformed(m) => write!(f, "malformed: {m}"),
            Verdict::Conflict(cs) => {
                f.write_str("conflict: ")?;
                for (i, c) in cs.iter().enumerate() {
                    if i > 0 {
                        f.write_str("; ")?;
                    }
                    write!(f, "{c}")?;
                }
                Ok(())
            }
        }
    }
}

/// What a rewrite does with a blocking `<Record>`; configurations spell it `strip` or
/// `start-recording` (serde, with the `serde` feature).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Deserialize),
    serde(rename_all = "kebab-case")
)]
pub enum RewriteAction {
    #[default]
    Strip,
    StartRecording,
}

impl RewriteAction {
    /// The configuration spelling: "strip" | "start-recording".
    pub fn name(self) -> &'static str {
        match self {
            RewriteAction::Strip => "strip",
            RewriteAction::StartRecording => "start-recording",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RewriteOptions {
    pub action: RewriteAction,
    /// Absolute URL; used by `StartRecording` when the `<Record>` carried none of its own.
    pub recording_status_callback: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RewriteError {
    #[error("conflict span {0:?} is outside the body or overlaps another")]
    BadSpan(Range<usize>),
}

/// True when the body holds the bytes `<Record` anywhere. Without them no verdict but `clean` is
/// possible (apart from the DOCTYPE and UTF-16 cases `needs_full_scan` also looks for).
pub fn has_record_bytes(body: &[u8]) -> bool {
    static RECORD: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"<Record"));
    RECORD.find(body).is_some()
}

/// Decide what a response body is, with the default `REALTIME_NOUNS`. Bodies that cannot hold a
/// `<Record>` verb are `clean` after a byte search, without parsing and without allocating.
pub fn analyze(body: &[u8]) -> Verdict {
    scan::analyze(body, &REALTIME_NOUNS)
}

/// `analyze` with another list of the nouns that open a real-time stream.
pub fn analyze_with(body: &[u8], nouns: &[RealtimeNoun]) -> Verdict {
    scan::analyze(body, nouns)
}

/// Rewrite `body` so none of `conflicts` (as returned by `analyze` for this same body) blocks any
/// more. Bytes outside the edited elements are kept as they are.
pub fn rewrite(
    body: &[u8],
    conflicts: &[Conflict],
    opts: &RewriteOptions,
) -> Result<Vec<u8>, RewriteError> {
    rewrite::rewrite(body, conflicts, opts)
}
