//! Dates and times as callers say them ("tomorrow at nine", "next Monday at 3 pm", "in two
//! hours", "March 5th"), resolved against the moment the call started in the business's time
//! zone. The rules are fixed and written down here, so the same words always give the same
//! instant:
//! - a weekday ("Monday", "this Monday", "next Monday") is the first such day after the call's
//!   day (1 to 7 days ahead);
//! - an hour without am/pm is business time: 7-11 morning, 12 noon, 1-6 afternoon; "morning",
//!   "afternoon", "evening", "tonight" decide when said;
//! - a time without a day is its next occurrence after the call started;
//! - a month and day without a year is the next such date on or after the call's day.

use jiff::civil::{Date, Weekday};
use jiff::tz::TimeZone;
use jiff::{Span, Timestamp, Zoned};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct When {
    /// The words it came from, lowercased and with punctuation removed.
    pub text: String,
    /// ISO 8601: `2026-11-22T09:00:00-05:00` for a moment, `2026-11-22` for a day.
    pub value: String,
    /// `datetime` or `date`.
    pub kind: &'static str,
}

fn number_word(w: &str) -> Option<u32> {
    Some(match w {
        "a" | "an" | "one" => 1,
        "two" => 2,
        "three" => 3,
        "four" => 4,
        "five" => 5,
        "six" => 6,
        "seven" => 7,
        "eight" => 8,
        "nine" => 9,
        "ten" => 10,
        "eleven" => 11,
        "twelve" => 12,
        "fifteen" => 15,
        "twenty" => 20,
        "thirty" => 30,
        "forty" => 40,
        "forty-five" => 45,
        "fifty" => 50,
        _ => return w.parse().ok(),
    })
}

fn weekday(w: &str) -> Option<Weekday> {
    Some(match w {
        "monday" => Weekday::Monday,
        "tuesday" => Weekday::Tuesday,
        "wednesday" => Weekday::Wednesday,
        "thursday" => Weekday::Thursday,
        "friday" => Weekday::Friday,
        "saturday" => Weekday::Saturday,
        "sunday" => Weekday::Sunday,
        _ => return None,
    })
}

fn month(w: &str) -> Option<i8> {
    const MONTHS: [&str; 12] = [
        "january",
        "february",
        "march",
        "april",
        "may",
        "june",
        "july",
        "august",
        "september",
        "october",
        "november",
        "december",
    ];
    MONTHS
        .iter()
        .position(|m| *m == w || (w.len() == 3 && m.starts_with(w) && w != "may"))
        .map(|i| i as i8 + 1)
}

fn ordinal_day(w: &str) -> Option<i8> {
    const WORDS: [&str; 12] = [
        "first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth",
        "tenth", "eleventh", "twelfth",
    ];
    if let Some(i) = WORDS.iter().position(|x| *x == w) {
        return Some(i as i8 + 1);
    }
    let digits = w
        .strip_suffix("st")
        .or_else(|| w.strip_suffix("nd"))
        .or_else(|| w.strip_suffix("rd"))
        .or_else(|| w.strip_suffix("th"))
        .unwrap_or(w);
    digits.parse::<i8>().ok().filter(|d| (1..=31).contains(d))
}

