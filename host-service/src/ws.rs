//! The Media Streams WebSocket: one task per socket, written over a generic `Sink`/`Stream` of
//! frames so tests drive it through channels. It feeds the session state machine, the recorder
//! and the voice app, paces the app's audio, and closes the socket with the right code when the
//! peer misbehaves. One bad socket never touches another.

use crate::config::RecordingSource;
use crate::recording::{Recorder, RecorderLimits, RecordingError};
use crate::session::{Event, Session, StartInfo};
use crate::voice::{CallInfo, Outbound, VoiceApp};
use crate::AppState;
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use media::protocol::ServerMessage;
use std::fs::File;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::time::Instant;

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

/// The recording of one stream while it is open.
struct OpenRecording {
    recorder: Recorder<File>,
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
    metrics.active_streams.fetch_add(1, Ordering::Relaxed);
    let _guard = state.tracker.enter();
    let mut shutdown = state.shutdown.clone();
    let start_deadline =
        Instant::now() + Duration::from_millis(state.config.websocket.start_timeout_ms);
    let max_frame = state.config.websocket.max_frame_bytes;
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

    let (close_code, reason): (Option<u16>, &'static str) = loop {
        let app_wake = conn
            .app
            .as_ref()
            .and_then(|a| a.next_tick())
            .zip(conn.started_at)
            .map(|(d, t0)| t0 + d);
        tokio::select! {
            biased;
            _ = wait_true(&mut shutdown) => break (Some(close::GOING_AWAY), "shutdown"),
            _ = tokio::time::sleep_until(start_deadline), if !conn.session.started() => {
                break (Some(close::POLICY), "start_timeout");
            }
            _ = tokio::time::sleep_until(app_wake.unwrap_or_else(Instant::now)), if app_wake.is_some() => {
                let elapsed = conn.started_at.map(|t| t.elapsed()).unwrap_or_default();
                let out = conn.app.as_mut().map(|a| a.tick(elapsed)).unwrap_or_default();
                if conn.send_all(&mut tx, out).await.is_err() {
                    break (None, "send_failed");
                }
            }
            frame = rx.next() => {
                let text = match frame {
                    None => break (None, "peer_gone"),
                    Some(Err(e)) => {
                        tracing::debug!(error = %e, "websocket transport error");
                        break (None, "transport_error");
                    }
                    Some(Ok(WsIn::Close)) => break (None, "closed_by_peer"),
                    Some(Ok(WsIn::Control)) => continue,
                    Some(Ok(WsIn::Binary(_))) => {
                        conn.refused("binary_frame", "binary frames are not part of the protocol");
                        break (Some(close::UNSUPPORTED_DATA), "binary_frame");
                    }
                    Some(Ok(WsIn::Oversize)) => {
                        conn.refused("frame_too_big", "past the transport limit");
                        break (Some(close::TOO_BIG), "frame_too_big");
                    }
                    Some(Ok(WsIn::Text(t))) if t.len() > max_frame => {
                        conn.refused("frame_too_big", &format!("{} bytes", t.len()));
                        break (Some(close::TOO_BIG), "frame_too_big");
                    }
                    Some(Ok(WsIn::Text(t))) => t,
                };
                let event = conn.session.on_text(&text);
                match conn.on_event(event).await {
                    Flow::Continue(out) => {
                        if conn.send_all(&mut tx, out).await.is_err() {
                            break (None, "send_failed");
                        }
                    }
                    Flow::Stop => break (Some(close::NORMAL), "stopped"),
                    Flow::Fatal => break (Some(close::POLICY), "protocol_error"),
                    Flow::Internal => break (Some(close::INTERNAL), "internal_error"),
                }
            }
        }
    };
    // The recording is complete on disk before the peer learns the socket is closed.
    conn.finish(reason).await;
    if let Some(code) = close_code {
        let _ = tx.send(WsOut::Close(code, reason)).await;
    }
    let _ = tx.close().await;
    metrics.ws_closed(reason);
    metrics.active_streams.fetch_sub(1, Ordering::Relaxed);
}

enum Flow {
    Continue(Vec<Outbound>),
    Stop,
    Fatal,
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
                self.frames_in += 1;
                self.state.metrics.frames_in.fetch_add(1, Ordering::Relaxed);
                if let Some(rec) = self.recording.as_mut() {
                    if let Err(e) = rec.recorder.push_inbound(timestamp_ms, &mulaw) {
                        return self.recording_error(e);
                    }
                }
                let out = self
                    .app
                    .as_mut()
                    .map(|a| a.audio(timestamp_ms, &mulaw))
                    .unwrap_or_default();
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

