//! Envoy's dynamic-module ABI v0.2.0 (Envoy 1.40), declared by hand and kept to what the guard
//! uses: the hooks Envoy requires a module to export, and the callbacks into Envoy the shim
//! calls. This is the only module with `unsafe`: raw pointers from Envoy become a `&FilterConfig`
//! or `&mut Filter` here, and Envoy's buffers become byte slices, so `filter.rs` is safe code.
//! Every exported hook (`abi/hooks.rs`) runs its work under `catch_unwind`, so no panic crosses
//! into Envoy (which would abort the whole proxy).
//!
//! Ownership: `config_new` hands Envoy an `Arc<FilterConfig>` as a raw pointer (released in
//! `config_destroy`); each filter holds its own clone, so a configuration replaced by ECDS stays
//! alive for the streams still using it. `filter_new` hands Envoy a `Box<Filter>` (released in
//! `filter_destroy`). Envoy calls a stream's hooks on one worker thread, one at a time.
#![allow(unsafe_code)]

use std::ffi::{c_char, c_int, c_void};
use std::ptr;

use twiml_guard_edge::exchange::{Body, Headers};

/// The ABI version this module was written against (`abi.h` of Envoy 1.40).
static ABI_VERSION: &[u8] = b"v0.2.0\0";

/// A buffer passed by value: Envoy-owned (valid until the hook returns or a setter runs) or
/// module-owned (valid for the call), same layout.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Buf {
    ptr: *const c_char,
    len: usize,
}

impl Buf {
    const NULL: Buf = Buf {
        ptr: ptr::null(),
        len: 0,
    };

    fn of(bytes: &[u8]) -> Buf {
        Buf {
            ptr: bytes.as_ptr().cast(),
            len: bytes.len(),
        }
    }

    /// # Safety
    /// `ptr` must be valid for `len` bytes for the slice's lifetime (Envoy's buffers are, until
    /// the hook returns or a setter runs; the callers copy before either).
    unsafe fn bytes<'a>(self) -> &'a [u8] {
        if self.ptr.is_null() || self.len == 0 {
            &[]
        } else {
            // SAFETY: as the caller promised.
            unsafe { std::slice::from_raw_parts(self.ptr.cast(), self.len) }
        }
    }
}

#[repr(C)]
#[derive(Clone, Copy)]
struct HttpHeader {
    key_ptr: *const c_char,
    key_len: usize,
    value_ptr: *const c_char,
    value_len: usize,
}

impl HttpHeader {
    const EMPTY: HttpHeader = HttpHeader {
        key_ptr: ptr::null(),
        key_len: 0,
        value_ptr: ptr::null(),
        value_len: 0,
    };
}

/// Header maps up to this many entries are read into the stack.
const HEADERS_ON_STACK: usize = 64;

// Enum values, as `abi.h` numbers them.
const REQUEST_HEADERS: c_int = 0;
const RESPONSE_HEADERS: c_int = 2;
const RECEIVED_REQUEST_BODY: c_int = 0;
const BUFFERED_REQUEST_BODY: c_int = 1;
const RECEIVED_RESPONSE_BODY: c_int = 2;
const BUFFERED_RESPONSE_BODY: c_int = 3;
const METRICS_SUCCESS: c_int = 0;

