//! The proxy-wasm shell: the root context (config and counters, once per plugin) and the
//! per-request HTTP context. It reads headers and bodies through hostcalls, asks `decide` what to
//! do, and applies the answer. Every hostcall result is handled here: the SDK's trait helpers
//! panic on a host error, and a panic is a VM trap that takes every call on this worker with it.

use std::rc::Rc;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MapType, MetricType};

use twiml_guard_edge::config::{self, Config};
use twiml_guard_edge::decide::{
    self, Effect, Encoding, Label, Outcome, RequestInfo, RequestRoute, ResponseStart, GUARD_HEADER,
};

fn log(level: LogLevel, msg: &str) {
    // Nowhere to report a failed log call; the verdict still applies.
    let _ = hostcalls::log(level, msg);
}

/// A panic is a VM trap, and the trap alone says nothing of why: log the panic's message and
/// place at critical first, so the reason is in Envoy's log next to the reload or the 503s.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        log(
            LogLevel::Critical,
            &format!("panic, the VM traps next: {info}"),
        );
    }));
}

/// proxy-wasm's level as the edge crate's (the same order, trace to critical).
fn edge_level(level: LogLevel) -> decide::LogLevel {
    match level {
        LogLevel::Trace => decide::LogLevel::Trace,
        LogLevel::Debug => decide::LogLevel::Debug,
        LogLevel::Info => decide::LogLevel::Info,
        LogLevel::Warn => decide::LogLevel::Warn,
        LogLevel::Error => decide::LogLevel::Error,
        LogLevel::Critical => decide::LogLevel::Critical,
    }
}

// === counters ===

/// Host ids of the metrics, defined once per root context (a name defined again, as after an
/// ECDS update, gets the same metric: counters carry on).
#[derive(Debug, Clone, Copy)]
struct Metrics {
    inspected: u32,
    ws_upgrades: u32,
    /// In `Label::ALL` order.
    outcomes: [u32; 6],
    /// The labelled family, in `Label::ALL` order.
    responses: [u32; 6],
    signature_ok: u32,
    signature_rejected: u32,
    /// Gauges, in `decide::MODES` order.
    modes: [u32; 3],
    rules: u32,
    verdict_us: u32,
}

impl Metrics {
    fn define() -> Result<Metrics, String> {
        let define = |name: &str| {
            hostcalls::define_metric(MetricType::Counter, name)
                .map_err(|e| format!("define_metric {name}: {e:?}"))
        };
        let define_as = |kind: MetricType, name: &str| {
            hostcalls::define_metric(kind, name).map_err(|e| format!("define_metric {name}: {e:?}"))
        };
        let mut outcomes = [0u32; 6];
        let mut responses = [0u32; 6];
        for ((id, labelled), label) in outcomes
            .iter_mut()
            .zip(responses.iter_mut())
            .zip(Label::ALL)
        {
            *id = define(label.metric())?;
            *labelled = define(label.labelled_metric())?;
        }
        let mut modes = [0u32; 3];
        for (id, mode) in modes.iter_mut().zip(decide::MODES) {
            *id = define_as(MetricType::Gauge, decide::mode_metric(mode))?;
        }
        let [ok, rejected] = twiml_guard_edge::signature::METRIC_NAMES;
        Ok(Metrics {
            inspected: define(decide::INSPECTED_METRIC)?,
            ws_upgrades: define(decide::WS_UPGRADES_METRIC)?,
            outcomes,
            responses,
            // Defined at configure, so they read 0 before the first signed request.
            signature_ok: define(ok)?,
            signature_rejected: define(rejected)?,
            modes,
            rules: define_as(MetricType::Gauge, decide::RULES_METRIC)?,
            verdict_us: define_as(MetricType::Histogram, decide::VERDICT_TIME_METRIC)?,
        })
    }

