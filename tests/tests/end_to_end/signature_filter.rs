//! Twilio request signatures checked by the filter in a real Envoy: requests signed by Twilio's
//! own Python `RequestValidator` reach the backend, every one-character forgery (URL, parameter,
//! signature, settings header) is answered 403 without reaching it, the media WebSocket handshake
//! is checked before the upgrade, and the counters agree. Secrets come from the VM's environment
//! and appear in no log line.

use std::process::Command;

use e2e::upstream::{RawUpstream, Reply, Request, WsEcho};
use e2e::{Envoy, EnvoySetup};
use futures_util::StreamExt;
use serde_json::Value;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use twiml::signature::{compute, Algorithm};

const PUBLIC: &str = "https://voice.example.com";
const PREFIX: &str = "/webhook/";
const OK_METRIC: &str = "twiml_guard_signature_ok_total";
const REJECTED_METRIC: &str = "twiml_guard_signature_rejected_total";
const FORBIDDEN: &[u8] = b"invalid or missing X-Twilio-Signature\n";

fn plugin_config(enforce: bool) -> String {
    format!(
        r#"{{"mode": "rewrite", "media_path": "/ws/twilio-media", "max_body_bytes": 65536,
            "signature": {{"auth_token_env": "TWILIO_AUTH_TOKEN",
            "shared_key_env": "TWILIO_WEBHOOK_KEY", "public_base_url": "{PUBLIC}",
            "paths": ["{PREFIX}"], "enforce": {enforce}}}}}"#
    )
}

/// The shipped config for `setup`, with the secrets passed to the VM the documented way.
fn config_with_env(setup: &EnvoySetup, env: &[(&str, &str)]) -> e2e::EnvoyConfig {
    let mut cfg = e2e::render_envoy_config(
        &e2e::shipped_envoy_yaml().unwrap(),
        setup,
        &e2e::wasm_module().unwrap(),
    )
    .unwrap();
    // The shipped config passes TWILIO_AUTH_TOKEN and TWIML_GUARD_MEDIA_KEY from Envoy's
    // environment; here each test sets its own secrets inline instead (`key_values`), the other
    // documented way.
    let vars = &mut cfg.guard_config_mut()["vm_config"]["environment_variables"];
    assert_eq!(
        *vars,
        serde_json::json!({"host_env_keys": ["TWILIO_AUTH_TOKEN", "TWIML_GUARD_MEDIA_KEY"]}),
        "the shipped config passes the auth token and the media key from the environment"
    );
    let pairs: serde_json::Map<String, Value> = env
        .iter()
        .map(|(k, v)| (k.to_string(), Value::from(*v)))
        .collect();
    *vars = serde_json::json!({ "key_values": pairs });
    cfg
}

fn backend(req: &Request) -> Reply {
    let _ = req;
    Reply::ok("text/plain", "backend saw it\n")
}

struct Rig {
    envoy: Envoy,
    backend: RawUpstream,
    media: WsEcho,
    token: String,
    shared: String,
}

async fn rig(enforce: bool, token: &str, shared: &str) -> Rig {
    let backend = RawUpstream::start(backend).await.unwrap();
    let media = WsEcho::start().await.unwrap();
    let setup = EnvoySetup::new(backend.addr(), media.addr()).plugin_config(plugin_config(enforce));
    let yaml = config_with_env(
        &setup,
        &[("TWILIO_AUTH_TOKEN", token), ("TWILIO_WEBHOOK_KEY", shared)],
    );
    let envoy = Envoy::start_with_config(&yaml).await.unwrap();
    Rig {
        envoy,
        backend,
        media,
        token: token.into(),
        shared: shared.into(),
    }
}

/// Oracle cases behind the fixed public origin, signed with the generator's own secrets.
fn oracle(count: usize, seed: u64) -> Value {
    let script = e2e::repo_root().join("tests/oracle/gen_signature_cases.py");
    let out = Command::new(e2e::stack::venv_python())
        .arg(&script)
        .args(["--count", &count.to_string(), "--seed", &seed.to_string()])
        .args(["--base-url", PUBLIC, "--path-prefix", PREFIX])
        .output()
        .expect("run the oracle generator");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or_else(|| panic!("{key} in {v}"))
}

