//! Parses a body once with quick-xml and decides its verdict. quick-xml checks tag syntax and end
//! names; everything else XML demands of a well-formed document (one root, nothing but whitespace
//! around it, closed elements, valid names, attributes and references, legal characters) is
//! checked here, because a body we call `clean` or rewrite must be one Twilio parses the same way.

use std::ops::Range;
use std::sync::LazyLock;

use memchr::memmem::Finder;
use quick_xml::events::attributes::AttrError;
use quick_xml::events::{BytesDecl, BytesStart, Event};
use quick_xml::Reader;

use crate::{line_column, Conflict, Malformed, RealtimeNoun, StreamOpener, Verdict};

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Built once: `memmem::find` builds its searcher on every call, which on a body of a few hundred
/// bytes (most TwiML) costs more than the search itself.
static DOCTYPE: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"<!DOCTYPE"));

/// True when `analyze` has to parse the body. Anything else is `clean` by a byte search alone:
/// no `<Record` bytes means no `<Record>` verb, unless a DTD could define an entity that expands
/// to one (`<!DOCTYPE`, refused as malformed) or the body is UTF-16 (whose `<Record` is not these
/// bytes; refused as malformed). UTF-16 without a byte order mark is found by its zero bytes: XML
/// allows no U+0000, so a body holding one is never clean.
pub fn needs_full_scan(body: &[u8]) -> bool {
    crate::has_record_bytes(body)
        || DOCTYPE.find(body).is_some()
        || body.starts_with(b"\xFF\xFE")
        || body.starts_with(b"\xFE\xFF")
        || memchr::memchr(0, body).is_some()
}

/// UTF-16 without a byte order mark: one of the first two bytes is zero and the other is not
/// (XML 1.0 appendix F: a document opens with `<` or whitespace, ASCII in either byte order).
fn utf16_without_bom(body: &[u8]) -> bool {
    matches!(body, [a, b, ..] if (*a == 0) != (*b == 0))
}

pub(crate) fn analyze(body: &[u8], nouns: &[RealtimeNoun]) -> Verdict {
    if !needs_full_scan(body) {
        return Verdict::Clean;
    }
    match inspect_with(body, nouns) {
        Ok(inspection) => inspection.verdict(body),
        Err(malformed) => Verdict::Malformed(malformed),
    }
}

/// Parse the whole body, without the fast path, and report what the conflict rule looks at (with
/// the default `REALTIME_NOUNS`).
pub fn inspect(body: &[u8]) -> Result<Inspection, Malformed> {
    inspect_with(body, &crate::REALTIME_NOUNS)
}

/// `inspect` with another list of the nouns that open a real-time stream.
pub fn inspect_with(body: &[u8], nouns: &[RealtimeNoun]) -> Result<Inspection, Malformed> {
    scan(body, nouns).map_err(|fail| {
        let (line, column) = line_column(body, fail.offset);
        Malformed {
            offset: fail.offset,
            line,
            column,
            reason: fail.reason,
        }
    })
}

/// A well-formedness failure at a byte offset of the whole body.
#[derive(Debug, Clone)]
struct Fail {
    offset: usize,
    reason: String,
}

impl Fail {
    fn at(offset: usize, reason: impl Into<String>) -> Self {
        Fail {
            offset,
            reason: reason.into(),
        }
    }
}

/// What a well-formed body holds, as far as the conflict rule cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspection {
    /// The root element is `<Response>`.
    pub root_is_response: bool,
    /// Some verb opens a real-time stream (a configured noun under it).
    pub has_stream: bool,
    /// The first such verb: the `<Record>` verbs before it conflict, the ones after it do not.
    pub stream: Option<StreamOpener>,
    /// Spans of every `<Record>` verb (children of a `<Response>` root), in document order.
    pub records: Vec<Range<usize>>,
}

impl Inspection {
    /// The verdict for this well-formed body (`body` gives conflicts their lines and columns).
    pub fn verdict(self, body: &[u8]) -> Verdict {
        if !self.root_is_response {
            return Verdict::NotTwiml;
        }
        let Some(stream) = self.stream else {
            return Verdict::Clean;
        };
        let conflicts: Vec<Conflict> = self
            .records
            .into_iter()
            .take_while(|span| span.start < stream.offset)
            .map(|span| {
                let (line, column) = line_column(body, span.start);
                Conflict {
                    span,
                    line,
                    column,
                    blocks: stream.clone(),
                }
            })
            .collect();
        if conflicts.is_empty() {
            Verdict::Clean
        } else {
            Verdict::Conflict(conflicts)
        }
    }
}

