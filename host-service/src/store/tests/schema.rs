//! The schema: databases from earlier versions, the file's mode, database URLs, states stored as
//! their text, and both engines' migrated schemas alike.

use super::*;

/// The schema as the service created it before migrations existed: the same statements, run with
/// `raw_sql` at every start, and no `_sqlx_migrations` table. Such a file must open, keep its rows
/// and be recorded as at the latest migration.
const LEGACY_SCHEMA: &str = include_str!("../../../migrations/sqlite/0001_initial.sql");

#[tokio::test]
async fn a_database_from_before_migrations_is_adopted_with_its_rows() {
    use sqlx::sqlite::SqliteConnectOptions;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("host.db");
    let legacy = sqlx::SqlitePool::connect_with(
        SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true),
    )
    .await
    .unwrap();
    sqlx::raw_sql(LEGACY_SCHEMA).execute(&legacy).await.unwrap();
    sqlx::query(
        "INSERT INTO calls (call_sid, status, created_at_ms, recording_source, recording_status)
         VALUES ($1, 'ended', $2, 'stream', 'pending')",
    )
    .bind(CALL)
    .bind(T0)
    .execute(&legacy)
    .await
    .unwrap();
    legacy.close().await;

    for _ in 0..2 {
        let store = Store::open(&path).await.unwrap();
        let detail = store.call_detail(CALL).await.unwrap().unwrap();
        assert_eq!(detail.status, CallStatus::Ended);
        assert_eq!(detail.created_at_ms, T0);
        // `success` is a BOOLEAN column, which sqlx's `Any` rows do not carry from SQLite.
        let applied: Vec<(i64, i64)> = sqlx::query_as(
            "SELECT version, CAST(success AS INTEGER) FROM _sqlx_migrations ORDER BY version",
        )
        .fetch_all(store.pool())
        .await
        .unwrap();
        let expected: Vec<(i64, i64)> = MIGRATOR.iter().map(|m| (m.version, 1)).collect();
        assert_eq!(applied, expected);
        assert_eq!(applied.first(), Some(&(1, 1)));
        store.close().await;
    }
}

#[tokio::test]
async fn a_database_from_a_newer_version_is_refused() {
    let (dir, store) = store().await;
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
         VALUES (9999, 'from the future', 1, x'00', 0)",
    )
    .execute(store.pool())
    .await
    .unwrap();
    store.close().await;
    let err = Store::open(&dir.path().join("db/host.db"))
        .await
        .err()
        .expect("a newer schema must not open");
    assert!(
        matches!(
            err,
            DbError::Migrate(sqlx::migrate::MigrateError::VersionMissing(9999))
        ),
        "{err}"
    );
}

#[tokio::test]
async fn database_is_private_and_in_wal_mode() {
    use std::os::unix::fs::PermissionsExt;
    let (dir, store) = store().await;
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(mode, "wal");
    // FULL: a commit survives a power cut, not only a crash of the process.
    let sync: i64 = sqlx::query_scalar("PRAGMA synchronous")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(sync, 2);
    let meta = std::fs::metadata(dir.path().join("db/host.db")).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let meta = std::fs::metadata(dir.path().join("db")).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o700);
}

async fn states_are_stored_as_their_text_and_unknown_text_is_an_error(backend: Dialect) {
    let (_d, store) = store_on(backend).await;
    store
        .call_ended(CALL, &facts(), "stream", T0)
        .await
        .unwrap();
    let raw: (String, String, String) = sqlx::query_as(
        "SELECT c.status, j.stage, j.state FROM calls c JOIN jobs j USING (call_sid)",
    )
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert_eq!(raw, ("ended".into(), "recording".into(), "queued".into()));
    for (value, text) in [
        (TranscriptionStatus::Done, "done"),
        (
            TranscriptionStatus::SkippedEngineNone,
            "skipped: transcription engine is none",
        ),
    ] {
        sqlx::query("UPDATE calls SET transcription_status = $1")
            .bind(value)
            .execute(store.pool())
            .await
            .unwrap();
        let raw: String = sqlx::query_scalar("SELECT transcription_status FROM calls")
            .fetch_one(store.pool())
            .await
            .unwrap();
        assert_eq!(raw, text);
        assert_eq!(serde_json::to_value(value).unwrap(), text);
        let d = store.call_detail(CALL).await.unwrap().unwrap();
        assert_eq!(d.transcription_status, Some(value));
    }
    // A value this code does not know (a newer version wrote it) is an error, not a panic.
    sqlx::query("UPDATE calls SET status = 'archived'")
        .execute(store.pool())
        .await
        .unwrap();
    let err = store.call_detail(CALL).await.expect_err("unknown status");
    assert!(
        matches!(err, DbError::Sql(sqlx::Error::ColumnDecode { .. })),
        "{err}"
    );
    assert!(store.list_calls(10, None).await.is_err());
}

