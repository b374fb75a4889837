//! What the postcall integration tests share: telephone-quality speech made on the spot with
//! espeak-ng (sent through 8 kHz mu-law as Twilio carries it) and the location of the model.
#![allow(dead_code)]

use media::audio::{mulaw_to_f32, to_mulaw_8k};
use media::wav::{self, encode_i16};
use std::path::PathBuf;

pub const RATE: u32 = 8000;

/// `text` spoken by espeak-ng, as the 8 kHz audio a phone call carries: synthesised, resampled
/// to 8 kHz, mu-law encoded and decoded again.
pub fn phone_speech(text: &str) -> Vec<f32> {
    let dir = tempfile::tempdir().expect("temp dir");
    let wav = dir.path().join("speech.wav");
    test_support::speak(text, &wav).unwrap_or_else(|e| panic!("{e}"));
    let pcm = wav::decode(&std::fs::read(&wav).expect("espeak-ng output")).expect("espeak-ng WAV");
    mulaw_to_f32(&to_mulaw_8k(&pcm.to_mono(), pcm.sample_rate))
}

pub fn silence(secs: f64) -> Vec<f32> {
    vec![0.0; (secs * f64::from(RATE)) as usize]
}

pub fn secs(samples: &[f32]) -> f64 {
    samples.len() as f64 / f64::from(RATE)
}

/// Write channels as an 8 kHz 16-bit WAV file (what the host service records) in `dir`.
pub fn write_wav(dir: &std::path::Path, name: &str, channels: &[Vec<f32>]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, encode_i16(channels, RATE).expect("encode")).expect("write wav");
    path
}

/// The Whisper model folder: `TWIML_GUARD_WHISPER_MODEL`, else `<repo>/models/whisper-tiny.en`.
pub fn model_dir() -> PathBuf {
    let dir = test_support::whisper_model_dir();
    assert!(
        dir.join("model.bin").is_file(),
        "no Whisper model at {}: run `make setup` (it prepares models/whisper-tiny.en) or set \
         TWIML_GUARD_WHISPER_MODEL to a CTranslate2 Whisper folder",
        dir.display()
    );
    dir
}

/// Write a long 8 kHz 16-bit recording without holding it: `frames` frames of silence on
/// `channels` channels, with `clips` (channel, start second, samples) laid over it. Returns the
/// path.
pub fn write_long_wav(
    dir: &std::path::Path,
    name: &str,
    channels: u16,
    frames: u64,
    clips: &[(usize, f64, &[f32])],
) -> PathBuf {
    use std::io::Write;
    let path = dir.join(name);
    let mut out = std::io::BufWriter::with_capacity(
        1 << 20,
        std::fs::File::create(&path).expect("create long wav"),
    );
    out.write_all(&media::wav::header_i16(channels, RATE, frames).expect("header"))
        .expect("write header");
    let clip_at: Vec<(usize, u64, &[f32])> = clips
        .iter()
        .map(|&(c, at, s)| (c, (at * f64::from(RATE)) as u64, s))
        .collect();
    const BLOCK: u64 = 64 * 1024;
    let zeros = vec![0u8; BLOCK as usize * usize::from(channels) * 2];
    let mut frame = 0;
    while frame < frames {
        let n = BLOCK.min(frames - frame);
        let touched = clip_at
            .iter()
            .any(|&(_, at, s)| at < frame + n && at + s.len() as u64 > frame);
        if !touched {
            out.write_all(&zeros[..n as usize * usize::from(channels) * 2])
                .expect("write silence");
        } else {
            let mut bytes = Vec::with_capacity(n as usize * usize::from(channels) * 2);
            for f in frame..frame + n {
                for c in 0..usize::from(channels) {
                    let v = clip_at
                        .iter()
                        .find(|&&(cc, at, s)| cc == c && f >= at && f < at + s.len() as u64)
                        .map_or(0.0, |&(_, at, s)| s[(f - at) as usize]);
                    bytes.extend_from_slice(&media::wav::f32_to_i16(v).to_le_bytes());
                }
            }
            out.write_all(&bytes).expect("write speech");
        }
        frame += n;
    }
    out.flush().expect("flush long wav");
    path
}
