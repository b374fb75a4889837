//! The calls API: `GET /api/calls` (newest first, with a cursor), one call's detail, and its
//! recording (with Range support, so browsers can seek). Behind the API's access rule.

use super::error::ApiError;
use crate::state::AppState;
use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::{Json, Router};
use media::sid::CallSid;

/// `/api/calls`, one call, and its recording.
pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/calls", get(list_calls))
        .route("/api/calls/{call_sid}", get(get_call))
        .route("/api/calls/{call_sid}/recording.wav", get(get_recording))
}

#[derive(Debug, serde::Deserialize)]
struct ListQuery {
    limit: Option<i64>,
    cursor: Option<String>,
}

async fn list_calls(
    State(state): State<AppState>,
    Query(q): Query<ListQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let limit = q.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::BadRequest("limit must be 1..=500".into()));
    }
    let before = match q.cursor.as_deref() {
        None | Some("") => None,
        Some(c) => {
            let (ts, sid) = c
                .split_once('_')
                .and_then(|(ts, sid)| Some((ts.parse::<i64>().ok()?, CallSid::parse(sid)?)))
                .ok_or_else(|| ApiError::BadRequest("bad cursor".into()))?;
            Some((ts, sid.to_string()))
        }
    };
    let calls = state.db(state.store.list_calls(limit, before)).await?;
    let next_cursor = (calls.len() as i64 == limit)
        .then(|| {
            calls
                .last()
                .map(|c| format!("{}_{}", c.created_at_ms, c.call_sid))
        })
        .flatten();
    Ok(Json(
        serde_json::json!({"calls": calls, "next_cursor": next_cursor}),
    ))
}

fn path_call_sid(raw: &str) -> Result<CallSid, ApiError> {
    CallSid::parse(raw).ok_or_else(|| ApiError::BadCallSid(raw.chars().take(40).collect()))
}

async fn get_call(
    State(state): State<AppState>,
    Path(call_sid): Path<String>,
) -> Result<Json<crate::store::CallDetail>, ApiError> {
    let sid = path_call_sid(&call_sid)?;
    state
        .db(state.store.call_detail(sid.as_str()))
        .await?
        .map(Json)
        .ok_or(ApiError::CallNotFound(sid.to_string()))
}

/// The recording, with `Range` support (`tower_http`'s `ServeFile`): a browser's `<audio>` seeks
/// with range requests.
async fn get_recording(
    State(state): State<AppState>,
    Path(call_sid): Path<String>,
    request: Request,
) -> Result<Response, ApiError> {
    use tower::ServiceExt;
    let sid = path_call_sid(&call_sid)?;
    let path = state
        .db(state.store.recording_path(sid.as_str()))
        .await?
        .ok_or_else(|| ApiError::RecordingNotFound(sid.to_string()))?;
    if tokio::fs::metadata(&path).await.is_err() {
        return Err(ApiError::RecordingNotFound(sid.to_string()));
    }
    let serve = tower_http::services::ServeFile::new_with_mime(
        &path,
        &"audio/wav"
            .parse()
            .map_err(|_| ApiError::Internal("mime".into()))?,
    );
    let response = serve
        .oneshot(request)
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    if response.status() == StatusCode::NOT_FOUND {
        return Err(ApiError::RecordingNotFound(sid.to_string()));
    }
    Ok(response.map(Body::new))
}
