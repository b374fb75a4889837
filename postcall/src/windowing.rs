//! A recording cut into Whisper's windows in one pass, a block at a time: every channel decoded,
//! resampled to Whisper's rate and planned into windows as it goes, each window handed out as
//! soon as it is complete. Memory does not grow with the call's length (the bound is in
//! docs/postcall.md and `max_held`), which is what lets a four-hour call be transcribed like a
//! four-minute one.

use crate::audio::WHISPER_RATE;
use crate::planner::{Window, WindowPlanner};
use crate::recording::{bad_audio, speakers, BLOCK_FRAMES};
use crate::EngineError;
use media::audio::StreamResampler;
use media::wav::WavStream;
use std::io::{Read, Seek};

/// What cutting a recording into windows saw.
#[derive(Debug, Clone, PartialEq)]
pub struct Windowed {
    pub channels: usize,
    pub duration_secs: f64,
    /// The most samples held at once: every channel's planner, the block read and the block
    /// resampled. Compare with `max_held`.
    pub peak_samples: usize,
}

/// The most samples windowing holds for a recording of `channels` channels at `rate`, whatever
/// its length.
pub fn max_held(channels: usize, rate: u32) -> usize {
    let block_16k = resampled_block(rate);
    channels * (WindowPlanner::max_held(WHISPER_RATE, block_16k) + BLOCK_FRAMES) + block_16k
}

fn resampled_block(rate: u32) -> usize {
    media::audio::resampled_len(BLOCK_FRAMES, rate.max(1), WHISPER_RATE) + 4096
}

/// Cut a WAV stream into windows; `on_window(channel, window)` runs for each window in order of
/// completion (channels interleaved in time).
pub fn window_stream<R: Read + Seek>(
    mut stream: WavStream<R>,
    on_window: impl FnMut(usize, Window) -> Result<(), EngineError>,
) -> Result<Windowed, EngineError> {
    let (channels, rate) = (stream.channels(), stream.sample_rate());
    let mut windowed = window_blocks(
        channels,
        rate,
        |block| stream.read_block(BLOCK_FRAMES, block).map_err(bad_audio),
        on_window,
    )?;
    windowed.duration_secs = stream.frames_read() as f64 / f64::from(rate);
    Ok(windowed)
}

/// Cut audio already in memory (one vector per channel) into windows, the same way.
pub fn window_channels(
    channels: &[Vec<f32>],
    rate: u32,
    on_window: impl FnMut(usize, Window) -> Result<(), EngineError>,
) -> Result<Windowed, EngineError> {
    let frames = channels.first().map_or(0, Vec::len);
    let mut at = 0;
    let mut windowed = window_blocks(
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
    windowed.duration_secs = if rate == 0 {
        0.0
    } else {
        frames as f64 / f64::from(rate)
    };
    Ok(windowed)
}

fn window_blocks(
    channels: usize,
    rate: u32,
    mut next_block: impl FnMut(&mut Vec<Vec<f32>>) -> Result<usize, EngineError>,
    mut on_window: impl FnMut(usize, Window) -> Result<(), EngineError>,
) -> Result<Windowed, EngineError> {
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
    Ok(Windowed {
        channels,
        duration_secs: 0.0,
        peak_samples: io_peak + lanes.iter().map(|(_, p)| p.peak_held()).sum::<usize>(),
    })
}
