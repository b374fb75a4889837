-- The schema as the service created it before versioned migrations: every statement is
-- IF NOT EXISTS, so a database made by that code adopts this migration without a change.
CREATE TABLE IF NOT EXISTS calls (
    call_sid TEXT PRIMARY KEY,
    account_sid TEXT,
    from_number TEXT,
    to_number TEXT,
    status TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    ended_at_ms INTEGER,
    completed_at_ms INTEGER,
    call_status TEXT,
    recording_source TEXT NOT NULL,
    recording_status TEXT NOT NULL,
    recording_path TEXT,
    recording_duration_ms INTEGER,
    twilio_recording_sid TEXT,
    twilio_recording_url TEXT,
    transcription_status TEXT,
    transcript_json TEXT,
    summary TEXT,
    fields_json TEXT,
    extraction_engine TEXT
);
CREATE INDEX IF NOT EXISTS calls_created ON calls (created_at_ms DESC, call_sid DESC);
CREATE TABLE IF NOT EXISTS streams (
    stream_sid TEXT PRIMARY KEY,
    call_sid TEXT NOT NULL,
    idx INTEGER NOT NULL,
    status TEXT NOT NULL,
    started_at_ms INTEGER NOT NULL,
    stopped_at_ms INTEGER,
    path TEXT,
    frames INTEGER,
    duration_ms INTEGER,
    frames_in INTEGER NOT NULL DEFAULT 0,
    frames_out INTEGER NOT NULL DEFAULT 0,
    bad_messages INTEGER NOT NULL DEFAULT 0,
    close_reason TEXT,
    UNIQUE (call_sid, idx)
);
CREATE TABLE IF NOT EXISTS call_errors (
    id INTEGER PRIMARY KEY,
    call_sid TEXT NOT NULL,
    at_ms INTEGER NOT NULL,
    stage TEXT NOT NULL,
    message TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS call_errors_call ON call_errors (call_sid);
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY,
    call_sid TEXT NOT NULL,
    stage TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    run_at_ms INTEGER NOT NULL,
    lease_owner TEXT,
    lease_until_ms INTEGER,
    last_error TEXT,
    created_at_ms INTEGER NOT NULL,
    started_at_ms INTEGER,
    finished_at_ms INTEGER,
    duration_ms INTEGER,
    UNIQUE (call_sid, stage)
);
CREATE INDEX IF NOT EXISTS jobs_due ON jobs (state, run_at_ms);
