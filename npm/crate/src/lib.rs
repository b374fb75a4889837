//! The twiml core as JSON in and out, for the npm package (through the C ABI in `abi`, on wasm)
//! and for `twiml-guard lint --format json` (natively): one serializer, so the CLI and the
//! package cannot disagree on a field.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing,
        clippy::unreachable
    )
)]

#[cfg(target_family = "wasm")]
mod abi;
pub mod json;

pub use json::{analyze_json, lint_json, lint_value, rewrite_json, sniff_json};
