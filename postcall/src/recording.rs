//! A recording walked once, a block at a time: every channel decoded, resampled to Whisper's
//! rate and planned into windows as it goes, each window handed out as soon as it is complete.
//! Memory does not grow with the call's length (the bound is in docs/postcall.md and
//! `max_held`), which is what lets a four-hour call be transcribed like a four-minute one.

use crate::audio::{has_speech, WHISPER_RATE};
use crate::planner::{Window, WindowPlanner};
use crate::EngineError;
use media::audio::StreamResampler;
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

/// What a walk saw.
#[derive(Debug, Clone, PartialEq)]
pub struct Walked {
    pub channels: usize,
    pub duration_secs: f64,
    /// The most samples held at once: every channel's planner, the block read and the block
    /// resampled. Compare with `max_held`.
    pub peak_samples: usize,
}

/// The most samples a walk holds for a recording of `channels` channels at `rate`, whatever
/// its length.
pub fn max_held(channels: usize, rate: u32) -> usize {
    let block_16k = resampled_block(rate);
    channels * (WindowPlanner::max_held(WHISPER_RATE, block_16k) + BLOCK_FRAMES) + block_16k
}

fn resampled_block(rate: u32) -> usize {
    media::audio::resampled_len(BLOCK_FRAMES, rate.max(1), WHISPER_RATE) + 4096
}

/// Walk a WAV stream; `on_window(channel, window)` runs for each window in order of
/// completion (channels interleaved in time).
pub fn walk<R: Read + Seek>(
    mut stream: WavStream<R>,
    on_window: impl FnMut(usize, Window) -> Result<(), EngineError>,
) -> Result<Walked, EngineError> {
    let (channels, rate) = (stream.channels(), stream.sample_rate());
    let mut walked = walk_blocks(
        channels,
        rate,
        |block| stream.read_block(BLOCK_FRAMES, block).map_err(bad_audio),
        on_window,
    )?;
    walked.duration_secs = stream.frames_read() as f64 / f64::from(rate);
    Ok(walked)
}

/// Walk audio already in memory (one vector per channel), the same way.
pub fn walk_channels(
    channels: &[Vec<f32>],
    rate: u32,
    on_window: impl FnMut(usize, Window) -> Result<(), EngineError>,
) -> Result<Walked, EngineError> {
    let frames = channels.first().map_or(0, Vec::len);
    let mut at = 0;
    let mut walked = walk_blocks(
        channels.len(),
        rate,
        |block| {
            let end = (at + BLOCK_FRAMES).min(frames);
            block.resize_with(channels.len(), Vec::new);
            for (out, c) in block.iter_mut().zip(channels) {
                out.clear();
                out.extend_from_slice(c.get(at..end).unwrap_or_default());
            }
            let n = end - at;
            at = end;
            Ok(n)
        },
        on_window,
    )?;
    walked.duration_secs = if rate == 0 {
        0.0
    } else {
        frames as f64 / f64::from(rate)
    };
    Ok(walked)
}

fn walk_blocks(
    channels: usize,
    rate: u32,
    mut next_block: impl FnMut(&mut Vec<Vec<f32>>) -> Result<usize, EngineError>,
    mut on_window: impl FnMut(usize, Window) -> Result<(), EngineError>,
) -> Result<Walked, EngineError> {
    speakers(channels)?;
    let mut lanes: Vec<(StreamResampler, WindowPlanner)> = (0..channels)
        .map(|_| {
            (
                StreamResampler::new(rate, WHISPER_RATE),
                WindowPlanner::new(WHISPER_RATE),
            )
        })
        .collect();
    let mut block = Vec::new();
    let mut resampled = Vec::new();
    let mut io_peak = 0;
    loop {
        let frames = next_block(&mut block)?;
        let last = frames == 0;
        for (c, (resampler, planner)) in lanes.iter_mut().enumerate() {
            resampled.clear();
            match block.get(c) {
                Some(samples) if !last => resampler.push(samples, &mut resampled),
                _ => resampler.finish(&mut resampled),
            }
            let mut windows = planner.push(&resampled);
            if last {
                windows.extend(planner.finish());
            }
            for w in windows {
                on_window(c, w)?;
            }
        }
        io_peak = io_peak.max(block.iter().map(Vec::len).sum::<usize>() + resampled.len());
        if last {
            break;
        }
    }
    Ok(Walked {
        channels,
        duration_secs: 0.0,
        peak_samples: io_peak + lanes.iter().map(|(_, p)| p.peak_held()).sum::<usize>(),
    })
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
