//! Unit tests for the scanner: the conflict rule, what never counts, and each well-formedness
//! check with the exact place it reports.

use super::*;
use crate::{analyze, analyze_with, StreamOpener};

const SEED: &[u8] = include_bytes!("../../fixtures/seed_001.xml");

fn malformed(body: &[u8]) -> Malformed {
    match analyze(body) {
        Verdict::Malformed(m) => m,
        other => panic!("expected malformed, got {other:?}"),
    }
}

fn opener(verb: &str, noun: &str, offset: usize, line: u32, column: u32) -> StreamOpener {
    StreamOpener {
        verb: verb.into(),
        noun: noun.into(),
        offset,
        line,
        column,
    }
}

fn conflicts(body: &[u8]) -> Vec<Conflict> {
    match analyze(body) {
        Verdict::Conflict(c) => c,
        other => panic!("expected conflict, got {other:?}"),
    }
}

#[test]
fn seed_record_before_connect_stream_is_one_conflict() {
    assert_eq!(
        analyze(SEED),
        Verdict::Conflict(vec![Conflict {
            span: 52..151,
            line: 3,
            column: 3,
            blocks: opener("Connect", "Stream", 154, 4, 3),
        }])
    );
}

#[test]
fn body_without_record_bytes_is_clean_even_if_not_xml() {
    assert_eq!(analyze(b"not xml at all <<<"), Verdict::Clean);
    assert_eq!(analyze(b""), Verdict::Clean);
    assert!(!needs_full_scan(b"<Response><Say>hi</Say></Response>"));
}

#[test]
fn record_without_stream_is_voicemail_and_clean() {
    assert_eq!(
        analyze(b"<Response><Say>Leave a message</Say><Record maxLength=\"30\"/></Response>"),
        Verdict::Clean
    );
}

#[test]
fn record_with_body_and_end_tag_spans_to_the_end_tag() {
    let body = b"<Response><Record>\n  <x/>text</Record><Connect><Stream url=\"wss://a/b\"/></Connect></Response>";
    let c = conflicts(body);
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].span, 10..38);
    assert_eq!(&body[c[0].span.clone()], b"<Record>\n  <x/>text</Record>");
    assert_eq!((c[0].line, c[0].column), (1, 11));
}

#[test]
fn every_record_verb_before_the_first_stream_is_reported_in_order() {
    let body = b"<Response><Record/>\n<Say/><Record a=\"1\"></Record><Start><Stream url=\"wss://a\"/></Start></Response>";
    let c = conflicts(body);
    let spans: Vec<_> = c.iter().map(|c| c.span.clone()).collect();
    assert_eq!(spans, vec![10..19, 26..49]);
    assert_eq!((c[1].line, c[1].column), (2, 7));
    assert_eq!(c[1].blocks, opener("Start", "Stream", 49, 2, 30));
}

#[test]
fn records_after_the_first_stream_are_left_alone() {
    // The voicemail fallback after <Connect> (Twilio goes on with the next verb when the stream
    // ends), the recording while a <Start> fork streams, and dead code after <Connect action>.
    for body in [
        &b"<Response><Connect><Stream url=\"wss://a\"/></Connect><Say>busy</Say><Record action=\"/vm\"/></Response>"[..],
        b"<Response><Start><Stream url=\"wss://a\"/></Start><Say/><Record action=\"/vm\"/></Response>",
        b"<Response><Connect action=\"/end\"><Stream url=\"wss://a\"/></Connect><Record/></Response>",
        b"<Response><Connect><ConversationRelay url=\"wss://a\"/></Connect><Record/></Response>",
    ] {
        let inspection = inspect(body).unwrap();
        assert!(inspection.has_stream);
        assert_eq!(inspection.records.len(), 1);
        assert_eq!(analyze(body), Verdict::Clean, "{}", String::from_utf8_lossy(body));
    }
}

