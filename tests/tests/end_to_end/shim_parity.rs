//! The two shims side by side: the whole TwiML fixture corpus and every scripted kind of
//! upstream answer (chunked, gzip, oversize, a gzip bomb, malformed, JSON, errors, an unreadable
//! coding, no body), through a real Envoy running the wasm filter and one running the native
//! module, under each mode and reject style. Status, the headers the guard touches, the body
//! bytes and every `twiml_guard_*` series must be identical.

use crate::common;

use e2e::upstream::{RawUpstream, Reply, Request, WsEcho};
use e2e::{Envoy, EnvoySetup, Shim};

/// One configuration per mode and style the guard has; the last adds a rule and `log_twiml`.
const CONFIGS: [&str; 6] = [
    r#"{"mode": "rewrite"}"#,
    r#"{"mode": "rewrite", "rewrite_action": "start-recording",
        "recording_status_callback": "https://example.com/recording?a=1&b=2"}"#,
    r#"{"mode": "strict", "on_malformed": "reject", "on_oversize": "reject"}"#,
    r#"{"mode": "strict", "reject_style": "twiml", "on_malformed": "reject",
        "on_oversize": "reject", "fallback_twiml": "<Response><Say>Sorry.</Say><Hangup/></Response>"}"#,
    r#"{"mode": "monitor", "log_twiml": true}"#,
    r#"{"mode": "rewrite", "max_body_bytes": 4096,
        "rules": [{"name": "corpus", "paths": ["/corpus/"], "mode": "strict"}]}"#,
];

/// The legacy scenarios of the other suites, under `/voice`.
const SCENARIOS: [&str; 14] = [
    "conflict",
    "conflict-chunked",
    "gzip",
    "gzip-chunked",
    "clean",
    "204",
    "big",
    "big-chunked",
    "bomb",
    "malformed",
    "json",
    "not-twiml",
    "error",
    "brotli",
];

/// Where the TwiML fixtures live: the hand-written cases and the public-pattern corpus.
const FIXTURE_DIRS: [&str; 2] = ["twiml/fixtures", "twiml/fixtures/corpus"];

/// Every `.xml` of the fixtures, golden outputs included, relative to `twiml/fixtures`.
fn corpus() -> Vec<String> {
    let mut names: Vec<String> = FIXTURE_DIRS
        .iter()
        .flat_map(|dir| {
            let sub = dir.strip_prefix("twiml/fixtures").unwrap_or_default();
            let sub = sub.trim_start_matches('/').to_string();
            std::fs::read_dir(e2e::repo_root().join(dir))
                .unwrap()
                .filter_map(move |e| {
                    let name = e.ok()?.file_name().into_string().ok()?;
                    let path = if sub.is_empty() {
                        name.clone()
                    } else {
                        format!("{sub}/{name}")
                    };
                    name.ends_with(".xml").then_some(path)
                })
        })
        .collect();
    names.sort();
    assert!(names.len() >= 80, "the corpus shrank: {names:?}");
    names
}

fn backend(req: &Request) -> Reply {
    let path = req.path.split('?').next().unwrap_or("");
    let Some(rest) = path.strip_prefix("/corpus/") else {
        return common::legacy(req);
    };
    // Served as HTML too, so the sniffing path runs on the whole corpus.
    let (name, content_type) = match rest.strip_prefix("html/") {
        Some(name) => (name, "text/html"),
        None => (rest, "text/xml"),
    };
    match std::fs::read(e2e::repo_root().join(FIXTURE_DIRS[0]).join(name)) {
        Ok(body) => Reply::ok(content_type, body),
        Err(_) => common::legacy(req),
    }
}

