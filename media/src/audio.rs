//! Call audio as numbers: a band-limited resampler between rates, and the bridge to and from
//! 8 kHz mu-law. Speech engines want 16 kHz float; Twilio carries 8 kHz mu-law. Pure code, no
//! files, so every conversion is tested on exact values. The WAV format is `wav`'s.

use crate::mulaw;
use crate::wav::f32_to_i16;
use rubato::{FftFixedInOut, Resampler};

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
