//! The audio side of transcription that needs no model: where to cut a long call into Whisper
//! windows, which channels hold speech at all, how a window's pieces become call-time segments,
//! and how two speakers' segments interleave. Pure, so the whole plan is tested without a model.

use crate::Segment;
use std::ops::Range;

/// Whisper's input rate.
pub const WHISPER_RATE: u32 = 16_000;
/// Whisper sees at most 30 s at a time.
pub const MAX_WINDOW_SECS: f64 = 30.0;
/// A cut is searched for no earlier than this into a window, so windows stay long (fewer model
/// runs, more context) while a pause is still very likely to be found.
pub const MIN_WINDOW_SECS: f64 = 20.0;
/// Level analysis unit: 20 ms, a phone frame.
const FRAME_SECS: f64 = 0.02;
/// A frame louder than this (RMS, full scale 1.0; about -40 dBFS) is treated as possible
/// speech. Telephone line noise sits well below; the quietest speech well above.
pub const SPEECH_RMS: f32 = 0.01;

pub(crate) fn frame_len(rate: u32) -> usize {
    ((f64::from(rate) * FRAME_SECS) as usize).max(1)
}

/// Mean square of one frame (a short last frame is averaged over what it has).
pub(crate) fn energy(frame: &[f32]) -> f32 {
    frame.iter().map(|x| x * x).sum::<f32>() / frame.len() as f32
}

fn frame_energies(samples: &[f32], frame: usize) -> Vec<f32> {
    samples.chunks(frame).map(energy).collect()
}

/// Where the window starting at `start` ends when more than `max_len` samples are left: in
/// the middle of the quietest whole frame between `start + min_len` and `start + max_len`.
/// Frames are counted from 0 (the start of the stretch being cut); `energy_of(f)` is frame
/// `f`'s mean square.
pub(crate) fn quietest_cut(
    start: usize,
    min_len: usize,
    max_len: usize,
    frame: usize,
    energy_of: impl Fn(usize) -> f32,
) -> usize {
    let first = (start + min_len).div_ceil(frame);
    let last = (start + max_len) / frame; // exclusive
    let quietest = (first..last)
        .map(|f| (f, energy_of(f)))
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map_or(start + max_len, |(f, _)| f * frame + frame / 2);
    quietest.clamp(start + 1, start + max_len)
}

/// Does any 20 ms frame rise to speech level?
pub fn has_speech(samples: &[f32], rate: u32) -> bool {
    let threshold = SPEECH_RMS * SPEECH_RMS;
    frame_energies(samples, frame_len(rate))
        .iter()
        .any(|&e| e > threshold)
}

/// Cut `samples` into windows of at most `max_secs`, each cut placed in the quietest 20 ms frame
/// between `min_secs` and `max_secs` into the window, so words are not split when a pause exists.
/// The windows cover the input exactly, in order, without overlap.
pub fn plan_windows(samples: &[f32], rate: u32, min_secs: f64, max_secs: f64) -> Vec<Range<usize>> {
    let frame = frame_len(rate);
    let max_len = ((f64::from(rate) * max_secs) as usize).max(frame);
    let min_len = ((f64::from(rate) * min_secs) as usize).min(max_len);
    let energies = frame_energies(samples, frame);
    let mut windows = Vec::new();
    let mut start = 0;
    while samples.len() - start > max_len {
        let end = quietest_cut(start, min_len, max_len, frame, |f| energies[f]);
        windows.push(start..end);
        start = end;
    }
    if start < samples.len() {
        windows.push(start..samples.len());
    }
    windows
}

/// Speech shorter than this between pauses is a click, not a word.
pub(crate) const MIN_SPEECH_SECS: f64 = 0.1;
/// Pauses shorter than this stay inside one stretch of speech.
pub(crate) const MIN_PAUSE_SECS: f64 = 0.5;
/// Kept around each stretch, so soft word starts and ends are not cut.
pub(crate) const SPEECH_PAD_SECS: f64 = 0.25;
/// Silence put between stretches packed into one window: long enough for Whisper to see a
/// pause, short enough that hours of silence cost nothing.
pub const PACK_GAP_SECS: f64 = 0.5;

