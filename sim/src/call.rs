//! One simulated call: the I/O driver around the pure executor. Requests the webhook, runs each
//! TwiML answer's steps (simulated time, streams, the next request), and writes the report.

use crate::exec::{self, FetchReason, LoopDetector, Step};
use crate::report::{Event, Fetch, Outcome, Problem, Report, StreamReport};
use crate::stream::{self, StreamKind, StreamPlan};
use crate::twiml_doc::RecordSpec;
use crate::twiml_doc::{self, Document, Method, StreamSpec};
use crate::urls::{Target, UrlMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Twilio's default webhook timeout.
pub const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(15);

/// Who placed the call, as Twilio reports it in `Direction`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
#[value(rename_all = "kebab-case")]
pub enum Direction {
    /// Someone called the Twilio number.
    Inbound,
    /// The call was placed through the REST API.
    OutboundApi,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::OutboundApi => "outbound-api",
        }
    }
}

/// `CallStatus` in the requests Twilio makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CallStatus {
    /// The voice webhook: nobody has answered yet.
    Ringing,
    /// Every request after the first document was run.
    InProgress,
}

impl CallStatus {
    fn as_str(self) -> &'static str {
        match self {
            CallStatus::Ringing => "ringing",
            CallStatus::InProgress => "in-progress",
        }
    }
}

/// How to place a call; `twilio-sim call` flags map onto it one to one.
#[derive(Debug, Clone)]
pub struct CallConfig {
    /// The voice webhook as Twilio would request it.
    pub url: String,
    pub map: UrlMap,
    pub auth_token: Option<String>,
    pub account_sid: String,
    pub from: String,
    pub to: String,
    pub direction: Direction,
    /// Method for the voice webhook.
    pub method: Method,
    /// The caller's audio, 8 kHz mu-law.
    pub audio: Arc<Vec<u8>>,
    pub speed: f64,
    pub dtmf: Vec<(Duration, char)>,
    pub linger: Duration,
    pub loop_limit: u32,
    /// Requests per call before the simulator gives up (a `<Redirect>` loop, for instance).
    pub max_requests: u32,
    pub webhook_timeout: Duration,
    pub connect_timeout: Duration,
    pub keep_outbound: bool,
}

impl CallConfig {
    /// A call to `url` with Twilio's defaults and one second of silence as the caller.
    pub fn new(url: impl Into<String>) -> Self {
        CallConfig {
            url: url.into(),
            map: UrlMap::direct(),
            auth_token: None,
            account_sid: format!("AC{}", "0".repeat(32)),
            from: "+15005550006".into(),
            to: "+15005550001".into(),
            direction: Direction::Inbound,
            method: Method::Post,
            audio: Arc::new(vec![media::mulaw::SILENCE; 8000]),
            speed: 1.0,
            dtmf: Vec::new(),
            linger: Duration::from_secs(2),
            loop_limit: 3,
            max_requests: 20,
            webhook_timeout: WEBHOOK_TIMEOUT,
            connect_timeout: Duration::from_secs(10),
            keep_outbound: false,
        }
    }
}

/// A Twilio-style SID: two letters and 32 lowercase hex digits.
pub fn new_sid(prefix: &str) -> String {
    format!("{prefix}{:032x}", rand::random::<u128>())
}

struct Call<'a> {
    cfg: &'a CallConfig,
    client: &'a reqwest::Client,
    call_sid: String,
    placed: Instant,
    t_ms: u64,
    timeline: Vec<Event>,
    fetches: Vec<Fetch>,
    problems: Vec<Problem>,
    streams: Vec<StreamReport>,
    outcome: Option<Outcome>,
    loop_report: Option<exec::LoopReport>,
}

/// A request to make: where, how, why, and the parameters beyond the standard ones.
struct Pending {
    target: Target,
    method: Method,
    reason: FetchReason,
    extra: Vec<(String, String)>,
}

