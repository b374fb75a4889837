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
