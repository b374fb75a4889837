//! The Media Streams WebSocket: one task per socket, written over a generic `Sink` + `Stream` of
//! frames (one object, not split halves: one task reads and writes, so no lock between them).
//! It feeds the session state machine, the recorder and the voice app, paces the app's audio,
//! and closes the socket with the right code when the peer misbehaves. One bad socket never
//! touches another.

pub mod limits;
pub mod session;
pub mod voice;

use crate::clock::Clock;
use crate::metrics::Metrics;
use crate::recording::recorder::RecordingError;
use crate::recording::{Failure, OpenRecording, Source, StartedStream};
use crate::shutdown::{wait_true, Tracker};
use crate::store::{CloseReason, Store, StreamStart, StreamStatus, FIRST_FENCE};
use crate::writes::{StreamBegin, StreamEnd, Writes, Written};
use axum::extract::ws::Utf8Bytes;
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use limits::{CallStreams, FrameRate, StreamSlot};
use media::protocol::ServerMessage;
use session::{Event, Session, StartInfo};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;
use voice::{AppFactory, CallInfo, Outbound, VoiceApp};

/// A frame from the peer, reduced to what the handler needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WsIn {
    /// The transport's own bytes, not copied: fifty a second per call.
    Text(Utf8Bytes),
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
}

/// What a media socket is given, and nothing more: its limits, the store it reports to, the
/// recording source, the voice app, and the drain signal.
pub struct SocketCtx {
    pub limits: SocketLimits,
    /// `twilio.account_sid`: when set, a `start` from another account is refused.
    pub account_sid: Option<String>,
    /// `twilio.media_key`: when set, a `start` needs the edge's media token for its call.
    pub media_key: Option<String>,
    /// The open streams of each call, against `websocket.max_streams_per_call`.
    pub call_streams: Arc<CallStreams>,
    pub store: Store,
    /// Where the stream's end goes: retried until the database takes it.
    pub writes: Writes,
    pub recording: Arc<dyn Source>,
    pub app_factory: Option<AppFactory>,
    pub metrics: Arc<Metrics>,
    pub clock: Clock,
    /// Counts the socket open (for `/healthz`, `/metrics` and the drain).
    pub tracker: Arc<Tracker>,
    /// Turns true when the service starts draining.
    pub shutdown: watch::Receiver<bool>,
}

/// The timers and sizes of one socket (`websocket.*`, `recording.max_timestamp_jump_ms`).
#[derive(Debug, Clone, Copy)]
pub struct SocketLimits {
    /// No `start` within this long closes the socket.
    pub start_timeout: Duration,
    /// After `start`, silence this long closes the socket.
    pub idle_timeout: Duration,
    /// How long the close frame may take to go out.
    pub close_timeout: Duration,
    pub max_frame_bytes: usize,
    /// A socket open this long is closed.
    pub max_lifetime: Duration,
    pub max_streams_per_call: usize,
    pub max_frames_per_s: u32,
    /// How far ahead of the time since `start` a frame's timestamp may be.
    pub max_timestamp_jump_ms: u64,
}

/// Everything one socket holds.
struct Conn {
    ctx: Arc<SocketCtx>,
    session: Session,
    call: Option<StartInfo>,
    recording: Option<OpenRecording>,
    /// Why the recording stopped, once it has: the call goes on without it.
    recording_failure: Option<Failure>,
    app: Option<Box<dyn VoiceApp>>,
    /// This socket's place among its call's open streams, held until it closes.
    slot: Option<StreamSlot>,
    /// The stream's start will never be stored (the retry queue was full): nothing else is.
    unstored: bool,
    started_at: Option<Instant>,
    frames_in: u64,
    frames_out: u64,
    bad: u64,
}

