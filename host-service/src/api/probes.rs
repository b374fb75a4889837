//! The Kubernetes probes. `/livez` answers from the process alone, never the database: it says
//! the runtime can serve sockets, so a database outage never gets a replica restarted with its
//! live calls. `/readyz` (and `/healthz`, its older name) also asks the database, within
//! `database.ready_timeout_ms`, and names every reason it is not ready.

use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use std::time::Duration;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .route("/healthz", get(readyz))
}

/// 200 whenever this handler runs: the runtime that serves the sockets answered. Draining is not
/// a reason to restart.
async fn livez(State(state): State<AppState>) -> Response {
    let body = serde_json::json!({
        "status": "ok",
        "draining": *state.shutdown.borrow(),
        "active_streams": state.tracker.open(),
        "pending_db_writes": state.writes.pending(),
    });
    (StatusCode::OK, Json(body)).into_response()
}

/// 503 while draining, or when the database does not answer within the deadline; `reasons`
/// says which.
async fn readyz(State(state): State<AppState>) -> Response {
    let deadline = Duration::from_millis(state.config.database.ready_timeout_ms);
    let database = state.store.ping(deadline).await;
    let draining = *state.shutdown.borrow();
    let mut reasons = Vec::new();
    if draining {
        reasons.push("draining".to_owned());
    }
    if let Err(e) = &database {
        reasons.push(e.clone());
    }
    let ready = reasons.is_empty();
    let body = serde_json::json!({
        "status": if ready { "ok" } else { "unavailable" },
        "database": database.is_ok(),
        "draining": draining,
        "reasons": reasons,
        "active_streams": state.tracker.open(),
        "pending_db_writes": state.writes.pending(),
    });
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body)).into_response()
}
