//! A rule given by an Envoy route instead of by the configuration's `rules`: the native module's
//! per-route configuration (`DynamicModuleFilterPerRoute`). The route already says where it
//! applies, so it has a name and what it changes (`mode`, `rewrite_action`), no `hosts` or
//! `paths`; on its route it takes the place of the configuration's rules.

use serde::Deserialize;

use super::{check_label, keyed, Config, Mode, RewriteAction};
use crate::syntax::{bad, ConfigError};

/// A route's rule, validated; resolved against a configuration by [`Config::under_route`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteRule {
    pub name: String,
    pub mode: Option<Mode>,
    pub rewrite_action: Option<RewriteAction>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRouteRule {
    name: Option<String>,
    mode: Option<Mode>,
    rewrite_action: Option<RewriteAction>,
}

/// Parse and validate a route's rule: a JSON object with `name` and at least one of `mode` and
/// `rewrite_action`.
pub fn parse_route_rule(bytes: &[u8]) -> Result<RouteRule, ConfigError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let raw: RawRouteRule = serde_path_to_error::deserialize(&mut de).map_err(keyed)?;
    de.end().map_err(|e| ConfigError::Json(e.to_string()))?;
    let name = raw.name.ok_or_else(|| {
        bad(
            "name",
            "a route's rule needs a name (it goes into x-twiml-guard and the verdict line)",
        )
    })?;
    check_label(&name).map_err(|why| bad("name", why))?;
    if raw.mode.is_none() && raw.rewrite_action.is_none() {
        return Err(bad(
            "mode",
            "a route's rule sets neither `mode` nor `rewrite_action`, so it would change nothing",
        ));
    }
    Ok(RouteRule {
        name,
        mode: raw.mode,
        rewrite_action: raw.rewrite_action,
    })
}

impl Config {
    /// The configuration a request on a route with `rule` runs under: this one with the rule's
    /// overrides and no rules of its own (the route's rule replaces them).
    pub fn under_route(&self, rule: &RouteRule) -> Config {
        let mut rewrite = self.rewrite.clone();
        if let Some(action) = rule.rewrite_action {
            rewrite.action = action;
        }
        Config {
            mode: rule.mode.unwrap_or(self.mode),
            rewrite,
            rules: Vec::new(),
            ..self.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;

    #[test]
    fn a_route_rule_overrides_mode_and_action_and_drops_the_rules() {
        let base = parse(
            br#"{"mode": "rewrite", "rules": [{"name": "r", "paths": ["/x/"], "mode": "monitor"}]}"#,
        )
        .unwrap();
        let rule = parse_route_rule(br#"{"name": "canary", "mode": "strict"}"#).unwrap();
        assert_eq!(
            rule,
            RouteRule {
                name: "canary".into(),
                mode: Some(Mode::Strict),
                rewrite_action: None
            }
        );
        let cfg = base.under_route(&rule);
        assert_eq!(cfg.mode, Mode::Strict);
        assert_eq!(cfg.rewrite, base.rewrite);
        assert!(cfg.rules.is_empty());
        assert_eq!(cfg.content_types, base.content_types);

        let rule =
            parse_route_rule(br#"{"name": "rec", "rewrite_action": "start-recording"}"#).unwrap();
        let cfg = base.under_route(&rule);
        assert_eq!(cfg.mode, Mode::Rewrite);
        assert_eq!(cfg.rewrite.action, twiml::RewriteAction::StartRecording);
    }

    #[test]
    fn a_bad_route_rule_is_refused_naming_the_field() {
        let err = |json: &str| parse_route_rule(json.as_bytes()).unwrap_err().to_string();
        assert!(
            err(r#"{"mode": "strict"}"#).contains("field `name`: a route's rule needs a name"),
            "{}",
            err(r#"{"mode": "strict"}"#)
        );
        assert!(err(r#"{"name": "x"}"#).contains("would change nothing"));
        assert!(err(r#"{"name": "x", "mode": "bogus"}"#).contains("unknown variant `bogus`"));
        assert!(err(r#"{"name": "a b", "mode": "strict"}"#).contains("may only hold"));
        // The route is the match: hosts and paths have no place here.
        assert!(err(r#"{"name": "x", "mode": "strict", "paths": ["/a/"]}"#)
            .contains("unknown field `paths`"));
        assert!(err(r#"{"name": "x", "mode": "strict"} trailing"#).contains("trailing"));
        assert!(err("").contains("EOF"), "{}", err(""));
    }
}
