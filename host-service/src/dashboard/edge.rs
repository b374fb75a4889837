//! The edge panel's data (`GET /api/edge`): the guard's counters and running mode, read from
//! Envoy's admin API (`edge.envoy_admin_url` + `/stats?format=json`) over HTTP and reduced to
//! one small JSON object. A failed read is an error the page shows, never zeros.

use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

/// The counters shown; the outcomes' are `responses.<name>_total` in `/stats`, the others
/// `<name>_total`, after `wasmcustom.twiml_guard.`.
pub const COUNTERS: [&str; 10] = [
    "inspected",
    "clean",
    "rewritten",
    "rejected",
    "detected",
    "oversize",
    "malformed",
    "ws_upgrades",
    "signature_ok",
    "signature_rejected",
];
const OUTCOMES: [&str; 6] = [
    "clean",
    "rewritten",
    "rejected",
    "detected",
    "oversize",
    "malformed",
];
const MODES: [&str; 3] = ["rewrite", "strict", "monitor"];
const PREFIX: &str = "wasmcustom.twiml_guard.";

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
    pub mode: Option<String>,
    pub rules: Option<u64>,
    /// Every name of [`COUNTERS`]; a counter Envoy does not show yet is 0 only when the guard
    /// has defined its metrics (`mode` is known), else absent.
    pub counters: BTreeMap<&'static str, u64>,
}

/// Reduce the admin's `/stats?format=json` answer.
pub fn parse_stats(json: &str) -> Result<EdgeStats, String> {
    let v: Value = serde_json::from_str(json).map_err(|e| format!("not JSON: {e}"))?;
    let stats = v["stats"]
        .as_array()
        .ok_or("no \"stats\" array in the answer")?;
    let mut values: BTreeMap<&str, u64> = BTreeMap::new();
    for s in stats {
        let (Some(name), Some(value)) = (s["name"].as_str(), s["value"].as_u64()) else {
            continue;
        };
        if let Some(rest) = name.strip_prefix(PREFIX) {
            values.insert(rest, value);
        }
    }
    let mode = MODES
        .iter()
        .find(|m| values.get(format!("mode.{m}").as_str()) == Some(&1))
        .map(|m| m.to_string());
    let counters = COUNTERS
        .iter()
        .filter_map(|c| {
            let name = if OUTCOMES.contains(c) {
                format!("responses.{c}_total")
            } else {
                format!("{c}_total")
            };
            let v = values.get(name.as_str()).copied();
            v.or(mode.as_ref().map(|_| 0)).map(|v| (*c, v))
        })
        .collect();
    Ok(EdgeStats {
        mode,
        rules: values.get("rules").copied(),
        counters,
    })
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
        self.admin
            .as_ref()
            .map(|a| format!("{a}/stats?format=json&filter=%5Ewasmcustom%5C.twiml_guard%5C."))
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
        parse_stats(&text).map_err(|message| EdgeError::BadAnswer { url, message })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Envoy 1.40's `/stats?format=json&filter=...` for a guard in rewrite mode after one call
    /// (shape as Envoy writes it, histograms included).
    const SAMPLE: &str = r#"{"stats":[
        {"name":"wasmcustom.twiml_guard.inspected_total","value":1},
        {"name":"wasmcustom.twiml_guard.responses.clean_total","value":0},
        {"name":"wasmcustom.twiml_guard.responses.detected_total","value":0},
        {"name":"wasmcustom.twiml_guard.responses.malformed_total","value":0},
        {"name":"wasmcustom.twiml_guard.responses.oversize_total","value":0},
        {"name":"wasmcustom.twiml_guard.responses.rejected_total","value":0},
        {"name":"wasmcustom.twiml_guard.responses.rewritten_total","value":1},
        {"name":"wasmcustom.twiml_guard.signature_ok_total","value":2},
        {"name":"wasmcustom.twiml_guard.signature_rejected_total","value":0},
        {"name":"wasmcustom.twiml_guard.ws_upgrades_total","value":1},
        {"name":"wasmcustom.twiml_guard.mode.monitor","value":0},
        {"name":"wasmcustom.twiml_guard.mode.rewrite","value":1},
        {"name":"wasmcustom.twiml_guard.mode.strict","value":0},
        {"name":"wasmcustom.twiml_guard.rules","value":0},
        {"name":"http.ingress.downstream_rq_total","value":9},
        {"histograms":{"supported_quantiles":[0,25,50],"computed_quantiles":[]}}
    ]}"#;

    #[test]
    fn counters_and_mode_from_an_envoy_sample() {
        let s = parse_stats(SAMPLE).unwrap();
        assert_eq!(s.mode.as_deref(), Some("rewrite"));
        assert_eq!(s.rules, Some(0));
        assert_eq!(s.counters.len(), COUNTERS.len());
        assert_eq!(s.counters["rewritten"], 1);
        assert_eq!(s.counters["inspected"], 1);
        assert_eq!(s.counters["signature_ok"], 2);
        assert_eq!(s.counters["ws_upgrades"], 1);
        assert_eq!(s.counters["rejected"], 0);
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["counters"]["rewritten"], 1);
        assert_eq!(json["mode"], "rewrite");
    }

    #[test]
    fn no_guard_yet_means_no_numbers_not_zeros() {
        let s = parse_stats(r#"{"stats":[{"name":"server.live","value":1}]}"#).unwrap();
        assert_eq!(s.mode, None);
        assert_eq!(s.rules, None);
        assert!(s.counters.is_empty());
    }

    #[test]
    fn a_bad_answer_is_an_error() {
        assert!(parse_stats("<html>").unwrap_err().starts_with("not JSON"));
        assert_eq!(
            parse_stats(r#"{"x":1}"#).unwrap_err(),
            "no \"stats\" array in the answer"
        );
    }

    #[test]
    fn the_url_filters_to_the_guard() {
        let c = EdgeClient::new(Some("http://127.0.0.1:9901/"), Duration::from_secs(1));
        assert_eq!(
            c.url().unwrap(),
            "http://127.0.0.1:9901/stats?format=json&filter=%5Ewasmcustom%5C.twiml_guard%5C."
        );
        assert_eq!(EdgeClient::new(None, Duration::from_secs(1)).url(), None);
    }
}
