//! The default extraction engine: deterministic rules over the transcript, no model, no network.
//! Phone numbers (E.164), e-mail addresses, dates and times (relative ones resolved against
//! the call's start), whether a callback was asked for, and a short extractive summary. Every
//! item names the transcript segment it came from, so a reader can check it against the words.

pub mod phone;
pub mod when;

use crate::{
    EngineError, ExtractRequest, Extraction, Extractor, LocalExtractionConfig, Segment, Transcript,
};
use jiff::tz::{Offset, TimeZone};
use jiff::Timestamp;
use phone::Region;
use regex::Regex;
use serde_json::{json, Value};
use std::sync::LazyLock;

/// `UTC`, `+02:00` / `-0530`, or an IANA zone name from the system database.
pub fn resolve_timezone(name: &str, key: &str) -> Result<TimeZone, EngineError> {
    let name = name.trim();
    if name.eq_ignore_ascii_case("utc") || name == "Z" {
        return Ok(TimeZone::UTC);
    }
    if let Some(rest) = name.strip_prefix('+').or_else(|| name.strip_prefix('-')) {
        let negative = name.starts_with('-');
        return parse_offset(rest)
            .and_then(|secs| Offset::from_seconds(if negative { -secs } else { secs }).ok())
            .map(TimeZone::fixed)
            .ok_or_else(|| {
                EngineError::Config(format!("{key}: {name:?} is not a UTC offset like +02:00"))
            });
    }
    TimeZone::get(name).map_err(|e| {
        EngineError::Config(format!(
            "{key}: unknown time zone {name:?} (use UTC, an offset like +02:00 or an IANA name): {e}"
        ))
    })
}

/// `02`, `0200` or `02:00` to seconds east of UTC.
fn parse_offset(rest: &str) -> Option<i32> {
    let (h, m) = match (rest.len(), rest.split_once(':')) {
        (5, Some((h, m))) => (h, m),
        (4, None) => rest.split_at(2),
        (2, None) => (rest, "00"),
        _ => return None,
    };
    if !(h.len() == 2 && m.len() == 2) {
        return None;
    }
    let (h, m): (i32, i32) = (h.parse().ok()?, m.parse().ok()?);
    (h <= 18 && m < 60).then_some(h * 3600 + m * 60)
}

/// Segments as numbered lines, for prompts and logs: `[0] caller 0.0-2.4: text`.
pub fn segment_listing(segments: &[Segment]) -> String {
    segments
        .iter()
        .enumerate()
        .map(|(i, s)| {
            format!(
                "[{i}] {} {:.1}-{:.1}: {}",
                s.speaker, s.start, s.end, s.text
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

static EMAIL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\b[a-z0-9][a-z0-9._%+-]*@[a-z0-9-]+(?:\.[a-z0-9-]+)*\.[a-z]{2,}\b")
        .expect("static regex")
});

// "john dot smith at example dot com": speech-to-text often spells addresses out.
static SPOKEN_EMAIL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)\b([a-z0-9]+(?:(?:\s+dot\s+|\.|_)[a-z0-9]+)*)\s+at\s+([a-z0-9-]+(?:(?:\s+dot\s+|\.)[a-z0-9-]+)*)(?:\s+dot\s+|\.)(com|net|org|edu|gov|io|co|uk|us|de|fr|il|ca|info|biz)\b",
    )
    .expect("static regex")
});

static DOT: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"(?i)\s+dot\s+").expect("static regex"));

/// E-mail addresses in `text`, written or spelled out, as `(said, address)`.
pub fn find_emails(text: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = EMAIL
        .find_iter(text)
        .map(|m| {
            let s = m.as_str().trim_end_matches('.').to_string();
            (s.clone(), s.to_lowercase())
        })
        .collect();
    for c in SPOKEN_EMAIL.captures_iter(text) {
        let said = c[0].to_string();
        let local = DOT.replace_all(&c[1], ".").to_lowercase();
        let domain = DOT.replace_all(&c[2], ".").to_lowercase();
        let addr = format!("{local}@{domain}.{}", c[3].to_lowercase());
        if !out.iter().any(|(_, a)| *a == addr) {
            out.push((said, addr));
        }
    }
    out
}