/// The stretches of speech in a channel (sample ranges, padded, in order, not overlapping).
pub fn speech_regions(samples: &[f32], rate: u32) -> Vec<Range<usize>> {
    let frame = frame_len(rate);
    let threshold = SPEECH_RMS * SPEECH_RMS;
    let secs = |s: f64| (s * f64::from(rate)) as usize;
    let mut runs: Vec<Range<usize>> = Vec::new();
    for (i, e) in frame_energies(samples, frame).iter().enumerate() {
        if *e <= threshold {
            continue;
        }
        let r = i * frame..((i + 1) * frame).min(samples.len());
        match runs.last_mut() {
            Some(last) if r.start - last.end < secs(MIN_PAUSE_SECS) => last.end = r.end,
            _ => runs.push(r),
        }
    }
    runs.retain(|r| r.len() >= secs(MIN_SPEECH_SECS));
    let pad = secs(SPEECH_PAD_SECS);
    let mut out: Vec<Range<usize>> = Vec::new();
    for r in runs {
        let padded = r.start.saturating_sub(pad)..(r.end + pad).min(samples.len());
        match out.last_mut() {
            Some(last) if padded.start <= last.end => last.end = padded.end,
            _ => out.push(padded),
        }
    }
    out
}

/// A Whisper window built from stretches of speech laid end to end with short gaps.
#[derive(Debug, Clone, PartialEq)]
pub struct Packed {
    /// Sample ranges of the original channel, in order.
    pub parts: Vec<Range<usize>>,
    pub gap: usize,
}

impl Packed {
    /// The window's audio.
    pub fn audio(&self, samples: &[f32]) -> Vec<f32> {
        let mut out = Vec::new();
        for (i, p) in self.parts.iter().enumerate() {
            if i > 0 {
                out.extend(std::iter::repeat_n(0.0, self.gap));
            }
            out.extend_from_slice(&samples[p.clone()]);
        }
        out
    }

    pub fn len(&self) -> usize {
        self.parts.iter().map(|p| p.len()).sum::<usize>()
            + self.gap * self.parts.len().saturating_sub(1)
    }

    pub fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }

    /// A time in the window (samples) back to the original channel. A time inside a gap goes
    /// to the next part's start when it opens a segment, else to the previous part's end.
    pub fn to_original(&self, t: usize, is_start: bool) -> usize {
        let mut at = 0;
        for (i, p) in self.parts.iter().enumerate() {
            if t < at + p.len() {
                return p.start + (t - at);
            }
            at += p.len();
            if t < at + self.gap {
                return match (is_start, self.parts.get(i + 1)) {
                    (true, Some(next)) => next.start,
                    _ => p.end,
                };
            }
            at += self.gap;
        }
        self.parts.last().map_or(0, |p| p.end)
    }
}

impl Packed {
    /// Where each part starts in the window.
    fn offsets(&self) -> Vec<usize> {
        let mut at = 0;
        self.parts
            .iter()
            .map(|p| {
                let o = at;
                at += p.len() + self.gap;
                o
            })
            .collect()
    }

    /// A piece Whisper heard at `[start, end)` in the window, placed in the original channel.
    /// Whisper's times drift by a fraction of a second, enough to put a sentence's start in
    /// the tail of the previous stretch; the stretch the piece overlaps most is the one it
    /// belongs to, so the start never falls before that stretch.
    pub fn place(&self, start: usize, end: usize) -> (usize, usize) {
        let best = self
            .parts
            .iter()
            .zip(self.offsets())
            .map(|(p, o)| end.min(o + p.len()).saturating_sub(start.max(o)))
            .enumerate()
            .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(&a.0)))
            .map(|(i, _)| i);
        let mut s = self.to_original(start, true);
        let mut e = self.to_original(end, false);
        if let Some(p) = best.and_then(|i| self.parts.get(i)) {
            s = s.max(p.start);
            if e < s {
                e = p.end;
            }
        }
        (s, e.max(s))
    }

    /// The parts that start at or after `t` in the window (Whisper stopped before them).
    pub fn rest_after(&self, t: usize) -> Option<Packed> {
        let parts: Vec<Range<usize>> = self
            .parts
            .iter()
            .zip(self.offsets())
            .filter(|(_, o)| *o >= t)
            .map(|(p, _)| p.clone())
            .collect();
        let keep = !parts.is_empty() && parts.len() < self.parts.len();
        keep.then_some(Packed {
            parts,
            gap: self.gap,
        })
    }
}

