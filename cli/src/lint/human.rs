//! rustc-style output: each diagnostic with its source line, a caret under the span, the rule code
//! and the fix, rendered by codespan-reporting; a summary line at the end.

use std::io::{self, Write};
use std::ops::Range;

use codespan_reporting::diagnostic::{Diagnostic, Label};
use codespan_reporting::files::SimpleFile;
use codespan_reporting::term::{self, Config};
use twiml::lint::Severity;

use super::{Checked, Outcome};

pub fn write(out: &mut impl Write, outcomes: &[Outcome]) -> io::Result<()> {
    let config = Config::default();
    let (mut errors, mut warnings, mut files) = (0usize, 0usize, 0usize);
    for outcome in outcomes {
        match outcome {
            Outcome::Failed { name, error } => {
                writeln!(out, "error: {name}: {error}")?;
                files += 1;
            }
            Outcome::Checked(checked) => {
                files += 1;
                if checked.fixed > 0 {
                    writeln!(
                        out,
                        "fixed: {}: rewrote {} blocking <Record>",
                        checked.input.name, checked.fixed
                    )?;
                }
                for d in &checked.report.diagnostics {
                    match d.severity() {
                        Severity::Error => errors += 1,
                        Severity::Warning => warnings += 1,
                    }
                    render(out, &config, checked, d)?;
                }
            }
        }
    }
    let plural = |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
    writeln!(
        out,
        "{}, {} in {}",
        plural(errors, "error"),
        plural(warnings, "warning"),
        plural(files, "file")
    )
}

fn render(
    out: &mut impl Write,
    config: &Config,
    checked: &Checked,
    d: &twiml::lint::Diagnostic,
) -> io::Result<()> {
    let source = displayable(&checked.input.bytes);
    let span = char_bounded(&source, d.span.clone());
    let file = SimpleFile::new(checked.input.name.as_str(), source.as_str());
    let head = match d.severity() {
        Severity::Error => Diagnostic::error(),
        Severity::Warning => Diagnostic::warning(),
    };
    let mut notes = vec![format!("help: {}", d.help)];
    if let Some(code) = d.rule.twilio_error {
        notes.push(format!("note: Twilio error {code}"));
    }
    let diagnostic = head
        .with_code(d.rule.code)
        .with_message(&d.message)
        .with_labels(vec![Label::primary((), span).with_message(d.rule.name)])
        .with_notes(notes);
    term::emit_to_io_write(out, config, &file, &diagnostic).map_err(io::Error::other)
}

/// The body as text with the same byte offsets: each byte of an invalid UTF-8 sequence becomes
/// `?` (one byte), so spans from the core still point at the same places.
fn displayable(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        text.push_str(chunk.valid());
        text.extend(std::iter::repeat_n('?', chunk.invalid().len()));
    }
    text
}

/// `span` widened to character boundaries (the core's spans already are; this keeps a renderer
/// that slices the text from ever being handed anything else).
fn char_bounded(text: &str, span: Range<usize>) -> Range<usize> {
    let mut start = span.start.min(text.len());
    while !text.is_char_boundary(start) {
        start -= 1;
    }
    let mut end = span.end.clamp(start, text.len());
    while !text.is_char_boundary(end) {
        end += 1;
    }
    start..end
}
