//! The dashboard's JSON errors, in the API's shape (`{"error": {"code", "message"}}`), so a page
//! reads every `/api/*` answer the same way. Internal errors are logged here, once, and answered
//! without their details.

use crate::host::CallsError;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

#[derive(Debug, thiserror::Error)]
pub enum DashboardError {
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error("the request body is larger than {0} bytes")]
    BodyTooLarge(usize),
    #[error("{0}")]
    DatabaseUnavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl DashboardError {
    pub fn code(&self) -> &'static str {
        match self {
            DashboardError::BadRequest(_) => "bad_request",
            DashboardError::BodyTooLarge(_) => "body_too_large",
            DashboardError::DatabaseUnavailable(_) => "database_unavailable",
            DashboardError::Internal(_) => "internal",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            DashboardError::BadRequest(_) => StatusCode::BAD_REQUEST,
            DashboardError::BodyTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            DashboardError::DatabaseUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            DashboardError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<CallsError> for DashboardError {
    fn from(e: CallsError) -> Self {
        match e {
            CallsError::Unavailable(m) => {
                tracing::warn!(error = %m, "database_unavailable");
                DashboardError::DatabaseUnavailable(m)
            }
            CallsError::Failed(m) => DashboardError::Internal(m),
        }
    }
}

/// The error body every `/api/*` route answers.
pub fn json_error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(serde_json::json!({"error": {"code": code, "message": message}})),
    )
        .into_response()
}

impl IntoResponse for DashboardError {
    fn into_response(self) -> Response {
        let message = match &self {
            DashboardError::Internal(detail) => {
                tracing::error!(error = %detail, "internal error");
                "internal error".to_owned()
            }
            // Client-supplied values are echoed shortened.
            other => other.to_string().chars().take(200).collect(),
        };
        json_error(self.status(), self.code(), &message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::to_bytes;

    async fn answer(e: DashboardError) -> (StatusCode, serde_json::Value) {
        let r = e.into_response();
        let status = r.status();
        let body = to_bytes(r.into_body(), 4096).await.unwrap();
        (status, serde_json::from_slice(&body).unwrap())
    }

    #[tokio::test]
    async fn errors_have_the_apis_shape_and_hide_internals() {
        let (status, v) = answer(DashboardError::BodyTooLarge(65536)).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(
            v,
            serde_json::json!({"error": {"code": "body_too_large",
                "message": "the request body is larger than 65536 bytes"}})
        );
        let (status, v) = answer(DashboardError::Internal("pool closed".into())).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            v,
            serde_json::json!({"error": {"code": "internal", "message": "internal error"}})
        );
        let (status, v) =
            answer(CallsError::Unavailable("database: no answer".into()).into()).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            v,
            serde_json::json!({"error": {"code": "database_unavailable",
                "message": "database: no answer"}})
        );
        let (status, v) = answer(DashboardError::BadRequest("x".repeat(300))).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(v["error"]["code"], "bad_request");
        assert_eq!(v["error"]["message"].as_str().unwrap().chars().count(), 200);
    }
}
