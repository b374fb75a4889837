//! What the service that mounts the dashboard gives it: the calls to list and their changes
//! (`Calls`), and the API's access rule with its sessions (`AccessRule`). The dashboard sees
//! only these, so it depends on no store, no configuration and no session store of its own.

use axum::extract::Request;
use axum::http::HeaderMap;
use serde_json::Value;
use std::sync::Arc;
use tokio::sync::broadcast;

/// An error of the session store, shown to the dashboard as a message.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why the calls could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CallsError {
    /// The database is away or saturated: the client may retry.
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Failed(String),
}

/// The calls the live list shows.
#[async_trait::async_trait]
pub trait Calls: Send + Sync + 'static {
    /// The newest `limit` calls, newest first, each as the calls API lists it (an object with
    /// `call_sid`, `status`, `from`, `to`, `created_at_ms`, `ended_at_ms`, `recording_status`).
    async fn newest(&self, limit: i64) -> Result<Vec<Value>, CallsError>;

    /// The CallSids of calls whose row changes from now on; an empty one means "look at them
    /// all" (changes may have been missed).
    fn changes(&self) -> broadcast::Receiver<Arc<str>>;
}

/// The API's answer for a request that wants call data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// A token is configured and the request carries neither it nor a live session.
    Unauthorized,
    /// No token is configured and the client is not on loopback.
    LoopbackOnly,
}

/// The API's access rule and its sign-in sessions; the session cookie's format is the rule's.
pub trait AccessRule: Send + Sync + 'static {
    /// What the rule says of `request` (its headers and the peer in its `ConnectInfo`).
    fn decide(&self, request: &Request) -> Decision;

    /// The configured `api_token`; `None` when the API answers loopback clients only and signing
    /// in means nothing.
    fn token(&self) -> Option<&str>;

    /// A new session: the `Set-Cookie` value that carries it.
    fn start_session(&self) -> Result<String, BoxError>;

    /// Ends every session the request's cookies name: the `Set-Cookie` value that clears it.
    fn end_sessions(&self, headers: &HeaderMap) -> String;

    /// Sessions live now.
    fn live_sessions(&self) -> usize;
}
