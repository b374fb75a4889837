//! Whisper windows planned while a channel streams by, so a call of any length is transcribed
//! holding at most about two windows of audio per channel. The windows are exactly those of
//! `audio::pack(&audio::speech_regions(..))` on the whole channel (tested below): speech is
//! found with the same frames, pauses and padding, long stretches are cut at the same quiet
//! frames, and stretches are packed the same way; only the audio still needed is kept.

use crate::audio::{
    energy, frame_len, quietest_cut, Packed, MAX_WINDOW_SECS, MIN_PAUSE_SECS, MIN_SPEECH_SECS,
    MIN_WINDOW_SECS, PACK_GAP_SECS, SPEECH_PAD_SECS, SPEECH_RMS,
};
use std::ops::Range;

/// A window ready for the model: where its parts were in the channel, and their audio.
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    pub packed: Packed,
    /// The audio of each part, `packed.parts[i].len()` samples each.
    pub parts: Vec<Vec<f32>>,
}

impl Window {
    /// What the model hears: the parts laid end to end with `packed.gap` zeros between them
    /// (`Packed::audio` of the whole channel).
    pub fn audio(&self) -> Vec<f32> {
        let mut out = Vec::with_capacity(self.packed.len());
        for (i, part) in self.parts.iter().enumerate() {
            if i > 0 {
                out.extend(std::iter::repeat_n(0.0, self.packed.gap));
            }
            out.extend_from_slice(part);
        }
        out
    }

    /// Samples held.
    pub fn held(&self) -> usize {
        self.parts.iter().map(Vec::len).sum()
    }

    /// The parts that start at or after `t` in the window, with their audio
    /// (`Packed::rest_after`).
    pub fn rest_after(&self, t: usize) -> Option<Window> {
        let rest = self.packed.rest_after(t)?;
        let skip = self.parts.len().checked_sub(rest.parts.len())?;
        Some(Window {
            parts: self.parts.get(skip..)?.to_vec(),
            packed: rest,
        })
    }

    /// What the window holds from `t` (samples into the window) on: a part that `t` falls in
    /// is cut there, a gap is skipped. `None` when nothing is left or `t` is 0 (no progress).
    /// Whisper resumes here after it stopped in the middle of a sentence.
    pub fn from_time(&self, t: usize) -> Option<Window> {
        if t == 0 {
            return None;
        }
        let mut packed = Packed {
            parts: Vec::new(),
            gap: self.packed.gap,
        };
        let mut parts = Vec::new();
        let mut at = 0;
        for (range, audio) in self.packed.parts.iter().zip(&self.parts) {
            let skip = t.saturating_sub(at).min(range.len());
            at += range.len() + self.packed.gap;
            if skip == range.len() {
                continue;
            }
            packed.parts.push(range.start + skip..range.end);
            parts.push(audio.get(skip..).unwrap_or_default().to_vec());
        }
        (!parts.is_empty()).then_some(Window { packed, parts })
    }
}

/// Loud frames merged over short pauses (`speech_regions`' runs), still open.
struct Run {
    start: usize,
    end: usize,
    /// Long enough to be speech: already part of the region.
    folded: bool,
}

/// A padded stretch of speech not yet complete: `end` only grows while it is open.
struct Region {
    start: usize,
    end: usize,
    /// Where the part not yet handed to the packer starts (after cuts of a long stretch).
    piece_start: usize,
}

/// One channel's windows, found as its samples (at the rate given to `new`) arrive.
pub struct WindowPlanner {
    frame: usize,
    pad: usize,
    min_pause: usize,
    min_speech: usize,
    min_len: usize,
    max_len: usize,
    gap: usize,
    threshold: f32,
    /// Samples `buf_start..pos` of the channel: only what a window may still need.
    buf: Vec<f32>,
    buf_start: usize,
    pos: usize,
    /// Start of the next 20 ms frame to look at.
    next_frame: usize,
    run: Option<Run>,
    region: Option<Region>,
    /// The window being filled.
    open: Option<Window>,
    ready: Vec<Window>,
    peak: usize,
}

