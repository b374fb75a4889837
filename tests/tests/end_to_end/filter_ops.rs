//! Live operation of the guard in a real Envoy: the `twiml-guard` CLI flips the mode through
//! ECDS under constant load with no failed request and no restart, a request in flight during a
//! flip is judged by the configuration it started under, a bad configuration is refused by the
//! CLI and (written by hand) by Envoy while the old one keeps serving, and route rules run two
//! modes at once. Also the labelled metrics the shipped `stats_tags` make. The flips and the
//! refusal run for both shims, the wasm filter and the native module.

use crate::common;

use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use e2e::upstream::{RawUpstream, Reply};
use e2e::{poll, Envoy, EnvoySetup, Shim};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{oneshot, Notify};

/// Each flip must reach every new request within this.
const FLIP_DEADLINE: Duration = Duration::from_secs(2);
/// Concurrent clients of the load: the load is bounded by them (each sends its next request
/// when its last one is answered).
const CLIENTS: usize = 4;
/// Requests that must start after a flip was first seen, all judged the new way, before the
/// next flip.
const AFTER_FLIP: usize = 20;

fn cli(args: &[&str]) -> Output {
    let bin = e2e::release_binary("twiml-guard").expect("cargo build --release -p twiml-guard-cli");
    Command::new(bin)
        .args(args)
        .env_remove("TWIML_GUARD_ECDS_DIR")
        .output()
        .expect("run twiml-guard")
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

async fn set_mode(envoy: &Envoy, mode: &str) {
    let dir = envoy.ecds_dir();
    let admin = format!("http://{}", envoy.admin);
    let args: Vec<String> = ["mode", "set", mode, "--ecds-dir"]
        .iter()
        .map(|s| s.to_string())
        .chain([dir.display().to_string(), "--admin".into(), admin])
        .collect();
    let out = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        cli(&args)
    })
    .await
    .unwrap();
    assert!(out.status.success(), "mode set {mode}: {}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!("(mode {mode})")),
        "{}",
        text(&out)
    );
}

async fn status(envoy: &Envoy) -> serde_json::Value {
    let admin = format!("http://{}", envoy.admin);
    let out = tokio::task::spawn_blocking(move || cli(&["status", "--admin", &admin, "--json"]))
        .await
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// How one response was judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Judged {
    Rewritten,
    Detected,
    Rejected,
}

#[derive(Debug, Clone)]
struct Sample {
    started: Instant,
    judged: Result<Judged, String>,
}

/// What a response to the conflicting TwiML says about the mode that judged it; anything but
/// the three intended answers is a failure.
async fn judge(resp: reqwest::Result<reqwest::Response>) -> Result<Judged, String> {
    let resp = resp.map_err(|e| format!("request failed: {e}"))?;
    let status = resp.status().as_u16();
    let guard = resp
        .headers()
        .get("x-twiml-guard")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body = resp
        .bytes()
        .await
        .map_err(|e| format!("body failed: {e}"))?;
    match (status, guard.as_str()) {
        (200, "rewritten; blocks=Connect/Stream") if body.as_ref() == common::stripped() => {
            Ok(Judged::Rewritten)
        }
        (200, "detected; blocks=Connect/Stream") if body.as_ref() == common::conflict() => {
            Ok(Judged::Detected)
        }
        (502, "rejected; blocks=Connect/Stream")
            if body.starts_with(b"{\"blocks\":\"Connect/Stream\",\"error\":\"twiml_conflict\"") =>
        {
            Ok(Judged::Rejected)
        }
        _ => Err(format!(
            "status {status}, x-twiml-guard {guard:?}, body {:?}",
            String::from_utf8_lossy(&body)
        )),
    }
}

/// Constant bounded load: `CLIENTS` loops of GET /voice/conflict until `stop`.
fn start_load(
    envoy: &Envoy,
    stop: Arc<AtomicBool>,
    samples: Arc<Mutex<Vec<Sample>>>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..CLIENTS)
        .map(|_| {
            let client = envoy.client().clone();
            let url = envoy.url("/voice/conflict");
            let (stop, samples) = (Arc::clone(&stop), Arc::clone(&samples));
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let started = Instant::now();
                    let judged = judge(client.get(&url).send().await).await;
                    samples.lock().unwrap().push(Sample { started, judged });
                }
            })
        })
        .collect()
}

