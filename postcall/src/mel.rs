//! Whisper's log-mel front end, computed as faster-whisper computes it (its `FeatureExtractor`),
//! so the same window gives the model the same input and so the same tokens: 16 kHz audio,
//! a 400-sample periodic Hann window every 160 samples with reflect padding, the power of all
//! 201 bins through Slaney mel filters, `log10`, clamped to 8 below the window's maximum and
//! scaled. Own code (a filter bank and one real FFT) instead of a crate, which would bring an
//! image stack with it.

use realfft::{RealFftPlanner, RealToComplex};
use std::sync::Arc;

/// Samples per FFT frame (25 ms at 16 kHz).
pub const N_FFT: usize = 400;
/// Samples between frames (10 ms).
pub const HOP: usize = 160;
/// Frames in one 30 s window: the encoder's fixed input length.
pub const FRAMES: usize = 3000;
/// Samples in one 30 s window.
pub const WINDOW_SAMPLES: usize = FRAMES * HOP;
const BINS: usize = N_FFT / 2 + 1;
const RATE: f64 = 16_000.0;

/// The filter bank and FFT plan for one model's number of mel bins.
pub struct LogMel {
    n_mels: usize,
    /// `n_mels` rows of `BINS` weights.
    filters: Vec<f32>,
    /// Each row's non-zero bins (a triangle covers a few of the 201): only those are summed.
    spans: Vec<std::ops::Range<usize>>,
    hann: Vec<f64>,
    fft: Arc<dyn RealToComplex<f64>>,
}

impl LogMel {
    pub fn new(n_mels: usize) -> Self {
        let hann = (0..N_FFT)
            .map(|n| 0.5 - 0.5 * (2.0 * std::f64::consts::PI * n as f64 / N_FFT as f64).cos())
            .collect();
        let filters = mel_filters(n_mels);
        let spans = filters
            .chunks(BINS)
            .map(|row| {
                let first = row.iter().position(|&w| w != 0.0).unwrap_or(0);
                let last = row.iter().rposition(|&w| w != 0.0).map_or(0, |i| i + 1);
                first..last.max(first)
            })
            .collect();
        LogMel {
            n_mels,
            filters,
            spans,
            hann,
            fft: RealFftPlanner::<f64>::new().plan_fft_forward(N_FFT),
        }
    }

    pub fn n_mels(&self) -> usize {
        self.n_mels
    }

    /// The model input for up to 30 s of audio: `[n_mels, FRAMES]`, row-major. As in
    /// faster-whisper, 160 zeros are appended before the frames are taken, one frame per 160
    /// samples is kept, and the frames after the audio are 0.
    pub fn features(&self, audio: &[f32]) -> Vec<f32> {
        let audio = audio.get(..WINDOW_SAMPLES).unwrap_or(audio);
        let mut signal: Vec<f64> = audio.iter().map(|&x| f64::from(x)).collect();
        signal.resize(audio.len() + HOP, 0.0);
        let pad = N_FFT / 2;
        let n = signal.len();
        let padded: Vec<f64> = (0..n + 2 * pad)
            .map(|i| signal[reflect(i as isize - pad as isize, n)])
            .collect();
        // One frame more than the audio fills, as faster-whisper computes (and normalises
        // over) before it drops the last.
        let frames = (padded.len() - N_FFT) / HOP;
        let kept = (audio.len() / HOP).min(FRAMES);
        let mut logs = vec![f64::NEG_INFINITY; self.n_mels * frames];
        let mut input = self.fft.make_input_vec();
        let mut spectrum = self.fft.make_output_vec();
        let mut power = vec![0f64; BINS];
        for f in 0..frames {
            let frame = &padded[f * HOP..f * HOP + N_FFT];
            for ((x, s), w) in input.iter_mut().zip(frame).zip(&self.hann) {
                *x = s * w;
            }
            if self.fft.process(&mut input, &mut spectrum).is_err() {
                // The buffers come from the plan itself, so the lengths always match.
                continue;
            }
            for (p, c) in power.iter_mut().zip(&spectrum) {
                *p = c.norm_sqr();
            }
            for (m, (weights, span)) in self.filters.chunks(BINS).zip(&self.spans).enumerate() {
                let e: f64 = weights[span.clone()]
                    .iter()
                    .zip(&power[span.clone()])
                    .map(|(w, p)| f64::from(*w) * p)
                    .sum();
                logs[m * frames + f] = e.max(1e-10).log10();
            }
        }
        let floor = logs.iter().copied().fold(f64::NEG_INFINITY, f64::max) - 8.0;
        let mut out = vec![0f32; self.n_mels * FRAMES];
        for (row, logs) in out.chunks_mut(FRAMES).zip(logs.chunks(frames.max(1))) {
            for (o, &x) in row.iter_mut().zip(&logs[..kept]) {
                *o = ((x.max(floor) + 4.0) / 4.0) as f32;
            }
        }
        out
    }
}

