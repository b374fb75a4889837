//! The service as a process: SIGKILL in the middle of a stream and of each engine stage,
//! restart, and the call still finishes exactly once; SIGTERM drains (open recordings finalized,
//! running stages finished, no new sockets) and exits cleanly. Configured through environment
//! variables only, as a deployment would. The process is the service's own command
//! (`host_service::cli`) with the test engines: this test binary, run again as the service
//! (`service_with_test_engines`), since the shipped binary has no stand-in engines, which
//! `the_shipped_binary_refuses_test_engines` checks.

use crate::common::*;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub(crate) struct Service {
    child: Child,
    pub(crate) addr: std::net::SocketAddr,
    logs: mpsc::Receiver<String>,
    /// Lines read while waiting for the address.
    early: Vec<String>,
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Set in the environment of this test binary when it runs as the service.
const AS_SERVICE: &str = "TWIML_GUARD_TEST_RUN_AS_SERVICE";

/// Not a test of its own: the service with the test engines (configured by `TEST_ENGINES_*`),
/// when `spawn` runs this binary with [`AS_SERVICE`] set; it exits with the service.
#[test]
#[ignore = "the service process of the tests in this file; `spawn` runs it"]
fn service_with_test_engines() {
    if std::env::var_os(AS_SERVICE).is_none() {
        return;
    }
    let code = host_service::cli::main_with(["host-service"], |_config| {
        Ok(test_engines::engines_from_env()?)
    });
    // An ExitCode cannot be read back; the service's own exit is 0 or 1.
    std::process::exit(if code == std::process::ExitCode::SUCCESS {
        0
    } else {
        1
    });
}

pub(crate) fn spawn(data: &Path, extra: &[(&str, String)]) -> Service {
    let exe = std::env::current_exe().expect("this test binary's path");
    let mut cmd = Command::new(exe);
    cmd.args([
        "process::service_with_test_engines",
        "--exact",
        "--ignored",
        "--nocapture",
    ])
    .env_clear()
    .env(AS_SERVICE, "1")
    .env("HOST_SERVICE_LISTEN", "127.0.0.1:0")
    .env("HOST_SERVICE_DATA_DIR", data)
    .env("HOST_SERVICE_TWILIO_VALIDATE_SIGNATURES", "false")
    .env("HOST_SERVICE_PIPELINE_POLL_MS", "20")
    .env("HOST_SERVICE_PIPELINE_LEASE_MS", "2000")
    .env("HOST_SERVICE_PIPELINE_BACKOFF_BASE_MS", "20")
    .env("HOST_SERVICE_LOG", "info")
    .stdout(Stdio::piped())
    .stderr(Stdio::inherit());
    for (k, v) in extra {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn host-service");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            eprintln!("[service] {line}");
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // The service logs where it listens; port 0 lets the OS pick a free one.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut early = Vec::new();
    let addr = loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let Ok(line) = rx.recv_timeout(left) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the service did not log its address");
        };
        let found = line.split("listen=").nth(1).map(|rest| {
            rest.split_whitespace()
                .next()
                .and_then(|a| a.parse().ok())
                .expect("an address after listen=")
        });
        early.push(line);
        if let Some(addr) = found {
            break addr;
        }
    };
    Service {
        child,
        addr,
        logs: rx,
        early,
    }
}

