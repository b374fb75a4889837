//! `twilio-sim`: plays Twilio's part of a phone call against a local stack, so a voice backend
//! (and the twiml-guard filter in front of it) can be tested without a phone.
//!
//! Layout: pure parts first (`twiml_doc` parses TwiML, `exec` decides what Twilio does with it,
//! `urls` maps public URLs onto `--local`, `pacing` holds frame and mark timing, `report` the
//! result), then the thin I/O edges (`call` for webhooks, `stream` for the media WebSocket,
//! `load` for many calls).

pub mod call;
pub mod exec;
pub mod load;
pub mod pacing;
pub mod report;
pub mod sign;
pub mod stream;
pub mod twiml_doc;
pub mod urls;

pub use call::{place_call, CallConfig};
pub use report::{Outcome, Report};

use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    // The cause is part of the message (not a `source`), so error chains do not print it twice.
    #[error("cannot read {path}: {reason}")]
    Io {
        path: String,
        reason: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Audio {
        path: String,
        reason: media::wav::WavError,
    },
    #[error("{path} has no audio")]
    EmptyAudio { path: String },
    #[error("bad --dtmf {0:?}: expected DIGITS@SECONDS, e.g. 1@2.5")]
    Dtmf(String),
}

/// Read a WAV file (any rate, channels and common sample format) as 8 kHz mu-law.
pub fn load_audio(path: &std::path::Path) -> Result<Vec<u8>, SimError> {
    let shown = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|reason| SimError::Io {
        path: shown.clone(),
        reason,
    })?;
    let pcm = media::wav::decode(&bytes).map_err(|reason| SimError::Audio {
        path: shown.clone(),
        reason,
    })?;
    let mulaw = media::audio::to_mulaw_8k(&pcm.to_mono(), pcm.sample_rate);
    if mulaw.is_empty() {
        return Err(SimError::EmptyAudio { path: shown });
    }
    Ok(mulaw)
}

/// `--dtmf 12@3.5`: digits pressed from that second of the stream, 100 ms apart.
pub fn parse_dtmf(spec: &str) -> Result<Vec<(Duration, char)>, SimError> {
    let bad = || SimError::Dtmf(spec.to_owned());
    let (digits, at) = spec.split_once('@').ok_or_else(bad)?;
    let at: f64 = at.trim().parse().map_err(|_| bad())?;
    if !at.is_finite() || at < 0.0 || digits.is_empty() {
        return Err(bad());
    }
    digits
        .chars()
        .enumerate()
        .map(|(i, c)| {
            if c.is_ascii_digit() || c == '*' || c == '#' {
                Ok((
                    Duration::from_secs_f64(at) + Duration::from_millis(100 * i as u64),
                    c,
                ))
            } else {
                Err(bad())
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audio_errors_name_the_file() {
        let err = load_audio(std::path::Path::new("/nonexistent/caller.wav")).unwrap_err();
        assert!(err
            .to_string()
            .starts_with("cannot read /nonexistent/caller.wav: "));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.wav");
        std::fs::write(&path, b"RIFF not really").unwrap();
        let err = load_audio(&path).unwrap_err();
        assert!(matches!(err, SimError::Audio { .. }), "{err}");
    }

    #[test]
    fn espeak_style_wav_becomes_8khz_mulaw() {
        // 0.5 s of a 440 Hz tone at 22.05 kHz, espeak-ng's rate.
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 22_050,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tone.wav");
        let mut w = hound::WavWriter::create(&path, spec).unwrap();
        for i in 0..11_025 {
            let t = i as f32 / 22_050.0;
            w.write_sample(((t * 440.0 * std::f32::consts::TAU).sin() * 8000.0) as i16)
                .unwrap();
        }
        w.finalize().unwrap();
        let mulaw = load_audio(&path).unwrap();
        assert_eq!(mulaw.len(), 4000);
        assert!(mulaw.iter().any(|&b| b != media::mulaw::SILENCE));
    }

    #[test]
    fn dtmf_spec() {
        assert_eq!(
            parse_dtmf("1#@2.5").unwrap(),
            vec![
                (Duration::from_millis(2500), '1'),
                (Duration::from_millis(2600), '#')
            ]
        );
        for bad in ["1", "@2", "a@1", "1@-1", "1@x", "1@inf"] {
            assert!(parse_dtmf(bad).is_err(), "{bad}");
        }
    }
}
