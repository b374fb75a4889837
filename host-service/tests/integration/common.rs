//! Shared pieces of the host service's integration tests: a generated call, a Media Streams
//! client over a real WebSocket, deadline polling, and WAV reading.
#![allow(dead_code)]

use base64::Engine as _;
use futures_util::{SinkExt, StreamExt};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

pub const CALL: &str = "CA0123456789abcdef0123456789abcdef";
pub const STREAM: &str = "MZ0123456789abcdef0123456789abcdef";
pub const ACCOUNT: &str = "AC0123456789abcdef0123456789abcdef";

pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Poll `f` until it returns `Some`, failing the test at the deadline ([`test_support::poll`]).
pub async fn poll<T, F, Fut>(what: &str, deadline: Duration, f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    test_support::poll(deadline, what, f)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// 20 ms of distinct caller audio for frame `k`: a sweep, so a misplaced frame shows.
pub fn frame_audio(k: usize) -> Vec<u8> {
    (0..160)
        .map(|i| {
            let s = (((k * 160 + i) as f64 * 0.07).sin() * 8000.0 + (k as f64 * 37.0)) as i16;
            media::mulaw::encode_sample(s)
        })
        .collect()
}

pub fn connected() -> String {
    r#"{"event":"connected","protocol":"Call","version":"1.0.0"}"#.to_owned()
}

pub fn start(call: &str, stream: &str) -> String {
    format!(
        r#"{{"event":"start","sequenceNumber":"1","streamSid":"{stream}","start":{{"streamSid":"{stream}","accountSid":"{ACCOUNT}","callSid":"{call}","tracks":["inbound"],"customParameters":{{"From":"+15550001111","To":"+15550002222"}},"mediaFormat":{{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1}}}}}}"#
    )
}

pub fn media(stream: &str, seq: usize, ts_ms: u64, audio: &[u8]) -> String {
    let payload = base64::engine::general_purpose::STANDARD.encode(audio);
    format!(
        r#"{{"event":"media","sequenceNumber":"{seq}","streamSid":"{stream}","media":{{"track":"inbound","chunk":"{seq}","timestamp":"{ts_ms}","payload":"{payload}"}}}}"#
    )
}

pub fn dtmf(stream: &str, digit: &str) -> String {
    format!(
        r#"{{"event":"dtmf","sequenceNumber":"9","streamSid":"{stream}","dtmf":{{"track":"inbound_track","digit":"{digit}"}}}}"#
    )
}

pub fn mark(stream: &str, name: &str) -> String {
    format!(
        r#"{{"event":"mark","sequenceNumber":"9","streamSid":"{stream}","mark":{{"name":"{name}"}}}}"#
    )
}

pub fn stop(call: &str, stream: &str) -> String {
    format!(
        r#"{{"event":"stop","sequenceNumber":"99","streamSid":"{stream}","stop":{{"accountSid":"{ACCOUNT}","callSid":"{call}"}}}}"#
    )
}

pub async fn connect(addr: std::net::SocketAddr) -> Ws {
    let (ws, resp) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws/twilio-media"))
        .await
        .expect("websocket handshake");
    assert_eq!(resp.status(), 101);
    ws
}

pub async fn send(ws: &mut Ws, text: String) {
    ws.send(Message::Text(text.into())).await.expect("send");
}

/// Read until the server closes; returns the close code and every text frame before it.
pub async fn read_until_close(ws: &mut Ws) -> (Option<u16>, Vec<String>) {
    let mut texts = Vec::new();
    let fut = async {
        while let Some(msg) = ws.next().await {
            match msg {
                Ok(Message::Text(t)) => texts.push(t.to_string()),
                Ok(Message::Close(frame)) => return frame.map(|f| u16::from(f.code)),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
        None
    };
    let code = tokio::time::timeout(Duration::from_secs(20), fut)
        .await
        .expect("server closed the socket in time");
    (code, texts)
}

/// A generated call: frames 0..n, 20 ms apart, with `skip` missing (a gap of silence).
pub struct GeneratedCall {
    pub frames: Vec<(u64, Vec<u8>)>,
}

impl GeneratedCall {
    pub fn new(n: usize, skip: std::ops::Range<usize>) -> GeneratedCall {
        GeneratedCall {
            frames: (0..n)
                .filter(|k| !skip.contains(k))
                .map(|k| (k as u64 * 20, frame_audio(k)))
                .collect(),
        }
    }

    /// The caller channel the recording must hold, sample by sample.
    pub fn expected_left(&self) -> Vec<i16> {
        let end = self
            .frames
            .iter()
            .map(|(ts, a)| *ts as usize * 8 + a.len())
            .max()
            .unwrap_or(0);
        let mut out = vec![0i16; end];
        for (ts, audio) in &self.frames {
            for (i, b) in audio.iter().enumerate() {
                out[*ts as usize * 8 + i] = media::mulaw::decode_sample(*b);
            }
        }
        out
    }
}

/// A stereo 16-bit WAV as (left, right) samples, checking the header says what we wrote.
pub fn read_stereo_wav(path: &std::path::Path) -> (Vec<i16>, Vec<i16>) {
    let mut reader = hound::WavReader::open(path).expect("readable WAV");
    let spec = reader.spec();
    assert_eq!(spec.channels, 2);
    assert_eq!(spec.sample_rate, 8000);
    assert_eq!(spec.bits_per_sample, 16);
    let samples: Vec<i16> = reader.samples::<i16>().map(|s| s.unwrap()).collect();
    let left = samples.iter().step_by(2).copied().collect();
    let right = samples.iter().skip(1).step_by(2).copied().collect();
    (left, right)
}

pub fn form(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub fn stream_ended_form(call: &str) -> Vec<(String, String)> {
    form(&[
        ("AccountSid", ACCOUNT),
        ("ApiVersion", "2010-04-01"),
        ("CallSid", call),
        ("CallStatus", "in-progress"),
        ("Direction", "inbound"),
        ("From", "+15550001111"),
        ("To", "+15550002222"),
    ])
}