/// After a flip requested at `t0`: a request started after `t0` is judged `want` within
/// [`FLIP_DEADLINE`], and every one of the next [`AFTER_FLIP`] requests started after that is
/// judged `want` too.
async fn assert_flipped(samples: &Mutex<Vec<Sample>>, t0: Instant, want: Judged) {
    let what = format!("a request judged {want:?} after the flip");
    let seen = poll(FLIP_DEADLINE, &what, || async {
        let s = samples.lock().unwrap();
        s.iter()
            .find(|x| x.started >= t0 && x.judged == Ok(want))
            .map(|x| x.started)
    })
    .await
    .unwrap();
    let what = format!("{AFTER_FLIP} requests after {want:?} was first seen");
    let after: Vec<Sample> = poll(Duration::from_secs(10), &what, || async {
        let s = samples.lock().unwrap();
        let after: Vec<Sample> = s.iter().filter(|x| x.started > seen).cloned().collect();
        (after.len() >= AFTER_FLIP).then_some(after)
    })
    .await
    .unwrap();
    let stale: Vec<_> = after.iter().filter(|x| x.judged != Ok(want)).collect();
    assert!(
        stale.is_empty(),
        "after {want:?} was first seen, {} of {} requests were judged otherwise: {:?}",
        stale.len(),
        after.len(),
        stale.first()
    );
}