extern "C" {
    fn envoy_dynamic_module_callback_http_get_header(
        f: *mut c_void,
        kind: c_int,
        key: Buf,
        out: *mut Buf,
        index: usize,
        count: *mut usize,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_set_header(
        f: *mut c_void,
        kind: c_int,
        key: Buf,
        value: Buf,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_add_header(
        f: *mut c_void,
        kind: c_int,
        key: Buf,
        value: Buf,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_get_headers_size(f: *mut c_void, kind: c_int) -> usize;
    fn envoy_dynamic_module_callback_http_get_headers(
        f: *mut c_void,
        kind: c_int,
        out: *mut HttpHeader,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_get_body_size(f: *mut c_void, kind: c_int) -> usize;
    fn envoy_dynamic_module_callback_http_get_body_chunks_size(
        f: *mut c_void,
        kind: c_int,
    ) -> usize;
    fn envoy_dynamic_module_callback_http_get_body_chunks(
        f: *mut c_void,
        kind: c_int,
        out: *mut Buf,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_drain_body(f: *mut c_void, kind: c_int, n: usize)
        -> bool;
    fn envoy_dynamic_module_callback_http_append_body(
        f: *mut c_void,
        kind: c_int,
        data: Buf,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_received_buffered_request_body(f: *mut c_void) -> bool;
    fn envoy_dynamic_module_callback_http_received_buffered_response_body(f: *mut c_void) -> bool;
    fn envoy_dynamic_module_callback_http_send_response(
        f: *mut c_void,
        status: u32,
        headers: *mut HttpHeader,
        count: usize,
        body: Buf,
        details: Buf,
    );
    fn envoy_dynamic_module_callback_http_filter_config_define_counter(
        c: *mut c_void,
        name: Buf,
        labels: *mut Buf,
        count: usize,
        id: *mut usize,
    ) -> c_int;
    fn envoy_dynamic_module_callback_http_filter_config_define_gauge(
        c: *mut c_void,
        name: Buf,
        labels: *mut Buf,
        count: usize,
        id: *mut usize,
    ) -> c_int;
    fn envoy_dynamic_module_callback_http_filter_config_define_histogram(
        c: *mut c_void,
        name: Buf,
        labels: *mut Buf,
        count: usize,
        id: *mut usize,
    ) -> c_int;
    fn envoy_dynamic_module_callback_http_filter_config_set_gauge(
        c: *mut c_void,
        id: usize,
        labels: *mut Buf,
        count: usize,
        value: u64,
    ) -> c_int;
    fn envoy_dynamic_module_callback_http_filter_increment_counter(
        f: *mut c_void,
        id: usize,
        labels: *mut Buf,
        count: usize,
        value: u64,
    ) -> c_int;
    fn envoy_dynamic_module_callback_http_filter_record_histogram_value(
        f: *mut c_void,
        id: usize,
        labels: *mut Buf,
        count: usize,
        value: u64,
    ) -> c_int;
    fn envoy_dynamic_module_callback_get_most_specific_route_config(
        f: *mut c_void,
    ) -> *const c_void;
    fn envoy_dynamic_module_callback_log(level: c_int, message: Buf);
    fn envoy_dynamic_module_callback_log_enabled(level: c_int) -> bool;
}

// === safe wrappers ===

/// A line in Envoy's log (the `dynamic_modules` logger), level 0 (trace) to 5 (critical).
pub fn log(level: u8, message: &str) {
    // SAFETY: the message is valid for the call; Envoy copies it.
    unsafe { envoy_dynamic_module_callback_log(c_int::from(level), Buf::of(message.as_bytes())) }
}

/// Whether Envoy keeps lines at `level`.
pub fn log_enabled(level: u8) -> bool {
    // SAFETY: a plain value in, a bool out.
    unsafe { envoy_dynamic_module_callback_log_enabled(c_int::from(level)) }
}

/// Envoy's side of a configuration, valid only inside `config_new` (where metrics are defined).
pub struct EnvoyConfig(*mut c_void);

/// Which metric kind to define.
#[derive(Clone, Copy)]
pub enum MetricKind {
    Counter,
    Gauge,
    Histogram,
}

impl EnvoyConfig {
    /// Define a metric without labels; its id, or why not.
    pub fn define(&self, kind: MetricKind, name: &str) -> Result<usize, String> {
        let mut id = 0usize;
        let define = match kind {
            MetricKind::Counter => envoy_dynamic_module_callback_http_filter_config_define_counter,
            MetricKind::Gauge => envoy_dynamic_module_callback_http_filter_config_define_gauge,
            MetricKind::Histogram => {
                envoy_dynamic_module_callback_http_filter_config_define_histogram
            }
        };
        // SAFETY: `self.0` is the config pointer of the running `config_new`; the name is valid
        // for the call; no labels (null, 0); `id` outlives the call.
        let result = unsafe {
            define(
                self.0,
                Buf::of(name.as_bytes()),
                ptr::null_mut(),
                0,
                &mut id,
            )
        };
        if result == METRICS_SUCCESS {
            Ok(id)
        } else {
            Err(format!("defining {name}: metrics result {result}"))
        }
    }

    pub fn set_gauge(&self, id: usize, value: u64) {
        // SAFETY: as for `define`. A failure only leaves the gauge as it was.
        unsafe {
            envoy_dynamic_module_callback_http_filter_config_set_gauge(
                self.0,
                id,
                ptr::null_mut(),
                0,
                value,
            );
        }
    }
}

/// A header name or value as a `String`, as `String::from_utf8_lossy` gives it; checked with
/// `str::from_utf8` first, which is several times faster on the valid (ASCII) bytes of nearly
/// every header.
fn owned(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_owned(),
        Err(_) => String::from_utf8_lossy(bytes).into_owned(),
    }
}

/// Envoy's side of one stream, valid for the hook it was passed to.
pub struct EnvoyFilter(*mut c_void);

impl EnvoyFilter {
    fn header_kind(side: Headers) -> c_int {
        match side {
            Headers::Request => REQUEST_HEADERS,
            Headers::Response => RESPONSE_HEADERS,
        }
    }

    /// (received, buffered) body kinds of a side.
    fn body_kinds(side: Body) -> (c_int, c_int) {
        match side {
            Body::Request => (RECEIVED_REQUEST_BODY, BUFFERED_REQUEST_BODY),
            Body::Response => (RECEIVED_RESPONSE_BODY, BUFFERED_RESPONSE_BODY),
        }
    }

    /// The headers of a map named in `names`, in map order. Envoy hands over every header in
    /// one call, as views into its map; only the named ones are copied out.
    pub fn headers(&self, side: Headers, names: &[&str]) -> Vec<(String, String)> {
        let kind = Self::header_kind(side);
        // SAFETY: `self.0` is the stream of the running hook.
        let n = unsafe { envoy_dynamic_module_callback_http_get_headers_size(self.0, kind) };
        if n == 0 {
            return Vec::new();
        }
        // Most maps fit on the stack; a larger one takes the heap.
        let mut on_stack = [HttpHeader::EMPTY; HEADERS_ON_STACK];
        let mut on_heap = Vec::new();
        let views: &mut [HttpHeader] = match on_stack.get_mut(..n) {
            Some(views) => views,
            None => {
                on_heap.resize_with(n, || HttpHeader::EMPTY);
                &mut on_heap
            }
        };
        // SAFETY: `views` holds room for the `n` headers Envoy just counted.
        if !unsafe {
            envoy_dynamic_module_callback_http_get_headers(self.0, kind, views.as_mut_ptr())
        } {
            return Vec::new();
        }
        views
            .iter()
            .filter_map(|h| {
                // SAFETY: Envoy's header bytes, valid until this hook returns; copied here.
                let (k, v) = unsafe {
                    (
                        Buf {
                            ptr: h.key_ptr,
                            len: h.key_len,
                        }
                        .bytes(),
                        Buf {
                            ptr: h.value_ptr,
                            len: h.value_len,
                        }
                        .bytes(),
                    )
                };
                names
                    .iter()
                    .any(|name| name.as_bytes().eq_ignore_ascii_case(k))
                    .then(|| (owned(k), owned(v)))
            })
            .collect()
    }

    pub fn header(&self, side: Headers, name: &str) -> Option<String> {
        let mut out = Buf::NULL;
        // SAFETY: the key is valid for the call, `out` outlives it, the count is optional.
        let found = unsafe {
            envoy_dynamic_module_callback_http_get_header(
                self.0,
                Self::header_kind(side),
                Buf::of(name.as_bytes()),
                &mut out,
                0,
                ptr::null_mut(),
            )
        };
        // SAFETY: Envoy's value bytes, copied before anything changes the map.
        (found && !out.ptr.is_null()).then(|| owned(unsafe { out.bytes() }))
    }

    /// Set one value, or remove the header (`None`).
    pub fn set_header(&self, side: Headers, name: &str, value: Option<&str>) -> bool {
        let value = value.map_or(Buf::NULL, |v| Buf::of(v.as_bytes()));
        // SAFETY: key and value are valid for the call; a null value removes the header.
        unsafe {
            envoy_dynamic_module_callback_http_set_header(
                self.0,
                Self::header_kind(side),
                Buf::of(name.as_bytes()),
                value,
            )
        }
    }

    pub fn add_header(&self, side: Headers, name: &str, value: &str) -> bool {
        // SAFETY: key and value are valid for the call.
        unsafe {
            envoy_dynamic_module_callback_http_add_header(
                self.0,
                Self::header_kind(side),
                Buf::of(name.as_bytes()),
                Buf::of(value.as_bytes()),
            )
        }
    }

    /// Whether this hook's data is the buffered body itself (then it counts once).
    fn received_is_buffered(&self, side: Body) -> bool {
        // SAFETY: `self.0` is the stream of the running hook.
        unsafe {
            match side {
                Body::Request => {
                    envoy_dynamic_module_callback_http_received_buffered_request_body(self.0)
                }
                Body::Response => {
                    envoy_dynamic_module_callback_http_received_buffered_response_body(self.0)
                }
            }
        }
    }

    /// The kinds that make up a side's body so far: what earlier hooks buffered, then this
    /// hook's data.
    fn body_parts(&self, side: Body) -> [Option<c_int>; 2] {
        let (received, buffered) = Self::body_kinds(side);
        let received = (!self.received_is_buffered(side)).then_some(received);
        [Some(buffered), received]
    }

    /// The body so far, in bytes.
    pub fn body_size(&self, side: Body) -> usize {
        self.body_parts(side)
            .into_iter()
            .flatten()
            // SAFETY: `self.0` is the stream of the running hook.
            .map(|kind| unsafe { envoy_dynamic_module_callback_http_get_body_size(self.0, kind) })
            .sum()
    }

    /// The first `len` bytes of the body so far.
    pub fn read_body(&self, side: Body, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len.min(self.body_size(side)));
        for kind in self.body_parts(side).into_iter().flatten() {
            // SAFETY: `self.0` is the stream of the running hook.
            let n =
                unsafe { envoy_dynamic_module_callback_http_get_body_chunks_size(self.0, kind) };
            if n == 0 {
                continue;
            }
            let mut chunks = vec![Buf::NULL; n];
            // SAFETY: `chunks` holds room for the `n` slices Envoy just counted.
            if !unsafe {
                envoy_dynamic_module_callback_http_get_body_chunks(
                    self.0,
                    kind,
                    chunks.as_mut_ptr(),
                )
            } {
                continue;
            }
            for chunk in chunks {
                let room = len.saturating_sub(out.len());
                if room == 0 {
                    return out;
                }
                // SAFETY: Envoy's slice, valid until this hook returns; copied here.
                let bytes = unsafe { chunk.bytes() };
                out.extend_from_slice(bytes.get(..room.min(bytes.len())).unwrap_or_default());
            }
        }
        out
    }

    /// Replace the whole response body so far with `new`: drain what was buffered and what
    /// this hook received, then append.
    pub fn replace_response_body(&self, new: &[u8]) -> bool {
        let parts = self.body_parts(Body::Response);
        for kind in parts.into_iter().flatten() {
            // SAFETY: `self.0` is the stream of the running hook.
            unsafe {
                let size = envoy_dynamic_module_callback_http_get_body_size(self.0, kind);
                envoy_dynamic_module_callback_http_drain_body(self.0, kind, size);
            }
        }
        if new.is_empty() {
            return true;
        }
        // Into this hook's data when there is some, else into the buffer (as in the trailers
        // hook, which has no data of its own).
        parts.into_iter().rev().flatten().any(|kind| {
            // SAFETY: `new` is valid for the call; Envoy copies it.
            unsafe { envoy_dynamic_module_callback_http_append_body(self.0, kind, Buf::of(new)) }
        })
    }

    pub fn send_response(&self, status: u32, headers: &[(&str, &str)], body: &[u8]) {
        let mut raw: Vec<HttpHeader> = headers
            .iter()
            .map(|(k, v)| HttpHeader {
                key_ptr: k.as_ptr().cast(),
                key_len: k.len(),
                value_ptr: v.as_ptr().cast(),
                value_len: v.len(),
            })
            .collect();
        // SAFETY: the headers, body and details are valid for the call; Envoy copies them.
        unsafe {
            envoy_dynamic_module_callback_http_send_response(
                self.0,
                status,
                raw.as_mut_ptr(),
                raw.len(),
                Buf::of(body),
                Buf::of(b"twiml_guard"),
            );
        }
    }

    /// What `per_route_config_new` returned for the stream's route (null when the route has no
    /// `DynamicModuleFilterPerRoute` for the guard).
    fn route_config(&self) -> *const c_void {
        // SAFETY: `self.0` is the stream of the running hook.
        unsafe { envoy_dynamic_module_callback_get_most_specific_route_config(self.0) }
    }

    pub fn increment_counter(&self, id: usize) {
        // SAFETY: `self.0` is the stream of the running hook; no labels. A failure (an unknown
        // id) only loses the increment.
        unsafe {
            envoy_dynamic_module_callback_http_filter_increment_counter(
                self.0,
                id,
                ptr::null_mut(),
                0,
                1,
            );
        }
    }

    pub fn record_histogram(&self, id: usize, value: u64) {
        // SAFETY: as for `increment_counter`.
        unsafe {
            envoy_dynamic_module_callback_http_filter_record_histogram_value(
                self.0,
                id,
                ptr::null_mut(),
                0,
                value,
            );
        }
    }
}

mod hooks;
