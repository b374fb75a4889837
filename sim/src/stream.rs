//! The media WebSocket from Twilio's side: a signed handshake, `connected`, `start`, the caller's
//! audio as paced 20 ms `media` frames, optional `dtmf`, and `stop`; meanwhile outbound audio is
//! kept and marks are echoed when the audio before them would have played (`pacing::Playout`).

use crate::pacing::{self, Playout};
use crate::report::StreamReport;
use crate::twiml_doc::StreamSpec;
use crate::urls::Target;
use base64::Engine as _;
use futures_util::{SinkExt, StreamExt};
use media::protocol::{
    self, Connected, DtmfDigit, MarkEvent, MarkName, Media, MediaFormat, MediaPayload,
    ServerMessage, Start, StartMeta, Stop, StopMeta, TwilioMessage,
};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::time::{sleep_until, timeout, Instant as TokioInstant};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

/// What the transport reads at once per stream; larger frames take several reads.
const READ_BUFFER_BYTES: usize = 4096;

/// `<Connect><Stream>` (bidirectional, blocking) or `<Start><Stream>` (inbound only, forked).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamKind {
    Connect,
    Start,
}

impl StreamKind {
    pub fn name(self) -> &'static str {
        match self {
            StreamKind::Connect => "<Connect><Stream>",
            StreamKind::Start => "<Start><Stream>",
        }
    }
}

/// Everything one stream needs; built by the call driver.
#[derive(Debug, Clone)]
pub struct StreamPlan {
    pub kind: StreamKind,
    pub target: Target,
    pub spec: StreamSpec,
    pub auth_token: Option<String>,
    pub account_sid: String,
    pub call_sid: String,
    pub stream_sid: String,
    /// The caller's audio, 8 kHz mu-law.
    pub audio: Arc<Vec<u8>>,
    pub speed: f64,
    /// DTMF digits and the audio time they are pressed at.
    pub dtmf: Vec<(Duration, char)>,
    /// After the audio, how long (audio time) to wait for outbound audio and marks to finish.
    pub linger: Duration,
    pub connect_timeout: Duration,
    pub keep_outbound: bool,
    /// When the call was placed, for `started_after_ms`.
    pub placed_at: Instant,
}

fn text(msg: &TwilioMessage) -> Message {
    Message::Text(msg.to_json().into())
}

/// What the I/O loop tracks between messages.
struct Session {
    plan: StreamPlan,
    report: StreamReport,
    playout: Playout,
    seq: u64,
    started: TokioInstant,
}

impl Session {
    fn next_seq(&mut self) -> String {
        self.seq += 1;
        self.seq.to_string()
    }

    fn audio_now(&self) -> Duration {
        pacing::audio_time(self.started.elapsed(), self.plan.speed)
    }

    fn wall_at(&self, audio: Duration) -> TokioInstant {
        self.started + pacing::wall_time(audio, self.plan.speed)
    }

    fn media(&mut self, index: u64, chunk: &[u8]) -> TwilioMessage {
        TwilioMessage::Media(Media {
            sequence_number: self.next_seq(),
            stream_sid: self.plan.stream_sid.clone(),
            media: MediaPayload {
                track: "inbound".into(),
                chunk: (index + 1).to_string(),
                timestamp: (index * u64::from(media::FRAME_MS)).to_string(),
                payload: base64::engine::general_purpose::STANDARD.encode(chunk),
            },
        })
    }

    fn mark_echo(&mut self, name: String) -> TwilioMessage {
        self.report.marks_echoed.push(name.clone());
        TwilioMessage::Mark(MarkEvent {
            sequence_number: self.next_seq(),
            stream_sid: self.plan.stream_sid.clone(),
            mark: MarkName { name },
        })
    }

