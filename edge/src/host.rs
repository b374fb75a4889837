//! Envoy as one exchange sees it, whichever shim runs it: the calls an exchange makes ([`Host`])
//! and what it answers each callback ([`Action`]). A leaf: each shim implements it over its own
//! calls into Envoy (proxy-wasm hostcalls, or the dynamic-module ABI).

use std::time::SystemTime;

use crate::decide::LogLevel;
use crate::metrics::Counter;

/// Which header map a call is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Headers {
    Request,
    Response,
}

/// Which body a read is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    Request,
    Response,
}

/// What a callback tells Envoy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Let the headers or the data so far go on.
    Continue,
    /// Hold them: headers stay changeable, body data is buffered until a later callback.
    Pause,
}

/// Envoy, as an exchange sees it. Errors are the host's words, for a log line: a failed call
/// never panics and never stops the exchange.
pub trait Host {
    /// The headers of a map named in `names` (lowercase), each name's values in map order, in
    /// one call; a host may hand over the others too (a host error reads as none).
    fn headers(&mut self, map: Headers, names: &[&str]) -> Vec<(String, String)>;
    /// The first value of one header.
    fn header(&mut self, map: Headers, name: &str) -> Option<String>;
    /// Set a header to one value, or remove every value of it (`None`).
    fn set_header(&mut self, map: Headers, name: &str, value: Option<&str>) -> Result<(), String>;
    /// Add one more value of a header.
    fn add_header(&mut self, map: Headers, name: &str, value: &str) -> Result<(), String>;
    /// The first `len` bytes of a body as buffered so far.
    fn read_body(&mut self, body: Body, len: usize) -> Result<Vec<u8>, String>;
    /// Replace the whole buffered response body (`size` bytes, as the last body callback
    /// reported it) with `new`.
    fn replace_response_body(&mut self, size: usize, new: &[u8]) -> Result<(), String>;
    /// Answer locally instead of forwarding.
    fn send_reply(
        &mut self,
        status: u32,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<(), String>;
    /// The host's log level, when it can tell.
    fn log_level(&mut self) -> Option<LogLevel>;
    fn log(&mut self, level: LogLevel, message: &str);
    fn bump(&mut self, counter: Counter);
    fn record_verdict_us(&mut self, micros: u64);
    fn now(&mut self) -> Option<SystemTime>;
}
