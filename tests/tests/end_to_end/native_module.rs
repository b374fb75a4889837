//! The native module on its own terms: Envoy 1.40 loads it and validates a configuration with it
//! (`envoy --mode validate`, the ABI check a CI run makes), refuses a bad plugin JSON through it,
//! runs a route's own rule (`DynamicModuleFilterPerRoute`) and refuses a bad one, and a panic
//! inside the guard (forced by the test build's fault injection) fails that one request the
//! configured way while Envoy keeps serving every other.

use crate::common;

use e2e::upstream::{RawUpstream, WsEcho};
use e2e::{Envoy, EnvoySetup, Shim};

/// An Envoy with the guard inline (no ECDS), so `--mode validate` builds the filter itself.
fn inline_bootstrap(module: &std::path::Path, plugin_json: &str) -> String {
    let mut typed =
        e2e::shipped_resource(Shim::Native).unwrap()["resources"][0]["typed_config"].clone();
    typed["dynamic_module_config"]["module"]["local"]["filename"] =
        module.display().to_string().into();
    typed["filter_config"]["value"] = plugin_json.into();
    format!(
        r#"static_resources:
  listeners:
  - name: ingress
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: 0 }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress_http
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes: [{{ match: {{ prefix: / }}, direct_response: {{ status: 200 }} }}]
          http_filters:
          - name: twiml_guard
            typed_config: {typed}
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
"#
    )
}

fn validate(bootstrap: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("envoy.yaml");
    std::fs::write(&path, bootstrap).unwrap();
    let (status, out) = e2e::validate_envoy_config(&path, dir.path()).unwrap();
    (status.success(), out)
}

