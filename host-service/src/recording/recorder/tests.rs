//! Recorder tests on an in-memory file: every sample of both channels is checked.

use super::*;
use media::wav::{repair_header, WavError};
use std::io::Cursor;

fn tone(n: usize, seed: u8) -> Vec<u8> {
    // Distinct, non-silent mu-law bytes so a misplaced sample shows up.
    (0..n)
        .map(|i| (i as u8).wrapping_mul(7).wrapping_add(seed) & 0x7F)
        .collect()
}

fn frames(bytes: &[u8]) -> Vec<[i16; 2]> {
    let data = &bytes[HEADER_LEN as usize..];
    data.chunks_exact(4)
        .map(|c| {
            [
                i16::from_le_bytes([c[0], c[1]]),
                i16::from_le_bytes([c[2], c[3]]),
            ]
        })
        .collect()
}

fn dec(b: u8) -> i16 {
    media::mulaw::decode_sample(b)
}

fn small_window() -> RecorderLimits {
    RecorderLimits {
        reorder_window_ms: 40,
        max_duration_ms: 60_000,
    }
}

#[test]
fn header_is_canonical_stereo_pcm() {
    // Read back by `media::wav`, which owns the format: 8000 frames of 16-bit stereo at 8 kHz.
    let mut file = header(8000).unwrap();
    assert_eq!(file.len() as u64, HEADER_LEN);
    file.resize(file.len() + 8000 * BYTES_PER_FRAME as usize, 0);
    let mut wav = media::wav::WavStream::new(Cursor::new(file)).unwrap();
    assert_eq!((wav.channels(), wav.sample_rate()), (2, 8000));
    let mut block = Vec::new();
    while wav.read_block(4096, &mut block).unwrap() > 0 {}
    assert_eq!(wav.frames_read(), 8000);
}

#[test]
fn places_frames_by_timestamp_and_fills_gaps_with_silence() {
    let mut rec = Recorder::new(Cursor::new(Vec::new()), small_window()).unwrap();
    let a = tone(160, 1);
    let b = tone(160, 50);
    rec.push_inbound(0, &a).unwrap();
    // 20..100 ms missing: must be silence.
    rec.push_inbound(100, &b).unwrap();
    let (summary, out) = rec.finalize().unwrap();
    assert_eq!(summary.frames, 800 + 160);
    assert_eq!(summary.duration_ms, 120);
    let bytes = out.into_inner();
    assert_eq!(bytes.len() as u64, HEADER_LEN + 960 * 4);
    assert_eq!(&bytes[..44], &header(960).unwrap());
    let f = frames(&bytes);
    for i in 0..960 {
        let expected_left = if i < 160 {
            dec(a[i])
        } else if i >= 800 {
            dec(b[i - 800])
        } else {
            0
        };
        assert_eq!(f[i], [expected_left, 0], "frame {i}");
    }
}

#[test]
fn late_and_reordered_frames_land_in_place_even_after_flush() {
    let mut rec = Recorder::new(Cursor::new(Vec::new()), small_window()).unwrap();
    let chunks: Vec<Vec<u8>> = (0..20).map(|k| tone(160, k as u8 * 3)).collect();
    // Send every frame except #2, then #2 long after it has been flushed to disk.
    for (k, c) in chunks.iter().enumerate() {
        if k != 2 {
            rec.push_inbound(k as u64 * 20, c).unwrap();
        }
    }
    assert!(rec.base > 3 * 160, "frame 2 should already be on disk");
    rec.push_inbound(40, &chunks[2]).unwrap();
    let (summary, out) = rec.finalize().unwrap();
    assert_eq!(summary.frames, 20 * 160);
    let f = frames(&out.into_inner());
    for (k, c) in chunks.iter().enumerate() {
        for (i, &byte) in c.iter().enumerate() {
            assert_eq!(f[k * 160 + i], [dec(byte), 0], "chunk {k} sample {i}");
        }
    }
}

#[test]
fn outbound_audio_queues_after_itself_and_starts_at_the_callers_position() {
    let mut rec = Recorder::new(Cursor::new(Vec::new()), small_window()).unwrap();
    let caller = tone(160, 9);
    rec.push_inbound(0, &caller).unwrap();
    let x = tone(80, 100);
    let y = tone(80, 110);
    rec.push_outbound(&x).unwrap(); // plays from 160
    rec.push_outbound(&y).unwrap(); // queued right after x: 240
    rec.push_inbound(20, &caller).unwrap(); // caller now at 320: queue drained
    let z = tone(40, 120);
    rec.push_outbound(&z).unwrap(); // from 320
    let (_, out) = rec.finalize().unwrap();
    let f = frames(&out.into_inner());
    assert_eq!(f.len(), 360);
    for (i, fr) in f.iter().enumerate() {
        let right = match i {
            160..=239 => dec(x[i - 160]),
            240..=319 => dec(y[i - 240]),
            320..=359 => dec(z[i - 320]),
            _ => 0,
        };
        assert_eq!(fr[1], right, "agent sample {i}");
        let left = if i < 320 { dec(caller[i % 160]) } else { 0 };
        assert_eq!(fr[0], left, "caller sample {i}");
    }
}

