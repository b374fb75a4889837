//! Shared pieces of the filter end-to-end tests: the scripted legacy backend (one path per kind of
//! upstream answer) and small request helpers.

#![allow(dead_code)]

use std::path::PathBuf;

use e2e::upstream::{Body, RawUpstream, Reply, Request, WsEcho};
use e2e::{Envoy, EnvoySetup, Shim};

pub const FALLBACK: &str = "<Response><Say>Sorry.</Say><Hangup/></Response>";

fn fixture(name: &str) -> Vec<u8> {
    let path = e2e::repo_root().join("twiml/fixtures").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The incident's TwiML: `<Record>` before `<Connect><Stream>`.
pub fn conflict() -> Vec<u8> {
    fixture("seed_001.xml")
}

/// What `strip` makes of it (the incident write-up's "after").
pub fn stripped() -> Vec<u8> {
    fixture("seed_001.strip.xml")
}

pub fn clean() -> Vec<u8> {
    stripped()
}

/// Byte offsets inside the first `<Record`: a chunk ends after `<Rec` and another after `<Record`,
/// so the element arrives in three pieces.
pub fn splits_inside_record(body: &[u8]) -> Vec<usize> {
    let at = body
        .windows(7)
        .position(|w| w == b"<Record")
        .expect("body holds <Record");
    vec![at + 4, at + 7, at + 30]
}

pub const BIG: usize = 300_000;

/// A conflicting document padded with a comment to `BIG` bytes.
pub fn big_conflict() -> Vec<u8> {
    let mut body = conflict();
    let pad = BIG - body.len() - 7;
    body.extend(b"<!--");
    body.extend(std::iter::repeat_n(b'x', pad));
    body.extend(b"-->");
    assert_eq!(body.len(), BIG);
    body
}

pub fn gzip(b: &[u8]) -> Vec<u8> {
    twiml::gzip::encode(b).unwrap()
}

pub fn gunzip(b: &[u8]) -> Vec<u8> {
    twiml::gzip::decode(b, 1 << 24).unwrap()
}

/// 4 MiB of blanks inside a `<Response>`: about 4 KiB compressed.
pub fn gzip_bomb() -> Vec<u8> {
    let mut doc = b"<Response>".to_vec();
    doc.extend(std::iter::repeat_n(b' ', 4 << 20));
    doc.extend(b"<Record/><Connect><Stream url=\"wss://x/ws\"/></Connect></Response>");
    gzip(&doc)
}

pub const MALFORMED: &[u8] = b"<Response>\n  <Record maxLength=\"30\">\n  <Connect><Stream url=\"wss://h/ws\"/></Connect>\n</Response>";
pub const JSON_WITH_RECORD: &[u8] =
    b"{\"twiml\": \"<Response><Record/><Connect><Stream url='wss://h'/></Connect></Response>\"}";
pub const NOT_TWIML: &[u8] =
    b"<feed><Record/><Connect><Stream url=\"wss://h/ws\"/></Connect></feed>";

/// The legacy backend: each path is one kind of answer, the same for every mode.
pub fn legacy(req: &Request) -> Reply {
    let path = req.path.split('?').next().unwrap_or("");
    let route = path
        .strip_prefix("/voice")
        .or_else(|| path.strip_prefix("/other"))
        .unwrap_or(path);
    match route {
        "/conflict" => Reply::ok("text/xml", conflict()),
        "/conflict-chunked" => {
            let body = conflict();
            Reply::chunked(
                "text/xml; charset=utf-8",
                &body,
                &splits_inside_record(&body),
            )
        }
        "/gzip" => Reply::ok("text/xml", gzip(&conflict())).header("content-encoding", "gzip"),
        "/gzip-chunked" => {
            let z = gzip(&conflict());
            let mid = z.len() / 2;
            Reply::chunked("text/xml", &z, &[10, mid]).header("content-encoding", "gzip")
        }
        "/clean" => Reply::ok("application/xml", clean()),
        "/204" => Reply::new(204, Body::None).header("content-type", "text/xml"),
        "/big" => Reply::ok("text/xml", big_conflict()),
        "/big-chunked" => {
            let body = big_conflict();
            let splits: Vec<usize> = (1..10).map(|i| i * BIG / 10).collect();
            Reply::chunked("text/xml", &body, &splits)
        }
        "/bomb" => Reply::ok("text/xml", gzip_bomb()).header("content-encoding", "gzip"),
        "/malformed" => Reply::ok("text/xml", MALFORMED),
        "/json" => Reply::ok("application/json", JSON_WITH_RECORD),
        "/not-twiml" => Reply::ok("text/xml", NOT_TWIML),
        "/error" => Reply {
            status: 500,
            ..Reply::ok("text/xml", conflict())
        },
        "/brotli" => Reply::ok("text/xml", conflict()).header("content-encoding", "br"),
        _ => Reply::new(404, Body::Length(b"no such scenario\n".to_vec()))
            .header("content-type", "text/plain"),
    }
}

/// The legacy backend, a WebSocket echo as the host service, and Envoy with `plugin_config`.
pub struct Stack {
    pub envoy: Envoy,
    pub backend: RawUpstream,
    pub media: WsEcho,
}

pub async fn stack(plugin_config: &str) -> Stack {
    stack_as(Shim::Wasm, plugin_config).await
}

/// [`stack`] with the guard run by `shim`.
pub async fn stack_as(shim: Shim, plugin_config: &str) -> Stack {
    let backend = RawUpstream::start(legacy).await.unwrap();
    let media = WsEcho::start().await.unwrap();
    let setup = EnvoySetup::new(backend.addr(), media.addr())
        .plugin_config(plugin_config)
        .shim(shim);
    let envoy = Envoy::start(&setup).await.unwrap();
    Stack {
        envoy,
        backend,
        media,
    }
}

/// What the client saw.
#[derive(Debug)]
pub struct Seen {
    pub status: u16,
    pub guard: Option<String>,
    pub headers: reqwest::header::HeaderMap,
    pub body: Vec<u8>,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// How the body was framed: its `content-length`, and whether it came chunked.
    pub fn framing(&self) -> (Option<usize>, bool) {
        let length = self.header("content-length").map(|v| v.parse().unwrap());
        (length, self.header("transfer-encoding") == Some("chunked"))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.text()))
    }
}

