//! Who may read call data, for the API and the dashboard alike: with `api_token`, a bearer token
//! or a dashboard session cookie; without it, loopback clients only, and only those that did not
//! come through a proxy. Which `Host` names are answered at all (`http.allowed_hosts`, against
//! DNS rebinding). The session store (random ids from the OS RNG, bounded in number and time)
//! and the cookie parsing live here too, pure, so the rules are tested without sockets.

use super::error::ApiError;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap};
use axum::middleware::Next;
use axum::response::Response;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The session cookie's name.
pub const COOKIE: &str = "tg_session";

/// Bytes of randomness in a session id (hex-encoded in the cookie).
const ID_BYTES: usize = 32;

/// What a request carries that may grant access.
#[derive(Debug, Clone, Copy, Default)]
pub struct Credentials<'a> {
    /// The `Authorization` header's value.
    pub authorization: Option<&'a str>,
    /// The `tg_session` cookie's value.
    pub session: Option<&'a str>,
    /// The peer's address, as the server accepted the connection.
    pub peer: Option<IpAddr>,
    /// The request carries a proxy's forwarding headers: its peer address is the proxy's.
    pub forwarded: bool,
}

/// Headers a proxy adds when it forwards a request (Envoy, nginx, a service mesh's sidecar):
/// the peer is then the proxy, whoever the client is.
const FORWARDING_HEADERS: [&str; 7] = [
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-real-ip",
    "x-envoy-external-address",
    "via",
];

/// The source address Istio's sidecar uses for the traffic it passes to the application: a
/// loopback address, for any client.
const ISTIO_INBOUND: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 6));

/// A peer on this machine that is not a proxy's leg for someone else.
fn local_client(peer: IpAddr, forwarded: bool) -> bool {
    peer.is_loopback() && peer != ISTIO_INBOUND && !forwarded
}

/// The answer of the access rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// A token is configured and the request carries neither it nor a live session.
    Unauthorized,
    /// No token is configured and the client is not on loopback.
    LoopbackOnly,
}

/// The rule itself: `token` is the configured `api_token`.
pub fn decide(token: Option<&str>, creds: &Credentials<'_>, sessions: &Sessions) -> Decision {
    match token {
        Some(token) => {
            let bearer = creds
                .authorization
                .and_then(|v| v.strip_prefix("Bearer "))
                .unwrap_or_default();
            let by_token = twiml::signature::constant_time_eq(bearer.as_bytes(), token.as_bytes());
            if by_token || creds.session.is_some_and(|id| sessions.is_live(id)) {
                Decision::Allow
            } else {
                Decision::Unauthorized
            }
        }
        None if creds
            .peer
            .is_some_and(|ip| local_client(ip, creds.forwarded)) =>
        {
            Decision::Allow
        }
        None => Decision::LoopbackOnly,
    }
}

/// The value of cookie `name` in a `Cookie` header (`a=1; b=2`); the first one wins.
pub fn cookie_value<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|pair| {
        let (k, v) = pair.trim().split_once('=')?;
        (k.trim() == name).then(|| v.trim().trim_matches('"'))
    })
}

/// The `Set-Cookie` value that starts a session.
pub fn session_cookie(id: &str, ttl: Duration) -> String {
    format!(
        "{COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}",
        ttl.as_secs()
    )
}

/// The `Set-Cookie` value that ends one.
pub fn expired_cookie() -> String {
    format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0")
}

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("the OS random number generator failed: {0}")]
    Rng(String),
}

/// Live sessions: id -> expiry. At most `max` at once (one more sign-in ends the one closest to
/// expiring), each for `ttl`.
pub struct Sessions {
    ttl: Duration,
    max: usize,
    live: Mutex<HashMap<String, Instant>>,
}

