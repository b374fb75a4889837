//! The native shim's safe half: the configuration Envoy builds once per filter config (parsed
//! JSON, metric ids), the per-stream [`Filter`] around the edge crate's `Exchange`, and
//! [`Native`], the exchange's `Host` over the ABI wrappers. Each hook runs under
//! `catch_unwind`; a panic fails the exchange the configured way (`Exchange::fail`) instead of
//! reaching Envoy.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use twiml_guard_edge::config::{self, Config, Mode};
use twiml_guard_edge::decide::LogLevel;
use twiml_guard_edge::exchange::{self, Action, Body, Exchange, Headers, Host, RuleConfigs};
use twiml_guard_edge::metrics::{self, Counter};

use crate::abi::{self, EnvoyConfig, EnvoyFilter, MetricKind};
use crate::route::RouteConfig;

/// The `filter_name` the module answers to.
pub const FILTER_NAME: &[u8] = b"twiml_guard";

/// One accepted configuration, shared by every stream that started under it.
pub struct FilterConfig {
    config: Arc<Config>,
    rules: RuleConfigs,
    /// Envoy's ids, in `Counter::ALL` order.
    counters: [usize; Counter::COUNT],
    verdict_us: usize,
    /// Names each stream in log lines (`ctx=<n>`), as the wasm VM's context ids do.
    next_id: AtomicU32,
}

fn level_number(level: LogLevel) -> u8 {
    match level {
        LogLevel::Trace => 0,
        LogLevel::Debug => 1,
        LogLevel::Info => 2,
        LogLevel::Warn => 3,
        LogLevel::Error => 4,
        LogLevel::Critical => 5,
    }
}

fn log(level: LogLevel, message: &str) {
    abi::log(level_number(level), message);
}

/// Parse and validate the configuration (the wasm filter's JSON, unchanged), read its secrets
/// from Envoy's environment, define the metrics and set the gauges. `None` refuses it, after a
/// critical line saying why.
pub fn config_new(envoy: &EnvoyConfig, name: &[u8], bytes: &[u8]) -> Option<Arc<FilterConfig>> {
    if name != FILTER_NAME {
        log(
            LogLevel::Critical,
            &format!(
                "invalid plugin configuration: filter_name {:?}, expected \"twiml_guard\"",
                String::from_utf8_lossy(name)
            ),
        );
        return None;
    }
    let cfg = match config::load(bytes, |name| std::env::var(name).ok()) {
        Ok(cfg) => cfg,
        Err(e) => {
            log(
                LogLevel::Critical,
                &format!("invalid plugin configuration: {e}"),
            );
            return None;
        }
    };
    let defined = define_metrics(envoy, &cfg);
    let (counters, verdict_us) = match defined {
        Ok(ids) => ids,
        Err(e) => {
            log(LogLevel::Critical, &format!("cannot define counters: {e}"));
            return None;
        }
    };
    for line in config::configured_lines(&cfg, bytes) {
        log(LogLevel::Info, &line);
    }
    Some(Arc::new(FilterConfig {
        rules: exchange::rule_configs(&cfg),
        config: Arc::new(cfg),
        counters,
        verdict_us,
        next_id: AtomicU32::new(1),
    }))
}

/// A route's rule (`DynamicModuleFilterPerRoute`); `None` refuses the route configuration,
/// after a critical line saying why.
pub fn route_config_new(name: &[u8], bytes: &[u8]) -> Option<RouteConfig> {
    if name != FILTER_NAME {
        log(
            LogLevel::Critical,
            &format!(
                "invalid per-route configuration: filter_name {:?}, expected \"twiml_guard\"",
                String::from_utf8_lossy(name)
            ),
        );
        return None;
    }
    match RouteConfig::new(bytes) {
        Ok(route) => {
            let rule = route.rule();
            log(
                LogLevel::Info,
                &format!(
                    "route rule {} configured: mode={:?} rewrite_action={:?}",
                    rule.name, rule.mode, rule.rewrite_action
                ),
            );
            Some(route)
        }
        Err(e) => {
            log(
                LogLevel::Critical,
                &format!("invalid per-route configuration: {e}"),
            );
            None
        }
    }
}

