//! Fuzzes the filter's decisions (`decide.rs`) on what a backend and a client control: response
//! header values (status, content-type, content-encoding, content-length), the body and
//! `accept-encoding`, under each mode and reject style. No input may panic them (a panic in the
//! filter is a VM trap), every inspected body gets exactly one outcome, a rewrite is clean TwiML
//! in the response's own encoding, and a narrowed `accept-encoding` lists only codings the filter
//! reads.
#![no_main]

use libfuzzer_sys::fuzz_target;
use twiml_guard_edge::config::{self, Config};
use twiml_guard_edge::decide::{
    self, Effect, Encoding, Label, RequestInfo, ResponseInfo, ResponseStart,
};

const CONFIGS: [&str; 4] = [
    "{}",
    r#"{"mode": "strict", "on_malformed": "reject", "on_oversize": "reject", "max_body_bytes": 4096}"#,
    r#"{"mode": "monitor", "log_twiml": true}"#,
    r#"{"rewrite_action": "start-recording", "reject_style": "twiml", "on_malformed": "reject",
        "recording_status_callback": "https://example.com/cb?a=1&b=2"}"#,
];

/// Input layout: one selector byte, then NUL-separated fields: status, content-type,
/// content-encoding, content-length, accept-encoding, path; the rest is the body.
fn fields(data: &[u8]) -> Option<(u8, [Option<String>; 6], &[u8])> {
    let (&selector, mut rest) = data.split_first()?;
    let mut out: [Option<String>; 6] = Default::default();
    for slot in out.iter_mut() {
        let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        let value = String::from_utf8_lossy(&rest[..end]).into_owned();
        // An empty field is an absent header.
        *slot = (!value.is_empty()).then_some(value);
        rest = rest.get(end + 1..).unwrap_or_default();
    }
    Some((selector, out, rest))
}

fuzz_target!(|data: &[u8]| {
    let Some((selector, [status, content_type, content_encoding, content_length, accept, path], body)) =
        fields(data)
    else {
        return;
    };
    let cfg: Config = config::parse(CONFIGS[usize::from(selector) % CONFIGS.len()].as_bytes())
        .expect("the fuzzed configurations are valid");

    if let Some(narrowed) = decide::narrow_accept_encoding(accept.as_deref()) {
        for token in narrowed.split(", ") {
            let coding = token.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
            assert!(
                matches!(coding.as_str(), "gzip" | "x-gzip" | "identity"),
                "{accept:?} narrowed to {narrowed:?}"
            );
        }
    }
    let _ = decide::route_request(
        &cfg,
        &RequestInfo {
            method: "POST".into(),
            path: path.unwrap_or_default(),
            upgrade: None,
        },
    );

    let info = ResponseInfo {
        status,
        content_type,
        content_encoding,
        content_length,
        end_of_stream: selector & 0x80 != 0,
    };
    let enc = match decide::start_response(&cfg, &info) {
        ResponseStart::Pass(_) => return,
        ResponseStart::Early(outcome) => {
            assert!(matches!(outcome.label, Label::Oversize | Label::Malformed));
            return;
        }
        ResponseStart::Inspect(enc) => enc,
        ResponseStart::Sniff(enc) => {
            // Every prefix is consistent with the whole body.
            let whole = decide::sniff_body(&cfg, body, enc, true);
            assert_ne!(whole, twiml::Sniff::NeedMore);
            let cut = usize::from(selector) % (body.len() + 1);
            let part = decide::sniff_body(&cfg, &body[..cut], enc, false);
            if enc == Encoding::Identity && part != twiml::Sniff::NeedMore {
                assert_eq!(part, whole, "prefix of {cut} bytes");
            }
            if whole == twiml::Sniff::NotTwiml {
                return;
            }
            enc
        }
    };
    let outcome = decide::evaluate(&cfg, body, enc);
    let _ = decide::verdict_line(7, "/fuzz", &outcome);
    if outcome.label == Label::Rewritten {
        let Effect::Replace(wire) = &outcome.effect else {
            panic!("a rewrite replaces the body: {outcome:?}");
        };
        let plain = decide::decode_body(enc, wire, usize::MAX).expect("our own encoding");
        assert_eq!(
            twiml::analyze(&plain),
            twiml::Verdict::Clean,
            "a rewritten body is clean TwiML"
        );
    }
});
