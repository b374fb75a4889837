//! The C ABI the npm package's loader (npm/loader.js) calls: the caller writes its input into a
//! buffer this module owns, calls an operation, and reads the JSON answer from another buffer.
//! Buffers live in the module, so no export takes a pointer and no `unsafe` block is needed;
//! only `#[no_mangle]` itself, which the `unsafe_code` lint counts, is allowed here.
//! wasm-bindgen is not used: it generates nothing for wasm32-wasip1 (docs/lint.md says why).
#![allow(unsafe_code)]

use std::cell::RefCell;

/// The largest input accepted, well above any TwiML a backend sends.
const MAX_INPUT: u32 = 64 * 1024 * 1024;

#[derive(Default)]
struct Buffers {
    /// Slot 0: the body; slot 1: an optional string argument (a recording status callback).
    input: [Vec<u8>; 2],
    output: Vec<u8>,
}

thread_local! {
    static BUFFERS: RefCell<Buffers> = RefCell::new(Buffers::default());
}

/// Makes input `slot` `len` bytes long (zeroed) and returns where to write them; null for an
/// unknown slot or a length over `MAX_INPUT`.
#[no_mangle]
pub extern "C" fn tg_input(slot: u32, len: u32) -> *mut u8 {
    if len > MAX_INPUT {
        return std::ptr::null_mut();
    }
    BUFFERS.with_borrow_mut(|b| match b.input.get_mut(slot as usize) {
        Some(buf) => {
            buf.clear();
            buf.resize(len as usize, 0);
            buf.as_mut_ptr()
        }
        None => std::ptr::null_mut(),
    })
}

/// Where the last operation's JSON answer is; its length is what the operation returned.
#[no_mangle]
pub extern "C" fn tg_output() -> *const u8 {
    BUFFERS.with_borrow(|b| b.output.as_ptr())
}

fn answer(op: impl FnOnce(&Buffers) -> Vec<u8>) -> u32 {
    BUFFERS.with_borrow_mut(|b| {
        b.output = op(b);
        u32::try_from(b.output.len()).unwrap_or(0)
    })
}

fn body(b: &Buffers) -> &[u8] {
    b.input.first().map(Vec::as_slice).unwrap_or_default()
}

#[no_mangle]
pub extern "C" fn tg_lint() -> u32 {
    answer(|b| twiml::report::lint_json(body(b)))
}

#[no_mangle]
pub extern "C" fn tg_analyze() -> u32 {
    answer(|b| twiml::report::analyze_json(body(b)))
}

#[no_mangle]
pub extern "C" fn tg_sniff() -> u32 {
    answer(|b| twiml::report::sniff_json(body(b)))
}

/// `action`: 0 strip, 1 start-recording; input slot 1, when not empty, is the
/// `recordingStatusCallback` to add.
#[no_mangle]
pub extern "C" fn tg_rewrite(action: u32) -> u32 {
    let action = match action {
        0 => twiml::RewriteAction::Strip,
        1 => twiml::RewriteAction::StartRecording,
        n => return answer(|_| twiml::report::error_json(&format!("unknown rewrite action {n}"))),
    };
    answer(|b| {
        let callback = b
            .input
            .get(1)
            .filter(|c| !c.is_empty())
            .map(|c| String::from_utf8_lossy(c).into_owned());
        twiml::report::rewrite_json(body(b), action, callback.as_deref())
    })
}
