//! Property tests over generated TwiML: random mixes of verbs, `<Record>`s with and without
//! bodies, attribute values with `>` and escapes, comments, CDATA and whitespace. The generator
//! knows where it put each `<Record>` verb and the first stream, so verdicts and spans are checked
//! exactly (only a `<Record>` before the first stream conflicts), and strip is checked byte for
//! byte: its output is the input with the removed ranges cut out, and nothing from the first
//! stream on is ever touched.

// Test code: clippy.toml's allow-*-in-tests switches cover `#[test]` functions, not this
// binary's helpers.
#![allow(clippy::indexing_slicing, clippy::panic)]

use std::ops::Range;

use proptest::prelude::*;
use twiml::{
    analyze, inspect, rewrite, strip_ranges, Conflict, RewriteAction, RewriteOptions, Verdict,
};

/// One child of `<Response>`, already rendered.
#[derive(Debug, Clone)]
struct Child {
    text: String,
    /// A `<Record>` verb: its whole text is the element.
    record: bool,
    /// Holds a real-time noun (`<Stream>`, `<ConversationRelay>`) under `<Connect>` or `<Start>`.
    stream: bool,
}

/// A generated document and what the generator knows about it.
#[derive(Debug, Clone)]
struct Doc {
    bytes: Vec<u8>,
    records: Vec<Range<usize>>,
    has_stream: bool,
    /// Offset of the first verb that opens a stream.
    first_stream: Option<usize>,
}

impl Doc {
    /// The `<Record>` verbs Twilio runs before the first stream: the only conflicts.
    fn blocking(&self) -> Vec<Range<usize>> {
        match self.first_stream {
            Some(at) => self
                .records
                .iter()
                .filter(|r| r.start < at)
                .cloned()
                .collect(),
            None => Vec::new(),
        }
    }
}

fn attr_value() -> impl Strategy<Value = String> {
    let pieces = prop::sample::select(vec![
        "a",
        "x y",
        ">",
        "/>",
        "&amp;",
        "&lt;Record/&gt;",
        "&#60;Record&#x3E;",
        "&quot;",
        "\"",
        "'",
        "=",
        " ",
        "\t",
        "https://x.example/cb?a=1&amp;b=2",
        "é",
    ]);
    prop::collection::vec(pieces, 0..5).prop_map(|p| p.concat())
}

/// ` name="value"` with the quote the value allows and random spacing.
fn attrs() -> impl Strategy<Value = String> {
    let names = prop::sample::subsequence(
        vec![
            "maxLength",
            "timeout",
            "trim",
            "action",
            "recordingStatusCallback",
            "recordingStatusCallbackMethod",
            "recordingStatusCallbackEvent",
            "playBeep",
            "x-y.z",
            "ns:attr",
        ],
        0..5,
    );
    names
        .prop_flat_map(|names| {
            let n = names.len();
            (
                Just(names),
                prop::collection::vec(attr_value(), n),
                prop::collection::vec(prop::sample::select(vec![" ", "\n    ", "\t", "\r\n "]), n),
                prop::collection::vec(prop::sample::select(vec!["=", " = ", "=\n"]), n),
            )
        })
        .prop_map(|(names, values, seps, eqs)| {
            let mut out = String::new();
            for (((name, value), sep), eq) in names.iter().zip(values).zip(seps).zip(eqs) {
                let quoted = if value.contains('"') {
                    format!("'{}'", value.replace('\'', "&apos;"))
                } else {
                    format!("\"{value}\"")
                };
                out.push_str(&format!("{sep}{name}{eq}{quoted}"));
            }
            out
        })
}

fn ws() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "", "", "\n", "\n  ", "\r\n\t", "  ", " \n", "\n\n    ",
    ])
}

fn text() -> impl Strategy<Value = String> {
    let pieces = prop::sample::select(vec![
        "Hello",
        "&lt;Record/&gt;",
        "&amp;",
        "a > b",
        "<![CDATA[<Record/> & <Connect>]]>",
        "<!-- <Record maxLength=\"3\"/> -->",
        "\n  ",
        "&#x3C;Record&#x3E;",
        "<?pi <Record/>?>",
    ]);
    prop::collection::vec(pieces, 0..4).prop_map(|p| p.concat())
}

