//! The twiml core as JSON in and out for the npm package, through the C ABI in `abi`: the JSON
//! itself is `twiml::report`'s, the same the CLI and the host's playground use.
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
