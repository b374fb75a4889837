//! One request and its response through the guard, host-independent: the state an exchange is
//! in, what each Envoy callback does with it, and the body-rewrite contract, in one place. Each
//! shim implements [`Host`] over its own calls into Envoy (proxy-wasm hostcalls, or the dynamic
//! module ABI) and maps [`Action`] to its own return codes, so both give the same verdicts,
//! bytes, headers, replies, counters and log lines.

use std::sync::Arc;
use std::time::SystemTime;

use crate::config::Config;
use crate::decide::{
    self, Effect, Encoding, HeaderPairs, LogLevel, Outcome, RequestRoute, ResponseStart,
    GUARD_HEADER,
};
use crate::metrics::Counter;
use crate::signature::{self, Gate, Step};

pub use crate::host::{Action, Body, Headers, Host};

/// The configuration a request runs under once a rule matched it: the rule's name and the
/// defaults with the rule's overrides (`Config::under_rule`), built once per configure.
pub type RuleConfigs = Arc<Vec<(Arc<str>, Arc<Config>)>>;

/// Every rule's configuration, for [`Exchange::new`].
pub fn rule_configs(cfg: &Config) -> RuleConfigs {
    Arc::new(
        cfg.rules
            .iter()
            .map(|r| (Arc::from(r.name.as_str()), Arc::new(cfg.under_rule(r))))
            .collect(),
    )
}

#[derive(Debug)]
enum State {
    /// Nothing for the guard to do in this exchange.
    Skip,
    /// A WebSocket upgrade on the media path: frames are a body that never ends, so nothing is
    /// ever paused; only the 101 is counted.
    MediaUpgrade,
    /// The response will be checked when its headers arrive.
    Candidate,
    /// A candidate whose type is TwiML only when its body opens with `<Response`: paused until
    /// its first bytes tell (`decide::sniff_body`), then passed or buffered.
    Sniffing {
        enc: Encoding,
        held: bool,
        /// The last cumulative size a body callback reported.
        size: usize,
    },
    /// Buffering a candidate body until its end.
    Buffering {
        enc: Encoding,
        held: bool,
        /// The last cumulative size a body callback reported (the trailers callback has none).
        size: usize,
    },
    /// The body is being replaced before its end (a twiml-style reject of an oversize body):
    /// each arriving chunk is dropped, and the replacement goes out at the end.
    Swallowing { replacement: Vec<u8> },
    /// Verdict applied (or reply sent); the rest passes.
    Done,
}

/// One exchange: made when Envoy starts a stream, fed every callback of it.
pub struct Exchange {
    id: u32,
    /// The configuration this exchange runs under: the defaults, or a rule's once one matched.
    /// Taken when the exchange starts, so an update mid-exchange does not reach it.
    config: Arc<Config>,
    rules: RuleConfigs,
    /// The rule that matched, for `x-twiml-guard` and the verdict line.
    rule: Option<Arc<str>>,
    /// When the first body bytes of an inspected response arrived.
    body_started: Option<SystemTime>,
    /// `:path` without the query, for log lines.
    path: String,
    state: State,
    /// A signed request held until its body has arrived.
    signature: signature::Pending,
    /// The call a signed webhook named: its answer's `<Stream>`s get a media token for it.
    call_sid: Option<String>,
    /// The host's log level, asked at the first line of the exchange.
    log_level: Option<LogLevel>,
}

impl Exchange {
    /// `id` names the exchange in every log line (`ctx=<id>`).
    pub fn new(id: u32, config: Arc<Config>, rules: RuleConfigs) -> Exchange {
        Exchange {
            id,
            config,
            rules,
            rule: None,
            body_started: None,
            path: String::new(),
            state: State::Skip,
            signature: signature::Pending::default(),
            call_sid: None,
            log_level: None,
        }
    }

