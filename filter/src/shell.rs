//! The proxy-wasm shell: the root context (config and counters, once per plugin) and the
//! per-request HTTP context, which hands every callback to the edge crate's `Exchange` over
//! [`Hostcalls`]. Every hostcall result is handled here: the SDK's trait helpers panic on a host
//! error, and a panic is a VM trap that takes every call on this worker with it.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MapType, MetricType};

use twiml_guard_edge::config::{self, Config, Mode};
use twiml_guard_edge::decide;
use twiml_guard_edge::exchange::{self, Body, Exchange, Headers, Host, RuleConfigs};
use twiml_guard_edge::metrics::{self, Counter};

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

/// proxy-wasm's level as the edge crate's, and back (the same order, trace to critical).
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

fn wasm_level(level: decide::LogLevel) -> LogLevel {
    match level {
        decide::LogLevel::Trace => LogLevel::Trace,
        decide::LogLevel::Debug => LogLevel::Debug,
        decide::LogLevel::Info => LogLevel::Info,
        decide::LogLevel::Warn => LogLevel::Warn,
        decide::LogLevel::Error => LogLevel::Error,
        decide::LogLevel::Critical => LogLevel::Critical,
    }
}

// === counters ===

/// Host ids of the metrics, defined once per root context (a name defined again, as after an
/// ECDS update, gets the same metric: counters carry on).
#[derive(Debug, Clone, Copy)]
struct Metrics {
    /// In `Counter::ALL` order.
    counters: [u32; Counter::COUNT],
    /// Gauges, in `Mode::ALL` order.
    modes: [u32; 3],
    rules: u32,
    verdict_us: u32,
}

impl Metrics {
    fn define() -> Result<Metrics, String> {
        let define = |kind: MetricType, name: &str| {
            hostcalls::define_metric(kind, name).map_err(|e| format!("define_metric {name}: {e:?}"))
        };
        // Defined at configure, so every counter reads 0 before its first event.
        let mut counters = [0u32; Counter::COUNT];
        for (id, counter) in counters.iter_mut().zip(Counter::ALL) {
            *id = define(MetricType::Counter, counter.name())?;
        }
        let mut modes = [0u32; 3];
        for (id, mode) in modes.iter_mut().zip(Mode::ALL) {
            *id = define(MetricType::Gauge, metrics::mode_gauge(mode))?;
        }
        Ok(Metrics {
            counters,
            modes,
            rules: define(MetricType::Gauge, metrics::RULES)?,
            verdict_us: define(MetricType::Histogram, metrics::VERDICT_TIME)?,
        })
    }

    /// The gauges that say which configuration is active.
    fn configured(&self, cfg: &Config) {
        for (id, mode) in self.modes.iter().zip(Mode::ALL) {
            let _ = hostcalls::record_metric(*id, u64::from(cfg.mode == mode));
        }
        let _ = hostcalls::record_metric(self.rules, cfg.rules.len() as u64);
    }
}

// === impl Root ===

#[derive(Default)]
pub struct Root {
    config: Option<Arc<Config>>,
    rules: RuleConfigs,
    metrics: Option<Metrics>,
    /// Envoy's wasm log level, read at configure and on every tick: each exchange takes it from
    /// here instead of asking Envoy (a hostcall per request), and a level changed through the
    /// admin API reaches new exchanges within [`LOG_LEVEL_REFRESH`].
    log_level: Option<decide::LogLevel>,
}

/// How often the root context reads Envoy's log level again.
const LOG_LEVEL_REFRESH: Duration = Duration::from_secs(1);

