//! The service in process on a real socket, for the suites that drive it: started on a free port
//! with its own data directory, polled until healthy, stopped within a deadline.

use crate::common::*;
use host_service::config::Config;
use std::time::Duration;
use tokio::sync::oneshot;

/// Which engines a test server runs.
pub(crate) enum EngineChoice {
    Test,
    FromConfig,
}

pub(crate) struct Server {
    pub(crate) addr: std::net::SocketAddr,
    pub(crate) data: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    handle: tokio::task::JoinHandle<Result<(), host_service::StartError>>,
    pub(crate) http: reqwest::Client,
}

impl Server {
    pub(crate) async fn start(config: Config) -> Server {
        Server::start_with(config, EngineChoice::Test).await
    }

    pub(crate) async fn start_with(config: Config, engines: EngineChoice) -> Server {
        Server::start_in(config, engines, tempfile::tempdir().unwrap()).await
    }

    /// Another replica of `first`, on the same database and recordings directory (replicas on
    /// PostgreSQL share the volume), with a data directory of its own.
    pub(crate) async fn replica_of(first: &Server, config: Config) -> Server {
        let data = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(data.path().join("data")).unwrap();
        std::os::unix::fs::symlink(
            first.data.path().join("data/recordings"),
            data.path().join("data/recordings"),
        )
        .unwrap();
        Server::start_in(config, EngineChoice::Test, data).await
    }

    async fn start_in(
        mut config: Config,
        engines: EngineChoice,
        data: tempfile::TempDir,
    ) -> Server {
        config.data_dir = data.path().join("data");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        config.listen = addr;
        let engines = match engines {
            EngineChoice::Test => test_engines::engines(&Default::default()),
            EngineChoice::FromConfig => host_service::engines_from_config(&config).unwrap(),
        };
        let (tx, rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(host_service::run(listener, config, engines, async move {
            let _ = rx.await;
        }));
        let http = reqwest::Client::new();
        let url = format!("http://{addr}/healthz");
        poll("healthz", Duration::from_secs(10), || {
            let http = http.clone();
            let url = url.clone();
            async move {
                http.get(&url)
                    .send()
                    .await
                    .ok()
                    .filter(|r| r.status() == 200)
            }
        })
        .await;
        Server {
            addr,
            data,
            stop: Some(tx),
            handle,
            http,
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub(crate) async fn call_json(&self, call: &str) -> serde_json::Value {
        self.http
            .get(self.url(&format!("/api/calls/{call}")))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    pub(crate) async fn wait_status(&self, call: &str, status: &str) -> serde_json::Value {
        poll(
            &format!("call status {status}"),
            Duration::from_secs(20),
            || async {
                let v = self.call_json(call).await;
                (v["status"] == status).then_some(v)
            },
        )
        .await
    }

    pub(crate) async fn metrics(&self) -> String {
        self.http
            .get(self.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Stop the service; the data directory lives on in the returned handle.
    pub(crate) async fn stop(mut self) -> tempfile::TempDir {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(20), &mut self.handle)
            .await
            .expect("service stopped in time")
            .unwrap()
            .unwrap();
        self.data
    }
}

pub(crate) fn quick_config() -> Config {
    let mut c = Config::default();
    c.pipeline.poll_ms = 20;
    c.pipeline.backoff_base_ms = 20;
    c.pipeline.backoff_cap_ms = 200;
    c.websocket.start_timeout_ms = 300;
    c.twilio.validate_signatures = false;
    c
}

pub(crate) fn metric(text: &str, line_prefix: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(line_prefix)?.trim().parse().ok())
}
