//! Outbound audio: the `VoiceApp` trait is where a real-time voice agent plugs into a stream, and
//! `Greeting` is the app shipped with the service (play a WAV, stop on a key press). Apps are
//! driven by events and an explicit clock (`tick(elapsed)`), so pacing is tested without timers.

use std::sync::Arc;
use std::time::Duration;

/// What an app asks the service to send to Twilio.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outbound {
    /// 8 kHz mu-law audio to play.
    Media(Vec<u8>),
    /// Ask Twilio to echo `name` once the audio sent before it has played.
    Mark(String),
    /// Drop whatever audio Twilio still has buffered.
    Clear,
}

/// The call an app is attached to.
#[derive(Debug, Clone)]
pub struct CallInfo {
    pub call_sid: String,
    pub stream_sid: String,
    pub custom_parameters: std::collections::BTreeMap<String, String>,
}

/// A voice application on one stream. Every method returns what to send; `tick` is called at
/// `next_tick` (time since `start`) so apps can pace audio in real time.
pub trait VoiceApp: Send {
    fn start(&mut self, call: &CallInfo) -> Vec<Outbound>;
    fn audio(&mut self, timestamp_ms: u64, mulaw: &[u8]) -> Vec<Outbound>;
    fn dtmf(&mut self, digit: &str) -> Vec<Outbound>;
    fn mark(&mut self, name: &str) -> Vec<Outbound>;
    fn stop(&mut self);
    /// When the app next wants `tick`, as time since `start`; `None` when it has nothing to do.
    fn next_tick(&self) -> Option<Duration>;
    fn tick(&mut self, elapsed: Duration) -> Vec<Outbound>;
}

/// Makes one app per stream.
pub type AppFactory = Arc<dyn Fn() -> Box<dyn VoiceApp> + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum GreetingError {
    #[error("cannot read greeting {path}: {error}")]
    Read { path: String, error: std::io::Error },
    #[error("greeting {path}: {error}")]
    Audio {
        path: String,
        error: media::wav::WavError,
    },
    #[error("greeting {0} holds no audio")]
    Empty(String),
}

/// Load a WAV at any common rate and channel count as 8 kHz mono mu-law.
pub fn load_greeting(path: &std::path::Path) -> Result<Vec<u8>, GreetingError> {
    let label = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|error| GreetingError::Read {
        path: label.clone(),
        error,
    })?;
    let pcm = media::wav::decode(&bytes).map_err(|error| GreetingError::Audio {
        path: label.clone(),
        error,
    })?;
    let mulaw = media::audio::to_mulaw_8k(&pcm.to_mono(), pcm.sample_rate);
    if mulaw.is_empty() {
        return Err(GreetingError::Empty(label));
    }
    Ok(mulaw)
}

/// 20 ms of audio per message, as Twilio itself sends.
const CHUNK: usize = media::FRAME_BYTES;
/// Keep this much audio queued at Twilio ahead of real time, so playback never starves.
const LEAD: Duration = Duration::from_millis(100);
pub const END_MARK: &str = "greeting-end";

/// Plays a greeting, paced in real time, with a mark every `mark_every` of audio and one at the
/// end; a key press clears what is still queued and stops it.
pub struct Greeting {
    audio: Arc<Vec<u8>>,
    mark_every: usize,
    sent: usize,
    playing: bool,
    /// Marks sent and not yet echoed.
    pending_marks: Vec<String>,
    interrupted: bool,
}

impl Greeting {
    pub fn new(audio: Arc<Vec<u8>>, mark_every: Duration) -> Greeting {
        let mark_every =
            ((mark_every.as_millis() as usize * media::SAMPLE_RATE as usize / 1000) / CHUNK).max(1)
                * CHUNK;
        Greeting {
            audio,
            mark_every,
            sent: 0,
            playing: false,
            pending_marks: Vec::new(),
            interrupted: false,
        }
    }

    pub fn factory(audio: Arc<Vec<u8>>, mark_every: Duration) -> AppFactory {
        Arc::new(move || Box::new(Greeting::new(audio.clone(), mark_every)) as Box<dyn VoiceApp>)
    }

    fn sent_duration(&self) -> Duration {
        Duration::from_micros(self.sent as u64 * 1_000_000 / media::SAMPLE_RATE as u64)
    }
}

impl VoiceApp for Greeting {
    fn start(&mut self, _call: &CallInfo) -> Vec<Outbound> {
        self.playing = true;
        self.tick(Duration::ZERO)
    }

    fn audio(&mut self, _timestamp_ms: u64, _mulaw: &[u8]) -> Vec<Outbound> {
        Vec::new()
    }

