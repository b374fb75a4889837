//! The Media Streams WebSocket: one task per socket, written over a generic `Sink`/`Stream` of
//! frames so tests drive it through channels. It feeds the session state machine, the recorder
//! and the voice app, paces the app's audio, and closes the socket with the right code when the
//! peer misbehaves. One bad socket never touches another.

pub mod session;
pub mod voice;

use crate::config::RecordingSource;
use crate::recording::recorder::{RecorderLimits, RecordingError};
use crate::recording::writer::RecordingWriter;
use crate::shutdown::wait_true;
use crate::state::AppState;
use crate::store::{StreamStart, StreamStatus};
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use media::protocol::ServerMessage;
use session::{Event, Session, StartInfo};
use std::time::Duration;
use tokio::time::Instant;
use voice::{CallInfo, Outbound, VoiceApp};

/// A frame from the peer, reduced to what the handler needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WsIn {
    Text(String),
    /// A binary frame (its length): Twilio never sends one, so it ends the socket.
    Binary(usize),
    Close,
    /// A frame the transport refused to buffer (past its own, larger limit).
    Oversize,
    /// Ping and pong, answered by the transport.
    Control,
}

/// A frame to the peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WsOut {
    Text(String),
    Close(u16, &'static str),
}

pub mod close {
    pub const NORMAL: u16 = 1000;
    pub const GOING_AWAY: u16 = 1001;
    pub const UNSUPPORTED_DATA: u16 = 1003;
    pub const POLICY: u16 = 1008;
    pub const TOO_BIG: u16 = 1009;
    pub const INTERNAL: u16 = 1011;
}

/// Why a media socket ended: the `reason` of `host_ws_closed_total`, the close frame's text,
/// and `streams.close_reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    Stopped,
    ClosedByPeer,
    PeerGone,
    StartTimeout,
    BinaryFrame,
    FrameTooBig,
    ProtocolError,
    Shutdown,
    TransportError,
    SendFailed,
    InternalError,
    IdleTimeout,
    DuplicateStreamSid,
    CallAlreadyEnded,
    AccountSidMismatch,
    /// Not a socket's own end: the process holding it died and the next start found the stream
    /// still open.
    ProcessDied,
}

impl CloseReason {
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::Stopped => "stopped",
            CloseReason::ClosedByPeer => "closed_by_peer",
            CloseReason::PeerGone => "peer_gone",
            CloseReason::StartTimeout => "start_timeout",
            CloseReason::BinaryFrame => "binary_frame",
            CloseReason::FrameTooBig => "frame_too_big",
            CloseReason::ProtocolError => "protocol_error",
            CloseReason::Shutdown => "shutdown",
            CloseReason::TransportError => "transport_error",
            CloseReason::SendFailed => "send_failed",
            CloseReason::InternalError => "internal_error",
            CloseReason::IdleTimeout => "idle_timeout",
            CloseReason::DuplicateStreamSid => "duplicate_stream_sid",
            CloseReason::CallAlreadyEnded => "call_already_ended",
            CloseReason::AccountSidMismatch => "account_sid_mismatch",
            CloseReason::ProcessDied => "process_died",
        }
    }
}

/// The recording of one stream while it is open.
struct OpenRecording {
    writer: RecordingWriter,
    path: String,
}

/// Everything one socket holds.
struct Conn {
    state: AppState,
    session: Session,
    call: Option<StartInfo>,
    recording: Option<OpenRecording>,
    /// Set once the recording could not be written, so the socket stops trying.
    recording_failed: bool,
    app: Option<Box<dyn VoiceApp>>,
    started_at: Option<Instant>,
    frames_in: u64,
    frames_out: u64,
    bad: u64,
}