impl WindowPlanner {
    pub fn new(rate: u32) -> Self {
        let secs = |s: f64| (s * f64::from(rate)) as usize;
        let frame = frame_len(rate);
        let max_len = secs(MAX_WINDOW_SECS);
        WindowPlanner {
            frame,
            pad: secs(SPEECH_PAD_SECS),
            min_pause: secs(MIN_PAUSE_SECS),
            min_speech: secs(MIN_SPEECH_SECS),
            min_len: secs(MIN_WINDOW_SECS.min(MAX_WINDOW_SECS)).min(max_len),
            max_len,
            gap: secs(PACK_GAP_SECS),
            threshold: SPEECH_RMS * SPEECH_RMS,
            buf: Vec::new(),
            buf_start: 0,
            pos: 0,
            next_frame: 0,
            run: None,
            region: None,
            open: None,
            ready: Vec::new(),
            peak: 0,
        }
    }

    /// The next samples of the channel; the windows completed by them, in order.
    pub fn push(&mut self, samples: &[f32]) -> Vec<Window> {
        self.buf.extend_from_slice(samples);
        self.pos += samples.len();
        while self.next_frame + self.frame <= self.pos {
            self.analyse(self.next_frame..self.next_frame + self.frame);
        }
        self.note_peak();
        self.trim();
        std::mem::take(&mut self.ready)
    }

    /// The end of the channel: the windows still open.
    pub fn finish(&mut self) -> Vec<Window> {
        if self.next_frame < self.pos {
            self.analyse(self.next_frame..self.pos);
        }
        if let Some(mut region) = self.region.take() {
            region.end = region.end.min(self.pos);
            self.complete(region);
        }
        if let Some(w) = self.open.take() {
            self.ready.push(w);
        }
        self.note_peak();
        std::mem::take(&mut self.ready)
    }

    /// The most samples held at once so far (the channel buffer and the windows).
    pub fn peak_held(&self) -> usize {
        self.peak
    }

    /// The most samples a planner at `rate` can hold when fed blocks of at most `block`
    /// samples: the stretch being cut (up to one window, plus a frame and a block that arrive
    /// before the cut), the window being filled, and one completed window not yet handed out.
    pub fn max_held(rate: u32, block: usize) -> usize {
        let window = (f64::from(rate) * MAX_WINDOW_SECS) as usize;
        let pad = (f64::from(rate) * SPEECH_PAD_SECS) as usize;
        3 * window + block + frame_len(rate) + pad
    }

    fn held(&self) -> usize {
        self.buf.len()
            + self.open.as_ref().map_or(0, Window::held)
            + self.ready.iter().map(Window::held).sum::<usize>()
    }

    fn note_peak(&mut self) {
        self.peak = self.peak.max(self.held());
    }

    fn analyse(&mut self, f: Range<usize>) {
        let e = energy(&self.buf[f.start - self.buf_start..f.end - self.buf_start]);
        self.next_frame = f.end;
        if e > self.threshold {
            match &mut self.run {
                Some(r) if f.start - r.end < self.min_pause => r.end = f.end,
                _ => {
                    self.run = Some(Run {
                        start: f.start,
                        end: f.end,
                        folded: false,
                    })
                }
            }
        }
        self.fold_run();
        // A run no loud frame can extend any more is done: the region holds it, or it was a
        // click.
        if self
            .run
            .as_ref()
            .is_some_and(|r| self.next_frame - r.end >= self.min_pause)
        {
            self.run = None;
        }
        self.cut();
        self.complete_if_done();
    }

    /// A run long enough to be speech joins the region (padded), or starts the next one.
    fn fold_run(&mut self) {
        let Some(r) = &mut self.run else {
            return;
        };
        if r.end - r.start < self.min_speech {
            return;
        }
        r.folded = true;
        let (start, end) = (r.start.saturating_sub(self.pad), r.end + self.pad);
        match &mut self.region {
            Some(g) if start <= g.end => g.end = g.end.max(end),
            _ => {
                if let Some(done) = self.region.take() {
                    self.complete(done);
                }
                self.region = Some(Region {
                    start,
                    end,
                    piece_start: start,
                });
            }
        }
    }

    /// The region is complete when nothing still to come can join it.
    fn complete_if_done(&mut self) {
        let Some(g) = &self.region else {
            return;
        };
        let next = match &self.run {
            Some(r) if r.folded => return,
            Some(r) => r.start,
            None => self.next_frame,
        };
        if next.saturating_sub(self.pad) > g.end {
            if let Some(done) = self.region.take() {
                self.complete(done);
            }
        }
    }