impl Root {
    fn refresh_log_level(&mut self) {
        self.log_level = hostcalls::get_log_level().ok().map(edge_level);
    }
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
        // The secrets come from the VM's environment (`vm_config.environment_variables`).
        let cfg = match config::load(&bytes, |name| std::env::var(name).ok()) {
            Ok(cfg) => cfg,
            Err(e) => {
                log(
                    LogLevel::Critical,
                    &format!("invalid plugin configuration: {e}"),
                );
                return false;
            }
        };
        if self.metrics.is_none() {
            match Metrics::define() {
                Ok(m) => self.metrics = Some(m),
                Err(e) => {
                    log(LogLevel::Critical, &format!("cannot define counters: {e}"));
                    return false;
                }
            }
        }
        for line in config::configured_lines(&cfg, &bytes) {
            log(LogLevel::Info, &line);
        }
        if let Some(m) = &self.metrics {
            m.configured(&cfg);
        }
        self.rules = exchange::rule_configs(&cfg);
        self.config = Some(Arc::new(cfg));
        self.refresh_log_level();
        // Without a tick the level read here would stay; a failure leaves it at that.
        let _ = hostcalls::set_tick_period(LOG_LEVEL_REFRESH);
        true
    }

    fn on_tick(&mut self) {
        self.refresh_log_level();
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        let (Some(config), Some(metrics)) = (self.config.clone(), self.metrics) else {
            return None;
        };
        Some(Box::new(Http {
            exchange: Exchange::new(context_id, config, Arc::clone(&self.rules)),
            host: Hostcalls {
                metrics,
                log_level: self.log_level,
            },
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

// === the host ===

/// Envoy through proxy-wasm hostcalls, for the exchange.
struct Hostcalls {
    metrics: Metrics,
    /// The root context's last reading of Envoy's log level.
    log_level: Option<decide::LogLevel>,
}

fn map(headers: Headers) -> MapType {
    match headers {
        Headers::Request => MapType::HttpRequestHeaders,
        Headers::Response => MapType::HttpResponseHeaders,
    }
}

fn buffer(body: Body) -> BufferType {
    match body {
        Body::Request => BufferType::HttpRequestBody,
        Body::Response => BufferType::HttpResponseBody,
    }
}

impl Host for Hostcalls {
    fn headers(&mut self, headers: Headers, _names: &[&str]) -> Vec<(String, String)> {
        // One hostcall for the whole map costs less than one per name.
        hostcalls::get_map(map(headers)).unwrap_or_default()
    }

    fn header(&mut self, headers: Headers, name: &str) -> Option<String> {
        hostcalls::get_map_value(map(headers), name).ok().flatten()
    }

    fn set_header(
        &mut self,
        headers: Headers,
        name: &str,
        value: Option<&str>,
    ) -> Result<(), String> {
        hostcalls::set_map_value(map(headers), name, value).map_err(|e| format!("{e:?}"))
    }

    fn add_header(&mut self, headers: Headers, name: &str, value: &str) -> Result<(), String> {
        hostcalls::add_map_value(map(headers), name, value).map_err(|e| format!("{e:?}"))
    }

    fn read_body(&mut self, body: Body, len: usize) -> Result<Vec<u8>, String> {
        hostcalls::get_buffer(buffer(body), 0, len)
            .map(|b| b.unwrap_or_default())
            .map_err(|e| format!("{e:?}"))
    }

    /// `set_buffer(body, 0, <whole buffered size>, new)`: any other start offset is a host error.
    fn replace_response_body(&mut self, size: usize, new: &[u8]) -> Result<(), String> {
        hostcalls::set_buffer(BufferType::HttpResponseBody, 0, size, new)
            .map_err(|e| format!("{e:?}"))
    }

    fn send_reply(
        &mut self,
        status: u32,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<(), String> {
        hostcalls::send_http_response(status, headers.to_vec(), Some(body))
            .map_err(|e| format!("{e:?}"))
    }

    fn log_level(&mut self) -> Option<decide::LogLevel> {
        self.log_level
            .or_else(|| hostcalls::get_log_level().ok().map(edge_level))
    }

    fn log(&mut self, level: decide::LogLevel, message: &str) {
        log(wasm_level(level), message);
    }

    fn bump(&mut self, counter: Counter) {
        if let Some(id) = self.metrics.counters.get(counter.index()) {
            // A lost increment is better than a trap; Envoy only fails this for an unknown id.
            let _ = hostcalls::increment_metric(*id, 1);
        }
    }

    fn record_verdict_us(&mut self, micros: u64) {
        let _ = hostcalls::record_metric(self.metrics.verdict_us, micros);
    }

    fn now(&mut self) -> Option<SystemTime> {
        hostcalls::get_current_time().ok()
    }
}

// === impl Http ===

pub struct Http {
    exchange: Exchange,
    host: Hostcalls,
}

fn action(a: exchange::Action) -> Action {
    match a {
        exchange::Action::Continue => Action::Continue,
        exchange::Action::Pause => Action::Pause,
    }
}

impl Context for Http {}

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        action(
            self.exchange
                .on_request_headers(&mut self.host, end_of_stream),
        )
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        action(
            self.exchange
                .on_request_body(&mut self.host, body_size, end_of_stream),
        )
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        action(self.exchange.on_request_trailers(&mut self.host))
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        action(
            self.exchange
                .on_response_headers(&mut self.host, end_of_stream),
        )
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        action(
            self.exchange
                .on_response_body(&mut self.host, body_size, end_of_stream),
        )
    }

    fn on_http_response_trailers(&mut self, _num_trailers: usize) -> Action {
        action(self.exchange.on_response_trailers(&mut self.host))
    }
}
