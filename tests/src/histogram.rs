//! Prometheus histograms read back from a text exposition, so a benchmark can report
//! percentiles of what a process measured itself (the host's `host_frame_lag_seconds`) rather
//! than what the client saw.

/// One histogram's cumulative buckets: `(upper bound, observations at or below it)`, in
/// increasing order, the last bound `+Inf`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Buckets(pub Vec<(f64, u64)>);

impl Buckets {
    /// The unlabelled histogram `name` in `text` (`name_bucket{le="..."} N` lines); `None`
    /// when it has no buckets there.
    pub fn parse(text: &str, name: &str) -> Option<Buckets> {
        let prefix = format!("{name}_bucket{{le=\"");
        let mut out: Vec<(f64, u64)> = text
            .lines()
            .filter_map(|l| {
                let rest = l.strip_prefix(&prefix)?;
                let (le, rest) = rest.split_once("\"}")?;
                let le = match le {
                    "+Inf" => f64::INFINITY,
                    other => other.parse().ok()?,
                };
                // OpenMetrics may follow the value with an exemplar or a timestamp.
                let n = rest.split_whitespace().next()?.parse::<f64>().ok()?;
                Some((le, n as u64))
            })
            .collect();
        out.sort_by(|a, b| a.0.total_cmp(&b.0));
        (!out.is_empty()).then_some(Buckets(out))
    }

    /// Observations in all.
    pub fn count(&self) -> u64 {
        self.0.last().map(|b| b.1).unwrap_or(0)
    }

    /// The bucket-wise sum of histograms with the same bounds (several replicas' as one).
    pub fn merge(all: &[Buckets]) -> Option<Buckets> {
        let first = all.first()?;
        let mut out = first.clone();
        for other in &all[1..] {
            if other.0.len() != out.0.len() || other.0.iter().zip(&out.0).any(|(a, b)| a.0 != b.0) {
                return None;
            }
            for (o, b) in out.0.iter_mut().zip(&other.0) {
                o.1 += b.1;
            }
        }
        Some(out)
    }

    /// What was observed after `earlier`, a snapshot of the same histogram: bucket-wise
    /// differences. `None` when the bounds differ.
    pub fn since(&self, earlier: &Buckets) -> Option<Buckets> {
        if self.0.len() != earlier.0.len() || self.0.iter().zip(&earlier.0).any(|(a, b)| a.0 != b.0)
        {
            return None;
        }
        Some(Buckets(
            self.0
                .iter()
                .zip(&earlier.0)
                .map(|(a, b)| (a.0, a.1.saturating_sub(b.1)))
                .collect(),
        ))
    }

    /// The `q` quantile (0..=1) as Prometheus's `histogram_quantile` estimates it: linear within
    /// the bucket that holds the rank, from the bucket below's bound (0 for the first); a rank in
    /// the `+Inf` bucket answers the highest finite bound. `None` without observations.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * total as f64;
        let mut lower = (0.0, 0u64);
        for &(le, n) in &self.0 {
            if n as f64 >= rank {
                if le.is_infinite() {
                    return Some(lower.0);
                }
                let in_bucket = (n - lower.1) as f64;
                if in_bucket == 0.0 {
                    return Some(le);
                }
                return Some(lower.0 + (le - lower.0) * (rank - lower.1 as f64) / in_bucket);
            }
            lower = (le, n);
        }
        Some(lower.0)
    }

    /// The smallest bound that holds every observation (`+Inf` when some are past the last
    /// finite bound); `None` without observations.
    pub fn all_within(&self) -> Option<f64> {
        let total = self.count();
        (total > 0).then(|| {
            self.0
                .iter()
                .find(|b| b.1 == total)
                .map(|b| b.0)
                .unwrap_or(f64::INFINITY)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# TYPE host_frame_lag_seconds histogram\n\
        host_frame_lag_seconds_sum 1.5\n\
        host_frame_lag_seconds_count 100\n\
        host_frame_lag_seconds_bucket{le=\"0.001\"} 10\n\
        host_frame_lag_seconds_bucket{le=\"0.002\"} 60\n\
        host_frame_lag_seconds_bucket{le=\"0.005\"} 90\n\
        host_frame_lag_seconds_bucket{le=\"0.01\"} 100\n\
        host_frame_lag_seconds_bucket{le=\"+Inf\"} 100\n\
        host_frame_lag_seconds_other{le=\"0.5\"} 7\n";

    #[test]
    fn reads_the_buckets_of_one_histogram() {
        let b = Buckets::parse(TEXT, "host_frame_lag_seconds").unwrap();
        assert_eq!(
            b.0,
            vec![
                (0.001, 10),
                (0.002, 60),
                (0.005, 90),
                (0.01, 100),
                (f64::INFINITY, 100)
            ]
        );
        assert_eq!(b.count(), 100);
        assert_eq!(Buckets::parse(TEXT, "host_stage_duration_seconds"), None);
    }

    #[test]
    fn quantiles_interpolate_within_a_bucket() {
        let b = Buckets::parse(TEXT, "host_frame_lag_seconds").unwrap();
        let near = |a: f64, b: f64| (a - b).abs() < 1e-12;
        // Rank 5 of the 10 in [0, 1 ms]: half way.
        assert!(near(b.quantile(0.05).unwrap(), 0.0005));
        // Rank 50: 40 of the 50 in (1, 2] ms.
        assert!(near(b.quantile(0.5).unwrap(), 0.0018));
        // Rank 99: 9 of the 10 in (5, 10] ms.
        assert!(near(b.quantile(0.99).unwrap(), 0.0095));
        assert_eq!(b.all_within(), Some(0.01));
        assert_eq!(Buckets::default().quantile(0.5), None);
    }

    #[test]
    fn past_the_last_bound_answers_that_bound() {
        let b = Buckets(vec![(0.1, 5), (1.0, 8), (f64::INFINITY, 10)]);
        assert_eq!(b.quantile(0.99), Some(1.0));
        assert_eq!(b.all_within(), Some(f64::INFINITY));
    }

    #[test]
    fn replicas_add_up_bucket_by_bucket() {
        let a = Buckets(vec![(0.1, 5), (f64::INFINITY, 6)]);
        let b = Buckets(vec![(0.1, 1), (f64::INFINITY, 4)]);
        assert_eq!(
            Buckets::merge(&[a.clone(), b]),
            Some(Buckets(vec![(0.1, 6), (f64::INFINITY, 10)]))
        );
        assert_eq!(
            Buckets::merge(&[a, Buckets(vec![(0.2, 1), (f64::INFINITY, 1)])]),
            None
        );
        assert_eq!(Buckets::merge(&[]), None);
    }

    #[test]
    fn a_window_is_the_difference_of_two_snapshots() {
        let before = Buckets(vec![(0.1, 5), (f64::INFINITY, 6)]);
        let after = Buckets(vec![(0.1, 9), (f64::INFINITY, 20)]);
        assert_eq!(
            after.since(&before),
            Some(Buckets(vec![(0.1, 4), (f64::INFINITY, 14)]))
        );
        assert_eq!(after.since(&Buckets(vec![(f64::INFINITY, 1)])), None);
    }
}