/// Every metric the wasm filter defines, under the same names; the gauges say which
/// configuration is active. A name defined again (an ECDS update) is the same metric.
fn define_metrics(
    envoy: &EnvoyConfig,
    cfg: &Config,
) -> Result<([usize; Counter::COUNT], usize), String> {
    let mut counters = [0usize; Counter::COUNT];
    for (id, counter) in counters.iter_mut().zip(Counter::ALL) {
        *id = envoy.define(MetricKind::Counter, counter.name())?;
    }
    for mode in Mode::ALL {
        let id = envoy.define(MetricKind::Gauge, metrics::mode_gauge(mode))?;
        envoy.set_gauge(id, u64::from(cfg.mode == mode));
    }
    let rules = envoy.define(MetricKind::Gauge, metrics::RULES)?;
    envoy.set_gauge(rules, cfg.rules.len() as u64);
    let verdict_us = envoy.define(MetricKind::Histogram, metrics::VERDICT_TIME)?;
    Ok((counters, verdict_us))
}

/// One stream.
pub struct Filter {
    config: Arc<FilterConfig>,
    exchange: Exchange,
    /// Set when even the failure path panicked: the stream is left to Envoy from then on.
    broken: bool,
    #[cfg(feature = "fault-injection")]
    fault: crate::fault::Fault,
}

impl Filter {
    pub fn new(config: Arc<FilterConfig>) -> Filter {
        let id = config.next_id.fetch_add(1, Ordering::Relaxed);
        Filter {
            exchange: Exchange::new(id, Arc::clone(&config.config), Arc::clone(&config.rules)),
            config,
            broken: false,
            #[cfg(feature = "fault-injection")]
            fault: crate::fault::Fault::default(),
        }
    }
}

/// Which hook is running.
#[derive(Debug, Clone, Copy)]
pub enum Phase {
    RequestHeaders { end_of_stream: bool },
    RequestBody { end_of_stream: bool },
    RequestTrailers,
    ResponseHeaders { end_of_stream: bool },
    ResponseBody { end_of_stream: bool },
    ResponseTrailers,
}

impl Phase {
    /// The hook is the last word on the response body.
    fn ends_response_body(self) -> bool {
        matches!(
            self,
            Phase::ResponseBody {
                end_of_stream: true
            } | Phase::ResponseTrailers
        )
    }
}

/// Run one hook of a stream; `true` stops (headers held, body buffered). `route` is the rule of
/// the stream's route, given with the request headers. A panic inside the exchange becomes
/// `Exchange::fail`; one inside that, a stream Envoy finishes on its own.
pub fn run(
    filter: &mut Filter,
    envoy: EnvoyFilter,
    phase: Phase,
    route: Option<&RouteConfig>,
) -> bool {
    if filter.broken {
        return false;
    }
    let mut host = Native {
        envoy,
        config: &filter.config,
        #[cfg(feature = "fault-injection")]
        fault: &mut filter.fault,
    };
    let exchange = &mut filter.exchange;
    let ran = catch_unwind(AssertUnwindSafe(|| {
        if let Some(route) = route {
            let (name, cfg) = route.resolve(&host.config.config);
            exchange.set_route_rule(name, cfg);
        }
        dispatch(exchange, &mut host, phase)
    }));
    let action = match ran {
        Ok(action) => action,
        Err(payload) => {
            let message = panic_message(payload.as_ref());
            log(
                LogLevel::Critical,
                &format!("twiml_guard: panic in {phase:?}: {message}; failing the exchange"),
            );
            let end = phase.ends_response_body();
            match catch_unwind(AssertUnwindSafe(|| exchange.fail(&mut host, &message, end))) {
                Ok(action) => action,
                Err(_) => {
                    filter.broken = true;
                    Action::Continue
                }
            }
        }
    };
    action == Action::Pause
}

