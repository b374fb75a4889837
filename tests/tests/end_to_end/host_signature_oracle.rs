//! Holds the host service's webhook signature checks to Twilio's own Python `RequestValidator`,
//! over a real socket: requests the reference library signs for the webhook paths get the answer
//! their parameters call for (never 403), every one-character forgery of the URL, a parameter, the
//! signature or the settings header gets exactly 403 and changes nothing, and the
//! `host_webhooks_total` counters agree with what was sent.

use crate::oracle::text;
use host_service::config::Config;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

const PUBLIC: &str = "https://voice.example.com";
const STREAM_ENDED: &str = "/webhook/stream_ended";
const RECORDING_STATUS: &str = "/webhook/recording_status";
const STREAM_ENDED_CASES: usize = 1100;
const RECORDING_STATUS_CASES: usize = 300;
const HANGUP: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Hangup/></Response>";

/// Cases for one webhook path, signed by the reference library behind the public base URL.
fn oracle(path: &str, count: usize, seed: u64) -> Value {
    let (count_arg, seed_arg) = (count.to_string(), seed.to_string());
    let doc = crate::oracle::cases(&[
        "--count",
        &count_arg,
        "--seed",
        &seed_arg,
        "--base-url",
        PUBLIC,
        "--path",
        path,
    ]);
    assert_eq!(doc["cases"].as_array().expect("cases").len(), count);
    doc
}

struct Svc {
    addr: std::net::SocketAddr,
    http: reqwest::Client,
    _data: tempfile::TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn start_service(auth_token: &str, shared_key: &str) -> Svc {
    let data = tempfile::tempdir().unwrap();
    let mut c = Config {
        data_dir: data.path().join("data"),
        public_base_url: Some(PUBLIC.into()),
        ..Config::default()
    };
    c.twilio.auth_token = Some(auth_token.into());
    c.twilio.shared_key = Some(shared_key.into());
    c.pipeline.workers = 1;
    assert!(c.validate_signatures(), "on by default with a token");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    c.listen = addr;
    let engines = test_engines::engines(&Default::default());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(host_service::run(listener, c, engines, async move {
        let _ = rx.await;
    }));
    let http = reqwest::Client::new();
    let health = format!("http://{addr}/healthz");
    e2e::poll(Duration::from_secs(10), "healthz", || {
        let (http, health) = (http.clone(), health.clone());
        async move {
            http.get(&health)
                .send()
                .await
                .ok()
                .filter(|r| r.status() == 200)
        }
    })
    .await
    .expect("the host service answers /healthz");
    Svc {
        addr,
        http,
        _data: data,
        _stop: tx,
    }
}

/// Sends one oracle request to the service as Twilio would (the path and query it signed, the
/// raw body, the signature headers) and returns the status and body.
async fn send(svc: &Svc, case: &Value) -> (u16, String) {
    let url = text(case, "url");
    let path_and_query = url
        .strip_prefix(PUBLIC)
        .unwrap_or_else(|| panic!("{url} is under {PUBLIC}"));
    let content_type = match text(case, "kind") {
        "json" => "application/json",
        _ => "application/x-www-form-urlencoded",
    };
    let mut req = svc
        .http
        .post(format!("http://{}{path_and_query}", svc.addr))
        .header("content-type", content_type)
        .header("x-twilio-signature", text(case, "signature"))
        .body(text(case, "body").to_owned());
    if let Some(settings) = case["settings"].as_str() {
        req = req.header("x-twilio-webhooks-signature-settings", settings);
    }
    let req = req.build().unwrap();
    // The client must not re-encode what was signed.
    let sent = match req.url().query() {
        Some(q) => format!("{}?{q}", req.url().path()),
        None => req.url().path().to_owned(),
    };
    assert_eq!(sent, path_and_query, "the request line is the signed URL");
    let resp = svc.http.execute(req).await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap())
}

/// The first value of `name`, empty counting as absent: how the handlers read a form.
fn form_value<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

fn is_call_sid(s: &str) -> bool {
    s.len() == 34 && s.starts_with("CA") && s[2..].bytes().all(|b| b.is_ascii_hexdigit())
}

/// What the handler answers a correctly signed request: status, error code (or the TwiML), and
/// the `host_webhooks_total` result it counts.
fn expected(
    hook: &str,
    case: &Value,
    ended: &mut BTreeSet<String>,
) -> (u16, &'static str, &'static str) {
    // Twilio posts these callbacks form-encoded. A JSON body is signed through `bodySHA256`
    // rather than as parameters; read as the form these hooks take, it does not match.
    if text(case, "kind") == "json" {
        return (403, "bad_signature", "bad_signature");
    }
    let params = twiml::signature::parse_form(text(case, "body").as_bytes());
    let sid = form_value(&params, "CallSid").unwrap_or_default();
    if !is_call_sid(sid) {
        return (400, "bad_call_sid", "bad_request");
    }
    match hook {
        STREAM_ENDED if ended.insert(sid.to_owned()) => (200, HANGUP, "accepted"),
        STREAM_ENDED => (200, HANGUP, "repeat"),
        _ => {
            let status = form_value(&params, "RecordingStatus").unwrap_or_default();
            assert!(
                !["in-progress", "completed", "absent", "failed"].contains(&status),
                "a case this test does not model: {case}"
            );
            (400, "bad_request", "bad_request")
        }
    }
}