#[test]
fn only_the_record_before_the_first_stream_conflicts() {
    let body = b"<Response><Say/><Record/><Connect><Stream url=\"wss://a\"/></Connect><Say/><Record action=\"/vm\"/></Response>";
    let c = conflicts(body);
    assert_eq!(c.len(), 1);
    assert_eq!(&body[c[0].span.clone()], b"<Record/>");
    assert_eq!(c[0].blocks.path(), "Connect/Stream");
    assert_eq!(analyze(body).blocked(), Some(&c[0].blocks));
}

#[test]
fn conversation_relay_is_a_stream_and_other_nouns_can_be_configured() {
    let relay =
        b"<Response><Record/><Connect><ConversationRelay url=\"wss://a\"/></Connect></Response>";
    assert_eq!(
        conflicts(relay)[0].blocks,
        opener("Connect", "ConversationRelay", 19, 1, 20)
    );
    let session = b"<Response><Record/><Connect><AiSession url=\"wss://a\"/></Connect></Response>";
    assert_eq!(analyze(session), Verdict::Clean);
    let nouns = ["Connect/AiSession".parse().unwrap()];
    let with = analyze_with(session, &nouns);
    assert_eq!(
        with.blocked().map(StreamOpener::path),
        Some("Connect/AiSession".into())
    );
    // The list replaces the defaults.
    assert_eq!(analyze_with(relay, &nouns), Verdict::Clean);
    assert_eq!(analyze_with(relay, &[]), Verdict::Clean);
}

#[test]
fn a_stream_only_counts_as_a_noun_of_a_verb() {
    // Under <Gather> or deeper, no verb of this document opens it.
    let body = b"<Response><Record/><Gather><Connect><Stream url=\"wss://a\"/></Connect></Gather></Response>";
    assert_eq!(analyze(body), Verdict::Clean);
    assert!(!inspect(body).unwrap().has_stream);
}

#[test]
fn stream_outside_connect_or_start_does_not_count() {
    assert_eq!(
        analyze(b"<Response><Record/><Stream url=\"wss://a\"/></Response>"),
        Verdict::Clean
    );
}

#[test]
fn record_in_comment_cdata_attribute_text_or_pi_never_counts() {
    let body = br#"<Response>
  <!-- <Record/> -->
  <Say voice="<Record/>">&lt;Record/&gt; <![CDATA[<Record/>]]></Say>
  <?note <Record/>?>
  <Connect><Stream url="wss://a"/></Connect>
</Response>"#;
    assert_eq!(
        malformed(body).reason,
        "in <Say>, attribute voice: `<` is not allowed in attribute values"
    );
    // `<` is illegal in attribute values; the same document without it is clean.
    let body = br#"<Response>
  <!-- <Record/> -->
  <Say voice="&lt;Record/>">&lt;Record/&gt; <![CDATA[<Record/>]]></Say>
  <?note <Record/>?>
  <Connect><Stream url="wss://a"/></Connect>
</Response>"#;
    assert_eq!(analyze(body), Verdict::Clean);
}

#[test]
fn greater_than_inside_attribute_values_does_not_end_the_tag() {
    let body = br#"<Response><Record action="https://x/?a=1>2" trim="do-not-trim"/><Connect><Stream url="wss://a"/></Connect></Response>"#;
    let c = conflicts(body);
    assert_eq!(
        &body[c[0].span.clone()],
        br#"<Record action="https://x/?a=1>2" trim="do-not-trim"/>"#
    );
}

#[test]
fn nested_record_is_not_a_verb() {
    let body = b"<Response><Gather><Record/></Gather><Connect><Stream url=\"wss://a\"/></Connect></Response>";
    assert_eq!(analyze(body), Verdict::Clean);
}

#[test]
fn record_inside_record_is_part_of_the_outer_span() {
    let body = b"<Response><Record><Record/></Record><Connect><Stream url=\"wss://a\"/></Connect></Response>";
    assert_eq!(conflicts(body)[0].span, 10..36);
}

