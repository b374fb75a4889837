//! The durable state: calls, their streams, errors, and the post-call job queue, in SQLite (WAL,
//! one replica) or PostgreSQL (several replicas). Every state change that must not happen twice
//! (a webhook retry, a stage completing after a crash) is one transaction guarded by a condition,
//! so replays and dead workers change nothing.

//!
//! - `calls`: the call repository (calls, streams, errors, retention deletes, API reads);
//! - `queue`: the post-call job queue and its stages;
//! - `replicas`: which replica records which stream, and taking over a dead one's streams;
//! - `status`: the states of calls, streams, jobs and transcriptions;
//! - `views`: the JSON shapes the API returns.
//!
//! One set of queries serves both engines (sqlx `Any`, `$N` parameters, standard SQL); the few
//! places where they differ ask `Store::backend`. The schema is versioned per engine:
//! `host-service/migrations/{sqlite,postgres}/NNNN_*.sql`, embedded at build time and applied in
//! order when the store opens; both hold the same tables and columns.

mod calls;
mod queue;
mod replicas;
mod status;
pub mod views;

pub use calls::{CallFacts, StreamStart, TwilioRecording};
pub use queue::{Job, Outcome, Stage, StageOutput, JOBS_CHANNEL};
pub use status::{CallStatus, JobState, StreamStatus, TranscriptionStatus};
pub use views::{CallDetail, CallSummary, ErrorRow, JobRow, RecordingDetail, StreamRow};

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::Migrator;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{AnyPool, ConnectOptions, Executor};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("database file: {0}")]
    Io(#[from] std::io::Error),
    #[error("database schema: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("{0}")]
    SharedDir(String),
}

pub type Result<T> = std::result::Result<T, DbError>;

/// The SQLite schema, in order. The first migration is the schema the service created before
/// migrations existed, every statement `IF NOT EXISTS`: a database from that time adopts it
/// unchanged and then takes the later ones.
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations/sqlite");
/// The same schema for PostgreSQL (64-bit integers, identity keys).
pub static MIGRATOR_POSTGRES: Migrator = sqlx::migrate!("./migrations/postgres");

const SQLITE_POOL_SIZE: u32 = 4;

/// Which engine a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Where the database is, from `database.url`.
#[derive(Clone, PartialEq, Eq)]
pub enum Location {
    Sqlite(PathBuf),
    Postgres(String),
}

impl std::fmt::Debug for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl Location {
    /// `sqlite://PATH` (or `sqlite:PATH`), `postgres://...` or `postgresql://...`.
    pub fn parse(url: &str) -> std::result::Result<Location, String> {
        if let Some(rest) = url
            .strip_prefix("sqlite://")
            .or(url.strip_prefix("sqlite:"))
        {
            let path = rest.split('?').next().unwrap_or_default();
            if path.is_empty() || path == ":memory:" {
                return Err(
                    "sqlite:// needs a file path (the state must outlive the process)".into(),
                );
            }
            return Ok(Location::Sqlite(PathBuf::from(path)));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let parsed = url::Url::parse(url).map_err(|e| format!("not a valid URL: {e}"))?;
            if parsed.host_str().unwrap_or_default().is_empty() {
                return Err("postgres:// needs a host".into());
            }
            return Ok(Location::Postgres(url.to_owned()));
        }
        Err("must start with sqlite:// or postgres://".into())
    }

    /// `database.url`, or SQLite in the data directory when it is unset.
    pub fn from_config(
        url: Option<&str>,
        data_dir: &Path,
    ) -> std::result::Result<Location, String> {
        match url {
            Some(url) => Location::parse(url),
            None => Ok(Location::Sqlite(data_dir.join("host-service.db"))),
        }
    }

    /// For logs: a PostgreSQL URL without its password.
    pub fn redacted(&self) -> String {
        match self {
            Location::Sqlite(path) => format!("sqlite://{}", path.display()),
            Location::Postgres(url) => match url::Url::parse(url) {
                Ok(mut u) => {
                    if u.password().is_some() {
                        let _ = u.set_password(Some("***"));
                    }
                    u.to_string()
                }
                Err(_) => "postgres://(unparseable)".into(),
            },
        }
    }
}

/// How the store connects, beyond where.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// PostgreSQL: the pool's size.
    pub max_connections: u32,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            max_connections: 10,
        }
    }
}

#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// This process's name in `replicas` and `streams.replica`.
    replica: Arc<str>,
    /// Woken when jobs may have become due, so idle workers need not poll: on SQLite by the
    /// transactions of this process, on PostgreSQL by `NOTIFY` from any replica (see
    /// `queue::listen`).
    jobs_changed: Arc<Notify>,
    /// PostgreSQL: where `listen_for_jobs` connects.
    postgres_url: Option<Arc<str>>,
}

