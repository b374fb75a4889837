//! The calls dashboard: pages under `/dashboard/` (plain HTML, CSS and ES modules compiled into
//! the binary), the API routes they read (`/api/events`, `/api/edge`, `/api/lint`), and the
//! access rule the whole API shares (bearer token or session cookie; loopback only without a
//! token).
//!
//! - `auth`: the rule, the cookie, the session store (pure).
//! - `pages`: the pages, the assets, sign-in and sign-out.
//! - `feed`: the live calls list (server-sent events).
//! - `edge`: the guard's counters from Envoy's admin API.
//! - `lint`: the playground's lint and rewrite over the twiml core.

pub mod edge;
pub mod feed;
pub mod lint;
pub mod pages;

use crate::api::auth::{self, Credentials, Decision, Sessions};
use crate::api::error::ApiError;
use crate::state::AppState;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// What the dashboard's handlers share.
pub struct Dashboard {
    pub access: Arc<Access>,
    feed: feed::Feed,
    edge: edge::EdgeClient,
}

/// The API's access rule with its inputs: the configured token and the live sessions.
pub struct Access {
    pub token: Option<String>,
    pub sessions: Sessions,
}

impl Access {
    pub fn decide(&self, headers: &HeaderMap, peer: Option<SocketAddr>) -> Decision {
        let session = headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|v| auth::cookie_value(v, auth::COOKIE));
        let creds = Credentials {
            authorization: headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok()),
            session,
            peer: peer.map(|p| p.ip()),
        };
        auth::decide(self.token.as_deref(), &creds, &self.sessions)
    }

    pub fn decide_request(&self, request: &Request) -> Decision {
        let peer = request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0);
        self.decide(request.headers(), peer)
    }
}

impl Dashboard {
    pub fn new(state: &AppState) -> Arc<Dashboard> {
        let cfg = &state.config;
        Arc::new(Dashboard {
            access: Arc::new(Access {
                token: cfg.api_token.clone(),
                sessions: Sessions::new(
                    Duration::from_secs(cfg.dashboard.session_ttl_s),
                    cfg.dashboard.max_sessions,
                ),
            }),
            feed: feed::Feed::new(state.store.clone(), state.shutdown.clone()),
            edge: edge::EdgeClient::new(
                cfg.edge.envoy_admin_url.as_deref(),
                Duration::from_millis(cfg.edge.timeout_ms),
            ),
        })
    }

    /// Routes under `/api` (the caller puts them behind [`require_api_access`]).
    pub fn api_routes<S>(self: &Arc<Self>) -> Router<S> {
        Router::new()
            .route("/api/events", get(events))
            .route("/api/edge", get(edge_stats))
            .route("/api/lint", post(lint::lint))
            .with_state(self.clone())
    }

    /// The pages and assets (each page applies the rule itself: a refused page answers the
    /// sign-in page, not JSON).
    pub fn page_routes<S>(self: &Arc<Self>) -> Router<S> {
        pages::routes().with_state(self.clone())
    }
}

/// `/api/*`: with a token configured, `Authorization: Bearer <token>` (constant-time compare) or
/// a live dashboard session cookie; without one, loopback clients only.
pub async fn require_api_access(
    State(access): State<Arc<Access>>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    match access.decide_request(&request) {
        Decision::Allow => Ok(next.run(request).await),
        Decision::Unauthorized => Err(ApiError::Unauthorized),
        Decision::LoopbackOnly => Err(ApiError::LoopbackOnly),
    }
}

async fn events(State(dash): State<Arc<Dashboard>>) -> Result<Response, ApiError> {
    Ok(dash.feed.subscribe().await?.into_response())
}

async fn edge_stats(State(dash): State<Arc<Dashboard>>) -> Response {
    match dash.edge.read().await {
        Ok(stats) => Json(serde_json::json!({
            "source": dash.edge.url(),
            "mode": stats.mode,
            "rules": stats.rules,
            "counters": stats.counters,
        }))
        .into_response(),
        Err(e) => {
            let (status, code) = match &e {
                edge::EdgeError::NotConfigured => {
                    (StatusCode::SERVICE_UNAVAILABLE, "edge_not_configured")
                }
                edge::EdgeError::Unreachable { .. } => {
                    (StatusCode::BAD_GATEWAY, "edge_unreachable")
                }
                edge::EdgeError::BadAnswer { .. } => (StatusCode::BAD_GATEWAY, "edge_bad_answer"),
            };
            tracing::warn!(error = %e, "edge_read_failed");
            (
                status,
                Json(serde_json::json!({"error": {"code": code, "message": e.to_string()}})),
            )
                .into_response()
        }
    }
}
