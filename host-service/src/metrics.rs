//! Counters for `/metrics`, rendered in the Prometheus text format. Labels come from fixed sets
//! (error kinds, stage names, close reasons), never from client input, so cardinality is bounded.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

const BUCKETS_S: [f64; 9] = [0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS_S.len()],
    count: u64,
    sum: f64,
}

#[derive(Default)]
pub struct Metrics {
    pub frames_in: AtomicU64,
    pub frames_out: AtomicU64,
    bad_messages: Mutex<BTreeMap<&'static str, u64>>,
    ws_closed: Mutex<BTreeMap<&'static str, u64>>,
    webhooks: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    ws_rejected: Mutex<BTreeMap<&'static str, u64>>,
    retention_calls: AtomicU64,
    retention_files: AtomicU64,
    stage_durations: Mutex<BTreeMap<(&'static str, &'static str), Histogram>>,
}

fn bump<K: Ord>(map: &Mutex<BTreeMap<K, u64>>, key: K) {
    if let Ok(mut m) = map.lock() {
        *m.entry(key).or_default() += 1;
    }
}

impl Metrics {
    pub fn bad_message(&self, kind: &'static str) {
        bump(&self.bad_messages, kind);
    }

    pub fn ws_closed(&self, reason: &'static str) {
        bump(&self.ws_closed, reason);
    }

    pub fn webhook(&self, hook: &'static str, result: &'static str) {
        bump(&self.webhooks, (hook, result));
    }

    /// A media socket refused before the upgrade (`too_many_sockets`).
    pub fn ws_rejected(&self, reason: &'static str) {
        bump(&self.ws_rejected, reason);
    }

    pub fn retention_deleted(&self, calls: u64, files: u64) {
        self.retention_calls.fetch_add(calls, Ordering::Relaxed);
        self.retention_files.fetch_add(files, Ordering::Relaxed);
    }

    /// One attempt of a stage took `seconds` and ended as `outcome` (done, retry, failed).
    pub fn stage_duration(&self, stage: &'static str, outcome: &'static str, seconds: f64) {
        if let Ok(mut m) = self.stage_durations.lock() {
            let h = m.entry((stage, outcome)).or_default();
            for (i, b) in BUCKETS_S.iter().enumerate() {
                if seconds <= *b {
                    h.counts[i] += 1;
                }
            }
            h.count += 1;
            h.sum += seconds;
        }
    }

    pub fn bad_messages(&self, kind: &str) -> u64 {
        self.bad_messages
            .lock()
            .map(|m| m.get(kind).copied().unwrap_or(0))
            .unwrap_or(0)
    }

