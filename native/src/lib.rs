//! The twiml-guard Envoy filter as a native dynamic module: Envoy 1.40 `dlopen`s
//! `libtwiml_guard_native.so` and calls it through the dynamic-module C ABI, with none of the
//! proxy-wasm sandbox's per-request cost. It takes the wasm filter's configuration JSON
//! unchanged and runs the same `twiml-guard-edge` exchange, so verdicts, bytes, headers, replies,
//! counters and log lines are the same.
//!
//! Layout: `abi` is the hand-written bindings and the exported hooks (the only unsafe code);
//! `filter` is the safe shim (configuration, per-stream filter, the exchange's host, panic
//! handling); `route` the per-route rules; `fault` is the tests' fault injection, behind a
//! feature.

mod abi;
#[cfg(feature = "fault-injection")]
mod fault;
mod filter;
mod route;
