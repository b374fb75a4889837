//! The native floor of `make bench-edge`: an Envoy 1.40 dynamic module (ABI v0.2.0) with every
//! hook the guard's native module exports, each doing nothing and continuing. The gap between no
//! filter and this module is the dynamic-module ABI's own cost.
// The exports are the ABI's entry points; none dereferences a pointer.
#![allow(unsafe_code)]

use std::ffi::{c_char, c_int, c_void};

/// Any non-null pointer: Envoy only hands it back.
static TOKEN: u8 = 0;

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_program_init() -> *const c_char {
    c"v0.2.0".as_ptr()
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_new(
    _config_envoy: *mut c_void,
    _name_ptr: *const c_char,
    _name_len: usize,
    _config_ptr: *const c_char,
    _config_len: usize,
) -> *const c_void {
    std::ptr::addr_of!(TOKEN).cast()
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_new(
    _config: *const c_void,
    _filter_envoy: *mut c_void,
) -> *const c_void {
    std::ptr::addr_of!(TOKEN).cast()
}

/// Every stream hook: continue (0).
macro_rules! continuing {
    ($($name:ident),*) => {$(
        #[no_mangle]
        pub extern "C" fn $name(_filter_envoy: *mut c_void, _filter: *const c_void, _end: bool) -> c_int {
            0
        }
    )*};
}

continuing!(
    envoy_dynamic_module_on_http_filter_request_headers,
    envoy_dynamic_module_on_http_filter_request_body,
    envoy_dynamic_module_on_http_filter_request_trailers,
    envoy_dynamic_module_on_http_filter_response_headers,
    envoy_dynamic_module_on_http_filter_response_body,
    envoy_dynamic_module_on_http_filter_response_trailers
);

/// Hooks Envoy requires that have nothing to do here.
macro_rules! nothing {
    ($($name:ident),*) => {$(
        #[no_mangle]
        pub extern "C" fn $name() {}
    )*};
}

nothing!(
    envoy_dynamic_module_on_http_filter_config_destroy,
    envoy_dynamic_module_on_http_filter_destroy,
    envoy_dynamic_module_on_http_filter_stream_complete,
    envoy_dynamic_module_on_http_filter_http_callout_done,
    envoy_dynamic_module_on_http_filter_http_stream_headers,
    envoy_dynamic_module_on_http_filter_http_stream_data,
    envoy_dynamic_module_on_http_filter_http_stream_trailers,
    envoy_dynamic_module_on_http_filter_http_stream_complete,
    envoy_dynamic_module_on_http_filter_http_stream_reset,
    envoy_dynamic_module_on_http_filter_scheduled,
    envoy_dynamic_module_on_http_filter_downstream_above_write_buffer_high_watermark,
    envoy_dynamic_module_on_http_filter_downstream_below_write_buffer_low_watermark
);
