//! The calls dashboard: pages under `/dashboard/` (plain HTML, CSS and ES modules in `web/`,
//! compiled into the binary) and the API routes they read (`/api/events`, `/api/edge`,
//! `/api/lint`). The service that mounts it gives it the calls and the API's access rule
//! (`host`); it puts the `/api/*` routes behind that rule, and the pages apply it themselves
//! (sign-in starts a session).
//!
//! - `host`: the `Calls` and `AccessRule` traits the mounting service implements.
//! - `pages`: the pages, the assets, sign-in and sign-out.
//! - `feed`: the live calls list (server-sent events).
//! - `edge`: the guard's counters from Envoy's admin API.
//! - `lint`: the playground's lint and rewrite over the twiml core.
//! - `error`: the JSON errors, in the API's shape.

pub mod edge;
pub mod error;
pub mod feed;
pub mod host;
pub mod lint;
pub mod pages;

pub use error::DashboardError;
pub use host::{AccessRule, BoxError, Calls, CallsError, Decision};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use std::sync::Arc;
use tokio::sync::watch;

/// What the dashboard's handlers share.
pub struct Dashboard {
    access: Arc<dyn AccessRule>,
    feed: feed::Feed,
    edge: edge::EdgeClient,
}

impl Dashboard {
    /// `shutdown` turning true ends the live feed's streams, so open pages do not hold up a
    /// drain.
    pub fn new(
        calls: Arc<dyn Calls>,
        access: Arc<dyn AccessRule>,
        edge: edge::EdgeClient,
        shutdown: watch::Receiver<bool>,
    ) -> Arc<Dashboard> {
        Arc::new(Dashboard {
            access,
            feed: feed::Feed::new(calls, shutdown),
            edge,
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
        pages::routes().with_state(self.access.clone())
    }
}

async fn events(State(dash): State<Arc<Dashboard>>) -> Result<Response, DashboardError> {
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
            error::json_error(status, code, &e.to_string())
        }
    }
}