/// Send one oracle request through Envoy: (status, body).
async fn send(envoy: &Envoy, case: &Value) -> (u16, Vec<u8>) {
    let url = text(case, "url");
    let path = url.strip_prefix(PUBLIC).expect("under the public origin");
    let kind = text(case, "kind");
    let client = envoy.client();
    let mut req = match kind {
        "none" => client.get(envoy.url(path)),
        _ => client
            .post(envoy.url(path))
            .body(text(case, "body").to_owned()),
    };
    req = req.header("x-twilio-signature", text(case, "signature"));
    if let Some(settings) = case["settings"].as_str() {
        req = req.header("x-twilio-webhooks-signature-settings", settings);
    }
    match kind {
        "form" => req = req.header("content-type", "application/x-www-form-urlencoded"),
        "json" => req = req.header("content-type", "application/json"),
        _ => {}
    }
    let resp = req.send().await.unwrap_or_else(|e| panic!("{url}: {e}"));
    let status = resp.status().as_u16();
    (status, resp.bytes().await.unwrap().to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oracle_signed_requests_pass_and_forgeries_are_refused() {
    let doc = oracle(1000, 11);
    let r = rig(true, text(&doc, "auth_token"), text(&doc, "shared_key")).await;
    let e = &r.envoy;
    assert_eq!(
        e.counters(&[OK_METRIC, REJECTED_METRIC]).await.unwrap(),
        [0, 0]
    );

    let cases = doc["cases"].as_array().unwrap();
    let mut requests: Vec<(bool, Value)> = Vec::new();
    for case in cases {
        assert_eq!(case["valid"], true);
        requests.push((true, case.clone()));
        for m in case["mutations"].as_array().unwrap() {
            assert_eq!(
                m["valid"], false,
                "the oracle refuses its own forgeries: {m}"
            );
            requests.push((false, m.clone()));
        }
    }
    let results: Vec<(bool, Value, u16, Vec<u8>)> = futures_util::stream::iter(requests)
        .map(|(valid, case)| async move {
            let (status, body) = send(e, &case).await;
            (valid, case, status, body)
        })
        .buffer_unordered(8)
        .collect()
        .await;

    let mut passed = 0u64;
    let mut refused = std::collections::BTreeMap::<String, u64>::new();
    for (valid, case, status, body) in &results {
        if *valid {
            assert_eq!(
                (*status, body.as_slice()),
                (200, b"backend saw it\n".as_slice()),
                "signed request refused: {case}"
            );
            passed += 1;
        } else {
            assert_eq!(
                (*status, body.as_slice()),
                (403, FORBIDDEN),
                "forgery not refused: {case}"
            );
            *refused.entry(text(case, "what").to_owned()).or_default() += 1;
        }
    }
    let rejected: u64 = refused.values().sum();
    eprintln!("{passed} signed requests passed; forgeries refused: {refused:?}");
    assert_eq!(passed, 1000);
    assert_eq!(refused["signature"], 1000);
    assert_eq!(refused["settings"], 1000);
    assert!(
        refused["url"] >= 900 && refused["param"] >= 800,
        "{refused:?}"
    );

    // Only signed requests reached the backend, byte for byte.
    let seen = r.backend.requests();
    assert_eq!(seen.len() as u64, passed);
    let mut expected: Vec<(String, Vec<u8>)> = cases
        .iter()
        .map(|c| {
            let path = text(c, "url").strip_prefix(PUBLIC).unwrap().to_owned();
            (path, text(c, "body").as_bytes().to_vec())
        })
        .collect();
    let mut got: Vec<(String, Vec<u8>)> = seen.into_iter().map(|q| (q.path, q.body)).collect();
    expected.sort();
    got.sort();
    assert_eq!(got, expected);

    e.wait_counter(OK_METRIC, passed).await.unwrap();
    e.wait_counter(REJECTED_METRIC, rejected).await.unwrap();

    // No secret in any log line.
    let log = e.log();
    assert!(log.contains("signature=on enforce=true"), "{log}");
    assert!(log.contains("signature rejected what=webhook"), "{log}");
    assert!(!log.contains(&r.token) && !log.contains(&r.shared));
}

async fn handshake(e: &Envoy, signature: Option<&str>) -> Result<(), u16> {
    let mut req = e.ws_url("/ws/twilio-media").into_client_request().unwrap();
    if let Some(sig) = signature {
        req.headers_mut()
            .insert("x-twilio-signature", sig.parse().unwrap());
    }
    match tokio_tungstenite::connect_async(req).await {
        Ok(_) => Ok(()),
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => Err(resp.status().as_u16()),
        Err(other) => panic!("handshake failed without an HTTP answer: {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_handshake_is_checked_before_the_upgrade() {
    let r = rig(true, "media-token-1", "media-shared-1").await;
    let e = &r.envoy;
    let sign = |url: &str| compute::<&str, &str>(url, &[], r.token.as_bytes(), Algorithm::HmacSha1);

    let forgeries = [
        None,
        Some("forged".to_string()),
        // Signed for another path, another host, or as an https URL.
        Some(sign("wss://voice.example.com/ws/twilio-medi")),
        Some(sign("wss://evil.example.com/ws/twilio-media")),
        Some(sign("https://voice.example.com/ws/twilio-media")),
    ];
    for bad in &forgeries {
        assert_eq!(handshake(e, bad.as_deref()).await, Err(403), "{bad:?}");
    }
    assert!(
        r.media.accepted().is_empty(),
        "a refused handshake reached the host"
    );

    let good = sign("wss://voice.example.com/ws/twilio-media");
    let slash = sign("wss://voice.example.com/ws/twilio-media/");
    let with_port = sign("wss://voice.example.com:443/ws/twilio-media");
    for sig in [&good, &slash, &with_port] {
        assert_eq!(handshake(e, Some(sig)).await, Ok(()), "{sig}");
    }
    assert_eq!(r.media.accepted().len(), 3);
    e.wait_counter(OK_METRIC, 3).await.unwrap();
    e.wait_counter(REJECTED_METRIC, forgeries.len() as u64)
        .await
        .unwrap();
    e.wait_counter("twiml_guard_ws_upgrades_total", 3)
        .await
        .unwrap();
    assert!(!e.log().contains(&r.token));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enforce_false_counts_and_lets_through() {
    let r = rig(false, "monitor-token", "monitor-shared").await;
    let e = &r.envoy;
    let resp = e
        .client()
        .post(e.url("/webhook/voice"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-twilio-signature", "forged=")
        .body("CallSid=CA1")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(r.backend.requests().len(), 1);
    e.wait_counter(REJECTED_METRIC, 1).await.unwrap();
    assert_eq!(e.counter(OK_METRIC).await.unwrap(), 0);
    e.wait_log("signature allowed (enforce=false) what=webhook reason=mismatch")
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_bodies_are_bounded_and_unsigned_paths_untouched() {
    let r = rig(true, "bound-token", "bound-shared").await;
    let e = &r.envoy;
    let url = format!("{PUBLIC}/webhook/big");
    let value = "x".repeat(70_000);
    let sig = compute(
        &url,
        &[("Big", value.as_str())],
        r.token.as_bytes(),
        Algorithm::HmacSha1,
    );
    let resp = e
        .client()
        .post(e.url("/webhook/big"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-twilio-signature", sig)
        .body(format!("Big={value}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 413);
    assert!(r.backend.requests().is_empty());
    e.wait_counter(REJECTED_METRIC, 1).await.unwrap();

    // Outside the signed prefixes nothing is asked for.
    let resp = e.client().get(e.url("/voice/answer")).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    // A dot segment does not take a request out of a signed prefix.
    let resp = e
        .client()
        .get(e.url("/voice/..%2Fwebhook/x"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 403);
    assert_eq!(r.backend.requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_secret_stops_envoy_and_names_the_variable() {
    let setup = EnvoySetup::new(
        "127.0.0.1:9".parse().unwrap(),
        "127.0.0.1:9".parse().unwrap(),
    )
    .plugin_config(plugin_config(true));
    // The shared key's variable is missing.
    let yaml = config_with_env(&setup, &[("TWILIO_AUTH_TOKEN", "present-token-value")]);
    // Refused: nothing passes the listener unchecked.
    let (status, log) = e2e::run_envoy_refusing(&yaml, &[]).await.unwrap();
    assert_eq!(status, 500);
    assert!(
        log.contains("environment variable TWILIO_WEBHOOK_KEY is not set in the VM"),
        "{log}"
    );
    assert!(!log.contains("present-token-value"));
}

/// Hosts that cannot hold request headers (Istio, Envoy Gateway: no
/// `allow_on_headers_stop_iteration`, so `reject_style: twiml`): headers go on, the body is held,
/// and a forged request is reset before its body reaches the backend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_held_headers_a_forgery_never_completes_at_the_backend() {
    let backend = RawUpstream::start(backend).await.unwrap();
    let media = WsEcho::start().await.unwrap();
    let json = plugin_config(true).replacen('{', r#"{"reject_style": "twiml", "#, 1);
    let setup = EnvoySetup::new(backend.addr(), media.addr()).plugin_config(json);
    let mut yaml = config_with_env(
        &setup,
        &[
            ("TWILIO_AUTH_TOKEN", "tok-nohold"),
            ("TWILIO_WEBHOOK_KEY", "sh"),
        ],
    );
    let hold = &mut yaml.guard_config_mut()["allow_on_headers_stop_iteration"];
    assert_eq!(*hold, true);
    *hold = false.into();
    let e = Envoy::start_with_config(&yaml).await.unwrap();
    let url = format!("{PUBLIC}/webhook/voice");
    let good = compute(
        &url,
        &[("CallSid", "CA1")],
        b"tok-nohold",
        Algorithm::HmacSha1,
    );
    for (sig, status) in [("forged", 403), (good.as_str(), 200), ("forged-again", 403)] {
        let resp = e
            .client()
            .post(e.url("/webhook/voice"))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("x-twilio-signature", sig)
            .body("CallSid=CA1")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), status, "{sig}");
    }
    let seen = backend.requests();
    assert_eq!(seen.len(), 1, "only the signed request completes: {seen:?}");
    assert_eq!(seen[0].body, b"CallSid=CA1");
    e.wait_counter(OK_METRIC, 1).await.unwrap();
    e.wait_counter(REJECTED_METRIC, 2).await.unwrap();
}

/// A body that ends in trailers (HTTP/2, or HTTP/1 with `enable_trailers`) is checked when the
/// trailers arrive: a forged one never reaches the backend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_ending_in_trailers_is_still_checked() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let backend = RawUpstream::start(backend).await.unwrap();
    let media = WsEcho::start().await.unwrap();
    let setup = EnvoySetup::new(backend.addr(), media.addr()).plugin_config(plugin_config(true));
    let yaml = config_with_env(
        &setup,
        &[
            ("TWILIO_AUTH_TOKEN", "tok-trailers"),
            ("TWILIO_WEBHOOK_KEY", "sh"),
        ],
    );
    let line = yaml
        .bootstrap
        .lines()
        .find(|l| l.trim() == "stat_prefix: ingress_http")
        .unwrap()
        .to_string();
    let indent = &line[..line.len() - line.trim_start().len()];
    let mut yaml = yaml;
    yaml.bootstrap = yaml.bootstrap.replacen(
        &line,
        &format!("{line}\n{indent}http_protocol_options: {{ enable_trailers: true }}"),
        1,
    );
    let e = Envoy::start_with_config(&yaml).await.unwrap();

    let url = format!("{PUBLIC}/webhook/voice");
    let good = compute(
        &url,
        &[("CallSid", "CA1")],
        b"tok-trailers",
        Algorithm::HmacSha1,
    );
    for (sig, status) in [("forged", "403"), (good.as_str(), "200")] {
        let mut conn = tokio::net::TcpStream::connect(e.listener).await.unwrap();
        let req = format!(
            "POST /webhook/voice HTTP/1.1\r\nhost: voice.example.com\r\n\
             content-type: application/x-www-form-urlencoded\r\nx-twilio-signature: {sig}\r\n\
             transfer-encoding: chunked\r\nconnection: close\r\n\r\n\
             4\r\nCall\r\n7\r\nSid=CA1\r\n0\r\nx-checksum: 1\r\n\r\n"
        );
        conn.write_all(req.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        conn.read_to_end(&mut answer).await.unwrap();
        let answer = String::from_utf8_lossy(&answer);
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status} ")),
            "{sig}: {answer}"
        );
    }
    // The backend's reader does not parse trailers: only the signed request arrived, whole.
    let seen = backend.requests();
    assert_eq!(seen.len(), 1, "{seen:?}");
    e.wait_counter(OK_METRIC, 1).await.unwrap();
    e.wait_counter(REJECTED_METRIC, 1).await.unwrap();
}

/// The shipped `envoy.yaml` and plugin configuration (signatures on `/webhook/`): a backend that
/// routes without regard to case (Express's default) answers `/WEBHOOK/voice` from its
/// `/webhook/voice` handler, so an unsigned request there is refused like one on `/webhook/`,
/// and a request Twilio signed for that URL passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_case_webhook_paths_are_signed_paths_in_the_shipped_config() {
    const TOKEN: &str = "case-token";
    let backend = RawUpstream::start(backend).await.unwrap();
    let media = WsEcho::start().await.unwrap();
    let setup = EnvoySetup::new(backend.addr(), media.addr()).auth_token(TOKEN);
    let e = Envoy::start(&setup).await.unwrap();
    let form = [("CallSid", "CA0123"), ("From", "+14155550100")];
    let body = "CallSid=CA0123&From=%2B14155550100";
    for path in ["/WEBHOOK/voice", "/Webhook/voice", "/webhook/voice"] {
        let resp = e
            .client()
            .post(e.url(path))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        assert_eq!(
            (status, resp.bytes().await.unwrap().as_ref()),
            (403, FORBIDDEN),
            "{path}"
        );
    }
    assert!(backend.requests().is_empty());
    let sig = compute(
        &format!("{PUBLIC}/WEBHOOK/voice"),
        &form,
        TOKEN.as_bytes(),
        Algorithm::HmacSha1,
    );
    let resp = e
        .client()
        .post(e.url("/WEBHOOK/voice"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-twilio-signature", sig)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.text().await.unwrap(), "backend saw it\n");
    let seen = backend.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path, "/WEBHOOK/voice");
}