fn dispatch(exchange: &mut Exchange, host: &mut Native<'_>, phase: Phase) -> Action {
    match phase {
        Phase::RequestHeaders { end_of_stream } => exchange.on_request_headers(host, end_of_stream),
        Phase::RequestBody { end_of_stream } => {
            let size = host.envoy.body_size(Body::Request);
            exchange.on_request_body(host, size, end_of_stream)
        }
        Phase::RequestTrailers => exchange.on_request_trailers(host),
        Phase::ResponseHeaders { end_of_stream } => {
            exchange.on_response_headers(host, end_of_stream)
        }
        Phase::ResponseBody { end_of_stream } => {
            let size = host.envoy.body_size(Body::Response);
            exchange.on_response_body(host, size, end_of_stream)
        }
        Phase::ResponseTrailers => exchange.on_response_trailers(host),
    }
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_string()
    }
}

/// Envoy through the dynamic-module ABI, for the exchange.
pub struct Native<'a> {
    envoy: EnvoyFilter,
    config: &'a FilterConfig,
    #[cfg(feature = "fault-injection")]
    fault: &'a mut crate::fault::Fault,
}

impl Host for Native<'_> {
    fn headers(&mut self, map: Headers, names: &[&str]) -> Vec<(String, String)> {
        #[cfg(feature = "fault-injection")]
        if map == Headers::Request {
            let asked = self.envoy.header(map, crate::fault::HEADER);
            self.fault.on_request_headers(asked.as_deref());
        }
        self.envoy.headers(map, names)
    }

    fn header(&mut self, map: Headers, name: &str) -> Option<String> {
        self.envoy.header(map, name)
    }

    fn set_header(&mut self, map: Headers, name: &str, value: Option<&str>) -> Result<(), String> {
        if self.envoy.set_header(map, name, value) {
            Ok(())
        } else {
            Err("headers not available".into())
        }
    }

    fn add_header(&mut self, map: Headers, name: &str, value: &str) -> Result<(), String> {
        if self.envoy.add_header(map, name, value) {
            Ok(())
        } else {
            Err("headers not available".into())
        }
    }

    fn read_body(&mut self, body: Body, len: usize) -> Result<Vec<u8>, String> {
        #[cfg(feature = "fault-injection")]
        self.fault.on_read_body(body);
        Ok(self.envoy.read_body(body, len))
    }

    fn replace_response_body(&mut self, _size: usize, new: &[u8]) -> Result<(), String> {
        if self.envoy.replace_response_body(new) {
            Ok(())
        } else {
            Err("body not available".into())
        }
    }

    fn send_reply(
        &mut self,
        status: u32,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<(), String> {
        self.envoy.send_response(status, headers, body);
        Ok(())
    }

    fn log_level(&mut self) -> Option<LogLevel> {
        const LEVELS: [LogLevel; 6] = [
            LogLevel::Trace,
            LogLevel::Debug,
            LogLevel::Info,
            LogLevel::Warn,
            LogLevel::Error,
            LogLevel::Critical,
        ];
        LEVELS
            .into_iter()
            .find(|l| abi::log_enabled(level_number(*l)))
    }

    fn log(&mut self, level: LogLevel, message: &str) {
        log(level, message);
    }

    fn bump(&mut self, counter: Counter) {
        if let Some(id) = self.config.counters.get(counter.index()) {
            self.envoy.increment_counter(*id);
        }
    }

    fn record_verdict_us(&mut self, micros: u64) {
        self.envoy.record_histogram(self.config.verdict_us, micros);
    }

    fn now(&mut self) -> Option<SystemTime> {
        Some(SystemTime::now())
    }
}
