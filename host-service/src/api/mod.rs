//! The HTTP surface: the Media Streams upgrade (`media`), Twilio's webhooks (`webhooks`,
//! signature-checked by `signature`), the calls API (`calls`) behind the access rule (`auth`:
//! bearer token or dashboard session, or loopback clients only), the probes (`probes`) and
//! metrics. Other read routes (the dashboard crate's, given the store and the rule by
//! `dashboard`) are mounted behind the same rule by whoever builds the router.

pub mod auth;
mod calls;
pub mod dashboard;
pub mod error;
mod media;
mod probes;
mod signature;
mod webhooks;

use crate::state::AppState;
use axum::extract::State;
use axum::http::header;
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use error::ApiError;
use std::sync::Arc;

pub const MEDIA_PATH: &str = "/ws/twilio-media";

/// The API's routes. `read_side` holds more `/api/*` routes (the dashboard's), put behind the
/// same access rule as the calls API.
pub fn routes(state: AppState, access: Arc<auth::Access>, read_side: Router<AppState>) -> Router {
    let api = calls::routes()
        .merge(read_side)
        .route_layer(middleware::from_fn_with_state(
            access,
            auth::require_api_access,
        ));
    Router::new()
        .route(MEDIA_PATH, get(media::media_socket))
        .merge(webhooks::routes())
        .merge(probes::routes())
        .route("/metrics", get(metrics))
        .merge(api)
        .fallback(|| async { ApiError::BadRequest("no such endpoint".into()) })
        .with_state(state)
}

/// Always answers: when the database does not give the job counts in time, the `host_jobs`
/// series are left out of this scrape (absent, not zero) and everything else is there.
async fn metrics(State(state): State<AppState>) -> Response {
    let jobs = match state.db(state.store.job_counts()).await {
        Ok(jobs) => jobs,
        Err(e) => {
            tracing::warn!(error = %e, "metrics_without_jobs");
            Vec::new()
        }
    };
    state.metrics.db_writes_pending(state.writes.pending());
    (
        [(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
        state.metrics.render(state.tracker.open(), &jobs),
    )
        .into_response()
}
