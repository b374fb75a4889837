//! What turns Whisper's output tokens into text and segments, and decides whether a decode is
//! good enough, as faster-whisper does it (`_split_segments_by_timestamps`,
//! `generate_with_fallback`): pure, so it is tested without a model. Tokens are the strings of
//! the model's vocabulary (GPT-2 byte-level BPE), which CTranslate2 returns with the ids.

use std::collections::HashMap;
use std::io::Write;
use std::sync::OnceLock;

/// Whisper's time step for timestamp tokens.
pub const TIME_PRECISION: f64 = 0.02;
/// faster-whisper's defaults (`transcribe`): a decode whose text compresses better than this
/// (zlib) repeats itself, one whose mean log-probability is below `LOG_PROB_THRESHOLD` is
/// unsure; either is tried again at the next temperature. A window whose no-speech probability
/// is above `NO_SPEECH_THRESHOLD` while the decode is unsure is silence.
pub const COMPRESSION_RATIO_THRESHOLD: f64 = 2.4;
pub const LOG_PROB_THRESHOLD: f64 = -1.0;
pub const NO_SPEECH_THRESHOLD: f64 = 0.6;
pub const TEMPERATURES: [f32; 6] = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0];
/// Hypotheses sampled at a temperature above 0 (faster-whisper's `best_of`).
pub const BEST_OF: usize = 5;
/// Previous text is no longer given as a prompt after a decode at a temperature above this.
pub const PROMPT_RESET_ON_TEMPERATURE: f32 = 0.5;
/// The decoder's context: the prompt may use half of it.
pub const MAX_LENGTH: usize = 448;

/// The time of a timestamp token (`<|1.24|>`), `None` for any other token.
pub fn timestamp(token: &str) -> Option<f64> {
    token
        .strip_prefix("<|")?
        .strip_suffix("|>")?
        .parse::<f64>()
        .ok()
}

/// Special tokens (`<|endoftext|>`, `<|0.00|>`, ...) carry no text.
pub fn is_special(token: &str) -> bool {
    token.starts_with("<|") && token.ends_with("|>")
}

/// GPT-2's byte-level alphabet reversed: each vocabulary character back to its byte.
fn byte_of() -> &'static HashMap<char, u8> {
    static MAP: OnceLock<HashMap<char, u8>> = OnceLock::new();
    MAP.get_or_init(|| {
        let printable = |b: u8| matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
        let mut next = 256u32;
        (0..=255u8)
            .map(|b| {
                let c = if printable(b) {
                    u32::from(b)
                } else {
                    next += 1;
                    next - 1
                };
                (char::from_u32(c).unwrap_or('?'), b)
            })
            .collect()
    })
}

