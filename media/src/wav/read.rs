//! Reading WAV: a recording read a block at a time, so a call of any length is decoded in
//! bounded memory (a 4 h two-channel call is 460 MB on disk and would be 1.8 GB as `f32`, while
//! a reader holds one block), and `decode`, the same reader run to the end on bytes in memory.

use super::{io_err, wav_err, WavError};
use crate::mulaw;
use std::io::{Cursor, Read, Seek, SeekFrom};

const WAVE_FORMAT_PCM: u16 = 1;
// WAVE format tags hound does not read itself.
const WAVE_FORMAT_MULAW: u16 = 7;
const WAVE_FORMAT_EXTENSIBLE: u16 = 0xFFFE;
/// A `fmt ` chunk is 16 to 40 bytes; anything longer is read only this far.
const FMT_READ_MAX: u64 = 64;

/// A recording being read: integer PCM of 8, 16, 24 or 32 bits, 32-bit float, or G.711 mu-law
/// (format tag 7, which Twilio's own recordings may use); any rate, any number of channels.
pub struct WavStream<R: Read + Seek> {
    source: Source<R>,
    sample_rate: u32,
    channels: usize,
    frames_read: u64,
}

enum Source<R: Read + Seek> {
    /// 16-bit PCM, the common case (what the host service and Twilio write), read in bulk:
    /// hound checked the header, the samples are plain little-endian pairs.
    Pcm16 {
        reader: R,
        /// Samples (not frames) of the data chunk not read yet.
        remaining: u64,
        bytes: Vec<u8>,
    },
    Int {
        reader: hound::WavReader<R>,
        scale: f64,
    },
    Float(hound::WavReader<R>),
    Mulaw {
        reader: R,
        /// Bytes of the data chunk not read yet (as declared; a file cut short ends earlier).
        remaining: u64,
        bytes: Vec<u8>,
    },
}

impl<R: Read + Seek> WavStream<R> {
    /// Read the header; the samples are read by `read_block`.
    pub fn new(mut reader: R) -> Result<Self, WavError> {
        let start = reader.stream_position().map_err(io_err)?;
        let fmt = find_fmt(&mut reader)?;
        let pcm16 = fmt.as_ref().is_some_and(|f| f.tag == WAVE_FORMAT_PCM);
        if let Some(fmt) = fmt.filter(|f| f.tag == WAVE_FORMAT_MULAW) {
            if fmt.channels == 0 || fmt.sample_rate == 0 {
                return Err(WavError::Empty);
            }
            if fmt.bits_per_sample != 8 {
                return Err(WavError::Unsupported(format!(
                    "mu-law with {} bits per sample",
                    fmt.bits_per_sample
                )));
            }
            return Ok(WavStream {
                source: Source::Mulaw {
                    reader,
                    remaining: fmt.data_len,
                    bytes: Vec::new(),
                },
                sample_rate: fmt.sample_rate,
                channels: usize::from(fmt.channels),
                frames_read: 0,
            });
        }
        reader.seek(SeekFrom::Start(start)).map_err(io_err)?;
        let reader = hound::WavReader::new(reader).map_err(wav_err)?;
        let spec = reader.spec();
        if spec.channels == 0 || spec.sample_rate == 0 {
            return Err(WavError::Empty);
        }
        let source = match (spec.sample_format, spec.bits_per_sample) {
            (hound::SampleFormat::Int, 16) if pcm16 => Source::Pcm16 {
                remaining: u64::from(reader.len()),
                reader: reader.into_inner(),
                bytes: Vec::new(),
            },
            (hound::SampleFormat::Float, 32) => Source::Float(reader),
            (hound::SampleFormat::Int, bits @ (8 | 16 | 24 | 32)) => Source::Int {
                reader,
                scale: 1.0 / (1u64 << (bits - 1)) as f64,
            },
            (format, bits) => {
                return Err(WavError::Unsupported(format!(
                    "{format:?} with {bits} bits"
                )))
            }
        };
        Ok(WavStream {
            source,
            sample_rate: spec.sample_rate,
            channels: usize::from(spec.channels),
            frames_read: 0,
        })
    }

    pub fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    pub fn channels(&self) -> usize {
        self.channels
    }

    /// Frames read so far (after the last block: the recording's length).
    pub fn frames_read(&self) -> u64 {
        self.frames_read
    }

