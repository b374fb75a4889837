//! The hooks Envoy calls, exported under the names ABI v0.2.0 gives them: each turns Envoy's raw
//! pointers into the shim's own values and runs under `catch_unwind`, so no panic reaches Envoy.
//! Part of the bindings (`abi`), the one place with `unsafe`.
#![allow(unsafe_code)]

use std::ffi::{c_char, c_int, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;
use std::sync::Arc;

use super::{log, Buf, EnvoyConfig, EnvoyFilter, ABI_VERSION};
use crate::filter::{self, Filter, FilterConfig, Phase};
use crate::route::RouteConfig;

/// Body and header statuses share their numbers for what the guard returns: 0 continues, 1 stops
/// (`StopIteration` for headers and trailers, `StopIterationAndBuffer` for a body).
type Status = c_int;

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_program_init() -> *const c_char {
    ABI_VERSION.as_ptr().cast()
}

/// # Safety
/// Envoy passes its config pointer and two buffers valid for the call.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_new(
    config_envoy: *mut c_void,
    name: Buf,
    config: Buf,
) -> *const c_void {
    // SAFETY: both buffers are Envoy's, valid for this call; `config_new` copies what it keeps.
    let (name, config) = unsafe { (name.bytes(), config.bytes()) };
    let envoy = EnvoyConfig(config_envoy);
    match catch_unwind(AssertUnwindSafe(|| {
        filter::config_new(&envoy, name, config)
    })) {
        Ok(Some(cfg)) => Arc::into_raw(cfg).cast(),
        // NULL refuses the configuration; `config_new` logged why.
        Ok(None) => ptr::null(),
        Err(_) => {
            log(
                5,
                "twiml_guard: panic while configuring; configuration refused",
            );
            ptr::null()
        }
    }
}

/// # Safety
/// `config` came from `config_new` and Envoy releases it once.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_destroy(config: *const c_void) {
    if !config.is_null() {
        // SAFETY: the pointer is the `Arc` `config_new` leaked; this drops Envoy's reference.
        drop(unsafe { Arc::from_raw(config.cast::<FilterConfig>()) });
    }
}

/// # Safety
/// Envoy passes two buffers valid for the call.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_per_route_config_new(
    name: Buf,
    config: Buf,
) -> *const c_void {
    // SAFETY: both buffers are Envoy's, valid for this call; the rule is copied out of them.
    let (name, config) = unsafe { (name.bytes(), config.bytes()) };
    match catch_unwind(|| filter::route_config_new(name, config)) {
        Ok(Some(route)) => Box::into_raw(Box::new(route)).cast_const().cast(),
        // NULL refuses the route configuration; `route_config_new` logged why.
        Ok(None) => ptr::null(),
        Err(_) => {
            log(
                5,
                "twiml_guard: panic while reading a route's rule; refused",
            );
            ptr::null()
        }
    }
}

/// # Safety
/// `config` came from `per_route_config_new` and Envoy releases it once.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_per_route_config_destroy(
    config: *const c_void,
) {
    if !config.is_null() {
        // SAFETY: the pointer is the `Box` `per_route_config_new` leaked.
        let route = unsafe { Box::from_raw(config.cast_mut().cast::<RouteConfig>()) };
        let _ = catch_unwind(AssertUnwindSafe(move || drop(route)));
    }
}

/// # Safety
/// `config` came from `config_new` and is still alive.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_new(
    config: *const c_void,
    _filter_envoy: *mut c_void,
) -> *const c_void {
    if config.is_null() {
        return ptr::null();
    }
    let config = config.cast::<FilterConfig>();
    // SAFETY: Envoy still holds the `Arc` from `config_new`; this takes one more reference for
    // the stream, so the configuration outlives it even if Envoy drops its own first.
    let config = unsafe {
        Arc::increment_strong_count(config);
        Arc::from_raw(config)
    };
    match catch_unwind(AssertUnwindSafe(|| Box::new(Filter::new(config)))) {
        Ok(filter) => Box::into_raw(filter).cast(),
        Err(_) => ptr::null(),
    }
}