/// An element whose end tag has not come yet. Its name is read back from the body (after the
/// `<` at `start`), so no element costs an allocation.
struct Open {
    /// Body offset of its `<`, to say where an unclosed element was opened.
    start: usize,
    name_len: usize,
}

/// Where the first stream-opening verb and its noun are named in the body, until `finish`.
#[derive(Clone, Copy)]
struct OpenerAt {
    verb: usize,
    verb_len: usize,
    noun: usize,
    noun_len: usize,
}

/// How the declared encoding constrains the bytes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Charset {
    Utf8,
    /// An ASCII superset with one byte per character (ISO-8859-x, windows-125x): any byte goes.
    SingleByte,
}

fn scan(body: &[u8], nouns: &[RealtimeNoun]) -> Result<Inspection, Fail> {
    if body.starts_with(b"\xFF\xFE") || body.starts_with(b"\xFE\xFF") {
        return Err(Fail::at(
            0,
            "UTF-16 byte order mark: only UTF-8 TwiML is supported",
        ));
    }
    if utf16_without_bom(body) {
        return Err(Fail::at(
            0,
            "UTF-16 without a byte order mark: only UTF-8 TwiML is supported",
        ));
    }
    let (base, doc) = match body.strip_prefix(BOM) {
        Some(rest) => (BOM.len(), rest),
        None => (0, body),
    };
    // quick-xml silently drops a BOM at the start of what it reads, which would shift every
    // offset (and conflict span) by three bytes; a second U+FEFF is text before the root anyway.
    if doc.starts_with(BOM) {
        return Err(Fail::at(
            base,
            "a second byte order mark before the root element",
        ));
    }
    let bad_char = first_illegal_control(doc).map(|i| {
        Fail::at(
            base + i,
            format!(
                "control character 0x{:02X} is not allowed in XML",
                doc.get(i).copied().unwrap_or_default()
            ),
        )
    });
    let mut charset = Charset::Utf8;
    let structure = scan_structure(body, base, doc, &mut charset, nouns);
    let bad_utf8 = match charset {
        Charset::Utf8 => std::str::from_utf8(doc)
            .err()
            .map(|e| Fail::at(base + e.valid_up_to(), "invalid UTF-8")),
        Charset::SingleByte => None,
    };
    // Report the earliest problem: that is the one to fix first.
    let earliest = [bad_char, bad_utf8, structure.as_ref().err().cloned()]
        .into_iter()
        .flatten()
        .min_by_key(|f| f.offset);
    match earliest {
        Some(fail) => Err(fail),
        None => structure,
    }
}

fn scan_structure(
    body: &[u8],
    base: usize,
    doc: &[u8],
    charset: &mut Charset,
    nouns: &[RealtimeNoun],
) -> Result<Inspection, Fail> {
    let mut reader = strict_reader(doc);
    let mut walk = Walk::new(body, base, charset, nouns);
    let pos = |p: u64| base + usize::try_from(p).unwrap_or(usize::MAX).min(doc.len());
    loop {
        let before = pos(reader.buffer_position());
        let event = match reader.read_event() {
            Ok(event) => event,
            Err(e) => return Err(Fail::at(pos(reader.error_position()), e.to_string())),
        };
        let after = pos(reader.buffer_position());
        if !walk.event(event, before, after)? {
            break;
        }
    }
    walk.finish(body)
}

/// quick-xml set to check what it can (end names, comments, `&`); the rest is [`Walk`]'s job.
fn strict_reader(doc: &[u8]) -> Reader<&[u8]> {
    let mut reader = Reader::from_reader(doc);
    let config = reader.config_mut();
    config.check_end_names = true;
    config.check_comments = true;
    config.allow_dangling_amp = false;
    config.allow_unmatched_ends = false;
    config.expand_empty_elements = false;
    config.trim_text(false);
    reader
}

/// The state of one pass over the events: open elements, the root, and what the conflict rule
/// has seen so far. Each kind of event is one step; `finish` checks the end of the document.
struct Walk<'c> {
    body: &'c [u8],
    base: usize,
    charset: &'c mut Charset,
    nouns: &'c [RealtimeNoun],
    stack: Vec<Open>,
    root_seen: bool,
    root_is_response: bool,
    stream: Option<OpenerAt>,
    records: Vec<Range<usize>>,
    /// Where a `<Record>` verb with content opened, until its end tag.
    open_record: Option<usize>,
}

