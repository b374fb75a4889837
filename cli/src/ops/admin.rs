//! What a running Envoy says about the guard, read from its admin API: the ECDS subscription's
//! stats (active version, accepted and rejected updates), the last resource it received
//! (`/config_dump`), and the filter's own gauges and counters.
//!
//! The client is `ureq` without TLS: one blocking GET to a loopback admin port needs no async
//! runtime, and its HTTP/1.1 framing (chunked replies included) is not worth writing by hand.

use std::time::Duration;

use serde_json::{json, Value};
use twiml_guard_edge::config::Mode;
use twiml_guard_edge::metrics::Counter;
use twiml_guard_edge::stats::{GuardStats, STATS_PATH};

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("GET {url}: {why}")]
    Http { url: String, why: String },
    #[error("{url}: unexpected answer: {why}")]
    Answer { url: String, why: String },
}

/// A blocking client for one admin base URL (`http://127.0.0.1:9901`).
pub struct Admin {
    base: String,
    agent: ureq::Agent,
}

impl Admin {
    pub fn new(base: &str) -> Admin {
        let config = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(5)))
            // The admin port is local; a proxy from the environment must not be used for it.
            .proxy(None)
            .build();
        Admin {
            base: base.trim_end_matches('/').to_string(),
            agent: config.into(),
        }
    }

    fn get(&self, path_and_query: &str) -> Result<String, AdminError> {
        let url = format!("{}{path_and_query}", self.base);
        let http = |why: String| AdminError::Http {
            url: url.clone(),
            why,
        };
        let mut resp = self
            .agent
            .get(&url)
            .call()
            .map_err(|e| http(e.to_string()))?;
        resp.body_mut()
            .with_config()
            .limit(16 << 20)
            .read_to_string()
            .map_err(|e| http(e.to_string()))
    }

    /// Read everything the status needs.
    pub fn snapshot(&self) -> Result<Snapshot, AdminError> {
        let stats = self.get(STATS_PATH)?;
        let stats = GuardStats::parse(&stats).map_err(|e| AdminError::Answer {
            url: format!("{}{STATS_PATH}", self.base),
            why: e.to_string(),
        })?;
        let dump_url = "/config_dump?resource=ecds_filters";
        let dump = self.get(dump_url)?;
        let dump: Value = serde_json::from_str(&dump).map_err(|e| AdminError::Answer {
            url: format!("{}{dump_url}", self.base),
            why: e.to_string(),
        })?;
        Ok(Snapshot::from_parts(stats, &dump))
    }
}

/// The guard as Envoy reports it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// The guard's stats and its ECDS subscription's.
    pub stats: GuardStats,
    /// `version_info` of the last resource Envoy received, accepted or not.
    pub received_version: Option<String>,
    /// The plugin JSON of that last received resource.
    pub received_plugin: Option<String>,
}

impl Snapshot {
    pub fn from_parts(stats: GuardStats, dump: &Value) -> Snapshot {
        let entry = dump["configs"].as_array().and_then(|configs| {
            configs
                .iter()
                .find(|c| c["ecds_filter"]["name"] == "twiml_guard")
        });
        Snapshot {
            stats,
            received_version: entry.and_then(|e| e["version_info"].as_str().map(String::from)),
            received_plugin: entry.and_then(|e| {
                e["ecds_filter"]["typed_config"]["config"]["configuration"]["value"]
                    .as_str()
                    .map(String::from)
            }),
        }
    }

    /// The version Envoy runs (`version_text`); `None` before any configuration was accepted.
    pub fn active_version(&self) -> Option<&str> {
        self.stats.active_version()
    }

    pub fn updates_rejected(&self) -> u64 {
        self.stats.updates_rejected()
    }

    /// The last update Envoy received was refused: the config dump shows the last resource
    /// received, and its version is not the one running. (`config_reload` rises on a refused
    /// update too, so it proves nothing.)
    pub fn last_update_rejected(&self) -> bool {
        match (&self.received_version, self.active_version()) {
            (Some(received), Some(active)) => received != active,
            (Some(_), None) => self.updates_rejected() > 0,
            (None, _) => false,
        }
    }

    /// The active default mode.
    pub fn mode(&self) -> Option<&'static str> {
        self.stats.mode().map(Mode::as_str)
    }

    pub fn count(&self, counter: Counter) -> u64 {
        self.stats.counter(counter).unwrap_or(0)
    }

    pub fn to_json(&self) -> Value {
        let responses: serde_json::Map<String, Value> = self
            .stats
            .responses()
            .into_iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
        json!({
            "active_version": self.active_version(),
            "received_version": self.received_version,
            "last_update": if self.last_update_rejected() { "rejected" } else { "accepted" },
            "updates_accepted": self.stats.updates_accepted(),
            "updates_rejected": self.updates_rejected(),
            "mode": self.mode(),
            "rules": self.stats.rules().unwrap_or(0),
            "responses": responses,
            "inspected": self.count(Counter::Inspected),
            "signature_ok": self.count(Counter::SignatureOk),
            "signature_rejected": self.count(Counter::SignatureRejected),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATS: &str = "extension_config_discovery.http_filter.twiml_guard.version_text: \"2\"\n\
        extension_config_discovery.http_filter.twiml_guard.update_rejected: 1\n\
        extension_config_discovery.http_filter.twiml_guard.update_success: 2\n\
        wasmcustom.twiml_guard.mode.monitor: 0\n\
        wasmcustom.twiml_guard.mode.rewrite: 0\n\
        wasmcustom.twiml_guard.mode.strict: 1\n\
        wasmcustom.twiml_guard.rules: 2\n\
        wasmcustom.twiml_guard.responses.rejected_total: 4\n\
        wasmcustom.twiml_guard.inspected_total: 9\n\
        http.ingress_http.twiml_guard.other: 5\n";

    fn dump(version: &str) -> Value {
        json!({"configs": [{
            "version_info": version,
            "ecds_filter": {"name": "twiml_guard", "typed_config": {"config": {
                "configuration": {"value": "{\"mode\": \"bogus\"}"}}}}
        }]})
    }

    #[test]
    fn a_refused_update_shows_as_a_newer_received_version() {
        let s = Snapshot::from_parts(GuardStats::parse(STATS).unwrap(), &dump("3"));
        assert_eq!(s.active_version(), Some("2"));
        assert!(s.last_update_rejected());
        assert_eq!(s.mode(), Some("strict"));
        assert_eq!(s.updates_rejected(), 1);
        let j = s.to_json();
        assert_eq!(j["last_update"], "rejected");
        assert_eq!(j["responses"]["rejected"], 4);
        assert_eq!(j["responses"]["clean"], 0);
        assert_eq!(j["inspected"], 9);
        assert_eq!(j["rules"], 2);
        assert_eq!(j["updates_accepted"], 2);
        assert_eq!(j["signature_ok"], 0);
        let same = Snapshot::from_parts(GuardStats::parse(STATS).unwrap(), &dump("2"));
        assert!(!same.last_update_rejected());
    }

    #[test]
    fn nothing_accepted_yet() {
        let stats = GuardStats::parse(
            "extension_config_discovery.http_filter.twiml_guard.version_text: \"\"\n\
             extension_config_discovery.http_filter.twiml_guard.update_rejected: 1\n",
        )
        .unwrap();
        let s = Snapshot::from_parts(stats, &dump("1"));
        assert_eq!(s.active_version(), None);
        assert!(s.last_update_rejected());
        assert_eq!(s.mode(), None);
    }
}
