//! Many calls at once: runs `place_call` with bounded concurrency and sums the reports up
//! (outcomes, webhook latency and time-to-stream percentiles). The summary is pure.

use crate::call::{place_call, CallConfig};
use crate::report::{Outcome, Report};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::Semaphore;

/// Percentiles of one latency, in milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Percentiles {
    pub count: usize,
    pub min: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

/// Nearest-rank percentile of sorted samples (`p` in 0..=100).
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

impl Percentiles {
    pub fn of(mut samples: Vec<f64>) -> Option<Self> {
        if samples.is_empty() {
            return None;
        }
        samples.sort_by(f64::total_cmp);
        Some(Percentiles {
            count: samples.len(),
            min: samples[0],
            p50: percentile(&samples, 50.0),
            p90: percentile(&samples, 90.0),
            p99: percentile(&samples, 99.0),
            max: samples[samples.len() - 1],
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LoadReport {
    pub calls: usize,
    pub concurrency: usize,
    pub wall_ms: f64,
    pub calls_per_second: f64,
    pub outcomes: BTreeMap<String, usize>,
    /// Latency of the first (voice) webhook of each call.
    pub webhook_latency_ms: Option<Percentiles>,
    /// Every webhook request, including `<Connect action>`.
    pub all_requests_latency_ms: Option<Percentiles>,
    /// From placing the call to sending the stream's `start`.
    pub time_to_stream_ms: Option<Percentiles>,
    pub frames_sent: u64,
    pub outbound_messages: u64,
    /// One example problem per kind, so a failing run says why.
    pub problems: BTreeMap<String, usize>,
}

impl LoadReport {
    /// Sum finished calls up.
    pub fn summarize(reports: &[Report], concurrency: usize, wall_ms: f64) -> Self {
        let mut outcomes = BTreeMap::new();
        let mut problems = BTreeMap::new();
        for r in reports {
            let name = serde_json::to_value(r.outcome)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            *outcomes.entry(name).or_insert(0) += 1;
            for p in &r.problems {
                *problems.entry(p.message.clone()).or_insert(0) += 1;
            }
        }
        let first = reports
            .iter()
            .filter_map(|r| r.fetches.first())
            .filter(|f| f.status.is_some())
            .map(|f| f.latency_ms)
            .collect();
        let all = reports
            .iter()
            .flat_map(|r| r.fetches.iter())
            .filter(|f| f.status.is_some())
            .map(|f| f.latency_ms)
            .collect();
        let to_stream = reports
            .iter()
            .filter_map(|r| r.streams.iter().find_map(|s| s.started_after_ms))
            .collect();
        let secs = wall_ms / 1000.0;
        LoadReport {
            calls: reports.len(),
            concurrency,
            wall_ms,
            calls_per_second: if secs > 0.0 {
                reports.len() as f64 / secs
            } else {
                0.0
            },
            outcomes,
            webhook_latency_ms: Percentiles::of(first),
            all_requests_latency_ms: Percentiles::of(all),
            time_to_stream_ms: Percentiles::of(to_stream),
            frames_sent: reports
                .iter()
                .flat_map(|r| &r.streams)
                .map(|s| s.frames_sent)
                .sum(),
            outbound_messages: reports
                .iter()
                .flat_map(|r| &r.streams)
                .map(|s| s.outbound_messages)
                .sum(),
            problems,
        }
    }

    /// 0 when every call's stream ran, 5 otherwise.
    pub fn exit_code(&self) -> i32 {
        let ran = self.outcomes.get("stream_ran").copied().unwrap_or(0);
        if ran == self.calls {
            0
        } else {
            5
        }
    }

    pub fn render(&self) -> String {
        use std::fmt::Write as _;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{} calls, concurrency {}, {:.2} s wall, {:.1} calls/s",
            self.calls,
            self.concurrency,
            self.wall_ms / 1000.0,
            self.calls_per_second
        );
        for (outcome, n) in &self.outcomes {
            let _ = writeln!(s, "  {outcome}: {n}");
        }
        let rows = [
            ("voice webhook latency", &self.webhook_latency_ms),
            ("all requests latency", &self.all_requests_latency_ms),
            ("time to stream start", &self.time_to_stream_ms),
        ];
        let _ = writeln!(
            s,
            "{:<24} {:>6} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "ms", "n", "min", "p50", "p90", "p99", "max"
        );
        for (name, p) in rows {
            match p {
                Some(p) => {
                    let _ = writeln!(
                        s,
                        "{name:<24} {:>6} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2}",
                        p.count, p.min, p.p50, p.p90, p.p99, p.max
                    );
                }
                None => {
                    let _ = writeln!(s, "{name:<24} {:>6}", 0);
                }
            }
        }
        let _ = writeln!(
            s,
            "frames sent: {}, outbound media messages: {}",
            self.frames_sent, self.outbound_messages
        );
        if !self.problems.is_empty() {
            let _ = writeln!(s, "problems:");
            for (p, n) in &self.problems {
                let _ = writeln!(s, "  {n} x {p}");
            }
        }
        s
    }
}

/// Place `calls` calls, at most `concurrency` at a time.
pub async fn run_load(
    client: &reqwest::Client,
    cfg: &CallConfig,
    calls: usize,
    concurrency: usize,
) -> LoadReport {
    let concurrency = concurrency.max(1);
    let gate = Arc::new(Semaphore::new(concurrency));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..calls {
        let (gate, client, cfg) = (Arc::clone(&gate), client.clone(), cfg.clone());
        tasks.spawn(async move {
            let _permit = gate.acquire_owned().await;
            place_call(&client, &cfg).await
        });
    }
    let mut reports = Vec::with_capacity(calls);
    while let Some(done) = tasks.join_next().await {
        if let Ok(r) = done {
            reports.push(r);
        }
    }
    let wall_ms = started.elapsed().as_secs_f64() * 1000.0;
    let mut summary = LoadReport::summarize(&reports, concurrency, wall_ms);
    let lost = calls - reports.len();
    if lost > 0 {
        summary.calls = calls;
        *summary
            .outcomes
            .entry(format!("{:?}", Outcome::Error).to_lowercase())
            .or_insert(0) += lost;
    }
    summary
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 50.0);
        assert_eq!(percentile(&v, 90.0), 90.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&v, 100.0), 100.0);
        assert_eq!(percentile(&v, 0.0), 1.0);
        assert_eq!(percentile(&[7.0], 99.0), 7.0);
        assert_eq!(percentile(&[], 50.0), 0.0);
        let p = Percentiles::of(vec![3.0, 1.0, 2.0]).unwrap();
        assert_eq!((p.min, p.p50, p.max, p.count), (1.0, 2.0, 3.0, 3));
        assert_eq!(Percentiles::of(vec![]), None);
    }
}
