//! The production engines: any server that speaks OpenAI's HTTP API, for transcription
//! (`/v1/audio/transcriptions`) and extraction (`/v1/chat/completions` with a JSON schema).
//! Both go through one client (`client`, configured by `[openai]`); each engine adds its model.
//! `upload` streams a recording into a transcription request.

mod client;
mod extract;
mod transcribe;
mod upload;

pub use extract::{parse_answer, schema, OpenAiExtractor};
pub use transcribe::{parse_verbose_json, OpenAiTranscriber};