#[test]
fn envoy_validates_a_configuration_with_the_module_and_refuses_a_bad_one() {
    let module = e2e::native_module().unwrap();
    let (ok, out) = validate(&inline_bootstrap(&module, r#"{"mode": "strict"}"#));
    assert!(ok, "{out}");
    assert!(out.contains("ABI version v0.2.0 matched"), "{out}");
    let (ok, out) = validate(&inline_bootstrap(&module, r#"{"mode": "bogus"}"#));
    assert!(!ok, "{out}");
    assert!(
        out.contains("invalid plugin configuration: field `mode`"),
        "{out}"
    );
}

/// The guard's `typed_per_filter_config` entry giving a route `rule` (the JSON of a route's rule).
fn route_rule(module: &std::path::Path, rule: &str) -> String {
    format!(
        r#"{{ "@type": type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilterPerRoute, dynamic_module_config: {{ module: {{ local: {{ filename: {} }} }}, metrics_namespace: wasmcustom }}, filter_name: twiml_guard, filter_config: {{ "@type": type.googleapis.com/google.protobuf.StringValue, value: '{rule}' }} }}"#,
        module.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_routes_own_rule_takes_the_place_of_the_configurations_rules() {
    let backend = RawUpstream::start(common::legacy).await.unwrap();
    let media = WsEcho::start().await.unwrap();
    let module = e2e::native_module().unwrap();
    // The configuration's rule covers both prefixes; the route's rule wins on its route.
    let setup = EnvoySetup::new(backend.addr(), media.addr())
        .plugin_config(
            r#"{"mode": "rewrite", "rules": [
                {"name": "watch", "paths": ["/canary/", "/routed/", "/recorded/"], "mode": "monitor"}]}"#,
        )
        .shim(Shim::Native);
    let routes = [
        common::voice_route(
            "/routed/",
            Some(&route_rule(
                &module,
                r#"{"name": "routed", "mode": "strict"}"#,
            )),
        ),
        common::voice_route(
            "/recorded/",
            Some(&route_rule(
                &module,
                r#"{"name": "rec", "rewrite_action": "start-recording"}"#,
            )),
        ),
        common::voice_route("/canary/", None),
    ]
    .concat();
    let envoy = Envoy::start_with_config(&common::with_routes(&setup, &routes))
        .await
        .unwrap();
    let routed = common::post(&envoy, "/routed/conflict").await;
    assert_eq!(
        (routed.status, routed.guard.as_deref()),
        (502, Some("rejected; rule=routed; blocks=Connect/Stream"))
    );
    // Only the action changes; the mode stays the configuration's (rewrite).
    let recorded = common::post(&envoy, "/recorded/conflict").await;
    assert_eq!(
        (recorded.status, recorded.guard.as_deref()),
        (200, Some("rewritten; rule=rec; blocks=Connect/Stream"))
    );
    assert!(
        recorded.text().contains("<Start><Recording"),
        "{}",
        recorded.text()
    );
    let canary = common::post(&envoy, "/canary/conflict").await;
    assert_eq!(
        (canary.status, canary.guard.as_deref(), &canary.body),
        (
            200,
            Some("detected; rule=watch; blocks=Connect/Stream"),
            &common::conflict()
        )
    );
    let voice = common::post(&envoy, "/voice/conflict").await;
    assert_eq!(
        voice.guard.as_deref(),
        Some("rewritten; blocks=Connect/Stream")
    );
    let log = envoy.wait_log("rule=routed mode=strict").await.unwrap();
    assert!(log.contains("route rule routed configured"), "{log}");

    // A bad rule on a route is refused when Envoy loads the routes, naming the field.
    let bad = common::with_routes(
        &setup,
        &common::voice_route(
            "/routed/",
            Some(&route_rule(
                &module,
                r#"{"name": "routed", "mode": "bogus"}"#,
            )),
        ),
    );
    let (status, out) = e2e::validate_envoy_yaml(&bad).unwrap();
    assert!(!status.success(), "{out}");
    assert!(
        out.contains("invalid per-route configuration: field `mode`"),
        "{out}"
    );
}

/// Envoy with the fault-injecting build of the module and `plugin_config`.
async fn faulty(plugin_config: &str, backend: std::net::SocketAddr) -> Envoy {
    let setup = EnvoySetup::new(backend, backend)
        .plugin_config(plugin_config)
        .shim(Shim::Native);
    let cfg = e2e::render_envoy_config(
        &e2e::shipped_envoy_yaml().unwrap(),
        &setup,
        &e2e::native_fault_module().unwrap(),
    )
    .unwrap();
    Envoy::start_with_config(&cfg).await.unwrap()
}

async fn faulted(envoy: &Envoy, fault: &str) -> common::Seen {
    let resp = envoy
        .client()
        .post(envoy.url("/voice/conflict"))
        .header("x-twiml-guard-fault", fault)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.bytes().await.unwrap().to_vec();
    common::Seen {
        status,
        guard: headers
            .get("x-twiml-guard")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        headers,
        body,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_the_guard_fails_the_request_the_configured_way_and_envoy_serves_on() {
    let backend = RawUpstream::start(common::legacy).await.unwrap();

    // reject_style status: the configured failure is a reply with reject_status.
    let envoy = faulty(
        r#"{"mode": "rewrite", "reject_status": 503}"#,
        backend.addr(),
    )
    .await;
    for (fault, phase) in [("response", "ResponseBody"), ("request", "RequestHeaders")] {
        let seen = faulted(&envoy, fault).await;
        assert_eq!(seen.status, 503, "{fault}: {}", seen.text());
        assert_eq!(seen.guard.as_deref(), Some("rejected"), "{fault}");
        let json = seen.json();
        assert_eq!(json["error"], "twiml_guard_error", "{fault}");
        assert!(
            json["message"]
                .as_str()
                .unwrap()
                .starts_with("internal error: injected fault"),
            "{json}"
        );
        envoy
            .wait_log(&format!("twiml_guard: panic in {phase}"))
            .await
            .unwrap();
        // The same Envoy, the next request: guarded as ever.
        let next = common::post(&envoy, "/voice/conflict").await;
        assert_eq!(next.status, 200);
        assert_eq!(
            next.guard.as_deref(),
            Some("rewritten; blocks=Connect/Stream")
        );
        assert_eq!(next.body, common::stripped());
    }
    envoy
        .wait_counter("twiml_guard_responses_total{outcome=\"rejected\"}", 2)
        .await
        .unwrap();
    drop(envoy);

    // reject_style twiml: the configured failure is the fallback TwiML.
    let config = format!(
        r#"{{"mode": "rewrite", "reject_style": "twiml", "fallback_twiml": "{}"}}"#,
        common::FALLBACK
    );
    let envoy = faulty(&config, backend.addr()).await;
    let seen = faulted(&envoy, "response").await;
    assert_eq!(
        (seen.status, seen.text()),
        (200, common::FALLBACK.to_string())
    );
    drop(envoy);

    // monitor never changes traffic, a failure included.
    let envoy = faulty(r#"{"mode": "monitor"}"#, backend.addr()).await;
    let seen = faulted(&envoy, "response").await;
    assert_eq!(seen.status, 200);
    assert_eq!(seen.body, common::conflict());
}
