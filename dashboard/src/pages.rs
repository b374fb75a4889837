//! The dashboard's pages and assets, and signing in and out. Pages apply the API's rule: a
//! request without access gets the sign-in page (401) when a token is configured, or a plain
//! refusal (403) off loopback when none is. Assets carry no data and are open. Every answer
//! carries a strict Content-Security-Policy: the pages load only their own scripts and styles.

use crate::host::{AccessRule, Decision};
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use media::sid::CallSid;
use std::sync::Arc;

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   media-src 'self'; connect-src 'self'; form-action 'self'; base-uri 'none'; \
                   frame-ancestors 'none'";

/// A sign-in form body is a token and a path: a few hundred bytes.
const MAX_FORM: usize = 4096;

/// Every page is the layout around its own `<main>`; the signed-in pages also get the header
/// with the navigation, the current page marked.
const LAYOUT: &str = include_str!("../web/layout.html");
const HEADER: &str = include_str!("../web/header.html");

/// One page: its title, its script (an asset name), whether it has the header (signed-in
/// pages), the navigation link it is (if one), and its `<main>`.
struct PageSpec {
    title: &'static str,
    script: Option<&'static str>,
    header: bool,
    current: Option<&'static str>,
    main: &'static str,
}

impl PageSpec {
    fn render(&self) -> String {
        let script = self
            .script
            .map(|s| format!("<script type=\"module\" src=\"/dashboard/assets/{s}\"></script>\n"))
            .unwrap_or_default();
        let header = match (self.header, self.current) {
            (false, _) => String::new(),
            (true, None) => HEADER.to_string(),
            (true, Some(href)) => HEADER.replace(
                &format!("href=\"{href}\">"),
                &format!("href=\"{href}\" aria-current=\"page\">"),
            ),
        };
        LAYOUT
            .replace("{{title}}", self.title)
            .replace("{{script}}", &script)
            .replace("{{header}}", &header)
            .replace("{{main}}", self.main)
    }
}

/// The pages, rendered once.
struct Pages {
    list: String,
    call: String,
    edge: String,
    playground: String,
    signin: String,
    loopback_only: String,
}

static PAGES: std::sync::LazyLock<Pages> = std::sync::LazyLock::new(|| Pages {
    list: PageSpec {
        title: "Calls",
        script: Some("list.js"),
        header: true,
        current: Some("/dashboard/"),
        main: include_str!("../web/index.html"),
    }
    .render(),
    call: PageSpec {
        title: "Call",
        script: Some("call.js"),
        header: true,
        current: None,
        main: include_str!("../web/call.html"),
    }
    .render(),
    edge: PageSpec {
        title: "Edge",
        script: Some("edge.js"),
        header: true,
        current: Some("/dashboard/edge"),
        main: include_str!("../web/edge.html"),
    }
    .render(),
    playground: PageSpec {
        title: "Playground",
        script: Some("playground.js"),
        header: true,
        current: Some("/dashboard/playground"),
        main: include_str!("../web/playground.html"),
    }
    .render(),
    signin: PageSpec {
        title: "Sign in",
        script: Some("signin.js"),
        header: false,
        current: None,
        main: include_str!("../web/signin.html"),
    }
    .render(),
    loopback_only: PageSpec {
        title: "Loopback only",
        script: None,
        header: false,
        current: None,
        main: include_str!("../web/loopback-only.html"),
    }
    .render(),
});

/// The assets: name, content type, bytes.
const ASSETS: [(&str, &str, &str); 7] = [
    (
        "dashboard.css",
        "text/css; charset=utf-8",
        include_str!("../web/assets/dashboard.css"),
    ),
    (
        "common.js",
        "text/javascript; charset=utf-8",
        include_str!("../web/assets/common.js"),
    ),
    (
        "list.js",
        "text/javascript; charset=utf-8",
        include_str!("../web/assets/list.js"),
    ),
    (
        "call.js",
        "text/javascript; charset=utf-8",
        include_str!("../web/assets/call.js"),
    ),
    (
        "edge.js",
        "text/javascript; charset=utf-8",
        include_str!("../web/assets/edge.js"),
    ),
    (
        "playground.js",
        "text/javascript; charset=utf-8",
        include_str!("../web/assets/playground.js"),
    ),
    (
        "signin.js",
        "text/javascript; charset=utf-8",
        include_str!("../web/assets/signin.js"),
    ),
];

/// What the pages share: the API's rule, nothing else.
pub type Rule = Arc<dyn AccessRule>;

pub fn routes() -> Router<Rule> {
    Router::new()
        .route(
            "/dashboard",
            get(|| async { Redirect::permanent("/dashboard/") }),
        )
        .route("/dashboard/", get(list_page))
        .route("/dashboard/calls/{call_sid}", get(call_page))
        .route("/dashboard/edge", get(edge_page))
        .route("/dashboard/playground", get(playground_page))
        .route("/dashboard/assets/{name}", get(asset))
        .route("/dashboard/signin", get(signin_page).post(sign_in))
        .route("/dashboard/signout", post(sign_out))
}

