//! The native module's per-route configuration: an Envoy route's `DynamicModuleFilterPerRoute`
//! gives a rule (`{"name": ..., "mode": ..., "rewrite_action": ...}`) that requests on that route
//! run under instead of the configuration's `rules`. Envoy builds one per route when the route
//! configuration loads, and hands it back to each stream on the route.

use std::sync::{Arc, Mutex, PoisonError, Weak};

use twiml_guard_edge::config::{self, Config, ConfigError, RouteRule};

pub struct RouteConfig {
    rule: RouteRule,
    name: Arc<str>,
    /// The configuration last resolved with the rule, and the one it was resolved from: the
    /// filter's configuration only changes on an ECDS update, so one entry spares a resolve per
    /// request.
    resolved: Mutex<Option<(Weak<Config>, Arc<Config>)>>,
}

impl RouteConfig {
    /// Parse and validate a route's rule.
    pub fn new(bytes: &[u8]) -> Result<RouteConfig, ConfigError> {
        let rule = config::parse_route_rule(bytes)?;
        Ok(RouteConfig {
            name: Arc::from(rule.name.as_str()),
            rule,
            resolved: Mutex::new(None),
        })
    }

    pub fn rule(&self) -> &RouteRule {
        &self.rule
    }

    /// The rule's name and `base` with the rule applied.
    pub fn resolve(&self, base: &Arc<Config>) -> (Arc<str>, Arc<Config>) {
        let mut slot = self.resolved.lock().unwrap_or_else(PoisonError::into_inner);
        let cached = slot
            .as_ref()
            .filter(|(from, _)| Weak::as_ptr(from) == Arc::as_ptr(base))
            .map(|(_, cfg)| Arc::clone(cfg));
        let cfg = cached.unwrap_or_else(|| {
            let cfg = Arc::new(base.under_route(&self.rule));
            *slot = Some((Arc::downgrade(base), Arc::clone(&cfg)));
            cfg
        });
        (Arc::clone(&self.name), cfg)
    }
}
