//! The guard's metric names, spelled once: both Envoy shims define these with the host, and the
//! CLI and the dashboard read them back (through `stats`). Envoy shows a name `twiml_guard.x` as
//! `wasmcustom.twiml_guard.x` in `/stats` and as `twiml_guard_x` in `/stats/prometheus`; the
//! shipped `stats_tags` fold the per-outcome and per-mode names into labelled families.

use crate::config::Mode;
use crate::decide::Label;

/// Every inspected response, whatever its outcome.
pub const INSPECTED: &str = "twiml_guard.inspected_total";
/// WebSocket upgrades on the media path answered `101`.
pub const WS_UPGRADES: &str = "twiml_guard.ws_upgrades_total";
/// Twilio request signatures checked and found valid, and found missing or wrong.
pub const SIGNATURE_OK: &str = "twiml_guard.signature_ok_total";
pub const SIGNATURE_REJECTED: &str = "twiml_guard.signature_rejected_total";
/// Microseconds from the first body bytes of an inspected response to its verdict (a histogram;
/// `twiml_guard_verdict_us` in Prometheus after Envoy's next stats flush).
pub const VERDICT_TIME: &str = "twiml_guard.verdict_us";
/// How many rules the active configuration holds (a gauge).
pub const RULES: &str = "twiml_guard.rules";
/// The stat-name prefix Envoy gives a proxy-wasm module's own metrics (and the native shim's,
/// through its `metrics_namespace`), as `/stats` shows it.
pub const NAMESPACE: &str = "wasmcustom";

/// The gauge of one mode: 1 for the active default mode, 0 for the others; the shipped
/// `stats_tags` make them one family, `twiml_guard_mode{mode="rewrite"}`.
pub fn mode_gauge(mode: Mode) -> &'static str {
    match mode {
        Mode::Rewrite => "twiml_guard.mode.rewrite",
        Mode::Strict => "twiml_guard.mode.strict",
        Mode::Monitor => "twiml_guard.mode.monitor",
    }
}

/// The counter of one outcome: the shipped `stats_tags` turn these into one family,
/// `twiml_guard_responses_total{outcome="rewritten"}`.
pub fn outcome_counter(label: Label) -> &'static str {
    match label {
        Label::Clean => "twiml_guard.responses.clean_total",
        Label::Rewritten => "twiml_guard.responses.rewritten_total",
        Label::Rejected => "twiml_guard.responses.rejected_total",
        Label::Detected => "twiml_guard.responses.detected_total",
        Label::Oversize => "twiml_guard.responses.oversize_total",
        Label::Malformed => "twiml_guard.responses.malformed_total",
    }
}

/// A name as `/stats/prometheus` shows it: dots become underscores, no prefix.
pub fn prometheus(name: &str) -> String {
    name.replace('.', "_")
}

/// A counter the guard bumps. A shim defines every one of [`Counter::ALL`] with its host at
/// configure time and keeps the host's ids by [`Counter::index`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counter {
    Inspected,
    WsUpgrades,
    SignatureOk,
    SignatureRejected,
    /// One outcome's counter of the labelled family.
    Outcome(Label),
}

impl Counter {
    pub const COUNT: usize = 4 + Label::ALL.len();

    pub const ALL: [Counter; Counter::COUNT] = [
        Counter::Inspected,
        Counter::WsUpgrades,
        Counter::SignatureOk,
        Counter::SignatureRejected,
        Counter::Outcome(Label::Clean),
        Counter::Outcome(Label::Rewritten),
        Counter::Outcome(Label::Rejected),
        Counter::Outcome(Label::Detected),
        Counter::Outcome(Label::Oversize),
        Counter::Outcome(Label::Malformed),
    ];

    /// Its place in [`Counter::ALL`].
    pub fn index(self) -> usize {
        let label = |l: Label| Label::ALL.iter().position(|x| *x == l).unwrap_or(0);
        match self {
            Counter::Inspected => 0,
            Counter::WsUpgrades => 1,
            Counter::SignatureOk => 2,
            Counter::SignatureRejected => 3,
            Counter::Outcome(l) => 4 + label(l),
        }
    }

    /// Its short name, as the CLI and the dashboard show it (`inspected`, `rewritten`, ...).
    pub fn key(self) -> &'static str {
        match self {
            Counter::Inspected => "inspected",
            Counter::WsUpgrades => "ws_upgrades",
            Counter::SignatureOk => "signature_ok",
            Counter::SignatureRejected => "signature_rejected",
            Counter::Outcome(l) => l.as_str(),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Counter::Inspected => INSPECTED,
            Counter::WsUpgrades => WS_UPGRADES,
            Counter::SignatureOk => SIGNATURE_OK,
            Counter::SignatureRejected => SIGNATURE_REJECTED,
            Counter::Outcome(l) => outcome_counter(l),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_label_has_its_counter() {
        let got: Vec<(&str, &str)> = Label::ALL
            .iter()
            .map(|l| (l.as_str(), outcome_counter(*l)))
            .collect();
        assert_eq!(
            got,
            [
                ("clean", "twiml_guard.responses.clean_total"),
                ("rewritten", "twiml_guard.responses.rewritten_total"),
                ("rejected", "twiml_guard.responses.rejected_total"),
                ("detected", "twiml_guard.responses.detected_total"),
                ("oversize", "twiml_guard.responses.oversize_total"),
                ("malformed", "twiml_guard.responses.malformed_total"),
            ]
        );
        assert_eq!(INSPECTED, "twiml_guard.inspected_total");
        assert_eq!(WS_UPGRADES, "twiml_guard.ws_upgrades_total");
        assert_eq!(prometheus(SIGNATURE_OK), "twiml_guard_signature_ok_total");
        assert_eq!(VERDICT_TIME, "twiml_guard.verdict_us");
    }

    #[test]
    fn mode_gauges_follow_the_mode_list() {
        let modes: Vec<&str> = Mode::ALL.iter().map(|m| mode_gauge(*m)).collect();
        assert_eq!(
            modes,
            [
                "twiml_guard.mode.rewrite",
                "twiml_guard.mode.strict",
                "twiml_guard.mode.monitor"
            ]
        );
    }

    #[test]
    fn counters_are_indexed_in_their_list_order() {
        for (i, c) in Counter::ALL.iter().enumerate() {
            assert_eq!(c.index(), i, "{c:?}");
        }
        let mut names: Vec<&str> = Counter::ALL.iter().map(|c| c.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Counter::COUNT);
    }
}
