//! Stream timing without a clock: when each 20 ms frame is due (real time divided by `--speed`),
//! and when Twilio would echo a server's mark (once the outbound audio queued before it has
//! played). All times here are *audio time* since the stream started; the I/O loop converts.

use std::collections::VecDeque;
use std::time::Duration;

/// Frame length on the wire.
pub const FRAME: Duration = Duration::from_millis(media::FRAME_MS as u64);

/// Wall-clock offset at which frame `index` (0-based) is due at `speed` times real time.
pub fn frame_due(index: u64, speed: f64) -> Duration {
    FRAME.mul_f64(index as f64 / speed)
}

/// Audio time reached after `wall` seconds of wall clock at `speed`.
pub fn audio_time(wall: Duration, speed: f64) -> Duration {
    wall.mul_f64(speed)
}

/// Wall time at which audio time `audio` is reached.
pub fn wall_time(audio: Duration, speed: f64) -> Duration {
    audio.div_f64(speed)
}

/// How long `bytes` of 8 kHz mu-law take to play.
pub fn play_time(bytes: usize) -> Duration {
    Duration::from_micros(bytes as u64 * 1_000_000 / u64::from(media::SAMPLE_RATE))
}

/// The caller's side of outbound audio: what the server sent is queued and played in order; a
/// mark is due when everything queued before it has played.
#[derive(Debug, Default, Clone)]
pub struct Playout {
    busy_until: Duration,
    pending: VecDeque<(String, Duration)>,
}

impl Playout {
    /// Outbound audio of `bytes` arrived at audio time `now`.
    pub fn media(&mut self, now: Duration, bytes: usize) {
        self.busy_until = self.busy_until.max(now) + play_time(bytes);
    }

    /// A mark arrived at `now`; it is due when the audio queued so far has played.
    pub fn mark(&mut self, now: Duration, name: String) {
        self.pending.push_back((name, self.busy_until.max(now)));
    }

    /// `clear` drops queued audio; every pending mark is echoed at once.
    pub fn clear(&mut self, now: Duration) -> Vec<String> {
        self.busy_until = now;
        self.pending.drain(..).map(|(n, _)| n).collect()
    }

    /// Marks due by `now`, in the order they were sent.
    pub fn due(&mut self, now: Duration) -> Vec<String> {
        let mut out = Vec::new();
        while let Some((_, at)) = self.pending.front() {
            if *at > now {
                break;
            }
            if let Some((name, _)) = self.pending.pop_front() {
                out.push(name);
            }
        }
        out
    }

    /// When the next pending mark falls due.
    pub fn next_due(&self) -> Option<Duration> {
        self.pending.front().map(|(_, at)| *at)
    }

    /// When all queued outbound audio has played.
    pub fn drained_at(&self) -> Duration {
        self.busy_until
    }

    pub fn pending(&self) -> usize {
        self.pending.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn frames_are_paced_at_20ms_scaled_by_speed() {
        assert_eq!(frame_due(0, 1.0), MS(0));
        assert_eq!(frame_due(1, 1.0), MS(20));
        assert_eq!(frame_due(50, 1.0), MS(1000));
        assert_eq!(frame_due(50, 4.0), MS(250));
        assert_eq!(frame_due(3, 0.5), MS(120));
        assert_eq!(audio_time(MS(250), 4.0), MS(1000));
        assert_eq!(wall_time(MS(1000), 4.0), MS(250));
    }

    #[test]
    fn play_time_is_bytes_at_8khz() {
        assert_eq!(play_time(160), MS(20));
        assert_eq!(play_time(8000), MS(1000));
        assert_eq!(play_time(0), MS(0));
    }

    #[test]
    fn mark_is_echoed_after_the_audio_before_it() {
        let mut p = Playout::default();
        p.media(MS(100), 8000); // plays 100..1100
        p.mark(MS(150), "a".into());
        p.media(MS(200), 1600); // queued: plays 1100..1300
        p.mark(MS(210), "b".into());
        assert_eq!(p.next_due(), Some(MS(1100)));
        assert!(p.due(MS(1099)).is_empty());
        assert_eq!(p.due(MS(1100)), vec!["a".to_string()]);
        assert_eq!(p.due(MS(1299)), Vec::<String>::new());
        assert_eq!(p.due(MS(1300)), vec!["b".to_string()]);
        assert_eq!(p.pending(), 0);
    }

    #[test]
    fn mark_with_nothing_queued_is_due_at_once() {
        let mut p = Playout::default();
        p.media(MS(0), 160);
        p.mark(MS(500), "late".into());
        assert_eq!(p.next_due(), Some(MS(500)));
        assert_eq!(p.due(MS(500)), vec!["late".to_string()]);
    }

    #[test]
    fn clear_echoes_every_pending_mark() {
        let mut p = Playout::default();
        p.media(MS(0), 80_000);
        p.mark(MS(0), "x".into());
        p.mark(MS(0), "y".into());
        assert_eq!(p.clear(MS(300)), vec!["x".to_string(), "y".to_string()]);
        assert_eq!(p.drained_at(), MS(300));
        p.mark(MS(310), "z".into());
        assert_eq!(p.next_due(), Some(MS(310)));
    }
}
