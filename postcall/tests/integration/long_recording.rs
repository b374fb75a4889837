//! Recordings of any length are cut into windows in bounded memory (no model needed): a long two-channel
//! file, mostly silence, is read a block at a time; only its speech becomes windows, each at its
//! place in the call, and the samples held at once stay under `windowing::max_held`, which
//! does not depend on the call's length.

use crate::common;

use common::{write_long_wav, RATE};
use postcall::audio::WHISPER_RATE;
use postcall::{recording, windowing};

fn tone(secs: f64, amp: f32) -> Vec<f32> {
    (0..(secs * f64::from(RATE)) as usize)
        .map(|i| amp * (i as f32 * 0.3).sin())
        .collect()
}

/// A window as windowing handed it out: channel, parts in seconds, length in samples.
type Seen = (usize, Vec<(f64, f64)>, usize);

#[test]
fn a_long_mostly_silent_call_is_windowed_in_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let minutes = 40;
    let frames = minutes * 60 * u64::from(RATE);
    let started = std::time::Instant::now();
    let long_speech = tone(75.0, 0.3); // longer than two windows
    let word = tone(1.5, 0.2);
    let path = write_long_wav(
        dir.path(),
        "long.wav",
        2,
        frames,
        &[
            (0, 600.0, &long_speech),
            (1, 60.0, &word),
            (1, 1800.0, &word),
            (0, 2390.0, &word),
        ],
    );
    let mut windows: Vec<Seen> = Vec::new();
    eprintln!("written in {:?}", started.elapsed());
    let started = std::time::Instant::now();
    let stream = recording::open(&path).unwrap();
    let windowed = windowing::window_stream(stream, |channel, w| {
        let secs = |s: usize| s as f64 / f64::from(WHISPER_RATE);
        assert_eq!(w.audio().len(), w.packed.len());
        let parts = w.packed.parts.iter().map(|p| (secs(p.start), secs(p.end)));
        windows.push((channel, parts.collect(), w.packed.len()));
        Ok(())
    })
    .unwrap();
    eprintln!("windowed in {:?}", started.elapsed());
    assert_eq!(windowed.channels, 2);
    assert_eq!(windowed.duration_secs, (minutes * 60) as f64);
    let bound = windowing::max_held(2, RATE);
    assert!(
        windowed.peak_samples <= bound,
        "held {} samples, bound {bound}",
        windowed.peak_samples
    );
    // The whole call at 16 kHz would be 2 x 38.4 M samples; the bound is a few seconds' worth.
    assert!(bound < 4_000_000, "{bound}");
    eprintln!("{windows:?}, peak {} samples", windowed.peak_samples);
    // Silence costs nothing: windows only hold the speech (0.25 s padding each side); the 75 s
    // stretch is cut into pieces of at most 30 s, and pieces are packed together however far
    // apart they were.
    assert!(windows.iter().all(|w| w.2 <= 30 * WHISPER_RATE as usize));
    let parts = |channel: usize| -> Vec<(f64, f64)> {
        windows
            .iter()
            .filter(|w| w.0 == channel)
            .flat_map(|w| w.1.clone())
            .collect()
    };
    let near = |a: f64, b: f64| (a - b).abs() < 0.05;
    let left = parts(0);
    assert_eq!(left.len(), 4, "{left:?}");
    assert!(
        near(left[0].0, 599.75) && near(left[2].1, 675.25),
        "{left:?}"
    );
    assert!(
        left.windows(2).take(2).all(|p| p[0].1 == p[1].0),
        "{left:?}"
    );
    assert!(
        near(left[3].0, 2389.75) && near(left[3].1, 2391.75),
        "{left:?}"
    );
    let right = parts(1);
    assert_eq!(right.len(), 2, "{right:?}");
    assert!(
        near(right[0].0, 59.75) && near(right[1].0, 1799.75),
        "{right:?}"
    );
    let heard: f64 = left.iter().chain(&right).map(|p| p.1 - p.0).sum();
    assert!(
        (heard - 81.5).abs() < 0.01,
        "{heard} s of windows for 79.5 s of speech and 4 x 0.5 s of padding"
    );
}

#[test]
fn unreadable_recordings_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.wav");
    let err = recording::open(&missing).err().unwrap();
    assert!(
        matches!(&err, postcall::EngineError::Permanent(m) if m.starts_with(&format!("cannot read recording {}", missing.display()))),
        "{err}"
    );
    let three = write_long_wav(dir.path(), "three.wav", 3, 800, &[]);
    let err = windowing::window_stream(recording::open(&three).unwrap(), |_, _| Ok(()))
        .err()
        .unwrap();
    assert_eq!(
        err,
        postcall::EngineError::Permanent(
            "recording has 3 channels; expected 1 (caller) or 2 (caller, agent)".into()
        )
    );
}