/// Serve one Media Streams socket until it closes, the peer misbehaves, or the service shuts
/// down. The recording is finalized on every path out.
pub async fn serve_socket<S, R, E>(state: AppState, mut tx: S, mut rx: R)
where
    S: Sink<WsOut> + Unpin,
    R: Stream<Item = Result<WsIn, E>> + Unpin,
    E: std::fmt::Display,
{
    let metrics = state.metrics.clone();
    // Counts the socket open (for `/healthz`, `/metrics` and the drain) until this returns or
    // unwinds.
    let _guard = state.tracker.enter();
    let mut shutdown = state.shutdown.clone();
    let start_deadline =
        Instant::now() + Duration::from_millis(state.config.websocket.start_timeout_ms);
    let idle = Duration::from_millis(state.config.websocket.idle_timeout_ms);
    let close_timeout = Duration::from_millis(state.config.http.shutdown_timeout_ms);
    let max_frame = state.config.websocket.max_frame_bytes;
    let mut last_frame = Instant::now();
    let mut conn = Conn {
        state: state.clone(),
        session: Session::new(),
        call: None,
        recording: None,
        recording_failed: false,
        app: None,
        started_at: None,
        frames_in: 0,
        frames_out: 0,
        bad: 0,
    };

    let (close_code, reason): (Option<u16>, CloseReason) = loop {
        let app_wake = conn
            .app
            .as_ref()
            .and_then(|a| a.next_tick())
            .zip(conn.started_at)
            .map(|(d, t0)| t0 + d);
        tokio::select! {
            biased;
            _ = wait_true(&mut shutdown) => break (Some(close::GOING_AWAY), CloseReason::Shutdown),
            _ = tokio::time::sleep_until(start_deadline), if !conn.session.started() => {
                break (Some(close::POLICY), CloseReason::StartTimeout);
            }
            _ = tokio::time::sleep_until(last_frame + idle), if conn.session.started() => {
                let (call_sid, stream_sid) = conn.sids();
                tracing::warn!(call_sid, stream_sid, idle_ms = idle.as_millis() as u64, "ws_idle");
                break (Some(close::POLICY), CloseReason::IdleTimeout);
            }
            _ = tokio::time::sleep_until(app_wake.unwrap_or_else(Instant::now)), if app_wake.is_some() => {
                let elapsed = conn.started_at.map(|t| t.elapsed()).unwrap_or_default();
                let out = conn.app.as_mut().map(|a| a.tick(elapsed)).unwrap_or_default();
                if conn.send_all(&mut tx, out).await.is_err() {
                    break (None, CloseReason::SendFailed);
                }
            }
            frame = rx.next() => {
                last_frame = Instant::now();
                let text = match frame {
                    None => break (None, CloseReason::PeerGone),
                    Some(Err(e)) => {
                        tracing::debug!(error = %e, "websocket transport error");
                        break (None, CloseReason::TransportError);
                    }
                    Some(Ok(WsIn::Close)) => break (None, CloseReason::ClosedByPeer),
                    Some(Ok(WsIn::Control)) => continue,
                    Some(Ok(WsIn::Binary(_))) => {
                        conn.refused("binary_frame", "binary frames are not part of the protocol");
                        break (Some(close::UNSUPPORTED_DATA), CloseReason::BinaryFrame);
                    }
                    Some(Ok(WsIn::Oversize)) => {
                        conn.refused("frame_too_big", "past the transport limit");
                        break (Some(close::TOO_BIG), CloseReason::FrameTooBig);
                    }
                    Some(Ok(WsIn::Text(t))) if t.len() > max_frame => {
                        conn.refused("frame_too_big", &format!("{} bytes", t.len()));
                        break (Some(close::TOO_BIG), CloseReason::FrameTooBig);
                    }
                    Some(Ok(WsIn::Text(t))) => t,
                };
                let event = conn.session.on_text(&text);
                match conn.on_event(event).await {
                    Flow::Continue(out) => {
                        if conn.send_all(&mut tx, out).await.is_err() {
                            break (None, CloseReason::SendFailed);
                        }
                    }
                    Flow::Stop => break (Some(close::NORMAL), CloseReason::Stopped),
                    Flow::Fatal => break (Some(close::POLICY), CloseReason::ProtocolError),
                    Flow::Refused(reason) => break (Some(close::POLICY), reason),
                    Flow::Internal => break (Some(close::INTERNAL), CloseReason::InternalError),
                }
            }
        }
    };
    // The recording is complete on disk before the peer learns the socket is closed.
    conn.finish(reason).await;
    // A peer that stops reading must not hold the socket (and the shutdown) forever.
    let closing = async {
        if let Some(code) = close_code {
            let _ = tx.send(WsOut::Close(code, reason.as_str())).await;
        }
        let _ = tx.close().await;
    };
    if tokio::time::timeout(close_timeout, closing).await.is_err() {
        tracing::warn!(reason = reason.as_str(), "ws_close_timeout");
    }
    metrics.ws_closed(reason.as_str());
}

