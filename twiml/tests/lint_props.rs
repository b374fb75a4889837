//! Properties of `twiml::lint` over generated documents and arbitrary bytes: it never panics,
//! its verdict is `analyze`'s, `TG001` appears exactly for the conflicts `analyze` finds (same
//! spans), every span is inside the body and starts where its line and column say, and the
//! diagnostics come in order.

use proptest::prelude::*;
use twiml::lint::{lint, Report, RECORD_BLOCKS_STREAM};
use twiml::{analyze, line_column};

fn verb() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "<Say>hi</Say>",
        "<Record/>",
        "<Record action=\"https://a/r\"/>",
        "<Record maxLength=\"5\"><!-- c --></Record>",
        "<Connect><Stream url=\"wss://h/p\"/></Connect>",
        "<Connect action=\"https://a/e\"><Stream url=\"ws://h/p?q=1\"><Parameter name=\"a\" value=\"b\"/></Stream></Connect>",
        "<Start><Stream url=\"https://h\"/></Start>",
        "<Start><Stream/></Start>",
        "<Hangup/>",
        "<Reject/>",
        "<Redirect>https://a/x</Redirect>",
        "<Gather><Record/></Gather>",
        "<Pause length=\"1\"/>",
        "\n  ",
        "<!-- <Record/> -->",
        "<",
        "&bogus;",
    ])
}

fn document() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::sample::select(vec!["", "\u{FEFF}", "<?xml version=\"1.0\"?>\n"]),
        prop::sample::select(vec!["Response", "response", "html"]),
        prop::collection::vec(verb(), 0..8),
    )
        .prop_map(|(prolog, root, verbs)| {
            format!("{prolog}<{root}>{}</{root}>", verbs.concat()).into_bytes()
        })
}

fn check(body: &[u8], report: &Report) {
    assert_eq!(report.verdict, analyze(body));
    let tg001: Vec<_> = report
        .diagnostics
        .iter()
        .filter(|d| d.rule == &RECORD_BLOCKS_STREAM)
        .map(|d| d.span.clone())
        .collect();
    let conflicts: Vec<_> = report
        .verdict
        .conflicts()
        .iter()
        .map(|c| c.span.clone())
        .collect();
    assert_eq!(tg001, conflicts);
    for d in &report.diagnostics {
        assert!(
            d.span.start <= d.span.end && d.span.end <= body.len(),
            "{d:?}"
        );
        assert_eq!((d.line, d.column), line_column(body, d.span.start), "{d:?}");
    }
    let starts: Vec<_> = report.diagnostics.iter().map(|d| d.span.start).collect();
    let mut sorted = starts.clone();
    sorted.sort_unstable();
    assert_eq!(starts, sorted);
}

proptest! {
    #[test]
    fn generated_documents(body in document()) {
        check(&body, &lint(&body));
    }

    #[test]
    fn arbitrary_bytes(body in prop::collection::vec(any::<u8>(), 0..256)) {
        check(&body, &lint(&body));
    }

    #[test]
    fn every_prefix_of_a_generated_document(body in document(), cut in any::<prop::sample::Index>()) {
        let end = cut.index(body.len() + 1);
        let prefix = &body[..end];
        check(prefix, &lint(prefix));
    }
}
