-- `write_key`: the key a retried write of a call's error carries, so an attempt that timed out
-- yet landed and its retry leave one row. Errors written inside a job's own transaction need
-- none (NULL, which a unique index never compares equal).
ALTER TABLE call_errors ADD COLUMN write_key TEXT;
CREATE UNIQUE INDEX IF NOT EXISTS call_errors_write_key ON call_errors (write_key);