    /// Cut the open region while it is certainly longer than a window and the audio to choose
    /// the cut is here (`plan_windows`, one cut at a time).
    fn cut(&mut self) {
        while let Some(g) = &self.region {
            let limit = g.piece_start + self.max_len;
            if g.end <= limit || self.pos <= limit {
                return;
            }
            let (start, piece_start) = (g.start, g.piece_start);
            let end = start + self.cut_after(start, piece_start);
            if let Some(g) = &mut self.region {
                g.piece_start = end;
            }
            self.add_piece(piece_start..end);
        }
    }

    /// `quietest_cut` with frames counted from the region's start, as `plan_windows` counts
    /// them on the region; relative to the region start.
    fn cut_after(&self, region_start: usize, piece_start: usize) -> usize {
        let frame = self.frame;
        // The frames looked at start after `piece_start`, so they are all in the buffer.
        let at = |f: usize| region_start + f * frame - self.buf_start;
        quietest_cut(
            piece_start - region_start,
            self.min_len,
            self.max_len,
            frame,
            |f| energy(&self.buf[at(f)..at(f) + frame]),
        )
    }

    fn complete(&mut self, mut g: Region) {
        while g.end - g.piece_start > self.max_len {
            let end = g.start + self.cut_after(g.start, g.piece_start);
            self.add_piece(g.piece_start..end);
            g.piece_start = end;
        }
        if g.piece_start < g.end {
            self.add_piece(g.piece_start..g.end);
        }
    }

    /// `pack`: a piece joins the open window when it fits, else the window is ready.
    fn add_piece(&mut self, p: Range<usize>) {
        let audio = self.buf[p.start - self.buf_start..p.end - self.buf_start].to_vec();
        match &mut self.open {
            Some(w) if w.packed.len() + self.gap + p.len() <= self.max_len => {
                w.packed.parts.push(p);
                w.parts.push(audio);
            }
            _ => {
                if let Some(w) = self.open.take() {
                    self.ready.push(w);
                }
                self.open = Some(Window {
                    packed: Packed {
                        parts: vec![p],
                        gap: self.gap,
                    },
                    parts: vec![audio],
                });
            }
        }
    }