fn secured(status: StatusCode, content_type: &'static str, body: impl Into<Body>) -> Response {
    let mut r = (status, body.into()).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn html(status: StatusCode, body: &'static str) -> Response {
    secured(status, "text/html; charset=utf-8", body)
}

/// The sign-in page, with or without the "wrong token" notice.
fn signin(status: StatusCode, wrong: bool) -> Response {
    let notice = if wrong {
        "<p id=\"signin-error\" class=\"error\" role=\"alert\">That token is not the configured api_token.</p>"
    } else {
        ""
    };
    secured(
        status,
        "text/html; charset=utf-8",
        PAGES.signin.replace("<!--notice-->", notice),
    )
}

/// `page` when the request may read call data; else what the rule says.
fn gated(rule: &Rule, request: &Request, page: &'static str) -> Response {
    match rule.decide(request) {
        Decision::Allow => html(StatusCode::OK, page),
        Decision::Unauthorized => signin(StatusCode::UNAUTHORIZED, false),
        Decision::LoopbackOnly => html(StatusCode::FORBIDDEN, &PAGES.loopback_only),
    }
}

async fn list_page(State(rule): State<Rule>, request: Request) -> Response {
    gated(&rule, &request, &PAGES.list)
}

async fn edge_page(State(rule): State<Rule>, request: Request) -> Response {
    gated(&rule, &request, &PAGES.edge)
}

async fn playground_page(State(rule): State<Rule>, request: Request) -> Response {
    gated(&rule, &request, &PAGES.playground)
}

async fn call_page(
    State(rule): State<Rule>,
    Path(call_sid): Path<String>,
    request: Request,
) -> Response {
    if CallSid::parse(&call_sid).is_none() {
        return secured(
            StatusCode::BAD_REQUEST,
            "text/plain; charset=utf-8",
            "not a CallSid (CA + 32 hex)\n",
        );
    }
    gated(&rule, &request, &PAGES.call)
}

async fn signin_page(State(rule): State<Rule>) -> Response {
    if rule.token().is_none() {
        return Redirect::to("/dashboard/").into_response();
    }
    signin(StatusCode::OK, false)
}

async fn asset(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|(n, _, _)| *n == name) {
        Some((_, content_type, body)) => {
            let mut r = secured(StatusCode::OK, content_type, *body);
            // Compiled in: they change only with the binary.
            r.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            r
        }
        None => secured(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "no such asset\n",
        ),
    }
}

/// Where to go after signing in: a dashboard path, never another site.
pub fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(n)
            if n.starts_with("/dashboard/")
                && !n.contains("//")
                && !n.contains('\\')
                && n.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            n
        }
        _ => "/dashboard/",
    }
}

/// `POST /dashboard/signin` (form `token`, `next`): the token for a session cookie.
async fn sign_in(State(rule): State<Rule>, body: Body) -> Response {
    let Some(token) = rule.token() else {
        return Redirect::to("/dashboard/").into_response();
    };
    let Ok(bytes) = axum::body::to_bytes(body, MAX_FORM).await else {
        return signin(StatusCode::PAYLOAD_TOO_LARGE, true);
    };
    let form = twiml::signature::parse_form(&bytes);
    let field = |name: &str| {
        form.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let given = field("token").unwrap_or_default();
    if !twiml::signature::constant_time_eq(given.as_bytes(), token.as_bytes()) {
        tracing::warn!("dashboard_signin_refused");
        return signin(StatusCode::UNAUTHORIZED, true);
    }
    let cookie = match rule.start_session() {
        Ok(cookie) => cookie,
        Err(e) => {
            tracing::error!(error = %e, "dashboard_session_failed");
            return html(StatusCode::INTERNAL_SERVER_ERROR, "internal error\n");
        }
    };
    tracing::info!(sessions = rule.live_sessions(), "dashboard_signin");
    let mut r = Redirect::to(safe_next(field("next"))).into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

/// `POST /dashboard/signout`: ends the session and clears the cookie.
async fn sign_out(State(rule): State<Rule>, headers: HeaderMap) -> Response {
    let cleared = rule.end_sessions(&headers);
    let mut r = Redirect::to("/dashboard/").into_response();
    if let Ok(v) = HeaderValue::from_str(&cleared) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn after_sign_in_only_dashboard_paths() {
        assert_eq!(safe_next(Some("/dashboard/edge")), "/dashboard/edge");
        assert_eq!(
            safe_next(Some("/dashboard/calls/CA0123456789abcdef0123456789abcdef")),
            "/dashboard/calls/CA0123456789abcdef0123456789abcdef"
        );
        for bad in [
            None,
            Some(""),
            Some("https://evil.example/dashboard/"),
            Some("//evil.example/dashboard/"),
            Some("/dashboard//evil.example"),
            Some("/dashboard/\\evil"),
            Some("/api/calls"),
            Some("/dashboard/ x"),
        ] {
            assert_eq!(safe_next(bad), "/dashboard/", "{bad:?}");
        }
    }

    #[test]
    fn every_page_links_only_assets_that_exist() {
        let p = &*PAGES;
        for page in [
            &p.list,
            &p.call,
            &p.edge,
            &p.playground,
            &p.signin,
            &p.loopback_only,
        ] {
            assert!(page.contains("<meta name=\"viewport\""));
            assert!(page.contains("<html lang=\"en\">"));
            for (i, _) in page.match_indices("/dashboard/assets/") {
                let rest = &page[i + "/dashboard/assets/".len()..];
                let name = &rest[..rest.find('"').unwrap()];
                assert!(ASSETS.iter().any(|(n, _, _)| *n == name), "{name}");
            }
            // The CSP allows no inline script or style.
            assert!(!page.contains("<script>") && !page.contains("style="));
        }
        assert!(p.signin.contains("<!--notice-->"));
        // Each signed-in page has the navigation, with itself (if it is a link there) current.
        assert!(p
            .list
            .contains("href=\"/dashboard/\" aria-current=\"page\">Calls"));
        assert!(p
            .edge
            .contains("href=\"/dashboard/edge\" aria-current=\"page\">Edge"));
        assert!(p.call.contains("Sign out") && !p.call.contains("aria-current"));
        assert!(!p.signin.contains("Sign out") && !p.loopback_only.contains("<nav"));
        assert!(p
            .playground
            .contains("<title>Playground · twiml-guard</title>"));
        assert!(p
            .playground
            .contains("src=\"/dashboard/assets/playground.js\""));
    }
}