enum Flow {
    Continue(Vec<Outbound>),
    Stop,
    Fatal,
    /// The start was refused (close 1008 with this reason); nothing of this socket is stored.
    Refused(CloseReason),
    Internal,
}

impl Conn {
    fn sids(&self) -> (&str, &str) {
        match &self.call {
            Some(c) => (c.call_sid.as_str(), c.stream_sid.as_str()),
            None => ("", ""),
        }
    }

    fn refused(&mut self, kind: &'static str, detail: &str) {
        self.bad += 1;
        self.state.metrics.bad_message(kind);
        let (call_sid, stream_sid) = self.sids();
        tracing::warn!(call_sid, stream_sid, kind, detail, "bad_message");
    }

    async fn on_event(&mut self, event: Event) -> Flow {
        match event {
            Event::Connected | Event::Ignored(_) => Flow::Continue(Vec::new()),
            Event::Bad { kind, detail } => {
                self.refused(kind, &detail);
                Flow::Continue(Vec::new())
            }
            Event::Fatal { kind, detail } => {
                self.refused(kind, &detail);
                Flow::Fatal
            }
            Event::Started(info) => self.on_start(info).await,
            Event::Audio {
                timestamp_ms,
                mulaw,
            } => {
                // Twilio stamps frames with the time since the stream began, so a stamp far ahead
                // of the time since `start` is a lie that would fill the file with silence.
                let since_start = self.started_at.map(|t| t.elapsed()).unwrap_or_default();
                let elapsed_ms = since_start.as_millis() as u64;
                let max_jump = self.state.config.recording.max_timestamp_jump_ms;
                if timestamp_ms > elapsed_ms.saturating_add(max_jump) {
                    self.refused(
                        "timestamp_too_far",
                        &format!(
                            "timestamp {timestamp_ms} ms at {elapsed_ms} ms into the stream (limit {max_jump} ms ahead)"
                        ),
                    );
                    return Flow::Continue(Vec::new());
                }
                self.frames_in += 1;
                self.state.metrics.frames_in.inc();
                self.state
                    .metrics
                    .frame_lag(crate::metrics::frame_lag(since_start, timestamp_ms));
                if self.recording.is_some()
                    && !self.limits().inbound_fits(timestamp_ms, mulaw.len())
                {
                    let e = RecordingError::TooLong {
                        at_ms: timestamp_ms,
                        limit_ms: self.limits().max_duration_ms,
                    };
                    self.refused("past_recording_limit", &e.to_string());
                    return Flow::Continue(Vec::new());
                }
                let out = self
                    .app
                    .as_mut()
                    .map(|a| a.audio(timestamp_ms, &mulaw))
                    .unwrap_or_default();
                if let Some(rec) = self.recording.as_ref() {
                    if let Err(e) = rec.writer.inbound(timestamp_ms, mulaw).await {
                        return self.recording_error(e);
                    }
                }
                Flow::Continue(out)
            }
            Event::Dtmf(digit) => {
                let (call_sid, stream_sid) = self.sids();
                tracing::info!(call_sid, stream_sid, digit = %digit.chars().take(4).collect::<String>(), "dtmf");
                Flow::Continue(
                    self.app
                        .as_mut()
                        .map(|a| a.dtmf(&digit))
                        .unwrap_or_default(),
                )
            }
            Event::Mark(name) => {
                Flow::Continue(self.app.as_mut().map(|a| a.mark(&name)).unwrap_or_default())
            }
            Event::Stopped => {
                let (call_sid, stream_sid) = self.sids();
                tracing::info!(
                    call_sid,
                    stream_sid,
                    frames_in = self.frames_in,
                    "stream_stop"
                );
                Flow::Stop
            }
        }
    }

    fn limits(&self) -> RecorderLimits {
        RecorderLimits {
            reorder_window_ms: self.state.config.recording.reorder_window_ms,
            max_duration_ms: self
                .state
                .config
                .recording
                .max_duration_s
                .saturating_mul(1000),
        }
    }

    /// The writer thread stopped: `finish` collects and logs its error.
    fn recording_error(&mut self, e: RecordingError) -> Flow {
        let (call_sid, stream_sid) = self.sids();
        tracing::error!(call_sid, stream_sid, error = %e, "recording write failed");
        Flow::Internal
    }

