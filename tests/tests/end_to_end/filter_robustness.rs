//! Whatever bytes an upstream sends, the guard's VM keeps running: garbage bodies end in a verdict,
//! never a trap (a trap would show as a VM reload and an empty 200).

use crate::common;

use common::*;
use e2e::upstream::{RawUpstream, Reply, Request};
use e2e::{Envoy, EnvoySetup};

fn garbage(seed: u64, len: usize) -> Vec<u8> {
    const ALPHABET: &[u8] = b"<>/=\"' \n&;#x[]!-?RecordStreamConnectResponse\x00\xc3\xff\x1f\x8b";
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ALPHABET[(x % ALPHABET.len() as u64) as usize]
        })
        .collect()
}

fn backend(req: &Request) -> Reply {
    let n: u64 = req
        .path
        .rsplit('/')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let body = garbage(n, (n as usize * 37) % 3000);
    match n % 3 {
        0 => Reply::ok("text/xml", body),
        1 => Reply::chunked("text/xml", &body, &[1, 7, 100]),
        _ => Reply::ok("text/xml", body).header("content-encoding", "gzip"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vm_survives_garbage_bodies() {
    let up = RawUpstream::start(backend).await.unwrap();
    let envoy = Envoy::start(
        &EnvoySetup::new(up.addr(), up.addr()).plugin_config(r#"{"mode": "rewrite"}"#),
    )
    .await
    .unwrap();
    const N: u64 = 60;
    for n in 1..=N {
        let r = post(&envoy, &format!("/g/{n}")).await;
        let want = garbage(n, (n as usize * 37) % 3000);
        assert_eq!(r.status, 200, "#{n}");
        // Every garbage body is passed through byte for byte (malformed, or clean by the fast path
        // when it holds no `<Record`).
        assert_eq!(r.body, want, "#{n}");
        assert!(
            matches!(r.guard.as_deref(), Some("malformed" | "clean")),
            "#{n}: {:?}",
            r.guard
        );
    }
    envoy
        .wait_counter("twiml_guard_inspected_total", N)
        .await
        .unwrap();
    let reloads = envoy
        .counters(&[
            "envoy_wasm_twiml_guard_vm_reload",
            "envoy_wasm_twiml_guard_vm_reload_success",
        ])
        .await
        .unwrap();
    assert_eq!(reloads, [0, 0], "the VM trapped\n{}", envoy.log());
    assert!(!envoy.log().contains("panicked"), "{}", envoy.log());
}