/// Lowercase words, with "a.m."/"p.m." joined and punctuation other than `:` and `-` inside
/// words removed.
fn words(text: &str) -> Vec<String> {
    let lower = text
        .to_lowercase()
        .replace("a.m.", "am")
        .replace("p.m.", "pm")
        .replace("o'clock", "oclock");
    lower
        .split_whitespace()
        .map(|w| w.trim_matches(|c: char| !c.is_alphanumeric()).to_string())
        .filter(|w| !w.is_empty())
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Meridiem {
    Am,
    Pm,
}

/// A time of day read at `w[i..]`: (hour 0-23 or 1-12 with meridiem, minute, meridiem, words).
fn time_at(w: &[String], i: usize) -> Option<(i8, i8, Option<Meridiem>, usize)> {
    let word = w.get(i)?.as_str();
    match word {
        "noon" | "midday" => return Some((12, 0, Some(Meridiem::Pm), 1)),
        "midnight" => return Some((0, 0, Some(Meridiem::Am), 1)),
        "half" | "quarter" if w.get(i + 1).map(String::as_str) == Some("past") => {
            let h = hour_word(w.get(i + 2)?)?;
            let m = if word == "half" { 30 } else { 15 };
            let (mer, n) = meridiem_at(w, i + 3);
            return Some((h, m, mer, 3 + n));
        }
        "quarter" if w.get(i + 1).map(String::as_str) == Some("to") => {
            let h = hour_word(w.get(i + 2)?)?;
            let (mer, n) = meridiem_at(w, i + 3);
            let before = if h == 1 { 12 } else { h - 1 };
            return Some((before, 45, mer, 3 + n));
        }
        _ => {}
    }
    // "9:30", "9", "nine", "nine thirty", "9 30", "930pm"
    let (h, m, mut n) = if let Some((hs, ms)) = word.split_once(':') {
        (hs.parse::<i8>().ok()?, ms.get(..2)?.parse::<i8>().ok()?, 1)
    } else if let Some(stripped) = word.strip_suffix("am").or_else(|| word.strip_suffix("pm")) {
        // "9am" written together
        let h = stripped.parse::<i8>().ok()?;
        let mer = if word.ends_with("am") {
            Meridiem::Am
        } else {
            Meridiem::Pm
        };
        return ((1..=12).contains(&h)).then_some((h, 0, Some(mer), 1));
    } else {
        let h = hour_word(word)?;
        match w.get(i + 1).and_then(|x| minute_word(x, w.get(i + 2))) {
            Some((m, used)) => (h, m, 1 + used),
            None => (h, 0, 1),
        }
    };
    if !(0..=23).contains(&h) || !(0..=59).contains(&m) {
        return None;
    }
    if w.get(i + n).map(String::as_str) == Some("oclock") {
        n += 1;
    }
    let (mer, k) = meridiem_at(w, i + n);
    Some((h, m, mer, n + k))
}

fn hour_word(w: &str) -> Option<i8> {
    let h = number_word(w).filter(|_| w != "a" && w != "an")?;
    (1..=12).contains(&h).then_some(h as i8)
}

fn minute_word(w: &str, next: Option<&String>) -> Option<(i8, usize)> {
    match w {
        "fifteen" => Some((15, 1)),
        "thirty" => Some((30, 1)),
        "forty-five" => Some((45, 1)),
        "forty" if next.map(String::as_str) == Some("five") => Some((45, 2)),
        "oh" | "o" => {
            let m = number_word(next?)?;
            (1..=9).contains(&m).then_some((m as i8, 2))
        }
        _ if w.len() == 2 && w.chars().all(|c| c.is_ascii_digit()) => {
            let m: i8 = w.parse().ok()?;
            (0..=59).contains(&m).then_some((m, 1))
        }
        _ => None,
    }
}

fn meridiem_at(w: &[String], i: usize) -> (Option<Meridiem>, usize) {
    let at = |k: usize| w.get(i + k).map(String::as_str);
    match (at(0), at(1), at(2)) {
        (Some("am"), _, _) => (Some(Meridiem::Am), 1),
        (Some("pm"), _, _) => (Some(Meridiem::Pm), 1),
        (Some("in"), Some("the"), Some("morning")) => (Some(Meridiem::Am), 3),
        (Some("in"), Some("the"), Some("afternoon" | "evening")) => (Some(Meridiem::Pm), 3),
        (Some("at"), Some("night"), _) => (Some(Meridiem::Pm), 2),
        (Some("tonight"), _, _) => (Some(Meridiem::Pm), 0),
        _ => (None, 0),
    }
}

/// The 24-hour clock hour for a spoken hour.
fn hour24(h: i8, mer: Option<Meridiem>) -> i8 {
    match (mer, h) {
        (_, h) if h > 12 => h,
        (Some(Meridiem::Am), 12) => 0,
        (Some(Meridiem::Am), h) => h,
        (Some(Meridiem::Pm), 12) => 12,
        (Some(Meridiem::Pm), h) => h + 12,
        (None, 0) => 0,
        (None, h) if (1..=6).contains(&h) => h + 12,
        (None, h) => h,
    }
}

/// A day read at `w[i..]`, relative to `today`: (date, words used, evening hint).
fn day_at(w: &[String], i: usize, today: Date) -> Option<(Date, usize, bool)> {
    let at = |k: usize| w.get(i + k).map(String::as_str);
    let plus = |days: i64| today.checked_add(Span::new().days(days)).ok();
    match at(0)? {
        "today" => Some((today, 1, false)),
        "tonight" => Some((today, 1, true)),
        "tomorrow" => Some((plus(1)?, 1, false)),
        "the" if at(1) == Some("day") && at(2) == Some("after") && at(3) == Some("tomorrow") => {
            Some((plus(2)?, 4, false))
        }
        "day" if at(1) == Some("after") && at(2) == Some("tomorrow") => Some((plus(2)?, 3, false)),
        "this" | "next" | "on" => {
            let (date, n, eve) = day_at(w, i + 1, today)?;
            // Only a weekday may follow these words ("next tomorrow" is not a day).
            weekday(at(1)?).map(|_| (date, n + 1, eve))
        }
        word => {
            if let Some(wd) = weekday(word) {
                let ahead = (wd.to_monday_zero_offset() - today.weekday().to_monday_zero_offset())
                    .rem_euclid(7);
                let ahead = if ahead == 0 { 7 } else { ahead };
                return Some((plus(i64::from(ahead))?, 1, false));
            }
            month_day_at(w, i, today)
        }
    }
}

/// "march 5", "march 5th 2027", "the 5th of march", "5 march".
fn month_day_at(w: &[String], i: usize, today: Date) -> Option<(Date, usize, bool)> {
    let at = |k: usize| w.get(i + k).map(String::as_str);
    let (m, d, mut n) = if let Some(m) = at(0).and_then(month) {
        (m, ordinal_day(at(1)?)?, 2)
    } else {
        let skip = usize::from(at(0) == Some("the"));
        let d = ordinal_day(at(skip)?)?;
        let of = usize::from(at(skip + 1) == Some("of"));
        let m = month(at(skip + 1 + of)?)?;
        (m, d, skip + 2 + of)
    };
    let year = match at(n)
        .and_then(|y| y.parse::<i16>().ok())
        .filter(|y| (1900..=2200).contains(y))
    {
        Some(y) => {
            n += 1;
            Date::new(y, m, d).ok()?
        }
        None => {
            let this_year = Date::new(today.year(), m, d).ok()?;
            if this_year < today {
                Date::new(today.year() + 1, m, d).ok()?
            } else {
                this_year
            }
        }
    };
    Some((year, n, false))
}

/// "in two hours", "in 30 minutes", "in half an hour", "in a couple of days".
fn relative_at(w: &[String], i: usize) -> Option<(Span, usize, bool)> {
    let at = |k: usize| w.get(i + k).map(String::as_str);
    if at(0)? != "in" {
        return None;
    }
    if at(1) == Some("half") && at(2) == Some("an") && at(3) == Some("hour") {
        return Some((Span::new().minutes(30), 4, true));
    }
    let (n, used) = match (at(1)?, at(2), at(3)) {
        ("a", Some("couple"), Some("of")) => (2, 3),
        (word, _, _) => (number_word(word)?, 1),
    };
    let unit = at(1 + used)?;
    let n = i64::from(n);
    let (span, precise) = match unit.trim_end_matches('s') {
        "minute" => (Span::new().minutes(n), true),
        "hour" => (Span::new().hours(n), true),
        "day" => (Span::new().days(n), false),
        "week" => (Span::new().weeks(n), false),
        _ => return None,
    };
    Some((span, 2 + used, precise))
}

fn iso(z: &Zoned) -> String {
    z.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string()
}

/// Every date or time said in `text`, resolved against `now` in `tz`.
pub fn find(text: &str, now: Timestamp, tz: &TimeZone) -> Vec<When> {
    let w = words(text);
    let now = now.to_zoned(tz.clone());
    let today = now.date();
    let mut out = Vec::new();
    let mut i = 0;
    while i < w.len() {
        // "in two hours"
        if let Some((span, n, precise)) = relative_at(&w, i) {
            if let Ok(z) = now.checked_add(span) {
                let (value, kind) = if precise {
                    (iso(&z), "datetime")
                } else {
                    (z.date().to_string(), "date")
                };
                out.push(When {
                    text: w[i..i + n].join(" "),
                    value,
                    kind,
                });
                i += n;
                continue;
            }
        }
        // A day, optionally followed by a time: "tomorrow at nine", "monday 3 pm".
        if let Some((date, n, evening)) = day_at(&w, i, today) {
            let mut used = n;
            let mut time = None;
            let skip = usize::from(w.get(i + n).map(String::as_str) == Some("at"));
            if let Some((h, m, mer, k)) = time_at(&w, i + n + skip) {
                let explicit = skip == 1 || mer.is_some() || k > 1;
                if explicit {
                    let mer = mer.or(evening.then_some(Meridiem::Pm));
                    time = Some((hour24(h, mer), m));
                    used += skip + k;
                }
            }
            out.push(resolve(&w[i..i + used], date, time, tz));
            i += used;
            continue;
        }
        // A time, optionally followed by a day: "at 3 pm tomorrow", "at nine".
        let skip = usize::from(w[i] == "at");
        if let Some((h, m, mer, k)) = time_at(&w, i + skip) {
            let spoken_as_time = skip == 1 || mer.is_some() || w[i].contains(':');
            if spoken_as_time {
                let mut used = skip + k;
                let tail_day = day_at(&w, i + used, today);
                let evening = tail_day.is_some_and(|d| d.2)
                    || w.get(i + used).is_some_and(|x| x == "tonight");
                let mer = mer.or(evening.then_some(Meridiem::Pm));
                let hm = (hour24(h, mer), m);
                let when = match tail_day {
                    Some((date, n, _)) => {
                        used += n;
                        resolve(&w[i..i + used], date, Some(hm), tz)
                    }
                    None => next_occurrence(&w[i..i + used], &now, hm, tz),
                };
                out.push(when);
                i += used;
                continue;
            }
        }
        i += 1;
    }
    out
}

fn resolve(words: &[String], date: Date, time: Option<(i8, i8)>, tz: &TimeZone) -> When {
    let text = words.join(" ");
    match time.and_then(|(h, m)| date.at(h, m, 0, 0).to_zoned(tz.clone()).ok()) {
        Some(z) => When {
            text,
            value: iso(&z),
            kind: "datetime",
        },
        None => When {
            text,
            value: date.to_string(),
            kind: "date",
        },
    }
}

fn next_occurrence(words: &[String], now: &Zoned, (h, m): (i8, i8), tz: &TimeZone) -> When {
    let today = now.date();
    let mut date = today;
    if let Ok(z) = today.at(h, m, 0, 0).to_zoned(tz.clone()) {
        if z.timestamp() <= now.timestamp() {
            date = today.tomorrow().unwrap_or(today);
        }
    }
    resolve(words, date, Some((h, m)), tz)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Thursday 2026-11-19 14:30:00 in New York (19:30 UTC).
    fn now() -> Timestamp {
        "2026-11-19T19:30:00Z".parse().unwrap()
    }

    fn ny() -> TimeZone {
        TimeZone::get("America/New_York").unwrap()
    }

    fn values(text: &str) -> Vec<(String, String)> {
        find(text, now(), &ny())
            .into_iter()
            .map(|w| (w.text, w.value))
            .collect()
    }

    fn one(text: &str) -> String {
        let v = values(text);
        assert_eq!(v.len(), 1, "{text}: {v:?}");
        v[0].1.clone()
    }

    #[test]
    fn relative_days_with_times() {
        assert_eq!(
            one("Can you call me tomorrow at nine?"),
            "2026-11-20T09:00:00-05:00"
        );
        assert_eq!(one("tomorrow at 9:30 a.m."), "2026-11-20T09:30:00-05:00");
        assert_eq!(one("Tomorrow at 3 p.m. works"), "2026-11-20T15:00:00-05:00");
        assert_eq!(one("next Monday at 3 pm"), "2026-11-23T15:00:00-05:00");
        assert_eq!(one("on Friday at ten"), "2026-11-20T10:00:00-05:00");
        // Thursday said on a Thursday is a week ahead.
        assert_eq!(one("thursday at 2"), "2026-11-26T14:00:00-05:00");
        assert_eq!(
            one("the day after tomorrow at noon"),
            "2026-11-21T12:00:00-05:00"
        );
        assert_eq!(one("tonight at eight"), "2026-11-19T20:00:00-05:00");
        assert_eq!(
            one("tomorrow at half past four"),
            "2026-11-20T16:30:00-05:00"
        );
        assert_eq!(
            one("tomorrow at nine thirty in the morning"),
            "2026-11-20T09:30:00-05:00"
        );
        assert_eq!(
            one("Monday at seven in the evening"),
            "2026-11-23T19:00:00-05:00"
        );
    }

    #[test]
    fn days_alone() {
        assert_eq!(one("I'll come in tomorrow."), "2026-11-20");
        assert_eq!(one("maybe next Wednesday"), "2026-11-25");
        assert_eq!(one("on March 5th"), "2027-03-05");
        assert_eq!(one("December 1"), "2026-12-01");
        assert_eq!(one("the 3rd of January 2028"), "2028-01-03");
        assert_eq!(one("today"), "2026-11-19");
    }

    #[test]
    fn times_alone_and_after_days() {
        // 4 pm is still ahead today; 9 (am) has passed, so it is tomorrow.
        assert_eq!(one("call me at 4"), "2026-11-19T16:00:00-05:00");
        assert_eq!(one("call me at nine"), "2026-11-20T09:00:00-05:00");
        assert_eq!(one("around 11:15"), "2026-11-20T11:15:00-05:00");
        assert_eq!(one("at 3 pm tomorrow"), "2026-11-20T15:00:00-05:00");
        assert_eq!(one("at noon on Saturday"), "2026-11-21T12:00:00-05:00");
        assert_eq!(one("at 7 o'clock"), "2026-11-20T07:00:00-05:00");
        assert_eq!(one("at quarter to one"), "2026-11-20T12:45:00-05:00");
    }

    #[test]
    fn in_some_time() {
        assert_eq!(one("in two hours"), "2026-11-19T16:30:00-05:00");
        assert_eq!(one("in 30 minutes"), "2026-11-19T15:00:00-05:00");
        assert_eq!(one("in half an hour"), "2026-11-19T15:00:00-05:00");
        assert_eq!(one("in an hour"), "2026-11-19T15:30:00-05:00");
        assert_eq!(one("in a couple of days"), "2026-11-21");
        assert_eq!(one("in three weeks"), "2026-12-10");
    }

    #[test]
    fn daylight_saving_is_respected() {
        // 2027-03-14 is the US spring-forward day: 9 am there is UTC-4.
        let before: Timestamp = "2027-03-13T15:00:00Z".parse().unwrap();
        let w = find("tomorrow at nine", before, &ny());
        assert_eq!(w[0].value, "2027-03-14T09:00:00-04:00");
    }

    #[test]
    fn fixed_offsets_and_utc() {
        let w = find("tomorrow at 9", now(), &TimeZone::UTC);
        assert_eq!(w[0].value, "2026-11-20T09:00:00+00:00");
        let plus2 = TimeZone::fixed(jiff::tz::offset(2));
        let w = find("in two hours", now(), &plus2);
        assert_eq!(w[0].value, "2026-11-19T23:30:00+02:00");
    }

    #[test]
    fn words_that_are_not_times() {
        for text in [
            "I have two kids",
            "one of them is nine",
            "may I ask something",
            "I was in a meeting",
            "the next thing",
            "number 5 please",
        ] {
            assert_eq!(values(text), vec![], "{text}");
        }
    }

    #[test]
    fn text_names_the_words() {
        let w = find("Please, tomorrow at 9 a.m., thanks", now(), &ny());
        assert_eq!(w[0].text, "tomorrow at 9 am");
        assert_eq!(w[0].kind, "datetime");
        let w = find("next Monday", now(), &ny());
        assert_eq!(w[0].kind, "date");
        assert_eq!(w[0].text, "next monday");
    }
}