    /// Whether the host keeps lines at `level`. Envoy drops a line under its log level only
    /// after the shim has formatted it and called the host; asking first (once per exchange)
    /// spares both for the debug and info lines of every request on a quieter Envoy.
    fn logs(&mut self, host: &mut impl Host, level: LogLevel) -> bool {
        let current = match self.log_level {
            Some(l) => l,
            None => {
                // Unknown: keep every line rather than lose one.
                let l = host.log_level().unwrap_or(LogLevel::Trace);
                self.log_level = Some(l);
                l
            }
        };
        decide::keeps_log(current, level)
    }

    fn log(&mut self, host: &mut impl Host, level: LogLevel, msg: std::fmt::Arguments<'_>) {
        if self.logs(host, level) {
            host.log(level, &format!("ctx={} path={} {msg}", self.id, self.path));
        }
    }

    fn set_response_header(&mut self, host: &mut impl Host, name: &str, value: Option<&str>) {
        if let Err(e) = host.set_header(Headers::Response, name, value) {
            self.log(
                host,
                LogLevel::Warn,
                format_args!("cannot set response header {name}: {e}"),
            );
        }
    }

    /// Contract rule 1: the response's `content-length` set to `len`, or removed.
    fn set_length(&mut self, host: &mut impl Host, len: Option<usize>) {
        let value = len.map(|n| n.to_string());
        self.set_response_header(host, "content-length", value.as_deref());
    }

    fn reply(&mut self, host: &mut impl Host, status: u32, headers: &[(&str, &str)], body: &[u8]) {
        if let Err(e) = host.send_reply(status, headers, body) {
            self.log(
                host,
                LogLevel::Error,
                format_args!("cannot send local reply {status}: {e}"),
            );
        }
    }

    /// Narrow `accept-encoding` to what the filter can read (gzip, identity) on an inspected
    /// route, so the backend never answers in a coding the guard cannot see into.
    fn narrow_accept_encoding(&mut self, host: &mut impl Host, headers: &HeaderPairs) {
        let current = decide::joined_values(headers, "accept-encoding");
        let Some(narrowed) = decide::narrow_accept_encoding(current.as_deref()) else {
            return;
        };
        // Removing first drops every repeated value; then one value is added. With no header
        // there is nothing to remove.
        let removed = match current {
            Some(_) => host.set_header(Headers::Request, "accept-encoding", None),
            None => Ok(()),
        };
        let added =
            removed.and_then(|()| host.add_header(Headers::Request, "accept-encoding", &narrowed));
        match added {
            Ok(()) => self.log(
                host,
                LogLevel::Debug,
                format_args!("accept-encoding {current:?} narrowed to {narrowed:?}"),
            ),
            Err(e) => self.log(
                host,
                LogLevel::Warn,
                format_args!("cannot narrow accept-encoding: {e}"),
            ),
        }
    }

    /// Run this exchange under the rule its Envoy route gives (`name`, and the configuration
    /// resolved with it, `Config::under_route`) instead of the configuration's `rules`. Called
    /// before the request headers, by a shim whose host has per-route configuration.
    pub fn set_route_rule(&mut self, name: Arc<str>, config: Arc<Config>) {
        self.rule = Some(name);
        self.config = config;
    }

    // === requests ===

