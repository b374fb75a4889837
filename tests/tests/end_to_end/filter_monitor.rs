//! Monitor mode in a real Envoy: conflicts are counted, logged and marked, never changed, even
//! with reject policies configured.

use crate::common;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitor_changes_nothing() {
    let s =
        stack(r#"{"mode": "monitor", "on_malformed": "reject", "on_oversize": "reject"}"#).await;
    let e = &s.envoy;

    for path in ["/voice/conflict", "/voice/conflict-chunked"] {
        let r = post(e, path).await;
        assert_eq!(
            (r.status, r.guard.as_deref()),
            (200, Some("detected; blocks=Connect/Stream")),
            "{path}"
        );
        assert_eq!(r.body, conflict(), "{path}");
        // The body is unchanged, so it keeps the upstream's framing.
        let length = (!path.ends_with("chunked")).then(|| conflict().len());
        assert_eq!(r.framing(), (length, length.is_none()), "{path}");
    }
    let r = post(e, "/voice/gzip").await;
    assert_eq!(
        (r.status, r.guard.as_deref()),
        (200, Some("detected; blocks=Connect/Stream"))
    );
    assert_eq!(r.body, gzip(&conflict()));
    let r = post(e, "/voice/clean").await;
    assert_eq!(
        (r.status, r.guard.as_deref(), r.body),
        (200, Some("clean"), clean())
    );
    let r = post(e, "/voice/malformed").await;
    assert_eq!(
        (r.status, r.guard.as_deref(), r.body.as_slice()),
        (200, Some("malformed"), MALFORMED)
    );
    let r = post(e, "/voice/big-chunked").await;
    assert_eq!(
        (r.status, r.guard.as_deref(), r.body),
        (200, Some("oversize"), big_conflict())
    );
    let r = post(e, "/voice/204").await;
    assert_eq!((r.status, r.guard.as_deref()), (204, None));

    assert_counters(
        e,
        &[
            ("twiml_guard_inspected_total", 6),
            ("twiml_guard_responses_total{outcome=\"detected\"}", 3),
            ("twiml_guard_responses_total{outcome=\"clean\"}", 1),
            ("twiml_guard_responses_total{outcome=\"malformed\"}", 1),
            ("twiml_guard_responses_total{outcome=\"oversize\"}", 1),
        ],
    )
    .await;
    let log = e
        .wait_log("path=/voice/gzip verdict=detected action=pass")
        .await
        .unwrap();
    assert_eq!(log.matches("verdict=detected").count(), 3, "{log}");
}
