//! Fuzzes the TwiML scanner and rewriter: no input may panic them, and whenever a body is a
//! conflict, stripping must leave a well-formed, clean document that differs from the input only by
//! the removed ranges, all before the first stream (every byte from it on is kept).
#![no_main]

use libfuzzer_sys::fuzz_target;
use twiml::{analyze, rewrite, strip_ranges, RewriteAction, RewriteOptions, Verdict};

fuzz_target!(|body: &[u8]| {
    let verdict = analyze(body);
    let _ = verdict.describe();
    let Verdict::Conflict(conflicts) = &verdict else {
        return;
    };

    let strip = RewriteOptions::default();
    let out = rewrite(body, conflicts, &strip).expect("spans from analyze are valid");
    assert_eq!(
        analyze(&out),
        Verdict::Clean,
        "strip output must be well-formed TwiML with no <Record> verb"
    );

    // Every byte outside the removed ranges is kept, in order.
    let ranges = strip_ranges(body, conflicts).expect("spans from analyze are valid");
    let mut kept = Vec::with_capacity(body.len());
    let mut cursor = 0;
    for (range, conflict) in ranges.iter().zip(conflicts) {
        assert!(range.start <= conflict.span.start && conflict.span.end <= range.end);
        assert!(cursor <= range.start, "ranges in order and apart");
        kept.extend_from_slice(&body[cursor..range.start]);
        cursor = range.end;
    }
    kept.extend_from_slice(&body[cursor..]);
    assert_eq!(out, kept, "strip changed a byte it did not remove");
    if let Some(stream) = verdict.blocked() {
        assert!(
            out.ends_with(&body[stream.offset..]),
            "strip touched a byte after the first stream"
        );
    }

    let start = RewriteOptions {
        action: RewriteAction::StartRecording,
        recording_status_callback: Some("https://example.com/recording-status".into()),
    };
    let out = rewrite(body, conflicts, &start).expect("spans from analyze are valid");
    let after = analyze(&out);
    assert!(
        matches!(after, Verdict::Clean),
        "start-recording output must be well-formed TwiML with no <Record> verb: {after}"
    );
});
