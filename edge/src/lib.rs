//! The twiml-guard edge filter's logic, apart from any proxy: the configuration, what a request
//! is, Twilio request signatures and every decision about a response, as plain functions over
//! plain values. The Envoy shims (`filter/`, proxy-wasm; `native/`, a dynamic module) only read
//! headers and bodies, call these, and apply the answer, so both give the same verdicts.
//!
//! Layout, leaves first (no module imports one that imports it back): `syntax` (the
//! configuration error and syntax checks), `route` (what a request is) and `headers` (header
//! maps as read); `signature` (Twilio request signatures, knowing the configuration only through
//! its `Scope`); `config` parses and validates the plugin JSON; `decide` holds every decision;
//! `metrics` names what is counted and `stats` reads it back from Envoy's admin `/stats` text;
//! `exchange` runs one request and its response through them against a [`host::Host`], the one
//! trait a shim implements.

pub mod config;
pub mod decide;
pub mod exchange;
pub mod headers;
pub mod host;
pub mod metrics;
pub mod route;
pub mod signature;
pub mod stats;
pub mod syntax;

/// The crate version, logged at every configure.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The git commit the filter was built from, when the build set `TWIML_GUARD_GIT_COMMIT`
/// (`TWIML_GUARD_GIT_COMMIT=$(git rev-parse --short HEAD) make wasm`); `unknown` otherwise.
pub fn build_commit() -> &'static str {
    match option_env!("TWIML_GUARD_GIT_COMMIT") {
        Some(commit) if !commit.is_empty() => commit,
        _ => "unknown",
    }
}