static CALLBACK: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)\b(call (?:me|us) back|call back|callback|call me|give (?:me|us) a (?:call|ring)|ring (?:me|us)|get back to (?:me|us)|return (?:my|our) call|reach me|contact me|phone me)\b",
    )
    .expect("static regex")
});

static NEGATION: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\b(don'?t|do not|no need to|not|never|doesn'?t|won'?t)\s+(?:\w+\s+){0,2}$")
        .expect("static regex")
});

/// The first request for a callback in the segment's text, unless negated ("don't call me
/// back"): the phrase said.
pub fn find_callback(text: &str) -> Option<String> {
    CALLBACK
        .find_iter(text)
        .find(|m| !NEGATION.is_match(&text[..m.start()]))
        .map(|m| m.as_str().to_string())
}

static SENTENCE_END: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"[.!?]+(?:\s+|$)").expect("static regex"));

static PURPOSE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)\b(want|need|would like|'d like|looking for|calling (?:about|to|because|for)|problem|issue|appointment|book|schedule|reschedule|cancel|order|refund|price|quote|help|broken|complaint|question|deliver)",
    )
    .expect("static regex")
});

static SMALL_TALK: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)^(hello|hi|hey|thanks|thank you|bye|goodbye|ok|okay|yes|no|sure|great)\b[\s,.!?]*\w{0,12}[\s,.!?]*$")
        .expect("static regex")
});

fn sentences(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut last = 0;
    for m in SENTENCE_END.find_iter(text) {
        out.push(text[last..m.end()].trim().to_string());
        last = m.end();
    }
    if last < text.len() {
        out.push(text[last..].trim().to_string());
    }
    out.retain(|s| !s.is_empty());
    out
}

// === impl LocalExtractor ===

pub struct LocalExtractor {
    region: Region,
    tz: TimeZone,
    summary_sentences: usize,
}

impl LocalExtractor {
    pub fn new(cfg: &LocalExtractionConfig) -> Result<Self, EngineError> {
        let region = Region::parse(&cfg.default_region).ok_or_else(|| {
            EngineError::Config(format!(
                "extraction.local.default_region: unknown region {:?} (known: {})",
                cfg.default_region,
                Region::known().join(", ")
            ))
        })?;
        cfg.validate()?;
        Ok(LocalExtractor {
            region,
            tz: resolve_timezone(&cfg.timezone, "extraction.local.timezone")?,
            summary_sentences: cfg.summary_sentences,
        })
    }

    /// The whole extraction, pure: same transcript and start time, same answer.
    pub fn extract_from(
        &self,
        transcript: &Transcript,
        call_started_at_ms: i64,
    ) -> Result<Extraction, EngineError> {
        let started = Timestamp::from_millisecond(call_started_at_ms).map_err(|e| {
            EngineError::Permanent(format!("call start {call_started_at_ms} ms: {e}"))
        })?;
        let mut phones = Vec::new();
        let mut emails = Vec::new();
        let mut datetimes = Vec::new();
        let mut callback: Option<(usize, String)> = None;
        for (i, seg) in transcript.segments.iter().enumerate() {
            let item = |text: &str, value: &str| json!({"value": value, "text": text, "segment": i, "speaker": seg.speaker});
            for p in phone::find(&seg.text, self.region) {
                phones.push(item(&p.text, &p.e164));
            }
            for (said, addr) in find_emails(&seg.text) {
                emails.push(item(&said, &addr));
            }
            for w in when::find(&seg.text, started, &self.tz) {
                let mut v = item(&w.text, &w.value);
                v["kind"] = json!(w.kind);
                datetimes.push(v);
            }
            if callback.is_none() {
                callback = find_callback(&seg.text).map(|phrase| (i, phrase));
            }
        }
        let callback = match callback {
            Some((seg, phrase)) => {
                // When: the first date or time said in that segment or after it.
                let at = datetimes
                    .iter()
                    .find(|d| d["segment"].as_u64().is_some_and(|s| s as usize >= seg))
                    .map(|d| d["value"].clone())
                    .unwrap_or(Value::Null);
                json!({"requested": true, "text": phrase, "segment": seg, "at": at})
            }
            None => json!({"requested": false, "text": null, "segment": null, "at": null}),
        };
        let summary = self.summary(&transcript.segments, &phones, &emails, &datetimes);
        let summary_text = summary
            .iter()
            .map(|s| s["text"].as_str().unwrap_or_default())
            .collect::<Vec<_>>()
            .join(" ");
        Ok(Extraction {
            summary: summary_text,
            fields: json!({
                "phone_numbers": phones,
                "emails": emails,
                "datetimes": datetimes,
                "callback": callback,
                "summary_sentences": summary,
            }),
            engine: "local".into(),
        })
    }

