//! A call recording built from the media stream itself: a two-channel 16-bit 8 kHz WAV (left the
//! caller, right what the service sent), audio placed by `media.timestamp` with silence filling
//! gaps, and written to disk as it arrives so a long call never sits in memory. Pure over
//! `Read + Write + Seek`, so it is tested on an in-memory cursor. The WAV format itself (the
//! header, and its repair after a crash) is `media::wav`'s.

use std::collections::VecDeque;
use std::io::{self, Read, Seek, SeekFrom, Write};

pub const SAMPLE_RATE: u32 = media::SAMPLE_RATE;
pub const CHANNELS: u16 = 2;
pub const BYTES_PER_FRAME: u64 = 4;
pub const HEADER_LEN: u64 = media::wav::HEADER_LEN;
/// Samples (per channel) per millisecond at 8 kHz.
const SAMPLES_PER_MS: u64 = (SAMPLE_RATE / 1000) as u64;
/// The largest single write (a little over two seconds of stereo audio).
const WRITE_CHUNK: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum RecordingError {
    #[error("recording i/o: {0}")]
    Io(#[from] io::Error),
    #[error("audio at {at_ms} ms is past the recording limit of {limit_ms} ms")]
    TooLong { at_ms: u64, limit_ms: u64 },
    #[error("recording: {0}")]
    Wav(#[from] media::wav::WavError),
    #[error("the recording's writer thread stopped")]
    WriterGone,
}

/// Where the recorder is allowed to keep frames before they go to disk.
#[derive(Debug, Clone, Copy)]
pub struct RecorderLimits {
    /// Frames this far behind the newest inbound audio are written out; late frames still land
    /// in place (read-modify-write), this only bounds memory.
    pub reorder_window_ms: u64,
    /// Audio placed beyond this is refused: a bogus timestamp must not grow a file without bound.
    pub max_duration_ms: u64,
}

impl Default for RecorderLimits {
    fn default() -> Self {
        RecorderLimits {
            reorder_window_ms: 1000,
            max_duration_ms: 4 * 3600 * 1000,
        }
    }
}

impl RecorderLimits {
    /// Whether caller audio of `samples` samples at `timestamp_ms` ends within the limit (the
    /// socket asks before queueing it for the writer thread).
    pub fn inbound_fits(&self, timestamp_ms: u64, samples: usize) -> bool {
        timestamp_ms
            .saturating_mul(SAMPLES_PER_MS)
            .saturating_add(samples as u64)
            <= self.max_duration_ms.saturating_mul(SAMPLES_PER_MS)
    }
}

/// The header for a recording of `frames` frames (stereo 16-bit PCM at 8 kHz).
fn header(frames: u64) -> Result<Vec<u8>, RecordingError> {
    Ok(media::wav::header_i16(CHANNELS, SAMPLE_RATE, frames)?)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    Caller = 0,
    Agent = 1,
}

/// Writes one stream's recording. Frames before `base` are on disk; `pending` holds the frames
/// from `base` on that may still change.
pub struct Recorder<W> {
    out: W,
    limits: RecorderLimits,
    base: u64,
    pending: VecDeque<[i16; 2]>,
    /// One past the newest caller sample placed.
    inbound_end: u64,
    /// One past the last agent sample queued: Twilio plays what we send in order, so new audio
    /// starts where the queue ends, or now if it has drained.
    outbound_end: u64,
    /// Frames written or reserved in total (the data length on finalize).
    len: u64,
}

/// What a finished recording holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordingSummary {
    pub frames: u64,
    pub duration_ms: u64,
}

impl<W: Read + Write + Seek> Recorder<W> {
    /// Start a recording: writes a header with zero sizes (fixed by `finalize`, or after a crash by `media::wav::repair_header`).
    pub fn new(mut out: W, limits: RecorderLimits) -> Result<Self, RecordingError> {
        out.seek(SeekFrom::Start(0))?;
        out.write_all(&header(0)?)?;
        Ok(Recorder {
            out,
            limits,
            base: 0,
            pending: VecDeque::new(),
            inbound_end: 0,
            outbound_end: 0,
            len: 0,
        })
    }

    /// Place caller audio (mu-law) at `timestamp_ms` from the stream start.
    pub fn push_inbound(&mut self, timestamp_ms: u64, mulaw: &[u8]) -> Result<(), RecordingError> {
        let at = timestamp_ms.saturating_mul(SAMPLES_PER_MS);
        self.check_limit(at, mulaw.len())?;
        self.place(Channel::Caller, at, mulaw)?;
        self.inbound_end = self.inbound_end.max(at + mulaw.len() as u64);
        self.flush_behind()
    }

    /// Record audio the service sent (mu-law). It plays after whatever is still queued, or from
    /// the caller's current position when the queue has drained.
    pub fn push_outbound(&mut self, mulaw: &[u8]) -> Result<(), RecordingError> {
        let at = self.outbound_end.max(self.inbound_end);
        self.check_limit(at, mulaw.len())?;
        self.place(Channel::Agent, at, mulaw)?;
        self.outbound_end = at + mulaw.len() as u64;
        Ok(())
    }

    /// A `clear` drops what Twilio had buffered but not played: erase the agent audio after the
    /// caller's current position.
    pub fn clear_outbound(&mut self) {
        let from = self.inbound_end.max(self.base);
        for i in from..self.outbound_end.max(from) {
            if let Some(frame) = self.pending.get_mut((i - self.base) as usize) {
                frame[Channel::Agent as usize] = 0;
            }
        }
        self.outbound_end = self.inbound_end;
    }

    pub fn inbound_end(&self) -> u64 {
        self.inbound_end
    }

    pub fn frames(&self) -> u64 {
        self.len
    }

    /// Write everything out and fix the header sizes.
    pub fn finalize(mut self) -> Result<(RecordingSummary, W), RecordingError> {
        let end = self.base + self.pending.len() as u64;
        self.write_pending(end)?;
        self.out.seek(SeekFrom::Start(0))?;
        self.out.write_all(&header(self.len)?)?;
        self.out.flush()?;
        let summary = RecordingSummary {
            frames: self.len,
            duration_ms: self.len / SAMPLES_PER_MS,
        };
        Ok((summary, self.out))
    }

    fn check_limit(&self, at: u64, n: usize) -> Result<(), RecordingError> {
        let limit = self.limits.max_duration_ms * SAMPLES_PER_MS;
        if at + n as u64 > limit {
            return Err(RecordingError::TooLong {
                at_ms: at / SAMPLES_PER_MS,
                limit_ms: self.limits.max_duration_ms,
            });
        }
        Ok(())
    }

    fn place(&mut self, ch: Channel, at: u64, mulaw: &[u8]) -> Result<(), RecordingError> {
        let mut samples = mulaw.iter().map(|&b| media::mulaw::decode_sample(b));
        let mut pos = at;
        // The part that is already on disk (a frame that arrived very late).
        if pos < self.base {
            let late = (self.base - pos).min(mulaw.len() as u64);
            let late_samples: Vec<i16> = samples.by_ref().take(late as usize).collect();
            self.patch_disk(ch, pos, &late_samples)?;
            pos += late;
        }
        let end = at + mulaw.len() as u64;
        if pos >= end {
            return Ok(());
        }
        // A jump far ahead: write the silence in between straight out instead of holding it.
        let window = self.limits.reorder_window_ms * SAMPLES_PER_MS;
        if pos > self.base + self.pending.len() as u64 + window {
            self.write_pending(pos - window)?;
        }
        let needed = (end - self.base) as usize;
        if self.pending.len() < needed {
            self.pending.resize(needed, [0, 0]);
        }
        let from = (pos - self.base) as usize;
        for (frame, s) in self.pending.range_mut(from..needed).zip(samples) {
            frame[ch as usize] = s;
        }
        Ok(())
    }

    /// Write out frames that are far enough behind the caller's position.
    fn flush_behind(&mut self) -> Result<(), RecordingError> {
        let window = self.limits.reorder_window_ms * SAMPLES_PER_MS;
        let upto = self.inbound_end.saturating_sub(window);
        if upto > self.base + window {
            self.write_pending(upto)?;
        }
        Ok(())
    }

    /// Write frames `[base, upto)` to disk (silence past the end of `pending`).
    fn write_pending(&mut self, upto: u64) -> Result<(), RecordingError> {
        if upto <= self.base {
            return Ok(());
        }
        self.out
            .seek(SeekFrom::Start(HEADER_LEN + self.base * BYTES_PER_FRAME))?;
        // Large pieces: the second or so that the reorder window lets go is one write, and a
        // long jump of silence never sits in memory whole.
        let mut buf = Vec::with_capacity(WRITE_CHUNK);
        let held = usize::try_from(upto - self.base)
            .unwrap_or(usize::MAX)
            .min(self.pending.len());
        let mut silent_bytes = (upto - self.base - held as u64) * BYTES_PER_FRAME;
        let (front, back) = self.pending.as_slices();
        let (front, back) = (
            &front[..held.min(front.len())],
            &back[..held.saturating_sub(front.len())],
        );
        for frames in front
            .chunks(WRITE_CHUNK / BYTES_PER_FRAME as usize)
            .chain(back.chunks(WRITE_CHUNK / BYTES_PER_FRAME as usize))
        {
            if buf.len() + frames.len() * BYTES_PER_FRAME as usize > WRITE_CHUNK {
                self.out.write_all(&buf)?;
                buf.clear();
            }
            let at = buf.len();
            buf.resize(at + frames.len() * BYTES_PER_FRAME as usize, 0);
            for (out, frame) in buf[at..].chunks_exact_mut(4).zip(frames) {
                out[..2].copy_from_slice(&frame[0].to_le_bytes());
                out[2..].copy_from_slice(&frame[1].to_le_bytes());
            }
        }
        self.pending.drain(..held);
        while silent_bytes > 0 {
            let zeros = silent_bytes.min((WRITE_CHUNK - buf.len()) as u64);
            buf.resize(buf.len() + zeros as usize, 0);
            silent_bytes -= zeros;
            if buf.len() >= WRITE_CHUNK {
                self.out.write_all(&buf)?;
                buf.clear();
            }
        }
        self.out.write_all(&buf)?;
        self.base = upto;
        self.len = self.len.max(self.base);
        Ok(())
    }

    /// Set one channel of frames already on disk, leaving the other channel as it is.
    fn patch_disk(&mut self, ch: Channel, at: u64, samples: &[i16]) -> Result<(), RecordingError> {
        let offset = HEADER_LEN + at * BYTES_PER_FRAME;
        let mut buf = vec![0u8; samples.len() * BYTES_PER_FRAME as usize];
        self.out.seek(SeekFrom::Start(offset))?;
        self.out.read_exact(&mut buf)?;
        for (i, s) in samples.iter().enumerate() {
            let o = i * BYTES_PER_FRAME as usize + ch as usize * 2;
            buf[o..o + 2].copy_from_slice(&s.to_le_bytes());
        }
        self.out.seek(SeekFrom::Start(offset))?;
        self.out.write_all(&buf)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