pub async fn send(envoy: &Envoy, method: &str, path: &str) -> Seen {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let resp = envoy
        .client()
        .request(method, envoy.url(path))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap_or_else(|e| panic!("{path}: {e}"));
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.bytes().await.unwrap().to_vec();
    Seen {
        status,
        guard: headers
            .get("x-twiml-guard")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        headers,
        body,
    }
}

pub async fn post(envoy: &Envoy, path: &str) -> Seen {
    send(envoy, "POST", path).await
}

/// The eight counters, in `METRICS` order.
pub const METRICS: [&str; 8] = [
    "twiml_guard_inspected_total",
    "twiml_guard_responses_total{outcome=\"clean\"}",
    "twiml_guard_responses_total{outcome=\"rewritten\"}",
    "twiml_guard_responses_total{outcome=\"rejected\"}",
    "twiml_guard_responses_total{outcome=\"detected\"}",
    "twiml_guard_responses_total{outcome=\"oversize\"}",
    "twiml_guard_responses_total{outcome=\"malformed\"}",
    "twiml_guard_ws_upgrades_total",
];

/// Expected counter values by name; unnamed ones must be 0. Waits briefly for the filter to
/// finish counting, then compares all eight.
pub async fn assert_counters(envoy: &Envoy, want: &[(&str, u64)]) {
    let expected: Vec<u64> = METRICS
        .iter()
        .map(|m| want.iter().find(|(n, _)| n == m).map_or(0, |(_, v)| *v))
        .collect();
    let inspected = expected[0];
    // On a timeout the comparison below shows every value.
    let _ = envoy
        .wait_counter("twiml_guard_inspected_total", inspected)
        .await;
    let got = envoy.counters(&METRICS).await.unwrap();
    let pairs = |v: &[u64]| {
        METRICS
            .iter()
            .zip(v.iter())
            .map(|(n, v)| format!("{n}={v}"))
            .collect::<Vec<_>>()
    };
    assert_eq!(pairs(&got), pairs(&expected));
}

pub fn wasm_path() -> PathBuf {
    e2e::wasm_module().unwrap()
}

/// Envoy with the shipped config in front of `backend` and two host-service replicas, and a
/// signed call to its voice webhook: the setup of the tests with several replicas.
pub async fn two_replicas(
    backend: std::net::SocketAddr,
    a: std::net::SocketAddr,
    b: std::net::SocketAddr,
) -> (Envoy, twilio_sim::CallConfig) {
    let envoy = Envoy::start(
        &EnvoySetup::new(backend, a)
            .host_replica(b)
            .auth_token(e2e::stack::AUTH_TOKEN),
    )
    .await
    .unwrap();
    let mut cfg = twilio_sim::CallConfig::new(format!(
        "https://{}/webhook/incoming_call",
        e2e::stack::PUBLIC_HOST
    ));
    cfg.map = twilio_sim::urls::UrlMap::local(&envoy.listener.to_string()).unwrap();
    cfg.auth_token = Some(e2e::stack::AUTH_TOKEN.into());
    (envoy, cfg)
}

/// The rendered config of `setup` with `routes` (YAML route entries, indented as the shipped
/// file's) placed before the catch-all route, so they win over it.
pub fn with_routes(setup: &EnvoySetup, routes: &str) -> e2e::EnvoyConfig {
    let mut cfg = e2e::render_envoy_config(
        &e2e::shipped_envoy_yaml().unwrap(),
        setup,
        &setup.shim.module().unwrap(),
    )
    .unwrap();
    let catch_all = "              - match: { prefix: / }\n";
    assert_eq!(
        cfg.bootstrap.matches(catch_all).count(),
        1,
        "the catch-all route moved"
    );
    cfg.bootstrap = cfg
        .bootstrap
        .replace(catch_all, &format!("{routes}{catch_all}"));
    cfg
}

/// A route on `prefix` to the legacy backend's `/voice/` scenarios, with `per_filter` (YAML, the
/// guard's `typed_per_filter_config` entry) when given.
pub fn voice_route(prefix: &str, per_filter: Option<&str>) -> String {
    let mut route = format!(
        "              - match: {{ prefix: {prefix} }}\n                route: {{ cluster: legacy_backend, prefix_rewrite: /voice/ }}\n"
    );
    if let Some(config) = per_filter {
        route.push_str(&format!(
            "                typed_per_filter_config:\n                  twiml_guard: {config}\n"
        ));
    }
    route
}

/// `FilterConfig{disabled: true}`: the guard switched off on a route.
pub const GUARD_OFF: &str =
    r#"{ "@type": type.googleapis.com/envoy.config.route.v3.FilterConfig, disabled: true }"#;
