//! Two thousand calls at once through the shipped Envoy config to two host-service replicas:
//! every stream must run. With Envoy's default circuit breakers (1,024 connections and requests
//! per cluster) stream 1,025 got a 503 (Twilio's 31901) before the host service had a say; the
//! shipped clusters are sized above the hosts' own caps, which this proves at twice the default.

use e2e::stack::{active_streams, HostOptions, HostService};
use e2e::upstream::{RawUpstream, Reply};
use e2e::{http_client, poll};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

const CALLS: usize = 2_000;
/// Each replica's `websocket.max_sockets`: together above CALLS, each below it, so neither
/// replica alone could hold them all and the balancer has to spread them.
const MAX_SOCKETS_PER_REPLICA: &str = "1100";
/// Envoy's default circuit-breaker thresholds, which the shipped config must not fall back to.
const ENVOY_DEFAULT_LIMIT: u64 = 1_024;
/// Calls placed per second.
const RAMP_CALLS_PER_S: u32 = 250;
/// Each call's second of audio is sent at this fraction of real time (a frame every 400 ms), so
/// a stream stays open 20 s, well past the ramp (CALLS / RAMP_CALLS_PER_S = 8 s) and the
/// handshakes' latency on a loaded machine, with the host's work per stream unchanged (its
/// recordings place audio by timestamp).
const SPEED: f64 = 0.05;
/// The streams that must have been open at the same moment: nearly all, far past Envoy's
/// default limit (the rest may end before the last start on a loaded machine).
const MIN_PEAK: u64 = 1_900;
/// One second of caller audio at 20 ms a frame.
const FRAMES_PER_CALL: u64 = 50;

/// The legacy bug, so the filter rewrites every answer on the way (the seed's TwiML shape).
const LEGACY_TWIML: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response>\
    <Record maxLength=\"60\"/><Connect><Stream url=\"wss://voice.example.com/ws/twilio-media\"/>\
    </Connect></Response>";

async fn host_counter(host: &HostService, name: &str) -> u64 {
    e2e::prometheus_value(&host.metrics_text().await.unwrap(), name).unwrap_or(0)
}