#[test]
fn names_are_case_sensitive_and_unprefixed() {
    let body =
        b"<Response><record/><tw:Record/><Connect><Stream url=\"wss://a\"/></Connect></Response>";
    assert_eq!(analyze(body), Verdict::Clean);
}

#[test]
fn other_root_is_not_twiml() {
    assert_eq!(
        analyze(b"<html><body><Record/><Connect><Stream/></Connect></body></html>"),
        Verdict::NotTwiml
    );
    assert_eq!(analyze(b"<Record/>"), Verdict::NotTwiml);
}

#[test]
fn malformed_wins_over_not_twiml() {
    let m = malformed(b"<html><br><Record/></html>");
    assert_eq!(m.offset, 19);
    assert!(m.reason.contains("</br>"), "{}", m.reason);
}

#[test]
fn mismatched_end_tag_is_malformed_at_the_end_tag() {
    let m = malformed(b"<Response><Record></Response>");
    assert_eq!((m.offset, m.line, m.column), (18, 1, 19));
    assert!(m.reason.contains("Record"), "{}", m.reason);
}

#[test]
fn unclosed_root_is_malformed_at_end_of_input() {
    let body = b"<Response>\n  <Record/>\n";
    let m = malformed(body);
    assert_eq!((m.offset, m.line, m.column), (23, 3, 1));
    assert_eq!(
        m.reason,
        "unexpected end of input: <Response> opened at line 1, column 1 is not closed"
    );
}

#[test]
fn truncated_tag_is_malformed() {
    let m = malformed(b"<Response><Record maxLength=\"3\"");
    assert_eq!(m.offset, 10);
}

#[test]
fn junk_after_root_is_malformed() {
    let m = malformed(b"<Response><Record/></Response>\ntrailing");
    assert_eq!((m.offset, m.line, m.column), (31, 2, 1));
    assert_eq!(m.reason, "text after the root element");
    let m = malformed(b"<Response/><Record/>");
    assert_eq!(m.offset, 11);
    assert_eq!(
        m.reason,
        "a second root element <Record> after the root element"
    );
}