fn error_code(body: &str) -> String {
    let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    v["error"]["code"].as_str().unwrap_or_default().to_owned()
}

/// `host_webhooks_total` from `/metrics`, keyed by (hook, result).
async fn webhook_counters(svc: &Svc) -> BTreeMap<(String, String), u64> {
    let text = svc
        .http
        .get(format!("http://{}/metrics", svc.addr))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("host_webhooks_total{hook=\"") else {
            continue;
        };
        let (hook, rest) = rest.split_once("\",result=\"").expect(line);
        let (result, n) = rest.split_once("\"} ").expect(line);
        out.insert((hook.to_owned(), result.to_owned()), n.parse().expect(line));
    }
    out
}

#[tokio::test]
async fn agrees_with_twilios_request_validator() {
    let docs = [
        (
            "stream_ended",
            STREAM_ENDED,
            oracle(STREAM_ENDED, STREAM_ENDED_CASES, 20261121),
        ),
        (
            "recording_status",
            RECORDING_STATUS,
            oracle(RECORDING_STATUS, RECORDING_STATUS_CASES, 606),
        ),
    ];
    let (token, key) = (
        text(&docs[0].2, "auth_token"),
        text(&docs[0].2, "shared_key"),
    );
    let svc = start_service(token, key).await;

    let mut counted = BTreeMap::<(String, String), u64>::new();
    let mut answered = BTreeMap::<(&str, u16), usize>::new();
    let mut forged = BTreeMap::<String, usize>::new();
    let mut ended = BTreeSet::new();
    let mut json_cases = 0;
    for (hook, path, doc) in &docs {
        for case in doc["cases"].as_array().unwrap() {
            assert!(text(case, "url").starts_with(&format!("{PUBLIC}{path}")));
            assert_eq!(
                case["valid"], true,
                "the oracle signs its own cases: {case}"
            );
            let (want_status, want, result) = expected(path, case, &mut ended);
            let (status, body) = send(&svc, case).await;
            assert_eq!(status, want_status, "signed {hook} request: {case}\n{body}");
            if status == 200 {
                assert_eq!(body, want, "{case}");
            } else {
                assert_eq!(error_code(&body), want, "{case}\n{body}");
            }
            if want_status == 403 {
                json_cases += 1;
            }
            *answered.entry((*hook, status)).or_default() += 1;
            *counted
                .entry((hook.to_string(), result.to_owned()))
                .or_default() += 1;

            for m in case["mutations"].as_array().expect("mutations") {
                let what = text(m, "what");
                assert_eq!(
                    m["valid"], false,
                    "the reference refuses a {what} change: {m}"
                );
                let (status, body) = send(&svc, m).await;
                let url = text(m, "url");
                let mpath = url[PUBLIC.len()..].split('?').next().unwrap_or_default();
                if mpath != *path {
                    // The change hit the `?`: the path names no webhook and no handler runs.
                    assert_eq!(status, 400, "forged {what} on {hook}: {m}\n{body}");
                    assert_eq!(error_code(&body), "bad_request", "{body}");
                    *forged.entry("path".to_owned()).or_default() += 1;
                    continue;
                }
                assert_eq!(status, 403, "forged {what} on {hook}: {m}\n{body}");
                assert_eq!(error_code(&body), "bad_signature", "{body}");
                *forged.entry(what.to_owned()).or_default() += 1;
                *counted
                    .entry((hook.to_string(), "bad_signature".to_owned()))
                    .or_default() += 1;
            }
        }
    }
    eprintln!(
        "{} signed requests answered {answered:?} ({json_cases} JSON bodies refused); \
         forgeries refused with 403: {forged:?}",
        STREAM_ENDED_CASES + RECORDING_STATUS_CASES
    );

    let total = STREAM_ENDED_CASES + RECORDING_STATUS_CASES;
    assert_eq!(forged["signature"], total);
    assert_eq!(forged["settings"], total);
    // Behind the fixed public URL only the query can change, and some cases have none.
    assert!(forged["url"] >= total / 2, "{forged:?}");
    assert!(
        forged.get("path").is_some_and(|&n| n < total / 10),
        "{forged:?}"
    );
    assert!(forged["param"] >= total * 3 / 4, "{forged:?}");
    // Past the signature check: the handlers judged the parameters (the generator's CallSids are
    // never well-formed, so none ends a call).
    assert_eq!(answered[&("stream_ended", 400)], 991, "{answered:?}");
    assert_eq!(answered[&("recording_status", 400)], 271, "{answered:?}");
    assert_eq!(webhook_counters(&svc).await, counted);

    // Forgeries changed nothing: the calls on record are exactly the ones signed requests ended.
    let calls: Value = svc
        .http
        .get(format!("http://{}/api/calls?limit=500", svc.addr))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let on_record: BTreeSet<String> = calls["calls"]
        .as_array()
        .expect("calls")
        .iter()
        .map(|c| text(c, "call_sid").to_owned())
        .collect();
    assert_eq!(on_record, ended);
}