/// # Safety
/// `filter` came from `filter_new` and Envoy releases it once.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_destroy(filter: *const c_void) {
    if !filter.is_null() {
        // SAFETY: the pointer is the `Box` `filter_new` leaked.
        let filter = unsafe { Box::from_raw(filter.cast_mut().cast::<Filter>()) };
        // A panic in a destructor must not reach Envoy either.
        let _ = catch_unwind(AssertUnwindSafe(move || drop(filter)));
    }
}

/// One hook of a stream: the filter behind the pointer, under `catch_unwind`. A panic that
/// escapes even `filter::run`'s own handling continues the stream.
///
/// # Safety
/// `filter` came from `filter_new` and is not used elsewhere while the hook runs.
unsafe fn hook(filter_envoy: *mut c_void, filter: *const c_void, phase: Phase) -> Status {
    if filter.is_null() {
        return 0;
    }
    // SAFETY: Envoy calls a stream's hooks one at a time on its worker, so this is the only
    // reference to the filter while the hook runs.
    let filter = unsafe { &mut *filter.cast_mut().cast::<Filter>() };
    let envoy = EnvoyFilter(filter_envoy);
    let route = match phase {
        // SAFETY: a non-null pointer is a `RouteConfig` `per_route_config_new` boxed (Envoy
        // resolves it by this filter's name, and a route's entry for it names this module),
        // alive while the route configuration that routed this stream is, beyond this hook.
        Phase::RequestHeaders { .. } => unsafe {
            envoy.route_config().cast::<RouteConfig>().as_ref()
        },
        _ => None,
    };
    catch_unwind(AssertUnwindSafe(|| {
        filter::run(filter, envoy, phase, route)
    }))
    .map_or(0, Status::from)
}

/// # Safety
/// See [`hook`].
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_request_headers(
    filter_envoy: *mut c_void,
    filter: *const c_void,
    end_of_stream: bool,
) -> Status {
    // SAFETY: see `hook`.
    unsafe {
        hook(
            filter_envoy,
            filter,
            Phase::RequestHeaders { end_of_stream },
        )
    }
}

/// # Safety
/// See [`hook`].
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_request_body(
    filter_envoy: *mut c_void,
    filter: *const c_void,
    end_of_stream: bool,
) -> Status {
    // SAFETY: see `hook`.
    unsafe { hook(filter_envoy, filter, Phase::RequestBody { end_of_stream }) }
}

/// # Safety
/// See [`hook`].
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_request_trailers(
    filter_envoy: *mut c_void,
    filter: *const c_void,
) -> Status {
    // SAFETY: see `hook`.
    unsafe { hook(filter_envoy, filter, Phase::RequestTrailers) }
}

/// # Safety
/// See [`hook`].
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_response_headers(
    filter_envoy: *mut c_void,
    filter: *const c_void,
    end_of_stream: bool,
) -> Status {
    // SAFETY: see `hook`.
    unsafe {
        hook(
            filter_envoy,
            filter,
            Phase::ResponseHeaders { end_of_stream },
        )
    }
}

/// # Safety
/// See [`hook`].
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_response_body(
    filter_envoy: *mut c_void,
    filter: *const c_void,
    end_of_stream: bool,
) -> Status {
    // SAFETY: see `hook`.
    unsafe { hook(filter_envoy, filter, Phase::ResponseBody { end_of_stream }) }
}

/// # Safety
/// See [`hook`].
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_response_trailers(
    filter_envoy: *mut c_void,
    filter: *const c_void,
) -> Status {
    // SAFETY: see `hook`.
    unsafe { hook(filter_envoy, filter, Phase::ResponseTrailers) }
}

// Hooks Envoy 1.40 requires every HTTP filter module to export; the guard has no use for them.

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_stream_complete(
    _filter_envoy: *mut c_void,
    _filter: *const c_void,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_callout_done() {}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_headers() {}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_data() {}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_trailers() {}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_complete() {}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_reset() {}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_scheduled() {}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_downstream_above_write_buffer_high_watermark()
{
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_downstream_below_write_buffer_low_watermark()
{
}