    pub fn on_request_headers(&mut self, host: &mut impl Host, end_of_stream: bool) -> Action {
        let headers = host.headers(Headers::Request, decide::REQUEST_HEADERS);
        let req = decide::request_info(&headers);
        self.path = decide::path_only(&req.path).to_string();
        // A route's own rule (set before this callback) takes the place of the configuration's.
        if self.rule.is_none() && !self.config.rules.is_empty() {
            let authority =
                decide::first_value(&headers, ":authority").map(crate::route::host_only);
            if let Some(i) = self.config.rule_for(authority.as_deref(), &self.path) {
                if let Some((name, cfg)) = self.rules.get(i) {
                    self.rule = Some(Arc::clone(name));
                    self.config = Arc::clone(cfg);
                }
            }
        }
        let route = decide::route_request(&self.config, &req);
        self.state = match route {
            RequestRoute::MediaUpgrade => State::MediaUpgrade,
            RequestRoute::MediaNotUpgrade => {
                self.log(
                    host,
                    LogLevel::Info,
                    format_args!("plain request on the media path: 426"),
                );
                self.state = State::Done;
                self.reply(
                    host,
                    426,
                    // Envoy strips hop-by-hop `upgrade` from this reply, so none is set.
                    &[("content-type", "text/plain")],
                    decide::UPGRADE_REQUIRED_BODY.as_bytes(),
                );
                return Action::Pause;
            }
            RequestRoute::Inspect => {
                self.narrow_accept_encoding(host, &headers);
                State::Candidate
            }
            RequestRoute::Skip(reason) => {
                self.log(
                    host,
                    LogLevel::Debug,
                    format_args!("not inspected: {reason}"),
                );
                State::Skip
            }
        };
        // Request-side checks that may refuse a request (Twilio signatures on signed paths and
        // on the media WebSocket handshake), after routing, before anything is forwarded.
        let header = |name: &str| {
            debug_assert!(
                decide::REQUEST_HEADERS.contains(&name),
                "{name} is read but not in REQUEST_HEADERS"
            );
            decide::first_value(&headers, name).map(str::to_string)
        };
        let step = signature::on_request_headers(
            self.config.as_ref(),
            &mut self.signature,
            &req,
            route,
            &header,
            end_of_stream,
        );
        self.gate(host, step)
    }

    /// `body_size`: the request body buffered so far.
    pub fn on_request_body(
        &mut self,
        host: &mut impl Host,
        body_size: usize,
        end_of_stream: bool,
    ) -> Action {
        if matches!(self.state, State::MediaUpgrade) {
            return Action::Continue;
        }
        self.check_request_body(host, body_size, end_of_stream)
    }

    pub fn on_request_trailers(&mut self, host: &mut impl Host) -> Action {
        // With trailers the request body ends here, at the size the last body callback
        // reported; a held signed body that passed unchecked would reach the backend unsigned.
        self.check_request_body(host, self.signature.body_size(), true)
    }

    /// The body half of request-side checks (form-encoded webhook parameters are signed).
    fn check_request_body(
        &mut self,
        host: &mut impl Host,
        body_size: usize,
        end_of_stream: bool,
    ) -> Action {
        let cfg = Arc::clone(&self.config);
        let step = signature::on_request_body(
            cfg.as_ref(),
            &mut self.signature,
            body_size,
            end_of_stream,
            |n| host.read_body(Body::Request, n),
        );
        self.gate(host, step)
    }

    fn gate(&mut self, host: &mut impl Host, step: Step) -> Action {
        let gate = match step {
            Step::Pass | Step::HoldBody => Gate::Allow,
            Step::Hold => Gate::Hold,
            Step::Decided(verdict) => {
                host.bump(if verdict.ok() {
                    Counter::SignatureOk
                } else {
                    Counter::SignatureRejected
                });
                let level = if verdict.ok() {
                    LogLevel::Debug
                } else {
                    LogLevel::Warn
                };
                self.log(host, level, format_args!("{}", verdict.log_line()));
                self.call_sid = verdict.call_sid.clone();
                verdict.gate()
            }
        };
        match gate {
            Gate::Allow => Action::Continue,
            Gate::Hold => Action::Pause,
            Gate::Deny { status, body } => {
                self.log(
                    host,
                    LogLevel::Info,
                    format_args!("request denied status={status}"),
                );
                self.state = State::Done;
                self.reply(host, status, &[("content-type", "text/plain")], &body);
                Action::Pause
            }
        }
    }

    // === responses ===

