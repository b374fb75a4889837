//! Recording faults never touch the call: `data_dir/recordings` on a small real tmpfs, a signed
//! call streams past its size, and the socket stays open until the caller's `stop`, the webhook
//! is answered, the call says why it has no recording, the failure is counted and other calls
//! still connect. Then the free-space guard stops new recordings before the disk is full.

use crate::common::*;
use host_service::config::Config;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use twiml::signature::{compute, Algorithm};

const TOKEN: &str = "disk-test-auth-token";
const PUBLIC: &str = "https://voice.example.com";
const CALL_B: &str = "CA0123456789abcdef0123456789abcdee";
const STREAM_B: &str = "MZ0123456789abcdef0123456789abcdee";

/// A tmpfs mounted for the test's life (we run as root); unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let out = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir)
            .output()
            .expect("running mount(8)");
        assert!(
            out.status.success(),
            "this test mounts a tmpfs of {size} at {} and needs root (or CAP_SYS_ADMIN) for it: {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

struct Svc {
    addr: std::net::SocketAddr,
    http: reqwest::Client,
    _stop: oneshot::Sender<()>,
}

impl Svc {
    /// Signatures on, `data_dir` (its recordings directory already mounted), and `min_free_mb`.
    async fn start(data_dir: &Path, min_free_mb: u64) -> Svc {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut c = Config {
            data_dir: data_dir.to_path_buf(),
            public_base_url: Some(PUBLIC.into()),
            listen: addr,
            ..Config::default()
        };
        c.twilio.auth_token = Some(TOKEN.into());
        c.pipeline.poll_ms = 20;
        c.pipeline.backoff_base_ms = 20;
        c.pipeline.backoff_cap_ms = 200;
        c.recording.min_free_mb = min_free_mb;
        // The test streams faster than real time.
        c.recording.max_timestamp_jump_ms = 3_600_000;
        // Ten times real time is 500 frames a second, over the default frame-rate limit.
        c.websocket.max_frames_per_s = 5_000;
        let engines = test_engines::engines(&Default::default());
        let (tx, rx) = oneshot::channel::<()>();
        tokio::spawn(host_service::run(listener, c, engines, async move {
            let _ = rx.await;
        }));
        let http = reqwest::Client::new();
        let svc = Svc {
            addr,
            http,
            _stop: tx,
        };
        poll("healthz", Duration::from_secs(10), || async {
            svc.http
                .get(format!("http://{addr}/healthz"))
                .send()
                .await
                .ok()
                .filter(|r| r.status() == 200)
        })
        .await;
        svc
    }

    async fn socket(&self) -> Ws {
        let mut req = format!("ws://{}/ws/twilio-media", self.addr)
            .into_client_request()
            .unwrap();
        let sig = compute::<&str, &str>(
            &format!("{}/ws/twilio-media", PUBLIC.replace("https", "wss")),
            &[],
            TOKEN.as_bytes(),
            Algorithm::HmacSha1,
        );
        req.headers_mut()
            .insert("x-twilio-signature", sig.parse().unwrap());
        tokio_tungstenite::connect_async(req).await.unwrap().0
    }

    async fn stream_ended(&self, call: &str) -> reqwest::Response {
        let params = stream_ended_form(call);
        let url = format!("{PUBLIC}/webhook/stream_ended");
        let sig = compute(&url, &params, TOKEN.as_bytes(), Algorithm::HmacSha1);
        self.http
            .post(format!("http://{}/webhook/stream_ended", self.addr))
            .header("X-Twilio-Signature", sig)
            .form(&params)
            .send()
            .await
            .unwrap()
    }

    async fn metrics(&self) -> String {
        let url = format!("http://{}/metrics", self.addr);
        self.http
            .get(url)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    async fn failures(&self, reason: &str) -> u64 {
        let line = format!("host_recording_failures_total{{reason=\"{reason}\"}} ");
        let text = self.metrics().await;
        text.lines()
            .find_map(|l| l.strip_prefix(&line)?.trim().parse().ok())
            .unwrap_or(0)
    }

    async fn call_failed(&self, call: &str) -> serde_json::Value {
        let url = format!("http://{}/api/calls/{call}", self.addr);
        poll("the call to fail", Duration::from_secs(20), || async {
            let v: serde_json::Value = self.http.get(&url).send().await.ok()?.json().await.ok()?;
            (v["status"] == "failed").then_some(v)
        })
        .await
    }
}

/// Stream `frames` frames of caller audio at ten times real time (a caller's pace, not a burst),
/// then `stop`; every send must go through (the socket is open), and the server must answer the
/// stop with a normal close.
async fn stream_and_stop(ws: &mut Ws, call: &str, stream: &str, frames: usize) {
    send(ws, connected()).await;
    send(ws, start(call, stream)).await;
    let mut pace = tokio::time::interval(Duration::from_millis(2));
    for k in 0..frames {
        pace.tick().await;
        send(ws, media(stream, k + 2, k as u64 * 20, &frame_audio(k))).await;
    }
    send(ws, super::common::stop(call, stream)).await;
    let (code, _) = read_until_close(ws).await;
    assert_eq!(code, Some(1000), "the call ran to the caller's stop");
}

fn recording_errors(detail: &serde_json::Value) -> Vec<String> {
    detail["errors"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["stage"] == "stream")
        .map(|e| e["message"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_full_disk_fails_the_recording_and_never_the_call() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    // 256 KiB: about 8 s of two-channel audio.
    let _fs = Tmpfs::mount(&data.join("recordings"), "256k");
    let svc = Svc::start(&data, 0).await;

    // 30 s of audio into a disk that holds 8: the socket carries all of it.
    let mut ws = svc.socket().await;
    stream_and_stop(&mut ws, CALL, STREAM, 1500).await;
    assert_eq!(svc.failures("no_space").await, 1);
    let resp = svc.stream_ended(CALL).await;
    assert_eq!(resp.status(), 200);
    let detail = svc.call_failed(CALL).await;
    assert_eq!(
        recording_errors(&detail),
        ["recording failed: no space left on device"]
    );
    assert_eq!(detail["streams"][0]["frames_in"], 1500);
    assert_eq!(detail["streams"][0]["close_reason"], "stopped");
    assert_eq!(detail["streams"][0]["status"], "failed");
    let stage = &detail["stages"][0];
    assert_eq!(stage["stage"], "recording");
    assert_eq!(
        stage["last_error"],
        "no stream of this call was recorded: recording failed: no space left on device"
    );

    // Another call still connects and runs to its stop, without a recording either.
    let mut ws = svc.socket().await;
    stream_and_stop(&mut ws, CALL_B, STREAM_B, 100).await;
    assert_eq!(svc.stream_ended(CALL_B).await.status(), 200);
    let detail = svc.call_failed(CALL_B).await;
    assert_eq!(detail["streams"][0]["frames_in"], 100);
    assert_eq!(svc.failures("no_space").await, 2);
}

#[tokio::test]
async fn below_the_free_space_floor_no_recording_starts_and_calls_go_on() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    // 512 KiB free, under a floor of 1 MiB.
    let _fs = Tmpfs::mount(&data.join("recordings"), "512k");
    let svc = Svc::start(&data, 1).await;
    let text = svc.metrics().await;
    assert!(
        text.lines()
            .any(|l| l == "host_recording_free_bytes 524288"),
        "{text}"
    );

    let mut ws = svc.socket().await;
    stream_and_stop(&mut ws, CALL, STREAM, 50).await;
    assert_eq!(svc.failures("low_disk_space").await, 1);
    assert_eq!(svc.stream_ended(CALL).await.status(), 200);
    let detail = svc.call_failed(CALL).await;
    assert_eq!(
        recording_errors(&detail),
        ["recording failed: not enough free space for recordings: 0 MB free, recording.min_free_mb is 1"]
    );
    assert_eq!(detail["streams"][0]["frames_in"], 50);
    // Nothing was written to the volume.
    assert_eq!(
        std::fs::read_dir(data.join("recordings")).unwrap().count(),
        0
    );
}