    /// The sentences that say why the caller called and what to do next, in call order.
    fn summary(
        &self,
        segments: &[Segment],
        phones: &[Value],
        emails: &[Value],
        datetimes: &[Value],
    ) -> Vec<Value> {
        let facts_in = |i: usize| {
            [phones, emails, datetimes]
                .iter()
                .flat_map(|list| list.iter())
                .any(|v| v["segment"].as_u64() == Some(i as u64))
        };
        // (score, segment, order, sentence)
        let mut scored: Vec<(i32, usize, usize, String)> = Vec::new();
        for (i, seg) in segments.iter().enumerate() {
            for s in sentences(&seg.text) {
                if SMALL_TALK.is_match(&s) || s.split_whitespace().count() < 3 {
                    continue;
                }
                let mut score = 0;
                if PURPOSE.is_match(&s) {
                    score += 3;
                }
                if find_callback(&s).is_some() {
                    score += 2;
                }
                if facts_in(i)
                    && (!phone::find(&s, self.region).is_empty()
                        || !find_emails(&s).is_empty()
                        || !when::find(&s, Timestamp::UNIX_EPOCH, &TimeZone::UTC).is_empty())
                {
                    score += 2;
                }
                if seg.speaker == "caller" {
                    score += 1;
                }
                let order = scored.len();
                scored.push((score, i, order, s));
            }
        }
        let mut best: Vec<&(i32, usize, usize, String)> = scored.iter().collect();
        best.sort_by(|a, b| b.0.cmp(&a.0).then(a.2.cmp(&b.2)));
        best.truncate(self.summary_sentences);
        best.sort_by_key(|s| s.2);
        best.iter()
            .map(|(_, seg, _, text)| json!({"text": text, "segment": seg}))
            .collect()
    }
}

