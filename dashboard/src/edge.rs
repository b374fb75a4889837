//! The edge panel's data (`GET /api/edge`): the guard's counters and running mode, read from
//! Envoy's admin API (`edge.envoy_admin_url` + the guard's `/stats`) over HTTP and reduced by the
//! edge crate's stats reader to one small JSON object. A failed read is an error the page shows,
//! never zeros.

use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;
use twiml_guard_edge::stats::{GuardStats, STATS_PATH};

#[derive(Debug, thiserror::Error)]
pub enum EdgeError {
    #[error("edge.envoy_admin_url is not set")]
    NotConfigured,
    #[error("GET {url}: {message}")]
    Unreachable { url: String, message: String },
    #[error("GET {url}: {message}")]
    BadAnswer { url: String, message: String },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EdgeStats {
    /// The mode whose gauge is 1; `None` when no guard has configured yet.
    pub mode: Option<&'static str>,
    pub rules: Option<u64>,
    /// Every counter of the guard by its short name; a counter Envoy does not show yet is 0
    /// only when the guard has defined its metrics, else absent.
    pub counters: BTreeMap<&'static str, u64>,
}

impl EdgeStats {
    pub fn new(stats: &GuardStats) -> EdgeStats {
        EdgeStats {
            mode: stats.mode().map(|m| m.as_str()),
            rules: stats.rules(),
            counters: stats
                .counters()
                .into_iter()
                .filter_map(|(name, v)| Some((name, v?)))
                .collect(),
        }
    }
}

/// Reads the admin API.
#[derive(Clone)]
pub struct EdgeClient {
    admin: Option<String>,
    http: reqwest::Client,
}

impl EdgeClient {
    pub fn new(admin: Option<&str>, timeout: Duration) -> EdgeClient {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        EdgeClient {
            admin: admin.map(|a| a.trim_end_matches('/').to_owned()),
            http,
        }
    }

    /// The stats URL read (for the panel to show where its numbers come from).
    pub fn url(&self) -> Option<String> {
        self.admin.as_ref().map(|a| format!("{a}{STATS_PATH}"))
    }

    pub async fn read(&self) -> Result<EdgeStats, EdgeError> {
        let url = self.url().ok_or(EdgeError::NotConfigured)?;
        let unreachable = |e: reqwest::Error| EdgeError::Unreachable {
            url: url.clone(),
            message: e.without_url().to_string(),
        };
        let resp = self.http.get(&url).send().await.map_err(unreachable)?;
        if !resp.status().is_success() {
            return Err(EdgeError::BadAnswer {
                url: url.clone(),
                message: format!("status {}", resp.status()),
            });
        }
        let text = resp.text().await.map_err(unreachable)?;
        GuardStats::parse(&text)
            .map(|s| EdgeStats::new(&s))
            .map_err(|e| EdgeError::BadAnswer {
                url,
                message: e.to_string(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_and_mode_from_an_envoy_sample() {
        let text = "wasmcustom.twiml_guard.inspected_total: 1\n\
            wasmcustom.twiml_guard.mode.monitor: 0\n\
            wasmcustom.twiml_guard.mode.rewrite: 1\n\
            wasmcustom.twiml_guard.mode.strict: 0\n\
            wasmcustom.twiml_guard.responses.rewritten_total: 1\n\
            wasmcustom.twiml_guard.rules: 0\n\
            wasmcustom.twiml_guard.signature_ok_total: 2\n";
        let s = EdgeStats::new(&GuardStats::parse(text).unwrap());
        assert_eq!(s.mode, Some("rewrite"));
        assert_eq!(s.rules, Some(0));
        assert_eq!(s.counters.len(), 10);
        assert_eq!(s.counters["rewritten"], 1);
        assert_eq!(s.counters["inspected"], 1);
        assert_eq!(s.counters["signature_ok"], 2);
        assert_eq!(s.counters["rejected"], 0);
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["counters"]["rewritten"], 1);
        assert_eq!(json["mode"], "rewrite");
        let none = EdgeStats::new(&GuardStats::parse("server.live: 1\n").unwrap());
        assert_eq!(
            (none.mode, none.rules, none.counters.len()),
            (None, None, 0)
        );
    }

    #[test]
    fn the_url_reads_the_guards_stats() {
        let c = EdgeClient::new(Some("http://127.0.0.1:9901/"), Duration::from_secs(1));
        assert_eq!(
            c.url().unwrap(),
            "http://127.0.0.1:9901/stats?filter=twiml_guard"
        );
        assert_eq!(EdgeClient::new(None, Duration::from_secs(1)).url(), None);
    }
}