/// Serve one Media Streams socket until it closes, the peer misbehaves, or the service shuts
/// down. The recording is finalized on every path out.
pub async fn serve_socket<T, E>(ctx: Arc<SocketCtx>, mut io: T)
where
    T: Sink<WsOut> + Stream<Item = Result<WsIn, E>> + Unpin,
    E: std::fmt::Display,
{
    let metrics = ctx.metrics.clone();
    // Counts the socket open until this returns or unwinds.
    let _guard = ctx.tracker.enter();
    let mut shutdown = ctx.shutdown.clone();
    let limits = ctx.limits;
    let opened = Instant::now();
    let start_deadline = opened + limits.start_timeout;
    let end_of_life = opened + limits.max_lifetime;
    let mut rate = FrameRate::new(limits.max_frames_per_s, opened);
    let idle = limits.idle_timeout;
    let close_timeout = limits.close_timeout;
    let max_frame = limits.max_frame_bytes;
    let mut last_frame = Instant::now();
    // The socket's timers live as long as it does, so a frame costs no timer registration: the
    // idle timer is moved on only when it fires early (a frame came since it was set).
    let start_timer = tokio::time::sleep_until(start_deadline);
    let lifetime_timer = tokio::time::sleep_until(end_of_life);
    let idle_timer = tokio::time::sleep_until(last_frame + idle);
    let app_timer = tokio::time::sleep_until(end_of_life);
    tokio::pin!(start_timer, lifetime_timer, idle_timer, app_timer);
    let mut app_timer_at = None;
    let mut conn = Conn {
        ctx,
        session: Session::new(),
        call: None,
        recording: None,
        recording_failure: None,
        app: None,
        slot: None,
        unstored: false,
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
        if let Some(at) = app_wake.filter(|at| app_timer_at != Some(*at)) {
            app_timer.as_mut().reset(at);
            app_timer_at = Some(at);
        }
        tokio::select! {
            biased;
            _ = wait_true(&mut shutdown) => break (Some(close::GOING_AWAY), CloseReason::Shutdown),
            _ = &mut start_timer, if !conn.session.started() => {
                break (Some(close::POLICY), CloseReason::StartTimeout);
            }
            _ = &mut lifetime_timer => {
                let (call_sid, stream_sid) = conn.sids();
                tracing::warn!(call_sid, stream_sid, lifetime_s = limits.max_lifetime.as_secs(), "ws_lifetime");
                break (Some(close::POLICY), CloseReason::MaxLifetime);
            }
            _ = &mut idle_timer, if conn.session.started() => {
                let deadline = last_frame + idle;
                if deadline > Instant::now() {
                    idle_timer.as_mut().reset(deadline);
                    continue;
                }
                let (call_sid, stream_sid) = conn.sids();
                tracing::warn!(call_sid, stream_sid, idle_ms = idle.as_millis() as u64, "ws_idle");
                break (Some(close::POLICY), CloseReason::IdleTimeout);
            }
            _ = &mut app_timer, if app_wake.is_some() => {
                // Fired for this deadline: the next one, even if equal, is set again.
                app_timer_at = None;
                let elapsed = conn.started_at.map(|t| t.elapsed()).unwrap_or_default();
                let out = conn.app.as_mut().map(|a| a.tick(elapsed)).unwrap_or_default();
                if conn.send_all(&mut io, out).await.is_err() {
                    break (None, CloseReason::SendFailed);
                }
            }
            frame = io.next() => {
                if !rate.admit(Instant::now()) {
                    conn.refused("frame_rate", &format!("more than {} frames in one second", limits.max_frames_per_s));
                    break (Some(close::POLICY), CloseReason::FrameRate);
                }
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
                // Only a frame the stream accepts keeps the socket alive: pings and refused
                // frames do not, or a peer could hold a slot forever without a call.
                let refused_before = conn.bad;
                let flow = conn.on_event(event).await;
                if conn.bad == refused_before {
                    last_frame = Instant::now();
                }
                match flow {
                    Flow::Continue(out) => {
                        if conn.send_all(&mut io, out).await.is_err() {
                            break (None, CloseReason::SendFailed);
                        }
                    }
                    Flow::Stop => break (Some(close::NORMAL), CloseReason::Stopped),
                    Flow::Fatal => break (Some(close::POLICY), CloseReason::ProtocolError),
                    Flow::Refused(reason) => break (Some(close::POLICY), reason),
                }
            }
        }
    };
    // The recording is complete on disk before the peer learns the socket is closed.
    conn.finish(reason).await;
    // A peer that stops reading must not hold the socket (and the shutdown) forever.
    let closing = async {
        if let Some(code) = close_code {
            let _ = io.send(WsOut::Close(code, reason.as_str())).await;
        }
        let _ = io.close().await;
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
        self.ctx.metrics.bad_message(kind);
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
                let max_jump = self.ctx.limits.max_timestamp_jump_ms;
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
                self.ctx.metrics.frames_in.inc();
                self.ctx
                    .metrics
                    .frame_lag(crate::metrics::frame_lag(since_start, timestamp_ms));
                let past_limit = self
                    .recording
                    .as_ref()
                    .map(|r| r.limits)
                    .filter(|l| !l.inbound_fits(timestamp_ms, mulaw.len()));
                if let Some(limits) = past_limit {
                    let e = RecordingError::TooLong {
                        at_ms: timestamp_ms,
                        limit_ms: limits.max_duration_ms,
                    };
                    self.refused("past_recording_limit", &e.to_string());
                    return Flow::Continue(Vec::new());
                }
                let out = self
                    .app
                    .as_mut()
                    .map(|a| a.audio(timestamp_ms, &mulaw))
                    .unwrap_or_default();
                let queued = self
                    .recording
                    .as_ref()
                    .map(|rec| rec.writer.inbound(timestamp_ms, &mulaw));
                if let Some(Err(f)) = queued {
                    self.recording_failed(f);
                }
                self.session.recycle(mulaw);
                Flow::Continue(out)
            }
            Event::Dtmf(digit) => {
                let (call_sid, stream_sid) = self.sids();
                // Digits are PINs and card numbers: the log says a key was pressed, never which.
                tracing::info!(call_sid, stream_sid, "dtmf");
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

    /// The recording stopped (the disk is full, failing or too slow): counted and logged once,
    /// and the socket goes on carrying the call without it.
    fn recording_failed(&mut self, f: Failure) {
        self.recording = None;
        self.ctx.metrics.recording_failure(f.reason);
        let (call_sid, stream_sid) = self.sids();
        tracing::error!(call_sid, stream_sid, reason = f.reason, error = %f, "recording_failed");
        self.recording_failure = Some(f);
    }

    async fn on_start(&mut self, info: StartInfo) -> Flow {
        let ctx = self.ctx.clone();
        tracing::info!(
            call_sid = %info.call_sid,
            stream_sid = %info.stream_sid,
            tracks = ?info.tracks,
            "ws_start"
        );
        if let Some(account) = &ctx.account_sid {
            if &info.account_sid != account {
                return self.refuse_start(
                    &info,
                    CloseReason::AccountSidMismatch,
                    "accountSid is not the configured account",
                );
            }
        }
        if let Some(key) = &ctx.media_key {
            let now_s = u64::try_from(ctx.clock.now_ms() / 1000).unwrap_or(0);
            if let Err(e) = limits::check_media_token(
                key.as_bytes(),
                info.call_sid.as_str(),
                &info.custom_parameters,
                now_s,
            ) {
                return self.refuse_start(&info, CloseReason::MediaTokenRefused, &e.to_string());
            }
        }
        let max_streams = ctx.limits.max_streams_per_call;
        match ctx.call_streams.enter(info.call_sid.as_str(), max_streams) {
            Some(slot) => self.slot = Some(slot),
            None => {
                return self.refuse_start(
                    &info,
                    CloseReason::TooManyStreams,
                    &format!("the call already has {max_streams} streams open"),
                );
            }
        }
        self.started_at = Some(Instant::now());
        let now = ctx.clock.now_ms();
        let begin = StreamBegin {
            call_sid: info.call_sid.to_string(),
            stream_sid: info.stream_sid.clone(),
            account_sid: Some(info.account_sid.clone()),
            from: info.custom_parameters.get("From").cloned(),
            to: info.custom_parameters.get("To").cloned(),
            recording_source: ctx.recording.name(),
            at_ms: now,
            // Several replicas may hold sockets of the call: the count that holds is the
            // database's. One SQLite process's own count above is the whole count.
            max_open: ctx
                .store
                .dialect()
                .shared()
                .then(|| i64::try_from(max_streams).unwrap_or(i64::MAX)),
        };
        // At most one attempt's wait (`database.write_timeout_ms`): without the database the
        // stream is accepted and the call goes on, its start stored once the database is back.
        let idx = match ctx.writes.stream_started(begin).await {
            Written::Stored(StreamStart::Started { idx }) => Some(idx),
            Written::Stored(StreamStart::DuplicateStream) => {
                return self.refuse_start(
                    &info,
                    CloseReason::DuplicateStreamSid,
                    "a stream with this streamSid already exists",
                );
            }
            Written::Stored(StreamStart::CallEnded) => {
                return self.refuse_start(
                    &info,
                    CloseReason::CallAlreadyEnded,
                    "the call has already ended (stream_ended webhook)",
                );
            }
            Written::Stored(StreamStart::TooManyStreams { open }) => {
                return self.refuse_start(
                    &info,
                    CloseReason::TooManyStreams,
                    &format!("the call already has {open} streams open across replicas"),
                );
            }
            Written::Queued => {
                tracing::warn!(call_sid = %info.call_sid, stream_sid = %info.stream_sid, "stream_start_deferred: the database did not take the start; the stream goes on");
                None
            }
            Written::Dropped => {
                tracing::error!(call_sid = %info.call_sid, stream_sid = %info.stream_sid, "stream_start_lost: the retry queue is full; the stream goes on unrecorded");
                self.unstored = true;
                None
            }
        };
        self.call = Some(info.clone());
        if self.unstored {
            self.recording_failed(Failure::new(
                "database",
                "the database did not take the stream's start and the retry queue is full",
            ));
        } else {
            let started = StartedStream {
                call_sid: &info.call_sid,
                stream_sid: &info.stream_sid,
                account_sid: &info.account_sid,
                idx,
            };
            match ctx.recording.stream_started(started).await {
                Ok(Some(recording)) => {
                    ctx.writes
                        .stream_path(info.call_sid.as_str(), &info.stream_sid, &recording.path)
                        .await;
                    self.recording = Some(recording);
                }
                Ok(None) => {}
                Err(f) => self.recording_failed(f),
            }
        }
        let out = match &ctx.app_factory {
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
        self.ctx.metrics.bad_message(kind);
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
                    let queued = self
                        .recording
                        .as_ref()
                        .map(|rec| rec.writer.outbound(&audio));
                    if let Some(Err(f)) = queued {
                        self.recording_failed(f);
                    }
                    self.frames_out += 1;
                    self.ctx.metrics.frames_out.inc();
                    ServerMessage::media(&stream_sid, &audio)
                }
                Outbound::Mark(name) => ServerMessage::mark(&stream_sid, &name),
                Outbound::Clear => {
                    let queued = self
                        .recording
                        .as_ref()
                        .map(|rec| rec.writer.clear_outbound());
                    if let Some(Err(f)) = queued {
                        self.recording_failed(f);
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
        let ctx = &self.ctx;
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
                    Err(f) => {
                        ctx.metrics.recording_failure(f.reason);
                        tracing::error!(call_sid = %info.call_sid, stream_sid = %info.stream_sid, reason = f.reason, error = %f, "recording_failed");
                        self.recording_failure = Some(f);
                        (StreamStatus::Failed, None)
                    }
                }
            }
            None if self.recording_failure.is_some() => (StreamStatus::Failed, None),
            None => (StreamStatus::NotRecorded, None),
        };
        if self.unstored {
            return;
        }
        // The call's errors say why it has no recording (the pipeline's stage repeats it).
        if let Some(f) = &self.recording_failure {
            let message = format!("recording failed: {f}");
            let at = ctx.clock.now_ms();
            ctx.writes
                .call_error(info.call_sid.as_str(), "stream", message, at)
                .await;
        }
        // Never waits on the database past one attempt: an end that does not stick is retried
        // in the background, so the socket closes and the call still finishes later.
        let end = StreamEnd {
            call_sid: info.call_sid.to_string(),
            stream_sid: info.stream_sid.clone(),
            fence: FIRST_FENCE,
            status,
            frames,
            counters: (self.frames_in, self.frames_out, self.bad),
            reason,
            at_ms: ctx.clock.now_ms(),
        };
        let written = ctx.writes.stream_finished(end).await;
        if written == Written::Dropped {
            tracing::error!(call_sid = %info.call_sid, stream_sid = %info.stream_sid, "cannot store stream end");
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