    fn recording_error(&mut self, e: RecordingError) -> Flow {
        match e {
            RecordingError::TooLong { .. } => {
                self.refused("past_recording_limit", &e.to_string());
                Flow::Continue(Vec::new())
            }
            other => {
                let (call_sid, stream_sid) = self.sids();
                tracing::error!(call_sid, stream_sid, error = %other, "recording write failed");
                self.recording_failed = true;
                Flow::Internal
            }
        }
    }

    async fn on_start(&mut self, info: StartInfo) -> Flow {
        let st = self.state.clone();
        tracing::info!(
            call_sid = %info.call_sid,
            stream_sid = %info.stream_sid,
            tracks = ?info.tracks,
            "ws_start"
        );
        self.started_at = Some(Instant::now());
        let now = st.clock.now_ms();
        let facts = crate::db::CallFacts {
            account_sid: Some(&info.account_sid),
            from: info.custom_parameters.get("From").map(String::as_str),
            to: info.custom_parameters.get("To").map(String::as_str),
            call_status: None,
        };
        let source = st.config.recording.source;
        let idx = st
            .store
            .stream_started(
                info.call_sid.as_str(),
                &info.stream_sid,
                &facts,
                source_name(source),
                now,
            )
            .await;
        let idx = match idx {
            Ok(i) => i,
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
                let limits = RecorderLimits {
                    reorder_window_ms: st.config.recording.reorder_window_ms,
                    max_duration_ms: st.config.recording.max_duration_s * 1000,
                };
                let opened = crate::fsutil::create_private_file(&path)
                    .map_err(RecordingError::from)
                    .and_then(|f| Recorder::new(f, limits));
                match opened {
                    Ok(recorder) => {
                        let path = path.display().to_string();
                        let saved = st
                            .store
                            .stream_recording_path(&info.stream_sid, &path)
                            .await;
                        if let Err(e) = saved {
                            tracing::error!(call_sid = %info.call_sid, stream_sid = %info.stream_sid, error = %e, "cannot store recording path");
                        }
                        self.recording = Some(OpenRecording { recorder, path });
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
                    crate::pipeline::request_twilio_recording(&st, &info);
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
                    if let Some(rec) = self.recording.as_mut() {
                        if let Err(e) = rec.recorder.push_outbound(&audio) {
                            tracing::warn!(stream_sid = %stream_sid, error = %e, "outbound audio not recorded");
                        }
                    }
                    self.frames_out += 1;
                    self.state
                        .metrics
                        .frames_out
                        .fetch_add(1, Ordering::Relaxed);
                    ServerMessage::media(&stream_sid, &audio)
                }
                Outbound::Mark(name) => ServerMessage::mark(&stream_sid, &name),
                Outbound::Clear => {
                    if let Some(rec) = self.recording.as_mut() {
                        rec.recorder.clear_outbound();
                    }
                    ServerMessage::clear(&stream_sid)
                }
            };
            tx.send(WsOut::Text(msg.to_json())).await.map_err(|_| ())?;
        }
        Ok(())
    }

    /// Finalize the recording (on every way out) and store how the stream ended.
    async fn finish(mut self, reason: &'static str) {
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
                let recorder = open.recorder;
                match tokio::task::spawn_blocking(move || recorder.finalize()).await {
                    Ok(Ok((summary, _file))) => {
                        tracing::info!(
                            call_sid = %info.call_sid,
                            stream_sid = %info.stream_sid,
                            path = %path,
                            duration_ms = summary.duration_ms,
                            "recording_saved"
                        );
                        ("saved", Some(summary.frames))
                    }
                    Ok(Err(e)) => {
                        tracing::error!(call_sid = %info.call_sid, stream_sid = %info.stream_sid, error = %e, "recording finalize failed");
                        ("failed", None)
                    }
                    Err(e) => {
                        tracing::error!(call_sid = %info.call_sid, stream_sid = %info.stream_sid, error = %e, "recording finalize panicked");
                        ("failed", None)
                    }
                }
            }
            None if self.recording_failed => ("failed", None),
            None => ("not_recorded", None),
        };
        let now = st.clock.now_ms();
        if let Err(e) = st
            .store
            .stream_finished(
                &info.stream_sid,
                status,
                frames,
                (self.frames_in, self.frames_out, self.bad),
                reason,
                now,
            )
            .await
        {
            tracing::error!(call_sid = %info.call_sid, stream_sid = %info.stream_sid, error = %e, "cannot store stream end");
        }
        tracing::info!(
            call_sid = %info.call_sid,
            stream_sid = %info.stream_sid,
            reason,
            frames_in = self.frames_in,
            frames_out = self.frames_out,
            bad_messages = self.bad,
            "ws_closed"
        );
    }
}

/// Resolve once the flag is true (a closed channel counts: its sender is gone).
pub async fn wait_true(rx: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

pub fn source_name(source: RecordingSource) -> &'static str {
    match source {
        RecordingSource::Stream => "stream",
        RecordingSource::Twilio => "twilio",
    }
}
