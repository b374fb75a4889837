//! The TwiML executor, without I/O: turns a parsed document into the steps Twilio would take
//! (simulated time for `<Say>`/`<Play>`/`<Pause>`/`<Record>`, streams to open, the next URL to
//! request) and spots the `<Record>` loop a legacy backend causes.

use crate::twiml_doc::{Document, Method, RecordSpec, StreamSpec, Verb};
use std::collections::HashMap;

/// Spoken words per minute Twilio's text-to-speech roughly manages; only used for simulated time.
const WORDS_PER_MINUTE: u64 = 150;
/// The beep before a `<Record>`.
pub const BEEP_MS: u64 = 500;

/// Why a URL is requested.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FetchReason {
    /// The call's voice webhook.
    Webhook,
    /// `<Record action>` after the recording ended.
    RecordAction,
    /// `<Record>` without `action`: Twilio requests the current document again.
    RecordNoAction,
    /// `<Connect action>` after the stream ended.
    ConnectAction,
    Redirect,
}

impl FetchReason {
    pub fn describe(self) -> &'static str {
        match self {
            FetchReason::Webhook => "voice webhook",
            FetchReason::RecordAction => "<Record action>",
            FetchReason::RecordNoAction => "<Record> without action: same document again",
            FetchReason::ConnectAction => "<Connect action> after the stream",
            FetchReason::Redirect => "<Redirect>",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Simulated call time passes (`<Say>`, `<Play>`, `<Pause>`, `<Record>`).
    Wait {
        verb: &'static str,
        ms: u64,
        detail: String,
    },
    /// `<Start><Stream>`: opens a stream and continues at once.
    StartStream(StreamSpec),
    /// `<Connect><Stream>`: blocks until the stream ends.
    ConnectStream(StreamSpec),
    /// Request a URL and continue the call with its TwiML; the rest of this document is dropped.
    Fetch {
        url: String,
        method: Method,
        reason: FetchReason,
        /// The `<Record>` that caused it, for loop detection.
        record: Option<RecordSpec>,
    },
    /// Something in the document that needs attention; the call continues.
    Problem {
        code: Option<u32>,
        message: String,
    },
    Hangup,
    Reject(String),
    /// A verb the simulator does not play; treated as the end of the call.
    Unsupported(String),
}

/// How long `<Say>` takes in simulated time.
pub fn say_ms(text: &str) -> u64 {
    let words = text.split_whitespace().count() as u64;
    (words * 60_000 / WORDS_PER_MINUTE).max(500)
}

/// How long `<Record>` blocks when the caller says nothing to it: the beep, then `timeout`
/// seconds of silence, or `maxLength` when silence detection is off (`timeout="0"`).
pub fn record_ms(rec: &RecordSpec) -> u64 {
    let beep = if rec.play_beep { BEEP_MS } else { 0 };
    let secs = if rec.timeout == 0 {
        rec.max_length
    } else {
        rec.timeout.min(rec.max_length.max(1))
    };
    beep + u64::from(secs) * 1000
}

fn loops(verb: &str, n: u32, problems: &mut Vec<Step>) -> u64 {
    if n == 0 {
        problems.push(Step::Problem {
            code: None,
            message: format!("<{verb} loop=\"0\"> repeats until the call ends; simulated once"),
        });
        1
    } else {
        u64::from(n)
    }
}

/// The steps of one document, in order, up to the first verb that moves the call elsewhere.
/// `doc_url` is the URL the document came from (a `<Record>` without `action` requests it again).
pub fn plan(doc: &Document, doc_url: &str) -> Vec<Step> {
    let mut steps = Vec::new();
    for (i, verb) in doc.verbs.iter().enumerate() {
        if verb_steps(verb, doc_url, &mut steps) {
            let rest = doc.verbs.get(i + 1..).unwrap_or_default();
            if !rest.is_empty() {
                steps.push(unreachable(verb, rest));
            }
            break;
        }
    }
    steps
}

/// The steps one verb adds; `true` when it leaves the document.
fn verb_steps(verb: &Verb, doc_url: &str, steps: &mut Vec<Step>) -> bool {
    match verb {
        Verb::Say { text, loops: n } => {
            let times = loops("Say", *n, steps);
            steps.push(Step::Wait {
                verb: "Say",
                ms: say_ms(text) * times,
                detail: format!("{text:?}"),
            });
            false
        }
        Verb::Play { url, loops: n } => {
            let times = loops("Play", *n, steps);
            // The audio is not fetched, so its length is unknown: one second per loop.
            steps.push(Step::Wait {
                verb: "Play",
                ms: 1000 * times,
                detail: url.clone(),
            });
            false
        }
        Verb::Pause { length } => {
            steps.push(Step::Wait {
                verb: "Pause",
                ms: u64::from(*length) * 1000,
                detail: format!("{length} s"),
            });
            false
        }
        Verb::Record(rec) => record_steps(rec, doc_url, steps),
        Verb::Connect {
            action,
            method,
            stream,
            other,
        } => connect_steps(
            action.as_deref(),
            *method,
            stream.as_ref(),
            other.as_deref(),
            steps,
        ),
        Verb::Start { stream, recording } => {
            if let Some(s) = stream {
                steps.push(Step::StartStream(s.clone()));
            }
            if *recording {
                steps.push(Step::Problem {
                    code: None,
                    message: "<Start><Recording> noted (the simulator records nothing)".into(),
                });
            }
            false
        }
        Verb::Stop => false,
        Verb::Redirect { url, method } => {
            steps.push(Step::Fetch {
                url: url.clone(),
                method: *method,
                reason: FetchReason::Redirect,
                record: None,
            });
            true
        }
        Verb::Hangup => {
            steps.push(Step::Hangup);
            true
        }
        Verb::Reject { reason } => {
            steps.push(Step::Reject(reason.clone()));
            true
        }
        Verb::Unsupported { name } => {
            steps.push(Step::Unsupported(name.clone()));
            true
        }
    }
}

/// `<Record>` blocks, then requests its `action` (or the document again, without one).
fn record_steps(rec: &RecordSpec, doc_url: &str, steps: &mut Vec<Step>) -> bool {
    steps.push(Step::Wait {
        verb: "Record",
        ms: record_ms(rec),
        detail: format!(
            "blocks until {} s of silence{}",
            rec.timeout,
            if rec.play_beep { " after a beep" } else { "" }
        ),
    });
    let (url, reason) = match &rec.action {
        Some(a) => (a.clone(), FetchReason::RecordAction),
        None => (doc_url.to_owned(), FetchReason::RecordNoAction),
    };
    steps.push(Step::Fetch {
        url,
        method: rec.method,
        reason,
        record: Some(rec.clone()),
    });
    true
}

/// `<Connect><Stream>` blocks while the stream runs, then requests its `action`, if any.
fn connect_steps(
    action: Option<&str>,
    method: Method,
    stream: Option<&StreamSpec>,
    other: Option<&str>,
    steps: &mut Vec<Step>,
) -> bool {
    match (stream, other) {
        (Some(s), _) => {
            steps.push(Step::ConnectStream(s.clone()));
            match action {
                Some(a) => {
                    steps.push(Step::Fetch {
                        url: a.to_owned(),
                        method,
                        reason: FetchReason::ConnectAction,
                        record: None,
                    });
                    true
                }
                None => false,
            }
        }
        (None, Some(noun)) => {
            steps.push(Step::Unsupported(format!("Connect><{noun}")));
            true
        }
        (None, None) => {
            steps.push(Step::Problem {
                code: None,
                message: "<Connect> with nothing inside does nothing".into(),
            });
            false
        }
    }
}

/// The problem of verbs after one that leaves the document.
fn unreachable(verb: &Verb, rest: &[Verb]) -> Step {
    Step::Problem {
        code: None,
        message: format!(
            "unreachable after <{}>: {}",
            verb.name(),
            rest.iter()
                .map(|v| format!("<{}>", v.name()))
                .collect::<Vec<_>>()
                .join(" ")
        ),
    }
}

/// A repeated request: the same URL fetched again and again because of the same `<Record>`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LoopReport {
    pub url: String,
    pub times: u32,
    pub record: String,
}

