//! What a running Envoy says about the guard, read from its admin API: the ECDS subscription's
//! stats (active version, accepted and rejected updates), the last resource it received
//! (`/config_dump`), and the filter's own gauges and counters.
//!
//! The client is `ureq` without TLS: one blocking GET to a loopback admin port needs no async
//! runtime, and its HTTP/1.1 framing (chunked replies included) is not worth writing by hand.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Value};

/// Where the ECDS subscription's stats live.
pub const ECDS_PREFIX: &str = "extension_config_discovery.http_filter.twiml_guard.";
/// Where the filter's own metrics live in `/stats` (`wasmcustom.` + the names it defines).
pub const FILTER_PREFIX: &str = "wasmcustom.twiml_guard.";

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
        let stats = self.get("/stats?filter=twiml_guard")?;
        let dump_url = "/config_dump?resource=ecds_filters";
        let dump = self.get(dump_url)?;
        let dump: Value = serde_json::from_str(&dump).map_err(|e| AdminError::Answer {
            url: format!("{}{dump_url}", self.base),
            why: e.to_string(),
        })?;
        Ok(Snapshot::from_parts(&stats, &dump))
    }
}

/// The guard as Envoy reports it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// Every `/stats` line under the two prefixes: name to value (text readouts unquoted).
    pub stats: BTreeMap<String, String>,
    /// `version_info` of the last resource Envoy received, accepted or not.
    pub received_version: Option<String>,
    /// The plugin JSON of that last received resource.
    pub received_plugin: Option<String>,
}

impl Snapshot {
    pub fn from_parts(stats_text: &str, dump: &Value) -> Snapshot {
        let stats = stats_text
            .lines()
            .filter_map(|l| l.split_once(": "))
            .filter(|(k, _)| k.starts_with(ECDS_PREFIX) || k.starts_with(FILTER_PREFIX))
            .map(|(k, v)| (k.to_string(), v.trim().trim_matches('"').to_string()))
            .collect();
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

    fn ecds(&self, name: &str) -> Option<&str> {
        self.stats
            .get(&format!("{ECDS_PREFIX}{name}"))
            .map(String::as_str)
    }

    fn count(&self, full_name: &str) -> u64 {
        self.stats
            .get(full_name)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    /// The version Envoy runs (`version_text`); `None` before any configuration was accepted.
    pub fn active_version(&self) -> Option<&str> {
        self.ecds("version_text").filter(|v| !v.is_empty())
    }

    pub fn updates_accepted(&self) -> u64 {
        self.count(&format!("{ECDS_PREFIX}update_success"))
    }

    pub fn updates_rejected(&self) -> u64 {
        self.count(&format!("{ECDS_PREFIX}update_rejected"))
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

    /// The active default mode, from the filter's `twiml_guard.mode.<mode>` gauges.
    pub fn mode(&self) -> Option<&'static str> {
        ["rewrite", "strict", "monitor"]
            .into_iter()
            .find(|m| self.count(&format!("{FILTER_PREFIX}mode.{m}")) == 1)
    }

    pub fn rules(&self) -> u64 {
        self.count(&format!("{FILTER_PREFIX}rules"))
    }

    /// The outcome counters, in the filter's order.
    pub fn responses(&self) -> Vec<(&'static str, u64)> {
        [
            "clean",
            "rewritten",
            "rejected",
            "detected",
            "oversize",
            "malformed",
        ]
        .into_iter()
        .map(|o| {
            (
                o,
                self.count(&format!("{FILTER_PREFIX}responses.{o}_total")),
            )
        })
        .collect()
    }

    pub fn to_json(&self) -> Value {
        let responses: serde_json::Map<String, Value> = self
            .responses()
            .into_iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
        json!({
            "active_version": self.active_version(),
            "received_version": self.received_version,
            "last_update": if self.last_update_rejected() { "rejected" } else { "accepted" },
            "updates_accepted": self.updates_accepted(),
            "updates_rejected": self.updates_rejected(),
            "mode": self.mode(),
            "rules": self.rules(),
            "responses": responses,
            "inspected": self.count(&format!("{FILTER_PREFIX}inspected_total")),
            "signature_ok": self.count(&format!("{FILTER_PREFIX}signature_ok_total")),
            "signature_rejected": self.count(&format!("{FILTER_PREFIX}signature_rejected_total")),
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
        let s = Snapshot::from_parts(STATS, &dump("3"));
        assert_eq!(s.active_version(), Some("2"));
        assert!(s.last_update_rejected());
        assert_eq!(s.mode(), Some("strict"));
        assert_eq!(s.rules(), 2);
        assert_eq!(s.updates_accepted(), 2);
        assert_eq!(s.updates_rejected(), 1);
        let j = s.to_json();
        assert_eq!(j["last_update"], "rejected");
        assert_eq!(j["responses"]["rejected"], 4);
        assert_eq!(j["responses"]["clean"], 0);
        assert_eq!(j["inspected"], 9);
        assert!(!s.stats.contains_key("http.ingress_http.twiml_guard.other"));
        assert!(!Snapshot::from_parts(STATS, &dump("2")).last_update_rejected());
    }

    #[test]
    fn nothing_accepted_yet() {
        let s = Snapshot::from_parts(
            "extension_config_discovery.http_filter.twiml_guard.version_text: \"\"\n\
             extension_config_discovery.http_filter.twiml_guard.update_rejected: 1\n",
            &dump("1"),
        );
        assert_eq!(s.active_version(), None);
        assert!(s.last_update_rejected());
        assert_eq!(s.mode(), None);
    }
}
