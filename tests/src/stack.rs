//! The whole stack for full-call tests and the demo's shape: the legacy Flask backend (the bug),
//! the host service (stream, recording, Whisper, summary) and Envoy with the filter in front,
//! each a child process on its own port, ready before use and killed on drop. Plus the caller's
//! speech (espeak-ng) and a word error rate to judge transcripts by.

use crate::{
    free_local_addr, http_client, poll, release_binary, repo_root, ChildGuard, Envoy, EnvoySetup,
    HarnessError, Result, TempDir,
};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The public host Twilio would use; the simulator maps it onto Envoy with `--local`.
pub const PUBLIC_HOST: &str = "voice.example.com";
/// The auth token every part shares: the simulator signs with it, the host service checks it.
pub const AUTH_TOKEN: &str = "e2e-auth-token-0123456789abcdef";

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> HarnessError {
    let context = context.into();
    move |source| HarnessError::Io { context, source }
}

fn log_file(path: &Path) -> Result<(std::fs::File, std::fs::File)> {
    let out = std::fs::File::create(path).map_err(io(format!("creating {}", path.display())))?;
    let err = out.try_clone().map_err(io("cloning a log file"))?;
    Ok((out, err))
}

/// Wait until `GET http://addr/healthz` answers 200, or the child exits.
async fn wait_healthy(
    name: &str,
    child: &mut ChildGuard,
    addr: SocketAddr,
    log: &Path,
) -> Result<()> {
    let client = http_client();
    let url = format!("http://{addr}/healthz");
    let log_text = || std::fs::read_to_string(log).unwrap_or_default();
    let ready = poll(crate::START_TIMEOUT, &format!("{name} on {addr}"), || {
        let exited = child.try_wait();
        let (client, url) = (client.clone(), url.clone());
        async move {
            match exited {
                Err(e) => Some(Err(e)),
                Ok(Some(status)) => Some(Err(HarnessError::Http(format!(
                    "{name} exited ({status}) before it was ready; log:\n{}",
                    log_text()
                )))),
                Ok(None) => {
                    let r = client.get(&url).send().await.ok()?;
                    r.status().is_success().then_some(Ok(()))
                }
            }
        }
    })
    .await;
    match ready {
        Ok(outcome) => outcome,
        Err(HarnessError::Timeout(after, what)) => Err(HarnessError::Timeout(
            after,
            format!("{what}; log:\n{}", log_text()),
        )),
        Err(e) => Err(e),
    }
}

pub use test_support::{oracle_python, venv_python};

// === the legacy backend ===

/// `tests/legacy_backend/app.py`: answers every call with `<Record>` before `<Connect><Stream>`.
pub struct LegacyBackend {
    child: ChildGuard,
    pub addr: SocketAddr,
    pub log: PathBuf,
}

