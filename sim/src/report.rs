//! What a simulated call did, for people (`render`) and machines (`--json`), and the exit code
//! that sums it up.

use crate::exec::{FetchReason, LoopReport};
use crate::twiml_doc::Method;
use serde::Serialize;

/// How a call ended, from best to worst; each has its own exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// A media stream opened and carried the caller's audio.
    StreamRan,
    /// The call ended without ever opening a stream.
    NoStream,
    /// The same URL was requested again and again by the same `<Record>`: the legacy bug.
    Loop,
    /// A webhook answered with an HTTP error or TwiML Twilio would not run.
    Refused,
    /// The simulator could not do its part (unreachable server, bad input, protocol error).
    Error,
}

impl Outcome {
    pub fn exit_code(self) -> i32 {
        match self {
            Outcome::StreamRan => 0,
            Outcome::Error => 1,
            Outcome::Loop => 2,
            Outcome::Refused => 3,
            Outcome::NoStream => 4,
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Outcome::StreamRan => "the media stream ran",
            Outcome::NoStream => "the call ended without a media stream",
            Outcome::Loop => "the call looped on <Record>; the media stream never started",
            Outcome::Refused => "a webhook answer was refused",
            Outcome::Error => "the simulation failed",
        }
    }
}

/// One line of the timeline. `t_ms` is simulated call time (TwiML verbs take their nominal time,
/// streams their audio time); `wall_ms` is real time since the call was placed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    pub t_ms: u64,
    pub wall_ms: u64,
    pub what: String,
}

/// One webhook request and its answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Fetch {
    pub reason: FetchReason,
    pub method: Method,
    /// The URL Twilio would request (and signed).
    pub public_url: String,
    /// Where it was sent (differs with `--local`).
    pub sent_to: String,
    pub signed: bool,
    pub status: Option<u16>,
    pub content_type: Option<String>,
    /// The `x-twiml-guard` verdict header, when a twiml-guard filter answered.
    pub guard: Option<String>,
    pub latency_ms: f64,
    pub body: String,
    /// The verbs in the answer, when it parsed.
    pub verbs: Vec<String>,
    pub error: Option<String>,
}

/// A problem found in the call: Twilio's error code where it has one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub code: Option<u32>,
    pub message: String,
}

/// One media stream from the simulator's side.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct StreamReport {
    pub kind: String,
    pub public_url: String,
    pub sent_to: String,
    pub stream_sid: String,
    pub custom_parameters: Vec<(String, String)>,
    pub opened: bool,
    /// Wall time from placing the call to sending `start`.
    pub started_after_ms: Option<f64>,
    pub frames_sent: u64,
    pub bytes_sent: u64,
    pub audio_ms: u64,
    pub dtmf_sent: Vec<String>,
    pub marks_received: Vec<String>,
    pub marks_echoed: Vec<String>,
    pub clears: u64,
    pub outbound_messages: u64,
    pub outbound_bytes: u64,
    pub closed_by_server: bool,
    pub warnings: Vec<String>,
    pub error: Option<String>,
    #[serde(skip)]
    pub outbound_audio: Vec<u8>,
}

impl StreamReport {
    /// The stream counts as having run when it opened and carried audio.
    pub fn ran(&self) -> bool {
        self.opened && self.frames_sent > 0
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub call_sid: String,
    pub account_sid: String,
    pub from: String,
    pub to: String,
    pub outcome: Outcome,
    pub exit_code: i32,
    pub sim_duration_ms: u64,
    pub wall_ms: f64,
    pub timeline: Vec<Event>,
    pub fetches: Vec<Fetch>,
    pub problems: Vec<Problem>,
    pub streams: Vec<StreamReport>,
    #[serde(rename = "loop")]
    pub loop_report: Option<LoopReport>,
}

impl Report {
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// The human report: what happened, in order, then the numbers.
    pub fn render(&self) -> String {
        use std::fmt::Write as _;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "call {} from {} to {}: {}",
            self.call_sid,
            self.from,
            self.to,
            self.outcome.describe()
        );
        let _ = writeln!(s, "\ntimeline (call time, wall time):");
        for e in &self.timeline {
            let _ = writeln!(
                s,
                "  {:>8} {:>8}  {}",
                fmt_ms(e.t_ms as f64),
                fmt_ms(e.wall_ms as f64),
                e.what
            );
        }
        for (i, f) in self.fetches.iter().enumerate() {
            render_fetch(&mut s, i + 1, f);
        }
        for st in &self.streams {
            render_stream(&mut s, st);
        }
        if let Some(l) = &self.loop_report {
            let _ = writeln!(
                s,
                "\nLOOP: {} requested {} times by {}",
                l.url, l.times, l.record
            );
        }
        if !self.problems.is_empty() {
            let _ = writeln!(s, "\nproblems:");
            for p in &self.problems {
                match p.code {
                    Some(c) => {
                        let _ = writeln!(s, "  - [{c}] {}", p.message);
                    }
                    None => {
                        let _ = writeln!(s, "  - {}", p.message);
                    }
                }
            }
        }
        let _ = writeln!(
            s,
            "\nresult: {} (exit {}), {} of call time in {}",
            self.outcome.describe(),
            self.exit_code,
            fmt_ms(self.sim_duration_ms as f64),
            fmt_ms(self.wall_ms)
        );
        s
    }
}

