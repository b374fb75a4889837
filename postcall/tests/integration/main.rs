//! One test binary for the post-call suites: each test binary costs a thin-LTO link.

mod common;
mod long_recording;
mod openai;
#[cfg(feature = "whisper")]
mod whisper;
