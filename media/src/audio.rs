//! Recorded call audio as numbers: WAV bytes in, per-channel `f32` out, a band-limited resampler
//! between rates, and the bridge to and from 8 kHz mu-law. Speech engines want 16 kHz float;
//! Twilio carries 8 kHz mu-law; recordings arrive in whatever WAV flavour wrote them. Pure code,
//! no files, so every conversion is tested on exact values.

use crate::mulaw;
use crate::recording::{wav_err, WavStream};
use rubato::{FftFixedInOut, Resampler};
use std::io::Cursor;

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

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AudioError {
    #[error("not a readable WAV file: {0}")]
    Wav(String),
    #[error("unsupported WAV sample format: {0}")]
    Unsupported(String),
    #[error("WAV file has no channels or a zero sample rate")]
    Empty,
}

/// Decode a WAV file held in memory: integer PCM of 8, 16, 24 or 32 bits, 32-bit float, or
/// G.711 mu-law (format tag 7, which Twilio's own recordings may use); any rate, any number of
/// channels. The whole file is decoded at once: for recordings of unknown length read a block at
/// a time with `recording::WavStream`.
pub fn decode_wav(bytes: &[u8]) -> Result<Pcm, AudioError> {
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

/// Encode channels as a 16-bit PCM WAV file (what the speech engines and `sox` read).
pub fn encode_wav_i16(channels: &[Vec<f32>], sample_rate: u32) -> Result<Vec<u8>, AudioError> {
    let n = channels.len();
    let frames = channels.first().map_or(0, Vec::len);
    if n == 0 || sample_rate == 0 || channels.iter().any(|c| c.len() != frames) {
        return Err(AudioError::Empty);
    }
    let spec = hound::WavSpec {
        channels: n as u16,
        sample_rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut out = Cursor::new(Vec::with_capacity(44 + frames * n * 2));
    {
        let mut w = hound::WavWriter::new(&mut out, spec).map_err(wav_err)?;
        for f in 0..frames {
            for c in channels {
                w.write_sample(f32_to_i16(c[f])).map_err(wav_err)?;
            }
        }
        w.finalize().map_err(wav_err)?;
    }
    Ok(out.into_inner())
}

/// The 44-byte header of a 16-bit PCM WAV file of `frames` frames, for writing one whose
/// samples are produced a block at a time (`pcm16_le` for the samples).
pub fn wav_header_i16(channels: u16, sample_rate: u32, frames: u64) -> Result<Vec<u8>, AudioError> {
    if channels == 0 || sample_rate == 0 {
        return Err(AudioError::Empty);
    }
    let block_align = u32::from(channels) * 2;
    let data_len = u32::try_from(frames * u64::from(block_align))
        .ok()
        .filter(|&n| n <= u32::MAX - 36)
        .ok_or_else(|| {
            AudioError::Unsupported(format!("{frames} frames do not fit one WAV file"))
        })?;
    let mut h = Vec::with_capacity(44);
    h.extend_from_slice(b"RIFF");
    h.extend_from_slice(&(36 + data_len).to_le_bytes());
    h.extend_from_slice(b"WAVEfmt ");
    h.extend_from_slice(&16u32.to_le_bytes());
    h.extend_from_slice(&1u16.to_le_bytes()); // PCM
    h.extend_from_slice(&channels.to_le_bytes());
    h.extend_from_slice(&sample_rate.to_le_bytes());
    h.extend_from_slice(&(sample_rate * block_align).to_le_bytes());
    h.extend_from_slice(&(block_align as u16).to_le_bytes());
    h.extend_from_slice(&16u16.to_le_bytes());
    h.extend_from_slice(b"data");
    h.extend_from_slice(&data_len.to_le_bytes());
    Ok(h)
}

/// Float samples as 16-bit little-endian PCM bytes, on the decoder's scale (`v / 32768`), so
/// audio that came from 16-bit or mu-law samples is written back exactly.
pub fn pcm16_le(samples: &[f32], out: &mut Vec<u8>) {
    for &s in samples {
        let v = (f64::from(s) * 32768.0).round().clamp(-32768.0, 32767.0) as i16;
        out.extend_from_slice(&v.to_le_bytes());
    }
}

/// A float sample to 16 bits, clipped.
pub fn f32_to_i16(s: f32) -> i16 {
    (s.clamp(-1.0, 1.0) * 32767.0).round() as i16
}

// Input block for the FFT resampler: long enough for a sharp anti-aliasing filter, short enough
// that padding at the end of a call costs nothing.
const RESAMPLE_CHUNK: usize = 1024;

/// The number of samples `resample` returns for `len` input samples.
pub fn resampled_len(len: usize, from_hz: u32, to_hz: u32) -> usize {
    if from_hz == 0 || to_hz == 0 {
        return 0;
    }
    let (len, from, to) = (len as u128, u128::from(from_hz), u128::from(to_hz));
    ((len * to + from / 2) / from) as usize
}

/// Resample one channel from `from_hz` to `to_hz` with a band-limited (FFT, anti-aliased)
/// resampler. The result has exactly `resampled_len(samples.len(), from_hz, to_hz)` samples and
/// is aligned in time with the input (the filter's delay is removed). A zero rate has no
/// samples, so it yields an empty vector.
pub fn resample(samples: &[f32], from_hz: u32, to_hz: u32) -> Vec<f32> {
    if from_hz == to_hz {
        return samples.to_vec();
    }
    let mut out = Vec::with_capacity(resampled_len(samples.len(), from_hz, to_hz));
    let mut r = StreamResampler::new(from_hz, to_hz);
    r.push(samples, &mut out);
    r.finish(&mut out);
    out
}

/// `resample` for audio that arrives in pieces: the output is the same, sample for sample, as
/// `resample` on the whole input, while only one block of the filter is held.
pub struct StreamResampler {
    kind: Kind,
    from_hz: u32,
    to_hz: u32,
    consumed: usize,
    emitted: usize,
}

enum Kind {
    /// Same rate: the input passes through.
    Same,
    /// A zero rate, or a resampler that failed: no samples.
    Off,
    Fft {
        resampler: Box<FftFixedInOut<f32>>,
        block: Vec<f32>,
        filled: usize,
        /// Output samples still to drop: the filter's delay.
        skip: usize,
        /// The last block run through the filter was all zeros, so nothing of earlier input is
        /// left in it: another block of zeros comes out as zeros, without the FFTs (hours of
        /// digital silence in a recording cost next to nothing).
        settled: bool,
    },
}

impl StreamResampler {
    pub fn new(from_hz: u32, to_hz: u32) -> Self {
        let kind = if from_hz == to_hz {
            Kind::Same
        } else if from_hz == 0 || to_hz == 0 {
            Kind::Off
        } else {
            let (from, to) = (from_hz as usize, to_hz as usize);
            // The resampler works in blocks of a whole number of rate periods. Its reported
            // delay (half a block) is exact only for an even block count; an odd one leaves a
            // half-sample shift.
            let period = from / gcd(from, to);
            let blocks = RESAMPLE_CHUNK.div_ceil(period).next_multiple_of(2);
            match FftFixedInOut::<f32>::new(from, to, blocks * period, 1) {
                Ok(resampler) => Kind::Fft {
                    skip: resampler.output_delay(),
                    block: vec![0.0; resampler.input_frames_next()],
                    resampler: Box::new(resampler),
                    filled: 0,
                    settled: false,
                },
                Err(_) => Kind::Off,
            }
        };
        StreamResampler {
            kind,
            from_hz,
            to_hz,
            consumed: 0,
            emitted: 0,
        }
    }

    /// Resample the next piece of input, appending what is ready to `out`.
    pub fn push(&mut self, mut input: &[f32], out: &mut Vec<f32>) {
        self.consumed += input.len();
        match &mut self.kind {
            Kind::Same => {
                out.extend_from_slice(input);
                self.emitted += input.len();
            }
            Kind::Off => {}
            Kind::Fft { .. } => {
                while !input.is_empty() {
                    let Kind::Fft { block, filled, .. } = &mut self.kind else {
                        return;
                    };
                    let take = (block.len() - *filled).min(input.len());
                    block[*filled..*filled + take].copy_from_slice(&input[..take]);
                    *filled += take;
                    input = &input[take..];
                    if *filled == block.len() {
                        self.process_block(out, usize::MAX);
                    }
                }
            }
        }
    }

    /// The end of the input: zeros flush the filter's tail out, up to exactly
    /// `resampled_len(all input)` samples in all.
    pub fn finish(&mut self, out: &mut Vec<f32>) {
        let want = resampled_len(self.consumed, self.from_hz, self.to_hz);
        while self.emitted < want {
            let Kind::Fft { block, filled, .. } = &mut self.kind else {
                return;
            };
            block[*filled..].fill(0.0);
            *filled = block.len();
            let before = self.emitted;
            self.process_block(out, want);
            if self.emitted == before && !matches!(self.kind, Kind::Fft { skip: 1.., .. }) {
                return;
            }
        }
    }

    /// Run the filter on the full block; emit at most up to `limit` samples in all.
    fn process_block(&mut self, out: &mut Vec<f32>, limit: usize) {
        let Kind::Fft {
            resampler,
            block,
            filled,
            skip,
            settled,
        } = &mut self.kind
        else {
            return;
        };
        *filled = 0;
        let silent = block.iter().all(|&x| x == 0.0);
        let chunk = if silent && *settled {
            vec![0.0; resampler.output_frames_next()]
        } else {
            match resampler.process(&[&block[..]], None) {
                Ok(mut c) => c.swap_remove(0),
                Err(_) => {
                    self.kind = Kind::Off;
                    return;
                }
            }
        };
        *settled = silent;
        let dropped = (*skip).min(chunk.len());
        *skip -= dropped;
        let ready = &chunk[dropped..];
        let n = ready.len().min(limit.saturating_sub(self.emitted));
        out.extend_from_slice(&ready[..n]);
        self.emitted += n;
    }
}

fn gcd(mut a: usize, mut b: usize) -> usize {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Mono audio at any rate to 8 kHz G.711 mu-law, as Twilio carries it.
pub fn to_mulaw_8k(mono: &[f32], rate: u32) -> Vec<u8> {
    let at_8k = resample(mono, rate, crate::SAMPLE_RATE);
    at_8k
        .iter()
        .map(|&s| mulaw::encode_sample(f32_to_i16(s)))
        .collect()
}

/// mu-law bytes to float samples in `[-1.0, 1.0]` (same rate, 8 kHz for Twilio audio).
pub fn mulaw_to_f32(bytes: &[u8]) -> Vec<f32> {
    bytes
        .iter()
        .map(|&b| f32::from(mulaw::decode_sample(b)) / 32768.0)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::f32::consts::PI;

    fn sine(freq: f32, amp: f32, rate: u32, secs: f32) -> Vec<f32> {
        let n = (rate as f32 * secs) as usize;
        (0..n)
            .map(|i| amp * (2.0 * PI * freq * i as f32 / rate as f32).sin())
            .collect()
    }

    fn rms(s: &[f32]) -> f32 {
        (s.iter().map(|x| x * x).sum::<f32>() / s.len() as f32).sqrt()
    }

    fn zero_crossings(s: &[f32]) -> usize {
        s.windows(2)
            .filter(|w| (w[0] < 0.0) != (w[1] < 0.0))
            .count()
    }

    // Edges see the filter ramp in and out; quality is judged in the middle.
    fn middle(s: &[f32], rate: u32) -> &[f32] {
        let margin = (rate / 10) as usize;
        &s[margin..s.len() - margin]
    }

    #[test]
    fn upsampling_a_tone_keeps_frequency_amplitude_and_phase() {
        let input = sine(1000.0, 0.5, 8000, 1.0);
        let out = resample(&input, 8000, 16000);
        assert_eq!(out.len(), 16000);
        let ideal = sine(1000.0, 0.5, 16000, 1.0);
        let worst = middle(&out, 16000)
            .iter()
            .zip(middle(&ideal, 16000))
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        // Sample duplication would be off by up to 0.19 here.
        assert!(worst < 0.005, "max deviation from the ideal tone: {worst}");
        let level = rms(middle(&out, 16000));
        assert!((level - 0.5 / 2f32.sqrt()).abs() < 0.002, "rms {level}");
        // 1 kHz over 0.8 s crosses zero 1600 times.
        assert!(zero_crossings(middle(&out, 16000)).abs_diff(1600) <= 1);
    }

    #[test]
    fn downsampling_removes_what_the_new_rate_cannot_carry() {
        let high = sine(5000.0, 0.5, 16000, 1.0);
        let out = resample(&high, 16000, 8000);
        assert_eq!(out.len(), 8000);
        // 5 kHz is above the 4 kHz Nyquist limit: it must not fold back as a 3 kHz alias.
        assert!(rms(middle(&out, 8000)) < 0.005, "alias rms {}", rms(&out));

        let low = sine(1000.0, 0.5, 16000, 1.0);
        let out = resample(&low, 16000, 8000);
        let ideal = sine(1000.0, 0.5, 8000, 1.0);
        let worst = middle(&out, 8000)
            .iter()
            .zip(middle(&ideal, 8000))
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(worst < 0.005, "max deviation {worst}");
    }

    #[test]
    fn odd_rates_and_lengths_come_out_exact() {
        for (len, from, to, want) in [
            (44100, 44100, 16000, 16000),
            (1, 8000, 16000, 2),
            (7, 8000, 16000, 14),
            (12345, 8000, 16000, 24690),
            (1000, 22050, 8000, 363),
            (3, 16000, 8000, 2),
            (0, 8000, 16000, 0),
        ] {
            assert_eq!(resampled_len(len, from, to), want, "{len} {from}->{to}");
            let input = vec![0.25f32; len];
            assert_eq!(resample(&input, from, to).len(), want, "{len} {from}->{to}");
        }
        let tone = sine(440.0, 0.5, 44100, 1.0);
        let out = resample(&tone, 44100, 16000);
        let ideal = sine(440.0, 0.5, 16000, 1.0);
        let worst = middle(&out, 16000)
            .iter()
            .zip(middle(&ideal, 16000))
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(worst < 0.005, "max deviation {worst}");
    }

    #[test]
    fn streaming_in_pieces_gives_the_same_samples_as_whole() {
        let tone = sine(440.0, 0.5, 8000, 2.3);
        for (from, to) in [(8000, 16000), (44100, 16000), (16000, 8000), (8000, 8000)] {
            let whole = resample(&tone, from, to);
            for piece in [1, 7, 1000, 4096, 20_000] {
                let mut r = StreamResampler::new(from, to);
                let mut out = Vec::new();
                for p in tone.chunks(piece) {
                    r.push(p, &mut out);
                }
                r.finish(&mut out);
                assert_eq!(out, whole, "{from}->{to} in pieces of {piece}");
            }
        }
        // Long silence after sound, sound after long silence: the same samples as the filter
        // run on every block.
        let mut gaps = tone.clone();
        gaps.extend(vec![0.0; 30_000]);
        gaps.extend(&tone);
        gaps.extend(vec![0.0; 30_000]);
        let mut r = StreamResampler::new(8000, 16000);
        let mut out = Vec::new();
        r.push(&gaps, &mut out);
        r.finish(&mut out);
        let mut filtered = Vec::new();
        let mut resampler = FftFixedInOut::<f32>::new(8000, 16000, 1024, 1).unwrap();
        let delay = resampler.output_delay();
        let mut padded = gaps.clone();
        padded.resize(gaps.len().next_multiple_of(1024) + 2048, 0.0);
        for b in padded.chunks(1024) {
            filtered.extend(resampler.process(&[b], None).unwrap().swap_remove(0));
        }
        assert_eq!(out, filtered[delay..delay + 2 * gaps.len()]);
        assert!(out[2 * tone.len() + 20_000..2 * tone.len() + 40_000]
            .iter()
            .all(|&x| x == 0.0));

        let mut r = StreamResampler::new(8000, 0);
        let mut out = Vec::new();
        r.push(&tone, &mut out);
        r.finish(&mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn same_rate_is_identity_and_zero_rate_is_empty() {
        let s = vec![0.1, -0.2, 0.3];
        assert_eq!(resample(&s, 8000, 8000), s);
        assert!(resample(&s, 0, 8000).is_empty());
        assert!(resample(&s, 8000, 0).is_empty());
    }

    fn wav_bytes<S: hound::Sample + Copy>(spec: hound::WavSpec, samples: &[S]) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        let mut w = hound::WavWriter::new(&mut out, spec).unwrap();
        for &s in samples {
            w.write_sample(s).unwrap();
        }
        w.finalize().unwrap();
        out.into_inner()
    }

    fn int_spec(channels: u16, rate: u32, bits: u16) -> hound::WavSpec {
        hound::WavSpec {
            channels,
            sample_rate: rate,
            bits_per_sample: bits,
            sample_format: hound::SampleFormat::Int,
        }
    }

    #[test]
    fn decodes_every_pcm_width_to_the_same_scale() {
        let p16 = decode_wav(&wav_bytes(
            int_spec(1, 8000, 16),
            &[0i16, 16384, -32768, 32767],
        ))
        .unwrap();
        assert_eq!(p16.sample_rate, 8000);
        assert_eq!(p16.channels, vec![vec![0.0, 0.5, -1.0, 32767.0 / 32768.0]]);

        let p8 = decode_wav(&wav_bytes(int_spec(1, 11025, 8), &[0i8, 64, -128])).unwrap();
        assert_eq!(p8.sample_rate, 11025);
        assert_eq!(p8.channels, vec![vec![0.0, 0.5, -1.0]]);

        let p24 = decode_wav(&wav_bytes(
            int_spec(1, 48000, 24),
            &[0i32, 1 << 22, -(1 << 23)],
        ))
        .unwrap();
        assert_eq!(p24.channels, vec![vec![0.0, 0.5, -1.0]]);

        let p32 = decode_wav(&wav_bytes(
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
        let pf = decode_wav(&wav_bytes(float, &[0.25f32, -0.75])).unwrap();
        assert_eq!(pf.channels, vec![vec![0.25, -0.75]]);
    }

    #[test]
    fn stereo_splits_into_left_and_right() {
        let pcm = decode_wav(&wav_bytes(
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
        let pcm = decode_wav(&mulaw_wav(2, &[0xFF, 0x80, 0x00, 0xFF])).unwrap();
        assert_eq!(pcm.sample_rate, 8000);
        let full = 32124.0 / 32768.0;
        assert_eq!(pcm.channels, vec![vec![0.0, -full], vec![full, 0.0]]);
    }

    #[test]
    fn refuses_what_is_not_wav() {
        assert!(matches!(decode_wav(b""), Err(AudioError::Wav(_))));
        assert!(matches!(
            decode_wav(b"hello world, not audio"),
            Err(AudioError::Wav(_))
        ));
        let mut cut = wav_bytes(int_spec(1, 8000, 16), &[1i16, 2, 3]);
        cut.truncate(20);
        assert!(decode_wav(&cut).is_err());
        let mut bad = mulaw_wav(1, &[0xFF]);
        bad[34] = 16; // mu-law claiming 16 bits per sample
        assert!(matches!(decode_wav(&bad), Err(AudioError::Unsupported(_))));
    }

    #[test]
    fn wav_writer_round_trips_through_the_reader() {
        let left = vec![0.5f32, -0.25, 1.5];
        let right = vec![0.0f32, 0.125, -2.0];
        let bytes = encode_wav_i16(&[left, right], 16000).unwrap();
        let pcm = decode_wav(&bytes).unwrap();
        assert_eq!(pcm.sample_rate, 16000);
        let q = |x: f32| f32::from(f32_to_i16(x)) / 32768.0;
        assert_eq!(
            pcm.channels,
            vec![
                vec![q(0.5), q(-0.25), q(1.0)],
                vec![q(0.0), q(0.125), q(-1.0)]
            ]
        );
        assert!(encode_wav_i16(&[vec![0.0], vec![]], 8000).is_err());
        assert!(encode_wav_i16(&[], 8000).is_err());
    }

    #[test]
    fn header_and_samples_written_apart_read_back_exactly() {
        let samples = [0i16, 1, -1, 32767, -32768, 12345];
        let original = decode_wav(&wav_bytes(int_spec(1, 8000, 16), &samples)).unwrap();
        let mut bytes = wav_header_i16(1, 8000, samples.len() as u64).unwrap();
        pcm16_le(&original.channels[0], &mut bytes);
        assert_eq!(bytes, wav_bytes(int_spec(1, 8000, 16), &samples));
        assert!(wav_header_i16(0, 8000, 1).is_err());
        assert!(wav_header_i16(1, 8000, 3_000_000_000).is_err());
    }

    #[test]
    fn mulaw_bridge_keeps_the_waveform() {
        let tone = sine(440.0, 0.5, 16000, 0.5);
        let bytes = to_mulaw_8k(&tone, 16000);
        assert_eq!(bytes.len(), 4000);
        let back = mulaw_to_f32(&bytes);
        let ideal = sine(440.0, 0.5, 8000, 0.5);
        let worst = middle(&back, 8000)
            .iter()
            .zip(middle(&ideal, 8000))
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        // Around half full scale mu-law steps are 1/32 wide and decode to their middle: at most
        // 1/64 (0.0156) off, plus the resampler's 0.0002.
        assert!(worst < 0.0160, "max deviation {worst}");
        assert_eq!(mulaw_to_f32(&[0xFF, 0x7F]), vec![0.0, 0.0]);
        assert_eq!(to_mulaw_8k(&[0.0; 80], 8000), vec![0xFF; 80]);
    }
}
