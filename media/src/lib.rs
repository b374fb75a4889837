//! Twilio Media Streams, as data: the JSON messages of the protocol and the 8 kHz G.711 mu-law
//! audio they carry. Pure code, no sockets, so the host service, `twilio-sim` and the post-call
//! engines agree on one definition and it is tested without I/O.
//!
//! Layout: `mulaw` (G.711 codec), `protocol` (messages in both directions), `sid` (the Twilio
//! identifiers they carry, checked before they reach a path or a key), `wav` (the WAV format:
//! reading any flavour a block at a time, writing 16-bit PCM, repairing a header), `audio`
//! (resampling, the bridge between float audio and mu-law).

pub mod audio;
pub mod mulaw;
pub mod protocol;
pub mod sid;
pub mod wav;

/// Twilio streams telephone audio at this rate, one channel.
pub const SAMPLE_RATE: u32 = 8000;
/// A typical media frame: 20 ms, 160 mu-law bytes.
pub const FRAME_MS: u32 = 20;
pub const FRAME_BYTES: usize = 160;