fn record() -> impl Strategy<Value = Child> {
    let body = prop_oneof![
        Just(None),
        text().prop_map(Some),
        (text(), attrs()).prop_map(|(t, a)| Some(format!("{t}<Record{a}/><x>{t}</x>"))),
    ];
    (attrs(), ws(), body, ws()).prop_map(|(attrs, ws1, body, ws2)| {
        let text = match body {
            None => format!("<Record{attrs}{ws1}/>"),
            Some(body) => format!("<Record{attrs}{ws1}>{body}</Record{ws2}>"),
        };
        Child {
            text,
            record: true,
            stream: false,
        }
    })
}

fn stream() -> impl Strategy<Value = Child> {
    let params = prop::collection::vec(attr_value(), 0..3).prop_map(|values| {
        values
            .iter()
            .enumerate()
            .map(|(i, v)| {
                format!(
                    "<Parameter name=\"p{i}\" value=\"{}\"/>",
                    v.replace('"', "&quot;")
                )
            })
            .collect::<String>()
    });
    (0u8..3, attrs(), params, ws()).prop_map(|(which, attrs, params, ws)| {
        let (wrapper, noun) = match which {
            0 => ("Connect", "Stream"),
            1 => ("Start", "Stream"),
            _ => ("Connect", "ConversationRelay"),
        };
        let stream = if params.is_empty() {
            format!("<{noun} url=\"wss://m.example/ws\"{attrs}/>")
        } else {
            format!("<{noun} url=\"wss://m.example/ws\"{attrs}>{ws}{params}{ws}</{noun}>")
        };
        Child {
            text: format!("<{wrapper}>{ws}{stream}{ws}</{wrapper}>"),
            record: false,
            stream: true,
        }
    })
}

fn other() -> impl Strategy<Value = Child> {
    let text_child = prop_oneof![
        text().prop_map(|t| format!("<Say>{t}</Say>")),
        attrs().prop_map(|a| format!("<Pause{a}/>")),
        Just("<Hangup/>".to_owned()),
        attrs().prop_map(|a| format!("<Gather{a}><Record/><Say>x</Say></Gather>")),
        Just("<!-- <Record/> <Connect><Stream url=\"wss://a\"/></Connect> -->".to_owned()),
        Just("<?legacy <Record/>?>".to_owned()),
        Just("<Stream url=\"wss://not-under-connect\"/>".to_owned()),
        Just("<record/><tw:Record/>".to_owned()),
    ];
    text_child.prop_map(|text| Child {
        text,
        record: false,
        stream: false,
    })
}

fn child() -> impl Strategy<Value = Child> {
    prop_oneof![3 => record(), 2 => stream(), 4 => other()]
}

fn doc() -> impl Strategy<Value = Doc> {
    doc_of(prop::collection::vec((ws(), child()), 0..8))
}

/// A document with at least one `<Record>` before a stream: random children with a `<Record>`
/// put at one place and a stream at a later one.
fn conflicting_doc() -> impl Strategy<Value = Doc> {
    let parts = (
        prop::collection::vec((ws(), child()), 0..7),
        (ws(), record()),
        (ws(), stream()),
        any::<prop::sample::Index>(),
        any::<prop::sample::Index>(),
    );
    doc_of(parts.prop_map(|(mut children, record, stream, at, gap)| {
        // No stream before the <Record>, so it is sure to block the one put after it.
        let mut before: Vec<_> = children.drain(..at.index(children.len() + 1)).collect();
        before.retain(|(_, c)| !c.stream);
        let i = before.len();
        before.push(record);
        before.append(&mut children);
        let mut children = before;
        let j = i + 1 + gap.index(children.len() - i);
        children.insert(j, stream);
        children
    }))
}

