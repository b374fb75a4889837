//! The host service binary: terminates Twilio media streams behind Envoy and runs the post-call
//! pipeline.
fn main() {}
