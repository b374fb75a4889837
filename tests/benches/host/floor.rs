//! The floor row of `make bench-host`: the least any host pays on this machine for these frames.
//! The bench binary runs itself again as a server (`BENCH_HOST_FLOOR_SERVE` set) that takes the
//! Media Streams upgrade through the same Envoy path, on the host's runtime and transport
//! (tokio's default multi-thread runtime, axum's WebSocket with the host's 1 KiB read buffer),
//! and only reads and drops the frames, counting the `media` ones. Its CPU per frame, measured in
//! the same run as the host's, is the price of receiving the frames at all: what a host cannot
//! get under by doing less work per frame.

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use axum::{Json, Router};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Set in the floor server's environment; its presence is what makes the binary serve.
pub const SERVE_ENV: &str = "BENCH_HOST_FLOOR_SERVE";
/// Microseconds between the floor's looks at its sockets (unset or 0: the host's runtime, woken
/// by each socket's readiness). Set, the floor runs one thread that sleeps this long, then
/// serves every socket that became readable meanwhile: one wake-up for many frames, each frame
/// up to that much later. What a host could save by batching wake-ups.
pub const POLL_ENV: &str = "BENCH_HOST_FLOOR_POLL_US";
/// The host's own read buffer (`host-service/src/api/media.rs`), so the reads match.
const READ_BUFFER_BYTES: usize = 1024;
/// How a caller's `media` frame begins (the simulator writes the tag first).
const MEDIA_PREFIX: &str = r#"{"event":"media""#;

#[derive(Default)]
struct Counters {
    open: AtomicU64,
    frames_in: AtomicU64,
}

/// Serve as the floor when this process was started as one; `None` for the bench itself.
pub fn serve_if_asked() -> Option<ExitCode> {
    std::env::var_os(SERVE_ENV)?;
    Some(match serve() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench-host floor: {e}");
            ExitCode::FAILURE
        }
    })
}

/// The `listen` address of the host configuration the harness wrote (`--config FILE`), so
/// the floor starts where a host would.
fn listen_addr() -> Result<SocketAddr, String> {
    let mut args = std::env::args().skip_while(|a| a != "--config").skip(1);
    let path = args.next().ok_or("no --config argument")?;
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    let config: toml::Table = text.parse().map_err(|e| format!("{path}: {e}"))?;
    config
        .get("listen")
        .and_then(toml::Value::as_str)
        .ok_or_else(|| format!("{path}: no listen key"))?
        .parse()
        .map_err(|e| format!("{path}: listen: {e}"))
}

fn serve() -> Result<(), String> {
    let addr = listen_addr()?;
    let poll_us: u64 = crate::env_or(POLL_ENV, 0)?;
    let rt = if poll_us > 0 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        // What the host builds (`tokio::runtime::Runtime::new`): one worker per CPU.
        tokio::runtime::Runtime::new()
    }
    .map_err(|e| format!("runtime: {e}"))?;
    rt.block_on(async move {
        if poll_us > 0 {
            // A blocking sleep on the runtime's only thread, then a yield: the runtime polls its
            // sockets without waiting and runs every task they woke before this task again.
            tokio::spawn(async move {
                loop {
                    std::thread::sleep(std::time::Duration::from_micros(poll_us));
                    tokio::task::yield_now().await;
                }
            });
        }
        let counters = Arc::new(Counters::default());
        let app = Router::new()
            .route("/healthz", get(healthz))
            .route("/metrics", get(metrics))
            .route("/ws/twilio-media", get(upgrade))
            .with_state(counters);
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| format!("listen on {addr}: {e}"))?;
        axum::serve(listener, app)
            .await
            .map_err(|e| format!("serve: {e}"))
    })
}

async fn healthz(State(c): State<Arc<Counters>>) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "status": "ok",
        "active_streams": c.open.load(Ordering::Relaxed),
    }))
}

async fn metrics(State(c): State<Arc<Counters>>) -> String {
    format!(
        "host_frames_in_total {}\n",
        c.frames_in.load(Ordering::Relaxed)
    )
}

async fn upgrade(State(c): State<Arc<Counters>>, ws: WebSocketUpgrade) -> Response {
    ws.read_buffer_size(READ_BUFFER_BYTES)
        .on_upgrade(move |socket| read_and_drop(c, socket))
}

async fn read_and_drop(c: Arc<Counters>, mut socket: WebSocket) {
    c.open.fetch_add(1, Ordering::Relaxed);
    while let Some(Ok(m)) = socket.recv().await {
        match m {
            Message::Text(t) if t.as_str().starts_with(MEDIA_PREFIX) => {
                c.frames_in.fetch_add(1, Ordering::Relaxed);
            }
            Message::Close(_) => break,
            _ => {}
        }
    }
    c.open.fetch_sub(1, Ordering::Relaxed);
}
