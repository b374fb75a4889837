//! The media WebSocket through the guard: upgrades on the media path pass straight through and are
//! never buffered (frames flow both ways while the socket stays open), a plain request there gets
//! 426, and Envoy refuses upgrades on every other path.

use crate::common;

use common::*;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_websocket_passes_through() {
    let s = stack("{}").await;
    let e = &s.envoy;

    let (mut ws, resp) = tokio_tungstenite::connect_async(e.ws_url("/ws/twilio-media?call=CA1"))
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 101);
    assert!(resp.headers().get("x-twiml-guard").is_none());
    // Twilio-shaped frames, each echoed before the next is sent: nothing waits for an end of
    // body that never comes.
    for i in 0..20 {
        let msg = format!(
            r#"{{"event":"media","sequenceNumber":"{i}","media":{{"payload":"/////w=="}}}}"#
        );
        ws.send(Message::text(msg.clone())).await.unwrap();
        let echo = tokio::time::timeout(std::time::Duration::from_secs(10), ws.next())
            .await
            .expect("echo within 10 s")
            .unwrap()
            .unwrap();
        assert_eq!(echo, Message::text(msg));
    }
    ws.send(Message::binary(vec![0u8, 255, 1, 254]))
        .await
        .unwrap();
    assert_eq!(
        ws.next().await.unwrap().unwrap(),
        Message::binary(vec![0u8, 255, 1, 254])
    );
    ws.close(None).await.unwrap();
    assert_eq!(s.media.accepted(), ["/ws/twilio-media?call=CA1"]);

    // A plain request on the media path: 426 from the filter, never forwarded.
    let r = send(e, "GET", "/ws/twilio-media").await;
    assert_eq!(r.status, 426);
    // (Envoy drops hop-by-hop `upgrade` from a local reply on a non-upgrade stream.)
    assert_eq!(r.text(), "this path only accepts WebSocket upgrades\n");

    // An upgrade anywhere else: Envoy's own 403 (upgrades are enabled only on the media route).
    let req = e.ws_url("/voice/conflict").into_client_request().unwrap();
    let err = tokio_tungstenite::connect_async(req).await.unwrap_err();
    match err {
        tokio_tungstenite::tungstenite::Error::Http(resp) => {
            assert_eq!(resp.status().as_u16(), 403)
        }
        other => panic!("{other}"),
    }
    assert_eq!(s.media.accepted().len(), 1);

    assert_counters(e, &[("twiml_guard_ws_upgrades_total", 1)]).await;
    e.wait_counter("twiml_guard_ws_upgrades_total", 1)
        .await
        .unwrap();
}
