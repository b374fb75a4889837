-- Replicas sharing one database: who is alive, which replica records which stream, and the
-- marker that proves the recordings directory is shared.
CREATE TABLE replicas (
    id TEXT PRIMARY KEY,
    started_at_ms BIGINT NOT NULL,
    seen_at_ms BIGINT NOT NULL
);
ALTER TABLE streams ADD COLUMN replica TEXT;
CREATE INDEX streams_open ON streams (status);
CREATE TABLE settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
