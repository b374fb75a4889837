//! The text a signature is computed over: form bodies and query strings decoded, and the URL
//! variants (port removed or added) Twilio's validator accepts, split the way Python's `urlsplit`
//! splits them.

/// Decode an `application/x-www-form-urlencoded` body (or a query string) into name/value pairs,
/// in order, repeats kept. `+` is a space, `%XX` is a byte, a malformed escape stays literal,
/// invalid UTF-8 becomes U+FFFD, a pair without `=` has an empty value, empty pairs are skipped.
/// Never fails: what Twilio signed is what Twilio sent, and a mangled body just fails to match.
pub fn parse_form(body: &[u8]) -> Vec<(String, String)> {
    body.split(|&b| b == b'&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = match pair.iter().position(|&b| b == b'=') {
                Some(eq) => {
                    let (name, rest) = pair.split_at(eq);
                    (name, rest.get(1..).unwrap_or_default())
                }
                None => (pair, &[][..]),
            };
            (percent_decode(name), percent_decode(value))
        })
        .collect()
}

fn percent_decode(input: &[u8]) -> String {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while let Some(&b) = input.get(i) {
        match b {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => {
                let hi = input.get(i + 1).and_then(|&c| hex_value(c));
                let lo = input.get(i + 2).and_then(|&c| hex_value(c));
                if let (Some(hi), Some(lo)) = (hi, lo) {
                    out.push(hi << 4 | lo);
                    i += 3;
                } else {
                    out.push(b'%');
                    i += 1;
                }
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    match String::from_utf8(out) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    }
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// The first non-empty value of query parameter `name` in `url`, decoded.
pub(super) fn query_value(url: &str, name: &str) -> Option<String> {
    let query = split_url(url).query;
    parse_form(query.as_bytes())
        .into_iter()
        .find(|(k, v)| k == name && !v.is_empty())
        .map(|(_, v)| v)
}

/// A URL split the way Python's `urllib.parse.urlsplit` splits it, which is what Twilio's
/// validator normalises through.
#[derive(Debug, Clone, PartialEq, Eq)]
struct UrlParts {
    scheme: String,
    netloc: Option<String>,
    path: String,
    query: String,
    fragment: String,
}

/// The URLs a signature is checked against: the URL with its port removed, with the scheme's
/// default port added, and exactly as given, without duplicates.
pub fn url_variants(url: &str) -> Vec<String> {
    let parts = split_url(url);
    let mut out: Vec<String> = Vec::with_capacity(3);
    let mut push = |u: String| {
        if !out.contains(&u) {
            out.push(u);
        }
    };
    match parts.netloc.as_deref().map(split_port) {
        Some(HostPort::Port { host, .. }) => {
            push(join_url(&parts, Some(&host)));
            push(join_url(&parts, parts.netloc.as_deref()));
        }
        Some(HostPort::NoPort) => {
            push(join_url(&parts, parts.netloc.as_deref()));
            let port = default_port(&parts.scheme);
            let netloc = format!("{}:{port}", parts.netloc.as_deref().unwrap_or(""));
            push(join_url(&parts, Some(&netloc)));
        }
        Some(HostPort::Invalid) | None => push(join_url(&parts, parts.netloc.as_deref())),
    }
    push(url.to_owned());
    out
}

fn default_port(scheme: &str) -> u16 {
    match scheme {
        "https" | "wss" => 443,
        _ => 80,
    }
}

enum HostPort {
    /// `host` is the netloc without its `:port` (userinfo kept).
    Port {
        host: String,
    },
    NoPort,
    /// A port that is not a number in 1..=65535: no variants are made.
    Invalid,
}

fn split_port(netloc: &str) -> HostPort {
    let (userinfo, hostinfo) = match netloc.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, netloc),
    };
    // An IPv6 literal holds colons of its own: the port comes after the `]`.
    let search_from = hostinfo.find(']').unwrap_or(0);
    let colon = hostinfo
        .get(search_from..)
        .and_then(|tail| tail.find(':'))
        .map(|i| i + search_from);
    let Some(colon) = colon else {
        return HostPort::NoPort;
    };
    let (host, port) = hostinfo.split_at(colon);
    let port = port.get(1..).unwrap_or("");
    if port.is_empty() {
        return HostPort::NoPort;
    }
    let valid =
        port.bytes().all(|b| b.is_ascii_digit()) && matches!(port.parse::<u32>(), Ok(1..=65535));
    if !valid {
        return HostPort::Invalid;
    }
    let host = match userinfo {
        Some(u) => format!("{u}@{host}"),
        None => host.to_owned(),
    };
    HostPort::Port { host }
}

fn is_c0_or_space(c: char) -> bool {
    c <= ' '
}

fn split_url(url: &str) -> UrlParts {
    let cleaned: String = url
        .trim_start_matches(is_c0_or_space)
        .chars()
        .filter(|c| !matches!(c, '\t' | '\r' | '\n'))
        .collect();
    let mut rest = cleaned.as_str();

    let mut scheme = String::new();
    if let Some((candidate, after)) = rest.split_once(':') {
        let mut chars = candidate.chars();
        let starts_alpha = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
        let all_scheme_chars = candidate
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
        if starts_alpha && all_scheme_chars {
            scheme = candidate.to_ascii_lowercase();
            rest = after;
        }
    }

    let mut netloc = None;
    if let Some(after) = rest.strip_prefix("//") {
        let end = after.find(['/', '?', '#']).unwrap_or(after.len());
        let (n, r) = after.split_at(end);
        netloc = Some(n.to_owned());
        rest = r;
    }
    let (rest, fragment) = rest.split_once('#').unwrap_or((rest, ""));
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    UrlParts {
        scheme,
        netloc,
        path: path.to_owned(),
        query: query.to_owned(),
        fragment: fragment.to_owned(),
    }
}

/// Put a split URL back together as Python's `urlunsplit` does (an empty `?` or `#` is dropped).
fn join_url(parts: &UrlParts, netloc: Option<&str>) -> String {
    let mut url = String::new();
    let netloc_scheme = matches!(
        parts.scheme.as_str(),
        "http" | "https" | "ws" | "wss" | "ftp" | "file" | ""
    ) && !parts.scheme.is_empty();
    let has_netloc = netloc.is_some_and(|n| !n.is_empty());
    if !parts.scheme.is_empty() {
        url.push_str(&parts.scheme);
        url.push(':');
    }
    if has_netloc || (netloc_scheme && !parts.path.starts_with("//")) {
        url.push_str("//");
        url.push_str(netloc.unwrap_or(""));
        if !parts.path.is_empty() && !parts.path.starts_with('/') {
            url.push('/');
        }
    }
    url.push_str(&parts.path);
    if !parts.query.is_empty() {
        url.push('?');
        url.push_str(&parts.query);
    }
    if !parts.fragment.is_empty() {
        url.push('#');
        url.push_str(&parts.fragment);
    }
    url
}