/// One request and its answer, for `render`.
fn render_fetch(s: &mut String, n: usize, f: &Fetch) {
    use std::fmt::Write as _;
    let _ = writeln!(
        s,
        "\nrequest {} ({}): {} {}",
        n,
        f.reason.describe(),
        f.method,
        f.public_url
    );
    if f.sent_to != f.public_url {
        let _ = writeln!(s, "  sent to {}", f.sent_to);
    }
    let status = f
        .status
        .map_or_else(|| "no answer".to_owned(), |c| c.to_string());
    let _ = writeln!(
        s,
        "  signed: {}  status: {}  latency: {:.1} ms  content-type: {}{}",
        if f.signed { "yes" } else { "no" },
        status,
        f.latency_ms,
        f.content_type.as_deref().unwrap_or("-"),
        f.guard
            .as_deref()
            .map(|g| format!("  x-twiml-guard: {g}"))
            .unwrap_or_default()
    );
    if let Some(e) = &f.error {
        let _ = writeln!(s, "  error: {e}");
    }
    if !f.body.is_empty() {
        let _ = writeln!(s, "  answer:");
        for line in f.body.trim().lines() {
            let _ = writeln!(s, "    | {line}");
        }
    }
}

/// One stream, for `render`.
fn render_stream(s: &mut String, st: &StreamReport) {
    use std::fmt::Write as _;
    let _ = writeln!(
        s,
        "\nstream ({}) {} -> {}",
        st.kind, st.public_url, st.sent_to
    );
    if st.opened {
        let _ = writeln!(
            s,
            "  streamSid {}  started {} after the call was placed",
            st.stream_sid,
            st.started_after_ms.map_or("-".into(), fmt_ms)
        );
        let params: Vec<String> = st
            .custom_parameters
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let _ = writeln!(s, "  customParameters: {}", params.join(", "));
        let _ = writeln!(
            s,
            "  sent: {} media frames ({} bytes, {} of audio), dtmf [{}]",
            st.frames_sent,
            st.bytes_sent,
            fmt_ms(st.audio_ms as f64),
            st.dtmf_sent.join(" ")
        );
        let _ = writeln!(
            s,
            "  received: {} outbound media messages ({} bytes), {} marks [{}], {} clears",
            st.outbound_messages,
            st.outbound_bytes,
            st.marks_received.len(),
            st.marks_received.join(" "),
            st.clears
        );
        let _ = writeln!(
            s,
            "  marks echoed: [{}]{}",
            st.marks_echoed.join(" "),
            if st.closed_by_server {
                "; the server closed the stream"
            } else {
                ""
            }
        );
    } else {
        let _ = writeln!(s, "  never opened");
    }
    for w in &st.warnings {
        let _ = writeln!(s, "  warning: {w}");
    }
    if let Some(e) = &st.error {
        let _ = writeln!(s, "  error: {e}");
    }
}

/// Milliseconds as `850 ms` or `12.34 s`.
pub fn fmt_ms(ms: f64) -> String {
    if ms < 1000.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{:.2} s", ms / 1000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> Report {
        Report {
            call_sid: "CA0123456789abcdef0123456789abcdef".into(),
            account_sid: "AC00000000000000000000000000000000".into(),
            from: "+15005550006".into(),
            to: "+15005550001".into(),
            outcome: Outcome::Loop,
            exit_code: Outcome::Loop.exit_code(),
            sim_duration_ms: 9000,
            wall_ms: 12.5,
            timeline: vec![Event {
                t_ms: 0,
                wall_ms: 0,
                what: "call placed".into(),
            }],
            fetches: vec![],
            problems: vec![Problem {
                code: None,
                message: "unreachable after <Record>: <Connect>".into(),
            }],
            streams: vec![],
            loop_report: Some(LoopReport {
                url: "https://a/b".into(),
                times: 3,
                record: "<Record/>".into(),
            }),
        }
    }

    #[test]
    fn exit_codes_are_distinct() {
        let all = [
            Outcome::StreamRan,
            Outcome::NoStream,
            Outcome::Loop,
            Outcome::Refused,
            Outcome::Error,
        ];
        let mut codes: Vec<i32> = all.iter().map(|o| o.exit_code()).collect();
        assert_eq!(codes, vec![0, 4, 2, 3, 1]);
        codes.sort();
        codes.dedup();
        assert_eq!(codes.len(), 5);
    }

    #[test]
    fn json_has_the_fields_machines_read() {
        let v: serde_json::Value = serde_json::from_str(&report().to_json()).unwrap();
        assert_eq!(v["outcome"], "loop");
        assert_eq!(v["exit_code"], 2);
        assert_eq!(v["loop"]["times"], 3);
        assert_eq!(v["loop"]["url"], "https://a/b");
        assert_eq!(v["timeline"][0]["what"], "call placed");
        assert_eq!(v["problems"][0]["code"], serde_json::Value::Null);
        assert_eq!(v["streams"], serde_json::json!([]));
        assert_eq!(v["call_sid"], "CA0123456789abcdef0123456789abcdef");
    }

    #[test]
    fn text_report_names_the_loop() {
        let text = report().render();
        assert!(text.contains("LOOP: https://a/b requested 3 times by <Record/>"));
        assert!(text.contains("result: the call looped on <Record>; the media stream never started (exit 2), 9.00 s of call time in 12 ms"));
    }

    #[test]
    fn stream_ran_needs_frames() {
        let mut s = StreamReport {
            opened: true,
            ..StreamReport::default()
        };
        assert!(!s.ran());
        s.frames_sent = 1;
        assert!(s.ran());
        assert_eq!(fmt_ms(999.4), "999 ms");
        assert_eq!(fmt_ms(1500.0), "1.50 s");
    }
}
