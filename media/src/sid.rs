//! Twilio identifiers that reach file names and database keys. Only a validated `CallSid` (`CA` +
//! 32 hex digits) ever becomes part of a path, so nothing a client sends can steer a file name.

use std::fmt;

fn is_sid(s: &str, prefix: &str) -> bool {
    s.len() == 34 && s.starts_with(prefix) && s[2..].bytes().all(|b| b.is_ascii_hexdigit())
}

/// `CA` followed by 32 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallSid(String);

impl CallSid {
    pub fn parse(s: &str) -> Option<CallSid> {
        is_sid(s, "CA").then(|| CallSid(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CallSid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Stream SIDs are `MZ` + 32 hex in real traffic; they are only stored, never used in paths,
/// so the check is for logging and refusal of obvious garbage (length and printable ASCII).
pub fn plausible_stream_sid(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// `AC` + 32 hex: the account SID goes into the Twilio REST URL.
pub fn is_account_sid(s: &str) -> bool {
    is_sid(s, "AC")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_sid_accepts_only_ca_and_32_hex() {
        assert!(CallSid::parse("CA0123456789abcdef0123456789ABCDEF").is_some());
        for bad in [
            "",
            "CA0123456789abcdef0123456789abcde",
            "CA0123456789abcdef0123456789abcdef0",
            "MZ0123456789abcdef0123456789abcdef",
            "CA../../../../etc/passwd000000000000",
            "CA0123456789abcdef0123456789abcde/",
            "CA0123456789abcdef0123456789abcdeg",
            "ca0123456789abcdef0123456789abcdef",
        ] {
            assert!(CallSid::parse(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn account_sid_is_checked_the_same_way() {
        assert!(is_account_sid("AC0123456789abcdef0123456789abcdef"));
        assert!(!is_account_sid("AC123"));
    }
}
