//! Word error rate, the standard measure of a transcript against what was really said: word
//! level edit distance (substitutions + deletions + insertions) over the reference length,
//! after both texts are normalised so spelling choices ("10" vs "ten", "Okay," vs "okay") do
//! not count as errors.

/// Lowercase words without punctuation; numbers written as digits become words ("10" to
/// "ten", "3:30" to "three thirty"), and a few contractions are expanded.
pub fn normalise(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let lower = text.to_lowercase().replace(['-', '/'], " ");
    for raw in lower.split_whitespace() {
        let word: String = raw
            .chars()
            .filter(|c| c.is_alphanumeric() || *c == '\'' || *c == ':')
            .collect();
        let word = word.trim_matches(|c| c == '\'' || c == ':');
        if word.is_empty() {
            continue;
        }
        if let Some((h, m)) = word.split_once(':') {
            push_number(h, &mut out);
            if m != "00" {
                push_number(m, &mut out);
            }
            continue;
        }
        match word {
            "i'm" => out.extend(["i".into(), "am".into()]),
            "i'd" => out.extend(["i".into(), "would".into()]),
            "it's" => out.extend(["it".into(), "is".into()]),
            "don't" => out.extend(["do".into(), "not".into()]),
            "can't" => out.extend(["cannot".into()]),
            "okay" => out.push("ok".into()),
            w if w.chars().all(|c| c.is_ascii_digit()) => push_number(w, &mut out),
            w => out.push(w.replace('\'', "")),
        }
    }
    out
}

fn push_number(digits: &str, out: &mut Vec<String>) {
    const ONES: [&str; 20] = [
        "zero",
        "one",
        "two",
        "three",
        "four",
        "five",
        "six",
        "seven",
        "eight",
        "nine",
        "ten",
        "eleven",
        "twelve",
        "thirteen",
        "fourteen",
        "fifteen",
        "sixteen",
        "seventeen",
        "eighteen",
        "nineteen",
    ];
    const TENS: [&str; 10] = [
        "", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety",
    ];
    match digits.parse::<usize>() {
        Ok(n) if n < 20 && !(digits.len() > 1 && digits.starts_with('0')) => {
            out.push(ONES[n].into())
        }
        Ok(n) if n < 100 && digits.len() == 2 => {
            out.push(TENS[n / 10].into());
            if n % 10 != 0 {
                out.push(ONES[n % 10].into());
            }
        }
        // Longer digit strings (phone numbers, years) are said digit by digit here.
        _ => out.extend(
            digits
                .chars()
                .filter_map(|c| c.to_digit(10))
                .map(|d| ONES[d as usize].to_string()),
        ),
    }
}

/// Word-level Levenshtein distance.
pub fn edit_distance(reference: &[String], hypothesis: &[String]) -> usize {
    let mut prev: Vec<usize> = (0..=hypothesis.len()).collect();
    let mut cur = vec![0; hypothesis.len() + 1];
    for (i, r) in reference.iter().enumerate() {
        cur[0] = i + 1;
        for (j, h) in hypothesis.iter().enumerate() {
            let substitute = prev[j] + usize::from(r != h);
            cur[j + 1] = substitute.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[hypothesis.len()]
}

/// Word error rate of `hypothesis` against `reference`, after normalising both. An empty
/// reference gives 0 for an empty hypothesis and 1 otherwise.
pub fn wer(reference: &str, hypothesis: &str) -> f64 {
    let r = normalise(reference);
    let h = normalise(hypothesis);
    if r.is_empty() {
        return if h.is_empty() { 0.0 } else { 1.0 };
    }
    edit_distance(&r, &h) as f64 / r.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalising() {
        assert_eq!(
            normalise("Go forward 10 meters."),
            ["go", "forward", "ten", "meters"]
        );
        assert_eq!(normalise("At 3:30, OK?"), ["at", "three", "thirty", "ok"]);
        assert_eq!(
            normalise("I'd like 21 of them"),
            ["i", "would", "like", "twenty", "one", "of", "them"]
        );
        assert_eq!(
            normalise("555-1234"),
            ["five", "five", "five", "one", "two", "three", "four"]
        );
        assert_eq!(normalise(" -- ... "), Vec::<String>::new());
    }

    #[test]
    fn distances() {
        let w = |s: &str| normalise(s);
        assert_eq!(edit_distance(&w("a b c"), &w("a b c")), 0);
        assert_eq!(edit_distance(&w("a b c"), &w("a x c")), 1);
        assert_eq!(edit_distance(&w("a b c"), &w("a c")), 1);
        assert_eq!(edit_distance(&w("a b c"), &w("a b c d e")), 2);
        assert_eq!(edit_distance(&w(""), &w("a b")), 2);
        assert_eq!(edit_distance(&w("kitten sitting"), &w("sitting kitten")), 2);
    }

    #[test]
    fn rates() {
        assert_eq!(wer("Go forward ten meters", "go forward 10 meters."), 0.0);
        assert_eq!(wer("one two three four", "one two three"), 0.25);
        assert_eq!(wer("one two", "one two three four"), 1.0);
        assert_eq!(wer("", ""), 0.0);
        assert_eq!(wer("", "noise"), 1.0);
    }
}