    /// A frame from the server; returns marks to echo now (after a `clear`).
    fn on_server_text(&mut self, text: &str) -> Vec<String> {
        let now = self.audio_now();
        match protocol::parse_server(text) {
            Ok(msg) => {
                let sid = match &msg {
                    ServerMessage::Media { stream_sid, .. }
                    | ServerMessage::Mark { stream_sid, .. }
                    | ServerMessage::Clear { stream_sid } => stream_sid,
                };
                if *sid != self.plan.stream_sid {
                    self.report.warnings.push(format!(
                        "31951 message for streamSid {sid:?}, not this stream's"
                    ));
                    return Vec::new();
                }
                if self.plan.kind == StreamKind::Start {
                    self.report.warnings.push(
                        "31951 the server sent to a <Start><Stream>, which is inbound only".into(),
                    );
                    return Vec::new();
                }
                match msg {
                    ServerMessage::Media { media, .. } => {
                        match base64::engine::general_purpose::STANDARD.decode(&media.payload) {
                            Ok(bytes) => {
                                self.report.outbound_messages += 1;
                                self.report.outbound_bytes += bytes.len() as u64;
                                self.playout.media(now, bytes.len());
                                if self.plan.keep_outbound {
                                    self.report.outbound_audio.extend_from_slice(&bytes);
                                }
                            }
                            Err(_) => self
                                .report
                                .warnings
                                .push("31951 outbound media payload is not base64".into()),
                        }
                        Vec::new()
                    }
                    ServerMessage::Mark { mark, .. } => {
                        self.report.marks_received.push(mark.name.clone());
                        self.playout.mark(now, mark.name);
                        Vec::new()
                    }
                    ServerMessage::Clear { .. } => {
                        self.report.clears += 1;
                        self.playout.clear(now)
                    }
                }
            }
            Err(e) => {
                self.report.warnings.push(format!("31951 {e}"));
                Vec::new()
            }
        }
    }
}

