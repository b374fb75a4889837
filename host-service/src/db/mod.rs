//! The durable state: calls, their streams, errors, and the post-call job queue, in SQLite (WAL).
//! Every state change that must not happen twice (a webhook retry, a stage completing after a
//! crash) is one transaction guarded by a condition, so replays and dead workers change nothing.

//!
//! - `calls`: the call repository (calls, streams, errors, retention deletes, API reads);
//! - `queue`: the post-call job queue and its stages;
//! - `status`: the states of calls, streams, jobs and transcriptions;
//! - `views`: the JSON shapes the API returns.
//!
//! The schema is versioned: `host-service/migrations/sqlite/NNNN_*.sql`, embedded at build time
//! and applied in order when the store opens.

mod calls;
mod queue;
mod status;
pub mod views;

pub use calls::{CallFacts, StreamStart, TwilioRecording};
pub use queue::{Job, Outcome, Stage, StageOutput};
pub use status::{CallStatus, JobState, StreamStatus, TranscriptionStatus};
pub use views::{CallDetail, CallSummary, ErrorRow, JobRow, RecordingDetail, StreamRow};

use sqlx::migrate::Migrator;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::SqlitePool;
use std::path::Path;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("database file: {0}")]
    Io(#[from] std::io::Error),
    #[error("database schema: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

pub type Result<T> = std::result::Result<T, DbError>;

/// The SQLite schema, in order. The first migration is the schema the service created before
/// migrations existed, every statement `IF NOT EXISTS`: a database from that time adopts it
/// unchanged and then takes the later ones.
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations/sqlite");

const POOL_SIZE: u32 = 4;

#[derive(Clone)]
pub struct Store {
    pool: SqlitePool,
}

impl Store {
    /// Open (creating it readable by this user only) the database at `path`. `synchronous=FULL`:
    /// a commit the service acknowledged (a webhook answered, a stage completed) survives a power
    /// cut, not only a process crash.
    pub async fn open(path: &Path) -> Result<Store> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            crate::fsutil::create_private_dir(dir)?;
        }
        // Before SQLite opens it; SQLite gives its `-wal` and `-shm` files the same permissions.
        crate::fsutil::touch_private_file(path)?;
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10));
        // Switching a file to WAL takes an exclusive lock, and SQLite answers a second connection
        // racing for it with SQLITE_BUSY without waiting. One connection makes the file WAL and
        // the schema first; the pool's connections then find it done.
        let first = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await?;
        let migrated = MIGRATOR.run(&first).await;
        first.close().await;
        migrated?;
        // A local file needs no liveness pings, reaping or lazy connects: every connection is
        // opened up front and kept.
        let pool = SqlitePoolOptions::new()
            .max_connections(POOL_SIZE)
            .min_connections(POOL_SIZE)
            .idle_timeout(None)
            .max_lifetime(None)
            .test_before_acquire(false)
            .connect_with(options)
            .await?;
        Ok(Store { pool })
    }

    /// A transaction that writes. `BEGIN IMMEDIATE` takes SQLite's write lock at the start, so
    /// a busy database makes it wait (`busy_timeout`). A plain (deferred) `BEGIN` reads first and
    /// upgrades at its first write; when another connection has committed in between, SQLite
    /// refuses the upgrade at once with SQLITE_BUSY, whatever the timeout: under a burst of
    /// stream starts that lost calls.
    pub(crate) async fn write_tx(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

#[cfg(test)]
mod tests;