    fn dtmf(&mut self, _digit: &str) -> Vec<Outbound> {
        if self.playing || !self.pending_marks.is_empty() {
            self.playing = false;
            self.interrupted = true;
            return vec![Outbound::Clear];
        }
        Vec::new()
    }

    fn mark(&mut self, name: &str) -> Vec<Outbound> {
        self.pending_marks.retain(|m| m != name);
        Vec::new()
    }

    fn stop(&mut self) {
        self.playing = false;
    }

    fn next_tick(&self) -> Option<Duration> {
        if !self.playing {
            return None;
        }
        Some(self.sent_duration().saturating_sub(LEAD))
    }

    fn tick(&mut self, elapsed: Duration) -> Vec<Outbound> {
        let mut out = Vec::new();
        // Send until the queued audio reaches `elapsed + LEAD`.
        while self.playing && self.sent_duration() <= elapsed + LEAD {
            let end = (self.sent + CHUNK).min(self.audio.len());
            out.push(Outbound::Media(self.audio[self.sent..end].to_vec()));
            self.sent = end;
            if self.sent == self.audio.len() {
                self.playing = false;
                self.pending_marks.push(END_MARK.to_owned());
                out.push(Outbound::Mark(END_MARK.to_owned()));
            } else if self.sent.is_multiple_of(self.mark_every) {
                let name = format!("greeting-{}", self.sent / self.mark_every);
                self.pending_marks.push(name.clone());
                out.push(Outbound::Mark(name));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call() -> CallInfo {
        CallInfo {
            call_sid: "CA0123456789abcdef0123456789abcdef".into(),
            stream_sid: "MZ1".into(),
            custom_parameters: Default::default(),
        }
    }

    fn media_bytes(out: &[Outbound]) -> usize {
        out.iter()
            .map(|o| match o {
                Outbound::Media(m) => m.len(),
                _ => 0,
            })
            .sum()
    }

    #[test]
    fn paces_audio_in_real_time_with_marks() {
        // 1.05 s of audio, a mark every 500 ms.
        let audio: Vec<u8> = (0..8400).map(|i| (i % 251) as u8).collect();
        let mut g = Greeting::new(Arc::new(audio.clone()), Duration::from_millis(500));
        let first = g.start(&call());
        // Only the lead (100 ms + the chunk that crosses it) goes out at once.
        assert_eq!(media_bytes(&first), 960);
        assert_eq!(g.next_tick(), Some(Duration::from_millis(20)));
        let mut all = first;
        let mut t = Duration::ZERO;
        while let Some(next) = g.next_tick() {
            assert!(next >= t, "time goes forward");
            t = next;
            let out = g.tick(t);
            assert!(!out.is_empty(), "a tick at next_tick sends something");
            all.extend(out);
        }
        assert_eq!(t, Duration::from_millis(940));
        let sent: Vec<u8> = all
            .iter()
            .flat_map(|o| match o {
                Outbound::Media(m) => m.clone(),
                _ => Vec::new(),
            })
            .collect();
        assert_eq!(sent, audio);
        let marks: Vec<&str> = all
            .iter()
            .filter_map(|o| match o {
                Outbound::Mark(n) => Some(n.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(marks, ["greeting-1", "greeting-2", "greeting-end"]);
        // The mark after exactly 4000 bytes of audio.
        let pos = all
            .iter()
            .position(|o| *o == Outbound::Mark("greeting-1".into()))
            .unwrap();
        assert_eq!(media_bytes(&all[..pos]), 4000);
    }

    #[test]
    fn a_key_press_clears_and_stops_the_greeting() {
        let mut g = Greeting::new(Arc::new(vec![0x55; 16000]), Duration::from_millis(1000));
        g.start(&call());
        assert_eq!(g.dtmf("1"), vec![Outbound::Clear]);
        assert_eq!(g.next_tick(), None);
        assert!(g.tick(Duration::from_secs(5)).is_empty());
        // Nothing left to clear.
        assert!(g.dtmf("2").is_empty());
    }

    #[test]
    fn marks_are_tracked_until_echoed() {
        let mut g = Greeting::new(Arc::new(vec![0x55; 320]), Duration::from_millis(1000));
        let out = g.start(&call());
        assert_eq!(out.last(), Some(&Outbound::Mark(END_MARK.into())));
        // Finished sending, but the end mark is not echoed: the audio may still be playing.
        assert_eq!(g.dtmf("1"), vec![Outbound::Clear]);
        let mut g = Greeting::new(Arc::new(vec![0x55; 320]), Duration::from_millis(1000));
        g.start(&call());
        g.mark(END_MARK);
        assert!(g.dtmf("1").is_empty());
    }
}