fn doc_of(
    children: impl Strategy<Value = Vec<(&'static str, Child)>>,
) -> impl Strategy<Value = Doc> {
    let prolog = prop::sample::select(vec![
        "",
        "\u{feff}",
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>",
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n",
        "\u{feff}<?xml version='1.0'?>\r\n<!-- <Record/> -->\n",
    ]);
    (
        prolog,
        attrs(),
        children,
        ws(),
        prop::sample::select(vec!["", "\n", "\n<!-- end -->\n"]),
    )
        .prop_map(|(prolog, root_attrs, children, last_ws, epilog)| {
            let mut s = format!("{prolog}<Response{root_attrs}>");
            let mut records = Vec::new();
            let mut first_stream = None;
            for (ws, child) in children {
                s.push_str(ws);
                if child.record {
                    records.push(s.len()..s.len() + child.text.len());
                }
                if child.stream && first_stream.is_none() {
                    first_stream = Some(s.len());
                }
                s.push_str(&child.text);
            }
            s.push_str(last_ws);
            s.push_str("</Response>");
            s.push_str(epilog);
            Doc {
                bytes: s.into_bytes(),
                records,
                has_stream: first_stream.is_some(),
                first_stream,
            }
        })
}

fn opts(action: RewriteAction) -> RewriteOptions {
    RewriteOptions {
        action,
        recording_status_callback: Some("https://guard.example/rs?a=1&b=\"2\"".to_owned()),
    }
}

/// The strip rule, written out plainly: an element alone on its line (blank indentation before
/// it, blanks and a line break after it) takes the whole line with it; otherwise only itself.
fn model_range(body: &[u8], span: &Range<usize>) -> Range<usize> {
    let line_start = body[..span.start]
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(0, |i| i + 1);
    let indented = body[line_start..span.start]
        .iter()
        .all(|b| *b == b' ' || *b == b'\t');
    let blanks = body[span.end..]
        .iter()
        .take_while(|b| **b == b' ' || **b == b'\t')
        .count();
    let after = &body[span.end + blanks..];
    let newline = if after.starts_with(b"\r\n") {
        2
    } else if after.starts_with(b"\n") {
        1
    } else {
        0
    };
    if indented && newline > 0 {
        line_start..span.end + blanks + newline
    } else {
        span.clone()
    }
}

fn memchr_find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn conflicts_of(doc: &Doc) -> Vec<Conflict> {
    match analyze(&doc.bytes) {
        Verdict::Conflict(c) => c,
        other => panic!("expected conflict, got {other}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn generated_documents_get_the_verdict_the_generator_expects(doc in doc()) {
        let inspection = inspect(&doc.bytes).map_err(|m| TestCaseError::fail(m.to_string()))?;
        prop_assert!(inspection.root_is_response);
        prop_assert_eq!(inspection.has_stream, doc.has_stream);
        prop_assert_eq!(&inspection.records, &doc.records);
        prop_assert_eq!(inspection.stream.as_ref().map(|s| s.offset), doc.first_stream);
        let blocking = doc.blocking();
        let expected = if blocking.is_empty() { "clean" } else { "conflict" };
        let verdict = analyze(&doc.bytes);
        prop_assert_eq!(verdict.name(), expected);
        let spans: Vec<_> = verdict.conflicts().iter().map(|c| c.span.clone()).collect();
        prop_assert_eq!(spans, blocking);
    }

    #[test]
    fn a_rewrite_never_touches_a_record_after_the_first_stream(doc in conflicting_doc()) {
        prop_assert!(!doc.blocking().is_empty());
        let conflicts = conflicts_of(&doc);
        let at = doc.first_stream.unwrap();
        let later: Vec<&[u8]> = doc.records.iter().filter(|r| r.start > at).map(|r| &doc.bytes[r.clone()]).collect();
        for action in [RewriteAction::Strip, RewriteAction::StartRecording] {
            let out = rewrite(&doc.bytes, &conflicts, &opts(action)).unwrap();
            // Everything from the first stream on is the input's, byte for byte.
            prop_assert!(out.ends_with(&doc.bytes[at..]));
            let after = inspect(&out).map_err(|m| TestCaseError::fail(m.to_string()))?;
            let kept: Vec<&[u8]> = after.records.iter().map(|r| &out[r.clone()]).collect();
            prop_assert_eq!(&kept, &later);
        }
    }

    #[test]
    fn strip_keeps_every_other_byte_and_leaves_no_record_verb(doc in conflicting_doc()) {
        prop_assert!(!doc.blocking().is_empty());
        let conflicts = conflicts_of(&doc);
        let out = rewrite(&doc.bytes, &conflicts, &opts(RewriteAction::Strip)).unwrap();

        // The output is the input with the removed ranges cut out, and those ranges are what
        // the rule allows: the element, widened to its whole line only when it stands alone.
        let ranges = strip_ranges(&doc.bytes, &conflicts).unwrap();
        let model: Vec<_> = conflicts.iter().map(|c| model_range(&doc.bytes, &c.span)).collect();
        prop_assert_eq!(&ranges, &model);
        let mut expected = Vec::new();
        let mut cursor = 0;
        for range in &model {
            expected.extend_from_slice(&doc.bytes[cursor..range.start]);
            cursor = range.end;
        }
        expected.extend_from_slice(&doc.bytes[cursor..]);
        prop_assert_eq!(&out, &expected);

        let after = inspect(&out).map_err(|m| TestCaseError::fail(m.to_string()))?;
        prop_assert_eq!(after.records.len(), doc.records.len() - conflicts.len());
        prop_assert!(after.has_stream);
        prop_assert_eq!(analyze(&out), Verdict::Clean);
    }

    #[test]
    fn start_recording_replaces_the_first_record_and_strips_the_rest(doc in conflicting_doc()) {
        prop_assert!(!doc.blocking().is_empty());
        let conflicts = conflicts_of(&doc);
        let out = rewrite(&doc.bytes, &conflicts, &opts(RewriteAction::StartRecording)).unwrap();
        let after = inspect(&out).map_err(|m| TestCaseError::fail(m.to_string()))?;
        prop_assert_eq!(after.records.len(), doc.records.len() - conflicts.len());
        prop_assert_eq!(analyze(&out), Verdict::Clean);

        // The first <Record> is replaced where it stood; the others go exactly as strip removes
        // them, and every other byte stays.
        let first = &conflicts[0].span;
        let rest = &out[first.start..];
        let len = memchr_find(rest, b"</Start>").unwrap() + b"</Start>".len();
        let replacement = &rest[..len];
        prop_assert!(replacement.starts_with(b"<Start><Recording recordingStatusCallback=\""));
        prop_assert!(replacement.ends_with(b" channels=\"dual\"/></Start>"));
        let ranges = strip_ranges(&doc.bytes, &conflicts).unwrap();
        let mut expected = doc.bytes[..first.start].to_vec();
        expected.extend_from_slice(replacement);
        let mut cursor = first.end;
        for range in &ranges[1..] {
            expected.extend_from_slice(&doc.bytes[cursor..range.start]);
            cursor = range.end;
        }
        expected.extend_from_slice(&doc.bytes[cursor..]);
        prop_assert_eq!(out, expected);
    }

    #[test]
    fn analyze_never_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = analyze(&bytes);
        let _ = inspect(&bytes);
    }

    #[test]
    fn mutated_documents_never_panic_and_conflicts_always_rewrite_clean(
        doc in doc(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), 0u8..3, prop::sample::select(b"<>/&;\"'!-[]?R= \n\xC3\x00".to_vec())), 1..4),
    ) {
        let mut bytes = doc.bytes.clone();
        for (at, op, byte) in edits {
            let i = at.index(bytes.len() + 1);
            match op {
                0 => bytes.insert(i, byte),
                1 if i < bytes.len() => { bytes.remove(i); }
                _ => bytes.truncate(i),
            }
        }
        if let Verdict::Conflict(conflicts) = analyze(&bytes) {
            for action in [RewriteAction::Strip, RewriteAction::StartRecording] {
                let out = rewrite(&bytes, &conflicts, &opts(action)).unwrap();
                prop_assert_eq!(analyze(&out), Verdict::Clean);
            }
        }
    }
}