/// The text of tokens: special tokens dropped, the rest joined and turned back into bytes.
pub fn text(tokens: &[String]) -> String {
    let map = byte_of();
    let mut bytes = Vec::new();
    for t in tokens.iter().filter(|t| !is_special(t)) {
        for c in t.chars() {
            match map.get(&c) {
                Some(&b) => bytes.push(b),
                None => bytes.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
            }
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// One piece of a window's output between two timestamps (times in the window, seconds).
#[derive(Debug, Clone, PartialEq)]
pub struct Span {
    pub start: f64,
    pub end: f64,
    /// Its tokens, timestamps included (the prompt for the next window is made of them).
    pub tokens: Vec<String>,
}

/// A window's output cut at its timestamps, and how much of the window it covers.
#[derive(Debug, Clone, PartialEq)]
pub struct Split {
    pub spans: Vec<Span>,
    /// `Some(t)`: the output stopped in the middle of a sentence (no closing timestamp); what
    /// follows `t` seconds into the window must be decoded again. `None`: the window is done.
    pub resume_at: Option<f64>,
}

/// faster-whisper's `_split_segments_by_timestamps`: pairs of consecutive timestamps close a
/// span; a lone timestamp at the end means nothing more was said; text after the last pair
/// is dropped and decoded again from that pair's time. Output with no pair of timestamps is
/// one span over the window (ending at its last timestamp when there is one).
pub fn split(tokens: &[String], window_secs: f64) -> Split {
    let ts: Vec<Option<f64>> = tokens.iter().map(|t| timestamp(t)).collect();
    let n = tokens.len();
    let single_ending = n >= 2 && ts[n - 2].is_none() && ts[n - 1].is_some();
    let mut cuts: Vec<usize> = (1..n)
        .filter(|&i| ts[i].is_some() && ts[i - 1].is_some())
        .collect();
    if cuts.is_empty() {
        let end = ts
            .iter()
            .rev()
            .flatten()
            .next()
            .copied()
            .filter(|&t| t > 0.0)
            .unwrap_or(window_secs);
        return Split {
            spans: vec![Span {
                start: 0.0,
                end,
                tokens: tokens.to_vec(),
            }],
            resume_at: None,
        };
    }
    if single_ending {
        cuts.push(n);
    }
    let mut spans = Vec::new();
    let mut last = 0;
    for &cut in &cuts {
        let part = &tokens[last..cut];
        let start = part.first().and_then(|t| timestamp(t)).unwrap_or(0.0);
        let end = part.last().and_then(|t| timestamp(t)).unwrap_or(start);
        spans.push(Span {
            start,
            end,
            tokens: part.to_vec(),
        });
        last = cut;
    }
    let resume_at = if single_ending {
        None
    } else {
        ts.get(last.saturating_sub(1)).copied().flatten()
    };
    Split { spans, resume_at }
}

/// How much zlib shrinks the text (faster-whisper's `get_compression_ratio`): above
/// `COMPRESSION_RATIO_THRESHOLD` the decode is looping.
pub fn compression_ratio(text: &str) -> f64 {
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::new(6));
    let compressed = z
        .write_all(text.as_bytes())
        .and_then(|()| z.finish())
        .map_or(1, |c| c.len().max(1));
    text.len() as f64 / compressed as f64
}

/// The mean log-probability per token from CTranslate2's score (which is divided by
/// `length ^ length_penalty`), counting the end token as faster-whisper does.
pub fn avg_logprob(score: f32, tokens: usize) -> f64 {
    f64::from(score) * tokens as f64 / (tokens + 1) as f64
}

/// One decode's verdict.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Judged {
    pub avg_logprob: f64,
    pub compression_ratio: f64,
    pub no_speech_prob: f64,
}

impl Judged {
    /// Try the next temperature: the text loops, or the model is unsure and it is not silence.
    pub fn needs_fallback(&self) -> bool {
        let looping = self.compression_ratio > COMPRESSION_RATIO_THRESHOLD;
        let unsure = self.avg_logprob < LOG_PROB_THRESHOLD;
        (looping || unsure) && !self.is_silence()
    }

    /// faster-whisper skips a window the model thinks is silent, unless its decode is sure.
    pub fn is_silence(&self) -> bool {
        self.no_speech_prob > NO_SPEECH_THRESHOLD && self.avg_logprob < LOG_PROB_THRESHOLD
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(s: &[&str]) -> Vec<String> {
        s.iter().map(|t| t.to_string()).collect()
    }

    #[test]
    fn text_undoes_the_byte_level_alphabet() {
        // "Ġ" is a space, "âĢĻ" the three bytes of a right single quote.
        let t = toks(&[
            "<|0.00|>", "ĠHello", ",", "Ġit", "âĢĻ", "s", "Ġme", ".", "<|1.50|>",
        ]);
        assert_eq!(text(&t), " Hello, it’s me.");
        assert_eq!(text(&toks(&["<|endoftext|>"])), "");
    }

    #[test]
    fn timestamps_are_parsed_and_nothing_else() {
        assert_eq!(timestamp("<|1.24|>"), Some(1.24));
        assert_eq!(timestamp("<|endoftext|>"), None);
        assert_eq!(timestamp("Ġ1.24"), None);
        assert!(is_special("<|startoftranscript|>"));
        assert!(!is_special("Ġ<"));
    }

    #[test]
    fn split_as_faster_whisper() {
        // Two closed spans and a lone timestamp at the end: the window is done.
        let done = split(
            &toks(&["<|0.00|>", "ĠA", "<|1.00|>", "<|1.20|>", "ĠB", "<|2.00|>"]),
            30.0,
        );
        assert_eq!(done.resume_at, None);
        assert_eq!(done.spans.len(), 2);
        assert_eq!((done.spans[0].start, done.spans[0].end), (0.0, 1.0));
        assert_eq!((done.spans[1].start, done.spans[1].end), (1.2, 2.0));
        assert_eq!(text(&done.spans[1].tokens), " B");
        // Text after the last pair is dropped and decoded again from the pair's time.
        let cut = split(
            &toks(&["<|0.00|>", "ĠA", "<|1.00|>", "<|1.20|>", "ĠB"]),
            30.0,
        );
        assert_eq!(cut.resume_at, Some(1.0));
        assert_eq!(cut.spans.len(), 1);
        assert_eq!(text(&cut.spans[0].tokens), " A");
        // No pair: one span over the window, ending at the last timestamp.
        let one = split(&toks(&["<|0.00|>", "ĠA", "<|4.00|>"]), 30.0);
        assert_eq!(one.resume_at, None);
        assert_eq!((one.spans[0].start, one.spans[0].end), (0.0, 4.0));
        let bare = split(&toks(&["ĠA"]), 7.5);
        assert_eq!((bare.spans[0].start, bare.spans[0].end), (0.0, 7.5));
    }

    #[test]
    fn a_looping_or_unsure_decode_falls_back_unless_silent() {
        let looping = "I am here. ".repeat(20);
        assert!(compression_ratio(&looping) > COMPRESSION_RATIO_THRESHOLD);
        assert!(compression_ratio("Hello, I would like to book an appointment.") < 2.0);
        let j = |avg_logprob, compression_ratio, no_speech_prob| Judged {
            avg_logprob,
            compression_ratio,
            no_speech_prob,
        };
        assert!(!j(-0.3, 1.5, 0.1).needs_fallback());
        assert!(j(-0.3, 3.0, 0.1).needs_fallback());
        assert!(j(-1.5, 1.5, 0.1).needs_fallback());
        assert!(!j(-1.5, 1.5, 0.9).needs_fallback());
        assert!(j(-1.5, 1.5, 0.9).is_silence());
        assert!(!j(-0.5, 1.5, 0.9).is_silence());
        assert!((avg_logprob(-0.5, 9) - -0.45).abs() < 1e-9);
    }
}
