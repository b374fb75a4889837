//! One test binary for every end-to-end test (real Envoy, the filter, the host service and
//! legacy backends as child processes): each test binary costs a thin-LTO link, so the suites
//! are modules of this one rather than binaries of their own.

mod common;
mod dashboard;
mod db_outage;
mod filter_config;
mod filter_corpus;
mod filter_edge;
mod filter_monitor;
mod filter_ops;
mod filter_rewrite;
mod filter_robustness;
mod filter_strict;
mod filter_websocket;
mod full_call;
mod host_signature_oracle;
mod many_streams;
mod media_token;
mod native_module;
mod oci_image;
mod oracle;
mod replicas;
mod shim_parity;
mod signature_filter;
mod signature_oracle;
