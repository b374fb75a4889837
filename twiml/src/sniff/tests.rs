//! The sniff on every prefix of real openings: a prefix never contradicts the whole body, and
//! each body gets the exact answer expected.

use super::*;

const SEED: &[u8] = include_bytes!("../../fixtures/seed_001.xml");

/// Bodies and the answer for the whole of each.
fn cases() -> Vec<(&'static str, Vec<u8>, Sniff)> {
    let flask = b"<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Record maxLength=\"600\" /></Response>";
    vec![
        ("seed", SEED.to_vec(), Sniff::Twiml),
        ("flask str(resp)", flask.to_vec(), Sniff::Twiml),
        ("bare", b"<Response/>".to_vec(), Sniff::Twiml),
        ("attrs", b"<Response\n  a=\"1\">".to_vec(), Sniff::Twiml),
        (
            "bom ws comment",
            b"\xEF\xBB\xBF \r\n<!-- a -- b --><!----><Response>".to_vec(),
            Sniff::Twiml,
        ),
        (
            "pi then decl-like",
            b"<?xml version=\"1.0\"?>\n<?php x ?><!-- <html> --><Response>".to_vec(),
            Sniff::Twiml,
        ),
        (
            "comment holding -->-like",
            b"<!-- <Response> -> --><html>".to_vec(),
            Sniff::NotTwiml,
        ),
        (
            "doctype then response",
            b"<!DOCTYPE Response>\n<Response/>".to_vec(),
            Sniff::Twiml,
        ),
        (
            "doctype subset",
            b"<!DOCTYPE Response [<!ENTITY r \"x\">]><Response/>".to_vec(),
            Sniff::Twiml,
        ),
        (
            "html5",
            b"<!DOCTYPE html>\n<html><head><title>x</title></head><body><Response/></body></html>"
                .to_vec(),
            Sniff::NotTwiml,
        ),
        (
            "html lowercase doctype",
            b"<!doctype html><html>".to_vec(),
            Sniff::NotTwiml,
        ),
        (
            "html no doctype",
            b"  <html lang=\"en\">".to_vec(),
            Sniff::NotTwiml,
        ),
        ("plain text", b"OK".to_vec(), Sniff::NotTwiml),
        ("longer name", b"<ResponseX>".to_vec(), Sniff::NotTwiml),
        ("lowercase", b"<response>".to_vec(), Sniff::NotTwiml),
        ("prefixed", b"<tw:Response>".to_vec(), Sniff::NotTwiml),
        ("text before", b"x<Response>".to_vec(), Sniff::NotTwiml),
        (
            "utf16le no bom",
            "<Response/>"
                .encode_utf16()
                .flat_map(u16::to_le_bytes)
                .collect(),
            Sniff::Twiml,
        ),
        (
            "utf16be no bom",
            "\n<Response/>"
                .encode_utf16()
                .flat_map(u16::to_be_bytes)
                .collect(),
            Sniff::Twiml,
        ),
        ("utf16 bom", b"\xFF\xFE<\0".to_vec(), Sniff::Twiml),
        (
            "double bom",
            b"\xEF\xBB\xBF\xEF\xBB\xBF<Response/>".to_vec(),
            Sniff::Twiml,
        ),
        (
            "unterminated comment",
            b"<!-- <html>".to_vec(),
            Sniff::Twiml,
        ),
        (
            "unterminated pi",
            b"<?xml version=\"1.0\"".to_vec(),
            Sniff::Twiml,
        ),
        // Found by the filter_decide fuzz target: one byte is not enough to rule out UTF-16.
        ("zero second byte", b"+\x001".to_vec(), Sniff::Twiml),
        ("only whitespace", b" \n\t".to_vec(), Sniff::NotTwiml),
        ("empty", Vec::new(), Sniff::NotTwiml),
    ]
}

#[test]
fn whole_bodies_get_the_expected_answer() {
    for (name, body, want) in cases() {
        assert_eq!(sniff(&body, true), want, "{name}");
    }
}

#[test]
fn no_prefix_contradicts_the_whole_body() {
    for (name, body, want) in cases() {
        let mut decided_at = None;
        for n in 0..=body.len() {
            let got = sniff(&body[..n], false);
            assert!(
                got == Sniff::NeedMore || got == want,
                "{name}: prefix of {n} bytes gave {got:?}, whole body {want:?}"
            );
            if got != Sniff::NeedMore {
                decided_at.get_or_insert(n);
                // Once decided, more bytes never change the answer.
                assert_eq!(got, want, "{name} at {n}");
            } else {
                assert!(decided_at.is_none(), "{name}: undecided again at {n}");
                // At the end of the body the same bytes are decided.
                assert_ne!(sniff(&body[..n], true), Sniff::NeedMore, "{name} at {n}");
            }
        }
    }
}

#[test]
fn an_html_page_is_known_from_its_first_bytes() {
    let page = b"<!DOCTYPE html>\n<html>";
    // Up to the end of the doctype and the first byte after it, it could still be TwiML.
    assert_eq!(sniff(b"<!DOCTYPE html", false), Sniff::NeedMore);
    assert_eq!(sniff(b"<!DOCTYPE html>\n", false), Sniff::NeedMore);
    assert_eq!(sniff(b"<!DOCTYPE html>\n<", false), Sniff::NeedMore);
    assert_eq!(sniff(b"<!DOCTYPE html>\n<h", false), Sniff::NotTwiml);
    assert_eq!(sniff(page, false), Sniff::NotTwiml);
    assert_eq!(sniff(b"<Response", false), Sniff::NeedMore);
    assert_eq!(sniff(b"<Response", true), Sniff::Twiml);
    assert_eq!(sniff(b"<Response>", false), Sniff::Twiml);
    // A whole body that stops inside what could have been a prolog or `<Response` is left to the
    // full parse.
    assert_eq!(sniff(b"<Respons", true), Sniff::Twiml);
    assert_eq!(sniff(b"\xEF\xBB", false), Sniff::NeedMore);
    assert_eq!(sniff(b"\xEF\xBB", true), Sniff::Twiml);
}
