//! Recorded call audio as numbers: WAV bytes in, per-channel `f32` out, a band-limited resampler
//! between rates, and the bridge to and from 8 kHz mu-law. Speech engines want 16 kHz float;
//! Twilio carries 8 kHz mu-law; recordings arrive in whatever WAV flavour wrote them. Pure code,
//! no files, so every conversion is tested on exact values.

use crate::mulaw;
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

// WAVE format tags hound does not read itself.
const WAVE_FORMAT_MULAW: u16 = 7;
const WAVE_FORMAT_EXTENSIBLE: u16 = 0xFFFE;

/// Decode a WAV file held in memory: integer PCM of 8, 16, 24 or 32 bits, 32-bit float, or
/// G.711 mu-law (format tag 7, which Twilio's own recordings may use); any rate, any number of
/// channels.
pub fn decode_wav(bytes: &[u8]) -> Result<Pcm, AudioError> {
    if let Some(fmt) = find_fmt(bytes) {
        if fmt.format_tag == WAVE_FORMAT_MULAW {
            return decode_mulaw_wav(bytes, &fmt);
        }
    }
    let mut reader = hound::WavReader::new(Cursor::new(bytes)).map_err(wav_err)?;
    let spec = reader.spec();
    if spec.channels == 0 || spec.sample_rate == 0 {
        return Err(AudioError::Empty);
    }
    let interleaved: Vec<f32> = match (spec.sample_format, spec.bits_per_sample) {
        (hound::SampleFormat::Float, 32) => reader
            .samples::<f32>()
            .collect::<Result<_, _>>()
            .map_err(wav_err)?,
        (hound::SampleFormat::Int, bits @ (8 | 16 | 24 | 32)) => {
            let scale = 1.0 / (1u64 << (bits - 1)) as f64;
            reader
                .samples::<i32>()
                .map(|s| s.map(|v| (f64::from(v) * scale) as f32))
                .collect::<Result<_, _>>()
                .map_err(wav_err)?
        }
        (format, bits) => {
            return Err(AudioError::Unsupported(format!(
                "{format:?} with {bits} bits"
            )));
        }
    };
    Ok(deinterleave(
        &interleaved,
        usize::from(spec.channels),
        spec.sample_rate,
    ))
}

fn wav_err(e: hound::Error) -> AudioError {
    match e {
        hound::Error::Unsupported => AudioError::Unsupported("format not supported".into()),
        other => AudioError::Wav(other.to_string()),
    }
}

fn deinterleave(interleaved: &[f32], channels: usize, sample_rate: u32) -> Pcm {
    let frames = interleaved.len() / channels;
    let channels = (0..channels)
        .map(|c| (0..frames).map(|f| interleaved[f * channels + c]).collect())
        .collect();
    Pcm {
        sample_rate,
        channels,
    }
}

struct Fmt {
    format_tag: u16,
    channels: u16,
    sample_rate: u32,
    bits_per_sample: u16,
}

/// Walk the RIFF chunks for `fmt `; `None` when the bytes are not RIFF/WAVE (hound then reports
/// why).
fn find_fmt(bytes: &[u8]) -> Option<Fmt> {
    let body = riff_body(bytes)?;
    let fmt = chunks(body).find(|(id, _)| id == b"fmt ")?.1;
    let u16_at = |i: usize| Some(u16::from_le_bytes(fmt.get(i..i + 2)?.try_into().ok()?));
    let mut format_tag = u16_at(0)?;
    if format_tag == WAVE_FORMAT_EXTENSIBLE {
        // The real tag is the first two bytes of the sub-format GUID.
        format_tag = u16_at(24)?;
    }
    Some(Fmt {
        format_tag,
        channels: u16_at(2)?,
        sample_rate: u32::from_le_bytes(fmt.get(4..8)?.try_into().ok()?),
        bits_per_sample: u16_at(14)?,
    })
}

fn riff_body(bytes: &[u8]) -> Option<&[u8]> {
    if bytes.get(0..4)? != b"RIFF" || bytes.get(8..12)? != b"WAVE" {
        return None;
    }
    bytes.get(12..)
}

/// RIFF chunks as `(id, payload)`; a truncated last chunk yields what is there, because a
/// recorder killed mid-write still leaves valid audio before the cut.
fn chunks(mut rest: &[u8]) -> impl Iterator<Item = ([u8; 4], &[u8])> {
    std::iter::from_fn(move || {
        let id: [u8; 4] = rest.get(0..4)?.try_into().ok()?;
        let len = u32::from_le_bytes(rest.get(4..8)?.try_into().ok()?) as usize;
        let payload_end = 8usize.saturating_add(len).min(rest.len());
        let payload = &rest[8..payload_end];
        // Chunks are padded to even length.
        let next = payload_end.saturating_add(len & 1).min(rest.len());
        rest = &rest[next..];
        Some((id, payload))
    })
}

fn decode_mulaw_wav(bytes: &[u8], fmt: &Fmt) -> Result<Pcm, AudioError> {
    if fmt.channels == 0 || fmt.sample_rate == 0 {
        return Err(AudioError::Empty);
    }
    if fmt.bits_per_sample != 8 {
        return Err(AudioError::Unsupported(format!(
            "mu-law with {} bits per sample",
            fmt.bits_per_sample
        )));
    }
    let body = riff_body(bytes).ok_or_else(|| AudioError::Wav("not RIFF/WAVE".into()))?;
    let data = chunks(body)
        .find(|(id, _)| id == b"data")
        .ok_or_else(|| AudioError::Wav("no data chunk".into()))?
        .1;
    Ok(deinterleave(
        &mulaw_to_f32(data),
        usize::from(fmt.channels),
        fmt.sample_rate,
    ))
}

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
    let want = resampled_len(samples.len(), from_hz, to_hz);
    if from_hz == to_hz {
        return samples.to_vec();
    }
    if want == 0 {
        return Vec::new();
    }
    let (from, to) = (from_hz as usize, to_hz as usize);
    // The resampler works in blocks of a whole number of rate periods. Its reported delay (half
    // a block) is exact only for an even block count; an odd one leaves a half-sample shift.
    let period = from / gcd(from, to);
    let blocks = RESAMPLE_CHUNK.div_ceil(period).next_multiple_of(2);
    let Ok(mut resampler) = FftFixedInOut::<f32>::new(from, to, blocks * period, 1) else {
        return Vec::new();
    };
    let delay = resampler.output_delay();
    let chunk_in = resampler.input_frames_next();
    let mut out: Vec<f32> = Vec::with_capacity(want + delay + resampler.output_frames_max());
    let mut block = vec![0.0f32; chunk_in];
    let mut pos = 0;
    // Past the end of the input, zeros flush the filter's tail out.
    while out.len() < want + delay {
        let end = (pos + chunk_in).min(samples.len());
        let take = end.saturating_sub(pos);
        block[..take].copy_from_slice(&samples[pos.min(samples.len())..end]);
        block[take..].fill(0.0);
        pos += chunk_in;
        match resampler.process(&[&block[..]], None) {
            Ok(mut chunk) => out.append(&mut chunk[0]),
            Err(_) => return Vec::new(),
        }
    }
    out.drain(..delay);
    out.truncate(want);
    out
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
        v.extend_from_slice(&WAVE_FORMAT_MULAW.to_le_bytes());
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
