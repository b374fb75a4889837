//! Edits a body at the `<Record>` spans `analyze` found, copying every other byte as it is, so a
//! rewritten document differs from the backend's only where it had to.

use std::ops::Range;

use quick_xml::events::Event;
use quick_xml::Reader;

use crate::{Conflict, RewriteAction, RewriteError, RewriteOptions};

/// The attributes `<Record>` and `<Start><Recording>` share, in the order they are written out.
const CARRIED: [&[u8]; 4] = [
    b"recordingStatusCallback",
    b"recordingStatusCallbackMethod",
    b"recordingStatusCallbackEvent",
    b"trim",
];

/// The byte ranges `strip` removes for these conflicts, in order: each element's span, widened to
/// its whole line (indentation and line break) when the element is alone on that line.
pub fn strip_ranges(
    body: &[u8],
    conflicts: &[Conflict],
) -> Result<Vec<Range<usize>>, RewriteError> {
    check_spans(body, conflicts)?;
    Ok(conflicts
        .iter()
        .map(|c| removal_range(body, &c.span))
        .collect())
}

pub(crate) fn rewrite(
    body: &[u8],
    conflicts: &[Conflict],
    opts: &RewriteOptions,
) -> Result<Vec<u8>, RewriteError> {
    let mut ranges = strip_ranges(body, conflicts)?;
    let mut replacement = None;
    if opts.action == RewriteAction::StartRecording {
        if let (Some(range), Some(first)) = (ranges.first_mut(), conflicts.first()) {
            // The replacement takes the element's place, so its indentation and line stay.
            *range = first.span.clone();
            let element = body
                .get(first.span.clone())
                .ok_or_else(|| RewriteError::BadSpan(first.span.clone()))?;
            replacement = Some(start_recording(element, &first.span, opts)?);
        }
    }
    let extra = replacement.as_ref().map_or(0, Vec::len);
    let mut out = Vec::with_capacity(body.len().saturating_add(extra));
    let mut cursor = 0;
    for (i, range) in ranges.iter().enumerate() {
        let kept = body
            .get(cursor..range.start)
            .ok_or_else(|| RewriteError::BadSpan(range.clone()))?;
        out.extend_from_slice(kept);
        if i == 0 {
            if let Some(replacement) = &replacement {
                out.extend_from_slice(replacement);
            }
        }
        cursor = range.end;
    }
    out.extend_from_slice(body.get(cursor..).unwrap_or_default());
    Ok(out)
}

/// Spans must be in order, inside the body, apart, and each hold one `<Record ...>...` element.
fn check_spans(body: &[u8], conflicts: &[Conflict]) -> Result<(), RewriteError> {
    let mut previous_end = 0;
    for c in conflicts {
        let span = &c.span;
        let bad = || RewriteError::BadSpan(span.clone());
        if span.start < previous_end || span.start >= span.end {
            return Err(bad());
        }
        let element = body.get(span.clone()).ok_or_else(bad)?;
        let after_name = element.get(b"<Record".len()).copied();
        let is_record = element.starts_with(b"<Record")
            && matches!(after_name, Some(b' ' | b'\t' | b'\r' | b'\n' | b'/' | b'>'))
            && element.ends_with(b">");
        if !is_record {
            return Err(bad());
        }
        previous_end = span.end;
    }
    Ok(())
}

fn is_blank(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

fn removal_range(body: &[u8], span: &Range<usize>) -> Range<usize> {
    let before = body.get(..span.start).unwrap_or_default();
    let line_start = memchr::memrchr(b'\n', before).map_or(0, |nl| nl + 1);
    let indent = before.get(line_start..).unwrap_or_default();
    if !indent.iter().all(|b| is_blank(*b)) {
        return span.clone();
    }
    let tail = body.get(span.end..).unwrap_or_default();
    let blanks = tail.iter().take_while(|b| is_blank(**b)).count();
    let rest = tail.get(blanks..).unwrap_or_default();
    let newline = if rest.starts_with(b"\r\n") {
        2
    } else if rest.starts_with(b"\n") {
        1
    } else {
        return span.clone();
    };
    line_start..span.end + blanks + newline
}

/// `<Start><Recording .../></Start>` carrying over the `<Record>`'s recording attributes. Their
/// values are copied as escaped in the source; only a `"` (legal inside single quotes) is escaped
/// again, because the output always uses double quotes.
fn start_recording(
    element: &[u8],
    span: &Range<usize>,
    opts: &RewriteOptions,
) -> Result<Vec<u8>, RewriteError> {
    let bad = || RewriteError::BadSpan(span.clone());
    let mut reader = Reader::from_reader(element);
    let start = match reader.read_event() {
        Ok(Event::Start(start)) | Ok(Event::Empty(start)) => start,
        _ => return Err(bad()),
    };
    if start.name().as_ref() != b"Record" {
        return Err(bad());
    }
    let mut values: [Option<Vec<u8>>; 4] = Default::default();
    for attr in start.attributes() {
        let attr = attr.map_err(|_| bad())?;
        let key = attr.key.as_ref();
        if let Some(slot) = CARRIED
            .iter()
            .position(|name| *name == key)
            .and_then(|i| values.get_mut(i))
        {
            *slot = Some(attr.value.into_owned());
        }
    }

    let mut out = Vec::with_capacity(128);
    out.extend_from_slice(b"<Start><Recording");
    for (name, value) in CARRIED.iter().zip(values.iter()) {
        let configured = match (value, &opts.recording_status_callback) {
            (Some(_), _) => None,
            (None, Some(url)) if *name == b"recordingStatusCallback" => Some(url),
            (None, _) => continue,
        };
        out.push(b' ');
        out.extend_from_slice(name);
        out.extend_from_slice(b"=\"");
        match (value, configured) {
            (Some(raw), _) => push_requoted(&mut out, raw),
            (None, Some(url)) => push_escaped(&mut out, url.as_bytes()),
            (None, None) => {}
        }
        out.push(b'"');
    }
    out.extend_from_slice(b" channels=\"dual\"/></Start>");
    Ok(out)
}

/// A raw (already escaped) attribute value, made safe inside double quotes.
fn push_requoted(out: &mut Vec<u8>, raw: &[u8]) {
    for &b in raw {
        if b == b'"' {
            out.extend_from_slice(b"&quot;");
        } else {
            out.push(b);
        }
    }
}

/// A plain string, escaped for a double-quoted attribute value.
fn push_escaped(out: &mut Vec<u8>, text: &[u8]) {
    for &b in text {
        match b {
            b'&' => out.extend_from_slice(b"&amp;"),
            b'<' => out.extend_from_slice(b"&lt;"),
            b'>' => out.extend_from_slice(b"&gt;"),
            b'"' => out.extend_from_slice(b"&quot;"),
            // Attribute-value normalisation would turn these into spaces.
            b'\t' => out.extend_from_slice(b"&#9;"),
            b'\n' => out.extend_from_slice(b"&#10;"),
            b'\r' => out.extend_from_slice(b"&#13;"),
            _ => out.push(b),
        }
    }
}

#[cfg(test)]
mod tests;
