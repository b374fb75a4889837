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

// The module runs inside Envoy's process: a panic that escaped would abort the proxy. Every
// hook catches unwinding, and nothing here may panic on its own account.
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

mod abi;
#[cfg(feature = "fault-injection")]
mod fault;
mod filter;
mod route;
