//! The durable state: calls, their streams, errors, and the post-call job queue, in SQLite (WAL,
//! one replica) or PostgreSQL (several replicas). Every state change that must not happen twice
//! (a webhook retry, a stage completing after a crash) is one transaction guarded by a condition,
//! so replays and dead workers change nothing.

//!
//! - `calls`: the call repository (calls, streams, errors, retention deletes, API reads);
//! - `queue`: the post-call job queue and its stages;
//! - `replicas`: which replica records which stream, and taking over a dead one's streams;
//! - `starts`: a stream's start: the call's row, the cap on its open streams, a late start;
//! - `status`: the states of calls, streams, jobs and transcriptions;
//! - `views`: the JSON shapes the API returns.
//!
//! One set of queries serves both engines (sqlx `Any`, `$N` parameters, standard SQL, states
//! bound as parameters); the few places where they differ are methods of the `Dialect` chosen
//! when the store connects (`dialect`). The schema is versioned per engine:
//! `host-service/migrations/{sqlite,postgres}/NNNN_*.sql`, embedded at build time and applied in
//! order when the store opens; both hold the same tables and columns.

mod calls;
mod changes;
mod dialect;
mod queue;
mod replicas;
mod starts;
mod status;
pub mod views;

pub use calls::{CallFacts, TwilioRecording};
pub use changes::{ANY_CALL, CALLS_CHANNEL};
pub use dialect::{Dialect, Location, MIGRATOR, MIGRATOR_POSTGRES};
pub use queue::{Job, Outcome, Stage, StageOutput, JOBS_CHANNEL};
pub use replicas::{TakenStream, FIRST_FENCE};
pub use starts::{Admit, StreamStart};
pub use status::{
    CallStatus, CloseReason, JobState, RecordingStatus, StreamStatus, TranscriptionStatus,
};
pub use views::{CallDetail, CallSummary, ErrorRow, JobRow, RecordingDetail, StreamRow};

use sqlx::AnyPool;
use std::path::Path;
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
    #[error("database: no answer within {0} ms")]
    Timeout(u128),
}

impl DbError {
    /// A database that is away or saturated: the client may retry; nothing is broken here.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            DbError::Timeout(_) | DbError::Sql(sqlx::Error::PoolTimedOut)
        )
    }
}

/// `query`, or [`DbError::Timeout`] past `limit`: nothing a request or a socket does waits on a
/// hung database (or a pool with no free connection) longer than that.
pub async fn within<T>(
    limit: Duration,
    query: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    tokio::time::timeout(limit, query)
        .await
        .unwrap_or(Err(DbError::Timeout(limit.as_millis())))
}

pub type Result<T> = std::result::Result<T, DbError>;

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
    dialect: Dialect,
    /// This process's name in `replicas` and `streams.replica`.
    replica: Arc<str>,
    /// Woken when jobs may have become due, so idle workers need not poll: on SQLite by the
    /// transactions of this process, on PostgreSQL by `NOTIFY` from any replica (see
    /// `queue::listen`).
    jobs_changed: Arc<Notify>,
    /// CallSids of calls whose row changed (`changes`).
    calls_changed: tokio::sync::broadcast::Sender<Arc<str>>,
    /// PostgreSQL: where `listen` connects.
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
        let dialect = location.dialect();
        let pool = dialect.connect(location, options).await?;
        Ok(Store {
            pool,
            dialect,
            replica: replicas::new_replica_name().into(),
            jobs_changed: Arc::new(Notify::new()),
            calls_changed: tokio::sync::broadcast::channel(changes::CAPACITY).0,
            postgres_url: match location {
                Location::Postgres(url) => Some(url.as_str().into()),
                Location::Sqlite(_) => None,
            },
        })
    }

    /// A transaction that writes what concerns one call, one writer at a time per call
    /// (`Dialect::begin_write`).
    pub(crate) async fn write_tx(
        &self,
        call_sid: &str,
    ) -> Result<sqlx::Transaction<'static, sqlx::Any>> {
        self.dialect.begin_write(&self.pool, call_sid).await
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// This process's replica name.
    pub fn replica(&self) -> &str {
        &self.replica
    }

    pub(crate) fn postgres_url(&self) -> Option<&str> {
        self.postgres_url.as_deref()
    }

    /// The database's own clock (Unix milliseconds): replicas stamp and compare heartbeats and
    /// set their clocks by it, so a replica whose clock is off decides nothing.
    pub async fn db_now_ms(&self) -> Result<i64> {
        Ok(
            sqlx::query_scalar(&format!("SELECT {}", self.dialect.now_ms_sql()))
                .fetch_one(&self.pool)
                .await?,
        )
    }

    /// Whether the database answers `SELECT 1` within `deadline` (`/readyz`): a hung server
    /// or a pool with no free connection is an error naming how long it waited.
    pub async fn ping(&self, deadline: Duration) -> std::result::Result<(), String> {
        match tokio::time::timeout(deadline, sqlx::query("SELECT 1").execute(&self.pool)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(format!("database: {e}")),
            Err(_) => Err(format!(
                "database: no answer within {} ms",
                deadline.as_millis()
            )),
        }
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

#[cfg(test)]
mod tests;