    /// The gauges that say which configuration is active.
    fn configured(&self, cfg: &Config) {
        for (id, mode) in self.modes.iter().zip(decide::MODES) {
            let _ = hostcalls::record_metric(*id, u64::from(cfg.mode == mode));
        }
        let _ = hostcalls::record_metric(self.rules, cfg.rules.len() as u64);
    }

    fn bump(id: u32) {
        // A lost increment is better than a trap; Envoy only fails this for an unknown id.
        let _ = hostcalls::increment_metric(id, 1);
    }

    fn outcome(&self, label: Label) {
        Self::bump(self.inspected);
        for ((id, labelled), l) in self.outcomes.iter().zip(&self.responses).zip(Label::ALL) {
            if l == label {
                Self::bump(*id);
                Self::bump(*labelled);
            }
        }
    }
}

// === impl Root ===

/// The configuration a request runs under once a rule matched it: the rule's name and the
/// defaults with the rule's overrides (`Config::under_rule`), built at configure.
type RuleConfigs = Rc<Vec<(Rc<str>, Rc<Config>)>>;

#[derive(Default)]
pub struct Root {
    config: Option<Rc<Config>>,
    rules: RuleConfigs,
    metrics: Option<Metrics>,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, plugin_configuration_size: usize) -> bool {
        let bytes = match hostcalls::get_buffer(
            BufferType::PluginConfiguration,
            0,
            plugin_configuration_size,
        ) {
            Ok(b) => b.unwrap_or_default(),
            Err(e) => {
                log(
                    LogLevel::Critical,
                    &format!("cannot read plugin configuration: {e:?}"),
                );
                return false;
            }
        };
        let cfg = match config::parse(&bytes) {
            Ok(cfg) => cfg,
            Err(e) => {
                log(
                    LogLevel::Critical,
                    &format!("invalid plugin configuration: {e}"),
                );
                return false;
            }
        };
        let mut cfg = cfg;
        // The secrets come from the VM's environment (`vm_config.environment_variables`).
        if let Err(e) = cfg.load_secrets(|name| std::env::var(name).ok()) {
            log(
                LogLevel::Critical,
                &format!("invalid plugin configuration: {e}"),
            );
            return false;
        }
        if self.metrics.is_none() {
            match Metrics::define() {
                Ok(m) => self.metrics = Some(m),
                Err(e) => {
                    log(LogLevel::Critical, &format!("cannot define counters: {e}"));
                    return false;
                }
            }
        }
        log(
            LogLevel::Info,
            &format!(
                "twiml_guard version={} commit={}",
                twiml_guard_edge::VERSION,
                twiml_guard_edge::build_commit()
            ),
        );
        log(
            LogLevel::Info,
            &format!(
                "configured mode={:?} reject_style={:?} holds_headers={} max_body_bytes={} \
                 content_types={:?}",
                cfg.mode,
                cfg.reject_style,
                cfg.holds_headers(),
                cfg.max_body_bytes,
                cfg.content_types
            ),
        );
        log(LogLevel::Info, &twiml_guard_edge::signature::describe(&cfg));
        log(
            LogLevel::Info,
            &config::applied_line(&cfg, &config::digest(&bytes)),
        );
        if let Some(m) = &self.metrics {
            m.configured(&cfg);
        }
        self.rules = Rc::new(
            cfg.rules
                .iter()
                .map(|r| (Rc::from(r.name.as_str()), Rc::new(cfg.under_rule(r))))
                .collect(),
        );
        self.config = Some(Rc::new(cfg));
        true
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        let (Some(config), Some(metrics)) = (self.config.clone(), self.metrics) else {
            return None;
        };
        Some(Box::new(Http {
            id: context_id,
            config,
            rules: Rc::clone(&self.rules),
            rule: None,
            body_started: None,
            metrics,
            path: String::new(),
            state: State::Skip,
            signature: twiml_guard_edge::signature::Pending::default(),
            call_sid: None,
            log_level: std::cell::Cell::new(None),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

// === impl Http ===

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

/// Outcome of request-side checks (Twilio request signatures, `signature.rs`): allow, hold the
/// request until its body has arrived, or deny it before it reaches a backend.
use twiml_guard_edge::signature::Gate as RequestCheck;

pub struct Http {
    id: u32,
    /// The configuration this exchange runs under: the defaults, or a rule's once one matched.
    /// Taken when the exchange starts, so an update mid-exchange does not reach it.
    config: Rc<Config>,
    rules: RuleConfigs,
    /// The rule that matched, for `x-twiml-guard` and the verdict line.
    rule: Option<Rc<str>>,
    /// When the first body bytes of an inspected response arrived.
    body_started: Option<std::time::SystemTime>,
    metrics: Metrics,
    /// `:path` without the query, for log lines.
    path: String,
    state: State,
    /// A signed request held until its body has arrived.
    signature: twiml_guard_edge::signature::Pending,
    /// The call a signed webhook named: its answer's `<Stream>`s get a media token for it.
    call_sid: Option<String>,
    /// The host's log level, asked at the first line of the exchange.
    log_level: std::cell::Cell<Option<LogLevel>>,
}

impl Http {
    fn response_header(&self, name: &str) -> Option<String> {
        hostcalls::get_map_value(MapType::HttpResponseHeaders, name)
            .ok()
            .flatten()
    }

    /// Every header of `map`, in one hostcall (a host error reads as no headers, as a missing
    /// header would).
    fn headers(map: MapType) -> Vec<(String, String)> {
        hostcalls::get_map(map).unwrap_or_default()
    }

    /// Narrow `accept-encoding` to what the filter can read (gzip, identity) on an inspected
    /// route, so the backend never answers in a coding the guard cannot see into.
    fn narrow_accept_encoding(&self, headers: &decide::HeaderPairs) {
        let current = decide::joined_values(headers, "accept-encoding");
        let Some(narrowed) = decide::narrow_accept_encoding(current.as_deref()) else {
            return;
        };
        // Removing first drops every repeated value; then one value is added. With no header
        // there is nothing to remove.
        let removed = match current {
            Some(_) => {
                hostcalls::set_map_value(MapType::HttpRequestHeaders, "accept-encoding", None)
            }
            None => Ok(()),
        };
        let added = removed.and_then(|()| {
            hostcalls::add_map_value(MapType::HttpRequestHeaders, "accept-encoding", &narrowed)
        });
        match added {
            Ok(()) => self.log(
                LogLevel::Debug,
                format_args!("accept-encoding {current:?} narrowed to {narrowed:?}"),
            ),
            Err(e) => self.log(
                LogLevel::Warn,
                format_args!("cannot narrow accept-encoding: {e:?}"),
            ),
        }
    }

    fn set_response_header(&self, name: &str, value: Option<&str>) {
        if let Err(e) = hostcalls::set_map_value(MapType::HttpResponseHeaders, name, value) {
            self.log(
                LogLevel::Warn,
                format_args!("cannot set response header {name}: {e:?}"),
            );
        }
    }

    /// Whether the host keeps lines at `level`. Envoy drops a line under its wasm log level only
    /// after the module has formatted it and made the hostcall; asking first (once per exchange)
    /// spares both for the debug and info lines of every request on a quieter Envoy.
    fn logs(&self, level: LogLevel) -> bool {
        let host = match self.log_level.get() {
            Some(l) => l,
            None => {
                // Unknown: keep every line rather than lose one.
                let l = hostcalls::get_log_level().unwrap_or(LogLevel::Trace);
                self.log_level.set(Some(l));
                l
            }
        };
        decide::keeps_log(edge_level(host), edge_level(level))
    }

    fn log(&self, level: LogLevel, msg: std::fmt::Arguments<'_>) {
        if self.logs(level) {
            log(level, &format!("ctx={} path={} {msg}", self.id, self.path));
        }
    }

    fn reply(&self, status: u32, headers: Vec<(&str, &str)>, body: &[u8]) {
        if let Err(e) = hostcalls::send_http_response(status, headers, Some(body)) {
            self.log(
                LogLevel::Error,
                format_args!("cannot send local reply {status}: {e:?}"),
            );
        }
    }

    /// Request-side checks that may refuse a request (Twilio signatures on signed paths and on the
    /// media WebSocket handshake). Called after routing, before anything is forwarded.
    fn check_request_headers(
        &mut self,
        headers: &decide::HeaderPairs,
        req: &RequestInfo,
        route: RequestRoute,
        end_of_stream: bool,
    ) -> RequestCheck {
        let header = |name: &str| decide::first_value(headers, name).map(str::to_string);
        let step = twiml_guard_edge::signature::on_request_headers(
            self.config.as_ref(),
            &mut self.signature,
            req,
            route,
            &header,
            end_of_stream,
        );
        self.signature_step(step)
    }

    /// The body half of request-side checks (form-encoded webhook parameters are signed).
    fn check_request_body(&mut self, body_size: usize, end_of_stream: bool) -> RequestCheck {
        let read = |n| {
            hostcalls::get_buffer(BufferType::HttpRequestBody, 0, n)
                .map(|b| b.unwrap_or_default())
                .map_err(|e| format!("{e:?}"))
        };
        let step = twiml_guard_edge::signature::on_request_body(
            self.config.as_ref(),
            &mut self.signature,
            body_size,
            end_of_stream,
            read,
        );
        self.signature_step(step)
    }

    fn signature_step(&mut self, step: twiml_guard_edge::signature::Step) -> RequestCheck {
        use twiml_guard_edge::signature::Step;
        match step {
            Step::Pass | Step::HoldBody => RequestCheck::Allow,
            Step::Hold => RequestCheck::Hold,
            Step::Decided(verdict) => {
                Metrics::bump(if verdict.ok() {
                    self.metrics.signature_ok
                } else {
                    self.metrics.signature_rejected
                });
                let level = if verdict.ok() {
                    LogLevel::Debug
                } else {
                    LogLevel::Warn
                };
                self.log(level, format_args!("{}", verdict.log_line()));
                self.call_sid = verdict.call_sid.clone();
                verdict.gate()
            }
        }
    }

    fn deny(&mut self, status: u32, body: &[u8]) -> Action {
        self.log(
            LogLevel::Info,
            format_args!("request denied status={status}"),
        );
        self.state = State::Done;
        self.reply(status, vec![("content-type", "text/plain")], body);
        Action::Pause
    }

    fn guard_value(&self, outcome: &Outcome) -> String {
        decide::guard_header(outcome, self.rule.as_deref())
    }

    fn verdict(&self, outcome: &Outcome) {
        self.metrics.outcome(outcome.label);
        if let Some(started) = self.body_started {
            let now = hostcalls::get_current_time().unwrap_or(started);
            let us = now.duration_since(started).unwrap_or_default().as_micros();
            let _ = hostcalls::record_metric(
                self.metrics.verdict_us,
                u64::try_from(us).unwrap_or(u64::MAX),
            );
        }
        if self.logs(LogLevel::Info) {
            log(
                LogLevel::Info,
                &decide::verdict_line_ruled(
                    self.id,
                    &self.path,
                    self.rule.as_deref(),
                    self.config.mode,
                    outcome,
                ),
            );
        }
        if let (Some(before), Some(after)) = (&outcome.before, &outcome.after) {
            self.log(
                LogLevel::Info,
                format_args!("twiml before:\n{}", String::from_utf8_lossy(before)),
            );
            self.log(
                LogLevel::Info,
                format_args!("twiml after:\n{}", String::from_utf8_lossy(after)),
            );
        }
    }

    /// An outcome decided in the response-header callback (declared length, unreadable
    /// encoding). Headers can still change here whatever the host allows.
    fn apply_early(&mut self, outcome: Outcome) -> Action {
        self.verdict(&outcome);
        let guard = self.guard_value(&outcome);
        match outcome.effect {
            Effect::Keep => {
                self.set_response_header(GUARD_HEADER, Some(&guard));
                self.state = State::Done;
                Action::Continue
            }
            Effect::Reply {
                status,
                content_type,
                body,
            } => {
                self.state = State::Done;
                self.reply(
                    status,
                    vec![("content-type", content_type), (GUARD_HEADER, &guard)],
                    &body,
                );
                Action::Pause
            }
            Effect::Replace(replacement) => {
                self.set_response_header(GUARD_HEADER, Some(&guard));
                self.set_response_header("content-length", None);
                self.state = State::Swallowing { replacement };
                Action::Continue
            }
        }
    }

    // --- the body-rewrite contract ---
    //
    // Envoy's rules for changing a response body from wasm, all in this block (see the README,
    // "Running it in your Envoy"):
    // 1. `content-length` is removed in the header callback of every buffered candidate: after
    //    that callback headers are fixed (unless held), and a new body with the old length would
    //    be cut or hang. Envoy then sends the body chunked.
    // 2. Body callbacks return Pause until end of stream; the size argument is the cumulative
    //    buffered size, and the last call may bring no new bytes. With trailers, the end of the
    //    body is the trailers callback.
    // 3. The body is replaced only whole: `set_buffer(body, 0, <whole buffered size>, new)`. Any
    //    other start offset is a host error.
    // 4. The filter's own `max_body_bytes` stops buffering well before Envoy's connection buffer
    //    limit, past which Envoy would reset the stream or answer 500 itself.

    fn read_body(&self, size: usize) -> Result<Vec<u8>, String> {
        hostcalls::get_buffer(BufferType::HttpResponseBody, 0, size)
            .map(|b| b.unwrap_or_default())
            .map_err(|e| format!("{e:?}"))
    }

    fn replace_body(&self, size: usize, new: &[u8]) -> Result<(), String> {
        hostcalls::set_buffer(BufferType::HttpResponseBody, 0, size, new)
            .map_err(|e| format!("{e:?}"))
    }

    /// A buffered candidate's body callback (or trailers: `end_of_stream` with the last size).
    fn on_buffered_body(
        &mut self,
        enc: Encoding,
        held: bool,
        size: usize,
        end_of_stream: bool,
    ) -> Action {
        let cfg = Rc::clone(&self.config);
        if size > cfg.max_body_bytes {
            let outcome = decide::oversize(
                &cfg,
                enc,
                format!(
                    "body passed max_body_bytes {} ({size} bytes buffered)",
                    cfg.max_body_bytes
                ),
            );
            return self.apply(outcome, held, size, end_of_stream);
        }
        if !end_of_stream {
            return Action::Pause;
        }
        let outcome = match self.read_body(size) {
            Ok(body) => {
                let outcome = decide::evaluate(&cfg, &body, enc);
                let now_s = hostcalls::get_current_time()
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_secs());
                let grant = self
                    .call_sid
                    .as_deref()
                    .map(|call_sid| decide::MediaGrant { call_sid, now_s });
                decide::stamp_media_token(&cfg, outcome, &body, enc, grant)
            }
            Err(e) => decide::malformed(&cfg, enc, format!("cannot read body: {e}")),
        };
        self.apply(outcome, held, size, end_of_stream)
    }

    /// A sniffed candidate's body so far: pass it at once when it does not open with
    /// `<Response`, or buffer and judge it like any candidate.
    fn on_sniffed_body(
        &mut self,
        enc: Encoding,
        held: bool,
        size: usize,
        end_of_stream: bool,
    ) -> Action {
        let cfg = Rc::clone(&self.config);
        let sniff = decide::sniff_received(&cfg, size, enc, end_of_stream, |n| self.read_body(n))
            // An unreadable body cannot be shown to be something else.
            .unwrap_or(twiml::Sniff::Twiml);
        match sniff {
            twiml::Sniff::NotTwiml => {
                self.log(
                    LogLevel::Debug,
                    format_args!("not inspected: body does not open with <Response"),
                );
                self.state = State::Done;
                Action::Continue
            }
            // Past the limit and still undecided: judged like any candidate (oversize).
            twiml::Sniff::NeedMore if size <= cfg.max_body_bytes => Action::Pause,
            twiml::Sniff::Twiml | twiml::Sniff::NeedMore => {
                if held {
                    // Contract rule 1, while the headers are still held.
                    self.set_response_header("content-length", None);
                }
                self.state = State::Buffering { enc, held, size };
                self.on_buffered_body(enc, held, size, end_of_stream)
            }
        }
    }

    fn apply(&mut self, outcome: Outcome, held: bool, size: usize, end_of_stream: bool) -> Action {
        self.verdict(&outcome);
        let label = self.guard_value(&outcome);
        let label = label.as_str();
        match outcome.effect {
            Effect::Keep => {
                if held {
                    self.set_response_header(GUARD_HEADER, Some(label));
                }
                self.state = State::Done;
                Action::Continue
            }
            Effect::Reply {
                status,
                content_type,
                body,
            } => {
                self.state = State::Done;
                self.reply(
                    status,
                    vec![("content-type", content_type), (GUARD_HEADER, label)],
                    &body,
                );
                Action::Pause
            }
            Effect::Replace(new) => {
                if held {
                    self.set_response_header(GUARD_HEADER, Some(label));
                }
                if end_of_stream {
                    self.state = State::Done;
                    if let Err(e) = self.replace_body(size, &new) {
                        self.log(LogLevel::Error, format_args!("cannot replace body: {e}"));
                    }
                    Action::Continue
                } else {
                    self.state = State::Swallowing { replacement: new };
                    self.swallow(size, false)
                }
            }
        }
    }

    fn swallow(&mut self, size: usize, end_of_stream: bool) -> Action {
        let chunk: &[u8] = match (&self.state, end_of_stream) {
            (State::Swallowing { replacement }, true) => replacement,
            _ => b"",
        };
        if let Err(e) = self.replace_body(size, chunk) {
            self.log(LogLevel::Error, format_args!("cannot replace body: {e}"));
        }
        if end_of_stream {
            self.state = State::Done;
            Action::Continue
        } else {
            Action::Pause
        }
    }
}

impl Context for Http {}

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let headers = Self::headers(MapType::HttpRequestHeaders);
        let req = decide::request_info(&headers);
        self.path = decide::path_only(&req.path).to_string();
        let host =
            decide::first_value(&headers, ":authority").map(twiml_guard_edge::route::host_only);
        if let Some(i) = self.config.rule_for(host.as_deref(), &self.path) {
            if let Some((name, cfg)) = self.rules.get(i) {
                self.rule = Some(Rc::clone(name));
                self.config = Rc::clone(cfg);
            }
        }
        let route = decide::route_request(&self.config, &req);
        self.state = match route {
            RequestRoute::MediaUpgrade => State::MediaUpgrade,
            RequestRoute::MediaNotUpgrade => {
                self.log(
                    LogLevel::Info,
                    format_args!("plain request on the media path: 426"),
                );
                self.state = State::Done;
                self.reply(
                    426,
                    // Envoy strips hop-by-hop `upgrade` from this reply, so none is set.
                    vec![("content-type", "text/plain")],
                    decide::UPGRADE_REQUIRED_BODY.as_bytes(),
                );
                return Action::Pause;
            }
            RequestRoute::Inspect => {
                self.narrow_accept_encoding(&headers);
                State::Candidate
            }
            RequestRoute::Skip(reason) => {
                self.log(LogLevel::Debug, format_args!("not inspected: {reason}"));
                State::Skip
            }
        };
        match self.check_request_headers(&headers, &req, route, end_of_stream) {
            RequestCheck::Allow => Action::Continue,
            RequestCheck::Hold => Action::Pause,
            RequestCheck::Deny { status, body } => self.deny(status, &body),
        }
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if matches!(self.state, State::MediaUpgrade) {
            return Action::Continue;
        }
        match self.check_request_body(body_size, end_of_stream) {
            RequestCheck::Allow => Action::Continue,
            RequestCheck::Hold => Action::Pause,
            RequestCheck::Deny { status, body } => self.deny(status, &body),
        }
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        // With trailers the request body ends here, at the size the last body callback reported;
        // a held signed body that passed unchecked would reach the backend unsigned.
        match self.check_request_body(self.signature.body_size(), true) {
            RequestCheck::Allow => Action::Continue,
            RequestCheck::Hold => Action::Pause,
            RequestCheck::Deny { status, body } => self.deny(status, &body),
        }
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        match self.state {
            State::MediaUpgrade => {
                if self.response_header(":status").as_deref() == Some("101") {
                    Metrics::bump(self.metrics.ws_upgrades);
                    self.log(LogLevel::Info, format_args!("websocket upgraded"));
                }
                return Action::Continue;
            }
            State::Candidate => {}
            _ => return Action::Continue,
        }
        let info =
            decide::response_info(&Self::headers(MapType::HttpResponseHeaders), end_of_stream);
        match decide::start_response(&self.config, &info) {
            ResponseStart::Pass(reason) => {
                self.log(LogLevel::Debug, format_args!("not inspected: {reason}"));
                self.state = State::Done;
                Action::Continue
            }
            ResponseStart::Early(outcome) => self.apply_early(outcome),
            ResponseStart::Inspect(enc) => {
                // Contract rule 1.
                self.set_response_header("content-length", None);
                let held = self.config.holds_headers();
                self.state = State::Buffering { enc, held, size: 0 };
                if held {
                    Action::Pause
                } else {
                    Action::Continue
                }
            }
            ResponseStart::Sniff(enc) => {
                let held = self.config.holds_headers();
                self.state = State::Sniffing { enc, held, size: 0 };
                if held {
                    // Contract rule 1 waits for the sniff: held headers can still change, and a
                    // page that passes keeps its content-length.
                    Action::Pause
                } else {
                    // Headers leave now; the body may still be rewritten, so no length.
                    self.set_response_header("content-length", None);
                    Action::Continue
                }
            }
        }
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if self.body_started.is_none()
            && matches!(self.state, State::Sniffing { .. } | State::Buffering { .. })
        {
            self.body_started = hostcalls::get_current_time().ok();
        }
        match self.state {
            State::Sniffing { enc, held, .. } => {
                self.state = State::Sniffing {
                    enc,
                    held,
                    size: body_size,
                };
                self.on_sniffed_body(enc, held, body_size, end_of_stream)
            }
            State::Buffering { enc, held, .. } => {
                self.state = State::Buffering {
                    enc,
                    held,
                    size: body_size,
                };
                self.on_buffered_body(enc, held, body_size, end_of_stream)
            }
            State::Swallowing { .. } => self.swallow(body_size, end_of_stream),
            _ => Action::Continue,
        }
    }

    fn on_http_response_trailers(&mut self, _num_trailers: usize) -> Action {
        // Contract rule 2: with trailers, this is the end of the body, at the size the last body
        // callback reported.
        match self.state {
            State::Buffering { enc, held, size } => self.on_buffered_body(enc, held, size, true),
            // Every body callback paused while undecided, so the whole body is buffered.
            State::Sniffing { enc, held, size } => self.on_sniffed_body(enc, held, size, true),
            // Every earlier chunk was dropped as it came: the buffer is empty.
            State::Swallowing { .. } => self.swallow(0, true),
            _ => Action::Continue,
        }
    }
}