/// numpy's `reflect` padding: index `i` of a signal of length `n` mirrored at both ends
/// (without repeating the edge sample), as often as needed.
fn reflect(i: isize, n: usize) -> usize {
    if n < 2 {
        return 0;
    }
    let period = 2 * (n as isize - 1);
    let m = i.rem_euclid(period);
    (if m < n as isize { m } else { period - m }) as usize
}

/// Slaney-style mel filters (librosa's `mel(htk=False, norm="slaney")`, as faster-whisper
/// computes them): `n_mels` triangles from 0 Hz to 8 kHz over the FFT bins, each scaled to about
/// constant energy.
fn mel_filters(n_mels: usize) -> Vec<f32> {
    const MAX_MEL: f64 = 45.245_640_471_924_965;
    const F_SP: f64 = 200.0 / 3.0;
    const MIN_LOG_HZ: f64 = 1000.0;
    let min_log_mel = MIN_LOG_HZ / F_SP;
    let logstep = 6.4f64.ln() / 27.0;
    let freqs: Vec<f64> = (0..n_mels + 2)
        .map(|i| {
            let mel = MAX_MEL * i as f64 / (n_mels + 1) as f64;
            if mel >= min_log_mel {
                MIN_LOG_HZ * (logstep * (mel - min_log_mel)).exp()
            } else {
                F_SP * mel
            }
        })
        .collect();
    let mut out = Vec::with_capacity(n_mels * BINS);
    for i in 0..n_mels {
        let (lo, mid, hi) = (freqs[i], freqs[i + 1], freqs[i + 2]);
        let enorm = 2.0 / (hi - lo);
        for k in 0..BINS {
            let f = k as f64 * RATE / N_FFT as f64;
            let lower = (f - lo) / (mid - lo);
            let upper = (hi - f) / (hi - mid);
            out.push((lower.min(upper).max(0.0) * enorm) as f32);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values from faster-whisper 1.2.1's `FeatureExtractor(feature_size=80)` on the same
    /// input: `get_mel_filters` and the log-mel of 0.5 s of a 440 Hz tone plus a 3 kHz one.
    #[test]
    fn matches_faster_whisper() {
        let filters = mel_filters(80);
        for (m, k, want) in [
            (0usize, 1usize, 0.024_862_595_f32),
            (10, 10, 0.019_908_22),
            (40, 43, 0.014_735_566),
            (79, 192, 0.003_164_712),
        ] {
            let got = filters[m * BINS + k];
            assert!(
                (got - want).abs() < 1e-6,
                "filter {m} bin {k}: {got} != {want}"
            );
        }
        let audio: Vec<f32> = (0..8000)
            .map(|n| {
                let t = n as f64 / RATE;
                (0.3 * (2.0 * std::f64::consts::PI * 440.0 * t).sin()
                    + 0.1 * (2.0 * std::f64::consts::PI * 3000.0 * t).sin()) as f32
            })
            .collect();
        let f = LogMel::new(80).features(&audio);
        assert_eq!(f.len(), 80 * FRAMES);
        for (m, frame, want) in [
            (0usize, 0usize, 0.881_391_5_f32),
            (11, 10, 1.327_279_3),
            (60, 25, -0.672_720_7),
            (20, 49, 0.051_429_69),
            (79, 30, -0.672_720_7),
        ] {
            let got = f[m * FRAMES + frame];
            assert!(
                (got - want).abs() < 1e-3,
                "mel {m} frame {frame}: {got} != {want}"
            );
        }
        // After the audio (50 frames of it), the input is 0.
        assert!(f[..FRAMES].iter().skip(50).all(|&x| x == 0.0));
    }

    #[test]
    fn reflect_mirrors_without_repeating_the_edge() {
        let got: Vec<usize> = (-3..7).map(|i| reflect(i, 4)).collect();
        assert_eq!(got, [3, 2, 1, 0, 1, 2, 3, 2, 1, 0]);
    }
}
