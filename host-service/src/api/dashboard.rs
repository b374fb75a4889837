//! The dashboard crate's seams, filled by the service: the store is its `Calls` (the calls API's
//! rows within `database.read_timeout_ms`, the store's broadcast of call changes), the API's
//! access rule is its `AccessRule` (the decision, and the sessions with their cookie). Nothing
//! else of the service reaches it.

use super::auth::{self, Access};
use crate::state::AppState;
use crate::store::{within, Store};
use axum::extract::Request;
use axum::http::{header, HeaderMap};
use dashboard::edge::EdgeClient;
use dashboard::{AccessRule, BoxError, Calls, CallsError, Dashboard, Decision};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;

/// The dashboard over `state`'s store and edge settings, behind `access`.
pub fn new(state: &AppState, access: Arc<Access>) -> Arc<Dashboard> {
    let edge = &state.config.edge;
    Dashboard::new(
        Arc::new(FeedCalls {
            store: state.store.clone(),
            read_timeout: Duration::from_millis(state.config.database.read_timeout_ms),
        }),
        access,
        EdgeClient::new(
            edge.envoy_admin_url.as_deref(),
            Duration::from_millis(edge.timeout_ms),
        ),
        state.shutdown.clone(),
    )
}

/// The store as the live feed reads it: each read bounded by `database.read_timeout_ms`, as the
/// API's are, so a hung database answers the feed with "unavailable" instead of holding it.
struct FeedCalls {
    store: Store,
    read_timeout: Duration,
}

#[async_trait::async_trait]
impl Calls for FeedCalls {
    async fn newest(&self, limit: i64) -> Result<Vec<Value>, CallsError> {
        let read = self.store.list_calls(limit, None);
        let calls = within(self.read_timeout, read).await.map_err(|e| {
            if e.is_unavailable() {
                CallsError::Unavailable(e.to_string())
            } else {
                CallsError::Failed(e.to_string())
            }
        })?;
        Ok(calls
            .into_iter()
            .filter_map(|c| serde_json::to_value(c).ok())
            .collect())
    }

    fn changes(&self) -> broadcast::Receiver<Arc<str>> {
        self.store.call_changes()
    }
}

impl AccessRule for Access {
    fn decide(&self, request: &Request) -> Decision {
        match self.decide_request(request) {
            auth::Decision::Allow => Decision::Allow,
            auth::Decision::Unauthorized => Decision::Unauthorized,
            auth::Decision::LoopbackOnly => Decision::LoopbackOnly,
        }
    }

    fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    fn start_session(&self) -> Result<String, BoxError> {
        let id = self.sessions.start()?;
        Ok(auth::session_cookie(&id, self.sessions.ttl()))
    }

    fn end_sessions(&self, headers: &HeaderMap) -> String {
        for v in headers.get_all(header::COOKIE).iter() {
            if let Some(id) = v
                .to_str()
                .ok()
                .and_then(|v| auth::cookie_value(v, auth::COOKIE))
            {
                self.sessions.end(id);
            }
        }
        auth::expired_cookie()
    }

    fn live_sessions(&self) -> usize {
        self.sessions.len()
    }
}