/// Every replica's `host_ws_closed_total{reason}` lines, for a failure message.
async fn close_reasons(hosts: &[&HostService]) -> String {
    let mut out = String::new();
    for h in hosts {
        let text = h.metrics_text().await.unwrap();
        for line in text
            .lines()
            .filter(|l| l.starts_with("host_ws_closed_total"))
        {
            out.push_str(&format!("\n  {}: {line}", h.addr));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_streams_through_envoy_to_two_replicas_all_run() {
    let dir = tempfile::tempdir().unwrap();
    let (a_dir, b_dir) = (dir.path().join("a"), dir.path().join("b"));
    std::fs::create_dir_all(&a_dir).unwrap();
    std::fs::create_dir_all(&b_dir).unwrap();
    // Post-call transcription is not what this measures; the streams and recordings are.
    let options = HostOptions {
        env: [
            (
                "HOST_SERVICE_WEBSOCKET_MAX_SOCKETS",
                MAX_SOCKETS_PER_REPLICA,
            ),
            // Above the socket cap, as the host requires: the streams and the webhooks.
            ("HOST_SERVICE_HTTP_MAX_CONNECTIONS", "1200"),
            ("HOST_SERVICE_TRANSCRIPTION_ENGINE", "none"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .into(),
        ..HostOptions::default()
    };
    let (a, b) = tokio::try_join!(
        HostService::start_with(&a_dir, options.clone()),
        HostService::start_with(&b_dir, options)
    )
    .unwrap();
    let backend = RawUpstream::start(|_| Reply::ok("text/xml", LEGACY_TWIML))
        .await
        .unwrap();
    let (envoy, mut cfg) = crate::common::two_replicas(backend.addr(), a.addr, b.addr).await;
    // Calls arrive at RAMP_CALLS_PER_S (a contact centre's burst, not one instant) and each
    // stream stays open longer than the ramp takes: the streams overlap, as the peak shows.
    cfg.speed = SPEED;
    cfg.webhook_timeout = Duration::from_secs(60);
    cfg.connect_timeout = Duration::from_secs(60);

    // The peak of open streams across both replicas, sampled while the calls run.
    let peak = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (peak, a_addr, b_addr) = (Arc::clone(&peak), a.addr, b.addr);
        tokio::spawn(async move {
            let client = http_client();
            let mut every = tokio::time::interval(Duration::from_millis(100));
            loop {
                every.tick().await;
                let open = active_streams(&client, a_addr).await.unwrap_or(0)
                    + active_streams(&client, b_addr).await.unwrap_or(0);
                peak.fetch_max(open, Ordering::Relaxed);
            }
        })
    };
    let client = twilio_sim::call::client().unwrap();
    let started = std::time::Instant::now();
    let mut calls = tokio::task::JoinSet::new();
    let mut ramp = tokio::time::interval(Duration::from_secs(1) / RAMP_CALLS_PER_S);
    for _ in 0..CALLS {
        ramp.tick().await;
        let (client, cfg) = (client.clone(), cfg.clone());
        calls.spawn(async move { twilio_sim::place_call(&client, &cfg).await });
    }
    let reports: Vec<_> = calls.join_all().await;
    let wall_ms = started.elapsed().as_secs_f64() * 1000.0;
    sampler.abort();
    let report = twilio_sim::load::LoadReport::summarize(&reports, CALLS, wall_ms);

    assert_eq!(
        report.outcomes.get("stream_ran").copied(),
        Some(CALLS),
        "every call must run its stream: {}",
        report.render()
    );
    assert!(report.problems.is_empty(), "{}", report.render());
    // A stream the host closed early shows here as frames not sent: say why it closed.
    let closes = close_reasons(&[&a, &b]).await;
    assert_eq!(
        report.frames_sent,
        CALLS as u64 * FRAMES_PER_CALL,
        "{}sockets closed by reason: {closes}",
        report.render()
    );
    let peak = peak.load(Ordering::Relaxed);
    eprintln!("{}peak of open streams: {peak}", report.render());
    assert!(
        peak >= MIN_PEAK && MIN_PEAK > ENVOY_DEFAULT_LIMIT,
        "only {peak} streams were open at once; the test must go far past Envoy's default limit"
    );

    // Neither Envoy's circuit breakers nor the hosts' caps refused anything.
    for name in [
        "cluster.host_service.upstream_cx_overflow",
        "cluster.host_service.upstream_rq_pending_overflow",
        "cluster.legacy_backend.upstream_cx_overflow",
        "cluster.legacy_backend.upstream_rq_pending_overflow",
    ] {
        assert_eq!(
            envoy.stat(name).await.unwrap().as_deref(),
            Some("0"),
            "{name}"
        );
    }
    for h in [&a, &b] {
        assert_eq!(
            host_counter(h, "host_ws_rejected_total{reason=\"too_many_sockets\"}").await,
            0,
            "{}",
            h.log_text()
        );
    }
    // Every socket has closed on both replicas once the calls are done; both replicas took a
    // share, and every frame sent arrived at one of them.
    poll(Duration::from_secs(30), "the streams to close", || async {
        let http = http_client();
        (active_streams(&http, a.addr).await? + active_streams(&http, b.addr).await? == 0)
            .then_some(())
    })
    .await
    .unwrap();
    // Counted once every socket is done: frames still queued in a replica when the
    // simulator hung up are counted as they are handled.
    let frames = |h| host_counter(h, "host_frames_in_total");
    let (fa, fb) = (frames(&a).await, frames(&b).await);
    assert_eq!(fa + fb, CALLS as u64 * FRAMES_PER_CALL);
    assert!(
        fa > 0 && fb > 0,
        "one replica took every stream: {fa} and {fb} frames"
    );
    // Every call left one finalized recording on the replica that took it, all of the same
    // length (one second of audio each): no stream start was lost on the way to the database.
    let wavs: Vec<u64> = [&a, &b]
        .iter()
        .flat_map(|h| std::fs::read_dir(h.data_dir.join("recordings")).unwrap())
        .map(|e| e.unwrap())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".wav"))
        .map(|e| e.metadata().unwrap().len())
        .collect();
    assert_eq!(wavs.len(), CALLS, "recordings on disk");
    assert!(
        wavs.iter().all(|&len| len == wavs[0] && len > 44),
        "recordings differ in length: {:?}",
        wavs.iter().collect::<std::collections::BTreeSet<_>>()
    );
}
