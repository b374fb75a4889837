//! The twiml-guard Envoy filter: a proxy-wasm shim that feeds upstream TwiML to the `twiml` core
//! and applies the configured mode (rewrite, strict, monitor).
//!
//! Every decision lives in `twiml-guard-edge` (shared with the native shim); `shell` is the thin
//! proxy-wasm layer, built only for wasm32.

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