#[async_trait::async_trait]
impl Extractor for LocalExtractor {
    async fn extract(&self, req: &ExtractRequest) -> Result<Extraction, EngineError> {
        self.extract_from(&req.transcript, req.call_started_at_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(speaker: &str, text: &str) -> Segment {
        Segment {
            speaker: speaker.into(),
            start: 0.0,
            end: 1.0,
            text: text.into(),
        }
    }

    fn transcript(segments: Vec<Segment>) -> Transcript {
        Transcript {
            text: String::new(),
            segments,
            engine: "whisper".into(),
            model: "test".into(),
        }
    }

    fn extractor(region: &str, tz: &str) -> LocalExtractor {
        LocalExtractor::new(&LocalExtractionConfig {
            default_region: region.into(),
            timezone: tz.into(),
            summary_sentences: 2,
        })
        .unwrap()
    }

    // Thursday 2026-11-19 14:30 in New York.
    const STARTED_MS: i64 = 1_795_116_600_000;

    #[test]
    fn a_whole_call() {
        let t = transcript(vec![
            seg(
                "agent",
                "Thank you for calling Acme Dental, how can I help?",
            ),
            seg(
                "caller",
                "Hi. I'd like to book an appointment for a cleaning.",
            ),
            seg("agent", "Sure. What's the best number to reach you?"),
            seg(
                "caller",
                "It's 555-234-5678. Please call me back tomorrow at nine.",
            ),
            seg("caller", "My email is Jane.Doe@Example.com. Thanks, bye."),
        ]);
        let e = extractor("US", "America/New_York")
            .extract_from(&t, STARTED_MS)
            .unwrap();
        assert_eq!(e.engine, "local");
        assert_eq!(
            e.fields["phone_numbers"],
            json!([{"value": "+15552345678", "text": "555-234-5678", "segment": 3, "speaker": "caller"}])
        );
        assert_eq!(
            e.fields["emails"],
            json!([{"value": "jane.doe@example.com", "text": "Jane.Doe@Example.com", "segment": 4, "speaker": "caller"}])
        );
        assert_eq!(
            e.fields["datetimes"],
            json!([{"value": "2026-11-20T09:00:00-05:00", "text": "tomorrow at nine", "kind": "datetime", "segment": 3, "speaker": "caller"}])
        );
        assert_eq!(
            e.fields["callback"],
            json!({"requested": true, "text": "call me back", "segment": 3, "at": "2026-11-20T09:00:00-05:00"})
        );
        assert_eq!(
            e.summary,
            "I'd like to book an appointment for a cleaning. Please call me back tomorrow at nine."
        );
        assert_eq!(
            e.fields["summary_sentences"],
            json!([
                {"text": "I'd like to book an appointment for a cleaning.", "segment": 1},
                {"text": "Please call me back tomorrow at nine.", "segment": 3},
            ])
        );
    }

    #[test]
    fn no_callback_when_declined_or_absent() {
        let t = transcript(vec![seg(
            "caller",
            "No need to call me back, I just wanted the hours.",
        )]);
        let e = extractor("US", "UTC").extract_from(&t, STARTED_MS).unwrap();
        assert_eq!(e.fields["callback"]["requested"], false);
        assert_eq!(find_callback("please don't call me back"), None);
        assert_eq!(find_callback("do not ever call me"), None);
        assert_eq!(
            find_callback("Could you give me a call later?"),
            Some("give me a call".into())
        );
        assert_eq!(
            find_callback("I'll wait for your callback."),
            Some("callback".into())
        );
        assert_eq!(find_callback("I called yesterday"), None);
    }

    #[test]
    fn spelled_out_emails() {
        assert_eq!(
            find_emails("it's john dot smith at example dot com"),
            vec![(
                "john dot smith at example dot com".into(),
                "john.smith@example.com".into()
            )]
        );
        assert_eq!(
            find_emails("write to sales@acme.co.uk."),
            vec![("sales@acme.co.uk".into(), "sales@acme.co.uk".into())]
        );
        assert_eq!(find_emails("I'm at home today"), vec![]);
        assert_eq!(find_emails("meet at the office dot"), vec![]);
    }

    #[test]
    fn time_zones() {
        assert_eq!(resolve_timezone("UTC", "k").unwrap(), TimeZone::UTC);
        let plus = resolve_timezone("+02:00", "k").unwrap();
        assert_eq!(plus, TimeZone::fixed(jiff::tz::offset(2)));
        let minus = resolve_timezone("-0530", "k").unwrap();
        assert_eq!(
            minus,
            TimeZone::fixed(Offset::from_seconds(-(5 * 3600 + 30 * 60)).unwrap())
        );
        assert!(resolve_timezone("Asia/Jerusalem", "k").is_ok());
        assert_eq!(
            resolve_timezone("+2:0:0", "extraction.local.timezone").unwrap_err(),
            EngineError::Config(
                "extraction.local.timezone: \"+2:0:0\" is not a UTC offset like +02:00".into()
            )
        );
        assert!(matches!(
            resolve_timezone("Mars/Olympus", "k"),
            Err(EngineError::Config(m)) if m.starts_with("k: unknown time zone \"Mars/Olympus\"")
        ));
    }

    #[test]
    fn regions_and_bad_config() {
        let e = extractor("IL", "Asia/Jerusalem");
        let t = transcript(vec![seg("caller", "My number is 054-123-4567.")]);
        let x = e.extract_from(&t, STARTED_MS).unwrap();
        assert_eq!(x.fields["phone_numbers"][0]["value"], "+972541234567");
        let err = LocalExtractor::new(&LocalExtractionConfig {
            default_region: "ZZ".into(),
            ..Default::default()
        })
        .err()
        .unwrap();
        assert!(
            matches!(err, EngineError::Config(m) if m.starts_with("extraction.local.default_region: unknown region \"ZZ\""))
        );
    }

    #[test]
    fn empty_transcript_gives_empty_fields() {
        let e = extractor("US", "UTC")
            .extract_from(&transcript(vec![]), STARTED_MS)
            .unwrap();
        assert_eq!(e.summary, "");
        assert_eq!(e.fields["phone_numbers"], json!([]));
        assert_eq!(e.fields["callback"]["requested"], false);
    }

    #[test]
    fn sentences_split() {
        assert_eq!(
            sentences("Hi. How are you?  Fine! ok"),
            vec!["Hi.", "How are you?", "Fine!", "ok"]
        );
        assert_eq!(
            segment_listing(&[seg("caller", "hello")]),
            "[0] caller 0.0-1.0: hello"
        );
    }
}