/// Lay stretches of speech into windows of at most `max_secs`; a stretch longer than a window
/// is first cut at its quietest points (`plan_windows`).
pub fn pack(regions: &[Range<usize>], samples: &[f32], rate: u32, max_secs: f64) -> Vec<Packed> {
    let max_len = (f64::from(rate) * max_secs) as usize;
    let gap = (f64::from(rate) * PACK_GAP_SECS) as usize;
    let mut pieces = Vec::new();
    for r in regions {
        if r.len() > max_len {
            for w in plan_windows(
                &samples[r.clone()],
                rate,
                MIN_WINDOW_SECS.min(max_secs),
                max_secs,
            ) {
                pieces.push(r.start + w.start..r.start + w.end);
            }
        } else {
            pieces.push(r.clone());
        }
    }
    let mut out: Vec<Packed> = Vec::new();
    for p in pieces {
        match out.last_mut() {
            Some(last) if last.len() + gap + p.len() <= max_len => last.parts.push(p),
            _ => out.push(Packed {
                parts: vec![p],
                gap,
            }),
        }
    }
    out
}

/// One piece of Whisper output with times relative to its window.
#[derive(Debug, Clone, PartialEq)]
pub struct Piece {
    pub start: f64,
    pub end: f64,
    pub text: String,
}

/// Move pieces of one window to call time and label them.
pub fn to_segments(pieces: Vec<Piece>, offset_secs: f64, speaker: &str) -> Vec<Segment> {
    pieces
        .into_iter()
        .map(|p| Segment {
            speaker: speaker.to_string(),
            start: round_ms(offset_secs + p.start),
            end: round_ms(offset_secs + p.end),
            text: p.text,
        })
        .collect()
}

fn round_ms(secs: f64) -> f64 {
    (secs * 1000.0).round() / 1000.0
}

/// Interleave speakers' segments by start time; on equal starts the earlier-listed speaker
/// (the caller) goes first.
pub fn merge_by_time(per_speaker: Vec<Vec<Segment>>) -> Vec<Segment> {
    let mut all: Vec<Segment> = per_speaker.into_iter().flatten().collect();
    all.sort_by(|a, b| a.start.total_cmp(&b.start));
    all
}