impl Sessions {
    pub fn new(ttl: Duration, max: usize) -> Sessions {
        Sessions {
            ttl,
            max: max.max(1),
            live: Mutex::new(HashMap::new()),
        }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// A new session id, from the OS RNG.
    pub fn start(&self) -> Result<String, SessionError> {
        self.start_at(Instant::now())
    }

    pub fn start_at(&self, now: Instant) -> Result<String, SessionError> {
        let id = crate::random::hex(ID_BYTES).map_err(|e| SessionError::Rng(e.to_string()))?;
        let mut live = self.lock();
        live.retain(|_, expires| *expires > now);
        while live.len() >= self.max {
            let Some(oldest) = live
                .iter()
                .min_by_key(|(_, expires)| **expires)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            live.remove(&oldest);
        }
        live.insert(id.clone(), now + self.ttl);
        Ok(id)
    }

    pub fn is_live(&self, id: &str) -> bool {
        self.is_live_at(id, Instant::now())
    }

    pub fn is_live_at(&self, id: &str, now: Instant) -> bool {
        // Only well-formed ids are looked up: anything else is not ours.
        if id.len() != ID_BYTES * 2 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return false;
        }
        let mut live = self.lock();
        match live.get(id) {
            Some(expires) if *expires > now => true,
            Some(_) => {
                live.remove(id);
                false
            }
            None => false,
        }
    }