impl LegacyBackend {
    pub async fn start(dir: &Path) -> Result<LegacyBackend> {
        let addr = free_local_addr()?;
        let log = dir.join("legacy_backend.log");
        let (out, err) = log_file(&log)?;
        let mut child = ChildGuard::spawn(
            "legacy backend",
            Command::new(venv_python())
                .arg(repo_root().join("tests/legacy_backend/app.py"))
                .args(["--port", &addr.port().to_string()])
                .env_remove("PUBLIC_HOST")
                .stdout(out)
                .stderr(err),
        )?;
        wait_healthy("legacy backend", &mut child, addr, &log).await?;
        Ok(LegacyBackend { child, addr, log })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

// === the host service ===

/// What a test adds to the host service's configuration.
#[derive(Debug, Clone, Default)]
pub struct HostOptions {
    /// The address to listen on (default: a free port), for a test that must name it before
    /// the service starts (Envoy's cluster).
    pub listen: Option<SocketAddr>,
    /// Top-level keys (`api_token = "..."`), placed before the first section.
    pub top_level: String,
    /// Whole sections (`[edge]\nenvoy_admin_url = "..."`), appended.
    pub sections: String,
    /// `HOST_SERVICE_*` variables, on top of the file (they win over its keys).
    pub env: Vec<(String, String)>,
    /// The `host-service` binary to run (default: this checkout's release build), for a
    /// benchmark that compares an earlier release.
    pub binary: Option<PathBuf>,
    /// Run `host-service-test-engines` with these stand-in engines instead of the configured
    /// ones (the release build of this crate's binary; `binary` still wins when set).
    pub test_engines: Option<test_engines::Config>,
}

/// The host-service release binary with Whisper (the default engine) and signature checks on.
pub struct HostService {
    child: ChildGuard,
    pub addr: SocketAddr,
    pub log: PathBuf,
    pub data_dir: PathBuf,
}

impl HostService {
    pub async fn start(dir: &Path) -> Result<HostService> {
        Self::start_with(dir, HostOptions::default()).await
    }

    /// [`HostService::start`] with `options`; each replica needs a `dir` of its own.
    pub async fn start_with(dir: &Path, options: HostOptions) -> Result<HostService> {
        let addr = match options.listen {
            Some(a) => a,
            None => free_local_addr()?,
        };
        let data_dir = dir.join("data");
        let log = dir.join("host-service.log");
        let config = dir.join("host-service.toml");
        let model = test_support::whisper_model_dir();
        // twilio-sim plays calls faster than real time (`speed`), so media timestamps run ahead of
        // the wall clock by design here; Twilio's own run at real time.
        const JUMP_MS: u64 = 600_000;
        let toml = format!(
            "listen = \"{addr}\"\ndata_dir = \"{}\"\npublic_base_url = \"https://{PUBLIC_HOST}\"\n{}\n\
             [twilio]\nauth_token = \"{AUTH_TOKEN}\"\n\n\
             [recording]\nmax_timestamp_jump_ms = {JUMP_MS}\n\n\
             [transcription]\nengine = \"whisper\"\n\n\
             [transcription.whisper]\nmodel_dir = \"{}\"\n{}",
            data_dir.display(),
            options.top_level,
            model.display(),
            options.sections,
        );
        std::fs::write(&config, toml).map_err(io("writing host-service.toml"))?;
        let (out, err) = log_file(&log)?;
        let binary = match (&options.binary, &options.test_engines) {
            (Some(b), _) => b.clone(),
            (None, Some(_)) => release_binary("host-service-test-engines")?,
            (None, None) => release_binary("host-service")?,
        };
        let mut cmd = Command::new(binary);
        cmd.arg("--config").arg(&config).stdout(out).stderr(err);
        // The service refuses unknown HOST_SERVICE_* variables (the stand-ins, TEST_ENGINES_*
        // ones); none of the caller's may leak in.
        for (k, _) in std::env::vars() {
            if k.starts_with("HOST_SERVICE_") || k.starts_with("TEST_ENGINES_") {
                cmd.env_remove(k);
            }
        }
        if let Some(engines) = &options.test_engines {
            cmd.envs(engines.to_env());
        }
        // The same for the frame rate: twilio-sim at 8x sends 400 frames a second, Twilio 50.
        cmd.env("HOST_SERVICE_WEBSOCKET_MAX_FRAMES_PER_S", "5000");
        cmd.envs(options.env.iter().map(|(k, v)| (k, v)));
        let mut child = ChildGuard::spawn("host service", &mut cmd)?;
        wait_healthy("host service", &mut child, addr, &log).await?;
        Ok(HostService {
            child,
            addr,
            log,
            data_dir,
        })
    }

    /// `GET /api/calls/{sid}`: `None` on 404.
    pub async fn call(&self, call_sid: &str) -> Result<Option<serde_json::Value>> {
        let url = format!("http://{}/api/calls/{call_sid}", self.addr);
        let resp = http_client()
            .get(&url)
            .send()
            .await
            .map_err(|e| HarnessError::Http(format!("GET {url}: {e}")))?;
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !resp.status().is_success() {
            return Err(HarnessError::Http(format!("GET {url}: {}", resp.status())));
        }
        resp.json()
            .await
            .map(Some)
            .map_err(|e| HarnessError::Http(format!("GET {url} body: {e}")))
    }

    /// Poll the call until its pipeline finished (`completed` or `failed`), up to `timeout`.
    pub async fn finished_call(
        &self,
        call_sid: &str,
        timeout: Duration,
    ) -> Result<serde_json::Value> {
        let what = format!("call {call_sid} to finish its pipeline");
        poll(timeout, &what, || async {
            let call = self.call(call_sid).await.ok()??;
            matches!(call["status"].as_str(), Some("completed" | "failed")).then_some(call)
        })
        .await
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `GET /metrics`: the Prometheus text exposition.
    pub async fn metrics_text(&self) -> Result<String> {
        crate::get_text(&http_client(), &format!("http://{}/metrics", self.addr)).await
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL the service (a lost node, an OOM kill): no drain, nothing finalized.
    pub fn kill(&mut self) -> Result<()> {
        self.child.kill().map(drop)
    }
}

/// Media sockets open on the host service at `addr` now (`/healthz`'s `active_streams`);
/// `None` when it does not answer (a busy replica is not an idle one).
pub async fn active_streams(client: &reqwest::Client, addr: SocketAddr) -> Option<u64> {
    let body: serde_json::Value = client
        .get(format!("http://{addr}/healthz"))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    body["active_streams"].as_u64()
}

// === the stack ===

/// Envoy (shipped `envoy.yaml`, plugin config per test) in front of both services.
pub struct Stack {
    // Field order is drop order: Envoy first, then the services it fronts.
    pub envoy: Envoy,
    pub host: HostService,
    pub backend: LegacyBackend,
    pub dir: TempDir,
}

impl Stack {
    /// Start everything; `plugin_config` replaces the shipped filter config when given.
    pub async fn start(plugin_config: Option<&str>) -> Result<Stack> {
        let dir = tempfile::Builder::new()
            .prefix("twiml-guard-stack-")
            .tempdir()
            .map_err(io("creating a temp dir"))?;
        // The host shares the filter's media key: a stream starts only with the filter's token.
        let host_options = HostOptions {
            env: vec![(
                "HOST_SERVICE_TWILIO_MEDIA_KEY".into(),
                crate::MEDIA_KEY.into(),
            )],
            ..HostOptions::default()
        };
        let (backend, host) = tokio::try_join!(
            LegacyBackend::start(dir.path()),
            HostService::start_with(dir.path(), host_options)
        )?;
        // The shipped config checks Twilio signatures with the same token the simulator signs
        // with and the host service checks.
        let mut setup = EnvoySetup::new(backend.addr, host.addr).auth_token(AUTH_TOKEN);
        if let Some(json) = plugin_config {
            setup = setup.plugin_config(json);
        }
        let envoy = Envoy::start(&setup).await?;
        Ok(Stack {
            envoy,
            host,
            backend,
            dir,
        })
    }

    /// The voice webhook as Twilio would request it.
    pub fn public_webhook(&self) -> String {
        format!("https://{PUBLIC_HOST}/webhook/incoming_call")
    }

    /// The TwiML the backend writes, straight from it (no Envoy), for the same public host.
    pub async fn backend_twiml(&self, call_sid: &str) -> Result<String> {
        let url = format!("http://{}/webhook/incoming_call", self.backend.addr);
        let resp = http_client()
            .post(&url)
            .header("host", PUBLIC_HOST)
            .form(&[("CallSid", call_sid), ("To", "+15005550001")])
            .send()
            .await
            .map_err(|e| HarnessError::Http(format!("POST {url}: {e}")))?;
        resp.text()
            .await
            .map_err(|e| HarnessError::Http(format!("POST {url} body: {e}")))
    }
}

// === speech and scoring ===

/// Speak `text` with espeak-ng into a WAV file (22.05 kHz mono, 16-bit).
pub fn speak(text: &str, path: &Path) -> Result<()> {
    test_support::speak(text, path).map_err(|e| HarnessError::Speech(e.to_string()))
}