#[test]
fn database_urls_parse_and_hide_their_password() {
    assert_eq!(
        Location::parse("sqlite:///var/lib/hs/db.sqlite?mode=rwc"),
        Ok(Location::Sqlite("/var/lib/hs/db.sqlite".into()))
    );
    assert_eq!(
        Location::parse("sqlite:data/db"),
        Ok(Location::Sqlite("data/db".into()))
    );
    let pg = Location::parse("postgres://app:s3cret@db.internal:5432/voice").unwrap();
    assert_eq!(pg.redacted(), "postgres://app:***@db.internal:5432/voice");
    assert_eq!(
        format!("{pg:?}"),
        "postgres://app:***@db.internal:5432/voice"
    );
    assert!(Location::parse("postgresql://db/voice").is_ok());
    for bad in [
        "mysql://db/x",
        "sqlite://",
        "sqlite::memory:",
        "postgres:///voice",
        "db.sqlite",
    ] {
        assert!(Location::parse(bad).is_err(), "{bad}");
    }
    assert_eq!(
        Location::from_config(None, std::path::Path::new("/data")),
        Ok(Location::Sqlite("/data/host-service.db".into()))
    );
}

/// One column as both engines can describe it: table, name, kind (`integer` or `text`), and
/// whether it may hold NULL (a primary key never does).
type Column = (String, String, &'static str, bool);

/// The engines spell the same kinds differently (`INTEGER` and `BIGINT`, `TEXT`); anything else
/// is kept as spelled, so a new kind shows up as a difference.
fn kind(declared: &str) -> &'static str {
    match declared.to_ascii_lowercase().as_str() {
        "integer" | "bigint" | "int8" => "integer",
        "text" | "character varying" => "text",
        _ => "other",
    }
}

async fn columns(store: &Store) -> std::collections::BTreeSet<Column> {
    let query = match store.dialect() {
        Dialect::Sqlite => {
            "SELECT m.name, c.name, c.type, CASE WHEN c.\"notnull\" = 1 OR c.pk > 0 THEN 'NO' ELSE 'YES' END
             FROM sqlite_master m, pragma_table_info(m.name) c
             WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' AND m.name NOT LIKE '_sqlx_%'"
        }
        Dialect::Postgres => {
            "SELECT table_name::text, column_name::text, data_type::text, is_nullable::text
             FROM information_schema.columns
             WHERE table_schema = current_schema() AND table_name NOT LIKE '_sqlx_%'"
        }
    };
    sqlx::query(query)
        .fetch_all(store.pool())
        .await
        .unwrap()
        .iter()
        .map(|r| {
            let declared: String = r.get(2);
            let nullable: String = r.get(3);
            (r.get(0), r.get(1), kind(&declared), nullable == "YES")
        })
        .collect()
}

/// The two migration folders are written by hand, one per engine: after every migration both
/// must hold the same tables with the same columns, kinds and NULL rules.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL (test-support's PgCluster): `make test` runs it"]
async fn both_engines_migrate_to_the_same_schema() {
    let (_file, sqlite) = store_on(Dialect::Sqlite).await;
    let (_cluster, postgres) = store_on(Dialect::Postgres).await;
    let (lite, pg) = (columns(&sqlite).await, columns(&postgres).await);
    let tables: std::collections::BTreeSet<&str> = lite.iter().map(|c| c.0.as_str()).collect();
    assert_eq!(
        tables,
        [
            "call_errors",
            "calls",
            "jobs",
            "replicas",
            "settings",
            "streams"
        ]
        .into(),
        "{lite:?}"
    );
    assert!(lite.iter().all(|c| c.2 != "other"), "{lite:?}");
    let only_sqlite: Vec<_> = lite.difference(&pg).collect();
    let only_postgres: Vec<_> = pg.difference(&lite).collect();
    assert_eq!(
        (only_sqlite, only_postgres),
        (vec![], vec![]),
        "columns that differ between the engines"
    );
}

on_both_engines!(states_are_stored_as_their_text_and_unknown_text_is_an_error,);