impl<'c> Walk<'c> {
    fn new(
        body: &'c [u8],
        base: usize,
        charset: &'c mut Charset,
        nouns: &'c [RealtimeNoun],
    ) -> Self {
        Walk {
            body,
            base,
            charset,
            nouns,
            stack: Vec::new(),
            root_seen: false,
            root_is_response: false,
            stream: None,
            records: Vec::new(),
            open_record: None,
        }
    }

    /// One event spanning body offsets `before..after`; `false` at the end of input.
    fn event(&mut self, event: Event<'_>, before: usize, after: usize) -> Result<bool, Fail> {
        match event {
            Event::Decl(decl) => self.declaration(&decl, before)?,
            Event::DocType(_) => {
                return Err(Fail::at(
                    before,
                    "DOCTYPE is not accepted: TwiML needs no DTD, and entities are never expanded",
                ))
            }
            Event::PI(pi) => {
                if pi.target().eq_ignore_ascii_case(b"xml") {
                    return Err(Fail::at(
                        before,
                        "an XML declaration must be lowercase `<?xml` and come first",
                    ));
                }
            }
            Event::Comment(_) => {}
            Event::Text(text) => self.text(&text, before)?,
            Event::GeneralRef(reference) => {
                if self.stack.is_empty() {
                    return Err(Fail::at(before, "a reference outside the root element"));
                }
                check_reference(&reference).map_err(|reason| Fail::at(before, reason))?;
            }
            Event::CData(_) => {
                if self.stack.is_empty() {
                    return Err(Fail::at(before, "CDATA outside the root element"));
                }
            }
            Event::Start(ref element) => self.element(element, false, before, after)?,
            Event::Empty(ref element) => self.element(element, true, before, after)?,
            Event::End(_) => self.end(after),
            Event::Eof => return Ok(false),
        }
        Ok(true)
    }

    fn declaration(&mut self, decl: &BytesDecl<'_>, before: usize) -> Result<(), Fail> {
        if before != self.base {
            return Err(Fail::at(
                before,
                "an XML declaration is only allowed at the very start",
            ));
        }
        if let Err(e) = decl.version() {
            return Err(Fail::at(before, e.to_string()));
        }
        match decl.encoding() {
            None => Ok(()),
            Some(Ok(enc)) => {
                *self.charset = charset_of(&enc, before)?;
                Ok(())
            }
            Some(Err(e)) => Err(Fail::at(
                before,
                format!("bad XML declaration: {}", attr_error_text(&e)),
            )),
        }
    }

    fn text(&self, text: &[u8], before: usize) -> Result<(), Fail> {
        if self.stack.is_empty() {
            if let Some(i) = text.iter().position(|b| !is_xml_space(*b)) {
                let which = if self.root_seen { "after" } else { "before" };
                return Err(Fail::at(
                    before + i,
                    format!("text {which} the root element"),
                ));
            }
        } else if let Some(i) = find_cdata_end(text) {
            return Err(Fail::at(
                before + i,
                "`]]>` is not allowed in text outside CDATA",
            ));
        }
        Ok(())
    }

    /// A start tag or an empty-element tag: checks, the root, and the conflict rule's facts.
    fn element(
        &mut self,
        element: &BytesStart<'_>,
        is_empty: bool,
        before: usize,
        after: usize,
    ) -> Result<(), Fail> {
        let name = element.name();
        let name = name.as_ref();
        check_name(name).map_err(|reason| Fail::at(before + 1, reason))?;
        check_attributes(element, before)?;
        if self.stack.is_empty() {
            if self.root_seen {
                return Err(Fail::at(
                    before,
                    format!(
                        "a second root element <{}> after the root element",
                        String::from_utf8_lossy(name)
                    ),
                ));
            }
            self.root_seen = true;
            self.root_is_response = name == b"Response";
        }
        let is_verb = self.root_is_response && self.stack.len() == 1;
        let is_noun = self.root_is_response && self.stack.len() == 2;
        if is_noun && self.stream.is_none() {
            self.opener(name, before);
        }
        if name == b"Record" && is_verb {
            if is_empty {
                self.records.push(before..after);
            } else {
                self.open_record = Some(before);
            }
        }
        if !is_empty {
            self.stack.push(Open {
                start: before,
                name_len: name.len(),
            });
        }
        Ok(())
    }

    /// A noun (child of a verb) at `lt`: is it the first that opens a real-time stream?
    fn opener(&mut self, noun: &[u8], lt: usize) {
        let Some(verb) = self.stack.get(1) else {
            return;
        };
        let verb_name = self
            .body
            .get(verb.start + 1..verb.start + 1 + verb.name_len)
            .unwrap_or_default();
        if self.nouns.iter().any(|n| n.matches(verb_name, noun)) {
            self.stream = Some(OpenerAt {
                verb: verb.start,
                verb_len: verb.name_len,
                noun: lt,
                noun_len: noun.len(),
            });
        }
    }

