//! The options of the npm package's guards (the Express middleware, `guardResponse`) as the
//! Envoy filter's own configuration: a JavaScript caller writes camelCase keys, they become the
//! filter's JSON and go through its parser (`twiml_guard_edge::config::parse`), so the same values
//! are refused for the same reasons and every decision after that is the filter's own function.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tsify::Tsify;
use twiml_guard_edge::config::{self, Config, ConfigError};

/// The options of the Express middleware and of `guardResponse`; every key is optional and has
/// the filter's default. Request routing (`paths`, `rules`, signatures) is the caller's own.
#[derive(Debug, Default, Serialize, Deserialize, Tsify)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GuardOptions {
    /// What a conflict turns into: a rewritten body (default), a rejection, or nothing.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[tsify(optional, type = "\"rewrite\" | \"strict\" | \"monitor\"")]
    pub mode: Option<String>,
    /// rewrite mode: `strip` (default) or `start-recording`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[tsify(optional, type = "ActionName")]
    pub action: Option<String>,
    /// start-recording: the recordingStatusCallback to add when the `<Record>` had none.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[tsify(optional)]
    pub recording_status_callback: Option<String>,
    /// A body that is not well-formed XML, corrupt gzip or in a coding other than gzip: pass it
    /// (default) or reject it.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[tsify(optional, type = "\"pass\" | \"reject\"")]
    pub on_malformed: Option<String>,
    /// A body over `maxBodyBytes` (declared, received or decoded): pass it (default) or reject it.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[tsify(optional, type = "\"pass\" | \"reject\"")]
    pub on_oversize: Option<String>,
    /// Status of a `status`-style rejection; default 502.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[tsify(optional)]
    pub reject_status: Option<u32>,
    /// `status` (default): `rejectStatus` with a JSON body; `twiml`: `fallbackTwiml`, status kept.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[tsify(optional, type = "\"status\" | \"twiml\"")]
    pub reject_style: Option<String>,
    /// The body of a `twiml`-style rejection.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[tsify(optional)]
    pub fallback_twiml: Option<String>,
    /// Largest body judged, and largest a gzip body may expand to; default 262144.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[tsify(optional)]
    pub max_body_bytes: Option<u64>,
    /// Media types judged; default text/xml, application/xml, text/html (sniffed first).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[tsify(optional)]
    pub content_types: Option<Vec<String>>,
    /// `Verb/Noun` of each noun that opens a real-time stream; default `Connect/Stream`,
    /// `Start/Stream`, `Connect/ConversationRelay`. The list replaces the default.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[tsify(optional)]
    pub realtime_nouns: Option<Vec<String>>,
}

/// Each option's name in JavaScript and in the filter's configuration.
const KEYS: [(&str, &str); 11] = [
    ("mode", "mode"),
    ("action", "rewrite_action"),
    ("recordingStatusCallback", "recording_status_callback"),
    ("onMalformed", "on_malformed"),
    ("onOversize", "on_oversize"),
    ("rejectStatus", "reject_status"),
    ("rejectStyle", "reject_style"),
    ("fallbackTwiml", "fallback_twiml"),
    ("maxBodyBytes", "max_body_bytes"),
    ("contentTypes", "content_types"),
    ("realtimeNouns", "realtime_nouns"),
];

/// The filter's configuration for `options`; an error names the option as JavaScript spells it.
pub fn config(options: &GuardOptions) -> Result<Config, String> {
    let given = match serde_json::to_value(options) {
        Ok(Value::Object(map)) => map,
        Ok(_) | Err(_) => return Err("options must be an object".into()),
    };
    let mut filter = Map::new();
    for (key, value) in given {
        let name = KEYS
            .iter()
            .find(|(js, _)| *js == key)
            .map_or(key.as_str(), |(_, f)| f);
        filter.insert(name.to_owned(), value);
    }
    config::parse(Value::Object(filter).to_string().as_bytes()).map_err(|e| match e {
        ConfigError::Field { field, message } => {
            let js = KEYS
                .iter()
                .find(|(_, f)| *f == field)
                .map_or(field.as_str(), |(js, _)| js);
            format!("{js}: {message}")
        }
        other => other.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use twiml_guard_edge::config::{Mode, Policy, RejectStyle};

    #[test]
    fn options_become_the_filters_configuration() {
        let cfg = config(&GuardOptions {
            mode: Some("strict".into()),
            action: Some("start-recording".into()),
            recording_status_callback: Some("https://cb.example/r".into()),
            on_malformed: Some("reject".into()),
            on_oversize: Some("reject".into()),
            reject_status: Some(503),
            reject_style: Some("twiml".into()),
            fallback_twiml: Some("<Response><Hangup/></Response>".into()),
            max_body_bytes: Some(1000),
            content_types: Some(vec!["Text/XML".into()]),
            realtime_nouns: Some(vec!["Connect/AiSession".into()]),
        })
        .unwrap();
        assert_eq!(cfg.mode, Mode::Strict);
        assert_eq!(cfg.rewrite.action, twiml::RewriteAction::StartRecording);
        assert_eq!(
            cfg.rewrite.recording_status_callback.as_deref(),
            Some("https://cb.example/r")
        );
        assert_eq!(
            (cfg.on_malformed, cfg.on_oversize),
            (Policy::Reject, Policy::Reject)
        );
        assert_eq!(
            (cfg.reject_status, cfg.reject_style),
            (503, RejectStyle::Twiml)
        );
        assert_eq!(cfg.fallback_twiml, "<Response><Hangup/></Response>");
        assert_eq!(cfg.max_body_bytes, 1000);
        assert_eq!(cfg.content_types, vec!["text/xml"]);
        assert_eq!(
            cfg.realtime_nouns,
            vec![twiml::RealtimeNoun::new("Connect", "AiSession")]
        );
        assert_eq!(
            config(&GuardOptions::default()).unwrap(),
            config::parse(b"{}").unwrap()
        );
    }

    #[test]
    fn errors_name_the_javascript_option() {
        let err = |o: GuardOptions| config(&o).unwrap_err();
        assert_eq!(
            err(GuardOptions {
                mode: Some("strcit".into()),
                ..Default::default()
            }),
            "mode: unknown variant `strcit`, expected one of `rewrite`, `strict`, `monitor`"
        );
        assert!(err(GuardOptions {
            action: Some("delete".into()),
            ..Default::default()
        })
        .starts_with("action: unknown variant `delete`"));
        assert!(err(GuardOptions {
            max_body_bytes: Some(0),
            ..Default::default()
        })
        .starts_with("maxBodyBytes: "));
        assert!(err(GuardOptions {
            fallback_twiml: Some("<Response><Record/>".into()),
            ..Default::default()
        })
        .starts_with("fallbackTwiml: "));
    }
}