    /// Read up to `max_frames` frames into `out`, one vector per channel (cleared first, samples
    /// in `[-1.0, 1.0]`). Returns the frames read; 0 at the end. A frame cut short at the end of
    /// the file is dropped; a mu-law file cut short ends where its bytes end, because a recorder
    /// killed mid-write still leaves valid audio before the cut.
    pub fn read_block(
        &mut self,
        max_frames: usize,
        out: &mut Vec<Vec<f32>>,
    ) -> Result<usize, WavError> {
        out.resize_with(self.channels, Vec::new);
        for c in out.iter_mut() {
            c.clear();
        }
        let channels = self.channels;
        let frames = match &mut self.source {
            Source::Pcm16 {
                reader,
                remaining,
                bytes,
            } => read_pcm16(reader, remaining, bytes, channels, max_frames, out)?,
            Source::Int { reader, scale } => {
                let scale = *scale;
                read_frames(reader.samples::<i32>(), channels, max_frames, out, |v| {
                    (f64::from(v) * scale) as f32
                })?
            }
            Source::Float(reader) => {
                read_frames(reader.samples::<f32>(), channels, max_frames, out, |v| v)?
            }
            Source::Mulaw {
                reader,
                remaining,
                bytes,
            } => read_mulaw(reader, remaining, bytes, channels, max_frames, out)?,
        };
        self.frames_read += frames as u64;
        Ok(frames)
    }
}

fn read_frames<S, I>(
    mut samples: I,
    channels: usize,
    max_frames: usize,
    out: &mut [Vec<f32>],
    convert: impl Fn(S) -> f32,
) -> Result<usize, WavError>
where
    I: Iterator<Item = hound::Result<S>>,
{
    let mut frames = 0;
    while frames < max_frames {
        for c in 0..channels {
            match samples.next() {
                Some(Ok(s)) => out[c].push(convert(s)),
                Some(Err(e)) => return Err(wav_err(e)),
                None => {
                    for partial in &mut out[..c] {
                        partial.pop();
                    }
                    return Ok(frames);
                }
            }
        }
        frames += 1;
    }
    Ok(frames)
}

fn read_pcm16<R: Read>(
    reader: &mut R,
    remaining: &mut u64,
    bytes: &mut Vec<u8>,
    channels: usize,
    max_frames: usize,
    out: &mut [Vec<f32>],
) -> Result<usize, WavError> {
    let want = (max_frames.saturating_mul(channels) as u64).min(*remaining);
    bytes.clear();
    let got = reader
        .by_ref()
        .take(2 * want)
        .read_to_end(bytes)
        .map_err(io_err)?;
    if (got as u64) < 2 * want {
        // As hound: a data chunk shorter than its header says is a broken file.
        return Err(WavError::Wav(format!(
            "the data chunk ends {} bytes early",
            2 * *remaining - got as u64
        )));
    }
    *remaining -= want;
    let frame_bytes = 2 * channels;
    for frame in bytes.chunks_exact(frame_bytes) {
        for (c, pair) in frame.chunks_exact(2).enumerate() {
            out[c].push(f32::from(i16::from_le_bytes([pair[0], pair[1]])) / 32768.0);
        }
    }
    Ok(bytes.len() / frame_bytes)
}

fn read_mulaw<R: Read>(
    reader: &mut R,
    remaining: &mut u64,
    bytes: &mut Vec<u8>,
    channels: usize,
    max_frames: usize,
    out: &mut [Vec<f32>],
) -> Result<usize, WavError> {
    let want = (max_frames.saturating_mul(channels) as u64).min(*remaining);
    bytes.clear();
    let got = reader
        .by_ref()
        .take(want)
        .read_to_end(bytes)
        .map_err(io_err)?;
    // A short read is the end of a file cut short: nothing more will come.
    *remaining = if (got as u64) < want {
        0
    } else {
        *remaining - want
    };
    let frames = got / channels;
    for frame in bytes.chunks_exact(channels) {
        for (c, &b) in frame.iter().enumerate() {
            out[c].push(f32::from(mulaw::decode_sample(b)) / 32768.0);
        }
    }
    Ok(frames)
}

struct Fmt {
    /// The format tag (for WAVE_FORMAT_EXTENSIBLE, the sub-format's).
    tag: u16,
    channels: u16,
    sample_rate: u32,
    bits_per_sample: u16,
    data_len: u64,
}

