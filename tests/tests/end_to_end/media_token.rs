//! Per-call media tokens through a real Envoy with the shipped configuration: the filter adds a
//! token for the signed webhook's call to the clean TwiML it passes, `twilio-sim` carries it into
//! `start.customParameters` as Twilio does, and the host service (same media key) accepts that
//! call's stream; the same signed handshake and token replayed for another call are refused.

use e2e::stack::{HostOptions, HostService, AUTH_TOKEN, PUBLIC_HOST};
use e2e::upstream::{RawUpstream, Reply};
use e2e::{Envoy, EnvoySetup, MEDIA_KEY};
use futures_util::{SinkExt, StreamExt};
use std::sync::Arc;
use std::time::Duration;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use twilio_sim::report::Outcome;
use twiml::signature::{compute, Algorithm};

const CLEAN: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Connect><Stream url=\"wss://voice.example.com/ws/twilio-media\"/></Connect></Response>";
const CALL_A: &str = "CA0123456789abcdef0123456789abcdef";
const CALL_B: &str = "CAffffffffffffffffffffffffffffffff";

fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn start_frame(call: &str, stream: &str, token: &str) -> String {
    format!(
        r#"{{"event":"start","sequenceNumber":"1","streamSid":"{stream}","start":{{"streamSid":"{stream}","accountSid":"AC0123456789abcdef0123456789abcdef","callSid":"{call}","tracks":["inbound"],"customParameters":{{"twiml_guard_token":"{token}"}},"mediaFormat":{{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1}}}}}}"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_webhooks_clean_twiml_gets_the_token_and_the_host_accepts_only_that_call() {
    let backend = RawUpstream::start(|_| Reply::ok("text/xml", CLEAN))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let host = HostService::start_with(
        dir.path(),
        HostOptions {
            env: vec![("HOST_SERVICE_TWILIO_MEDIA_KEY".into(), MEDIA_KEY.into())],
            ..HostOptions::default()
        },
    )
    .await
    .unwrap();
    let envoy = Envoy::start(&EnvoySetup::new(backend.addr(), host.addr).auth_token(AUTH_TOKEN))
        .await
        .unwrap();

    // The signed voice webhook: the clean TwiML comes back with the token for its call.
    let form = [("CallSid", CALL_A), ("To", "+15005550001")];
    let url = format!("https://{PUBLIC_HOST}/webhook/incoming_call");
    let sig = compute(&url, &form, AUTH_TOKEN.as_bytes(), Algorithm::HmacSha1);
    let before = now_s();
    let resp = envoy
        .client()
        .post(envoy.url("/webhook/incoming_call"))
        .header("host", PUBLIC_HOST)
        .header("x-twilio-signature", sig)
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-twiml-guard"], "clean");
    let body = resp.text().await.unwrap();
    let token = body
        .split("name=\"twiml_guard_token\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("no token in {body}"))
        .to_owned();
    assert_eq!(
        body,
        CLEAN.replace(
            "/ws/twilio-media\"/>",
            &format!("/ws/twilio-media\"><Parameter name=\"twiml_guard_token\" value=\"{token}\"/></Stream>")
        )
    );
    let expiry: u64 = token.split('.').nth(1).unwrap().parse().unwrap();
    assert!((before + 300..=now_s() + 300).contains(&expiry), "{token}");
    assert_eq!(
        twiml::media_token::verify(MEDIA_KEY.as_bytes(), CALL_A, Some(&token), now_s()),
        Ok(())
    );

    // A whole call through the stack: the simulator passes the token on, the host accepts it.
    let mut cfg = twilio_sim::CallConfig::new(url.clone());
    cfg.map = twilio_sim::urls::UrlMap::local(&envoy.listener.to_string()).unwrap();
    cfg.auth_token = Some(AUTH_TOKEN.into());
    cfg.audio = Arc::new(vec![0xFF; 160 * 25]);
    cfg.speed = 8.0;
    let client = twilio_sim::call::client().unwrap();
    let report = twilio_sim::place_call(&client, &cfg).await;
    let text = report.render();
    assert_eq!(report.outcome, Outcome::StreamRan, "{text}");
    assert_eq!(report.streams[0].frames_sent, 25, "{text}");
    let call = e2e::poll(Duration::from_secs(30), "the stream stored", || async {
        let call = host.call(&report.call_sid).await.ok()??;
        (call["streams"][0]["close_reason"] == "stopped").then_some(call)
    })
    .await
    .unwrap();
    assert_eq!(call["streams"].as_array().unwrap().len(), 1, "{call}");

    // A captured handshake (signed, through Envoy) with call A's token, replayed for call B.
    let mut req = envoy
        .ws_url("/ws/twilio-media")
        .into_client_request()
        .unwrap();
    let handshake = compute::<&str, &str>(
        &format!("wss://{PUBLIC_HOST}/ws/twilio-media"),
        &[],
        AUTH_TOKEN.as_bytes(),
        Algorithm::HmacSha1,
    );
    req.headers_mut()
        .insert("x-twilio-signature", handshake.parse().unwrap());
    req.headers_mut()
        .insert("host", PUBLIC_HOST.parse().unwrap());
    let (mut ws, resp) = tokio_tungstenite::connect_async(req).await.unwrap();
    assert_eq!(resp.status(), 101);
    ws.send(Message::Text(
        start_frame(CALL_B, "MZ1111111111111111111111111111111f", &token).into(),
    ))
    .await
    .unwrap();
    let close = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(Ok(msg)) = ws.next().await {
            if let Message::Close(Some(f)) = msg {
                return Some((u16::from(f.code), f.reason.to_string()));
            }
        }
        None
    })
    .await
    .unwrap();
    assert_eq!(close, Some((1008, "media_token_refused".into())));
    assert_eq!(host.call(CALL_B).await.unwrap(), None);
}