fn install_drivers() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(sqlx::any::install_default_drivers);
}

impl Store {
    /// Open (creating it readable by this user only) the SQLite database at `path`.
    pub async fn open(path: &Path) -> Result<Store> {
        Store::connect(&Location::Sqlite(path.to_owned()), &StoreOptions::default()).await
    }

    pub async fn connect(location: &Location, options: &StoreOptions) -> Result<Store> {
        install_drivers();
        let (pool, backend) = match location {
            Location::Sqlite(path) => (open_sqlite(path).await?, Backend::Sqlite),
            Location::Postgres(url) => (open_postgres(url, options).await?, Backend::Postgres),
        };
        Ok(Store {
            pool,
            backend,
            replica: replicas::new_replica_name().into(),
            jobs_changed: Arc::new(Notify::new()),
            postgres_url: match location {
                Location::Postgres(url) => Some(url.as_str().into()),
                Location::Sqlite(_) => None,
            },
        })
    }

    /// A transaction that writes what concerns one call. On SQLite, `BEGIN IMMEDIATE` takes the
    /// write lock at the start, so a busy database makes it wait (`busy_timeout`): a plain
    /// (deferred) `BEGIN` upgrades at its first write and, when another connection committed in
    /// between, SQLite refuses at once with SQLITE_BUSY whatever the timeout (under a burst of
    /// stream starts that lost calls). On PostgreSQL, a transaction-scoped advisory lock on the
    /// call gives the same one-writer-at-a-time per call across replicas (reading the next
    /// stream index and inserting it, ending a call and queueing its job), while other calls
    /// write in parallel.
    pub(crate) async fn write_tx(
        &self,
        call_sid: &str,
    ) -> Result<sqlx::Transaction<'static, sqlx::Any>> {
        match self.backend {
            Backend::Sqlite => Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?),
            Backend::Postgres => {
                let mut tx = self.pool.begin().await?;
                sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
                    .bind(call_sid)
                    .execute(&mut *tx)
                    .await?;
                Ok(tx)
            }
        }
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// This process's replica name.
    pub fn replica(&self) -> &str {
        &self.replica
    }

    pub(crate) fn postgres_url(&self) -> Option<&str> {
        self.postgres_url.as_deref()
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// `synchronous=FULL`: a commit the service acknowledged (a webhook answered, a stage completed)
/// survives a power cut, not only a process crash.
async fn open_sqlite(path: &Path) -> Result<AnyPool> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        crate::fsutil::create_private_dir(dir)?;
    }
    // Before SQLite opens it; SQLite gives its `-wal` and `-shm` files the same permissions.
    crate::fsutil::touch_private_file(path)?;
    let url = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .to_url_lossy();
    let options = AnyConnectOptions::from_url(&url)?;
    // Switching a file to WAL takes an exclusive lock, and SQLite answers a second connection
    // racing for it with SQLITE_BUSY without waiting. One connection makes the file WAL and the
    // schema first; the pool's connections then find it done.
    let first = AnyPoolOptions::new()
        .max_connections(1)
        .after_connect(|conn, _| {
            Box::pin(async move {
                conn.execute("PRAGMA busy_timeout = 10000; PRAGMA journal_mode = WAL;")
                    .await?;
                Ok(())
            })
        })
        .connect_with(options.clone())
        .await?;
    let migrated = MIGRATOR.run(&first).await;
    first.close().await;
    migrated?;
    // A local file needs no liveness pings, reaping or lazy connects: every connection is
    // opened up front and kept.
    Ok(AnyPoolOptions::new()
        .max_connections(SQLITE_POOL_SIZE)
        .min_connections(SQLITE_POOL_SIZE)
        .idle_timeout(None)
        .max_lifetime(None)
        .test_before_acquire(false)
        .after_connect(|conn, _| {
            Box::pin(async move {
                conn.execute(
                    "PRAGMA busy_timeout = 10000; PRAGMA synchronous = FULL; \
                     PRAGMA foreign_keys = ON;",
                )
                .await?;
                Ok(())
            })
        })
        .connect_with(options)
        .await?)
}

/// Several replicas migrate at once on a rolling start: sqlx's migrator holds an advisory lock
/// on PostgreSQL, so one applies the schema and the others find it done.
async fn open_postgres(url: &str, options: &StoreOptions) -> Result<AnyPool> {
    let connect = AnyConnectOptions::from_str(url)?;
    let pool = AnyPoolOptions::new()
        .max_connections(options.max_connections)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(connect)
        .await?;
    MIGRATOR_POSTGRES.run(&pool).await?;
    Ok(pool)
}

#[cfg(test)]
mod tests;