    async fn on_start(&mut self, info: StartInfo) -> Flow {
        let st = self.state.clone();
        tracing::info!(
            call_sid = %info.call_sid,
            stream_sid = %info.stream_sid,
            tracks = ?info.tracks,
            "ws_start"
        );
        if let Some(account) = &st.config.twilio.account_sid {
            if &info.account_sid != account {
                return self.refuse_start(
                    &info,
                    CloseReason::AccountSidMismatch,
                    "accountSid is not the configured account",
                );
            }
        }
        self.started_at = Some(Instant::now());
        let now = st.clock.now_ms();
        let facts = crate::store::CallFacts {
            account_sid: Some(&info.account_sid),
            from: info.custom_parameters.get("From").map(String::as_str),
            to: info.custom_parameters.get("To").map(String::as_str),
            call_status: None,
        };
        let source = st.config.recording.source;
        let started = st
            .store
            .stream_started(
                info.call_sid.as_str(),
                &info.stream_sid,
                &facts,
                source_name(source),
                now,
            )
            .await;
        let idx = match started {
            Ok(StreamStart::Started { idx }) => idx,
            Ok(StreamStart::DuplicateStream) => {
                return self.refuse_start(
                    &info,
                    CloseReason::DuplicateStreamSid,
                    "a stream with this streamSid already exists",
                );
            }
            Ok(StreamStart::CallEnded) => {
                return self.refuse_start(
                    &info,
                    CloseReason::CallAlreadyEnded,
                    "the call has already ended (stream_ended webhook)",
                );
            }
            Err(e) => {
                tracing::error!(call_sid = %info.call_sid, stream_sid = %info.stream_sid, error = %e, "cannot record stream start");
                self.call = Some(info);
                return Flow::Internal;
            }
        };
        match source {
            RecordingSource::Stream => {
                let name = if idx == 0 {
                    format!("{}.wav", info.call_sid)
                } else {
                    format!("{}.{idx}.wav", info.call_sid)
                };
                let path = st.recordings_dir.join(name);
                match RecordingWriter::create(path.clone(), self.limits()).await {
                    Ok(writer) => {
                        let path = path.display().to_string();
                        let saved = st
                            .store
                            .stream_recording_path(&info.stream_sid, &path)
                            .await;
                        if let Err(e) = saved {
                            tracing::error!(call_sid = %info.call_sid, stream_sid = %info.stream_sid, error = %e, "cannot store recording path");
                        }
                        self.recording = Some(OpenRecording { writer, path });
                    }
                    Err(e) => {
                        tracing::error!(call_sid = %info.call_sid, stream_sid = %info.stream_sid, error = %e, "cannot create recording");
                        self.call = Some(info);
                        self.recording_failed = true;
                        return Flow::Internal;
                    }
                }
            }
            RecordingSource::Twilio => {
                if idx == 0 {
                    request_twilio_recording(&st, &info);
                }
            }
        }
        let out = match &st.app_factory {
            Some(factory) => {
                let mut app = factory();
                let out = app.start(&CallInfo {
                    call_sid: info.call_sid.to_string(),
                    stream_sid: info.stream_sid.clone(),
                    custom_parameters: info.custom_parameters.clone(),
                });
                self.app = Some(app);
                out
            }
            None => Vec::new(),
        };
        self.call = Some(info);
        Flow::Continue(out)
    }

    /// A start that must not attach to the call: counted and logged, and `self.call` stays empty
    /// so nothing about this socket is written over the call's rows.
    fn refuse_start(&mut self, info: &StartInfo, reason: CloseReason, detail: &str) -> Flow {
        let kind = reason.as_str();
        self.bad += 1;
        self.state.metrics.bad_message(kind);
        tracing::warn!(call_sid = %info.call_sid, stream_sid = %info.stream_sid, kind, detail, "start_refused");
        Flow::Refused(reason)
    }

