//! The one error type of the HTTP layer. Each variant has a stable `code` clients can match on;
//! internal errors are logged here, once, and answered without their details.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("no call {0}")]
    CallNotFound(String),
    #[error("call {0} has no recording yet")]
    RecordingNotFound(String),
    #[error("{0} is not a valid CallSid (CA + 32 hex)")]
    BadCallSid(String),
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error("missing or wrong bearer token")]
    Unauthorized,
    #[error(
        "the API has no token configured and answers loopback clients only, not through a proxy"
    )]
    LoopbackOnly,
    #[error("this Host is not one the service answers for (http.allowed_hosts)")]
    HostNotAllowed,
    #[error("webhook signature refused: {0}")]
    Signature(&'static str),
    #[error("the service is shutting down")]
    ShuttingDown,
    #[error("too many media sockets open (websocket.max_sockets)")]
    TooManySockets,
    #[error("the request body was not received in time")]
    BodyTimeout,
    #[error("the request body is larger than {0} bytes")]
    BodyTooLarge(usize),
    #[error("{0}")]
    DatabaseUnavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::CallNotFound(_) => "call_not_found",
            ApiError::RecordingNotFound(_) => "recording_not_found",
            ApiError::BadCallSid(_) => "bad_call_sid",
            ApiError::BadRequest(_) => "bad_request",
            ApiError::Unauthorized => "unauthorized",
            ApiError::LoopbackOnly => "loopback_only",
            ApiError::HostNotAllowed => "host_not_allowed",
            ApiError::Signature(_) => "bad_signature",
            ApiError::ShuttingDown => "shutting_down",
            ApiError::TooManySockets => "too_many_sockets",
            ApiError::BodyTimeout => "body_timeout",
            ApiError::BodyTooLarge(_) => "body_too_large",
            ApiError::DatabaseUnavailable(_) => "database_unavailable",
            ApiError::Internal(_) => "internal",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::CallNotFound(_) | ApiError::RecordingNotFound(_) => StatusCode::NOT_FOUND,
            ApiError::BadCallSid(_) | ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::LoopbackOnly | ApiError::HostNotAllowed | ApiError::Signature(_) => {
                StatusCode::FORBIDDEN
            }
            ApiError::ShuttingDown
            | ApiError::TooManySockets
            | ApiError::DatabaseUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            ApiError::BodyTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<crate::store::DbError> for ApiError {
    fn from(e: crate::store::DbError) -> Self {
        if e.is_unavailable() {
            tracing::warn!(error = %e, "database_unavailable");
            ApiError::DatabaseUnavailable(e.to_string())
        } else {
            ApiError::Internal(e.to_string())
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let message = match &self {
            ApiError::Internal(detail) => {
                tracing::error!(error = %detail, "internal error");
                "internal error".to_owned()
            }
            // Client-supplied values are echoed shortened.
            other => other.to_string().chars().take(200).collect(),
        };
        let mut response = (
            self.status(),
            Json(serde_json::json!({"error": {"code": self.code(), "message": message}})),
        )
            .into_response();
        if matches!(self, ApiError::Unauthorized) {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}