#[test]
fn non_xml_text_around_record_is_malformed() {
    let m = malformed(b"Please <Record/> this");
    assert_eq!(
        (m.offset, m.reason.as_str()),
        (0, "text before the root element")
    );
    let m = malformed(br#"{"twiml": "<Response><Record/></Response>"}"#);
    assert_eq!(m.offset, 0);
}

#[test]
fn only_a_comment_is_no_root() {
    let m = malformed(b"<!-- <Record/> -->");
    assert_eq!((m.offset, m.reason.as_str()), (18, "no root element"));
}

#[test]
fn attribute_errors_are_malformed() {
    let m = malformed(b"<Response><Record a=\"1\" a=\"2\"/></Response>");
    assert_eq!(m.reason, "in <Record>: duplicated attribute");
    let m = malformed(b"<Response><Record a=1/></Response>");
    assert_eq!(m.reason, "in <Record>: attribute value must be quoted");
    let m = malformed(b"<Response><Record playBeep/></Response>");
    assert!(m.reason.starts_with("in <Record>: "), "{}", m.reason);
    let m = malformed(b"<Response><Record a=\"x&y\"/></Response>");
    assert_eq!(
        m.reason,
        "in <Record>, attribute a: `&` without a closing `;`"
    );
}

#[test]
fn undefined_entities_and_bad_char_refs_are_malformed() {
    let m = malformed(b"<Response><Say>&nbsp;</Say><Record/></Response>");
    assert_eq!(
        (m.offset, m.reason.as_str()),
        (15, "undefined entity &nbsp;")
    );
    let m = malformed(b"<Response><Say>&#0;</Say><Record/></Response>");
    assert_eq!(m.reason, "invalid character reference &#0;");
    assert_eq!(
        analyze(b"<Response><Say>&#x41;&#66;&amp;&apos;</Say><Record/></Response>"),
        Verdict::Clean
    );
}

#[test]
fn doctype_is_malformed_even_without_record_bytes() {
    let body = b"<!DOCTYPE Response [<!ENTITY r \"&#60;Record/&#62;\">]><Response>&r;</Response>";
    let m = malformed(body);
    assert_eq!(m.offset, 0);
    assert!(
        m.reason.starts_with("DOCTYPE is not accepted"),
        "{}",
        m.reason
    );
}

#[test]
fn bom_is_skipped_and_offsets_still_count_it() {
    let body =
        b"\xEF\xBB\xBF<Response><Record/><Connect><Stream url=\"wss://a\"/></Connect></Response>";
    assert_eq!(
        conflicts(body),
        vec![Conflict {
            span: 13..22,
            line: 1,
            column: 11,
            blocks: opener("Connect", "Stream", 22, 1, 20),
        }]
    );
}

#[test]
fn utf16_is_malformed() {
    let body = b"\xFF\xFE<\0R\0/\0>\0";
    assert_eq!(malformed(body).offset, 0);
}

/// Before the zero-byte check, these were `clean` by the fast path: no `<Record` bytes in UTF-8.
#[test]
fn utf16_without_bom_is_malformed_not_clean() {
    let doc = "<Response><Record/><Connect><Stream url=\"wss://a/b\"/></Connect></Response>";
    let le: Vec<u8> = doc.encode_utf16().flat_map(u16::to_le_bytes).collect();
    let be: Vec<u8> = format!("\n{doc}")
        .encode_utf16()
        .flat_map(u16::to_be_bytes)
        .collect();
    for body in [&le, &be] {
        assert!(needs_full_scan(body));
        let m = malformed(body);
        assert_eq!(
            (m.offset, m.reason.as_str()),
            (
                0,
                "UTF-16 without a byte order mark: only UTF-8 TwiML is supported"
            )
        );
    }
    // A zero byte further on is a control character where it stands.
    let m = malformed(b"<Response><Say>a\0</Say></Response>");
    assert_eq!(
        (m.offset, m.reason.as_str()),
        (16, "control character 0x00 is not allowed in XML")
    );
}

#[test]
fn xml_declaration_must_come_first() {
    let m = malformed(b"\n<?xml version=\"1.0\"?><Response><Record/></Response>");
    assert_eq!(m.offset, 1);
    let m = malformed(b"<?xml encoding=\"UTF-8\"?><Response><Record/></Response>");
    assert_eq!(m.offset, 0);
}

#[test]
fn declared_encoding_decides_the_byte_check() {
    let latin = b"<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><Response><Say>caf\xE9</Say><Record/></Response>";
    assert_eq!(analyze(latin), Verdict::Clean);
    let utf8 = b"<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Say>caf\xE9</Say><Record/></Response>";
    let m = malformed(utf8);
    assert_eq!((m.offset, m.reason.as_str()), (56, "invalid UTF-8"));
    let m = malformed(b"<?xml version=\"1.0\" encoding=\"UTF-16\"?><Response><Record/></Response>");
    assert_eq!(
        m.reason,
        "unsupported encoding \"utf-16\": TwiML must be UTF-8"
    );
}

#[test]
fn control_characters_are_malformed_at_their_offset() {
    let m = malformed(b"<Response><Say>a\x01</Say><Record/></Response>");
    assert_eq!(
        (m.offset, m.reason.as_str()),
        (16, "control character 0x01 is not allowed in XML")
    );
}

#[test]
fn double_hyphen_in_comment_is_malformed() {
    malformed(b"<Response><!-- a -- b --><Record/></Response>");
}

#[test]
fn cdata_end_in_text_is_malformed() {
    let m = malformed(b"<Response><Say>a]]>b</Say><Record/></Response>");
    assert_eq!(m.offset, 16);
}

#[test]
fn crlf_counts_as_one_line() {
    let body = b"<Response>\r\n  <Record/>\r\n  <Connect><Stream url=\"wss://a\"/></Connect>\r\n</Response>\r\n";
    assert_eq!(
        conflicts(body),
        vec![Conflict {
            span: 14..23,
            line: 2,
            column: 3,
            blocks: opener("Connect", "Stream", 27, 3, 3),
        }]
    );
}

#[test]
fn odd_whitespace_and_namespaces_inside_tags() {
    let body = b"<Response xmlns=\"http://www.twilio.com/\"\n>\t<Record\n\ttimeout = '3'\n/><Connect\n><Stream\turl=\"wss://a\" /></Connect\n></Response >";
    let c = conflicts(body);
    assert_eq!(&body[c[0].span.clone()], b"<Record\n\ttimeout = '3'\n/>");
}

#[test]
fn descriptions_name_the_place() {
    let c = &conflicts(SEED)[0];
    assert_eq!(
        c.describe(),
        "blocking <Record> verb at line 3, column 3 (bytes 52..151) runs before the <Connect><Stream> at line 4, column 3"
    );
    let v = analyze(b"<Response><Record></Response>");
    assert!(v
        .describe()
        .starts_with("malformed: not well-formed XML at line 1, column 19 (byte 18): "));
    assert_eq!(Verdict::NotTwiml.name(), "not_twiml");
}

#[test]
fn attributes_without_whitespace_between_them_are_malformed() {
    let m = malformed(b"<Response><Record a=\"1\"b='2'/></Response>");
    assert_eq!(
        (m.offset, m.reason.as_str()),
        (
            23,
            "in <Record>: attributes must be separated by whitespace"
        )
    );
    assert_eq!(
        analyze(b"<Response><Record a=\"1\" b='2'\n/></Response>"),
        Verdict::Clean
    );
}

#[test]
fn uppercase_xml_declaration_is_malformed_but_other_pis_are_fine() {
    let m = malformed(b"<?XML version=\"1.0\"?><Response><Record/></Response>");
    assert_eq!(m.offset, 0);
    assert_eq!(
        analyze(b"<?xml-stylesheet href=\"a\"?><Response><Record/></Response>"),
        Verdict::Clean
    );
}

#[test]
fn control_characters_are_found_at_every_offset_of_a_word() {
    // The scan skips eight bytes at a time: a control byte must be found in any lane, after any
    // run of tabs and newlines, and in the tail shorter than a word.
    for len in [1usize, 7, 8, 9, 16, 23, 40] {
        for at in 0..len {
            let mut doc: Vec<u8> = (0..len)
                .map(|i| match i % 5 {
                    0 => b'\n',
                    1 => b'\t',
                    2 => b'\r',
                    3 => 0x7F,
                    _ => b'a',
                })
                .collect();
            assert_eq!(first_illegal_control(&doc), None, "len {len}");
            for bad in [0x00u8, 0x01, 0x08, 0x0B, 0x1F] {
                doc[at] = bad;
                assert_eq!(first_illegal_control(&doc), Some(at), "len {len} at {at}");
            }
            // Bytes at and above 0x20, and every byte >= 0x80, are no control characters.
            doc[at] = 0x20;
            assert_eq!(first_illegal_control(&doc), None);
            doc[at] = 0xFF;
            assert_eq!(first_illegal_control(&doc), None);
        }
    }
}

#[test]
fn cdata_ends_in_text_are_found_after_lone_brackets() {
    assert_eq!(find_cdata_end(b"a]b]]c]]>d"), Some(6));
    assert_eq!(find_cdata_end(b"]]>"), Some(0));
    assert_eq!(find_cdata_end(b"a]]"), None);
    assert_eq!(find_cdata_end(b"no brackets"), None);
}

#[test]
fn an_unclosed_element_is_named_from_the_body() {
    let m = malformed(b"<Response>\n  <Record/>\n  <Gather:x-1 a=\"1\">\n");
    assert_eq!(
        m.reason,
        "unexpected end of input: <Gather:x-1> opened at line 3, column 3 is not closed"
    );
    let m = malformed("<Response><Record/><Sáy>".as_bytes());
    assert_eq!(
        m.reason,
        "unexpected end of input: <Sáy> opened at line 1, column 20 is not closed"
    );
}
