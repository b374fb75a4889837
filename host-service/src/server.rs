//! Serves the router on a listener with the timers `axum::serve` does not offer: hyper's
//! header-read timeout on every connection, and a shutdown in two steps (finish the request in
//! flight, then, past the deadline, drop the connection) so a slow peer cannot hold the process.

use crate::shutdown::wait_true;
use crate::shutdown::Tracker;
use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower::ServiceExt;

/// Accept connections until `stop` turns true. Each connection then finishes the request it is
/// serving and closes; when `force` turns true it is dropped wherever it is. Returns the tracker
/// of connections still open, so the caller can wait for them up to its deadline.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    header_read_timeout: Duration,
    mut stop: watch::Receiver<bool>,
    force: watch::Receiver<bool>,
) -> Arc<Tracker> {
    let conns = Arc::new(Tracker::default());
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout);
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
        let guard = conns.enter();
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