    pub fn on_response_headers(&mut self, host: &mut impl Host, end_of_stream: bool) -> Action {
        match self.state {
            State::MediaUpgrade => {
                if host.header(Headers::Response, ":status").as_deref() == Some("101") {
                    host.bump(Counter::WsUpgrades);
                    self.log(host, LogLevel::Info, format_args!("websocket upgraded"));
                }
                return Action::Continue;
            }
            State::Candidate => {}
            State::Swallowing { ref replacement } => {
                // Replaced before its headers came (a failure in the request phase).
                let len = replacement.len();
                self.set_length(host, Some(len));
                return Action::Continue;
            }
            _ => return Action::Continue,
        }
        let headers = host.headers(Headers::Response, decide::RESPONSE_HEADERS);
        let info = decide::response_info(&headers, end_of_stream);
        match decide::start_response(&self.config, &info) {
            ResponseStart::Pass(reason) => {
                self.log(
                    host,
                    LogLevel::Debug,
                    format_args!("not inspected: {reason}"),
                );
                self.state = State::Done;
                Action::Continue
            }
            ResponseStart::Early(outcome) => self.apply_early(host, outcome),
            ResponseStart::Inspect(enc) => {
                let held = self.config.holds_headers();
                self.state = State::Buffering { enc, held, size: 0 };
                if held {
                    // Contract rule 1: the length waits for the verdict.
                    Action::Pause
                } else {
                    self.set_length(host, None);
                    Action::Continue
                }
            }
            ResponseStart::Sniff(enc) => {
                let held = self.config.holds_headers();
                self.state = State::Sniffing { enc, held, size: 0 };
                if held {
                    // Contract rule 1: the length waits for the verdict.
                    Action::Pause
                } else {
                    // Headers leave now; the body may still be rewritten, so no length.
                    self.set_length(host, None);
                    Action::Continue
                }
            }
        }
    }

    /// `body_size`: the response body buffered so far, this callback's data included.
    pub fn on_response_body(
        &mut self,
        host: &mut impl Host,
        body_size: usize,
        end_of_stream: bool,
    ) -> Action {
        if self.body_started.is_none()
            && matches!(self.state, State::Sniffing { .. } | State::Buffering { .. })
        {
            self.body_started = host.now();
        }
        match self.state {
            State::Sniffing { enc, held, .. } => {
                self.state = State::Sniffing {
                    enc,
                    held,
                    size: body_size,
                };
                self.on_sniffed_body(host, enc, held, body_size, end_of_stream)
            }
            State::Buffering { enc, held, .. } => {
                self.state = State::Buffering {
                    enc,
                    held,
                    size: body_size,
                };
                self.on_buffered_body(host, enc, held, body_size, end_of_stream)
            }
            State::Swallowing { .. } => self.swallow(host, body_size, end_of_stream),
            _ => Action::Continue,
        }
    }

    pub fn on_response_trailers(&mut self, host: &mut impl Host) -> Action {
        // Contract rule 2: with trailers, this is the end of the body, at the size the last body
        // callback reported.
        match self.state {
            State::Buffering { enc, held, size } => {
                self.on_buffered_body(host, enc, held, size, true)
            }
            // Every body callback paused while undecided, so the whole body is buffered.
            State::Sniffing { enc, held, size } => {
                self.on_sniffed_body(host, enc, held, size, true)
            }
            // Every earlier chunk was dropped as it came: the buffer is empty.
            State::Swallowing { .. } => self.swallow(host, 0, true),
            _ => Action::Continue,
        }
    }

    /// The exchange's answer when the shim caught a panic in it (`message`): the response fails
    /// the configured way, as a rewrite that failed would. A status-style reject answers
    /// `reject_status` with a `twiml_guard_error` body, a TwiML-style one sends `fallback_twiml`,
    /// and monitor mode lets the traffic pass untouched. A response already decided is left as
    /// it was decided. `end_of_stream`: the failing callback was the end of the response body.
    pub fn fail(&mut self, host: &mut impl Host, message: &str, end_of_stream: bool) -> Action {
        let (enc, held, size) = match self.state {
            State::Sniffing { enc, held, size } | State::Buffering { enc, held, size } => {
                (enc, held, Some(size))
            }
            State::Swallowing { .. } | State::Done => return Action::Continue,
            State::Skip | State::MediaUpgrade | State::Candidate => {
                (Encoding::Identity, true, None)
            }
        };
        let outcome = decide::failed(&self.config, enc, format!("internal error: {message}"));
        match size {
            Some(size) => self.apply(host, outcome, held, size, end_of_stream),
            None => self.apply_early(host, outcome),
        }
    }

