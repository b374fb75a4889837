//! The dashboard in a real browser: one stack (Envoy with the guard in rewrite mode, the legacy
//! backend, the host service with an `api_token` and Envoy's admin URL), then
//! `tests/browser/dashboard.test.mjs` drives Debian's chromium through it (sign-in, the live
//! list, the call page's audio and transcript, the edge panel, the playground, axe-core) while
//! this test places the call with `twilio-sim` when the script says its list is open.
//! Needs `make test-browser` once (chromium and the lock file's npm packages).

use e2e::stack::{speak, HostOptions, HostService, LegacyBackend, AUTH_TOKEN};
use e2e::{free_local_addr, repo_root, Envoy, EnvoySetup};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use twilio_sim::report::Outcome;
use twilio_sim::urls::UrlMap;
use twilio_sim::CallConfig;

const API_TOKEN: &str = "dashboard-e2e-token-0123456789";
/// The whole browser script, Whisper included, on a loaded 2-core machine.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(240);
const SPEECH: &str = "Hello, I would like to book an appointment for tomorrow morning. \
                      Please call me back at five five five, two three four, five six seven eight.";

fn chromium() -> String {
    std::env::var("TWIML_GUARD_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_in_chromium_live_list_call_page_edge_playground_and_sign_in() {
    let browser_dir = repo_root().join("tests/browser");
    assert!(
        browser_dir.join("node_modules/playwright-core").is_dir()
            && browser_dir.join("node_modules/axe-core").is_dir(),
        "tests/browser/node_modules is missing: run `make test-browser` (npm ci from the lock file)"
    );
    assert!(
        std::path::Path::new(&chromium()).exists(),
        "{} is missing: run `make test-browser` (Debian package chromium)",
        chromium()
    );

    let started = Instant::now();
    let dir = tempfile::Builder::new()
        .prefix("twiml-guard-dashboard-")
        .tempdir()
        .unwrap();
    let backend = LegacyBackend::start(dir.path()).await.unwrap();
    // Envoy needs the host's address for its cluster, the host needs Envoy's admin address.
    let host_addr = free_local_addr().unwrap();
    let envoy = Envoy::start(&EnvoySetup::new(backend.addr, host_addr).auth_token(AUTH_TOKEN))
        .await
        .unwrap();
    let host = HostService::start_with(
        dir.path(),
        HostOptions {
            listen: Some(host_addr),
            top_level: format!("api_token = \"{API_TOKEN}\"\n"),
            sections: format!("\n[edge]\nenvoy_admin_url = \"http://{}\"\n", envoy.admin),
            ..HostOptions::default()
        },
    )
    .await
    .unwrap();
    let stack_ms = started.elapsed().as_millis();

    let wav = dir.path().join("caller.wav");
    speak(SPEECH, &wav).unwrap();
    let audio = twilio_sim::load_audio(&wav).unwrap();

    let shots = repo_root().join("target/dashboard-screenshots");
    let mut child = tokio::process::Command::new("node")
        .arg("dashboard.test.mjs")
        .current_dir(&browser_dir)
        .env("DASHBOARD_URL", format!("http://{}", host.addr))
        .env("API_TOKEN", API_TOKEN)
        .env(
            "SEED_TWIML",
            repo_root().join("twiml/fixtures/seed_001.xml"),
        )
        .env("SCREENSHOT_DIR", &shots)
        .env("CHROMIUM", chromium())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("node (Debian package nodejs) to start");
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let deadline = tokio::time::Instant::now() + SCRIPT_TIMEOUT;
    let mut output = Vec::new();
    let mut call_sid = None;
    let mut passed = false;
    loop {
        let line = match tokio::time::timeout_at(deadline, lines.next_line()).await {
            Ok(Ok(Some(line))) => line,
            Ok(Ok(None)) => break,
            Ok(Err(e)) => panic!("reading the script's output: {e}"),
            Err(_) => panic!(
                "the browser script did not finish within {SCRIPT_TIMEOUT:?}; output:\n{}\nhost log:\n{}",
                output.join("\n"),
                host.log_text()
            ),
        };
        eprintln!("browser: {line}");
        if line == "READY" {
            // The list page is open: the call goes through Envoy now.
            let mut cfg = CallConfig::new(format!(
                "https://{}/webhook/incoming_call",
                e2e::stack::PUBLIC_HOST
            ));
            cfg.map = UrlMap::local(&envoy.listener.to_string()).unwrap();
            cfg.auth_token = Some(AUTH_TOKEN.into());
            cfg.audio = Arc::new(audio.clone());
            cfg.speed = 8.0;
            cfg.linger = Duration::from_millis(500);
            let client = twilio_sim::call::client().unwrap();
            let report = twilio_sim::place_call(&client, &cfg).await;
            assert_eq!(report.outcome, Outcome::StreamRan, "{}", report.render());
            assert_eq!(
                report.fetches[0].guard.as_deref(),
                Some("rewritten; blocks=Connect/Stream")
            );
            stdin
                .write_all(format!("CALL {}\n", report.call_sid).as_bytes())
                .await
                .unwrap();
            stdin.flush().await.unwrap();
            call_sid = Some(report.call_sid.clone());
        }
        passed |= line.starts_with("PASS ");
        output.push(line);
    }
    let status = child.wait().await.unwrap();
    assert!(
        status.success() && passed,
        "browser script failed ({status}):\n{}\nhost log:\n{}",
        output.join("\n"),
        host.log_text()
    );
    assert!(call_sid.is_some(), "the script never asked for the call");
    for name in [
        "signin",
        "calls",
        "call",
        "edge",
        "playground",
        "calls-phone",
    ] {
        let png = shots.join(format!("{name}.png"));
        let len = std::fs::metadata(&png).map(|m| m.len()).unwrap_or(0);
        assert!(len > 1000, "{}: {len} bytes", png.display());
    }
    eprintln!(
        "dashboard: stack up in {stack_ms} ms, whole test {} ms",
        started.elapsed().as_millis()
    );
}
