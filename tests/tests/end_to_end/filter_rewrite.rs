//! Rewrite mode in a real Envoy: conflicting TwiML is rewritten however it is framed or encoded,
//! and everything that is not a TwiML candidate passes untouched.

use crate::common;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewrite_mode_end_to_end() {
    let s = stack(r#"{"mode": "rewrite"}"#).await;
    let e = &s.envoy;

    // Content-Length body: rewritten, sent with the new body's length (headers held until the
    // verdict).
    let r = post(e, "/voice/conflict").await;
    assert_eq!(
        (r.status, r.guard.as_deref()),
        (200, Some("rewritten; blocks=Connect/Stream"))
    );
    assert_eq!(r.text(), String::from_utf8(stripped()).unwrap());
    assert_eq!(r.header("content-type"), Some("text/xml"));
    assert_eq!(r.framing(), (Some(stripped().len()), false));

    // Chunked, with chunk boundaries inside `<Record`: the rewritten body gets a length too.
    let r = post(e, "/voice/conflict-chunked?CallSid=CA1").await;
    assert_eq!(
        (r.status, r.guard.as_deref()),
        (200, Some("rewritten; blocks=Connect/Stream"))
    );
    assert_eq!(r.body, stripped());
    assert_eq!(r.framing(), (Some(stripped().len()), false));

    // gzip: decoded, rewritten, recompressed; content-encoding stays gzip.
    for path in ["/voice/gzip", "/voice/gzip-chunked"] {
        let r = post(e, path).await;
        assert_eq!(
            (r.status, r.guard.as_deref()),
            (200, Some("rewritten; blocks=Connect/Stream")),
            "{path}"
        );
        assert_eq!(r.header("content-encoding"), Some("gzip"), "{path}");
        assert_eq!(gunzip(&r.body), stripped(), "{path}");
        assert_eq!(r.framing(), (Some(r.body.len()), false), "{path}");
    }

    // Clean TwiML: byte-identical, with the upstream's length.
    let r = post(e, "/voice/clean").await;
    assert_eq!((r.status, r.guard.as_deref()), (200, Some("clean")));
    assert_eq!(r.body, clean());
    assert_eq!(r.framing(), (Some(clean().len()), false));

    // Well-formed XML that is not TwiML passes as clean.
    let r = post(e, "/voice/not-twiml").await;
    assert_eq!(
        (r.status, r.guard.as_deref(), r.body.as_slice()),
        (200, Some("clean"), NOT_TWIML)
    );

    // Malformed TwiML passes (on_malformed: pass), marked.
    let r = post(e, "/voice/malformed").await;
    assert_eq!(
        (r.status, r.guard.as_deref(), r.body.as_slice()),
        (200, Some("malformed"), MALFORMED)
    );

    // An encoding the filter cannot read is reported as malformed, body untouched.
    let r = post(e, "/voice/brotli").await;
    assert_eq!((r.status, r.guard.as_deref()), (200, Some("malformed")));
    assert_eq!(r.body, conflict());

    // Over max_body_bytes: by Content-Length (decided from headers, not buffered: the length
    // header survives), by chunked size, and a gzip bomb by its decoded size.
    let r = post(e, "/voice/big").await;
    assert_eq!((r.status, r.guard.as_deref()), (200, Some("oversize")));
    assert_eq!(r.header("content-length"), Some(BIG.to_string().as_str()));
    assert_eq!(r.body, big_conflict());
    let r = post(e, "/voice/big-chunked").await;
    assert_eq!((r.status, r.guard.as_deref()), (200, Some("oversize")));
    assert_eq!(r.body, big_conflict());
    // Passed unchanged: framed as the upstream framed it.
    assert_eq!(r.framing(), (None, true));
    let r = post(e, "/voice/bomb").await;
    assert_eq!((r.status, r.guard.as_deref()), (200, Some("oversize")));
    assert_eq!(r.body, gzip_bomb());

    // Not candidates: untouched, unmarked, uncounted.
    let r = post(e, "/voice/204").await;
    assert_eq!((r.status, r.guard.as_deref(), r.body.len()), (204, None, 0));
    let r = send(e, "HEAD", "/voice/conflict").await;
    assert_eq!((r.status, r.guard.as_deref(), r.body.len()), (200, None, 0));
    assert_eq!(
        r.header("content-length"),
        Some(conflict().len().to_string().as_str())
    );
    let r = post(e, "/voice/json").await;
    assert_eq!(
        (r.status, r.guard.as_deref(), r.body.as_slice()),
        (200, None, JSON_WITH_RECORD)
    );
    assert_eq!(
        r.header("content-length"),
        Some(JSON_WITH_RECORD.len().to_string().as_str())
    );
    let r = post(e, "/voice/error").await;
    assert_eq!((r.status, r.guard.as_deref()), (500, None));
    assert_eq!(r.body, conflict());

    assert_counters(
        e,
        &[
            ("twiml_guard_inspected_total", 11),
            ("twiml_guard_responses_total{outcome=\"rewritten\"}", 4),
            ("twiml_guard_responses_total{outcome=\"clean\"}", 2),
            ("twiml_guard_responses_total{outcome=\"malformed\"}", 2),
            ("twiml_guard_responses_total{outcome=\"oversize\"}", 3),
        ],
    )
    .await;

    // One verdict line per inspected response, naming the context and path.
    let log = e
        .wait_log("path=/voice/bomb verdict=oversize")
        .await
        .unwrap();
    assert_eq!(log.matches(" verdict=").count(), 11, "{log}");
    assert!(
        log.contains("path=/voice/conflict-chunked verdict=rewritten action=replace_body"),
        "{log}"
    );
    assert!(!log.contains("twiml before:"), "log_twiml is off");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_recording_on_listed_paths_with_twiml_logged() {
    let s = stack(
        r#"{"rewrite_action": "start-recording", "paths": ["/voice"], "log_twiml": true,
            "recording_status_callback": "https://guard.example/recording-status"}"#,
    )
    .await;
    let e = &s.envoy;

    let r = post(e, "/voice/conflict").await;
    assert_eq!(
        (r.status, r.guard.as_deref()),
        (200, Some("rewritten; blocks=Connect/Stream"))
    );
    let want = twiml::rewrite(
        &conflict(),
        twiml::analyze(&conflict()).conflicts(),
        &twiml::RewriteOptions {
            action: twiml::RewriteAction::StartRecording,
            recording_status_callback: Some("https://guard.example/recording-status".into()),
        },
    )
    .unwrap();
    assert_eq!(r.body, want);
    let text = r.text();
    assert!(text.contains("<Start><Recording"), "{text}");
    assert!(
        text.contains("https://guard.example/recording-status"),
        "{text}"
    );

    // Outside `paths`: untouched and uncounted.
    let r = post(e, "/other/conflict").await;
    assert_eq!((r.status, r.guard.as_deref()), (200, None));
    assert_eq!(r.body, conflict());
    assert_eq!(
        r.header("content-length"),
        Some(conflict().len().to_string().as_str())
    );

    assert_counters(
        e,
        &[
            ("twiml_guard_inspected_total", 1),
            ("twiml_guard_responses_total{outcome=\"rewritten\"}", 1),
        ],
    )
    .await;
    let log = e.wait_log("twiml after:").await.unwrap();
    let before = String::from_utf8(conflict()).unwrap();
    assert!(log.contains(&format!("twiml before:\n{before}")), "{log}");
    assert!(
        log.contains(&format!(
            "twiml after:\n{}",
            String::from_utf8(want).unwrap()
        )),
        "{log}"
    );
}
