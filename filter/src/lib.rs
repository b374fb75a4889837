//! The twiml-guard Envoy filter: a proxy-wasm shim that feeds upstream TwiML to the `twiml` core
//! and applies the configured mode (rewrite, strict, monitor).
//!
//! Every decision lives in `twiml-guard-edge` (shared with the native shim); `shell` is the thin
//! proxy-wasm layer, built only for wasm32.

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

#[cfg(target_arch = "wasm32")]
mod shell;

#[cfg(target_arch = "wasm32")]
proxy_wasm::main! {{
    shell::install_panic_hook();
    proxy_wasm::set_log_level(proxy_wasm::types::LogLevel::Trace);
    proxy_wasm::set_root_context(|_| -> Box<dyn proxy_wasm::traits::RootContext> {
        Box::new(shell::Root::default())
    });
}}
