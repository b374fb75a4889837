//! A call's recording, from either source: `stream` (the host writes the WAV from the media
//! socket's frames) or `twilio` (Twilio records the call and the pipeline downloads its file).
//!
//! - `recorder`: the timestamp-placing two-channel recorder (pure, over `Read + Write + Seek`);
//! - `writer`: a recording's own thread, so disk writes stay off the async workers;
//! - `twilio`: the REST calls of the `twilio` source.

pub mod recorder;
pub mod twilio;
pub mod writer;
