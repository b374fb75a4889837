//! Replicas sharing one database: each says it is alive (`replicas.seen_at_ms`) and owns the
//! streams it records (`streams.replica`). A replica that stops saying so is dead, and another
//! one takes over its open streams to finish their recordings, so a call whose socket died with
//! its replica still completes. Heartbeats are stamped with the database's clock, and a
//! takeover bumps the stream's fencing token, so the first owner can never finish it afterwards. The same check proves at start-up that the recordings directory
//! is the one every replica shares.

use super::status::StreamStatus;
use super::{DbError, Result, Store};
use sqlx::Row;
use std::path::Path;

/// A stream taken over from a dead replica: the file it was writing (empty when none) and the
/// fencing token this replica now finishes it with.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct TakenStream {
    pub stream_sid: String,
    pub path: String,
    pub fence: i64,
}

/// The fencing token a stream starts with; each takeover adds one.
pub const FIRST_FENCE: i64 = 0;

/// The file in the recordings directory whose content the database also holds.
pub const SHARED_DIR_MARKER: &str = ".twiml-guard-shared";

/// Unique across replicas and restarts: a pod's pid is often 1 and its clock may agree with
/// another's, so the name also holds the host name and random bits.
pub(super) fn new_replica_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default();
    let random = crate::random::hex(6).unwrap_or_default();
    format!("{host}-{}-{random}", std::process::id())
}

