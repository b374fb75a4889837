//! The public-pattern corpus (`twiml/fixtures/corpus/manifest.json`) through the filter in a real
//! Envoy, in every mode at once (one rule per mode): each document comes back with exactly the
//! bytes and the `x-twiml-guard` value the manifest gives, a strict refusal names the stream and
//! every `<Record>` the manifest lists, and a clean document (the voicemail after a stream, the
//! fork while recording, the `<Record>` after `<Connect action>`) passes byte for byte.

use std::path::PathBuf;

use e2e::upstream::{Body, RawUpstream, Reply, Request, WsEcho};
use e2e::{Envoy, EnvoySetup};
use serde_json::Value;

use crate::common::post;

fn corpus_dir() -> PathBuf {
    e2e::repo_root().join("twiml/fixtures/corpus")
}

fn read(name: &str) -> Vec<u8> {
    let path = corpus_dir().join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `/<mode>/<file>` answers the corpus file, as the backend sent it.
fn corpus_backend(req: &Request) -> Reply {
    let path = req.path.split('?').next().unwrap_or("");
    let file = path.rsplit('/').next().unwrap_or("");
    match std::fs::read(corpus_dir().join(file)) {
        Ok(body) if file.ends_with(".xml") => Reply::ok("text/xml", body),
        _ => Reply::new(404, Body::Length(b"no such document\n".to_vec()))
            .header("content-type", "text/plain"),
    }
}

/// The four ways the guard can run, each a rule on its own path prefix.
fn plugin_config(callback: &str) -> String {
    format!(
        r#"{{"mode": "rewrite", "recording_status_callback": "{callback}", "rules": [
            {{"name": "strip", "paths": ["/strip/"], "mode": "rewrite", "rewrite_action": "strip"}},
            {{"name": "record", "paths": ["/record/"], "mode": "rewrite", "rewrite_action": "start-recording"}},
            {{"name": "strict", "paths": ["/strict/"], "mode": "strict"}},
            {{"name": "monitor", "paths": ["/monitor/"], "mode": "monitor"}}]}}"#
    )
}

fn place(v: &Value) -> String {
    format!("{}:{}", v["line"], v["column"])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_corpus_gets_its_manifest_bytes_and_verdicts_in_every_mode() {
    let manifest: Value = serde_json::from_slice(&read("manifest.json")).unwrap();
    let callback = manifest["recording_status_callback"].as_str().unwrap();
    let backend = RawUpstream::start(corpus_backend).await.unwrap();
    let media = WsEcho::start().await.unwrap();
    let setup =
        EnvoySetup::new(backend.addr(), media.addr()).plugin_config(plugin_config(callback));
    let e = Envoy::start(&setup).await.unwrap();
    let docs = manifest["documents"].as_array().unwrap();
    assert!(docs.len() >= 25, "{}", docs.len());
    let mut failures = Vec::new();
    for doc in docs {
        let file = doc["file"].as_str().unwrap();
        let input = read(file);
        let blocks = doc["blocks"].as_str();
        let conflicts: Vec<&str> = doc["conflicts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap())
            .collect();
        let label = |outcome: &str, rule: &str| match blocks {
            Some(b) => format!("{outcome}; rule={rule}; blocks={b}"),
            None => format!("clean; rule={rule}"),
        };
        let mut check = |what: &str, got: (u16, Option<String>, bool), want: (u16, String)| {
            let (status, guard, bytes_ok) = got;
            if (status, guard.as_deref()) != (want.0, Some(want.1.as_str())) || !bytes_ok {
                failures.push(format!(
                    "{file} {what}: got {status} {guard:?} (bytes as expected: {bytes_ok}), want {want:?}"
                ));
            }
        };
        for (prefix, key, rule) in [
            ("/strip/", "strip", "strip"),
            ("/record/", "start_recording", "record"),
        ] {
            let r = post(&e, &format!("{prefix}{file}")).await;
            let want = read(doc[key].as_str().unwrap());
            check(
                key,
                (r.status, r.guard.clone(), r.body == want),
                (200, label("rewritten", rule)),
            );
        }
        let r = post(&e, &format!("/monitor/{file}")).await;
        check(
            "monitor",
            (r.status, r.guard.clone(), r.body == input),
            (200, label("detected", "monitor")),
        );
        let r = post(&e, &format!("/strict/{file}")).await;
        let refused = blocks.is_some();
        let bytes_ok = if refused {
            let v: Value = serde_json::from_slice(&r.body).unwrap_or_default();
            let places: Vec<String> = v["records"]
                .as_array()
                .map(|records| records.iter().map(place).collect())
                .unwrap_or_default();
            v["blocks"].as_str() == blocks && places == conflicts
        } else {
            r.body == input
        };
        check(
            "strict",
            (r.status, r.guard.clone(), bytes_ok),
            (if refused { 502 } else { 200 }, label("rejected", "strict")),
        );
    }
    assert!(failures.is_empty(), "{}\n{}", failures.join("\n"), e.log());
    let conflicting = docs.iter().filter(|d| d["verdict"] == "conflict").count() as u64;
    let total = docs.len() as u64;
    e.wait_counter("twiml_guard_inspected_total", 4 * total)
        .await
        .unwrap();
    let counts = e
        .counters(&[
            "twiml_guard_responses_total{outcome=\"clean\"}",
            "twiml_guard_responses_total{outcome=\"rewritten\"}",
            "twiml_guard_responses_total{outcome=\"rejected\"}",
            "twiml_guard_responses_total{outcome=\"detected\"}",
        ])
        .await
        .unwrap();
    assert_eq!(
        counts,
        [
            4 * (total - conflicting),
            2 * conflicting,
            conflicting,
            conflicting
        ]
    );
}
