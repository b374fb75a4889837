//! A real PostgreSQL server for tests, so code that runs on PostgreSQL in production is tested
//! against the server itself rather than a stand-in: a throwaway cluster in a temp dir, on a free
//! loopback port, gone when dropped.

use std::fs::File;
use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use crate::{poll_blocking, Error};

/// Where Debian's `postgresql-<version>` packages put the server binaries, one folder a version.
const DEBIAN_ROOT: &str = "/usr/lib/postgresql";
/// The cluster's superuser; with `trust` authentication any client may connect as it.
const SUPERUSER: &str = "postgres";
/// initdb and postgres refuse to run as root, so root runs them as Debian's system user.
const SYSTEM_USER: &str = "postgres";
/// A machine busy compiling may take a while to initdb and start.
const START_TIMEOUT: Duration = Duration::from_secs(60);
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// A port picked free can be taken before postgres binds it; a few fresh picks settle that.
const START_ATTEMPTS: usize = 5;
const LOG_TAIL_LINES: usize = 20;

/// A PostgreSQL cluster of its own, reachable at `127.0.0.1:port()` (and by its Unix socket in
/// `dir()`). Dropping it stops the server and removes the folder.
#[derive(Debug)]
pub struct PgCluster {
    files: Files,
    child: Child,
    port: u16,
}

/// An initdb'd cluster, not yet running.
#[derive(Debug)]
struct Files {
    dir: tempfile::TempDir,
    bin: PathBuf,
    /// `Some((uid, gid))` when the server runs as the system user rather than as this process.
    run_as: Option<(u32, u32)>,
}

impl Files {
    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    /// A server-side command (initdb, postgres, pg_ctl), as the system user when running as
    /// root, started in the cluster's folder so it never needs to read this process's working
    /// directory.
    fn command(&self, program: &str) -> Command {
        let program = self.bin.join(program);
        let mut cmd = match self.run_as {
            Some(_) => {
                let mut c = Command::new("setpriv");
                c.args([
                    &format!("--reuid={SYSTEM_USER}"),
                    &format!("--regid={SYSTEM_USER}"),
                    "--init-groups",
                    "--",
                ])
                .arg(program);
                c
            }
            None => Command::new(program),
        };
        cmd.current_dir(self.dir.path()).stdin(Stdio::null());
        cmd
    }
}

impl PgCluster {
    /// initdb a cluster in a fresh temp dir and start `postgres` on 127.0.0.1 at a free port,
    /// returning once it accepts connections. Blocking: in a `#[tokio::test]`, start it before
    /// anything that needs the runtime to make progress.
    pub fn start() -> Result<PgCluster, Error> {
        let mut files = init()?;
        let mut last_clash = String::new();
        for _ in 0..START_ATTEMPTS {
            match start_server(files, free_port()?)? {
                Started::Ready(cluster) => return Ok(cluster),
                Started::PortTaken(back, log) => (files, last_clash) = (back, log),
            }
        }
        Err(failed(
            format!("postgres found its port taken {START_ATTEMPTS} times"),
            last_clash,
        ))
    }

    /// [`start`](Self::start) off the runtime's threads, for a `#[tokio::test]`; a cluster that
    /// cannot start fails the test saying what installs PostgreSQL.
    pub async fn started() -> PgCluster {
        tokio::task::spawn_blocking(PgCluster::start)
            .await
            .expect("the thread starting PostgreSQL")
            .expect("a PostgreSQL cluster for the test (`make setup` installs postgresql)")
    }