    fn guard_value(&self, outcome: &Outcome) -> String {
        decide::guard_header(outcome, self.rule.as_deref())
    }

    fn verdict(&mut self, host: &mut impl Host, outcome: &Outcome) {
        host.bump(Counter::Inspected);
        host.bump(Counter::Outcome(outcome.label));
        if let Some(started) = self.body_started {
            let now = host.now().unwrap_or(started);
            let us = now.duration_since(started).unwrap_or_default().as_micros();
            host.record_verdict_us(u64::try_from(us).unwrap_or(u64::MAX));
        }
        if self.logs(host, LogLevel::Info) {
            let line = decide::verdict_line_ruled(
                self.id,
                &self.path,
                self.rule.as_deref(),
                self.config.mode,
                outcome,
            );
            host.log(LogLevel::Info, &line);
        }
        if let (Some(before), Some(after)) = (&outcome.before, &outcome.after) {
            self.log(
                host,
                LogLevel::Info,
                format_args!("twiml before:\n{}", String::from_utf8_lossy(before)),
            );
            self.log(
                host,
                LogLevel::Info,
                format_args!("twiml after:\n{}", String::from_utf8_lossy(after)),
            );
        }
    }

    /// An outcome decided in the response-header callback (declared length, unreadable
    /// encoding). Headers can still change here whatever the host allows.
    fn apply_early(&mut self, host: &mut impl Host, outcome: Outcome) -> Action {
        self.verdict(host, &outcome);
        let guard = self.guard_value(&outcome);
        match outcome.effect {
            Effect::Keep => {
                self.set_response_header(host, GUARD_HEADER, Some(&guard));
                self.state = State::Done;
                Action::Continue
            }
            Effect::Reply {
                status,
                content_type,
                body,
            } => self.reply_instead(host, status, content_type, &guard, &body),
            Effect::Replace(replacement) => {
                self.set_response_header(host, GUARD_HEADER, Some(&guard));
                // Still in the header callback: the replacement's length is known.
                self.set_length(host, Some(replacement.len()));
                self.state = State::Swallowing { replacement };
                Action::Continue
            }
        }
    }

    /// Answer locally instead of forwarding the response; the rest of the exchange passes.
    fn reply_instead(
        &mut self,
        host: &mut impl Host,
        status: u32,
        content_type: &str,
        guard: &str,
        body: &[u8],
    ) -> Action {
        self.state = State::Done;
        self.reply(
            host,
            status,
            &[("content-type", content_type), (GUARD_HEADER, guard)],
            body,
        );
        Action::Pause
    }

    // --- the body-rewrite contract ---
    //
    // Envoy's rules for changing a response body, all in this block (see the README, "Running
    // it in your Envoy"); each shim's `Host` keeps them for its own calls:
    // 1. `content-length` must match the body that leaves. Held headers wait for the verdict:
    //    an unchanged body (pass, monitor) keeps the upstream's, a replaced one gets its own
    //    length, a reply brings its own. Headers not held are fixed once their callback returns,
    //    so a buffered candidate's `content-length` is removed there (a new body with the old
    //    length would be cut or hang) and Envoy sends the body chunked.
    // 2. Body callbacks return Pause until end of stream; the size is the cumulative buffered
    //    size, and the last call may bring no new bytes. With trailers, the end of the body is
    //    the trailers callback.
    // 3. The body is replaced only whole (`Host::replace_response_body` with the whole
    //    buffered size).
    // 4. The filter's own `max_body_bytes` stops buffering well before Envoy's connection buffer
    //    limit, past which Envoy would reset the stream or answer 500 itself.

