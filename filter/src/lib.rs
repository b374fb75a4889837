//! The twiml-guard Envoy filter: a proxy-wasm shim that feeds upstream TwiML to the `twiml` core
//! and applies the configured mode (rewrite, strict, monitor).
