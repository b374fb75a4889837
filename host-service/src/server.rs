//! Serves the router on a listener with the limits `axum::serve` does not offer: a cap on open
//! connections, hyper's header-read timeout on every connection, a deadline on every request
//! (its body included), and a shutdown in two steps (finish the request in flight, then, past the
//! deadline, drop the connection) so neither many nor slow peers can hold the process.

use crate::metrics::Metrics;
use crate::shutdown::wait_true;
use crate::shutdown::Tracker;
use axum::extract::ConnectInfo;
use axum::http::StatusCode;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower::ServiceExt;
use tower_http::timeout::TimeoutLayer;

/// What every connection and request is held to (`http.*`).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header_read_timeout: Duration,
    /// A request not answered by then (its body read included) gets 408.
    pub request_timeout: Duration,
    /// Connections open at once; past it a new one is closed as soon as it is accepted.
    pub max_connections: usize,
}

/// Counts one connection open in `host_http_connections` until it is dropped.
struct Open(Arc<Metrics>);

impl Open {
    fn new(metrics: &Arc<Metrics>) -> Open {
        metrics.http_connection_opened();
        Open(metrics.clone())
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.http_connection_closed();
    }
}

/// Accept connections until `stop` turns true. Each connection then finishes the request it is
/// serving and closes; when `force` turns true it is dropped wherever it is. Returns the tracker
/// of connections still open, so the caller can wait for them up to its deadline.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
    force: watch::Receiver<bool>,
) -> Arc<Tracker> {
    let conns = Arc::new(Tracker::default());
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    // Every route, every body: a sign-in form or a lint request trickled byte by byte is cut
    // like a webhook. An upgraded media socket is answered at once and timed by `websocket.*`.
    let router = router.layer(TimeoutLayer::with_status_code(
        StatusCode::REQUEST_TIMEOUT,
        limits.request_timeout,
    ));
    loop {
        let (stream, peer) = tokio::select! {
            biased;
            _ = wait_true(&mut stop) => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors and the like: back off instead of spinning on the error.
                    tracing::warn!(error = %e, "accept_failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        if conns.open() >= limits.max_connections {
            // Closed unanswered: past the cap an answer would cost what the cap protects.
            metrics.http_connection_refused();
            tracing::warn!(%peer, max_connections = limits.max_connections, "connection_refused");
            drop(stream);
            continue;
        }
        // What `into_make_service_with_connect_info` would do: the API's loopback rule needs it.
        let service = router
            .clone()
            .map_request(move |mut req: axum::http::Request<Incoming>| {
                req.extensions_mut().insert(ConnectInfo(peer));
                req
            });
        let conn = builder
            .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service))
            .with_upgrades();
        let guard = (conns.enter(), Open::new(&metrics));
        let mut stop = stop.clone();
        let mut force = force.clone();
        tokio::spawn(async move {
            let _guard = guard;
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        tracing::debug!(error = %e, "connection_error");
                    }
                    return;
                }
                _ = wait_true(&mut stop) => conn.as_mut().graceful_shutdown(),
            }
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        tracing::debug!(error = %e, "connection_error");
                    }
                }
                _ = wait_true(&mut force) => tracing::debug!("connection_dropped_at_deadline"),
            }
        });
    }
    conns
}
