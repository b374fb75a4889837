//! Config parsing: the documented defaults, every key round-trips, and each kind of mistake is
//! refused with the offending field named.

use super::*;

fn field_err(json: &str) -> (String, String) {
    let err = parse(json.as_bytes()).expect_err(json);
    (err.field().unwrap_or("").to_string(), err.to_string())
}

#[test]
fn empty_config_is_the_documented_defaults() {
    let c = parse(b"").unwrap();
    assert_eq!(c, Config::default());
    assert_eq!(parse(b"  \n").unwrap(), c);
    assert_eq!(parse(b"{}").unwrap(), c);
    assert_eq!(c.mode, Mode::Rewrite);
    assert_eq!(c.rewrite.action, RewriteAction::Strip);
    assert_eq!(c.rewrite.recording_status_callback, None);
    assert!(c.paths.is_empty());
    assert_eq!(
        c.content_types,
        ["text/xml", "application/xml", "text/html"]
    );
    assert_eq!(c.max_body_bytes, 262_144);
    assert_eq!(c.on_oversize, Policy::Pass);
    assert_eq!(c.on_malformed, Policy::Pass);
    assert_eq!(c.reject_status, 502);
    assert_eq!(c.reject_style, RejectStyle::Status);
    assert_eq!(
        c.fallback_twiml,
        "<Response><Say>We are sorry, this line is not available.</Say><Hangup/></Response>"
    );
    assert_eq!(c.media_path, "/ws/twilio-media");
    assert!(!c.log_twiml);
    assert!(c.holds_headers());
}

