//! `GET /ws/twilio-media`: the Media Streams upgrade. Checks the handshake's signature and the
//! socket limit, then hands the socket to `crate::socket` with only its `SocketCtx`.

use super::error::ApiError;
use super::signature::check_websocket_signature;
use crate::socket::{serve_socket, SocketCtx, WsIn, WsOut};
use crate::state::AppState;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::{HeaderMap, Uri};
use axum::response::Response;
use futures_util::{future, SinkExt, StreamExt};
use std::sync::Arc;

/// What the transport reads at once per socket; larger frames take several reads.
const READ_BUFFER_BYTES: usize = 1024;

pub(super) async fn media_socket(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    ws: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    if *state.shutdown.borrow() {
        return Err(ApiError::ShuttingDown);
    }
    if state.config.validate_signatures() {
        check_websocket_signature(&state, &headers, &uri)?;
    }
    // The slot is taken before the upgrade and held by the socket's task until it ends.
    let slot = state
        .socket_slots
        .clone()
        .try_acquire_owned()
        .map_err(|_| {
            state.metrics.ws_rejected("too_many_sockets");
            tracing::warn!(
                max_sockets = state.config.websocket.max_sockets,
                "ws_rejected"
            );
            ApiError::TooManySockets
        })?;
    // The transport allows more than the protocol limit so the handler sees the oversize frame
    // and closes with 1009 itself.
    let limit = state
        .config
        .websocket
        .max_frame_bytes
        .saturating_mul(4)
        .max(1 << 20);
    Ok(ws
        // Frames are a few hundred bytes, and the transport zeroes its read buffer's free
        // space before every read: its 128 KiB default was that much memset per frame and kept
        // resident per socket; 1 KiB holds a few frames.
        .read_buffer_size(READ_BUFFER_BYTES)
        .max_message_size(limit)
        .max_frame_size(limit)
        .on_upgrade(move |socket| async move {
            let _slot = slot;
            serve_axum_socket(state.socket.clone(), socket).await
        }))
}

async fn serve_axum_socket(ctx: Arc<SocketCtx>, socket: WebSocket) {
    // One object that reads and writes, not `split()` halves: the socket's one task does both,
    // and the halves would take a lock and wake through it on every frame.
    let io = socket
        .with(|out: WsOut| {
            future::ready(Ok::<_, axum::Error>(match out {
                WsOut::Text(t) => Message::Text(t.into()),
                WsOut::Close(code, reason) => Message::Close(Some(CloseFrame {
                    code,
                    reason: reason.into(),
                })),
            }))
        })
        .map(|m| match m {
            // The transport stops reading a message past its limit; it is still a frame too
            // big, and the peer is told so (1009).
            Err(e) if e.to_string().contains("Message too long") => Ok(WsIn::Oversize),
            m => m.map(|m| match m {
                Message::Text(t) => WsIn::Text(t),
                Message::Binary(b) => WsIn::Binary(b.len()),
                Message::Close(_) => WsIn::Close,
                Message::Ping(_) | Message::Pong(_) => WsIn::Control,
            }),
        });
    serve_socket(ctx, io).await;
}
