//! Phone numbers in speech-to-text output, to E.164. Transcripts write numbers every way people
//! say them ("555-123-4567", "(555) 123 4567", "five five five, one two three ..."), and
//! callers leave out their own country code, so the configured region fills it in.

/// A region's calling code and whether national numbers carry a trunk `0` that E.164 drops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    pub code: &'static str,
    pub calling_code: &'static str,
    nanp: bool,
}

const REGIONS: &[(&str, &str, bool)] = &[
    ("US", "1", true),
    ("CA", "1", true),
    ("GB", "44", false),
    ("IE", "353", false),
    ("IL", "972", false),
    ("DE", "49", false),
    ("FR", "33", false),
    ("ES", "34", false),
    ("NL", "31", false),
    ("AU", "61", false),
    ("IN", "91", false),
];

impl Region {
    pub fn parse(code: &str) -> Option<Region> {
        let upper = code.trim().to_ascii_uppercase();
        REGIONS
            .iter()
            .find(|(c, _, _)| *c == upper)
            .map(|&(code, calling_code, nanp)| Region {
                code,
                calling_code,
                nanp,
            })
    }

    pub fn known() -> Vec<&'static str> {
        REGIONS.iter().map(|r| r.0).collect()
    }
}

/// A number found in text: what was written and its E.164 form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub text: String,
    pub e164: String,
}

fn digit_word(w: &str) -> Option<char> {
    Some(match w {
        "zero" | "oh" | "o" => '0',
        "one" => '1',
        "two" => '2',
        "three" => '3',
        "four" => '4',
        "five" => '5',
        "six" => '6',
        "seven" => '7',
        "eight" => '8',
        "nine" => '9',
        _ => return None,
    })
}

/// The digits of a token that belongs to a number, if it does: digit groups with the usual
/// separators, or a spoken digit.
fn token_digits(token: &str) -> Option<String> {
    let core = token.trim_matches(|c: char| matches!(c, ',' | ';' | ':' | '.' | '?' | '!'));
    if core.is_empty() {
        return None;
    }
    if let Some(d) = digit_word(&core.to_ascii_lowercase()) {
        return Some(d.to_string());
    }
    if core
        .chars()
        .all(|c| c.is_ascii_digit() || matches!(c, '(' | ')' | '-' | '.' | '+'))
        && core.chars().any(|c| c.is_ascii_digit())
    {
        return Some(core.chars().filter(char::is_ascii_digit).collect());
    }
    None
}

/// Every phone number in `text`, in order, normalised for `region`.
pub fn find(text: &str, region: Region) -> Vec<Found> {
    let tokens: Vec<&str> = text.split_whitespace().collect();
    let mut found = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let Some(first) = token_digits(tokens[i]) else {
            i += 1;
            continue;
        };
        let plus = tokens[i].trim_start_matches('(').starts_with('+')
            || (i > 0 && tokens[i - 1].eq_ignore_ascii_case("plus"));
        let mut digits = first;
        let mut j = i + 1;
        while j < tokens.len() {
            match token_digits(tokens[j]) {
                Some(d) => digits.push_str(&d),
                None => break,
            }
            j += 1;
        }
        // "oh" alone is an interjection, not a number.
        let spoken_only = tokens[i..j].iter().all(|t| {
            token_digits(t).is_some_and(|d| d.len() == 1) && !t.chars().any(|c| c.is_ascii_digit())
        });
        if !(spoken_only && j - i < 7) {
            if let Some(e164) = normalise(&digits, plus, region) {
                let text = tokens[i..j]
                    .join(" ")
                    .trim_end_matches([',', ';', '.', '?', '!'])
                    .to_string();
                found.push(Found { text, e164 });
            }
        }
        i = j;
    }
    found
}

/// Digits (and whether a `+` led them) to E.164, or `None` when they cannot be a phone number
/// in this region.
pub fn normalise(digits: &str, plus: bool, region: Region) -> Option<String> {
    let international = |rest: &str| (8..=15).contains(&rest.len()).then(|| format!("+{rest}"));
    if plus {
        return international(digits);
    }
    if region.nanp {
        if let Some(rest) = digits.strip_prefix("011") {
            return international(rest);
        }
        let national = match digits.len() {
            10 => digits,
            11 => digits.strip_prefix('1')?,
            _ => return None,
        };
        // Area codes and exchanges never start with 0 or 1.
        let b = national.as_bytes();
        if b[0] < b'2' || b[3] < b'2' {
            return None;
        }
        return Some(format!("+1{national}"));
    }
    if let Some(rest) = digits.strip_prefix("00") {
        return international(rest);
    }
    let national = digits.strip_prefix('0')?;
    if !(7..=12).contains(&national.len()) {
        return None;
    }
    Some(format!("+{}{national}", region.calling_code))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn us() -> Region {
        Region::parse("us").unwrap()
    }

    fn e164s(text: &str, region: Region) -> Vec<String> {
        find(text, region).into_iter().map(|f| f.e164).collect()
    }

    #[test]
    fn us_numbers_in_every_spelling() {
        for text in [
            "call me at 555-234-5678 please",
            "my number is (555) 234-5678.",
            "it's 555 234 5678",
            "5552345678",
            "1-555-234-5678",
            "+1 555 234 5678",
            "plus 1 555 234 5678",
            "555.234.5678",
            "five five five, two three four, five six seven eight.",
        ] {
            assert_eq!(e164s(text, us()), vec!["+15552345678"], "{text}");
        }
    }

    #[test]
    fn found_text_is_what_was_said() {
        assert_eq!(
            find("Reach me on (555) 234-5678, thanks", us()),
            vec![Found {
                text: "(555) 234-5678".into(),
                e164: "+15552345678".into()
            }]
        );
    }

    #[test]
    fn not_phone_numbers() {
        for text in [
            "I have 2 kids and 3 dogs",
            "order 12345",
            "at 9 30 tomorrow",
            "oh no, oh well",
            "555-012-3456", // exchange starting with 0
            "123-456-7890", // area code starting with 1
            "in 2026",
        ] {
            assert_eq!(e164s(text, us()), Vec::<String>::new(), "{text}");
        }
    }

    #[test]
    fn other_regions_drop_the_trunk_zero() {
        let il = Region::parse("IL").unwrap();
        assert_eq!(e164s("054-123-4567", il), vec!["+972541234567"]);
        assert_eq!(e164s("03 123 4567", il), vec!["+97231234567"]);
        let gb = Region::parse("GB").unwrap();
        assert_eq!(e164s("07911 123456", gb), vec!["+447911123456"]);
        assert_eq!(e164s("0044 7911 123456", gb), vec!["+447911123456"]);
        assert_eq!(e164s("+972 54 123 4567", us()), vec!["+972541234567"]);
        assert_eq!(e164s("011 44 7911 123456", us()), vec!["+447911123456"]);
        assert_eq!(e164s("7911 123456", gb), Vec::<String>::new());
        assert!(Region::parse("XX").is_none());
    }

    #[test]
    fn two_numbers_in_one_sentence() {
        assert_eq!(
            e164s("home 555-234-5678 or cell 555 876 5432.", us()),
            vec!["+15552345678", "+15558765432"]
        );
    }
}