/// The transcript's `text`: segments in order, one per line, with the speaker when the call
/// had more than one.
pub fn transcript_text(segments: &[Segment]) -> String {
    let several = segments.iter().any(|s| s.speaker != segments[0].speaker);
    segments
        .iter()
        .map(|s| {
            if several {
                format!("{}: {}", s.speaker, s.text)
            } else {
                s.text.clone()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    const R: u32 = 16_000;

    fn tone(secs: f64) -> Vec<f32> {
        (0..(secs * f64::from(R)) as usize)
            .map(|i| 0.3 * (i as f32 * 0.2).sin())
            .collect()
    }

    fn silence(secs: f64) -> Vec<f32> {
        vec![0.0; (secs * f64::from(R)) as usize]
    }

    #[test]
    fn short_audio_is_one_window() {
        let a = tone(12.0);
        assert_eq!(plan_windows(&a, R, 20.0, 30.0), vec![0..a.len()]);
        assert_eq!(plan_windows(&[], R, 20.0, 30.0), Vec::<Range<usize>>::new());
        let exactly = tone(30.0);
        assert_eq!(plan_windows(&exactly, R, 20.0, 30.0), vec![0..480_000]);
    }

    #[test]
    fn cuts_fall_in_pauses() {
        // speech 0-24 s, pause 24-25 s, speech 25-50 s, pause 50-51 s, speech 51-70 s
        let mut a = tone(24.0);
        a.extend(silence(1.0));
        a.extend(tone(25.0));
        a.extend(silence(1.0));
        a.extend(tone(19.0));
        let w = plan_windows(&a, R, 20.0, 30.0);
        assert_eq!(w.len(), 3, "{w:?}");
        assert_eq!(w[0].start, 0);
        assert_eq!(w[2].end, a.len());
        for pair in w.windows(2) {
            assert_eq!(pair[0].end, pair[1].start);
        }
        let cut1 = w[0].end as f64 / f64::from(R);
        let cut2 = w[1].end as f64 / f64::from(R);
        assert!((24.0..25.0).contains(&cut1), "{cut1}");
        assert!((50.0..51.0).contains(&cut2), "{cut2}");
        assert!(w.iter().all(|r| r.len() <= 480_000));
    }

    #[test]
    fn without_pauses_windows_still_cover_everything() {
        let a = tone(95.0);
        let w = plan_windows(&a, R, 20.0, 30.0);
        assert_eq!(w.first().unwrap().start, 0);
        assert_eq!(w.last().unwrap().end, a.len());
        assert!(w.iter().all(|r| r.len() <= 480_000 && !r.is_empty()));
        assert_eq!(w.iter().map(|r| r.len()).sum::<usize>(), a.len());
    }

    #[test]
    fn speech_detection() {
        assert!(!has_speech(&silence(3.0), R));
        assert!(!has_speech(&[], R));
        // Line noise at -50 dBFS is not speech.
        let hiss: Vec<f32> = (0..R)
            .map(|i| if i % 2 == 0 { 0.003 } else { -0.003 })
            .collect();
        assert!(!has_speech(&hiss, R));
        let mut a = silence(2.0);
        a.extend(tone(0.1));
        assert!(has_speech(&a, R));
    }

    #[test]
    fn speech_regions_are_padded_and_merged_over_short_pauses() {
        // speech 1-2 s, pause 0.3 s, speech 2.3-3 s, pause 4 s, speech 7-8 s, click at 9 s
        let mut a = silence(1.0);
        a.extend(tone(1.0));
        a.extend(silence(0.3));
        a.extend(tone(0.7));
        a.extend(silence(4.0));
        a.extend(tone(1.0));
        a.extend(silence(1.0));
        a.extend(tone(0.04));
        a.extend(silence(1.0));
        let r = speech_regions(&a, R);
        let s = |x: f64| (x * f64::from(R)) as usize;
        assert_eq!(r, vec![s(0.75)..s(3.25), s(6.75)..s(8.25)]);
        assert_eq!(speech_regions(&silence(3.0), R), Vec::<Range<usize>>::new());
    }

    #[test]
    fn packing_drops_long_silences_and_maps_times_back() {
        let s = |x: f64| (x * f64::from(R)) as usize;
        let a = tone(100.0);
        let regions = vec![s(1.0)..s(4.0), s(50.0)..s(52.0), s(60.0)..s(90.0)];
        let p = pack(&regions, &a, R, 30.0);
        // 3 s + 0.5 s + 2 s fit one window; the 30 s stretch does not fit after them.
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].parts, vec![s(1.0)..s(4.0), s(50.0)..s(52.0)]);
        assert_eq!(p[0].len(), s(5.5));
        assert_eq!(p[0].audio(&a).len(), s(5.5));
        assert_eq!(p[1].parts, vec![s(60.0)..s(90.0)]);
        // 3.2 s into window 0 is in the gap: a start goes to 50 s, an end to 4 s.
        assert_eq!(p[0].to_original(s(3.2), true), s(50.0));
        assert_eq!(p[0].to_original(s(3.2), false), s(4.0));
        assert_eq!(p[0].to_original(s(4.0), true), s(50.5));
        assert_eq!(p[0].to_original(s(0.5), true), s(1.5));
        assert_eq!(p[0].to_original(s(99.0), false), s(52.0));
        // A stretch longer than a window is cut.
        let whole = [Range {
            start: 0,
            end: s(70.0),
        }];
        let long = pack(&whole, &a, R, 30.0);
        assert!(
            long.len() >= 3 && long.iter().all(|w| w.len() <= s(30.0)),
            "{long:?}"
        );
        assert_eq!(pack(&[], &a, R, 30.0), Vec::<Packed>::new());
        // Whisper puts a sentence's start 0.3 s before its stretch: it stays in its stretch.
        assert_eq!(p[0].place(s(3.2), s(5.5)), (s(50.0), s(52.0)));
        assert_eq!(p[0].place(s(2.8), s(5.5)), (s(50.0), s(52.0)));
        assert_eq!(p[0].place(s(0.0), s(2.5)), (s(1.0), s(3.5)));
        assert_eq!(
            p[0].rest_after(s(3.2)).unwrap().parts,
            vec![s(50.0)..s(52.0)]
        );
        assert_eq!(p[0].rest_after(0), None);
        assert_eq!(p[0].rest_after(s(5.0)), None);
    }

    #[test]
    fn segments_move_to_call_time_and_merge_by_start() {
        let caller = to_segments(
            vec![
                Piece {
                    start: 0.0,
                    end: 2.0,
                    text: "hi".into(),
                },
                Piece {
                    start: 5.0,
                    end: 6.5,
                    text: "yes".into(),
                },
            ],
            30.1,
            "caller",
        );
        assert_eq!(caller[1].start, 35.1);
        assert_eq!(caller[1].end, 36.6);
        let agent = to_segments(
            vec![Piece {
                start: 2.5,
                end: 4.0,
                text: "hello".into(),
            }],
            30.1,
            "agent",
        );
        let merged = merge_by_time(vec![caller, agent]);
        let order: Vec<_> = merged.iter().map(|s| s.text.as_str()).collect();
        assert_eq!(order, ["hi", "hello", "yes"]);
        assert_eq!(
            transcript_text(&merged),
            "caller: hi\nagent: hello\ncaller: yes"
        );
        assert_eq!(transcript_text(&merged[..1]), "hi");
        assert_eq!(transcript_text(&[]), "");
    }
}