    /// Create an empty database `name` (ASCII lowercase letters, digits and `_`, at most 63
    /// bytes: a name that needs no quoting in SQL or in the URL) and return its URL,
    /// `postgres://postgres@127.0.0.1:<port>/<name>`.
    pub fn database(&self, name: &str) -> Result<String, Error> {
        let plain = !name.is_empty()
            && name.len() <= 63
            && !name.starts_with(|c: char| c.is_ascii_digit())
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !plain {
            return Err(failed(
                format!("database name {name:?}"),
                "use ASCII lowercase letters, digits (not first) and _, at most 63 bytes",
            ));
        }
        let port = self.port.to_string();
        let out = Command::new(self.files.bin.join("createdb"))
            .args(["-h", "127.0.0.1", "-p", &port, "-U", SUPERUSER, name])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| failed("running createdb", e))?;
        if !out.status.success() {
            return Err(failed(format!("createdb {name} failed"), output_text(&out)));
        }
        Ok(format!(
            "postgres://{SUPERUSER}@127.0.0.1:{}/{name}",
            self.port
        ))
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The cluster's folder: `data/` (the cluster), `postgres.log` (the server's stderr) and the
    /// Unix socket.
    pub fn dir(&self) -> &Path {
        self.files.dir.path()
    }

    /// The server binaries' folder (initdb, postgres, psql, ...).
    pub fn bin_dir(&self) -> &Path {
        &self.files.bin
    }

    /// Freeze the whole cluster (the postmaster, then every backend it forked) with SIGSTOP, as
    /// a hung server or a stalled failover looks to its clients: connections stay open, new
    /// ones are queued by the kernel, and nothing answers until [`resume`](Self::resume).
    pub fn pause(&self) -> Result<(), Error> {
        let postmaster = self.child.id();
        signal("STOP", &[postmaster])?;
        // A stop takes effect when the process next runs, and a fork under way completes first:
        // once the postmaster is seen stopped it forks no new backend while the list is read.
        wait_stopped(&[postmaster])?;
        let backends = children_of(postmaster)?;
        signal("STOP", &backends)?;
        wait_stopped(&backends)
    }

    /// Let a cluster [`pause`](Self::pause) froze run again: the backends first, so the
    /// postmaster finds them running.
    pub fn resume(&self) -> Result<(), Error> {
        let postmaster = self.child.id();
        signal("CONT", &children_of(postmaster)?)?;
        signal("CONT", &[postmaster])
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        // Fast shutdown: connections a test left open (a pool not yet dropped) are closed rather
        // than waited for, as a smart shutdown would.
        let signalled = self
            .files
            .command("pg_ctl")
            .args(["stop", "-m", "fast", "-W", "-s", "-D"])
            .arg(self.files.data())
            .status()
            .is_ok_and(|s| s.success());
        let exited = signalled
            && poll_blocking(STOP_TIMEOUT, "postgres to stop", || {
                self.child.try_wait().ok().flatten()
            })
            .is_ok();
        if !exited {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        // The TempDir removes the folder as the field drops, now that nothing writes to it.
    }
}

/// The processes whose parent is `pid`, from /proc (a backend is its own session leader, so
/// its process group does not name it).
fn children_of(pid: u32) -> Result<Vec<u32>, Error> {
    let entries = std::fs::read_dir("/proc").map_err(|e| failed("reading /proc", e))?;
    Ok(entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|child| {
            // `pid (comm) state ppid ...`: comm may hold spaces, so split after its `)`.
            std::fs::read_to_string(format!("/proc/{child}/stat"))
                .ok()
                .and_then(|stat| {
                    let rest = stat.rsplit_once(')')?.1;
                    rest.split_whitespace().nth(1)?.parse::<u32>().ok()
                })
                == Some(pid)
        })
        .collect())
}

