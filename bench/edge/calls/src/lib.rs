//! A row of `make bench-edge` between the empty module and the guard: a proxy-wasm module that
//! makes, on every exchange, the same calls into Envoy as the guard does for the seed TwiML
//! (the list `edge/src/exchange/tests.rs` pins), with none of the guard's logic: whatever came,
//! the answer is the guard's rewrite of the seed. Its cost over the empty module is what those
//! calls cost Envoy and the VM; the guard's cost over it is the guard's own code in the VM.

#[cfg(target_arch = "wasm32")]
mod module {
    use proxy_wasm::hostcalls;
    use proxy_wasm::traits::{Context, HttpContext, RootContext};
    use proxy_wasm::types::{Action, BufferType, ContextType, MapType, MetricType};

    /// The guard's answer to the seed.
    const REPLACEMENT: &[u8] = include_bytes!("../../../../twiml/fixtures/seed_001.strip.xml");

    struct Root {
        counter: u32,
        histogram: u32,
    }

    impl Context for Root {}

    impl RootContext for Root {
        fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
            let define = |kind, name| hostcalls::define_metric(kind, name).ok();
            match (
                define(MetricType::Counter, "twiml_guard_calls.total"),
                define(MetricType::Histogram, "twiml_guard_calls.verdict_us"),
            ) {
                (Some(counter), Some(histogram)) => {
                    self.counter = counter;
                    self.histogram = histogram;
                    true
                }
                _ => false,
            }
        }

        fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
            Some(Box::new(Http {
                counter: self.counter,
                histogram: self.histogram,
            }))
        }

        fn get_type(&self) -> Option<ContextType> {
            Some(ContextType::HttpContext)
        }
    }

    /// Results are dropped: the calls are the point, as in the guard, which logs a failure and
    /// goes on.
    struct Http {
        counter: u32,
        histogram: u32,
    }

    impl Context for Http {}

    impl HttpContext for Http {
        fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
            let _ = hostcalls::get_map(MapType::HttpRequestHeaders);
            let _ = hostcalls::add_map_value(
                MapType::HttpRequestHeaders,
                "accept-encoding",
                "identity",
            );
            Action::Continue
        }

        fn on_http_response_headers(
            &mut self,
            _num_headers: usize,
            _end_of_stream: bool,
        ) -> Action {
            let _ = hostcalls::get_map(MapType::HttpResponseHeaders);
            // Held until the verdict, as the guard holds them by default.
            Action::Pause
        }

        fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
            let _ = hostcalls::get_current_time();
            if !end_of_stream {
                return Action::Pause;
            }
            let _ = hostcalls::get_buffer(BufferType::HttpResponseBody, 0, body_size);
            let _ = hostcalls::increment_metric(self.counter, 1);
            let _ = hostcalls::increment_metric(self.counter, 1);
            let _ = hostcalls::get_current_time();
            let _ = hostcalls::record_metric(self.histogram, 1);
            let _ = hostcalls::set_map_value(
                MapType::HttpResponseHeaders,
                "x-twiml-guard",
                Some("rewritten; blocks=Connect/Stream"),
            );
            let length = REPLACEMENT.len().to_string();
            let _ = hostcalls::set_map_value(
                MapType::HttpResponseHeaders,
                "content-length",
                Some(&length),
            );
            let _ = hostcalls::set_buffer(BufferType::HttpResponseBody, 0, body_size, REPLACEMENT);
            Action::Continue
        }
    }

    proxy_wasm::main! {{
        proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> {
            Box::new(Root { counter: 0, histogram: 0 })
        });
    }}
}
