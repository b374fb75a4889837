//! A call's recording as the engines read it: opened with a clear error, its channels named for
//! who speaks on them, read a block at a time, and which channels hold speech at all.

use crate::audio::has_speech;
use crate::EngineError;
use media::wav::{WavError, WavStream};
use std::io::{BufReader, Read, Seek};
use std::path::Path;

/// Frames read from the file at a time: about 1 s at 8 kHz.
pub const BLOCK_FRAMES: usize = 8192;

/// Who speaks on each channel: one channel is the caller; two are caller (left) and agent
/// (right). More is refused.
pub fn speakers(channels: usize) -> Result<&'static [&'static str], EngineError> {
    match channels {
        1 => Ok(&["caller"]),
        2 => Ok(&["caller", "agent"]),
        n => Err(EngineError::Permanent(format!(
            "recording has {n} channels; expected 1 (caller) or 2 (caller, agent)"
        ))),
    }
}

/// Open a recording for reading; a missing or unreadable file is a permanent error naming it.
pub fn open(path: &Path) -> Result<WavStream<BufReader<std::fs::File>>, EngineError> {
    let file = std::fs::File::open(path).map_err(|e| {
        EngineError::Permanent(format!("cannot read recording {}: {e}", path.display()))
    })?;
    WavStream::new(BufReader::new(file)).map_err(bad_audio)
}

pub fn bad_audio(e: WavError) -> EngineError {
    EngineError::Permanent(format!("recording: {e}"))
}

/// Which channels of a recording hold speech (`audio::has_speech` on each, a block at a time),
/// and its length in frames. Reads the stream to its end.
pub fn channels_with_speech<R: Read + Seek>(
    stream: &mut WavStream<R>,
) -> Result<(Vec<bool>, u64), EngineError> {
    let rate = stream.sample_rate();
    // Whole 20 ms frames only, so a frame is judged the same wherever blocks split it.
    let frame = crate::audio::frame_len(rate);
    let mut carry: Vec<Vec<f32>> = vec![Vec::new(); stream.channels()];
    let mut speech = vec![false; stream.channels()];
    let mut block = Vec::new();
    loop {
        let frames = stream
            .read_block(BLOCK_FRAMES, &mut block)
            .map_err(bad_audio)?;
        for ((c, heard), samples) in carry.iter_mut().zip(&mut speech).zip(&block) {
            if frames == 0 {
                *heard |= has_speech(c, rate);
                continue;
            }
            c.extend_from_slice(samples);
            let whole = c.len() / frame * frame;
            *heard |= has_speech(&c[..whole], rate);
            c.drain(..whole);
        }
        if frames == 0 {
            return Ok((speech, stream.frames_read()));
        }
    }
}
