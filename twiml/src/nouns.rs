//! Which nouns open a real-time stream, and the first verb in a document that opens one: the line
//! the conflict rule draws. A list, not a match on names, so a noun Twilio adds is a configuration
//! line (`Connect/AiSession`) rather than a release.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

/// A noun that opens a real-time stream when it is a child of `verb` (`<Connect><Stream>`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RealtimeNoun {
    pub verb: Cow<'static, str>,
    pub noun: Cow<'static, str>,
}

impl RealtimeNoun {
    pub const fn new(verb: &'static str, noun: &'static str) -> Self {
        RealtimeNoun {
            verb: Cow::Borrowed(verb),
            noun: Cow::Borrowed(noun),
        }
    }

    pub(crate) fn matches(&self, verb: &[u8], noun: &[u8]) -> bool {
        self.verb.as_bytes() == verb && self.noun.as_bytes() == noun
    }
}

/// The nouns Twilio documents as opening a media WebSocket: `<Connect><Stream>` (bidirectional,
/// blocking), `<Start><Stream>` (a fork, non-blocking) and `<Connect><ConversationRelay>`.
pub const REALTIME_NOUNS: [RealtimeNoun; 3] = [
    RealtimeNoun::new("Connect", "Stream"),
    RealtimeNoun::new("Start", "Stream"),
    RealtimeNoun::new("Connect", "ConversationRelay"),
];

/// Written `Verb/Noun`, the spelling configuration files use.
impl fmt::Display for RealtimeNoun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.verb, self.noun)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not Verb/Noun with two TwiML element names (such as Connect/Stream)")]
pub struct BadNoun(pub String);

impl FromStr for RealtimeNoun {
    type Err = BadNoun;

    fn from_str(s: &str) -> Result<Self, BadNoun> {
        let bad = || BadNoun(s.to_owned());
        let (verb, noun) = s.split_once('/').ok_or_else(bad)?;
        if !is_element_name(verb) || !is_element_name(noun) {
            return Err(bad());
        }
        Ok(RealtimeNoun {
            verb: Cow::Owned(verb.to_owned()),
            noun: Cow::Owned(noun.to_owned()),
        })
    }
}

/// TwiML names are ASCII, unprefixed and case-sensitive; anything else could never match.
fn is_element_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
}

/// The first verb of a document that opens a real-time stream: only a `<Record>` before it can
/// keep the stream from opening.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamOpener {
    /// The verb (`Connect` or `Start`) and the noun under it that opens the stream.
    pub verb: String,
    pub noun: String,
    /// Body offset of the verb's `<`, and its 1-based line and column.
    pub offset: usize,
    pub line: u32,
    pub column: u32,
}

impl StreamOpener {
    /// `Connect/Stream`: the spelling of configuration, headers and log fields.
    pub fn path(&self) -> String {
        format!("{}/{}", self.verb, self.noun)
    }
}

/// `<Connect><Stream>`, as a reader of TwiML writes it.
impl fmt::Display for StreamOpener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{}><{}>", self.verb, self.noun)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nouns_parse_from_and_print_as_verb_slash_noun() {
        let n: RealtimeNoun = "Connect/AiSession".parse().unwrap();
        assert_eq!(n.to_string(), "Connect/AiSession");
        assert!(n.matches(b"Connect", b"AiSession"));
        assert!(!n.matches(b"connect", b"AiSession"));
        for bad in [
            "",
            "Connect",
            "Connect/",
            "/Stream",
            "Connect/Stream/x",
            "tw:Start/Stream",
            "1a/b",
        ] {
            assert_eq!(
                bad.parse::<RealtimeNoun>(),
                Err(BadNoun(bad.to_owned())),
                "{bad}"
            );
        }
        let defaults: Vec<String> = REALTIME_NOUNS.iter().map(|n| n.to_string()).collect();
        assert_eq!(
            defaults,
            [
                "Connect/Stream",
                "Start/Stream",
                "Connect/ConversationRelay"
            ]
        );
    }
}
