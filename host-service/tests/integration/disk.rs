//! Recording faults never touch the call: `data_dir/recordings` on a small real tmpfs, a signed
//! call streams past its size, and the socket stays open until the caller's `stop`, the webhook
//! is answered, the call says why it has no recording, the failure is counted and other calls
//! still connect. Then the free-space guard stops new recordings before the disk is full, and a
//! disk that stalls (a real ext4 volume frozen with `fsfreeze`) never holds up the socket.

use crate::common::*;
use futures_util::{SinkExt, StreamExt};
use host_service::config::{AppKind, Config};
use media::protocol::{parse_server, ServerMessage};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
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
        Svc::start_with(data_dir, min_free_mb, |_| {}).await
    }

    /// [`Svc::start`] with more settings.
    async fn start_with(data_dir: &Path, min_free_mb: u64, more: impl FnOnce(&mut Config)) -> Svc {
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
        more(&mut c);
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

/// A real ext4 volume on a loop device, mounted for the test's life; `freeze` stalls every write
/// to it (`fsfreeze`: writers block in the kernel until the volume is thawed), as a disk that
/// stops answering does. Thawed and unmounted on drop, so the stalled writes finish.
struct StalledDisk {
    dir: PathBuf,
    frozen: bool,
}

impl StalledDisk {
    fn mount(image: &Path, dir: &Path) -> StalledDisk {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::File::create(image)
            .and_then(|f| f.set_len(32 << 20))
            .unwrap();
        run("mkfs.ext4", &["-q", "-F"], image);
        let disk = StalledDisk {
            dir: dir.to_path_buf(),
            frozen: false,
        };
        let out = std::process::Command::new("mount")
            .args(["-o", "loop"])
            .arg(image)
            .arg(dir)
            .output()
            .expect("running mount(8)");
        assert!(
            out.status.success(),
            "this test mounts an ext4 image on a loop device at {} and needs root (or \
             CAP_SYS_ADMIN) and /dev/loop-control for it: {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
        disk
    }

    fn freeze(&mut self) {
        run("fsfreeze", &["-f"], &self.dir);
        self.frozen = true;
    }
}

impl Drop for StalledDisk {
    fn drop(&mut self) {
        if self.frozen {
            let _ = std::process::Command::new("fsfreeze")
                .arg("-u")
                .arg(&self.dir)
                .status();
        }
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.dir)
            .status();
    }
}

fn run(program: &str, args: &[&str], path: &Path) {
    let out = std::process::Command::new(program)
        .args(args)
        .arg(path)
        .output()
        .unwrap_or_else(|e| panic!("running {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

/// What the caller's side heard from the service.
#[derive(Debug, PartialEq)]
enum Heard {
    Media,
    Mark(String),
    Clear,
    Closed(Option<u16>),
}

/// The next thing heard that `want` picks, within the deadline.
async fn hear<T>(
    heard: &mut tokio::sync::mpsc::UnboundedReceiver<Heard>,
    what: &str,
    mut want: impl FnMut(Heard) -> Option<T>,
) -> T {
    let found = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(h) = heard.recv().await {
            if let Some(t) = want(h) {
                return Some(t);
            }
        }
        None
    });
    match found.await {
        Ok(Some(t)) => t,
        Ok(None) => panic!("the socket ended before {what}"),
        Err(_) => panic!("no {what} within 20 s"),
    }
}

#[tokio::test]
async fn a_stalled_disk_never_holds_the_socket_and_the_call_goes_on_without_its_recording() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut disk = StalledDisk::mount(&tmp.path().join("disk.img"), &data.join("recordings"));
    // A 60 s greeting at 8 kHz with a mark every 200 ms: the voice app talks throughout.
    let wav = tmp.path().join("greeting.wav");
    let tone: Vec<f32> = (0..480_000)
        .map(|i| (i as f32 * 440.0 * std::f32::consts::TAU / 8000.0).sin() * 0.5)
        .collect();
    std::fs::write(&wav, media::wav::encode_i16(&[tone], 8000).unwrap()).unwrap();
    let svc = Svc::start_with(&data, 0, |c| {
        c.app.kind = AppKind::Greeting;
        c.app.greeting_wav = Some(wav);
        c.app.mark_every_ms = 200;
    })
    .await;
    disk.freeze();

    let (mut tx, mut rx) = svc.socket().await.split();
    let (heard_tx, mut heard) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(msg) = rx.next().await {
            let h = match msg {
                Ok(Message::Text(t)) => match parse_server(&t).unwrap() {
                    ServerMessage::Media { .. } => Heard::Media,
                    ServerMessage::Mark { mark, .. } => Heard::Mark(mark.name),
                    ServerMessage::Clear { .. } => Heard::Clear,
                },
                Ok(Message::Close(frame)) => Heard::Closed(frame.map(|f| u16::from(f.code))),
                Ok(_) => continue,
                Err(_) => Heard::Closed(None),
            };
            if heard_tx.send(h).is_err() {
                return;
            }
        }
    });
    let send = |text: String| Message::Text(text.into());
    tx.send(send(connected())).await.unwrap();
    tx.send(send(start(CALL, STREAM))).await.unwrap();
    // 12 s of caller audio at ten times real time: past the recording's 10 s queue, which
    // nothing drains while the volume is frozen.
    let mut pace = tokio::time::interval(Duration::from_millis(2));
    for k in 0..600 {
        pace.tick().await;
        tx.send(send(media(STREAM, k + 2, k as u64 * 20, &frame_audio(k))))
            .await
            .unwrap();
    }
    poll("the recording to fail", Duration::from_secs(20), || async {
        (svc.failures("disk_too_slow").await == 1).then_some(())
    })
    .await;

    // After the failure the socket is still read and the app still driven: its greeting goes
    // on, a mark it sent comes back to it, and a key press read now stops it with a `clear`.
    while heard.try_recv().is_ok() {}
    hear(&mut heard, "greeting audio after the failure", |h| {
        (h == Heard::Media).then_some(())
    })
    .await;
    let name = hear(&mut heard, "a mark after the failure", |h| match h {
        Heard::Mark(name) => Some(name),
        _ => None,
    })
    .await;
    tx.send(send(mark(STREAM, &name))).await.unwrap();
    for k in 600..700 {
        pace.tick().await;
        tx.send(send(media(STREAM, k + 2, k as u64 * 20, &frame_audio(k))))
            .await
            .unwrap();
    }
    tx.send(send(dtmf(STREAM, "5"))).await.unwrap();
    hear(&mut heard, "the app's clear", |h| {
        (h == Heard::Clear).then_some(())
    })
    .await;
    tx.send(send(super::common::stop(CALL, STREAM)))
        .await
        .unwrap();
    let code = hear(&mut heard, "the close", |h| match h {
        Heard::Closed(code) => Some(code),
        _ => None,
    })
    .await;
    assert_eq!(code, Some(1000), "the call ran to the caller's stop");

    assert_eq!(svc.stream_ended(CALL).await.status(), 200);
    let detail = svc.call_failed(CALL).await;
    assert_eq!(
        recording_errors(&detail),
        ["recording failed: the disk fell 10 s behind the call"]
    );
    assert_eq!(detail["streams"][0]["frames_in"], 700);
    assert_eq!(detail["streams"][0]["bad_messages"], 0);
    assert_eq!(detail["streams"][0]["close_reason"], "stopped");
    assert_eq!(detail["streams"][0]["status"], "failed");
    assert_eq!(svc.failures("disk_too_slow").await, 1);
}
