//! One exchange over a recording host: every call the guard makes into Envoy for the seed TwiML,
//! in order. Each call costs a crossing into Envoy (in the wasm filter, a hostcall out of the VM,
//! and for the maps and the body a call back into it to allocate), so this list is the guard's
//! side of its per-request cost, kept as short as the behaviour allows.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::*;
use crate::config;

#[derive(Default)]
struct Recording {
    calls: Vec<String>,
    response_headers: Vec<(String, String)>,
    body: Vec<u8>,
    clock: u64,
}

impl Host for Recording {
    fn headers(&mut self, map: Headers, names: &[&str]) -> Vec<(String, String)> {
        self.calls.push(format!("headers {map:?}"));
        let pairs: &[(&str, &str)] = match map {
            Headers::Request => &[
                (":authority", "voice.example.com"),
                (":path", "/webhook/seed"),
                (":method", "GET"),
                (":scheme", "http"),
            ],
            Headers::Response => &[(":status", "200"), ("content-type", "text/xml")],
        };
        let mut pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        if map == Headers::Response {
            pairs.push(("content-length".into(), self.body.len().to_string()));
        }
        // As the native shim does: only the headers asked for.
        pairs.retain(|(k, _)| names.contains(&k.as_str()));
        pairs
    }

    fn header(&mut self, map: Headers, name: &str) -> Option<String> {
        self.calls.push(format!("header {map:?} {name}"));
        None
    }

    fn set_header(&mut self, map: Headers, name: &str, value: Option<&str>) -> Result<(), String> {
        self.calls
            .push(format!("set_header {map:?} {name} {value:?}"));
        if map == Headers::Response {
            self.response_headers.retain(|(k, _)| k != name);
            if let Some(v) = value {
                self.response_headers.push((name.into(), v.into()));
            }
        }
        Ok(())
    }

    fn add_header(&mut self, map: Headers, name: &str, value: &str) -> Result<(), String> {
        self.calls
            .push(format!("add_header {map:?} {name} {value}"));
        Ok(())
    }

    fn read_body(&mut self, body: Body, len: usize) -> Result<Vec<u8>, String> {
        self.calls.push(format!("read_body {body:?} {len}"));
        Ok(self.body.get(..len).unwrap_or(&self.body).to_vec())
    }

    fn replace_response_body(&mut self, size: usize, new: &[u8]) -> Result<(), String> {
        self.calls.push(format!("replace_response_body {size}"));
        self.body = new.to_vec();
        Ok(())
    }

    fn send_reply(&mut self, status: u32, _: &[(&str, &str)], _: &[u8]) -> Result<(), String> {
        self.calls.push(format!("send_reply {status}"));
        Ok(())
    }

    fn log_level(&mut self) -> Option<LogLevel> {
        self.calls.push("log_level".into());
        Some(LogLevel::Warn)
    }

    fn log(&mut self, level: LogLevel, message: &str) {
        self.calls.push(format!("log {level:?} {message}"));
    }

    fn bump(&mut self, counter: Counter) {
        self.calls.push(format!("bump {counter:?}"));
    }

    fn record_verdict_us(&mut self, _micros: u64) {
        self.calls.push("record_verdict_us".into());
    }

    fn now(&mut self) -> Option<SystemTime> {
        self.calls.push("now".into());
        self.clock += 1;
        Some(SystemTime::UNIX_EPOCH + Duration::from_micros(self.clock))
    }
}

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/../twiml/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Runs the seed through one exchange under `config`; the calls and the response headers set.
fn run_seed(config: &str, want_headers: Action) -> (Recording, usize) {
    let cfg = config::parse(config.as_bytes()).unwrap();
    let rules = rule_configs(&cfg);
    let mut exchange = Exchange::new(7, Arc::new(cfg), rules);
    let mut host = Recording {
        body: fixture("seed_001.xml"),
        ..Recording::default()
    };
    let size = host.body.len();
    assert_eq!(
        exchange.on_request_headers(&mut host, true),
        Action::Continue
    );
    assert_eq!(exchange.on_response_headers(&mut host, false), want_headers);
    assert_eq!(
        exchange.on_response_body(&mut host, size, true),
        Action::Continue
    );
    (host, size)
}

fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
    p.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn the_seed_twiml_costs_these_calls_into_envoy_and_no_more() {
    let (host, size) = run_seed(r#"{"mode": "rewrite"}"#, Action::Pause);
    let stripped = fixture("seed_001.strip.xml");
    assert_eq!(host.body, stripped);
    let length = stripped.len().to_string();
    // Headers held until the verdict: the rewritten body's length replaces the upstream's.
    assert_eq!(
        host.response_headers,
        pairs(&[
            ("x-twiml-guard", "rewritten; blocks=Connect/Stream"),
            ("content-length", &length),
        ])
    );
    let read = format!("read_body Response {size}");
    let set_length = format!("set_header Response content-length Some(\"{length}\")");
    let replace = format!("replace_response_body {size}");
    let want: [&str; 13] = [
        "headers Request",
        "add_header Request accept-encoding identity",
        // The wasm shell answers this from its root context, without a hostcall.
        "log_level",
        "headers Response",
        "now",
        &read,
        "bump Inspected",
        "bump Outcome(Rewritten)",
        "now",
        "record_verdict_us",
        "set_header Response x-twiml-guard Some(\"rewritten; blocks=Connect/Stream\")",
        &set_length,
        &replace,
    ];
    assert_eq!(host.calls, want);
}

#[test]
fn an_unchanged_body_keeps_the_upstream_length() {
    let (host, size) = run_seed(r#"{"mode": "monitor"}"#, Action::Pause);
    assert_eq!(host.body, fixture("seed_001.xml"));
    assert_eq!(host.body.len(), size);
    assert_eq!(
        host.response_headers,
        pairs(&[("x-twiml-guard", "detected; blocks=Connect/Stream")])
    );
    assert!(
        !host.calls.iter().any(|c| c.contains("content-length")),
        "{:?}",
        host.calls
    );
}

#[test]
fn headers_not_held_lose_the_length_before_the_body() {
    let (host, _) = run_seed(
        r#"{"mode": "rewrite", "reject_style": "twiml"}"#,
        Action::Continue,
    );
    assert_eq!(host.body, fixture("seed_001.strip.xml"));
    // Removed in the header callback, nothing set after it (headers have left).
    assert_eq!(host.response_headers, []);
    let lengths: Vec<&String> = host
        .calls
        .iter()
        .filter(|c| c.contains("content-length"))
        .collect();
    assert_eq!(lengths, ["set_header Response content-length None"]);
    let at = host.calls.iter().position(|c| c == "headers Response");
    assert_eq!(
        at.map(|i| i + 1),
        host.calls.iter().position(|c| c.contains("content-length"))
    );
}