/// Walk the RIFF chunks up to `data`, for the two formats read here without hound's per-sample
/// reader: mu-law (hound cannot read it) and 16-bit PCM (read in bulk). `Some` with the reader
/// at the first sample; `None` for anything else (hound reads it, or reports why it cannot).
fn find_fmt<R: Read + Seek>(reader: &mut R) -> Result<Option<Fmt>, WavError> {
    let mut riff = [0u8; 12];
    if read_exact_or_eof(reader, &mut riff)? < 12 || &riff[0..4] != b"RIFF" || &riff[8..] != b"WAVE"
    {
        return Ok(None);
    }
    let mut fmt: Option<Fmt> = None;
    loop {
        let mut header = [0u8; 8];
        if read_exact_or_eof(reader, &mut header)? < 8 {
            return match fmt {
                Some(f) if f.tag == WAVE_FORMAT_MULAW => Err(WavError::Wav("no data chunk".into())),
                _ => Ok(None),
            };
        }
        let len = u64::from(u32::from_le_bytes([
            header[4], header[5], header[6], header[7],
        ]));
        match &header[0..4] {
            b"fmt " => {
                let mut payload = Vec::new();
                reader
                    .by_ref()
                    .take(len.min(FMT_READ_MAX))
                    .read_to_end(&mut payload)
                    .map_err(io_err)?;
                let u16_at = |i: usize| {
                    payload
                        .get(i..i + 2)
                        .map(|b| u16::from_le_bytes([b[0], b[1]]))
                };
                let mut tag = u16_at(0);
                if tag == Some(WAVE_FORMAT_EXTENSIBLE) {
                    // The real tag is the first two bytes of the sub-format GUID.
                    tag = u16_at(24);
                }
                let (Some(tag), Some(channels), Some(rate), Some(block_align), Some(bits)) = (
                    tag,
                    u16_at(2),
                    payload
                        .get(4..8)
                        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]])),
                    u16_at(12),
                    u16_at(14),
                ) else {
                    return Ok(None);
                };
                let bulk_pcm = tag == WAVE_FORMAT_PCM
                    && bits == 16
                    && u32::from(block_align) == 2 * u32::from(channels);
                if tag != WAVE_FORMAT_MULAW && !bulk_pcm {
                    return Ok(None);
                }
                fmt = Some(Fmt {
                    tag,
                    channels,
                    sample_rate: rate,
                    bits_per_sample: bits,
                    data_len: 0,
                });
                skip(reader, len - (payload.len() as u64) + (len & 1))?;
            }
            b"data" => return Ok(fmt.map(|f| Fmt { data_len: len, ..f })),
            // Chunks are padded to even length.
            _ => skip(reader, len + (len & 1))?,
        }
    }
}

fn skip<R: Seek>(reader: &mut R, n: u64) -> Result<(), WavError> {
    let n = i64::try_from(n).map_err(|_| WavError::Wav("chunk too long".into()))?;
    reader.seek(SeekFrom::Current(n)).map_err(io_err)?;
    Ok(())
}

/// Fill `buf` as far as the reader goes; the count read.
fn read_exact_or_eof<R: Read>(reader: &mut R, buf: &mut [u8]) -> Result<usize, WavError> {
    let mut got = 0;
    while got < buf.len() {
        match reader.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io_err(e)),
        }
    }
    Ok(got)
}

/// Decoded audio: one vector of samples in `[-1.0, 1.0]` per channel, all the same length.
#[derive(Debug, Clone, PartialEq)]
pub struct Pcm {
    pub sample_rate: u32,
    pub channels: Vec<Vec<f32>>,
}

impl Pcm {
    /// Frames per channel.
    pub fn frames(&self) -> usize {
        self.channels.first().map_or(0, Vec::len)
    }

    /// Length in seconds.
    pub fn duration_secs(&self) -> f64 {
        if self.sample_rate == 0 {
            return 0.0;
        }
        self.frames() as f64 / f64::from(self.sample_rate)
    }

    /// All channels averaged into one.
    pub fn to_mono(&self) -> Vec<f32> {
        match self.channels.len() {
            0 => Vec::new(),
            1 => self.channels[0].clone(),
            n => (0..self.frames())
                .map(|i| self.channels.iter().map(|c| c[i]).sum::<f32>() / n as f32)
                .collect(),
        }
    }
}

/// Decode a WAV file held in memory: integer PCM of 8, 16, 24 or 32 bits, 32-bit float, or
/// G.711 mu-law (format tag 7, which Twilio's own recordings may use); any rate, any number of
/// channels. The whole file is decoded at once: for recordings of unknown length read a block at
/// a time with `WavStream`.
pub fn decode(bytes: &[u8]) -> Result<Pcm, WavError> {
    let mut stream = WavStream::new(Cursor::new(bytes))?;
    let mut channels = vec![Vec::new(); stream.channels()];
    let mut block = Vec::new();
    while stream.read_block(DECODE_BLOCK_FRAMES, &mut block)? > 0 {
        for (all, part) in channels.iter_mut().zip(&block) {
            all.extend_from_slice(part);
        }
    }
    Ok(Pcm {
        sample_rate: stream.sample_rate(),
        channels,
    })
}