impl Service {
    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    fn sigterm(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    fn wait_exit(&mut self) -> std::process::ExitStatus {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(std::time::Instant::now() < deadline, "service did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Drain the log lines seen so far.
    fn log_lines(&mut self) -> Vec<String> {
        let mut lines = std::mem::take(&mut self.early);
        lines.extend(self.logs.try_iter());
        lines
    }
}

async fn call_json(svc: &Service, call: &str) -> serde_json::Value {
    reqwest::get(svc.url(&format!("/api/calls/{call}")))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

fn stage<'a>(detail: &'a serde_json::Value, name: &str) -> Option<&'a serde_json::Value> {
    detail["stages"]
        .as_array()?
        .iter()
        .find(|s| s["stage"] == name)
}

async fn wait_stage_running(svc: &Service, call: &str, name: &str) {
    poll(
        &format!("{name} running"),
        Duration::from_secs(20),
        || async {
            let d = call_json(svc, call).await;
            (stage(&d, name)?["state"] == "running").then_some(())
        },
    )
    .await;
}

async fn wait_completed(svc: &Service, call: &str) -> serde_json::Value {
    poll("call completed", Duration::from_secs(30), || async {
        let d = call_json(svc, call).await;
        (d["status"] == "completed").then_some(d)
    })
    .await
}

async fn post_stream_ended(svc: &Service, call: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(svc.url("/webhook/stream_ended"))
        .form(&stream_ended_form(call))
        .send()
        .await
        .unwrap()
}

async fn stream_call(svc: &Service, call: &GeneratedCall) {
    let mut ws = connect(svc.addr).await;
    send(&mut ws, connected()).await;
    send(&mut ws, start(CALL, STREAM)).await;
    for (seq, (ts, audio)) in call.frames.iter().enumerate() {
        send(&mut ws, media(STREAM, seq + 2, *ts, audio)).await;
    }
    // A bad frame in the middle of a real call is skipped.
    send(&mut ws, "{garbage".into()).await;
    send(&mut ws, stop(CALL, STREAM)).await;
    assert_eq!(read_until_close(&mut ws).await.0, Some(1000));
}

fn engine_log(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn recording(data: &Path) -> PathBuf {
    data.join(format!("recordings/{CALL}.wav"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_in_the_middle_of_each_stage_still_finishes_the_call_exactly_once() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let log = tmp.path().join("engines.log");
    let env = [
        ("TEST_ENGINES_DELAY_MS", "1500".to_owned()),
        ("TEST_ENGINES_LOG", log.display().to_string()),
    ];
    let call = GeneratedCall::new(150, 40..60);

    let svc = spawn(&data, &env);
    stream_call(&svc, &call).await;
    // Twilio retries the webhook: three deliveries, one pipeline.
    for _ in 0..3 {
        let resp = post_stream_ended(&svc, CALL).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(
            resp.text().await.unwrap(),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Hangup/></Response>"
        );
    }
    wait_stage_running(&svc, CALL, "transcribe").await;
    svc.kill9();

    let svc = spawn(&data, &env);
    // The dead worker's lease expires and the stage runs again, then extraction starts.
    wait_stage_running(&svc, CALL, "extract").await;
    svc.kill9();

    let svc = spawn(&data, &env);
    let d = wait_completed(&svc, CALL).await;
    let attempts: Vec<(String, i64)> = d["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["stage"].as_str().unwrap().to_owned(),
                s["attempts"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        attempts,
        [
            ("recording".to_owned(), 1),
            ("transcribe".to_owned(), 2),
            ("extract".to_owned(), 2)
        ]
    );
    // Each engine ran twice (once cut short by the kill); each result was committed once.
    assert_eq!(
        engine_log(&log),
        [
            format!("transcribe {CALL}"),
            format!("transcribe {CALL}"),
            format!("extract {CALL}"),
            format!("extract {CALL}")
        ]
    );
    let expected = call.expected_left();
    let nonsilent = expected.iter().filter(|&&s| s != 0).count();
    let text = format!(
        "{} frames, caller {nonsilent} non-silent, agent 0 non-silent",
        expected.len()
    );
    assert_eq!(d["transcript"]["text"], text);
    assert_eq!(d["summary"], format!("summary of: {text}"));
    assert_eq!(d["streams"][0]["bad_messages"], 1);
    let (left, _) = read_stereo_wav(&recording(&data));
    assert!(left == expected, "recording differs from the streamed call");
    let metrics = reqwest::get(svc.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("host_jobs{stage=\"extract\",state=\"done\"} 1"),
        "{metrics}"
    );
    let jobs: usize = metrics
        .lines()
        .filter(|l| l.starts_with("host_jobs{"))
        .count();
    assert_eq!(jobs, 3, "one job per stage: {metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_stream_leaves_a_recording_that_is_repaired_and_used() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let svc = spawn(&data, &[]);
    let mut ws = connect(svc.addr).await;
    send(&mut ws, start(CALL, STREAM)).await;
    let call = GeneratedCall::new(200, 0..0);
    for (seq, (ts, audio)) in call.frames.iter().enumerate() {
        send(&mut ws, media(STREAM, seq + 2, *ts, audio)).await;
    }
    // Audio well behind the newest frame (the reorder window) has gone to disk.
    let path = recording(&data);
    poll("audio on disk", Duration::from_secs(20), || async {
        let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        (len >= 44 + 2 * 8000 * 4).then_some(())
    })
    .await;
    svc.kill9();
    drop(ws);

    let mut svc = spawn(&data, &[]);
    let (left, right) = read_stereo_wav(&path);
    assert!(left.len() >= 2 * 8000, "kept {} samples", left.len());
    assert!(
        left[..] == call.expected_left()[..left.len()],
        "repaired audio is what was streamed"
    );
    assert!(right.iter().all(|&s| s == 0));
    let d = call_json(&svc, CALL).await;
    assert_eq!(d["streams"][0]["status"], "repaired");
    assert_eq!(d["streams"][0]["close_reason"], "process_died");
    assert_eq!(d["streams"][0]["frames"], left.len());
    // Twilio's webhook comes when the call ends; the pipeline runs on the repaired file.
    assert_eq!(post_stream_ended(&svc, CALL).await.status(), 200);
    let d = wait_completed(&svc, CALL).await;
    assert_eq!(d["recording"]["duration_ms"], left.len() / 8);
    assert!(svc
        .log_lines()
        .iter()
        .any(|l| l.contains("recording_repaired")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_sockets_and_running_stages_then_exits() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let log = tmp.path().join("engines.log");
    let env = [
        ("TEST_ENGINES_DELAY_MS", "1000".to_owned()),
        ("TEST_ENGINES_LOG", log.display().to_string()),
    ];
    let mut svc = spawn(&data, &env);
    // A finished call whose transcription is running when SIGTERM arrives.
    let other = "CAffffffffffffffffffffffffffffffff";
    let mut ws = connect(svc.addr).await;
    send(&mut ws, start(other, "MZ2")).await;
    send(&mut ws, media("MZ2", 2, 0, &frame_audio(0))).await;
    send(&mut ws, stop(other, "MZ2")).await;
    assert_eq!(read_until_close(&mut ws).await.0, Some(1000));
    assert_eq!(post_stream_ended(&svc, other).await.status(), 200);
    wait_stage_running(&svc, other, "transcribe").await;

    // And a call still streaming.
    let mut live = connect(svc.addr).await;
    send(&mut live, start(CALL, STREAM)).await;
    let call = GeneratedCall::new(50, 10..20);
    for (seq, (ts, audio)) in call.frames.iter().enumerate() {
        send(&mut live, media(STREAM, seq + 2, *ts, audio)).await;
    }
    poll("frames in", Duration::from_secs(10), || async {
        let m = reqwest::get(svc.url("/metrics"))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        m.contains("host_frames_in_total 41").then_some(())
    })
    .await;

    svc.sigterm();
    let (code, _) = read_until_close(&mut live).await;
    assert_eq!(code, Some(1001), "going away");
    let addr = svc.addr;
    let status = tokio::task::spawn_blocking(move || {
        let s = svc.wait_exit();
        (s, svc)
    })
    .await
    .unwrap();
    let (exit, mut svc) = status;
    assert!(exit.success(), "clean exit: {exit:?}");
    let lines = svc.log_lines();
    assert!(
        lines.iter().any(|l| l.contains("transcript_ready")),
        "the running stage finished"
    );
    assert!(lines.iter().any(|l| l.contains("stopped")));
    // No new sockets once it is gone.
    assert!(
        tokio_tungstenite::connect_async(format!("ws://{addr}/ws/twilio-media"))
            .await
            .is_err()
    );
    drop(svc);
    // The open recording was finalized: a valid header and every sample.
    let (left, _) = read_stereo_wav(&recording(&data));
    assert!(
        left == call.expected_left(),
        "finalized recording is the streamed call"
    );

    // After a restart the interrupted call was never run twice, and the rest completes.
    let svc = spawn(&data, &env);
    let d = wait_completed(&svc, other).await;
    assert_eq!(stage(&d, "transcribe").unwrap()["attempts"], 1);
    assert_eq!(
        engine_log(&log),
        [format!("transcribe {other}"), format!("extract {other}")]
    );
    let d = call_json(&svc, CALL).await;
    assert_eq!(d["streams"][0]["status"], "saved");
    assert_eq!(d["streams"][0]["close_reason"], "shutdown");
}

/// The shipped binary has no test engines: asking for them is an unknown key, named, and the
/// process exits 1 before it opens anything.
#[test]
fn the_shipped_binary_refuses_test_engines() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("host-service.toml");
    let data = tmp.path().join("data");
    std::fs::write(
        &config,
        format!(
            "data_dir = \"{}\"\n[twilio]\nvalidate_signatures = false\n[pipeline]\nengines = \"test\"\n",
            data.display()
        ),
    )
    .unwrap();
    for check in [false, true] {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_host-service"));
        cmd.env_clear().arg("--config").arg(&config);
        if check {
            cmd.arg("--check-config");
        }
        let out = cmd.output().unwrap();
        assert_eq!(out.status.code(), Some(1), "check-config: {check}");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            stderr,
            format!(
                "host-service: config file {}: key pipeline.engines: unknown field `engines`, expected one \
                 of `workers`, `max_attempts`, `backoff_base_ms`, `backoff_cap_ms`, `lease_ms`, \
                 `poll_ms`, `drain_timeout_ms`, `stream_wait_timeout_ms`\n",
                config.display()
            )
        );
    }
    assert!(!data.exists(), "nothing was created");
}