#[test]
fn every_key_is_read() {
    let c = parse(
        br#"{"mode": "strict", "rewrite_action": "start-recording",
             "recording_status_callback": "https://example.com/recording",
             "paths": ["/voice", "/twiml/"], "content_types": ["Text/XML"],
             "max_body_bytes": 1024, "on_oversize": "reject", "on_malformed": "reject",
             "reject_status": 503, "reject_style": "twiml",
             "fallback_twiml": "<Response><Hangup/></Response>",
             "media_path": "/media", "log_twiml": true}"#,
    )
    .unwrap();
    assert_eq!(c.mode, Mode::Strict);
    assert_eq!(c.rewrite.action, RewriteAction::StartRecording);
    assert_eq!(
        c.rewrite.recording_status_callback.as_deref(),
        Some("https://example.com/recording")
    );
    assert_eq!(c.paths, ["/voice", "/twiml/"]);
    assert_eq!(c.content_types, ["text/xml"]);
    assert_eq!(c.max_body_bytes, 1024);
    assert_eq!(c.on_oversize, Policy::Reject);
    assert_eq!(c.on_malformed, Policy::Reject);
    assert_eq!(c.reject_status, 503);
    assert_eq!(c.reject_style, RejectStyle::Twiml);
    assert_eq!(c.fallback_twiml, "<Response><Hangup/></Response>");
    assert_eq!(c.media_path, "/media");
    assert!(c.log_twiml);
    assert!(!c.holds_headers());
    assert_eq!(
        parse(br#"{"mode": "monitor"}"#).unwrap().mode,
        Mode::Monitor
    );
    assert_eq!(
        parse(br#"{"recording_status_callback": null}"#).unwrap(),
        Config::default()
    );
}

/// Every documented key (docs/filter.md's table), in its order.
const KNOWN_FIELDS: &[&str] = &[
    "mode",
    "rewrite_action",
    "recording_status_callback",
    "paths",
    "content_types",
    "max_body_bytes",
    "on_oversize",
    "on_malformed",
    "reject_status",
    "reject_style",
    "fallback_twiml",
    "media_path",
    "log_twiml",
    "signature",
    "rules",
    "config_version",
    "realtime_nouns",
];

#[test]
fn known_fields_match_the_struct() {
    // Every documented key is accepted, each at its default.
    let all = format!(
        "{{{}}}",
        KNOWN_FIELDS
            .iter()
            .map(|k| format!(
                "{k:?}: {}",
                serde_json::to_string(&default_json(k)).unwrap()
            ))
            .collect::<Vec<_>>()
            .join(",")
    );
    assert_eq!(parse(all.as_bytes()).unwrap(), Config::default());
}

fn default_json(key: &str) -> serde_json::Value {
    use serde_json::json;
    match key {
        "mode" => json!("rewrite"),
        "rewrite_action" => json!("strip"),
        "recording_status_callback" => json!(null),
        "paths" => json!([]),
        "content_types" => json!(["text/xml", "application/xml", "text/html"]),
        "max_body_bytes" => json!(262144),
        "on_oversize" | "on_malformed" => json!("pass"),
        "reject_status" => json!(502),
        "reject_style" => json!("status"),
        "fallback_twiml" => json!(DEFAULT_FALLBACK_TWIML),
        "media_path" => json!("/ws/twilio-media"),
        "log_twiml" => json!(false),
        "signature" | "config_version" => json!(null),
        "rules" => json!([]),
        "realtime_nouns" => json!([
            "Connect/Stream",
            "Start/Stream",
            "Connect/ConversationRelay"
        ]),
        other => panic!("no default for {other}"),
    }
}

#[test]
fn realtime_nouns_are_verb_slash_noun_and_not_empty() {
    let c = parse(br#"{"realtime_nouns": ["Connect/Stream", "Connect/AiSession"]}"#).unwrap();
    let nouns: Vec<String> = c.realtime_nouns.iter().map(ToString::to_string).collect();
    assert_eq!(nouns, ["Connect/Stream", "Connect/AiSession"]);
    let (field, msg) = field_err(r#"{"realtime_nouns": []}"#);
    assert_eq!(field, "realtime_nouns");
    assert!(msg.contains("at least one Verb/Noun"), "{msg}");
    let (field, msg) = field_err(r#"{"realtime_nouns": ["Connect Stream"]}"#);
    assert_eq!(field, "realtime_nouns");
    assert!(msg.contains("\"Connect Stream\" is not Verb/Noun"), "{msg}");
}

#[test]
fn unknown_field_is_named() {
    let (field, msg) = field_err(r#"{"mdoe": "strict"}"#);
    assert_eq!(field, "mdoe");
    assert!(msg.contains("unknown field `mdoe`"), "{msg}");
    assert!(msg.contains("mode"), "{msg}");
}

#[test]
fn bad_values_name_their_field() {
    let cases: &[(&str, &str, &str)] = &[
        (r#"{"mode": "strcit"}"#, "mode", "strcit"),
        (r#"{"mode": 1}"#, "mode", "invalid type"),
        (
            r#"{"rewrite_action": "record"}"#,
            "rewrite_action",
            "record",
        ),
        (
            r#"{"recording_status_callback": "/relative"}"#,
            "recording_status_callback",
            "absolute",
        ),
        (
            r#"{"recording_status_callback": "ftp://x/y"}"#,
            "recording_status_callback",
            "absolute",
        ),
        (
            r#"{"recording_status_callback": "https://"}"#,
            "recording_status_callback",
            "absolute",
        ),
        (
            r#"{"recording_status_callback": "https://a b/"}"#,
            "recording_status_callback",
            "absolute",
        ),
        (
            r#"{"recording_status_callback": 5}"#,
            "recording_status_callback",
            "invalid type",
        ),
        (r#"{"paths": "/voice"}"#, "paths", "invalid type"),
        (r#"{"paths": ["voice"]}"#, "paths", "path prefix"),
        (r#"{"paths": ["/voice?x=1"]}"#, "paths", "path prefix"),
        (r#"{"content_types": []}"#, "content_types", "at least one"),
        (
            r#"{"content_types": ["xml"]}"#,
            "content_types",
            "media type",
        ),
        (
            r#"{"content_types": ["text/xml; charset=utf-8"]}"#,
            "content_types",
            "media type",
        ),
        (r#"{"max_body_bytes": 0}"#, "max_body_bytes", "outside"),
        (
            r#"{"max_body_bytes": -1}"#,
            "max_body_bytes",
            "invalid value",
        ),
        (
            r#"{"max_body_bytes": 1e3}"#,
            "max_body_bytes",
            "invalid type",
        ),
        (
            r#"{"max_body_bytes": 16777217}"#,
            "max_body_bytes",
            "outside",
        ),
        (r#"{"on_oversize": "drop"}"#, "on_oversize", "drop"),
        (r#"{"on_malformed": true}"#, "on_malformed", "invalid type"),
        (r#"{"reject_status": 99}"#, "reject_status", "100-599"),
        (r#"{"reject_status": 600}"#, "reject_status", "100-599"),
        (
            r#"{"reject_status": "502"}"#,
            "reject_status",
            "invalid type",
        ),
        (r#"{"reject_style": "json"}"#, "reject_style", "json"),
        (
            r#"{"fallback_twiml": "<Response><Say>x</Response>"}"#,
            "fallback_twiml",
            "expected `</Say>`",
        ),
        (
            r#"{"fallback_twiml": "<html/>"}"#,
            "fallback_twiml",
            "one <Response>",
        ),
        (
            r#"{"fallback_twiml": "<Response/><Response/>"}"#,
            "fallback_twiml",
            "not well-formed XML at line 1, column 12",
        ),
        (
            r#"{"fallback_twiml": "<Response><Say>"}"#,
            "fallback_twiml",
            "not well-formed XML",
        ),
        (
            r#"{"fallback_twiml": "hello"}"#,
            "fallback_twiml",
            "not well-formed XML at line 1, column 1",
        ),
        (
            r#"{"fallback_twiml": "<Response><Say a=b/></Response>"}"#,
            "fallback_twiml",
            "attribute value must be quoted",
        ),
        (
            r#"{"fallback_twiml": "<Response><Record/><Connect><Stream url=\"wss://h/ws\"/></Connect></Response>"}"#,
            "fallback_twiml",
            "conflict",
        ),
        (r#"{"media_path": "ws"}"#, "media_path", "not a path"),
        (r#"{"log_twiml": "yes"}"#, "log_twiml", "invalid type"),
    ];
    for (json, want_field, want_text) in cases {
        let (field, msg) = field_err(json);
        assert_eq!(&field, want_field, "{json}: {msg}");
        assert!(
            msg.starts_with(&format!("field `{want_field}`")),
            "{json}: {msg}"
        );
        assert!(msg.contains(want_text), "{json}: {msg}");
    }
}

#[test]
fn nested_errors_name_the_top_key_and_the_path() {
    let (field, msg) =
        field_err(r#"{"signature": {"public_base_url": "https://v.example.com", "paths": [1]}}"#);
    assert_eq!(field, "signature");
    assert!(
        msg.starts_with("field `signature`: signature.paths[0]: invalid type"),
        "{msg}"
    );
    let (field, msg) = field_err(r#"{"log_twiml": false, "mode": "strict", "mode": "monitor"}"#);
    assert_eq!(field, "mode");
    assert!(msg.contains("duplicate field `mode`"), "{msg}");
}

#[test]
fn not_json_or_not_an_object() {
    assert!(matches!(parse(b"{\"mode\": "), Err(ConfigError::Json(_))));
    assert!(matches!(parse(b"mode=strict"), Err(ConfigError::Json(_))));
    assert_eq!(parse(b"[]"), Err(ConfigError::NotObject));
    assert_eq!(parse(b"null"), Err(ConfigError::NotObject));
    // Duplicate keys would make the second silently win.
    assert!(parse(br#"{"mode": "strict", "mode": "monitor"}"#).is_err());
}

#[test]
fn url_check() {
    assert!(is_absolute_url("https://example.com/cb"));
    assert!(is_absolute_url(
        "http://127.0.0.1:7000/webhook/recording_status?x=1"
    ));
    assert!(is_absolute_url("https://user@example.com"));
    assert!(!is_absolute_url("example.com/cb"));
    assert!(!is_absolute_url("https:///cb"));
    assert!(!is_absolute_url("https://:80/cb"));
    assert!(!is_absolute_url("https://example.com/\ncb"));
}

// === rules and config_version ===

#[test]
fn rules_resolve_against_the_defaults_in_order() {
    let c = parse(
        br#"{"mode": "monitor", "rewrite_action": "start-recording",
             "recording_status_callback": "https://h/cb", "config_version": "7",
             "rules": [
               {"name": "canary", "hosts": ["Canary.Example.com"], "mode": "strict"},
               {"paths": ["/voice/"], "rewrite_action": "strip", "mode": "rewrite"},
               {"hosts": ["*.example.com"], "paths": ["/a", "/b"], "rewrite_action": "strip"}
             ]}"#,
    )
    .unwrap();
    assert_eq!(c.config_version.as_deref(), Some("7"));
    let names: Vec<&str> = c.rules.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["canary", "rule1", "rule2"]);
    // Hosts are lowercased; what a rule leaves out is the default's.
    assert_eq!(c.rules[0].matcher.hosts, ["canary.example.com"]);
    assert_eq!(c.rules[0].mode, Mode::Strict);
    assert_eq!(c.rules[0].rewrite.action, RewriteAction::StartRecording);
    assert_eq!(c.rules[2].mode, Mode::Monitor);
    assert_eq!(c.rules[2].rewrite.action, RewriteAction::Strip);
    assert_eq!(
        c.rules[2].rewrite.recording_status_callback.as_deref(),
        Some("https://h/cb")
    );
    assert_eq!(c.rule_for(Some("canary.example.com"), "/voice/1"), Some(0));
    assert_eq!(c.rule_for(Some("x.example.com"), "/voice/1"), Some(1));
    assert_eq!(c.rule_for(Some("x.example.com"), "/b/c?q"), Some(2));
    assert_eq!(c.rule_for(Some("x.example.com"), "/c"), None);
    // Under a rule: its mode and action, everything else the defaults', and no rules.
    let under = c.under_rule(&c.rules[0]);
    assert_eq!(under.mode, Mode::Strict);
    assert!(under.rules.is_empty());
    assert_eq!(under.max_body_bytes, c.max_body_bytes);
    assert_eq!(
        applied_line(&c, "00ff"),
        "config applied config_version=7 digest=00ff mode=monitor \
         rewrite_action=start-recording rules=[canary:strict/start-recording \
         rule1:rewrite/strip rule2:monitor/strip]"
    );
}

#[test]
fn bad_rules_name_the_rule_and_the_key() {
    let cases = [
        (
            r#"{"rules": [{"paths": ["/a"], "mode": "strcit"}]}"#,
            "rules[0].mode: unknown variant `strcit`",
        ),
        (
            r#"{"rules": [{"paths": ["/a"], "mdoe": "strict"}]}"#,
            "rules[0].mdoe: unknown field `mdoe`",
        ),
        (
            r#"{"rules": [{"mode": "strict"}]}"#,
            "rules[0]: needs `hosts` or `paths`",
        ),
        (
            r#"{"rules": [{"paths": ["/a"]}]}"#,
            "rules[0]: sets neither `mode` nor `rewrite_action`",
        ),
        (
            r#"{"rules": [{"paths": ["a"], "mode": "strict"}]}"#,
            "rules[0]: paths: \"a\" is not a path prefix",
        ),
        (
            r#"{"rules": [{"hosts": ["h:443"], "mode": "strict"}]}"#,
            "rules[0]: hosts: \"h:443\" is not a host name",
        ),
        (
            r#"{"rules": [{"hosts": ["*"], "mode": "strict"}]}"#,
            "rules[0]: hosts: \"*\" is not a host name",
        ),
        (
            r#"{"rules": [{"name": "a", "paths": ["/a"], "mode": "strict"}, {"name": "a", "paths": ["/b"], "mode": "monitor"}]}"#,
            "rules[1]: name \"a\" is used twice",
        ),
        (
            r#"{"rules": [{"name": "a b", "paths": ["/a"], "mode": "strict"}]}"#,
            "rules[0]: name: \"a b\" may only hold",
        ),
        (r#"{"config_version": ""}"#, "must be 1 to 64 characters"),
        (r#"{"config_version": "v;1"}"#, "may only hold"),
    ];
    for (json, want) in cases {
        let err = parse(json.as_bytes()).expect_err(json);
        let field = if json.contains("config_version") {
            "config_version"
        } else {
            "rules"
        };
        assert_eq!(err.field(), Some(field), "{json}: {err}");
        assert!(err.to_string().contains(want), "{json}: {err}");
    }
    let many = format!(
        r#"{{"rules": [{}]}}"#,
        vec![r#"{"paths": ["/a"], "mode": "strict"}"#; MAX_RULES + 1].join(",")
    );
    assert!(parse(many.as_bytes())
        .unwrap_err()
        .to_string()
        .contains("at most 64"));
}

#[test]
fn digest_tells_configurations_apart() {
    assert_eq!(digest(b""), "cbf29ce484222325");
    assert_ne!(
        digest(br#"{"mode": "strict"}"#),
        digest(br#"{"mode": "monitor"}"#)
    );
    assert_eq!(digest(b"x").len(), 16);
}