const DECODE_BLOCK_FRAMES: usize = 64 * 1024;

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::Cursor;

    fn pcm16(channels: u16, samples: &[i16]) -> Vec<u8> {
        let spec = hound::WavSpec {
            channels,
            sample_rate: 8000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut out = Cursor::new(Vec::new());
        let mut w = hound::WavWriter::new(&mut out, spec).unwrap();
        for &s in samples {
            w.write_sample(s).unwrap();
        }
        w.finalize().unwrap();
        out.into_inner()
    }

    #[test]
    fn blocks_split_a_stereo_file_in_order() {
        let samples: Vec<i16> = (0..20).map(|i| i * 1000).collect();
        let mut s = WavStream::new(Cursor::new(pcm16(2, &samples))).unwrap();
        assert_eq!((s.channels(), s.sample_rate()), (2, 8000));
        let mut out = Vec::new();
        let mut left = Vec::new();
        let mut right = Vec::new();
        let mut sizes = Vec::new();
        loop {
            let n = s.read_block(3, &mut out).unwrap();
            if n == 0 {
                break;
            }
            sizes.push(n);
            left.extend_from_slice(&out[0]);
            right.extend_from_slice(&out[1]);
        }
        assert_eq!(sizes, [3, 3, 3, 1]);
        assert_eq!(s.frames_read(), 10);
        let want = |odd: i16| -> Vec<f32> {
            (0..10)
                .map(|i| f32::from((2 * i + odd) * 1000) / 32768.0)
                .collect()
        };
        assert_eq!(left, want(0));
        assert_eq!(right, want(1));
    }

    #[test]
    fn pcm16_cut_short_is_an_error_after_the_audio_before_the_cut() {
        let mut bytes = pcm16(1, &[1000; 100]);
        bytes.truncate(bytes.len() - 10);
        let mut s = WavStream::new(Cursor::new(bytes)).unwrap();
        let mut out = Vec::new();
        assert_eq!(s.read_block(90, &mut out).unwrap(), 90);
        assert_eq!(out[0], vec![1000.0 / 32768.0; 90]);
        assert_eq!(
            s.read_block(90, &mut out).unwrap_err(),
            WavError::Wav("the data chunk ends 10 bytes early".into())
        );
    }

    #[test]
    fn mulaw_after_other_chunks_and_cut_short() {
        let mut v = Vec::new();
        v.extend_from_slice(b"RIFF");
        v.extend_from_slice(&100u32.to_le_bytes());
        v.extend_from_slice(b"WAVE");
        // An odd-length chunk before fmt: skipped with its padding byte.
        v.extend_from_slice(b"LIST");
        v.extend_from_slice(&3u32.to_le_bytes());
        v.extend_from_slice(&[1, 2, 3, 0]);
        v.extend_from_slice(b"fmt ");
        v.extend_from_slice(&16u32.to_le_bytes());
        v.extend_from_slice(&WAVE_FORMAT_MULAW.to_le_bytes());
        v.extend_from_slice(&1u16.to_le_bytes());
        v.extend_from_slice(&8000u32.to_le_bytes());
        v.extend_from_slice(&8000u32.to_le_bytes());
        v.extend_from_slice(&1u16.to_le_bytes());
        v.extend_from_slice(&8u16.to_le_bytes());
        v.extend_from_slice(b"data");
        // Declares 1000 bytes; the file holds 5.
        v.extend_from_slice(&1000u32.to_le_bytes());
        v.extend_from_slice(&[0xFF, 0x80, 0x00, 0xFF, 0xFF]);
        let mut s = WavStream::new(Cursor::new(v)).unwrap();
        let mut out = Vec::new();
        assert_eq!(s.read_block(2, &mut out).unwrap(), 2);
        let full = 32124.0 / 32768.0;
        assert_eq!(out, vec![vec![0.0, full]]);
        assert_eq!(s.read_block(10, &mut out).unwrap(), 3);
        assert_eq!(out, vec![vec![-full, 0.0, 0.0]]);
        assert_eq!(s.read_block(10, &mut out).unwrap(), 0);
        assert_eq!(s.frames_read(), 5);
    }

    pub(crate) fn wav_bytes<S: hound::Sample + Copy>(
        spec: hound::WavSpec,
        samples: &[S],
    ) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        let mut w = hound::WavWriter::new(&mut out, spec).unwrap();
        for &s in samples {
            w.write_sample(s).unwrap();
        }
        w.finalize().unwrap();
        out.into_inner()
    }

    pub(crate) fn int_spec(channels: u16, rate: u32, bits: u16) -> hound::WavSpec {
        hound::WavSpec {
            channels,
            sample_rate: rate,
            bits_per_sample: bits,
            sample_format: hound::SampleFormat::Int,
        }
    }

    #[test]
    fn decodes_every_pcm_width_to_the_same_scale() {
        let p16 = decode(&wav_bytes(
            int_spec(1, 8000, 16),
            &[0i16, 16384, -32768, 32767],
        ))
        .unwrap();
        assert_eq!(p16.sample_rate, 8000);
        assert_eq!(p16.channels, vec![vec![0.0, 0.5, -1.0, 32767.0 / 32768.0]]);

        let p8 = decode(&wav_bytes(int_spec(1, 11025, 8), &[0i8, 64, -128])).unwrap();
        assert_eq!(p8.sample_rate, 11025);
        assert_eq!(p8.channels, vec![vec![0.0, 0.5, -1.0]]);

        let p24 = decode(&wav_bytes(
            int_spec(1, 48000, 24),
            &[0i32, 1 << 22, -(1 << 23)],
        ))
        .unwrap();
        assert_eq!(p24.channels, vec![vec![0.0, 0.5, -1.0]]);

        let p32 = decode(&wav_bytes(
            int_spec(1, 16000, 32),
            &[0i32, 1 << 30, i32::MIN],
        ))
        .unwrap();
        assert_eq!(p32.channels, vec![vec![0.0, 0.5, -1.0]]);

        let float = hound::WavSpec {
            channels: 1,
            sample_rate: 16000,
            bits_per_sample: 32,
            sample_format: hound::SampleFormat::Float,
        };
        let pf = decode(&wav_bytes(float, &[0.25f32, -0.75])).unwrap();
        assert_eq!(pf.channels, vec![vec![0.25, -0.75]]);
    }

    #[test]
    fn stereo_splits_into_left_and_right() {
        let pcm = decode(&wav_bytes(
            int_spec(2, 8000, 16),
            &[16384i16, -16384, 8192, 0, 0, 32767],
        ))
        .unwrap();
        assert_eq!(
            pcm.channels,
            vec![vec![0.5, 0.25, 0.0], vec![-0.5, 0.0, 32767.0 / 32768.0]]
        );
        assert_eq!(pcm.frames(), 3);
        assert_eq!(pcm.to_mono(), vec![0.0, 0.125, 32767.0 / 65536.0]);
        assert!((pcm.duration_secs() - 3.0 / 8000.0).abs() < 1e-12);
    }

    fn mulaw_wav(channels: u16, data: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(b"RIFF");
        v.extend_from_slice(&(4 + 26 + 8 + data.len() as u32).to_le_bytes());
        v.extend_from_slice(b"WAVE");
        v.extend_from_slice(b"fmt ");
        v.extend_from_slice(&18u32.to_le_bytes());
        v.extend_from_slice(&7u16.to_le_bytes()); // WAVE_FORMAT_MULAW
        v.extend_from_slice(&channels.to_le_bytes());
        v.extend_from_slice(&8000u32.to_le_bytes());
        v.extend_from_slice(&(8000 * u32::from(channels)).to_le_bytes());
        v.extend_from_slice(&channels.to_le_bytes());
        v.extend_from_slice(&8u16.to_le_bytes());
        v.extend_from_slice(&0u16.to_le_bytes());
        v.extend_from_slice(b"data");
        v.extend_from_slice(&(data.len() as u32).to_le_bytes());
        v.extend_from_slice(data);
        v
    }

    #[test]
    fn decodes_mulaw_wav() {
        // 0xFF is silence, 0x80 is +32124, 0x00 is -32124 (G.711 reference values).
        let pcm = decode(&mulaw_wav(2, &[0xFF, 0x80, 0x00, 0xFF])).unwrap();
        assert_eq!(pcm.sample_rate, 8000);
        let full = 32124.0 / 32768.0;
        assert_eq!(pcm.channels, vec![vec![0.0, -full], vec![full, 0.0]]);
    }

    #[test]
    fn refuses_what_is_not_wav() {
        assert!(matches!(decode(b""), Err(WavError::Wav(_))));
        assert!(matches!(
            decode(b"hello world, not audio"),
            Err(WavError::Wav(_))
        ));
        let mut cut = wav_bytes(int_spec(1, 8000, 16), &[1i16, 2, 3]);
        cut.truncate(20);
        assert!(decode(&cut).is_err());
        let mut bad = mulaw_wav(1, &[0xFF]);
        bad[34] = 16; // mu-law claiming 16 bits per sample
        assert!(matches!(decode(&bad), Err(WavError::Unsupported(_))));
    }
}
