//! The verb-level view of a well-formed `<Response>` that the lint rules read: each verb (child of
//! the root) with its start tag, attributes and nouns, and byte spans so a diagnostic can point at
//! the exact attribute value. Well-formedness is `scan`'s job; this pass runs only after `inspect`
//! accepted the body, and gives up quietly (fewer verbs) on anything it does not expect.

use std::borrow::Cow;
use std::ops::Range;

use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// One attribute: its name, its value with references resolved, and the byte span of the raw
/// value between the quotes (the whole start tag when the span cannot be told).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Attr {
    pub name: String,
    pub value: String,
    pub value_span: Range<usize>,
}

/// An element at depth 1 (a verb) or 2 (a noun such as `<Stream>`); deeper ones are not kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Element {
    pub name: String,
    /// The start tag (or the whole empty-element tag).
    pub tag: Range<usize>,
    /// The whole element, end tag included.
    pub span: Range<usize>,
    pub attrs: Vec<Attr>,
    pub children: Vec<Element>,
}

impl Element {
    pub fn attr(&self, name: &str) -> Option<&Attr> {
        self.attrs.iter().find(|a| a.name == name)
    }

    /// The attribute's value, when present and not blank.
    pub fn non_blank(&self, name: &str) -> Option<&Attr> {
        self.attr(name).filter(|a| !a.value.trim().is_empty())
    }
}

/// The root element (its name and start tag) and its verbs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Doc {
    pub root: Option<Element>,
}

/// Reads the elements of a body `inspect` accepted. Offsets are the whole body's (a leading BOM
/// counts, as everywhere in the core).
pub(crate) fn read(body: &[u8]) -> Doc {
    let (base, doc) = match body.strip_prefix(BOM) {
        Some(rest) => (BOM.len(), rest),
        None => (0, body),
    };
    let mut reader = Reader::from_reader(doc);
    reader.config_mut().expand_empty_elements = false;
    // The open elements, outermost first; only the first three levels are kept in full.
    let mut stack: Vec<Element> = Vec::new();
    let mut depth = 0usize;
    let mut root = None;
    let pos = |p: u64| base + usize::try_from(p).unwrap_or(usize::MAX).min(doc.len());
    loop {
        let before = pos(reader.buffer_position());
        let event = match reader.read_event() {
            Ok(event) => event,
            Err(_) => break,
        };
        let after = pos(reader.buffer_position());
        match event {
            Event::Start(ref start) => {
                if depth < 3 {
                    stack.push(element(start, doc, base, before..after));
                }
                depth += 1;
            }
            Event::Empty(ref start) if depth < 3 => {
                let el = element(start, doc, base, before..after);
                match stack.last_mut() {
                    Some(parent) => parent.children.push(el),
                    None => root = Some(el),
                }
            }
            Event::End(_) => {
                depth = depth.saturating_sub(1);
                if depth < 3 {
                    if let Some(mut el) = stack.pop() {
                        el.span.end = after;
                        match stack.last_mut() {
                            Some(parent) => parent.children.push(el),
                            None => root = Some(el),
                        }
                    }
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    Doc { root }
}

fn element(start: &BytesStart<'_>, doc: &[u8], base: usize, tag: Range<usize>) -> Element {
    let attrs = start
        .attributes()
        .flatten()
        .map(|attr| {
            let value_span = match &attr.value {
                Cow::Borrowed(raw) => offset_in(doc, raw)
                    .map(|at| base + at..base + at + raw.len())
                    .unwrap_or_else(|| tag.clone()),
                Cow::Owned(_) => tag.clone(),
            };
            let value = attr
                .unescape_value()
                .map(Cow::into_owned)
                .unwrap_or_else(|_| String::from_utf8_lossy(&attr.value).into_owned());
            Attr {
                name: String::from_utf8_lossy(attr.key.as_ref()).into_owned(),
                value,
                value_span,
            }
        })
        .collect();
    Element {
        name: String::from_utf8_lossy(start.name().as_ref()).into_owned(),
        span: tag.clone(),
        tag,
        attrs,
        children: Vec::new(),
    }
}

/// Where `part` (a slice borrowed from `whole`) starts in `whole`, told by address: quick-xml
/// hands out attribute values as borrows of the input when it reads from a slice.
fn offset_in(whole: &[u8], part: &[u8]) -> Option<usize> {
    let start = (part.as_ptr() as usize).checked_sub(whole.as_ptr() as usize)?;
    (start.checked_add(part.len())? <= whole.len()).then_some(start)
}