#[test]
fn clear_erases_unplayed_agent_audio() {
    let mut rec = Recorder::new(Cursor::new(Vec::new()), small_window()).unwrap();
    rec.push_inbound(0, &tone(160, 1)).unwrap();
    rec.push_outbound(&tone(800, 2)).unwrap(); // 160..960 queued
    rec.push_inbound(20, &tone(160, 3)).unwrap(); // caller heard 160..320 of it
    rec.clear_outbound();
    let after = tone(16, 4);
    rec.push_outbound(&after).unwrap();
    let (summary, out) = rec.finalize().unwrap();
    // The buffer still spans the erased audio; it is silence now.
    assert_eq!(summary.frames, 960);
    let f = frames(&out.into_inner());
    let played = tone(800, 2);
    for (i, fr) in f.iter().enumerate() {
        let right = match i {
            160..=319 => dec(played[i - 160]),
            320..=335 => dec(after[i - 320]),
            _ => 0,
        };
        assert_eq!(fr[1], right, "agent sample {i}");
    }
}

#[test]
fn refuses_timestamps_past_the_limit_without_growing_the_file() {
    let mut rec = Recorder::new(Cursor::new(Vec::new()), small_window()).unwrap();
    let err = rec.push_inbound(60_000, &tone(160, 1)).unwrap_err();
    assert!(
        matches!(err, RecordingError::TooLong { at_ms: 60_000, .. }),
        "{err}"
    );
    let (summary, out) = rec.finalize().unwrap();
    assert_eq!(summary.frames, 0);
    assert_eq!(out.into_inner().len(), 44);
}

#[test]
fn a_jump_ahead_streams_silence_instead_of_buffering_it() {
    let mut rec = Recorder::new(Cursor::new(Vec::new()), small_window()).unwrap();
    rec.push_inbound(0, &tone(160, 1)).unwrap();
    rec.push_inbound(50_000, &tone(160, 2)).unwrap();
    assert!(rec.pending.len() < 2000, "pending {}", rec.pending.len());
    let (summary, out) = rec.finalize().unwrap();
    assert_eq!(summary.frames, 400_000 + 160);
    let f = frames(&out.into_inner());
    assert!(f[160..400_000].iter().all(|fr| *fr == [0, 0]));
    assert_eq!(f[400_000][0], dec(tone(160, 2)[0]));
}

#[test]
fn a_long_call_in_the_default_window_is_written_sample_for_sample() {
    // 30 s with the one-second window: the held audio wraps around its ring many times and goes
    // out a second or more at a time, so every write crosses the ring's seam somewhere.
    let mut rec = Recorder::new(Cursor::new(Vec::new()), RecorderLimits::default()).unwrap();
    let chunks: Vec<Vec<u8>> = (0..1500).map(|k| tone(160, (k % 251) as u8)).collect();
    for (k, c) in chunks.iter().enumerate() {
        rec.push_inbound(k as u64 * 20, c).unwrap();
        if k % 7 == 0 {
            rec.push_outbound(&tone(40, k as u8)).unwrap();
        }
    }
    assert!(rec.base >= 27 * 8000, "written up to frame {}", rec.base);
    let (summary, out) = rec.finalize().unwrap();
    assert_eq!(summary.frames, 1500 * 160);
    let f = frames(&out.into_inner());
    assert_eq!(f.len(), 1500 * 160);
    for (k, c) in chunks.iter().enumerate() {
        for (i, &byte) in c.iter().enumerate() {
            assert_eq!(f[k * 160 + i][0], dec(byte), "chunk {k} sample {i}");
        }
        if k % 7 == 0 {
            let agent = tone(40, k as u8);
            for (i, &byte) in agent.iter().enumerate() {
                assert_eq!(f[k * 160 + 160 + i][1], dec(byte), "agent after chunk {k}");
            }
        }
    }
}

#[test]
fn repair_fixes_sizes_of_a_crashed_recording_and_keeps_the_audio() {
    let mut rec = Recorder::new(Cursor::new(Vec::new()), small_window()).unwrap();
    let chunks: Vec<Vec<u8>> = (0..50).map(|k| tone(160, k as u8)).collect();
    for (k, c) in chunks.iter().enumerate() {
        rec.push_inbound(k as u64 * 20, c).unwrap();
    }
    let flushed = rec.base;
    // Simulate the crash: take the bytes without finalizing, plus a torn half frame.
    let mut bytes = rec.out.get_ref().clone();
    assert_eq!(&bytes[40..44], &[0, 0, 0, 0]);
    bytes.extend_from_slice(&[1, 2]);
    let len = bytes.len() as u64;
    let mut file = Cursor::new(bytes);
    let frames_kept = repair_header(&mut file, len, CHANNELS, SAMPLE_RATE).unwrap();
    assert_eq!(frames_kept, flushed);
    let bytes = file.into_inner();
    assert_eq!(&bytes[..44], &header(flushed).unwrap());
    let f = frames(&bytes[..(HEADER_LEN + flushed * 4) as usize]);
    for (i, fr) in f.iter().enumerate() {
        assert_eq!(fr[0], dec(chunks[i / 160][i % 160]), "sample {i}");
    }
}

#[test]
fn repair_refuses_foreign_files_and_handles_a_torn_header() {
    let mut junk = Cursor::new(b"not a wav file at all, no no no no no no no no".to_vec());
    assert!(matches!(
        repair_header(&mut junk, 46, CHANNELS, SAMPLE_RATE),
        Err(WavError::Wav(_))
    ));
    let mut torn = Cursor::new(b"RIFF".to_vec());
    assert_eq!(
        repair_header(&mut torn, 4, CHANNELS, SAMPLE_RATE).unwrap(),
        0
    );
    assert_eq!(&torn.into_inner()[..], &header(0).unwrap());
}
