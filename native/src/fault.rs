//! Fault injection for the end-to-end tests, built only with the `fault-injection` feature: a
//! request carrying `x-twiml-guard-fault: request` panics while its headers are read, one with
//! `x-twiml-guard-fault: response` panics while its response body is read, both inside the
//! exchange. The tests then check Envoy answers the configured failure and keeps serving.

// Panicking on request is this module's whole job.
#![allow(clippy::panic)]

use twiml_guard_edge::exchange::Body;

/// The request header that asks for a fault.
pub const HEADER: &str = "x-twiml-guard-fault";

#[derive(Debug, Default)]
pub struct Fault {
    /// The request asked for a panic when its response body is read.
    on_response_body: bool,
}

impl Fault {
    /// `asked`: the request's `x-twiml-guard-fault`, if any.
    pub fn on_request_headers(&mut self, asked: Option<&str>) {
        match asked {
            Some("request") => panic!("injected fault while reading request headers"),
            Some("response") => self.on_response_body = true,
            _ => {}
        }
    }

    pub fn on_read_body(&mut self, body: Body) {
        if body == Body::Response && self.on_response_body {
            panic!("injected fault while reading the response body");
        }
    }
}