/// The state letter of `pid` in /proc (`T` once stopped); `None` once it is gone.
fn proc_state(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ...`: comm may hold spaces, so split after its `)`.
    Some(
        stat.rsplit_once(')')?
            .1
            .split_whitespace()
            .next()?
            .to_owned(),
    )
}

/// Wait until every one of `pids` is stopped, or gone (an exited backend stays a zombie while
/// the stopped postmaster cannot reap it).
fn wait_stopped(pids: &[u32]) -> Result<(), Error> {
    poll_blocking(STOP_TIMEOUT, "postgres processes to stop", || {
        pids.iter()
            .all(|&pid| proc_state(pid).is_none_or(|s| matches!(s.as_str(), "T" | "Z" | "X")))
            .then_some(())
    })
}

/// `kill -SIG pid...` (the crate has no libc).
fn signal(sig: &str, pids: &[u32]) -> Result<(), Error> {
    if pids.is_empty() {
        return Ok(());
    }
    let out = Command::new("kill")
        .arg(format!("-{sig}"))
        .args(pids.iter().map(u32::to_string))
        .stdin(Stdio::null())
        .output()
        .map_err(|e| failed(format!("running kill -{sig}"), e))?;
    if !out.status.success() {
        return Err(failed(format!("kill -{sig} {pids:?}"), output_text(&out)));
    }
    Ok(())
}

/// initdb a cluster in a fresh temp dir, owned by the user the server will run as.
fn init() -> Result<Files, Error> {
    let bin = server_bin_dir()?;
    let run_as = if effective_uid()? == 0 {
        Some(system_user_ids()?)
    } else {
        None
    };
    let dir = tempfile::Builder::new()
        .prefix("pg-cluster-")
        .tempdir()
        .map_err(|e| failed("creating the cluster's temp dir", e))?;
    if let Some((uid, gid)) = run_as {
        std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).map_err(|e| {
            failed(
                format!("chown {} to {SYSTEM_USER}", dir.path().display()),
                e,
            )
        })?;
    }
    let files = Files { dir, bin, run_as };
    let out = files
        .command("initdb")
        .args(["-A", "trust", "-U", SUPERUSER, "--no-sync"])
        .args(["--encoding=UTF8", "--locale=C", "-D"])
        .arg(files.data())
        .output()
        .map_err(|e| failed("running initdb", e))?;
    if !out.status.success() {
        return Err(failed("initdb failed", output_text(&out)));
    }
    Ok(files)
}

#[derive(Debug)]
enum Started {
    Ready(PgCluster),
    /// The files back for another try, and the log's tail.
    PortTaken(Files, String),
}

/// Start the server on `port` and wait until it accepts connections, or until it exits.
fn start_server(files: Files, port: u16) -> Result<Started, Error> {
    let log = File::create(files.log()).map_err(|e| failed("creating postgres.log", e))?;
    let mut child = files
        .command("postgres")
        .arg("-D")
        .arg(files.data())
        .arg("-k")
        .arg(files.dir.path())
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(["-c", "fsync=off", "-c", "max_connections=200"])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|e| failed("starting postgres", e))?;
    let pg_isready = files.bin.join("pg_isready");
    let port_arg = port.to_string();
    // Each round asks whether the server has exited (and how) before asking whether it is ready.
    let waited = poll_blocking(
        START_TIMEOUT,
        "postgres to accept connections",
        || match child.try_wait() {
            Ok(Some(status)) => Some(Err(status.to_string())),
            Err(e) => Some(Err(e.to_string())),
            Ok(None) => Command::new(&pg_isready)
                .args(["-q", "-h", "127.0.0.1", "-p", &port_arg, "-U", SUPERUSER])
                .stdin(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
                .then_some(Ok(())),
        },
    );
    match waited {
        Ok(Ok(())) => Ok(Started::Ready(PgCluster { files, child, port })),
        Ok(Err(exit)) => {
            let log = log_tail(&files.log());
            if log.contains("Address already in use") {
                Ok(Started::PortTaken(files, log))
            } else {
                Err(failed(format!("postgres exited ({exit})"), log))
            }
        }
        Err(timeout) => {
            let _ = child.kill();
            let _ = child.wait();
            Err(failed(timeout.to_string(), log_tail(&files.log())))
        }
    }
}

/// The newest `/usr/lib/postgresql/<version>/bin` holding initdb.
fn server_bin_dir() -> Result<PathBuf, Error> {
    newest_bin_dir(Path::new(DEBIAN_ROOT))
        .ok_or_else(|| Error::PostgresMissing(format!("{DEBIAN_ROOT}/*/bin/initdb")))
}

/// `<root>/<version>/bin` of the highest version (compared as numbers, so 16 beats 9.6) whose
/// bin holds initdb: a version folder left by a removed package has none.
fn newest_bin_dir(root: &Path) -> Option<PathBuf> {
    std::fs::read_dir(root)
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let version = e
                .file_name()
                .to_str()?
                .split('.')
                .map(|p| p.parse::<u32>().ok())
                .collect::<Option<Vec<u32>>>()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .max()
        .map(|(_, bin)| bin)
}

/// This process's effective uid, from /proc (the crate has no libc).
fn effective_uid() -> Result<u32, Error> {
    let status = std::fs::read_to_string("/proc/self/status")
        .map_err(|e| failed("reading /proc/self/status", e))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1)?.parse().ok())
        .ok_or_else(|| {
            failed(
                "reading /proc/self/status",
                "no effective uid on its Uid: line",
            )
        })
}

/// The uid and gid of the `postgres` system user, from /etc/passwd.
fn system_user_ids() -> Result<(u32, u32), Error> {
    let passwd =
        std::fs::read_to_string("/etc/passwd").map_err(|e| failed("reading /etc/passwd", e))?;
    passwd
        .lines()
        .find_map(|l| {
            let mut fields = l.split(':');
            (fields.next()? == SYSTEM_USER).then_some(())?;
            let (_, uid, gid) = (fields.next()?, fields.next()?, fields.next()?);
            Some((uid.parse().ok()?, gid.parse().ok()?))
        })
        .ok_or_else(|| {
            failed(
                format!("running as root needs the `{SYSTEM_USER}` system user"),
                "none in /etc/passwd: `make setup` installs Debian's postgresql, which creates it",
            )
        })
}

fn free_port() -> Result<u16, Error> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| failed("finding a free port", e))
}

fn log_tail(path: &Path) -> String {
    let mut text = String::new();
    if let Err(e) = File::open(path).and_then(|mut f| f.read_to_string(&mut text)) {
        return format!("(cannot read {}: {e})", path.display());
    }
    let lines: Vec<&str> = text.lines().collect();
    let tail = &lines[lines.len().saturating_sub(LOG_TAIL_LINES)..];
    format!("{}:\n{}", path.display(), tail.join("\n"))
}

fn output_text(out: &Output) -> String {
    format!(
        "{}; {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
    .trim_end()
    .to_string()
}

fn failed(what: impl Into<String>, detail: impl ToString) -> Error {
    Error::Postgres {
        what: what.into(),
        detail: detail.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpStream;

    fn psql(bin: &Path, url: &str, sql: &str) -> String {
        let out = Command::new(bin.join("psql"))
            .args([url, "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .output()
            .expect("running psql");
        assert!(out.status.success(), "psql {url}: {}", output_text(&out));
        String::from_utf8(out.stdout).unwrap()
    }

    #[test]
    #[ignore = "needs PostgreSQL (test-support's PgCluster): `make test` runs it"]
    fn a_cluster_serves_its_databases_and_leaves_nothing_behind() {
        let cluster = PgCluster::start().unwrap();
        let (port, dir) = (cluster.port(), cluster.dir().to_path_buf());
        let bin = cluster.bin_dir().to_path_buf();
        assert!(dir.join("data").join("PG_VERSION").is_file());

        let calls = cluster.database("calls").unwrap();
        let other = cluster.database("calls_2").unwrap();
        assert_eq!(calls, format!("postgres://postgres@127.0.0.1:{port}/calls"));
        assert_eq!(
            other,
            format!("postgres://postgres@127.0.0.1:{port}/calls_2")
        );
        assert_eq!(psql(&bin, &calls, "SELECT 1"), "1\n");
        assert_eq!(psql(&bin, &other, "SELECT current_database()"), "calls_2\n");
        // Each database is its own: a table made in one is not in the other.
        psql(&bin, &calls, "CREATE TABLE t (x int)");
        assert_eq!(
            psql(
                &bin,
                &other,
                "SELECT count(*) FROM pg_tables WHERE tablename = 't'"
            ),
            "0\n"
        );

        match cluster.database("calls") {
            Err(Error::Postgres { what, detail }) => {
                assert_eq!(what, "createdb calls failed");
                assert!(
                    detail.contains(r#"database "calls" already exists"#),
                    "{detail}"
                );
            }
            other => panic!("expected createdb to refuse a second `calls`, got {other:?}"),
        }
        match cluster.database("Calls; DROP") {
            Err(Error::Postgres { what, .. }) => {
                assert_eq!(what, r#"database name "Calls; DROP""#)
            }
            other => panic!("expected the name refused, got {other:?}"),
        }

        drop(cluster);
        assert!(!dir.exists(), "{} is still there", dir.display());
        let refused = TcpStream::connect(("127.0.0.1", port)).unwrap_err();
        assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
    }

    #[test]
    #[ignore = "needs PostgreSQL (test-support's PgCluster): `make test` runs it"]
    fn a_port_taken_before_postgres_binds_it_is_told_apart_and_tried_again() {
        let files = init().unwrap();
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        let files = match start_server(files, port).unwrap() {
            Started::PortTaken(files, log) => {
                assert!(log.contains("Address already in use"), "{log}");
                files
            }
            Started::Ready(_) => panic!("postgres started on the taken port {port}"),
        };
        drop(taken);
        // The same cluster starts on the port once it is free: the failed try left no lock.
        match start_server(files, port).unwrap() {
            Started::Ready(cluster) => {
                assert_eq!(cluster.port(), port);
                let url = cluster.database("after_clash").unwrap();
                assert_eq!(psql(cluster.bin_dir(), &url, "SELECT 1"), "1\n");
            }
            Started::PortTaken(_, log) => panic!("port {port} still taken: {log}"),
        }
    }

    #[test]
    #[ignore = "needs PostgreSQL (test-support's PgCluster): `make test` runs it"]
    fn a_paused_cluster_answers_nothing_until_resumed() {
        let cluster = PgCluster::start().unwrap();
        let url = cluster.database("paused").unwrap();
        let bin = cluster.bin_dir().to_path_buf();
        cluster.pause().unwrap();
        let postmaster = cluster.child.id();
        let backends = children_of(postmaster).unwrap();
        assert!(!backends.is_empty());
        for pid in std::iter::once(postmaster).chain(backends.iter().copied()) {
            let state = proc_state(pid);
            assert!(
                matches!(state.as_deref(), Some("T" | "Z") | None),
                "process {pid} is not stopped: {state:?}"
            );
        }
        // A client gets no answer while paused: psql is still waiting after its 2 s timeout.
        let mut waiting = Command::new(bin.join("psql"))
            .args([&url, "-X", "-A", "-t", "-c", "SELECT 1"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let answered = poll_blocking(Duration::from_secs(2), "psql to answer", || {
            waiting.try_wait().unwrap()
        });
        assert!(answered.is_err(), "psql answered a paused cluster");
        cluster.resume().unwrap();
        let status = poll_blocking(Duration::from_secs(30), "psql to answer", || {
            waiting.try_wait().unwrap()
        })
        .unwrap();
        assert!(status.success());
        let mut out = String::new();
        waiting
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        assert_eq!(out, "1\n");
        assert_eq!(psql(&bin, &url, "SELECT 2"), "2\n");
    }

    #[test]
    fn the_newest_version_with_an_initdb_is_picked() {
        let root = tempfile::tempdir().unwrap();
        for (version, initdb) in [("9.6", true), ("15", true), ("16", false), ("common", true)] {
            let bin = root.path().join(version).join("bin");
            std::fs::create_dir_all(&bin).unwrap();
            if initdb {
                File::create(bin.join("initdb")).unwrap();
            }
        }
        assert_eq!(
            newest_bin_dir(root.path()),
            Some(root.path().join("15").join("bin"))
        );
        assert_eq!(newest_bin_dir(&root.path().join("none")), None);
        assert_eq!(
            Error::PostgresMissing(format!("{DEBIAN_ROOT}/*/bin/initdb")).to_string(),
            "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb): \
             `make setup` installs Debian's postgresql"
        );
    }
}