/// Counts requests caused by each `<Record>` per URL; the legacy document asks for itself again.
#[derive(Debug, Clone)]
pub struct LoopDetector {
    limit: u32,
    seen: HashMap<(String, String), u32>,
}

impl LoopDetector {
    /// `limit`: how many requests of one URL by the same `<Record>` make a loop (at least 2).
    pub fn new(limit: u32) -> Self {
        LoopDetector {
            limit: limit.max(2),
            seen: HashMap::new(),
        }
    }

    /// Note one request of `url` caused by `record`; a loop once it happened `limit` times.
    pub fn observe(&mut self, url: &str, record: &RecordSpec) -> Option<LoopReport> {
        let fingerprint = record
            .attributes
            .iter()
            .map(|(k, v)| format!("{k}=\"{v}\""))
            .collect::<Vec<_>>()
            .join(" ");
        let n = self
            .seen
            .entry((url.to_owned(), fingerprint.clone()))
            .or_insert(0);
        *n += 1;
        (*n >= self.limit).then(|| LoopReport {
            url: url.to_owned(),
            times: *n,
            record: format!("<Record {fingerprint}/>"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::twiml_doc::parse;

    const URL: &str = "https://voice.example.com/webhook/incoming_call";

    fn seed() -> Document {
        parse(crate::twiml_doc::tests::SEED.as_bytes()).unwrap()
    }

    #[test]
    fn seed_document_blocks_on_record_and_asks_for_itself_again() {
        let steps = plan(&seed(), URL);
        assert_eq!(steps.len(), 3, "{steps:#?}");
        assert_eq!(
            steps[0],
            Step::Wait {
                verb: "Record",
                ms: 3000,
                detail: "blocks until 3 s of silence".into()
            }
        );
        let Step::Fetch {
            url,
            method,
            reason,
            record,
        } = &steps[1]
        else {
            panic!("{:?}", steps[1])
        };
        assert_eq!(url, URL);
        assert_eq!(method, "POST");
        assert_eq!(*reason, FetchReason::RecordNoAction);
        assert!(record.is_some());
        assert_eq!(
            steps[2],
            Step::Problem {
                code: None,
                message: "unreachable after <Record>: <Connect>".into()
            }
        );
    }

    #[test]
    fn seed_loops_on_the_third_request() {
        let steps = plan(&seed(), URL);
        let Step::Fetch {
            url,
            record: Some(rec),
            ..
        } = &steps[1]
        else {
            panic!()
        };
        let mut detector = LoopDetector::new(3);
        assert_eq!(detector.observe(url, rec), None);
        assert_eq!(detector.observe(url, rec), None);
        let report = detector.observe(url, rec).unwrap();
        assert_eq!(report.times, 3);
        assert_eq!(report.url, URL);
        assert_eq!(
            report.record,
            r#"<Record maxLength="600" playBeep="false" recordingTrack="inbound" timeout="3" transcribe="false"/>"#
        );
    }

    #[test]
    fn a_different_record_or_url_is_not_a_loop() {
        let mut detector = LoopDetector::new(2);
        let doc =
            parse(br#"<Response><Record timeout="1"/><Record timeout="2"/></Response>"#).unwrap();
        let (Verb::Record(a), Verb::Record(b)) = (&doc.verbs[0], &doc.verbs[1]) else {
            panic!()
        };
        assert_eq!(detector.observe(URL, a), None);
        assert_eq!(detector.observe(URL, b), None);
        assert_eq!(detector.observe("https://x/other", a), None);
        assert!(detector.observe(URL, a).is_some());
    }

    #[test]
    fn fixed_document_connects_then_requests_the_action() {
        let doc = parse(
            br#"<Response><Say>Hello there caller</Say><Pause length="2"/><Connect action="/webhook/stream_ended"><Stream url="wss://h/ws"/></Connect><Say>never</Say></Response>"#,
        )
        .unwrap();
        let steps = plan(&doc, URL);
        assert_eq!(
            steps[0],
            Step::Wait {
                verb: "Say",
                ms: 1200,
                detail: "\"Hello there caller\"".into()
            }
        );
        assert_eq!(
            steps[1],
            Step::Wait {
                verb: "Pause",
                ms: 2000,
                detail: "2 s".into()
            }
        );
        assert!(matches!(&steps[2], Step::ConnectStream(s) if s.url == "wss://h/ws"));
        assert!(matches!(
            &steps[3],
            Step::Fetch { url, reason: FetchReason::ConnectAction, record: None, .. } if url == "/webhook/stream_ended"
        ));
        assert!(
            matches!(&steps[4], Step::Problem { message, .. } if message == "unreachable after <Connect>: <Say>")
        );
        assert_eq!(steps.len(), 5);
    }

    #[test]
    fn connect_without_action_continues_and_start_does_not_block() {
        let doc = parse(
            br#"<Response><Start><Stream url="wss://h/a"/></Start><Connect><Stream url="wss://h/b"/></Connect><Hangup/></Response>"#,
        )
        .unwrap();
        let steps = plan(&doc, URL);
        assert!(matches!(&steps[0], Step::StartStream(s) if s.url == "wss://h/a"));
        assert!(matches!(&steps[1], Step::ConnectStream(s) if s.url == "wss://h/b"));
        assert_eq!(steps[2], Step::Hangup);
        assert_eq!(steps.len(), 3);
    }

    #[test]
    fn record_timing_follows_twilio_defaults() {
        let doc = parse(br#"<Response><Record/><Record timeout="0" maxLength="20" playBeep="false"/></Response>"#).unwrap();
        let (Verb::Record(a), Verb::Record(b)) = (&doc.verbs[0], &doc.verbs[1]) else {
            panic!()
        };
        assert_eq!(record_ms(a), 5500);
        assert_eq!(record_ms(b), 20_000);
        assert_eq!(say_ms(""), 500);
        assert_eq!(say_ms("one two three four five"), 2000);
    }

    #[test]
    fn record_action_and_loop_zero() {
        let doc = parse(
            br#"<Response><Say loop="0">hi</Say><Record action="/done" method="GET"/></Response>"#,
        )
        .unwrap();
        let steps = plan(&doc, URL);
        assert!(
            matches!(&steps[0], Step::Problem { message, .. } if message.contains("loop=\"0\""))
        );
        assert!(matches!(
            &steps[3],
            Step::Fetch { url, method, reason: FetchReason::RecordAction, .. } if url == "/done" && method == "GET"
        ));
    }
}