/// An upstream that answers one request with the conflicting TwiML in two chunks, the second
/// only when `release` is notified; `sent_first` fires once the first chunk (holding `<Record`)
/// is on the wire.
async fn held_upstream(
    sent_first: oneshot::Sender<()>,
    release: Arc<Notify>,
) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut conn, _) = listener.accept().await.unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            conn.read_exact(&mut byte).await.unwrap();
            head.push(byte[0]);
        }
        let body = common::conflict();
        let cut = body.windows(7).position(|w| w == b"<Record").unwrap() + 20;
        let chunk = |b: &[u8]| {
            let mut c = format!("{:x}\r\n", b.len()).into_bytes();
            c.extend_from_slice(b);
            c.extend_from_slice(b"\r\n");
            c
        };
        let mut first = b"HTTP/1.1 200 OK\r\ncontent-type: text/xml\r\n\
            transfer-encoding: chunked\r\n\r\n"
            .to_vec();
        first.extend(chunk(&body[..cut]));
        conn.write_all(&first).await.unwrap();
        conn.flush().await.unwrap();
        let _ = sent_first.send(());
        release.notified().await;
        let mut rest = chunk(&body[cut..]);
        rest.extend_from_slice(b"0\r\n\r\n");
        conn.write_all(&rest).await.unwrap();
        conn.flush().await.unwrap();
        // Keep the connection until Envoy is done with it.
        let _ = conn.read(&mut byte).await;
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn modes_flip_live_under_load_without_a_failed_request() {
    flips_under_load(Shim::Wasm).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn native_modes_flip_live_under_load_without_a_failed_request() {
    flips_under_load(Shim::Native).await;
}

async fn flips_under_load(shim: Shim) {
    let backend = RawUpstream::start(|_| Reply::ok("text/xml", common::conflict()))
        .await
        .unwrap();
    // The host_service cluster (its routes: /webhook/stream_ended, ...) is the held upstream.
    let (sent_first, first_sent) = oneshot::channel();
    let release = Arc::new(Notify::new());
    let held = held_upstream(sent_first, Arc::clone(&release)).await;
    let setup = EnvoySetup::new(backend.addr(), held)
        .plugin_config(r#"{"mode": "rewrite"}"#)
        .shim(shim);
    let envoy = Envoy::start(&setup).await.unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let samples = Arc::new(Mutex::new(Vec::new()));
    let load = start_load(&envoy, Arc::clone(&stop), Arc::clone(&samples));
    let t0 = Instant::now();
    assert_flipped(&samples, t0, Judged::Rewritten).await;

    let t0 = Instant::now();
    set_mode(&envoy, "monitor").await;
    assert_flipped(&samples, t0, Judged::Detected).await;

    // A response whose body is half through Envoy when strict arrives: started under monitor,
    // it is finished under monitor (passed as it was, `detected`), not rejected.
    let in_flight = {
        let client = envoy.client().clone();
        let url = envoy.url("/webhook/stream_ended");
        tokio::spawn(async move { judge(client.get(&url).send().await).await })
    };
    tokio::time::timeout(Duration::from_secs(10), first_sent)
        .await
        .expect("the held upstream sent its first chunk")
        .unwrap();

    let t0 = Instant::now();
    set_mode(&envoy, "strict").await;
    assert_flipped(&samples, t0, Judged::Rejected).await;
    release.notify_one();
    assert_eq!(in_flight.await.unwrap(), Ok(Judged::Detected));

    let t0 = Instant::now();
    set_mode(&envoy, "rewrite").await;
    assert_flipped(&samples, t0, Judged::Rewritten).await;

    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }
    let samples = samples.lock().unwrap().clone();
    let failed: Vec<_> = samples.iter().filter(|s| s.judged.is_err()).collect();
    assert!(
        failed.is_empty(),
        "{} of {} requests failed, first: {:?}",
        failed.len(),
        samples.len(),
        failed.first()
    );
    let count = |j: Judged| samples.iter().filter(|s| s.judged == Ok(j)).count() as u64;
    eprintln!(
        "{} requests: {} rewritten, {} detected, {} rejected",
        samples.len(),
        count(Judged::Rewritten),
        count(Judged::Detected),
        count(Judged::Rejected)
    );

    // One Envoy the whole time, four configurations accepted, none refused.
    let s = status(&envoy).await;
    assert_eq!(s["active_version"], "4", "{s}");
    assert_eq!(s["mode"], "rewrite", "{s}");
    assert_eq!(s["last_update"], "accepted", "{s}");
    assert_eq!(s["updates_accepted"], 4, "{s}");
    assert_eq!(s["updates_rejected"], 0, "{s}");
    // Counters carry on across flips: the in-flight one is among the detected.
    let detected = count(Judged::Detected) + 1;
    assert_eq!(s["responses"]["detected"], detected, "{s}");
    assert_eq!(s["responses"]["rejected"], count(Judged::Rejected), "{s}");
    let log = envoy.log();
    for v in 2..=4 {
        assert!(
            log.contains(&format!("config applied config_version={v} ")),
            "version {v} not logged"
        );
    }

    // The labelled families, and no unlabelled copy of the outcome counters.
    let prom = envoy.prometheus().await.unwrap();
    let sample = |name: &str| e2e::prometheus_value(&prom, name);
    assert_eq!(
        sample("twiml_guard_responses_total{outcome=\"rejected\"}"),
        Some(count(Judged::Rejected)),
        "{prom}"
    );
    assert_eq!(
        sample("twiml_guard_responses_total{outcome=\"detected\"}"),
        Some(detected),
        "{prom}"
    );
    assert_eq!(sample("twiml_guard_detected_total"), None, "{prom}");
    assert!(
        !prom.contains("twiml_guard_responses_detected_total"),
        "{prom}"
    );
    assert_eq!(sample("twiml_guard_mode{mode=\"rewrite\"}"), Some(1));
    assert_eq!(sample("twiml_guard_mode{mode=\"strict\"}"), Some(0));
    // The verdict-time histogram appears after Envoy's stats flush (every 5 s).
    let inspected = envoy.counter("twiml_guard_inspected_total").await.unwrap();
    poll(
        Duration::from_secs(12),
        "twiml_guard_verdict_us_count",
        || async {
            let prom = envoy.prometheus().await.ok()?;
            let n = e2e::prometheus_value(&prom, "twiml_guard_verdict_us_count")?;
            (n > 0 && n <= inspected).then_some(())
        },
    )
    .await
    .unwrap();
}

fn write_resource_by_hand(shim: Shim, dir: &Path, version: &str, plugin: &str) {
    let path = dir.join("twiml_guard.json");
    let mut doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    doc["version_info"] = version.into();
    *doc["resources"][0]["typed_config"]
        .pointer_mut(shim.plugin_pointer())
        .unwrap() = plugin.into();
    let tmp = dir.join("by-hand.tmp");
    std::fs::write(&tmp, doc.to_string()).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_field_is_refused_by_the_cli_and_by_envoy_while_the_old_mode_serves() {
    refused_while_the_old_mode_serves(Shim::Wasm).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_a_bad_field_is_refused_by_the_cli_and_by_envoy_while_the_old_mode_serves() {
    refused_while_the_old_mode_serves(Shim::Native).await;
}

async fn refused_while_the_old_mode_serves(shim: Shim) {
    let s = common::stack_as(shim, r#"{"mode": "strict"}"#).await;
    let envoy = &s.envoy;
    let dir = envoy.ecds_dir();
    let resource = dir.join("twiml_guard.json");
    let before = std::fs::read(&resource).unwrap();
    let strict = || async {
        let resp = envoy
            .client()
            .get(envoy.url("/voice/conflict"))
            .send()
            .await;
        judge(resp).await
    };
    assert_eq!(strict().await, Ok(Judged::Rejected));

    // The CLI refuses it with the filter's own parser, naming the field, and writes nothing.
    let bad = envoy.dir().join("bad.json");
    std::fs::write(&bad, r#"{"mode": "monitor", "max_body_bytes": "big"}"#).unwrap();
    let (bad_s, dir_s) = (bad.display().to_string(), dir.display().to_string());
    for args in [
        vec!["config", "apply", &bad_s, "--ecds-dir", &dir_s],
        vec!["config", "check", &bad_s],
    ] {
        let out = cli(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("field `max_body_bytes`: invalid type: string \"big\""),
            "{args:?}: {}",
            text(&out)
        );
    }
    assert_eq!(std::fs::read(&resource).unwrap(), before);
    let out = cli(&["mode", "set", "bogus", "--ecds-dir", &dir_s]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert_eq!(std::fs::read(&resource).unwrap(), before);

    // Written by hand, Envoy refuses it and strict keeps serving.
    write_resource_by_hand(
        shim,
        &dir,
        "2",
        r#"{"mode": "monitor", "max_body_bytes": "big"}"#,
    );
    let log = envoy.wait_rejected(1).await.unwrap();
    assert!(
        log.contains("invalid plugin configuration: field `max_body_bytes`: invalid type"),
        "{log}"
    );
    for _ in 0..5 {
        assert_eq!(strict().await, Ok(Judged::Rejected));
    }
    let st = status(envoy).await;
    assert_eq!(st["active_version"], "1", "{st}");
    assert_eq!(st["received_version"], "2", "{st}");
    assert_eq!(st["last_update"], "rejected", "{st}");
    assert_eq!(st["mode"], "strict", "{st}");
    let admin = format!("http://{}", envoy.admin);
    let human = cli(&["status", "--admin", &admin]);
    assert!(
        String::from_utf8_lossy(&human.stdout)
            .contains("last update:     REJECTED: version 2 was refused"),
        "{}",
        text(&human)
    );

    // The way out: a good configuration through the CLI (it fixes the bad key only if told to,
    // so the whole file is applied).
    let good = envoy.dir().join("good.json");
    std::fs::write(&good, r#"{"mode": "monitor"}"#).unwrap();
    let out = cli(&[
        "config",
        "apply",
        &good.display().to_string(),
        "--ecds-dir",
        &dir_s,
        "--admin",
        &admin,
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let st = status(envoy).await;
    assert_eq!(
        (&st["active_version"], &st["last_update"], &st["mode"]),
        (
            &serde_json::json!("3"),
            &serde_json::json!("accepted"),
            &serde_json::json!("monitor")
        ),
        "{st}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_routes_run_two_modes_at_once() {
    let s = common::stack(
        r#"{"mode": "rewrite", "rules": [
            {"name": "canary", "paths": ["/other/"], "mode": "strict"},
            {"name": "watch", "hosts": ["*.monitor.example.com"], "mode": "monitor"}
        ]}"#,
    )
    .await;
    let envoy = &s.envoy;
    let get = |path: &'static str, host: &'static str| async move {
        let resp = envoy
            .client()
            .get(envoy.url(path))
            .header("host", host)
            .send()
            .await
            .unwrap();
        let guard = resp.headers()["x-twiml-guard"]
            .to_str()
            .unwrap()
            .to_string();
        (resp.status().as_u16(), guard)
    };
    // Interleaved, so both modes are live at the same moment.
    for _ in 0..3 {
        assert_eq!(
            get("/voice/conflict", "voice.example.com").await,
            (200, "rewritten; blocks=Connect/Stream".to_string())
        );
        assert_eq!(
            get("/other/conflict", "voice.example.com").await,
            (
                502,
                "rejected; rule=canary; blocks=Connect/Stream".to_string()
            )
        );
        assert_eq!(
            get("/voice/conflict", "a.monitor.example.com:8080").await,
            (
                200,
                "detected; rule=watch; blocks=Connect/Stream".to_string()
            )
        );
        // Both rules match: the first one listed wins.
        assert_eq!(
            get("/other/conflict", "a.monitor.example.com").await,
            (
                502,
                "rejected; rule=canary; blocks=Connect/Stream".to_string()
            )
        );
    }
    let log = envoy.wait_log("rule=watch mode=monitor").await.unwrap();
    assert!(
        log.contains("verdict=rejected action=reply(502) detail=conflict"),
        "{log}"
    );
    assert!(log.contains("rule=canary mode=strict"), "{log}");
    assert!(log.contains("rule=default mode=rewrite"), "{log}");
    assert!(
        log.contains("rules=[canary:strict/strip watch:monitor/strip]"),
        "{log}"
    );
    let st = status(envoy).await;
    assert_eq!(st["rules"], 2, "{st}");
    assert_eq!(st["mode"], "rewrite", "{st}");
    assert_eq!(st["responses"]["rewritten"], 3, "{st}");
    assert_eq!(st["responses"]["rejected"], 6, "{st}");
    assert_eq!(st["responses"]["detected"], 3, "{st}");
}