/// What one shim made of one request: everything a client or Twilio could tell apart.
#[derive(Debug, PartialEq, Eq)]
struct Answer {
    path: String,
    status: u16,
    headers: Vec<(&'static str, Option<String>)>,
    body: Vec<u8>,
}

async fn answer(envoy: &Envoy, path: &str) -> Answer {
    let seen = common::post(envoy, path).await;
    let headers = [
        "x-twiml-guard",
        "content-type",
        "content-encoding",
        "content-length",
        "transfer-encoding",
    ]
    .into_iter()
    .map(|h| (h, seen.header(h).map(str::to_string)))
    .collect();
    Answer {
        path: path.to_string(),
        status: seen.status,
        headers,
        body: seen.body,
    }
}

/// Every `twiml_guard_*` sample but the verdict-time histogram (timings differ by nature).
async fn series(envoy: &Envoy) -> Vec<String> {
    let prom = envoy.prometheus().await.unwrap();
    let mut lines: Vec<String> = prom
        .lines()
        .filter(|l| l.starts_with("twiml_guard_") && !l.starts_with("twiml_guard_verdict_us"))
        .map(str::to_string)
        .collect();
    lines.sort();
    lines
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn native_and_wasm_give_identical_answers_and_counters() {
    let upstream = RawUpstream::start(backend).await.unwrap();
    let media = WsEcho::start().await.unwrap();
    let mut paths: Vec<String> = corpus()
        .iter()
        .flat_map(|n| [format!("/corpus/{n}"), format!("/corpus/html/{n}")])
        .collect();
    paths.extend(SCENARIOS.iter().map(|s| format!("/voice/{s}")));
    for config in CONFIGS {
        let start = |shim| {
            let setup = EnvoySetup::new(upstream.addr(), media.addr())
                .plugin_config(config)
                .shim(shim);
            async move { Envoy::start(&setup).await.unwrap() }
        };
        let (wasm, native) = tokio::join!(start(Shim::Wasm), start(Shim::Native));
        for path in &paths {
            let (w, n) = tokio::join!(answer(&wasm, path), answer(&native, path));
            assert_eq!(n, w, "{config}: {path}");
        }
        // Counters may land just after the client has its answer.
        let want = wasm.counter("twiml_guard_inspected_total").await.unwrap();
        assert!(want > paths.len() as u64 / 2, "{config}: {want} inspected");
        native
            .wait_counter("twiml_guard_inspected_total", want)
            .await
            .unwrap();
        assert_eq!(series(&native).await, series(&wasm).await, "{config}");
        // The verdict lines are the same words (only the context ids may differ).
        for shim in [&wasm, &native] {
            assert!(
                shim.log().contains(" path=/voice/conflict verdict="),
                "{config}: {}",
                shim.log()
            );
        }
    }
}

/// Per-route behaviour in both shims: a route that switches the guard off
/// (`FilterConfig{disabled: true}`) passes the backend's answer untouched and uncounted, and the
/// configuration's `rules` pick the same mode for the same requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn routes_switch_the_guard_off_and_rules_apply_alike_in_both_shims() {
    let upstream = RawUpstream::start(common::legacy).await.unwrap();
    let media = WsEcho::start().await.unwrap();
    let config = r#"{"mode": "rewrite",
        "rules": [{"name": "canary", "paths": ["/canary/"], "mode": "strict"}]}"#;
    let routes = [
        common::voice_route("/off/", Some(common::GUARD_OFF)),
        common::voice_route("/canary/", None),
    ]
    .concat();
    let start = |shim| {
        let setup = EnvoySetup::new(upstream.addr(), media.addr())
            .plugin_config(config)
            .shim(shim);
        let cfg = common::with_routes(&setup, &routes);
        async move { Envoy::start_with_config(&cfg).await.unwrap() }
    };
    let (wasm, native) = tokio::join!(start(Shim::Wasm), start(Shim::Native));
    for envoy in [&wasm, &native] {
        let off = common::post(envoy, "/off/conflict").await;
        assert_eq!(
            (off.status, off.guard.as_deref(), &off.body),
            (200, None, &common::conflict())
        );
        let canary = common::post(envoy, "/canary/conflict").await;
        assert_eq!(
            (canary.status, canary.guard.as_deref()),
            (502, Some("rejected; rule=canary; blocks=Connect/Stream"))
        );
        let voice = common::post(envoy, "/voice/conflict").await;
        assert_eq!(
            (voice.status, voice.guard.as_deref(), &voice.body),
            (
                200,
                Some("rewritten; blocks=Connect/Stream"),
                &common::stripped()
            )
        );
        // The route with the guard off is not counted.
        common::assert_counters(
            envoy,
            &[
                ("twiml_guard_inspected_total", 2),
                ("twiml_guard_responses_total{outcome=\"rejected\"}", 1),
                ("twiml_guard_responses_total{outcome=\"rewritten\"}", 1),
            ],
        )
        .await;
    }
    for path in [
        "/off/conflict",
        "/off/clean",
        "/canary/clean",
        "/canary/gzip",
    ] {
        let (w, n) = tokio::join!(answer(&wasm, path), answer(&native, path));
        assert_eq!(n, w, "{path}");
    }
}