    fn end(&mut self, after: usize) {
        // quick-xml has already matched the name against the open element.
        self.stack.pop();
        if self.stack.len() == 1 {
            if let Some(start) = self.open_record.take() {
                self.records.push(start..after);
            }
        }
    }

    /// At the end of input: every element closed, and a root seen.
    fn finish(self, body: &[u8]) -> Result<Inspection, Fail> {
        if let Some(open) = self.stack.last() {
            let (line, column) = line_column(body, open.start);
            let name = name_at(body, open.start, open.name_len);
            return Err(Fail::at(
                body.len(),
                format!(
                    "unexpected end of input: <{name}> opened at line {line}, column {column} is not closed",
                ),
            ));
        }
        if !self.root_seen {
            return Err(Fail::at(body.len(), "no root element"));
        }
        let stream = self.stream.map(|at| {
            let (line, column) = line_column(body, at.verb);
            StreamOpener {
                verb: name_at(body, at.verb, at.verb_len).into_owned(),
                noun: name_at(body, at.noun, at.noun_len).into_owned(),
                offset: at.verb,
                line,
                column,
            }
        });
        Ok(Inspection {
            root_is_response: self.root_is_response,
            has_stream: stream.is_some(),
            stream,
            records: self.records,
        })
    }
}

/// The name of the element whose `<` is at `lt`.
fn name_at(body: &[u8], lt: usize, len: usize) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(body.get(lt + 1..lt + 1 + len).unwrap_or_default())
}

fn charset_of(encoding: &[u8], at: usize) -> Result<Charset, Fail> {
    let enc = String::from_utf8_lossy(encoding).to_ascii_lowercase();
    let single_byte = enc.starts_with("iso-8859-")
        || enc.starts_with("windows-125")
        || matches!(enc.as_str(), "latin1" | "iso-latin-1" | "cp1252");
    if matches!(enc.as_str(), "utf-8" | "utf8" | "us-ascii" | "ascii") {
        Ok(Charset::Utf8)
    } else if single_byte {
        Ok(Charset::SingleByte)
    } else {
        Err(Fail::at(
            at,
            format!("unsupported encoding {enc:?}: TwiML must be UTF-8"),
        ))
    }
}

fn is_xml_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// The first `]]>` in `text`. `memmem::find` builds a searcher on every call, which costs more
/// than the search in the short texts between tags; most texts hold no `]` at all.
fn find_cdata_end(text: &[u8]) -> Option<usize> {
    memchr::memchr_iter(b']', text).find(|&i| text.get(i..).is_some_and(|t| t.starts_with(b"]]>")))
}

/// XML 1.0 allows no C0 control characters but tab, LF and CR, not even as references.
fn first_illegal_control(doc: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let illegal = |b: u8| b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r');
    // Eight bytes at a time: a word with no byte under 0x20 (the usual case, text and markup)
    // is skipped whole; only a word holding one (often a newline) is looked at byte by byte.
    let mut chunks = doc.chunks_exact(8);
    let mut at = 0;
    for chunk in chunks.by_ref() {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let x = u64::from_le_bytes(word);
        if x.wrapping_sub(ONES * 0x20) & !x & HIGHS != 0 {
            if let Some(i) = chunk.iter().position(|&b| illegal(b)) {
                return Some(at + i);
            }
        }
        at += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|&b| illegal(b))
        .map(|i| at + i)
}

fn is_name_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b == b':' || b >= 0x80
}

fn is_name_char(b: u8) -> bool {
    is_name_start(b) || b.is_ascii_digit() || b == b'-' || b == b'.'
}

fn check_name(name: &[u8]) -> Result<(), String> {
    match name.split_first() {
        None => Err("missing name after `<`".into()),
        Some((first, rest)) if is_name_start(*first) && rest.iter().all(|b| is_name_char(*b)) => {
            Ok(())
        }
        Some(_) => Err(format!(
            "invalid name {:?}",
            String::from_utf8_lossy(name).into_owned()
        )),
    }
}

fn attr_error_text(e: &AttrError) -> &'static str {
    match e {
        AttrError::ExpectedEq(_) => "attribute name must be followed by `=`",
        AttrError::ExpectedValue(_) => "`=` must be followed by a quoted value",
        AttrError::UnquotedValue(_) => "attribute value must be quoted",
        AttrError::ExpectedQuote(..) => "attribute value is missing its closing quote",
        AttrError::Duplicated(..) => "duplicated attribute",
    }
}