    /// A buffered candidate's body callback (or trailers: `end_of_stream` with the last size).
    fn on_buffered_body(
        &mut self,
        host: &mut impl Host,
        enc: Encoding,
        held: bool,
        size: usize,
        end_of_stream: bool,
    ) -> Action {
        let cfg = Arc::clone(&self.config);
        if size > cfg.max_body_bytes {
            let outcome = decide::oversize(
                &cfg,
                enc,
                format!(
                    "body passed max_body_bytes {} ({size} bytes buffered)",
                    cfg.max_body_bytes
                ),
            );
            return self.apply(host, outcome, held, size, end_of_stream);
        }
        if !end_of_stream {
            return Action::Pause;
        }
        let outcome = match host.read_body(Body::Response, size) {
            Ok(body) => {
                let outcome = decide::evaluate(&cfg, &body, enc);
                // The clock only when a token is granted: a call into Envoy per answer otherwise.
                let grant = self.call_sid.as_deref().map(|call_sid| {
                    let now_s = host
                        .now()
                        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                        .map_or(0, |d| d.as_secs());
                    decide::MediaGrant { call_sid, now_s }
                });
                decide::stamp_media_token(&cfg, outcome, &body, enc, grant)
            }
            Err(e) => decide::malformed(&cfg, enc, format!("cannot read body: {e}")),
        };
        self.apply(host, outcome, held, size, end_of_stream)
    }

    /// A sniffed candidate's body so far: pass it at once when it does not open with
    /// `<Response`, or buffer and judge it like any candidate.
    fn on_sniffed_body(
        &mut self,
        host: &mut impl Host,
        enc: Encoding,
        held: bool,
        size: usize,
        end_of_stream: bool,
    ) -> Action {
        let cfg = Arc::clone(&self.config);
        let sniff = decide::sniff_received(&cfg, size, enc, end_of_stream, |n| {
            host.read_body(Body::Response, n)
        })
        // An unreadable body cannot be shown to be something else.
        .unwrap_or(twiml::Sniff::Twiml);
        match sniff {
            twiml::Sniff::NotTwiml => {
                self.log(
                    host,
                    LogLevel::Debug,
                    format_args!("not inspected: body does not open with <Response"),
                );
                self.state = State::Done;
                Action::Continue
            }
            // Past the limit and still undecided: judged like any candidate (oversize).
            twiml::Sniff::NeedMore if size <= cfg.max_body_bytes => Action::Pause,
            twiml::Sniff::Twiml | twiml::Sniff::NeedMore => {
                self.state = State::Buffering { enc, held, size };
                self.on_buffered_body(host, enc, held, size, end_of_stream)
            }
        }
    }

    fn apply(
        &mut self,
        host: &mut impl Host,
        outcome: Outcome,
        held: bool,
        size: usize,
        end_of_stream: bool,
    ) -> Action {
        self.verdict(host, &outcome);
        let label = self.guard_value(&outcome);
        match outcome.effect {
            Effect::Keep => {
                if held {
                    self.set_response_header(host, GUARD_HEADER, Some(&label));
                }
                self.state = State::Done;
                Action::Continue
            }
            Effect::Reply {
                status,
                content_type,
                body,
            } => self.reply_instead(host, status, content_type, &label, &body),
            Effect::Replace(new) => {
                if held {
                    self.set_response_header(host, GUARD_HEADER, Some(&label));
                    self.set_length(host, Some(new.len()));
                }
                if end_of_stream {
                    self.state = State::Done;
                    if let Err(e) = host.replace_response_body(size, &new) {
                        self.log(
                            host,
                            LogLevel::Error,
                            format_args!("cannot replace body: {e}"),
                        );
                    }
                    Action::Continue
                } else {
                    self.state = State::Swallowing { replacement: new };
                    self.swallow(host, size, false)
                }
            }
        }
    }

    /// Drop what arrived of a body being replaced; at its end, send the replacement.
    fn swallow(&mut self, host: &mut impl Host, size: usize, end_of_stream: bool) -> Action {
        let replacement = match (&mut self.state, end_of_stream) {
            (State::Swallowing { replacement }, true) => std::mem::take(replacement),
            _ => Vec::new(),
        };
        if let Err(e) = host.replace_response_body(size, &replacement) {
            self.log(
                host,
                LogLevel::Error,
                format_args!("cannot replace body: {e}"),
            );
        }
        if end_of_stream {
            self.state = State::Done;
            Action::Continue
        } else {
            Action::Pause
        }
    }
}

#[cfg(test)]
mod tests;
