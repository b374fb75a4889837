//! The one thing that differs between the two engines, chosen once when the store connects:
//! how a connection is opened and migrated, how a writing transaction begins, how a claim locks
//! its row, how the database reads its clock, and whether several replicas share the database. Every engine-specific branch of
//! the store asks its `Dialect`; the queries themselves are the same for both.

use super::{Result, StoreOptions};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::Migrator;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{AnyPool, ConnectOptions, Executor};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

/// The SQLite schema, in order. The first migration is the schema the service created before
/// migrations existed, every statement `IF NOT EXISTS`: a database from that time adopts it
/// unchanged and then takes the later ones.
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations/sqlite");
/// The same schema for PostgreSQL (64-bit integers, identity keys).
pub static MIGRATOR_POSTGRES: Migrator = sqlx::migrate!("./migrations/postgres");

const SQLITE_POOL_SIZE: u32 = 4;

/// Which engine a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// One replica, its database a file in the data directory.
    Sqlite,
    /// Several replicas on one database.
    Postgres,
}

impl Dialect {
    /// Whether several replicas may share the database: they say they are alive, take over the
    /// streams of dead ones, wake each other's workers with `NOTIFY`, and must share one
    /// recordings directory.
    pub fn shared(self) -> bool {
        self == Dialect::Postgres
    }

    /// The database's wall clock in Unix milliseconds, as an SQL expression: what replicas
    /// compare their heartbeats against, so no replica's own clock decides who is alive.
    pub(super) fn now_ms_sql(self) -> &'static str {
        match self {
            Dialect::Sqlite => "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)",
            Dialect::Postgres => "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)",
        }
    }

    /// The row lock a claim takes so two replicas never take the same job (SQLite has one
    /// writer at a time anyway).
    pub(super) fn claim_lock(self) -> &'static str {
        match self {
            Dialect::Sqlite => "",
            Dialect::Postgres => "FOR UPDATE SKIP LOCKED",
        }
    }

    /// A transaction that writes what concerns one call. On SQLite, `BEGIN IMMEDIATE` takes the
    /// write lock at the start, so a busy database makes it wait (`busy_timeout`): a plain
    /// (deferred) `BEGIN` upgrades at its first write and, when another connection committed in
    /// between, SQLite refuses at once with SQLITE_BUSY whatever the timeout (under a burst of
    /// stream starts that lost calls). On PostgreSQL, a transaction-scoped advisory lock on the
    /// call gives the same one-writer-at-a-time per call across replicas (reading the next
    /// stream index and inserting it, ending a call and queueing its job), while other calls
    /// write in parallel.
    pub(super) async fn begin_write(
        self,
        pool: &AnyPool,
        call_sid: &str,
    ) -> Result<sqlx::Transaction<'static, sqlx::Any>> {
        match self {
            Dialect::Sqlite => Ok(pool.begin_with("BEGIN IMMEDIATE").await?),
            Dialect::Postgres => {
                let mut tx = pool.begin().await?;
                sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
                    .bind(call_sid)
                    .execute(&mut *tx)
                    .await?;
                Ok(tx)
            }
        }
    }

    /// Open the pool at `location` and bring its schema up to date.
    pub(super) async fn connect(
        self,
        location: &Location,
        options: &StoreOptions,
    ) -> Result<AnyPool> {
        match location {
            Location::Sqlite(path) => open_sqlite(path).await,
            Location::Postgres(url) => open_postgres(url, options).await,
        }
    }
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
    pub fn dialect(&self) -> Dialect {
        match self {
            Location::Sqlite(_) => Dialect::Sqlite,
            Location::Postgres(_) => Dialect::Postgres,
        }
    }

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
