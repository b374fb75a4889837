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
    /// Path prefixes, as `paths` at the top level.
    pub paths: Vec<String>,
}

impl Matcher {
    /// `host` is the request's host without port, lowercase ([`host_only`]); `None` when the
    /// request had none, which only an any-host matcher accepts.
    pub fn matches(&self, host: Option<&str>, path: &str) -> bool {
        let host_ok = self.hosts.is_empty()
            || host.is_some_and(|h| self.hosts.iter().any(|p| host_matches(p, h)));
        let path_ok = self.paths.is_empty() || self.paths.iter().any(|p| path.starts_with(p));
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
