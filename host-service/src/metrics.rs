//! The host's metrics for `/metrics`, kept and rendered by `prometheus-client`. Labels come from
//! fixed sets (error kinds, stage names, close reasons), never from client input, so cardinality
//! is bounded; the two gauges that mirror other state (open sockets, jobs by state) are set from
//! that state at each scrape.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::time::Duration;

/// Upper bounds of `host_stage_duration_seconds`, in seconds.
const BUCKETS_S: [f64; 9] = [0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0];

/// Upper bounds of `host_frame_lag_seconds`, in seconds: from a millisecond (a frame handled as
/// it arrives) to five seconds (a host far behind real time), 1-2-5 per decade; 0.02 is one
/// frame's length.
pub const FRAME_LAG_BUCKETS_S: [f64; 12] = [
    0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0,
];

/// The content type of [`Metrics::render`]'s output (OpenMetrics text; Prometheus reads it).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Reason {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Kind {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Hook {
    hook: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Write {
    write: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Job {
    stage: String,
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Attempt {
    stage: &'static str,
    outcome: &'static str,
}

fn stage_histogram() -> Histogram {
    Histogram::new(BUCKETS_S)
}

pub struct Metrics {
    registry: Registry,
    pub frames_in: Counter,
    pub frames_out: Counter,
    frame_lag: Histogram,
    active_streams: Gauge,
    bad_messages: Family<Kind, Counter>,
    ws_closed: Family<Reason, Counter>,
    webhooks: Family<Hook, Counter>,
    ws_rejected: Family<Reason, Counter>,
    recording_failures: Family<Reason, Counter>,
    recording_free_bytes: Gauge,
    retention_calls: Counter,
    retention_files: Counter,
    jobs: Family<Job, Gauge>,
    stage_durations: Family<Attempt, Histogram, fn() -> Histogram>,
    db_writes_pending: Gauge,
    db_write_failures: Family<Write, Counter>,
    db_writes_dropped: Family<Write, Counter>,
    streams_fenced: Counter,
    http_connections: Gauge,
    http_connections_refused: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        let m = Metrics {
            registry: Registry::default(),
            frames_in: Counter::default(),
            frames_out: Counter::default(),
            frame_lag: Histogram::new(FRAME_LAG_BUCKETS_S),
            active_streams: Gauge::default(),
            bad_messages: Family::default(),
            ws_closed: Family::default(),
            webhooks: Family::default(),
            ws_rejected: Family::default(),
            recording_failures: Family::default(),
            recording_free_bytes: Gauge::default(),
            retention_calls: Counter::default(),
            retention_files: Counter::default(),
            jobs: Family::default(),
            stage_durations: Family::new_with_constructor(stage_histogram),
            db_writes_pending: Gauge::default(),
            db_write_failures: Family::default(),
            db_writes_dropped: Family::default(),
            streams_fenced: Counter::default(),
            http_connections: Gauge::default(),
            http_connections_refused: Counter::default(),
        };
        m.register()
    }
}

impl Metrics {
    /// Counters are registered without `_total`: the exposition adds it to every counter.
    fn register(mut self) -> Self {
        let r = &mut self.registry;
        r.register(
            "host_active_streams",
            "Media Streams WebSockets open now",
            self.active_streams.clone(),
        );
        r.register(
            "host_ws_rejected",
            "Media sockets refused before the upgrade, by reason",
            self.ws_rejected.clone(),
        );
        r.register(
            "host_recording_failures",
            "Stream recordings given up while their call went on, by reason",
            self.recording_failures.clone(),
        );
        r.register(
            "host_recording_free_bytes",
            "Free space under the recordings directory at the last sample",
            self.recording_free_bytes.clone(),
        );
        r.register(
            "host_retention_deleted_calls",
            "Calls deleted by the retention sweep",
            self.retention_calls.clone(),
        );
        r.register(
            "host_retention_deleted_files",
            "Recording files deleted by the retention sweep",
            self.retention_files.clone(),
        );
        r.register(
            "host_frames_in",
            "Media frames received from Twilio",
            self.frames_in.clone(),
        );
        r.register(
            "host_frames_out",
            "Media frames sent to Twilio",
            self.frames_out.clone(),
        );
        r.register(
            "host_frame_lag_seconds",
            "How far behind real time caller media frames are handled: time since the stream's \
             start minus the frame's timestamp",
            self.frame_lag.clone(),
        );
        r.register(
            "host_bad_messages",
            "WebSocket frames refused, by kind",
            self.bad_messages.clone(),
        );
        r.register(
            "host_ws_closed",
            "WebSockets closed, by reason",
            self.ws_closed.clone(),
        );
        r.register(
            "host_webhooks",
            "Webhook requests, by hook and result",
            self.webhooks.clone(),
        );
        r.register(
            "host_jobs",
            "Pipeline jobs, by stage and state",
            self.jobs.clone(),
        );
        r.register(
            "host_stage_duration_seconds",
            "Time per pipeline stage attempt, by outcome",
            self.stage_durations.clone(),
        );
        r.register(
            "host_db_writes_pending",
            "Stream and call ends kept in memory until the database takes them",
            self.db_writes_pending.clone(),
        );
        r.register(
            "host_db_write_failures",
            "Attempts to store a stream or call end that failed or timed out, by write",
            self.db_write_failures.clone(),
        );
        r.register(
            "host_db_writes_dropped",
            "Stream and call ends given up on (the retry queue was full), by write",
            self.db_writes_dropped.clone(),
        );
        r.register(
            "host_streams_fenced",
            "Stream ends not stored because another replica had taken the stream over",
            self.streams_fenced.clone(),
        );
        r.register(
            "host_http_connections",
            "HTTP connections open now, media sockets included",
            self.http_connections.clone(),
        );
        r.register(
            "host_http_connections_refused",
            "Connections closed at once because http.max_connections were open",
            self.http_connections_refused.clone(),
        );
        self
    }

    pub fn http_connection_opened(&self) {
        self.http_connections.inc();
    }

    pub fn http_connection_closed(&self) {
        self.http_connections.dec();
    }

    pub fn http_connection_refused(&self) {
        self.http_connections_refused.inc();
    }

    pub fn db_write_failed(&self, write: &'static str) {
        self.db_write_failures.get_or_create(&Write { write }).inc();
    }

    pub fn db_write_dropped(&self, write: &'static str) {
        self.db_writes_dropped.get_or_create(&Write { write }).inc();
    }

    pub fn stream_fenced(&self) {
        self.streams_fenced.inc();
    }

    /// Set at each scrape from the retrying writer.
    pub fn db_writes_pending(&self, pending: usize) {
        self.db_writes_pending
            .set(i64::try_from(pending).unwrap_or(i64::MAX));
    }

    /// A caller media frame handled `lag` behind real time ([`frame_lag`]).
    pub fn frame_lag(&self, lag: Duration) {
        self.frame_lag.observe(lag.as_secs_f64());
    }

    pub fn bad_message(&self, kind: &'static str) {
        self.bad_messages.get_or_create(&Kind { kind }).inc();
    }

    pub fn ws_closed(&self, reason: &'static str) {
        self.ws_closed.get_or_create(&Reason { reason }).inc();
    }

    pub fn webhook(&self, hook: &'static str, result: &'static str) {
        self.webhooks.get_or_create(&Hook { hook, result }).inc();
    }

    /// A media socket refused before the upgrade (`too_many_sockets`).
    pub fn ws_rejected(&self, reason: &'static str) {
        self.ws_rejected.get_or_create(&Reason { reason }).inc();
    }

    /// A stream's recording was given up (`no_space`, `io_error`, `disk_too_slow`,
    /// `low_disk_space`); its call went on.
    pub fn recording_failure(&self, reason: &'static str) {
        self.recording_failures
            .get_or_create(&Reason { reason })
            .inc();
    }

    pub fn recording_free_bytes(&self, bytes: u64) {
        self.recording_free_bytes
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }

    pub fn retention_deleted(&self, calls: u64, files: u64) {
        self.retention_calls.inc_by(calls);
        self.retention_files.inc_by(files);
    }

    /// One attempt of a stage took `seconds` and ended as `outcome` (done, retry, failed).
    pub fn stage_duration(&self, stage: &'static str, outcome: &'static str, seconds: f64) {
        self.stage_durations
            .get_or_create(&Attempt { stage, outcome })
            .observe(seconds);
    }

    /// The text exposition; `active_streams` is the sockets open now, `jobs` is (stage, state,
    /// count) from the database. Job label sets no longer in the database are dropped.
    pub fn render(&self, active_streams: usize, jobs: &[(String, String, i64)]) -> String {
        self.active_streams
            .set(i64::try_from(active_streams).unwrap_or(i64::MAX));
        self.jobs.clear();
        for (stage, state, n) in jobs {
            self.jobs
                .get_or_create(&Job {
                    stage: stage.clone(),
                    state: state.clone(),
                })
                .set(*n);
        }
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// How far behind real time a caller frame stamped `timestamp_ms` (Twilio's time since the
/// stream began) is handled `since_start` after the stream's `start` was: Twilio sends audio as it
/// is spoken, so anything past the stamp is delay on the way (network, Envoy, scheduling). A
/// frame handled early (its stamp ahead of the clock, as a simulator faster than real time sends
/// them) counts as no delay.
pub fn frame_lag(since_start: Duration, timestamp_ms: u64) -> Duration {
    since_start.saturating_sub(Duration::from_millis(timestamp_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::default();
        m.frames_in.inc_by(50);
        m.ws_rejected("too_many_sockets");
        m.retention_deleted(3, 4);
        m.bad_message("invalid_json");
        m.bad_message("invalid_json");
        m.stage_duration("transcribe", "done", 0.7);
        let text = m.render(2, &[("extract".into(), "queued".into(), 3)]);
        for line in [
            "host_active_streams 2",
            "host_ws_rejected_total{reason=\"too_many_sockets\"} 1",
            "host_retention_deleted_calls_total 3",
            "host_retention_deleted_files_total 4",
            "host_frames_in_total 50",
            "host_bad_messages_total{kind=\"invalid_json\"} 2",
            "host_jobs{stage=\"extract\",state=\"queued\"} 3",
            "host_stage_duration_seconds_bucket{le=\"0.5\",stage=\"transcribe\",outcome=\"done\"} 0",
            "host_stage_duration_seconds_bucket{le=\"1.0\",stage=\"transcribe\",outcome=\"done\"} 1",
            "host_stage_duration_seconds_count{stage=\"transcribe\",outcome=\"done\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
    }

    #[test]
    fn frame_lag_is_the_time_since_start_past_the_frames_stamp() {
        // Frame 50 (stamped 1000 ms) handled 1.030 s after the start: 30 ms behind.
        assert_eq!(
            frame_lag(Duration::from_millis(1_030), 1_000),
            Duration::from_millis(30)
        );
        assert_eq!(
            frame_lag(Duration::from_micros(20_400), 20),
            Duration::from_micros(400)
        );
        // Ahead of the clock is no delay, not a negative one.
        assert_eq!(frame_lag(Duration::from_millis(500), 1_000), Duration::ZERO);

        let m = Metrics::default();
        m.frame_lag(frame_lag(Duration::from_millis(1_030), 1_000));
        m.frame_lag(frame_lag(Duration::from_millis(500), 1_000));
        let text = m.render(0, &[]);
        for line in [
            "host_frame_lag_seconds_sum 0.03",
            "host_frame_lag_seconds_count 2",
            "host_frame_lag_seconds_bucket{le=\"0.001\"} 1",
            "host_frame_lag_seconds_bucket{le=\"0.02\"} 1",
            "host_frame_lag_seconds_bucket{le=\"0.05\"} 2",
            "host_frame_lag_seconds_bucket{le=\"+Inf\"} 2",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
    }

    /// Every metric `/metrics` exposes has its row in docs/host-service.md's Metrics table.
    #[test]
    fn every_metric_is_documented() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/host-service.md");
        let docs = std::fs::read_to_string(&path).unwrap();
        let m = Metrics::default();
        m.bad_message("invalid_json");
        let text = m.render(0, &[]);
        let names: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split_whitespace().next())
            .collect();
        assert!(names.contains(&"host_frame_lag_seconds"), "{text}");
        for name in names {
            assert!(
                docs.lines().any(|l| l.starts_with(&format!("| `{name}"))),
                "{name} is not in the Metrics table of {}",
                path.display()
            );
        }
    }

    #[test]
    fn jobs_follow_the_database_at_each_scrape() {
        let m = Metrics::default();
        let first = m.render(0, &[("extract".into(), "queued".into(), 3)]);
        assert!(first.contains("host_jobs{stage=\"extract\",state=\"queued\"} 3"));
        let second = m.render(0, &[("extract".into(), "done".into(), 3)]);
        assert!(!second.contains("state=\"queued\""), "{second}");
        assert!(second.contains("host_jobs{stage=\"extract\",state=\"done\"} 3"));
    }
}