    pub fn end(&self, id: &str) {
        self.lock().remove(id);
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Instant>> {
        // A panic while holding the lock cannot leave the map half-updated: every update is one
        // call on it. Carry on with what is there.
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The `Host` names the API and the dashboard answer for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowedHosts {
    Any,
    /// Lowercase names, without port.
    Only(Vec<String>),
}

impl AllowedHosts {
    /// `http.allowed_hosts` (comma-separated); empty means any with a token, loopback names
    /// without one (the only names a tokenless, loopback-only API is reached by honestly).
    pub fn parse(list: &str, token: bool) -> AllowedHosts {
        let names: Vec<String> = list
            .split(',')
            .map(|n| n.trim().trim_end_matches('.').to_ascii_lowercase())
            .filter(|n| !n.is_empty())
            .collect();
        match (names.is_empty(), token) {
            (false, _) => AllowedHosts::Only(names),
            (true, true) => AllowedHosts::Any,
            (true, false) => AllowedHosts::Only(
                ["localhost", "127.0.0.1", "[::1]"]
                    .map(str::to_owned)
                    .to_vec(),
            ),
        }
    }

    /// Whether a request with this `Host` header is answered. A request without one (HTTP/1.0,
    /// a probe) is: browsers, which DNS rebinding drives, always send it.
    pub fn allows(&self, host: Option<&str>) -> bool {
        match (self, host) {
            (AllowedHosts::Only(names), Some(host)) => {
                let name = host_name(host);
                names.contains(&name)
            }
            _ => true,
        }
    }
}

/// A `Host` header's name: lowercase, without its port or a trailing dot.
fn host_name(host: &str) -> String {
    let host = host.trim();
    let name = match host.strip_prefix('[') {
        Some(rest) => rest
            .split_once(']')
            .map_or(host, |(v6, _)| &host[..v6.len() + 2]),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// The API's access rule with its inputs: the configured token and the live sessions.
pub struct Access {
    pub token: Option<String>,
    pub sessions: Sessions,
    pub hosts: AllowedHosts,
}

impl Access {
    /// `api_token`, and a session store sized by `dashboard.*`.
    pub fn from_config(config: &crate::config::Config) -> Access {
        Access {
            hosts: AllowedHosts::parse(&config.http.allowed_hosts, config.api_token.is_some()),
            token: config.api_token.clone(),
            sessions: Sessions::new(
                Duration::from_secs(config.dashboard.session_ttl_s),
                config.dashboard.max_sessions,
            ),
        }
    }

    pub fn decide(&self, headers: &HeaderMap, peer: Option<SocketAddr>) -> Decision {
        let session = headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|v| cookie_value(v, COOKIE));
        let creds = Credentials {
            authorization: headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok()),
            session,
            peer: peer.map(|p| p.ip()),
            forwarded: FORWARDING_HEADERS.iter().any(|h| headers.contains_key(*h)),
        };
        decide(self.token.as_deref(), &creds, &self.sessions)
    }

    pub fn decide_request(&self, request: &Request) -> Decision {
        let peer = request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0);
        self.decide(request.headers(), peer)
    }

    fn host_allowed(&self, request: &Request) -> Result<(), ApiError> {
        let host = request
            .headers()
            .get(header::HOST)
            .and_then(|v| v.to_str().ok());
        if self.hosts.allows(host) {
            return Ok(());
        }
        tracing::warn!(host = host.unwrap_or_default(), "host_refused");
        Err(ApiError::HostNotAllowed)
    }
}

/// The dashboard's pages: only for an allowed `Host`.
pub async fn require_allowed_host(
    State(access): State<Arc<Access>>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    access.host_allowed(&request)?;
    Ok(next.run(request).await)
}

/// `/api/*`: an allowed `Host`, then with a token configured, `Authorization: Bearer <token>`
/// (constant-time compare) or a live dashboard session cookie; without one, loopback clients
/// that did not come through a proxy.
pub async fn require_api_access(
    State(access): State<Arc<Access>>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    access.host_allowed(&request)?;
    match access.decide_request(&request) {
        Decision::Allow => Ok(next.run(request).await),
        Decision::Unauthorized => Err(ApiError::Unauthorized),
        Decision::LoopbackOnly => Err(ApiError::LoopbackOnly),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const TOKEN: &str = "0123456789abcdef0123";

    fn sessions() -> Sessions {
        Sessions::new(Duration::from_secs(60), 3)
    }

    #[test]
    fn sessions_are_random_hex_and_expire() {
        let s = sessions();
        let t0 = Instant::now();
        let a = s.start_at(t0).unwrap();
        let b = s.start_at(t0).unwrap();
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
        assert!(s.is_live_at(&a, t0 + Duration::from_secs(59)));
        assert!(!s.is_live_at(&a, t0 + Duration::from_secs(60)));
        // An expired session is forgotten, not kept.
        assert_eq!(s.len(), 1);
        s.end(&b);
        assert!(!s.is_live_at(&b, t0));
        assert!(s.is_empty());
    }

    #[test]
    fn sessions_are_bounded_the_oldest_goes_first() {
        let s = sessions();
        let t0 = Instant::now();
        let ids: Vec<String> = (0..5)
            .map(|i| s.start_at(t0 + Duration::from_secs(i)).unwrap())
            .collect();
        assert_eq!(s.len(), 3);
        let now = t0 + Duration::from_secs(5);
        let live: Vec<bool> = ids.iter().map(|id| s.is_live_at(id, now)).collect();
        assert_eq!(live, [false, false, true, true, true]);
        // Expired ones make room before anything live is ended.
        let later = t0 + Duration::from_secs(62);
        let fresh = s.start_at(later).unwrap();
        assert!(s.is_live_at(&fresh, later));
        assert!(s.is_live_at(&ids[4], later));
        assert!(!s.is_live_at(&ids[2], later));
    }

    #[test]
    fn malformed_ids_are_never_live() {
        let s = sessions();
        let id = s.start().unwrap();
        assert!(s.is_live(&id));
        for bad in ["", "x", &id[..63], &format!("{id}0"), &id.replace('a', "g")] {
            if bad != id {
                assert!(!s.is_live(bad), "{bad}");
            }
        }
    }

    #[test]
    fn cookies_are_parsed_by_name() {
        assert_eq!(cookie_value("tg_session=abc", COOKIE), Some("abc"));
        assert_eq!(
            cookie_value("a=1; tg_session=abc; b=2", COOKIE),
            Some("abc")
        );
        assert_eq!(cookie_value("a=1;tg_session=\"abc\"", COOKIE), Some("abc"));
        assert_eq!(cookie_value("xtg_session=abc; b=2", COOKIE), None);
        assert_eq!(cookie_value("tg_session", COOKIE), None);
        assert_eq!(
            cookie_value("tg_session=first; tg_session=second", COOKIE),
            Some("first")
        );
        assert_eq!(
            session_cookie("ab", Duration::from_secs(3600)),
            "tg_session=ab; HttpOnly; SameSite=Strict; Path=/; Max-Age=3600"
        );
        assert_eq!(
            expired_cookie(),
            "tg_session=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"
        );
    }

    #[test]
    fn with_a_token_the_bearer_or_a_live_session_is_needed() {
        let s = sessions();
        let id = s.start().unwrap();
        let bearer = format!("Bearer {TOKEN}");
        let remote = Some(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7)));
        let cases: [(Option<&str>, Option<&str>, Decision); 7] = [
            (Some(&bearer), None, Decision::Allow),
            (None, Some(&id), Decision::Allow),
            (None, None, Decision::Unauthorized),
            (
                Some("Bearer 0123456789abcdef012"),
                None,
                Decision::Unauthorized,
            ),
            (Some(TOKEN), None, Decision::Unauthorized),
            (None, Some(&"0".repeat(64)), Decision::Unauthorized),
            (Some("Bearer nope"), Some(&id), Decision::Allow),
        ];
        for (authorization, session, want) in cases {
            let creds = Credentials {
                authorization,
                session,
                peer: remote,
                forwarded: false,
            };
            assert_eq!(decide(Some(TOKEN), &creds, &s), want, "{creds:?}");
        }
        // Loopback is no way around the token.
        let local = Credentials {
            peer: Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            ..Default::default()
        };
        assert_eq!(decide(Some(TOKEN), &local, &s), Decision::Unauthorized);
        s.end(&id);
        let ended = Credentials {
            session: Some(&id),
            ..Default::default()
        };
        assert_eq!(decide(Some(TOKEN), &ended, &s), Decision::Unauthorized);
    }

    #[test]
    fn without_a_token_a_proxied_or_sidecar_peer_is_not_local() {
        let s = sessions();
        let local = IpAddr::V4(Ipv4Addr::LOCALHOST);
        for (peer, forwarded, want) in [
            (local, false, Decision::Allow),
            (local, true, Decision::LoopbackOnly),
            (ISTIO_INBOUND, false, Decision::LoopbackOnly),
            (
                IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)),
                false,
                Decision::Allow,
            ),
        ] {
            let creds = Credentials {
                peer: Some(peer),
                forwarded,
                ..Default::default()
            };
            assert_eq!(decide(None, &creds, &s), want, "{peer} {forwarded}");
        }
    }

    #[test]
    fn hosts_are_matched_by_name_without_port_or_case() {
        let loopback = AllowedHosts::parse("", false);
        for (host, want) in [
            (Some("localhost:7000"), true),
            (Some("LOCALHOST"), true),
            (Some("127.0.0.1:7000"), true),
            (Some("[::1]:7000"), true),
            (Some("[::1]"), true),
            (Some("rebound.example.com:7000"), false),
            (Some("localhost.evil.example"), false),
            (Some("127.0.0.1.nip.io"), false),
            (None, true),
        ] {
            assert_eq!(loopback.allows(host), want, "{host:?}");
        }
        assert_eq!(AllowedHosts::parse(" ", true), AllowedHosts::Any);
        let listed = AllowedHosts::parse("Voice.Example.com., localhost", true);
        assert_eq!(
            listed,
            AllowedHosts::Only(vec!["voice.example.com".into(), "localhost".into()])
        );
        assert!(listed.allows(Some("voice.example.com:443")));
        assert!(listed.allows(Some("voice.example.com.")));
        assert!(!listed.allows(Some("other.example.com")));
        assert!(!listed.allows(Some("127.0.0.1")));
    }

    #[test]
    fn without_a_token_loopback_only_and_cookies_do_not_help() {
        let s = sessions();
        let id = s.start().unwrap();
        for (peer, want) in [
            (Some(IpAddr::V4(Ipv4Addr::LOCALHOST)), Decision::Allow),
            (Some(IpAddr::V6(Ipv6Addr::LOCALHOST)), Decision::Allow),
            (
                Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))),
                Decision::LoopbackOnly,
            ),
            (None, Decision::LoopbackOnly),
        ] {
            let creds = Credentials {
                authorization: Some("Bearer x"),
                session: Some(&id),
                peer,
                forwarded: false,
            };
            assert_eq!(decide(None, &creds, &s), want, "{peer:?}");
        }
    }
}