    /// The text exposition; `active_streams` is the sockets open now, `jobs` is (stage, state,
    /// count) from the database.
    pub fn render(&self, active_streams: usize, jobs: &[(String, String, i64)]) -> String {
        let mut out = String::new();
        let w = &mut out;
        let _ = writeln!(
            w,
            "# HELP host_active_streams Media Streams WebSockets open now."
        );
        let _ = writeln!(w, "# TYPE host_active_streams gauge");
        let _ = writeln!(w, "host_active_streams {active_streams}");
        let _ = writeln!(
            w,
            "# HELP host_ws_rejected_total Media sockets refused before the upgrade, by reason."
        );
        let _ = writeln!(w, "# TYPE host_ws_rejected_total counter");
        if let Ok(m) = self.ws_rejected.lock() {
            for (reason, n) in m.iter() {
                let _ = writeln!(w, "host_ws_rejected_total{{reason=\"{reason}\"}} {n}");
            }
        }
        let _ = writeln!(
            w,
            "# HELP host_retention_deleted_calls_total Calls deleted by the retention sweep."
        );
        let _ = writeln!(w, "# TYPE host_retention_deleted_calls_total counter");
        let _ = writeln!(
            w,
            "host_retention_deleted_calls_total {}",
            self.retention_calls.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            w,
            "# HELP host_retention_deleted_files_total Recording files deleted by the retention sweep."
        );
        let _ = writeln!(w, "# TYPE host_retention_deleted_files_total counter");
        let _ = writeln!(
            w,
            "host_retention_deleted_files_total {}",
            self.retention_files.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            w,
            "# HELP host_frames_in_total Media frames received from Twilio."
        );
        let _ = writeln!(w, "# TYPE host_frames_in_total counter");
        let _ = writeln!(
            w,
            "host_frames_in_total {}",
            self.frames_in.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            w,
            "# HELP host_frames_out_total Media frames sent to Twilio."
        );
        let _ = writeln!(w, "# TYPE host_frames_out_total counter");
        let _ = writeln!(
            w,
            "host_frames_out_total {}",
            self.frames_out.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            w,
            "# HELP host_bad_messages_total WebSocket frames refused, by kind."
        );
        let _ = writeln!(w, "# TYPE host_bad_messages_total counter");
        if let Ok(m) = self.bad_messages.lock() {
            for (kind, n) in m.iter() {
                let _ = writeln!(w, "host_bad_messages_total{{kind=\"{kind}\"}} {n}");
            }
        }
        let _ = writeln!(
            w,
            "# HELP host_ws_closed_total WebSockets closed, by reason."
        );
        let _ = writeln!(w, "# TYPE host_ws_closed_total counter");
        if let Ok(m) = self.ws_closed.lock() {
            for (reason, n) in m.iter() {
                let _ = writeln!(w, "host_ws_closed_total{{reason=\"{reason}\"}} {n}");
            }
        }
        let _ = writeln!(
            w,
            "# HELP host_webhooks_total Webhook requests, by hook and result."
        );
        let _ = writeln!(w, "# TYPE host_webhooks_total counter");
        if let Ok(m) = self.webhooks.lock() {
            for ((hook, result), n) in m.iter() {
                let _ = writeln!(
                    w,
                    "host_webhooks_total{{hook=\"{hook}\",result=\"{result}\"}} {n}"
                );
            }
        }
        let _ = writeln!(w, "# HELP host_jobs Pipeline jobs, by stage and state.");
        let _ = writeln!(w, "# TYPE host_jobs gauge");
        for (stage, state, n) in jobs {
            let _ = writeln!(w, "host_jobs{{stage=\"{stage}\",state=\"{state}\"}} {n}");
        }
        let _ = writeln!(
            w,
            "# HELP host_stage_duration_seconds Time per pipeline stage attempt, by outcome."
        );
        let _ = writeln!(w, "# TYPE host_stage_duration_seconds histogram");
        if let Ok(m) = self.stage_durations.lock() {
            for ((stage, outcome), h) in m.iter() {
                let l = format!("stage=\"{stage}\",outcome=\"{outcome}\"");
                for (i, b) in BUCKETS_S.iter().enumerate() {
                    let _ = writeln!(
                        w,
                        "host_stage_duration_seconds_bucket{{{l},le=\"{b}\"}} {}",
                        h.counts[i]
                    );
                }
                let _ = writeln!(
                    w,
                    "host_stage_duration_seconds_bucket{{{l},le=\"+Inf\"}} {}",
                    h.count
                );
                let _ = writeln!(w, "host_stage_duration_seconds_sum{{{l}}} {}", h.sum);
                let _ = writeln!(w, "host_stage_duration_seconds_count{{{l}}} {}", h.count);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::default();
        m.frames_in.fetch_add(50, Ordering::Relaxed);
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
            "host_stage_duration_seconds_bucket{stage=\"transcribe\",outcome=\"done\",le=\"0.5\"} 0",
            "host_stage_duration_seconds_bucket{stage=\"transcribe\",outcome=\"done\",le=\"1\"} 1",
            "host_stage_duration_seconds_count{stage=\"transcribe\",outcome=\"done\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
    }
}
