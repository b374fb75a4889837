//! The pure core of twiml-guard: decide whether a TwiML document would block a media stream, and
//! rewrite it so it does not. No proxy-wasm and no I/O, so the Envoy filter, the host service and
//! the tests all share one implementation.
//!
//! CONTRACT (other crates build against these names; keep them stable):
//! - `analyze(body) -> Verdict`
//! - `Verdict::{Clean, Conflict(Vec<Conflict>), NotTwiml, Malformed(Malformed)}` and `Verdict::name()`
//!   giving "clean" | "conflict" | "not_twiml" | "malformed"
//! - `Conflict { span, line, column }`: the byte span of one offending `<Record>` element
//! - `Malformed { offset, line, column, reason }`
//! - `rewrite(body, conflicts, &RewriteOptions) -> Result<Vec<u8>, RewriteError>`
//! - `RewriteAction::{Strip, StartRecording}`, `RewriteOptions { action, recording_status_callback }`

pub mod signature;

use std::ops::Range;

/// One `<Record>` verb that would block a `<Stream>` in the same document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// Byte range of the whole element (`<Record .../>` or `<Record ...>...</Record>`).
    pub span: Range<usize>,
    /// 1-based line and column (in bytes) of the element's `<`.
    pub line: u32,
    pub column: u32,
}

/// Where and why a body is not well-formed XML.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed {
    pub offset: usize,
    pub line: u32,
    pub column: u32,
    pub reason: String,
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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RewriteAction {
    #[default]
    Strip,
    StartRecording,
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

pub fn analyze(_body: &[u8]) -> Verdict {
    unimplemented!("core analysis")
}

pub fn rewrite(
    _body: &[u8],
    _conflicts: &[Conflict],
    _opts: &RewriteOptions,
) -> Result<Vec<u8>, RewriteError> {
    unimplemented!("core rewrite")
}
