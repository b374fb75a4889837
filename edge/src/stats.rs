//! Reading the guard back out of Envoy's admin `/stats` text: its counters, its active mode and
//! rule count, and the ECDS subscription's versions and updates. Pure (the caller fetches
//! [`STATS_PATH`]), so the CLI's `status` and the dashboard's edge panel read one set of names.

use std::collections::BTreeMap;

use crate::config::Mode;
use crate::decide::Label;
use crate::metrics::{self, Counter};

/// What to GET from the admin API: every stat naming the guard (its own metrics and its ECDS
/// subscription's).
pub const STATS_PATH: &str = "/stats?filter=twiml_guard";
/// Where the ECDS subscription's stats live in `/stats`.
pub const ECDS_PREFIX: &str = "extension_config_discovery.http_filter.twiml_guard.";

/// An answer that is not the admin's `/stats` text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line} is not `name: value`: {text:?}")]
pub struct StatsError {
    pub line: usize,
    pub text: String,
}

/// The guard's stats as one `/stats` answer showed them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GuardStats {
    /// The guard's metrics, by their name (`twiml_guard.rules`, without Envoy's prefix).
    filter: BTreeMap<String, String>,
    /// The ECDS subscription's stats, by the name after [`ECDS_PREFIX`] (text readouts
    /// unquoted).
    ecds: BTreeMap<String, String>,
}

impl GuardStats {
    /// Read `/stats` text (`name: value` lines); lines about anything else are ignored.
    pub fn parse(text: &str) -> Result<GuardStats, StatsError> {
        let mut stats = GuardStats::default();
        let filter_prefix = format!("{}.", metrics::NAMESPACE);
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let Some((name, value)) = line.split_once(": ") else {
                return Err(StatsError {
                    line: i + 1,
                    text: line.chars().take(80).collect(),
                });
            };
            let value = value.trim().trim_matches('"').to_string();
            if let Some(rest) = name.strip_prefix(ECDS_PREFIX) {
                stats.ecds.insert(rest.to_string(), value);
            } else if let Some(rest) = name.strip_prefix(&filter_prefix) {
                stats.filter.insert(rest.to_string(), value);
            }
        }
        Ok(stats)
    }

    fn number(&self, name: &str) -> Option<u64> {
        self.filter.get(name).and_then(|v| v.parse().ok())
    }

    fn ecds_number(&self, name: &str) -> u64 {
        self.ecds
            .get(name)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    /// The active default mode: the one whose gauge is 1. `None` before a guard configured.
    pub fn mode(&self) -> Option<Mode> {
        Mode::ALL
            .into_iter()
            .find(|m| self.number(metrics::mode_gauge(*m)) == Some(1))
    }

    /// Whether a guard has defined its metrics (its mode gauges show, whatever their values).
    pub fn defined(&self) -> bool {
        Mode::ALL
            .iter()
            .any(|m| self.filter.contains_key(metrics::mode_gauge(*m)))
    }

    /// Rules in the active configuration; `None` before a guard configured.
    pub fn rules(&self) -> Option<u64> {
        self.number(metrics::RULES)
    }

    /// A counter's value. One not shown is 0 once the guard has defined its metrics, and
    /// unknown (`None`) before: no numbers rather than made-up zeros.
    pub fn counter(&self, counter: Counter) -> Option<u64> {
        self.number(counter.name())
            .or_else(|| self.defined().then_some(0))
    }

    /// Every counter the guard has, by its short name, in [`Counter::ALL`] order; absent ones
    /// as [`GuardStats::counter`] says.
    pub fn counters(&self) -> Vec<(&'static str, Option<u64>)> {
        Counter::ALL
            .into_iter()
            .map(|c| (c.key(), self.counter(c)))
            .collect()
    }

    /// The outcome counters, in [`Label::ALL`] order, 0 when not shown.
    pub fn responses(&self) -> Vec<(&'static str, u64)> {
        Label::ALL
            .into_iter()
            .map(|l| (l.as_str(), self.counter(Counter::Outcome(l)).unwrap_or(0)))
            .collect()
    }

    /// The version Envoy runs (`version_text`); `None` before any configuration was accepted.
    pub fn active_version(&self) -> Option<&str> {
        self.ecds
            .get("version_text")
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    pub fn updates_accepted(&self) -> u64 {
        self.ecds_number("update_success")
    }

    pub fn updates_rejected(&self) -> u64 {
        self.ecds_number("update_rejected")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Envoy 1.40's `/stats?filter=twiml_guard` for a guard in strict mode (shape as Envoy
    /// writes it, the histogram line included).
    const STATS: &str = "extension_config_discovery.http_filter.twiml_guard.version_text: \"2\"\n\
        extension_config_discovery.http_filter.twiml_guard.update_rejected: 1\n\
        extension_config_discovery.http_filter.twiml_guard.update_success: 2\n\
        http.ingress_http.twiml_guard.other: 5\n\
        wasmcustom.twiml_guard.inspected_total: 9\n\
        wasmcustom.twiml_guard.mode.monitor: 0\n\
        wasmcustom.twiml_guard.mode.rewrite: 0\n\
        wasmcustom.twiml_guard.mode.strict: 1\n\
        wasmcustom.twiml_guard.responses.rejected_total: 4\n\
        wasmcustom.twiml_guard.rules: 2\n\
        wasmcustom.twiml_guard.signature_ok_total: 3\n\
        wasmcustom.twiml_guard.verdict_us: P0(nan,10) P25(nan,12) P50(nan,20)\n";

    #[test]
    fn an_envoy_answer_reads_as_the_guard() {
        let s = GuardStats::parse(STATS).unwrap();
        assert_eq!(s.mode(), Some(Mode::Strict));
        assert_eq!(s.rules(), Some(2));
        assert_eq!(s.active_version(), Some("2"));
        assert_eq!((s.updates_accepted(), s.updates_rejected()), (2, 1));
        assert_eq!(
            s.responses(),
            [
                ("clean", 0),
                ("rewritten", 0),
                ("rejected", 4),
                ("detected", 0),
                ("oversize", 0),
                ("malformed", 0)
            ]
        );
        assert_eq!(
            s.counters(),
            [
                ("inspected", Some(9)),
                ("ws_upgrades", Some(0)),
                ("signature_ok", Some(3)),
                ("signature_rejected", Some(0)),
                ("clean", Some(0)),
                ("rewritten", Some(0)),
                ("rejected", Some(4)),
                ("detected", Some(0)),
                ("oversize", Some(0)),
                ("malformed", Some(0)),
            ]
        );
        assert!(!s.filter.keys().any(|k| k.contains("other")));
    }

    #[test]
    fn no_guard_yet_means_no_numbers_not_zeros() {
        let s = GuardStats::parse(
            "extension_config_discovery.http_filter.twiml_guard.version_text: \"\"\n\
             extension_config_discovery.http_filter.twiml_guard.update_rejected: 1\n",
        )
        .unwrap();
        assert_eq!(s.active_version(), None);
        assert_eq!(s.mode(), None);
        assert_eq!(s.rules(), None);
        assert!(s.counters().iter().all(|(_, v)| v.is_none()));
        assert_eq!(s.updates_rejected(), 1);
        assert_eq!(GuardStats::parse("").unwrap(), GuardStats::default());
    }

    #[test]
    fn an_answer_that_is_not_stats_text_is_an_error() {
        assert_eq!(
            GuardStats::parse("wasmcustom.twiml_guard.rules: 1\n<html>\n"),
            Err(StatsError {
                line: 2,
                text: "<html>".into()
            })
        );
    }
}
