//! The twiml-guard Envoy filter: a proxy-wasm shim that feeds upstream TwiML to the `twiml` core
//! and applies the configured mode (rewrite, strict, monitor).
//!
//! Layout, leaves first (no module imports one that imports it back): `syntax` (the
//! configuration error and syntax checks) and `route` (what a request is); `signature` (Twilio
//! request signatures, knowing the configuration only through its `Scope`); `config` parses and
//! validates the plugin JSON; `decide` holds every decision as plain functions (tested
//! natively); `shell` is the thin proxy-wasm layer, built only for wasm32.

// A panic in the filter is a VM trap: the request gets an empty 200 and, depending on the
// failure policy, every later call fails or skips the guard. Outside tests nothing may panic.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing,
        clippy::unreachable,
        clippy::todo,
        clippy::unimplemented
    )
)]

pub mod config;
pub mod decide;
pub mod route;
pub mod signature;
pub mod syntax;

#[cfg(target_arch = "wasm32")]
mod shell;

/// The crate version, logged at every configure.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The git commit the module was built from, when the build set `TWIML_GUARD_GIT_COMMIT`
/// (`TWIML_GUARD_GIT_COMMIT=$(git rev-parse --short HEAD) make wasm`); `unknown` otherwise.
pub fn build_commit() -> &'static str {
    match option_env!("TWIML_GUARD_GIT_COMMIT") {
        Some(commit) if !commit.is_empty() => commit,
        _ => "unknown",
    }
}

#[cfg(target_arch = "wasm32")]
proxy_wasm::main! {{
    shell::install_panic_hook();
    proxy_wasm::set_log_level(proxy_wasm::types::LogLevel::Trace);
    proxy_wasm::set_root_context(|_| -> Box<dyn proxy_wasm::traits::RootContext> {
        Box::new(shell::Root::default())
    });
}}