/// Open the stream, play the audio and close it. Never fails: what went wrong is in the report.
pub async fn run(plan: StreamPlan) -> StreamReport {
    let report = StreamReport {
        kind: plan.kind.name().into(),
        public_url: plan.target.public.to_string(),
        sent_to: plan.target.fetch.to_string(),
        stream_sid: plan.stream_sid.clone(),
        custom_parameters: plan.spec.parameters.clone(),
        ..StreamReport::default()
    };
    let mut session = Session {
        plan,
        report,
        playout: Playout::default(),
        seq: 0,
        started: TokioInstant::now(),
    };
    if let Err(e) = drive(&mut session).await {
        session.report.error = Some(e);
    }
    session.report
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn handshake(plan: &StreamPlan) -> Result<Ws, String> {
    let public = &plan.target.public;
    if public.scheme() != "wss" {
        return Err(format!(
            "31922 stream URL scheme is {:?}; Twilio only connects to wss://",
            public.scheme()
        ));
    }
    if public.query().is_some() {
        return Err(
            "31920 stream URL has a query string; Twilio fails the handshake (use <Parameter>)"
                .into(),
        );
    }
    if plan.target.fetch.scheme() == "wss" {
        return Err(
            "the simulator connects to wss:// only through --local (plain ws:// to a local proxy)"
                .into(),
        );
    }
    let mut req = plan
        .target
        .fetch
        .as_str()
        .into_client_request()
        .map_err(|e| format!("bad stream URL: {e}"))?;
    let headers = req.headers_mut();
    let host =
        HeaderValue::from_str(&plan.target.host_header()).map_err(|e| format!("bad host: {e}"))?;
    headers.insert("host", host);
    if let Some(token) = &plan.auth_token {
        let sig = crate::sign::signature(token, public.as_str(), &[]);
        let value = HeaderValue::from_str(&sig).map_err(|e| format!("bad signature: {e}"))?;
        headers.insert("x-twilio-signature", value);
    }
    // The server's frames are a few hundred bytes, and the transport zeroes its read buffer's
    // free space on every poll of the socket, once per frame sent: its 128 KiB default made the
    // simulated callers spend more CPU than the server they load on the same machine. Each
    // frame goes out when it is due (no Nagle): held behind an unacknowledged one, it would
    // reach the server late by the peer's delayed acknowledgement, counted as the server's lag.
    let config = WebSocketConfig::default().read_buffer_size(READ_BUFFER_BYTES);
    let connect = tokio_tungstenite::connect_async_with_config(req, Some(config), true);
    match timeout(plan.connect_timeout, connect).await {
        Err(_) => Err(format!(
            "31901 no WebSocket handshake within {:?}",
            plan.connect_timeout
        )),
        Ok(Err(tokio_tungstenite::tungstenite::Error::Http(resp))) => Err(format!(
            "31920 handshake answered {} instead of 101",
            resp.status()
        )),
        Ok(Err(tokio_tungstenite::tungstenite::Error::Io(e))) => {
            Err(format!("31902 cannot connect: {e}"))
        }
        Ok(Err(e)) => Err(format!("31924 handshake failed: {e}")),
        Ok(Ok((ws, _))) => Ok(ws),
    }
}

impl Session {
    /// Twilio's `start` message for this stream.
    fn start_message(&mut self) -> TwilioMessage {
        let tracks = match (self.plan.kind, self.plan.spec.track.as_str()) {
            (StreamKind::Start, "both_tracks") => vec!["inbound".into(), "outbound".into()],
            (StreamKind::Start, "outbound_track") => vec!["outbound".into()],
            _ => vec!["inbound".into()],
        };
        TwilioMessage::Start(Start {
            sequence_number: self.next_seq(),
            stream_sid: self.plan.stream_sid.clone(),
            start: StartMeta {
                stream_sid: self.plan.stream_sid.clone(),
                account_sid: self.plan.account_sid.clone(),
                call_sid: self.plan.call_sid.clone(),
                tracks,
                custom_parameters: self.plan.spec.parameters.iter().cloned().collect(),
                media_format: MediaFormat::default(),
            },
        })
    }

    /// The keys to press, in time order; none on a one-way `<Start><Stream>` (with a warning).
    fn dtmf_schedule(&mut self) -> Vec<(Duration, char)> {
        let mut dtmf = self.plan.dtmf.clone();
        dtmf.sort_by_key(|(t, _)| *t);
        if self.plan.kind == StreamKind::Start && !dtmf.is_empty() {
            self.report
                .warnings
                .push("DTMF is not sent on a <Start><Stream> (unidirectional)".into());
            dtmf.clear();
        }
        dtmf
    }
}

async fn drive(s: &mut Session) -> Result<(), String> {
    let mut ws = handshake(&s.plan).await?;
    s.report.opened = true;
    let send_err = |e: tokio_tungstenite::tungstenite::Error| format!("31921 send failed: {e}");

    ws.send(text(&TwilioMessage::Connected(Connected {
        protocol: "Call".into(),
        version: "1.0.0".into(),
    })))
    .await
    .map_err(send_err)?;
    let start = s.start_message();
    ws.send(text(&start)).await.map_err(send_err)?;
    s.report.started_after_ms = Some(s.plan.placed_at.elapsed().as_secs_f64() * 1000.0);
    s.started = TokioInstant::now();

    let audio = Arc::clone(&s.plan.audio);
    let frames: Vec<&[u8]> = audio.chunks(media::FRAME_BYTES).collect();
    let mut dtmf = s.dtmf_schedule().into_iter().peekable();
    let mut next_frame = 0usize;
    let audio_end = pacing::FRAME * frames.len() as u32;
    let linger_end = audio_end + s.plan.linger;

    loop {
        let now = s.audio_now();
        send_due(&mut ws, s, &frames, &mut next_frame, &mut dtmf, now).await?;
        let audio_done = next_frame >= frames.len() && dtmf.peek().is_none();
        let playout_done = s.playout.pending() == 0 && s.playout.drained_at() <= now;
        if audio_done && (playout_done || now >= linger_end) {
            break;
        }
        // Sleep until the next thing falls due, or a server message arrives.
        let mut wake = linger_end;
        if next_frame < frames.len() {
            wake = wake.min(pacing::frame_due(next_frame as u64, 1.0));
        }
        if let Some((t, _)) = dtmf.peek() {
            wake = wake.min(*t);
        }
        if let Some(t) = s.playout.next_due() {
            wake = wake.min(t);
        }
        if audio_done {
            wake = wake.min(s.playout.drained_at().max(now));
        }
        let deadline = s.wall_at(wake);
        tokio::select! {
            _ = sleep_until(deadline) => {}
            incoming = ws.next() => match incoming {
                Some(Ok(Message::Text(t))) => {
                    for name in s.on_server_text(t.as_str()) {
                        let msg = s.mark_echo(name);
                        ws.send(text(&msg)).await.map_err(send_err)?;
                    }
                }
                Some(Ok(Message::Binary(_))) => s
                    .report
                    .warnings
                    .push("31950 the server sent a binary frame".into()),
                Some(Ok(Message::Close(_))) | None => {
                    s.report.closed_by_server = true;
                    break;
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(format!("31921 stream failed: {e}")),
            }
        }
    }
    s.report.audio_ms = s.report.frames_sent * u64::from(media::FRAME_MS);
    if s.report.closed_by_server {
        return Ok(());
    }
    stop(&mut ws, s).await
}

/// Send everything due by `now`, strictly in time order (a late wake-up must not put a DTMF or
/// an echoed mark ahead of earlier audio).
async fn send_due(
    ws: &mut Ws,
    s: &mut Session,
    frames: &[&[u8]],
    next_frame: &mut usize,
    dtmf: &mut std::iter::Peekable<std::vec::IntoIter<(Duration, char)>>,
    now: Duration,
) -> Result<(), String> {
    let send_err = |e: tokio_tungstenite::tungstenite::Error| format!("31921 send failed: {e}");
    loop {
        let frame_at =
            (*next_frame < frames.len()).then(|| pacing::frame_due(*next_frame as u64, 1.0));
        let dtmf_at = dtmf.peek().map(|(t, _)| *t);
        let mark_at = s.playout.next_due();
        let earliest = [frame_at, dtmf_at, mark_at].into_iter().flatten().min();
        match earliest {
            Some(t) if t <= now => {}
            _ => break,
        }
        if frame_at == earliest {
            let msg = s.media(*next_frame as u64, frames[*next_frame]);
            ws.send(text(&msg)).await.map_err(send_err)?;
            s.report.frames_sent += 1;
            s.report.bytes_sent += frames[*next_frame].len() as u64;
            *next_frame += 1;
        } else if dtmf_at == earliest {
            if let Some((_, digit)) = dtmf.next() {
                let msg = TwilioMessage::Dtmf(protocol::Dtmf {
                    sequence_number: s.next_seq(),
                    stream_sid: s.plan.stream_sid.clone(),
                    dtmf: DtmfDigit {
                        track: "inbound_track".into(),
                        digit: digit.to_string(),
                    },
                });
                ws.send(text(&msg)).await.map_err(send_err)?;
                s.report.dtmf_sent.push(digit.to_string());
            }
        } else {
            let Some(t) = mark_at else { break };
            for name in s.playout.due(t) {
                let msg = s.mark_echo(name);
                ws.send(text(&msg)).await.map_err(send_err)?;
            }
        }
    }
    Ok(())
}

/// Twilio's `stop` message and the close, then what the server still sends until it closes.
async fn stop(ws: &mut Ws, s: &mut Session) -> Result<(), String> {
    let send_err = |e: tokio_tungstenite::tungstenite::Error| format!("31921 send failed: {e}");
    let stop = TwilioMessage::Stop(Stop {
        sequence_number: s.next_seq(),
        stream_sid: s.plan.stream_sid.clone(),
        stop: StopMeta {
            account_sid: s.plan.account_sid.clone(),
            call_sid: s.plan.call_sid.clone(),
        },
    });
    ws.send(text(&stop)).await.map_err(send_err)?;
    let _ = ws.close(None).await;
    // Drain until the server acknowledges the close, bounded so a silent server cannot hang us.
    let drain = async {
        while let Some(Ok(msg)) = ws.next().await {
            if let Message::Text(t) = msg {
                s.on_server_text(t.as_str());
            }
        }
    };
    let _ = timeout(Duration::from_secs(2), drain).await;
    Ok(())
}
