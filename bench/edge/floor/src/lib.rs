//! The floor of `make bench-edge`: a proxy-wasm module with the guard's root and HTTP contexts,
//! built with the same SDK, that does nothing in any callback. Envoy enters the VM for it exactly
//! as often as for the guard, so the gap between no filter and this module is the cost of the
//! proxy-wasm ABI itself, which no change inside the guard can win back.

#[cfg(target_arch = "wasm32")]
mod module {
    use proxy_wasm::traits::{Context, HttpContext, RootContext};
    use proxy_wasm::types::ContextType;

    struct Root;

    impl Context for Root {}

    impl RootContext for Root {
        fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
            Some(Box::new(Http))
        }

        fn get_type(&self) -> Option<ContextType> {
            Some(ContextType::HttpContext)
        }
    }

    /// Every HTTP callback keeps the SDK's default: continue, touching nothing.
    struct Http;

    impl Context for Http {}

    impl HttpContext for Http {}

    proxy_wasm::main! {{
        proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root) });
    }}
}