    async fn send_all<S: Sink<WsOut> + Unpin>(
        &mut self,
        tx: &mut S,
        out: Vec<Outbound>,
    ) -> Result<(), ()> {
        let Some(stream_sid) = self.call.as_ref().map(|c| c.stream_sid.clone()) else {
            return Ok(());
        };
        for o in out {
            let msg = match o {
                Outbound::Media(audio) => {
                    if let Some(rec) = self.recording.as_ref() {
                        if let Err(e) = rec.writer.outbound(audio.clone()).await {
                            tracing::warn!(stream_sid = %stream_sid, error = %e, "outbound audio not recorded");
                        }
                    }
                    self.frames_out += 1;
                    self.state.metrics.frames_out.inc();
                    ServerMessage::media(&stream_sid, &audio)
                }
                Outbound::Mark(name) => ServerMessage::mark(&stream_sid, &name),
                Outbound::Clear => {
                    if let Some(rec) = self.recording.as_ref() {
                        if let Err(e) = rec.writer.clear_outbound().await {
                            tracing::warn!(stream_sid = %stream_sid, error = %e, "clear not recorded");
                        }
                    }
                    ServerMessage::clear(&stream_sid)
                }
            };
            tx.send(WsOut::Text(msg.to_json())).await.map_err(|_| ())?;
        }
        Ok(())
    }

    /// Finalize the recording (on every way out) and store how the stream ended.
    async fn finish(mut self, reason: CloseReason) {
        if let Some(app) = self.app.as_mut() {
            app.stop();
        }
        let Some(info) = self.call.take() else {
            return;
        };
        let st = &self.state;
        let (status, frames) = match self.recording.take() {
            Some(open) => {
                let path = open.path;
                match open.writer.finish().await {
                    Ok(summary) => {
                        tracing::info!(
                            call_sid = %info.call_sid,
                            stream_sid = %info.stream_sid,
                            path = %path,
                            duration_ms = summary.duration_ms,
                            "recording_saved"
                        );
                        (StreamStatus::Saved, Some(summary.frames))
                    }
                    Err(e) => {
                        tracing::error!(call_sid = %info.call_sid, stream_sid = %info.stream_sid, error = %e, "recording finalize failed");
                        (StreamStatus::Failed, None)
                    }
                }
            }
            None if self.recording_failed => (StreamStatus::Failed, None),
            None => (StreamStatus::NotRecorded, None),
        };
        let now = st.clock.now_ms();
        if let Err(e) = st
            .store
            .stream_finished(
                &info.stream_sid,
                status,
                frames,
                (self.frames_in, self.frames_out, self.bad),
                reason.as_str(),
                now,
            )
            .await
        {
            tracing::error!(call_sid = %info.call_sid, stream_sid = %info.stream_sid, error = %e, "cannot store stream end");
        }
        tracing::info!(
            call_sid = %info.call_sid,
            stream_sid = %info.stream_sid,
            reason = reason.as_str(),
            frames_in = self.frames_in,
            frames_out = self.frames_out,
            bad_messages = self.bad,
            "ws_closed"
        );
    }
}

/// Ask Twilio to record the call (the `twilio` source), without holding up the media socket.
fn request_twilio_recording(state: &AppState, info: &StartInfo) {
    let Some(client) = state.twilio.clone() else {
        return;
    };
    let Some(base) = state.config.public_base_url.clone() else {
        return;
    };
    let store = state.store.clone();
    let clock = state.clock.clone();
    let call_sid = info.call_sid.clone();
    let stream_sid = info.stream_sid.clone();
    let account = info.account_sid.clone();
    tokio::spawn(async move {
        let callback = format!("{}/webhook/recording_status", base.trim_end_matches('/'));
        let status = match client.start_recording(&account, &call_sid, &callback).await {
            Ok(recording_sid) => {
                tracing::info!(call_sid = %call_sid, stream_sid = %stream_sid, recording_sid = %recording_sid, "twilio_recording_started");
                "twilio_requested"
            }
            Err(e) => {
                tracing::error!(call_sid = %call_sid, stream_sid = %stream_sid, error = %e, "twilio_recording_failed");
                let _ = store
                    .add_error(
                        call_sid.as_str(),
                        "recording",
                        &e.to_string(),
                        clock.now_ms(),
                    )
                    .await;
                "twilio_request_failed"
            }
        };
        if let Err(e) = store.set_recording_status(call_sid.as_str(), status).await {
            tracing::error!(call_sid = %call_sid, error = %e, "cannot store recording status");
        }
    });
}

pub fn source_name(source: RecordingSource) -> &'static str {
    match source {
        RecordingSource::Stream => "stream",
        RecordingSource::Twilio => "twilio",
    }
}