impl Store {
    /// Say this replica is alive at `now` (the database's clock, `db_now_ms`). A heartbeat
    /// more than `max_gap_ms` after the previous one starts a new unbroken run
    /// (`alive_since_ms`): this replica was cut off, so were the others, perhaps.
    pub async fn replica_alive(&self, now: i64, max_gap_ms: i64) -> Result<()> {
        sqlx::query(
            "INSERT INTO replicas (id, started_at_ms, seen_at_ms, alive_since_ms)
             VALUES ($1, $2, $2, $2)
             ON CONFLICT (id) DO UPDATE SET seen_at_ms = $2,
               alive_since_ms = CASE WHEN replicas.seen_at_ms >= $2 - $3
                                     THEN replicas.alive_since_ms ELSE $2 END",
        )
        .bind(self.replica())
        .bind(now)
        .bind(max_gap_ms)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// This replica is leaving: its rows go, so nobody waits for it to time out.
    pub async fn replica_gone(&self) -> Result<()> {
        sqlx::query("DELETE FROM replicas WHERE id = $1")
            .bind(self.replica())
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Open streams (`streaming` or `recording`) whose replica is dead: another replica, or a
    /// row written before replicas were named. A replica is alive when it was seen at or after
    /// `alive_since_ms`; SQLite has one replica, so at start-up every other one is dead. Nothing
    /// is taken unless this replica itself has been alive without a break since
    /// `alive_since_ms`: after an outage every replica gets the same chance to say it is alive
    /// before anyone is declared dead. Each returned stream now belongs to this replica, at a
    /// new fencing token (taken with a guarded update, so two survivors never finish the same
    /// stream, and its first owner can no longer finish it).
    pub async fn take_orphaned_streams(&self, alive_since_ms: i64) -> Result<Vec<TakenStream>> {
        let rows = sqlx::query(
            "SELECT stream_sid, path, COALESCE(replica, '') AS replica, fence FROM streams s
             WHERE status IN ($3, $4)
               AND COALESCE(replica, '') <> $1
               AND NOT EXISTS (SELECT 1 FROM replicas r
                               WHERE r.id = s.replica AND r.seen_at_ms >= $2)
               AND EXISTS (SELECT 1 FROM replicas me
                           WHERE me.id = $1 AND me.alive_since_ms <= $2)",
        )
        .bind(self.replica())
        .bind(alive_since_ms)
        .bind(StreamStatus::Streaming)
        .bind(StreamStatus::Recording)
        .fetch_all(self.pool())
        .await?;
        let mut taken = Vec::with_capacity(rows.len());
        for r in rows {
            let sid: String = r.get("stream_sid");
            let was: String = r.get("replica");
            let fence: i64 = r.get("fence");
            let n = sqlx::query(
                "UPDATE streams SET replica = $1, fence = fence + 1
                 WHERE stream_sid = $2 AND COALESCE(replica, '') = $3 AND fence = $6
                   AND status IN ($4, $5)",
            )
            .bind(self.replica())
            .bind(&sid)
            .bind(&was)
            .bind(StreamStatus::Streaming)
            .bind(StreamStatus::Recording)
            .bind(fence)
            .execute(self.pool())
            .await?
            .rows_affected();
            if n == 1 {
                taken.push(TakenStream {
                    stream_sid: sid,
                    path: r.get::<Option<String>, _>("path").unwrap_or_default(),
                    fence: fence + 1,
                });
            }
        }
        Ok(taken)
    }

    /// Forget replicas that are dead and hold no open stream any more (their streams taken
    /// over), so the table stays as small as the set of replicas alive.
    pub async fn forget_dead_replicas(&self, alive_since_ms: i64) -> Result<u64> {
        Ok(sqlx::query(
            "DELETE FROM replicas WHERE id <> $1 AND seen_at_ms < $2
               AND NOT EXISTS (SELECT 1 FROM streams s WHERE s.replica = replicas.id
                               AND s.status IN ($3, $4))",
        )
        .bind(self.replica())
        .bind(alive_since_ms)
        .bind(StreamStatus::Streaming)
        .bind(StreamStatus::Recording)
        .execute(self.pool())
        .await?
        .rows_affected())
    }

    /// Prove `dir` is the recordings directory the database's other replicas use: the first
    /// replica writes a random marker into both; every later one must find the database's
    /// marker in its directory. A replica with its own empty volume (a missing shared mount)
    /// fails here instead of writing recordings no other replica can read. SQLite keeps its
    /// database in the data directory, so there is nothing to prove.
    pub async fn check_shared_dir(&self, dir: &Path) -> Result<()> {
        if !self.dialect().shared() {
            return Ok(());
        }
        let file = dir.join(SHARED_DIR_MARKER);
        let mine = match read_marker(&file)? {
            Some(marker) => marker,
            None => create_marker(&file)?,
        };
        sqlx::query(
            "INSERT INTO settings (key, value) VALUES ('recordings_marker', $1)
             ON CONFLICT (key) DO NOTHING",
        )
        .bind(&mine)
        .execute(self.pool())
        .await?;
        let known: String =
            sqlx::query_scalar("SELECT value FROM settings WHERE key = 'recordings_marker'")
                .fetch_one(self.pool())
                .await?;
        if known != mine {
            return Err(DbError::SharedDir(format!(
                "the recordings directory {} is not the one the other replicas use: the database \
                 expects marker {known} in {}, which holds {mine}. Mount the same shared volume \
                 at data_dir on every replica.",
                dir.display(),
                file.display()
            )));
        }
        // Writable, and not only readable: a read-only mount would fail every recording later.
        let probe = dir.join(format!(".write-check-{}", std::process::id()));
        std::fs::write(&probe, b"")
            .and_then(|_| std::fs::remove_file(&probe))
            .map_err(|e| {
                DbError::SharedDir(format!(
                    "the recordings directory {} is not writable: {e}",
                    dir.display()
                ))
            })?;
        Ok(())
    }
}

fn read_marker(file: &Path) -> Result<Option<String>> {
    match std::fs::read_to_string(file) {
        Ok(s) => Ok(Some(s.trim().to_owned())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Written beside and hard-linked into place, so the marker appears whole or not at all, and
/// two replicas starting at once on the same empty directory agree on one: the loser's link
/// fails and it reads the winner's.
fn create_marker(file: &Path) -> Result<String> {
    let marker = crate::random::hex(16).map_err(|e| std::io::Error::other(e.to_string()))?;
    let tmp = file.with_extension(format!("tmp-{marker}"));
    std::fs::write(&tmp, marker.as_bytes())?;
    std::fs::File::open(&tmp)?.sync_all()?;
    let linked = std::fs::hard_link(&tmp, file);
    std::fs::remove_file(&tmp)?;
    match linked {
        Ok(()) => Ok(marker),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            Ok(read_marker(file)?
                .ok_or_else(|| std::io::Error::other("the marker file vanished"))?)
        }
        Err(e) => Err(e.into()),
    }
}
