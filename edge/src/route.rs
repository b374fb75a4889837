//! What a request is to the filter, from its headers alone: the values read and the ways an
//! exchange can go. A leaf shared by `decide` (which routes) and `signature` (which checks the
//! routed request).

/// What the request-header callback learned; enough to route the exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestInfo {
    pub method: String,
    /// `:path` as received, query included.
    pub path: String,
    pub upgrade: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestRoute {
    /// A WebSocket upgrade on `media_path`: never buffered, never inspected.
    MediaUpgrade,
    /// A plain request on `media_path`: answered 426 by the filter.
    MediaNotUpgrade,
    /// The response is a candidate for inspection.
    Inspect,
    /// Not ours (HEAD, or a path outside `paths`): everything passes untouched.
    Skip(&'static str),
}

/// The path without its query string or fragment.
pub fn path_only(path: &str) -> &str {
    path.split(['?', '#']).next().unwrap_or(path)
}

/// True when `path` (no query) falls under one of `prefixes` the way a backend would route it:
/// its raw or its normalised form ([`normalize_path`]) starts with the prefix, ASCII case ignored.
/// Express routes case-insensitively by default, so `/WEBHOOK/voice` reaches a `/webhook/voice`
/// handler: signed and inspected paths must cover it, and `/x/../webhook/` too.
pub fn under_any(path: &str, prefixes: &[String]) -> bool {
    let under = |p: &str| {
        prefixes
            .iter()
            .any(|prefix| starts_with_ignore_case(p, prefix))
    };
    under(path) || under(&normalize_path(path))
}

fn starts_with_ignore_case(s: &str, prefix: &str) -> bool {
    s.as_bytes()
        .get(..prefix.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(prefix.as_bytes()))
}

/// `path` with percent-escapes decoded, `\` read as `/`, `;params` dropped from segments,
/// repeated slashes merged and dot segments resolved: how a lenient backend may read it.
pub fn normalize_path(path: &str) -> String {
    let decoded = percent_decode(path);
    let mut out: Vec<&str> = Vec::new();
    for seg in decoded.split(['/', '\\']) {
        // Servlet-style `;params` are dropped from a segment by some servers.
        let seg = seg.split(';').next().unwrap_or_default();
        match seg {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    let mut joined = format!("/{}", out.join("/"));
    if decoded.ends_with(['/', '\\']) && !out.is_empty() {
        joined.push('/');
    }
    joined
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let hex = bytes
            .get(i + 1..i + 3)
            .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b, hex) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub fn is_websocket_upgrade(upgrade: Option<&str>) -> bool {
    upgrade.is_some_and(|u| {
        u.split(',')
            .any(|t| t.trim().eq_ignore_ascii_case("websocket"))
    })
}

// === rules ===

/// Where a rule applies: request hosts and path prefixes. An empty list matches anything; a
/// request must match one host and one path prefix. The configuration validates the patterns
/// (`syntax::valid_host_pattern`, `syntax::valid_path`) before building one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Matcher {
    /// Lowercase; `*.example.com` matches any name under `example.com` (not the apex itself).
    pub hosts: Vec<String>,
    /// Path prefixes, as `paths` at the top level (matched by [`under_any`]).
    pub paths: Vec<String>,
}

impl Matcher {
    /// `host` is the request's host without port, lowercase ([`host_only`]); `None` when the
    /// request had none, which only an any-host matcher accepts.
    pub fn matches(&self, host: Option<&str>, path: &str) -> bool {
        let host_ok = self.hosts.is_empty()
            || host.is_some_and(|h| self.hosts.iter().any(|p| host_matches(p, h)));
        let path_ok = self.paths.is_empty() || under_any(path, &self.paths);
        host_ok && path_ok
    }
}

fn host_matches(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix('*') {
        // `*.example.com`: the rest starts with the dot, so `example.com` itself is no match.
        Some(suffix) => host.len() > suffix.len() && host.ends_with(suffix),
        None => pattern == host,
    }
}

/// The host of an `:authority` (or `host`) value: port dropped, lowercase. IPv6 literals keep
/// their brackets (`[::1]`).
pub fn host_only(authority: &str) -> String {
    let a = authority.trim();
    let host = if a.starts_with('[') {
        a.split_inclusive(']').next().unwrap_or(a)
    } else {
        a.split(':').next().unwrap_or(a)
    };
    host.trim_end_matches('.').to_ascii_lowercase()
}

/// The index of the first matcher that accepts the request: rules are ordered and the first
/// match wins, so a narrow rule must come before a broad one.
pub fn first_match<'a>(
    matchers: impl IntoIterator<Item = &'a Matcher>,
    host: Option<&str>,
    path: &str,
) -> Option<usize> {
    let path = path_only(path);
    matchers.into_iter().position(|m| m.matches(host, path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(hosts: &[&str], paths: &[&str]) -> Matcher {
        Matcher {
            hosts: hosts.iter().map(|s| s.to_string()).collect(),
            paths: paths.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn first_match_wins_in_order() {
        let rules = [
            m(&["canary.example.com"], &["/voice/"]),
            m(&[], &["/voice/"]),
            m(&["*.example.com"], &[]),
        ];
        let pick = |h: Option<&str>, p: &str| first_match(&rules, h, p);
        // Both the first and the second accept it: the first wins.
        assert_eq!(pick(Some("canary.example.com"), "/voice/in"), Some(0));
        // The second is broader and comes before the third.
        assert_eq!(pick(Some("a.example.com"), "/voice/in"), Some(1));
        assert_eq!(pick(Some("a.example.com"), "/other"), Some(2));
        assert_eq!(pick(Some("elsewhere.net"), "/other"), None);
        // The query is not part of the path.
        assert_eq!(pick(Some("elsewhere.net"), "/voice/x?a=/b"), Some(1));
        assert_eq!(pick(Some("elsewhere.net"), "/x?q=/voice/"), None);
    }

    #[test]
    fn the_same_rules_reversed_pick_the_broad_one() {
        let rules = [
            m(&[], &["/voice/"]),
            m(&["canary.example.com"], &["/voice/"]),
        ];
        assert_eq!(
            first_match(&rules, Some("canary.example.com"), "/voice/in"),
            Some(0)
        );
    }

    #[test]
    fn hosts_and_paths_must_both_match() {
        let rule = m(&["a.example.com"], &["/voice/"]);
        assert!(rule.matches(Some("a.example.com"), "/voice/1"));
        assert!(!rule.matches(Some("a.example.com"), "/voic"));
        assert!(!rule.matches(Some("b.example.com"), "/voice/1"));
        assert!(!rule.matches(None, "/voice/1"));
        // Empty lists match anything, a missing host included.
        assert!(m(&[], &["/voice/"]).matches(None, "/voice/1"));
        assert!(m(&["a.example.com"], &[]).matches(Some("a.example.com"), "/"));
    }

    #[test]
    fn paths_match_as_backends_route_them() {
        let prefixes = vec!["/webhook/".to_string()];
        for path in [
            "/webhook/voice",
            "/WEBHOOK/voice",
            "/WebHook/voice",
            "/x/../webhook/voice",
            "//webhook/voice",
            "/%77ebhook/voice",
            "/%57EBHOOK/voice",
        ] {
            assert!(under_any(path, &prefixes), "{path}");
        }
        for path in ["/webhooks", "/web/hook/", "/", "/other/webhook/"] {
            assert!(!under_any(path, &prefixes), "{path}");
        }
        assert!(m(&[], &["/Voice/"]).matches(None, "/voice/in"));
    }

    #[test]
    fn wildcards_match_subdomains_only() {
        let rule = m(&["*.example.com"], &[]);
        assert!(rule.matches(Some("a.example.com"), "/"));
        assert!(rule.matches(Some("a.b.example.com"), "/"));
        assert!(!rule.matches(Some("example.com"), "/"));
        assert!(!rule.matches(Some("badexample.com"), "/"));
    }

    #[test]
    fn host_only_drops_port_case_and_trailing_dot() {
        assert_eq!(host_only("Voice.Example.com:8443"), "voice.example.com");
        assert_eq!(host_only("voice.example.com."), "voice.example.com");
        assert_eq!(host_only("[::1]:8080"), "[::1]");
        assert_eq!(host_only("127.0.0.1"), "127.0.0.1");
    }
}
