//! The calls dashboard: pages under `/dashboard/` (plain HTML, CSS and ES modules compiled into
//! the binary) and the API routes they read (`/api/events`, `/api/edge`, `/api/lint`). Access
//! is the API's rule (`crate::api::auth`); pages apply it themselves, sign-in starts a session.
//!
//! - `pages`: the pages, the assets, sign-in and sign-out.
//! - `feed`: the live calls list (server-sent events).
//! - `edge`: the guard's counters from Envoy's admin API.
//! - `lint`: the playground's lint and rewrite over the twiml core.

pub mod edge;
pub mod feed;
pub mod lint;
pub mod pages;

use crate::api::auth::Access;
use crate::api::error::ApiError;
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use std::sync::Arc;
use std::time::Duration;

/// What the dashboard's handlers share.
pub struct Dashboard {
    pub access: Arc<Access>,
    feed: feed::Feed,
    edge: edge::EdgeClient,
}

impl Dashboard {
    pub fn new(state: &AppState, access: Arc<Access>) -> Arc<Dashboard> {
        let cfg = &state.config;
        Arc::new(Dashboard {
            access,
            feed: feed::Feed::new(state.store.clone(), state.shutdown.clone()),
            edge: edge::EdgeClient::new(
                cfg.edge.envoy_admin_url.as_deref(),
                Duration::from_millis(cfg.edge.timeout_ms),
            ),
        })
    }

    /// Routes under `/api` (the caller puts them behind the API's access rule).
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
