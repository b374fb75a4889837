//! Tells from the first bytes of a body whether it could be TwiML, so a type Twilio also runs as
//! TwiML (`text/html`, which Flask's `return str(resp)` sends) can be inspected without making
//! every HTML page wait for its last byte: a page that does not open with `<Response` is known
//! to be something else after its first chunk.

const BOM: &[u8] = b"\xEF\xBB\xBF";
const RESPONSE: &[u8] = b"<Response";

/// What the first bytes of a body say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sniff {
    /// The body opens with a `<Response` element (or cannot be ruled out: UTF-16, a DTD with an
    /// internal subset, an unterminated prolog at the end of the body): judge it in full.
    Twiml,
    /// The body opens with something else: it is not TwiML, whatever follows.
    NotTwiml,
    /// The prefix ends before the first element: more bytes are needed.
    NeedMore,
}

fn is_xml_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// `true` when `rest` is a (possibly empty) prefix of `whole`: the bytes so far agree with it.
fn could_become(rest: &[u8], whole: &[u8]) -> bool {
    rest.len() < whole.len() && whole.starts_with(rest)
}

/// How far a prolog item starting at `rest` extends (the offset just past it), or `None` when its
/// end is not in `rest` yet.
fn item_end(rest: &[u8], close: &[u8]) -> Option<usize> {
    memchr::memmem::find(rest, close).map(|i| i + close.len())
}

/// The first element of `prefix`, skipping a UTF-8 byte order mark, whitespace, the XML
/// declaration and other processing instructions, comments and a `<!DOCTYPE ...>` without an
/// internal subset. `complete` says `prefix` is the whole body: then there is no more to wait
/// for, and a prolog that never ends is left to the full parse (`Twiml`).
///
/// Fails closed: whatever could still turn out to be a `<Response>` root is `Twiml` or
/// `NeedMore`, never `NotTwiml`. A UTF-16 body (with or without a byte order mark: a zero byte
/// among the first two) is `Twiml`, so the full parse refuses it.
pub fn sniff(prefix: &[u8], complete: bool) -> Sniff {
    let need_more = if complete {
        Sniff::Twiml
    } else {
        Sniff::NeedMore
    };
    if prefix.starts_with(b"\xFF\xFE")
        || prefix.starts_with(b"\xFE\xFF")
        || prefix.iter().take(2).any(|&b| b == 0)
    {
        return Sniff::Twiml;
    }
    // The UTF-16 test above needs two bytes: a lone first byte decides nothing yet.
    if prefix.len() < 2 && !complete {
        return Sniff::NeedMore;
    }
    // A whole body of half a UTF-16 byte order mark is left to the full parse.
    if matches!(prefix, [0xFF | 0xFE]) {
        return need_more;
    }
    let (had_bom, mut rest) = match prefix.strip_prefix(BOM) {
        Some(rest) => (true, rest),
        None => (false, prefix),
    };
    // A second byte order mark is left to the full parse (which refuses it), whatever follows.
    if had_bom && rest.starts_with(BOM) {
        return Sniff::Twiml;
    }
    if !rest.is_empty() && could_become(rest, BOM) {
        return need_more;
    }
    loop {
        let start = rest.iter().position(|&b| !is_xml_space(b));
        let Some(start) = start else {
            // Only whitespace so far. A whole body of nothing but whitespace holds no element:
            // Twilio cannot run it as TwiML either.
            return if complete {
                Sniff::NotTwiml
            } else {
                Sniff::NeedMore
            };
        };
        rest = rest.get(start..).unwrap_or_default();
        let close: &[u8] = if rest.starts_with(b"<?") {
            b"?>"
        } else if rest.starts_with(b"<!--") {
            b"-->"
        } else if rest.len() >= 9
            && rest
                .get(..9)
                .is_some_and(|d| d.eq_ignore_ascii_case(b"<!DOCTYPE"))
        {
            let end = memchr::memchr(b'>', rest);
            // An internal subset can declare entities; only the full parse may judge that.
            if memchr::memchr(
                b'[',
                rest.get(..end.unwrap_or(rest.len())).unwrap_or_default(),
            )
            .is_some()
            {
                return Sniff::Twiml;
            }
            b">"
        } else if rest.starts_with(RESPONSE) {
            return match rest.get(RESPONSE.len()) {
                None => need_more,
                Some(&b) if is_xml_space(b) || b == b'>' || b == b'/' => Sniff::Twiml,
                Some(_) => Sniff::NotTwiml,
            };
        } else if could_become(rest, RESPONSE)
            || could_become(rest, b"<!--")
            || could_become(rest, b"<?")
            || (rest.len() < 9
                && b"<!DOCTYPE"
                    .get(..rest.len())
                    .is_some_and(|d| d.eq_ignore_ascii_case(rest)))
        {
            return need_more;
        } else {
            return Sniff::NotTwiml;
        };
        // The opening bytes are part of the item: `<!-->` does not close the comment it opens.
        let open = if close == b"-->" { 4 } else { 2 };
        match rest.get(open..).and_then(|r| item_end(r, close)) {
            Some(end) => rest = rest.get(open + end..).unwrap_or_default(),
            None => return need_more,
        }
    }
}

#[cfg(test)]
mod tests;