impl Call<'_> {
    fn event(&mut self, what: impl Into<String>) {
        self.timeline.push(Event {
            t_ms: self.t_ms,
            wall_ms: self.placed.elapsed().as_millis() as u64,
            what: what.into(),
        });
    }

    /// Note a problem once, however often the same document repeats it.
    fn problem(&mut self, code: Option<u32>, message: impl Into<String>) {
        let p = Problem {
            code,
            message: message.into(),
        };
        if !self.problems.contains(&p) {
            self.problems.push(p);
        }
    }

    fn standard_params(&self, status: CallStatus) -> Vec<(String, String)> {
        let c = self.cfg;
        [
            ("AccountSid", c.account_sid.as_str()),
            ("ApiVersion", "2010-04-01"),
            ("CallSid", self.call_sid.as_str()),
            ("CallStatus", status.as_str()),
            ("Called", c.to.as_str()),
            ("Caller", c.from.as_str()),
            ("Direction", c.direction.as_str()),
            ("From", c.from.as_str()),
            ("To", c.to.as_str()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }

    /// Request one URL as Twilio would; the body when the answer is a 2xx.
    async fn fetch(&mut self, p: &Pending, status: CallStatus) -> Option<String> {
        let (req, public, fetch_url) = self.request(p, status);
        let started = Instant::now();
        let result = send(req).await;
        let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
        let mut record = Fetch {
            reason: p.reason,
            method: p.method,
            public_url: public.to_string(),
            sent_to: fetch_url.to_string(),
            signed: self.cfg.auth_token.is_some(),
            status: None,
            content_type: None,
            guard: None,
            latency_ms,
            body: String::new(),
            verbs: Vec::new(),
            error: None,
        };
        let answer = match result {
            Err(e) => {
                self.request_failed(p, &public, &e, &mut record);
                None
            }
            Ok(answer) => self.answered(p, &public, answer, latency_ms, &mut record),
        };
        self.fetches.push(record);
        answer
    }

    /// The request, signed as Twilio signs it; the URL Twilio would request and where it goes.
    fn request(
        &self,
        p: &Pending,
        status: CallStatus,
    ) -> (reqwest::RequestBuilder, url::Url, url::Url) {
        let mut params = self.standard_params(status);
        params.extend(p.extra.iter().cloned());
        let (mut public, mut fetch_url) = (p.target.public.clone(), p.target.fetch.clone());
        let get = p.method == Method::Get;
        if get {
            for u in [&mut public, &mut fetch_url] {
                let mut q = u.query_pairs_mut();
                for (k, v) in &params {
                    q.append_pair(k, v);
                }
            }
        }
        let signed_params: &[(String, String)] = if get { &[] } else { &params };
        let mut req = if get {
            self.client.get(fetch_url.clone())
        } else {
            self.client.post(fetch_url.clone()).form(&params)
        }
        .timeout(self.cfg.webhook_timeout)
        .header("user-agent", "TwilioProxy/1.1")
        .header("x-forwarded-proto", p.target.public.scheme());
        if p.target.is_mapped() {
            req = req.header("host", p.target.host_header());
        }
        if let Some(token) = &self.cfg.auth_token {
            req = req.header(
                "x-twilio-signature",
                crate::sign::signature(token, public.as_str(), signed_params),
            );
        }
        (req, public, fetch_url)
    }

    fn request_failed(
        &mut self,
        p: &Pending,
        public: &url::Url,
        e: &reqwest::Error,
        record: &mut Fetch,
    ) {
        let msg = if e.is_timeout() {
            format!("no answer within {:?}", self.cfg.webhook_timeout)
        } else {
            format!("request failed: {e}")
        };
        record.error = Some(msg.clone());
        self.event(format!("{} {} -> {msg}", p.method, public));
        self.problem(
            Some(11200),
            format!("HTTP retrieval failure for {public}: {msg}"),
        );
        self.outcome.get_or_insert(Outcome::Error);
    }

    /// Note an answer; its body when Twilio would run it.
    fn answered(
        &mut self,
        p: &Pending,
        public: &url::Url,
        answer: Answer,
        latency_ms: f64,
        record: &mut Fetch,
    ) -> Option<String> {
        let Answer {
            status,
            content_type,
            guard,
            body,
        } = answer;
        record.status = Some(status.as_u16());
        record.content_type = content_type.clone();
        record.guard = guard;
        record.body = body;
        self.event(format!(
            "{} {} ({}) -> {} in {:.1} ms",
            p.method,
            public,
            p.reason.describe(),
            status.as_u16(),
            latency_ms
        ));
        if !status.is_success() {
            self.problem(
                Some(11200),
                format!("{public} answered HTTP {}", status.as_u16()),
            );
            self.outcome.get_or_insert(Outcome::Refused);
            return None;
        }
        let xmlish = content_type
            .as_deref()
            .is_some_and(|c| c.contains("xml") || c.contains("html"));
        if !xmlish {
            self.problem(
                Some(12300),
                format!(
                    "{public} answered Content-Type {:?}; Twilio expects text/xml",
                    content_type.as_deref().unwrap_or("")
                ),
            );
        }
        Some(record.body.clone())
    }

    fn resolve(&mut self, base: &Target, raw: &str) -> Option<Target> {
        match self.cfg.map.resolve(&base.public, raw) {
            Ok(t) => Some(t),
            Err(e) => {
                self.problem(Some(11100), format!("invalid URL in TwiML: {e}"));
                None
            }
        }
    }

    fn stream_plan(&self, kind: StreamKind, target: Target, spec: StreamSpec) -> StreamPlan {
        StreamPlan {
            kind,
            target,
            spec,
            auth_token: self.cfg.auth_token.clone(),
            account_sid: self.cfg.account_sid.clone(),
            call_sid: self.call_sid.clone(),
            stream_sid: new_sid("MZ"),
            audio: Arc::clone(&self.cfg.audio),
            speed: self.cfg.speed,
            dtmf: self.cfg.dtmf.clone(),
            linger: self.cfg.linger,
            connect_timeout: self.cfg.connect_timeout,
            keep_outbound: self.cfg.keep_outbound,
            placed_at: self.placed,
        }
    }

    fn finish_stream(&mut self, report: StreamReport) {
        if let Some(e) = &report.error {
            let code = e.get(..5).and_then(|c| c.parse().ok());
            self.problem(code, format!("{}: {e}", report.kind));
        }
        for w in &report.warnings {
            self.problem(
                w.get(..5).and_then(|c| c.parse().ok()),
                format!("{}: {w}", report.kind),
            );
        }
        self.event(format!(
            "{} {}: {} frames sent, {} outbound messages, marks echoed [{}]{}",
            report.kind,
            if report.ran() { "ended" } else { "failed" },
            report.frames_sent,
            report.outbound_messages,
            report.marks_echoed.join(" "),
            if report.closed_by_server {
                ", closed by the server"
            } else {
                ""
            }
        ));
        self.streams.push(report);
    }

    async fn run(&mut self) {
        let Some(mut pending) = self.first_request() else {
            return;
        };
        let mut detector = LoopDetector::new(self.cfg.loop_limit);
        let mut forked = Vec::new();
        let mut status = CallStatus::Ringing;
        loop {
            if self.fetches.len() as u32 >= self.cfg.max_requests {
                self.problem(
                    None,
                    format!(
                        "more than {} requests in one call; stopped",
                        self.cfg.max_requests
                    ),
                );
                self.outcome.get_or_insert(Outcome::Loop);
                break;
            }
            let Some(body) = self.fetch(&pending, status).await else {
                break;
            };
            status = CallStatus::InProgress;
            let Some(doc) = self.parse_answer(&pending, &body) else {
                break;
            };
            let steps = self.note_problems(&doc, &pending);
            match self
                .play(steps, &pending.target, &mut detector, &mut forked)
                .await
            {
                Flow::Fetch(next) => pending = *next,
                Flow::End => break,
                Flow::Continue => {
                    self.event("end of TwiML: Twilio hangs up");
                    break;
                }
            }
        }
        self.join_forked(forked).await;
    }

    /// The voice webhook, or `None` (and the call's outcome) when its URL is unusable.
    fn first_request(&mut self) -> Option<Pending> {
        let first = match self.cfg.map.absolute(&self.cfg.url) {
            Ok(t) => t,
            Err(e) => {
                self.problem(None, format!("webhook URL: {e}"));
                self.outcome = Some(Outcome::Error);
                return None;
            }
        };
        self.event(format!(
            "call placed: {} {} -> {}",
            self.cfg.direction.as_str(),
            self.cfg.from,
            self.cfg.to
        ));
        Some(Pending {
            target: first,
            method: self.cfg.method,
            reason: FetchReason::Webhook,
            extra: Vec::new(),
        })
    }

    /// The answer as TwiML; `None` (and the call's outcome) when Twilio could not run it.
    fn parse_answer(&mut self, req: &Pending, body: &str) -> Option<Document> {
        let doc = match twiml_doc::parse(body.as_bytes()) {
            Ok(d) => d,
            Err(e) => {
                self.problem(
                    Some(12100),
                    format!("document parse failure for {}: {e}", req.target.public),
                );
                self.event("Twilio cannot run this answer: \"an application error has occurred\"");
                self.outcome.get_or_insert(Outcome::Refused);
                return None;
            }
        };
        if let Some(last) = self.fetches.last_mut() {
            last.verbs = doc.verbs.iter().map(|v| v.name().to_owned()).collect();
        }
        Some(doc)
    }

    /// The document's steps, with the problems it has noted up front: they describe the
    /// document, not a moment of the call, so one after the verb that leaves the document
    /// (unreachable verbs) is not lost.
    fn note_problems(&mut self, doc: &Document, req: &Pending) -> Vec<Step> {
        let (notes, steps): (Vec<Step>, Vec<Step>) = exec::plan(doc, req.target.public.as_str())
            .into_iter()
            .partition(|s| matches!(s, Step::Problem { .. }));
        for note in notes {
            if let Step::Problem { code, message } = note {
                self.problem(code, message);
            }
        }
        steps
    }

    /// Run a document's steps until one leaves it.
    async fn play(
        &mut self,
        steps: Vec<Step>,
        base: &Target,
        detector: &mut LoopDetector,
        forked: &mut Vec<Forked>,
    ) -> Flow {
        for step in steps {
            match self.play_step(step, base, detector, forked).await {
                Flow::Continue => {}
                leave => return leave,
            }
        }
        Flow::Continue
    }

    async fn play_step(
        &mut self,
        step: Step,
        base: &Target,
        detector: &mut LoopDetector,
        forked: &mut Vec<Forked>,
    ) -> Flow {
        match step {
            Step::Wait { verb, ms, detail } => {
                self.event(format!(
                    "<{verb}> {detail}: {}",
                    crate::report::fmt_ms(ms as f64)
                ));
                self.t_ms += ms;
            }
            Step::StartStream(spec) => {
                if let Some(target) = self.resolve(base, &spec.url) {
                    self.event(format!("<Start><Stream> {} (forked)", target.public));
                    let plan = self.stream_plan(StreamKind::Start, target, spec);
                    forked.push(tokio::spawn(stream::run(plan)));
                }
            }
            Step::ConnectStream(spec) => {
                if let Some(target) = self.resolve(base, &spec.url) {
                    self.event(format!("<Connect><Stream> {}", target.public));
                    let plan = self.stream_plan(StreamKind::Connect, target, spec);
                    let report = stream::run(plan).await;
                    self.t_ms += report.audio_ms;
                    self.finish_stream(report);
                }
            }
            Step::Fetch {
                url,
                method,
                reason,
                record,
            } => return self.next_request(base, &url, method, reason, record, detector),
            Step::Problem { code, message } => self.problem(code, message),
            Step::Hangup => {
                self.event("<Hangup>: call ended");
                return Flow::End;
            }
            Step::Reject(reason) => {
                self.event(format!("<Reject reason=\"{reason}\">: call rejected"));
                return Flow::End;
            }
            Step::Unsupported(name) => {
                self.problem(
                    None,
                    format!("<{name}> is not simulated; the call ends there"),
                );
                self.event(format!("<{name}>: not simulated, call ended"));
                return Flow::End;
            }
        }
        Flow::Continue
    }

    /// The request a step leads to, unless its URL is unusable or it closes a `<Record>` loop.
    fn next_request(
        &mut self,
        base: &Target,
        url: &str,
        method: Method,
        reason: FetchReason,
        record: Option<RecordSpec>,
        detector: &mut LoopDetector,
    ) -> Flow {
        let Some(target) = self.resolve(base, url) else {
            return Flow::End;
        };
        if let Some(l) = record
            .as_ref()
            .and_then(|rec| detector.observe(target.public.as_str(), rec))
        {
            self.event(format!(
                "loop: {} requested {} times by the same <Record>",
                l.url, l.times
            ));
            self.problem(
                None,
                format!(
                    "<Record> loop: {} is requested again and again and the stream never starts",
                    l.url
                ),
            );
            self.loop_report = Some(l);
            self.outcome = Some(Outcome::Loop);
            return Flow::End;
        }
        let extra = match reason {
            FetchReason::RecordAction => self.recording_params(),
            _ => Vec::new(),
        };
        Flow::Fetch(Box::new(Pending {
            target,
            method,
            reason,
            extra,
        }))
    }

    /// What Twilio adds to a `<Record action>` request.
    fn recording_params(&self) -> Vec<(String, String)> {
        let rec_sid = new_sid("RE");
        vec![
            ("RecordingSid".to_owned(), rec_sid.clone()),
            (
                "RecordingUrl".to_owned(),
                format!(
                    "https://api.twilio.com/2010-04-01/Accounts/{}/Recordings/{rec_sid}",
                    self.cfg.account_sid
                ),
            ),
            ("RecordingDuration".to_owned(), "0".to_owned()),
        ]
    }

    /// Forked streams end with the call; their reports join the call's.
    async fn join_forked(&mut self, forked: Vec<Forked>) {
        for task in forked {
            match task.await {
                Ok(report) => self.finish_stream(report),
                Err(e) => self.problem(None, format!("forked stream task failed: {e}")),
            }
        }
    }
}

/// A `<Start><Stream>` running beside the call.
type Forked = tokio::task::JoinHandle<StreamReport>;

/// Where the call goes after a step.
enum Flow {
    /// On to the next step.
    Continue,
    /// Leave the document for this request.
    Fetch(Box<Pending>),
    /// The call is over.
    End,
}

/// A webhook's answer.
struct Answer {
    status: reqwest::StatusCode,
    content_type: Option<String>,
    guard: Option<String>,
    body: String,
}

async fn send(req: reqwest::RequestBuilder) -> Result<Answer, reqwest::Error> {
    let resp = req.send().await?;
    let status = resp.status();
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (content_type, guard) = (header("content-type"), header("x-twiml-guard"));
    let body = String::from_utf8_lossy(&resp.bytes().await?).into_owned();
    Ok(Answer {
        status,
        content_type,
        guard,
        body,
    })
}

/// Place one call and report what happened. Never fails: failures are the report's outcome.
pub async fn place_call(client: &reqwest::Client, cfg: &CallConfig) -> Report {
    let mut call = Call {
        cfg,
        client,
        call_sid: new_sid("CA"),
        placed: Instant::now(),
        t_ms: 0,
        timeline: Vec::new(),
        fetches: Vec::new(),
        problems: Vec::new(),
        streams: Vec::new(),
        outcome: None,
        loop_report: None,
    };
    call.run().await;
    let outcome = call
        .outcome
        .unwrap_or(if call.streams.iter().any(StreamReport::ran) {
            Outcome::StreamRan
        } else {
            Outcome::NoStream
        });
    Report {
        call_sid: call.call_sid,
        account_sid: cfg.account_sid.clone(),
        from: cfg.from.clone(),
        to: cfg.to.clone(),
        outcome,
        exit_code: outcome.exit_code(),
        sim_duration_ms: call.t_ms,
        wall_ms: call.placed.elapsed().as_secs_f64() * 1000.0,
        timeline: call.timeline,
        fetches: call.fetches,
        problems: call.problems,
        streams: call.streams,
        loop_report: call.loop_report,
    }
}

/// The HTTP client Twilio's side uses: no connection reuse surprises, a bounded redirect chain.
pub fn client() -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::limited(5))
        .build()
}