fn attr_error_pos(e: &AttrError) -> usize {
    match e {
        AttrError::ExpectedEq(p)
        | AttrError::ExpectedValue(p)
        | AttrError::UnquotedValue(p)
        | AttrError::ExpectedQuote(p, _)
        | AttrError::Duplicated(p, _) => *p,
    }
}

/// Checks every attribute of an element whose `<` is at body offset `lt`.
fn check_attributes(element: &BytesStart<'_>, lt: usize) -> Result<(), Fail> {
    let name_len = element.name().as_ref().len();
    // Made only for an error message: most elements have attributes, and few are wrong.
    let tag = || String::from_utf8_lossy(element.name().as_ref()).into_owned();
    if let Some(i) = glued_attribute(element.attributes_raw()) {
        let tag = tag();
        return Err(Fail::at(
            lt + 1 + name_len + i,
            format!("in <{tag}>: attributes must be separated by whitespace"),
        ));
    }
    for attr in element.attributes() {
        // Attribute positions count from the byte after `<`.
        let attr = attr.map_err(|e| {
            Fail::at(
                lt + 1 + attr_error_pos(&e),
                format!("in <{}>: {}", tag(), attr_error_text(&e)),
            )
        })?;
        check_name(attr.key.as_ref())
            .map_err(|reason| Fail::at(lt, format!("in <{}>: attribute {reason}", tag())))?;
        check_attribute_value(&attr.value).map_err(|reason| {
            Fail::at(
                lt,
                format!(
                    "in <{}>, attribute {}: {reason}",
                    tag(),
                    String::from_utf8_lossy(attr.key.as_ref())
                ),
            )
        })?;
    }
    Ok(())
}

/// quick-xml accepts `a="1"b="2"`; XML wants whitespace after each closing quote. Returns the
/// offset (in `raw`) of the byte that should have been whitespace.
fn glued_attribute(raw: &[u8]) -> Option<usize> {
    let mut quote = None;
    for (i, &b) in raw.iter().enumerate() {
        match quote {
            Some(q) if b == q => {
                quote = None;
                let next = raw.get(i + 1).copied();
                if next.is_some_and(|n| !is_xml_space(n) && n != b'/') {
                    return Some(i + 1);
                }
            }
            Some(_) => {}
            None if b == b'"' || b == b'\'' => quote = Some(b),
            None => {}
        }
    }
    None
}

/// A raw attribute value may not hold `<`, and each `&` must start a known reference.
fn check_attribute_value(raw: &[u8]) -> Result<(), String> {
    if raw.contains(&b'<') {
        return Err("`<` is not allowed in attribute values".into());
    }
    let mut rest = raw;
    while let Some(amp) = memchr::memchr(b'&', rest) {
        let after = rest.get(amp + 1..).unwrap_or_default();
        let Some(semi) = memchr::memchr(b';', after) else {
            return Err("`&` without a closing `;`".into());
        };
        check_reference(after.get(..semi).unwrap_or_default())?;
        rest = after.get(semi + 1..).unwrap_or_default();
    }
    Ok(())
}

/// `name` is what sits between `&` and `;`. Only the predefined entities and character references
/// to legal XML characters exist, since DTDs are refused.
fn check_reference(name: &[u8]) -> Result<(), String> {
    if matches!(name, b"lt" | b"gt" | b"amp" | b"apos" | b"quot") {
        return Ok(());
    }
    let shown = || String::from_utf8_lossy(name).into_owned();
    let code = match name {
        [b'#', b'x', hex @ ..] => parse_digits(hex, 16),
        [b'#', dec @ ..] => parse_digits(dec, 10),
        _ => return Err(format!("undefined entity &{};", shown())),
    };
    match code {
        Some(c) if is_xml_char(c) => Ok(()),
        _ => Err(format!("invalid character reference &{};", shown())),
    }
}

fn parse_digits(digits: &[u8], radix: u32) -> Option<u32> {
    if digits.is_empty() || digits.len() > 8 {
        return None;
    }
    let mut value: u32 = 0;
    for &d in digits {
        let digit = char::from(d).to_digit(radix)?;
        value = value.checked_mul(radix)?.checked_add(digit)?;
    }
    Some(value)
}

fn is_xml_char(c: u32) -> bool {
    matches!(c, 0x9 | 0xA | 0xD | 0x20..=0xD7FF | 0xE000..=0xFFFD | 0x10000..=0x10FFFF)
}

#[cfg(test)]
mod tests;
