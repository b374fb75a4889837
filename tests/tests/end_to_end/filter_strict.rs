//! Strict mode in a real Envoy, both reject styles: `status` answers a JSON error naming each
//! `<Record>` (headers held), `twiml` swaps the body for the fallback TwiML (headers never held,
//! the form for hosts without `allow_on_headers_stop_iteration`).

use crate::common;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_status_style() {
    let s = stack(
        r#"{"mode": "strict", "reject_status": 502, "on_malformed": "reject", "on_oversize": "reject"}"#,
    )
    .await;
    let e = &s.envoy;

    for path in [
        "/voice/conflict",
        "/voice/conflict-chunked",
        "/voice/gzip",
        "/voice/gzip-chunked",
    ] {
        let r = post(e, path).await;
        assert_eq!(
            (r.status, r.guard.as_deref()),
            (502, Some("rejected; blocks=Connect/Stream")),
            "{path}"
        );
        assert_eq!(r.header("content-type"), Some("application/json"), "{path}");
        assert_eq!(r.header("content-encoding"), None, "{path}");
        let v = r.json();
        assert_eq!(v["error"], "twiml_conflict", "{path}");
        assert_eq!(v["blocks"], "Connect/Stream", "{path}");
        // seed_001.xml: one self-closing <Record> on line 3, column 3.
        let doc = conflict();
        let start = doc.windows(7).position(|w| w == b"<Record").unwrap();
        let end = start + doc[start..].windows(2).position(|w| w == b"/>").unwrap() + 2;
        assert_eq!((start, end), (52, 151));
        assert_eq!(
            v["records"],
            serde_json::json!([{"line": 3, "column": 3, "start": start, "end": end}]),
            "{path}"
        );
    }

    let r = post(e, "/voice/clean").await;
    assert_eq!((r.status, r.guard.as_deref()), (200, Some("clean")));
    assert_eq!(r.body, clean());

    let r = post(e, "/voice/malformed").await;
    assert_eq!((r.status, r.guard.as_deref()), (502, Some("malformed")));
    let v = r.json();
    assert_eq!(v["error"], "twiml_malformed");
    assert_eq!(
        (v["line"].as_u64(), v["column"].is_u64()),
        (Some(4), true),
        "{v}"
    );

    for path in ["/voice/big", "/voice/big-chunked", "/voice/bomb"] {
        let r = post(e, path).await;
        assert_eq!(
            (r.status, r.guard.as_deref()),
            (502, Some("oversize")),
            "{path}"
        );
        let v = r.json();
        assert_eq!(
            (v["error"].as_str(), v["max_body_bytes"].as_u64()),
            (Some("twiml_oversize"), Some(262_144)),
            "{path}"
        );
    }

    // Not candidates still pass untouched in strict mode.
    let r = post(e, "/voice/json").await;
    assert_eq!(
        (r.status, r.guard.as_deref(), r.body.as_slice()),
        (200, None, JSON_WITH_RECORD)
    );
    let r = post(e, "/voice/error").await;
    assert_eq!(
        (r.status, r.guard.as_deref(), r.body),
        (500, None, conflict())
    );
    let r = send(e, "HEAD", "/voice/conflict").await;
    assert_eq!((r.status, r.guard.as_deref()), (200, None));

    assert_counters(
        e,
        &[
            ("twiml_guard_inspected_total", 9),
            ("twiml_guard_responses_total{outcome=\"rejected\"}", 4),
            ("twiml_guard_responses_total{outcome=\"clean\"}", 1),
            ("twiml_guard_responses_total{outcome=\"malformed\"}", 1),
            ("twiml_guard_responses_total{outcome=\"oversize\"}", 3),
        ],
    )
    .await;
    let log = e
        .wait_log("path=/voice/gzip-chunked verdict=rejected action=reply(502)")
        .await
        .unwrap();
    assert!(log.contains("detail=conflict records=1 at=3:3"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_twiml_style() {
    let s = stack(&format!(
        r#"{{"mode": "strict", "reject_style": "twiml", "fallback_twiml": "{FALLBACK}", "on_oversize": "reject"}}"#
    ))
    .await;
    let e = &s.envoy;

    // Headers are not held in this style, so the status stays and there is no x-twiml-guard.
    for path in ["/voice/conflict", "/voice/conflict-chunked"] {
        let r = post(e, path).await;
        assert_eq!(
            (r.status, r.guard.as_deref(), r.text().as_str()),
            (200, None, FALLBACK),
            "{path}"
        );
        assert_eq!(
            r.header("content-type"),
            Some(if path.ends_with("chunked") {
                "text/xml; charset=utf-8"
            } else {
                "text/xml"
            })
        );
        // The headers left before the verdict, without a length: sent chunked.
        assert_eq!(r.framing(), (None, true), "{path}");
    }
    let r = post(e, "/voice/gzip").await;
    assert_eq!(
        (r.status, r.header("content-encoding")),
        (200, Some("gzip"))
    );
    assert_eq!(gunzip(&r.body), FALLBACK.as_bytes());

    let r = post(e, "/voice/clean").await;
    assert_eq!(r.framing(), (None, true));
    assert_eq!((r.status, r.guard.as_deref(), r.body), (200, None, clean()));

    // Oversize with on_oversize reject: by Content-Length (known at the headers, so marked) and
    // by chunked size (the rest of the body is dropped as it arrives).
    let r = post(e, "/voice/big").await;
    assert_eq!(
        (r.status, r.guard.as_deref(), r.text().as_str()),
        (200, Some("oversize"), FALLBACK)
    );
    // Decided in the header callback, so the fallback's length goes with the headers.
    assert_eq!(r.framing(), (Some(FALLBACK.len()), false));
    // Decided after the headers left (not held in this style): sent chunked.
    let r = post(e, "/voice/big-chunked").await;
    assert_eq!((r.status, r.text().as_str()), (200, FALLBACK));
    assert_eq!(r.framing(), (None, true));

    // Malformed passes (on_malformed defaults to pass).
    let r = post(e, "/voice/malformed").await;
    assert_eq!((r.status, r.body.as_slice()), (200, MALFORMED));

    assert_counters(
        e,
        &[
            ("twiml_guard_inspected_total", 7),
            ("twiml_guard_responses_total{outcome=\"rejected\"}", 3),
            ("twiml_guard_responses_total{outcome=\"clean\"}", 1),
            ("twiml_guard_responses_total{outcome=\"oversize\"}", 2),
            ("twiml_guard_responses_total{outcome=\"malformed\"}", 1),
        ],
    )
    .await;
}