    /// Drop the samples no window can need any more.
    fn trim(&mut self) {
        let mut keep = self.next_frame.saturating_sub(self.pad);
        if let Some(r) = self.run.as_ref().filter(|r| !r.folded) {
            keep = keep.min(r.start.saturating_sub(self.pad));
        }
        if let Some(g) = &self.region {
            keep = keep.min(g.piece_start);
        }
        if keep > self.buf_start {
            self.buf.drain(..keep - self.buf_start);
            self.buf_start = keep;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::{pack, speech_regions, WHISPER_RATE};

    const R: u32 = WHISPER_RATE;

    fn tone(secs: f64, amp: f32, out: &mut Vec<f32>) {
        let n = (secs * f64::from(R)) as usize;
        let at = out.len();
        out.extend((0..n).map(|i| amp * ((at + i) as f32 * 0.2).sin()));
    }

    fn quiet(secs: f64, out: &mut Vec<f32>) {
        out.extend(std::iter::repeat_n(0.0, (secs * f64::from(R)) as usize));
    }

    /// Speech and silence of every kind the planner must handle: short words, pauses just
    /// under and over the bridging limit, clicks, stretches longer than a window with and
    /// without quiet dips, speech at both ends.
    fn call() -> Vec<f32> {
        let mut a = Vec::new();
        tone(0.7, 0.3, &mut a); // speech from the first sample
        quiet(0.49, &mut a);
        tone(1.0, 0.2, &mut a);
        quiet(0.5, &mut a); // exactly the pause limit
        tone(0.3, 0.2, &mut a);
        quiet(3.0, &mut a);
        tone(0.04, 0.5, &mut a); // a click
        quiet(2.0, &mut a);
        tone(0.06, 0.5, &mut a); // two clicks close enough to merge into a word
        quiet(0.3, &mut a);
        tone(0.06, 0.5, &mut a);
        quiet(7.0, &mut a);
        // 75 s of speech with dips every 8 s: cut at the dips.
        for _ in 0..9 {
            tone(8.0, 0.3, &mut a);
            tone(0.3, 0.011, &mut a);
        }
        tone(0.0, 0.3, &mut a);
        quiet(1.0, &mut a);
        // Short stretches that pack several to a window.
        for i in 0..40 {
            tone(0.5 + f64::from(i % 5) * 0.7, 0.25, &mut a);
            quiet(0.8 + f64::from(i % 3) * 0.9, &mut a);
        }
        // 65 s without a dip: cut in the quietest frame all the same.
        tone(65.0, 0.3, &mut a);
        quiet(0.2, &mut a);
        tone(2.0, 0.3, &mut a); // to the last sample
        a
    }

    fn planned(samples: &[f32], block: usize) -> (Vec<Window>, usize) {
        let mut p = WindowPlanner::new(R);
        let mut out = Vec::new();
        for b in samples.chunks(block) {
            out.extend(p.push(b));
        }
        out.extend(p.finish());
        (out, p.peak_held())
    }

    #[test]
    fn streamed_windows_are_the_whole_channel_windows() {
        let a = call();
        let whole = pack(&speech_regions(&a, R), &a, R, MAX_WINDOW_SECS);
        assert!(whole.len() >= 8, "{} windows", whole.len());
        assert!(whole.iter().any(|w| w.parts.len() > 3));
        for block in [7, 320, 4096, 16_000, 100_000] {
            let (windows, peak) = planned(&a, block);
            let packed: Vec<&Packed> = windows.iter().map(|w| &w.packed).collect();
            assert_eq!(packed, whole.iter().collect::<Vec<_>>(), "block {block}");
            for (w, p) in windows.iter().zip(&whole) {
                assert_eq!(w.audio(), p.audio(&a), "block {block}");
            }
            assert!(
                peak <= WindowPlanner::max_held(R, block),
                "block {block}: held {peak} samples"
            );
        }
    }

    #[test]
    fn silence_and_empty_give_no_windows_and_hold_almost_nothing() {
        let (w, peak) = planned(&vec![0.0; 20 * R as usize], 8000);
        assert!(w.is_empty());
        // The last quarter second (padding for speech that might start) and one block.
        assert!(peak <= 8000 + 4000 + 320, "held {peak}");
        assert!(WindowPlanner::new(R).finish().is_empty());
        let mut p = WindowPlanner::new(R);
        assert!(p.push(&[]).is_empty());
        assert!(p.finish().is_empty());
    }

    #[test]
    fn rest_after_keeps_the_audio_of_the_parts() {
        let a = call();
        let (windows, _) = planned(&a, 4096);
        let w = windows.iter().find(|w| w.parts.len() >= 3).unwrap();
        let second = w.packed.parts[0].len() + w.packed.gap;
        let rest = w.rest_after(second).unwrap();
        assert_eq!(rest.packed.parts, w.packed.parts[1..]);
        assert_eq!(rest.parts, w.parts[1..]);
        assert_eq!(rest.audio(), rest.packed.audio(&a));
        assert_eq!(w.rest_after(0), None);
    }

    #[test]
    fn from_time_cuts_the_part_it_falls_in() {
        let a = call();
        let (windows, _) = planned(&a, 4096);
        let w = windows.iter().find(|w| w.parts.len() >= 3).unwrap();
        let first = w.packed.parts[0].clone();
        // 100 samples into the first part: the rest of it, then every other part whole.
        let rest = w.from_time(100).unwrap();
        assert_eq!(rest.packed.parts[0], first.start + 100..first.end);
        assert_eq!(rest.packed.parts[1..], w.packed.parts[1..]);
        assert_eq!(rest.audio(), rest.packed.audio(&a));
        // In the gap after the first part: the first part is gone, the second kept whole.
        let in_gap = w.from_time(first.len() + 1).unwrap();
        assert_eq!(in_gap.packed.parts, w.packed.parts[1..]);
        assert_eq!(in_gap.parts, w.parts[1..]);
        assert_eq!(w.from_time(0), None);
        assert_eq!(w.from_time(w.packed.len()), None);
    }
}
