//! The twiml core for JavaScript (the npm package): `bindings` is what wasm-bindgen exports, over
//! `twiml::report` (the JSON shapes the CLI and the host share) and the edge filter's response
//! decisions (`twiml_guard_edge::decide`, configured by `guard`), for the Express middleware and
//! `guardResponse`.

pub mod bindings;
pub mod guard;
