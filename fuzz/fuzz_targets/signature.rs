//! Fuzzes the Twilio signature code: URLs, form bodies, settings headers and signatures from the
//! wire never panic it; a signature it computes always validates, and a changed one never does.
#![no_main]

use libfuzzer_sys::fuzz_target;
use twiml::signature::{
    compute, parse_form, parse_settings, url_variants, validate, validate_websocket, Algorithm,
    Body, Keys, Request,
};

fuzz_target!(|data: &[u8]| {
    // Fields separated by NUL: url, body, signature, settings, key.
    let mut fields = data.split(|&b| b == 0);
    let mut next = || String::from_utf8_lossy(fields.next().unwrap_or_default()).into_owned();
    let (url, body, signature, settings, key) = (next(), next(), next(), next(), next());

    let params = parse_form(body.as_bytes());
    let _ = url_variants(&url);
    let _ = parse_settings(Some(&settings));
    let keys = Keys {
        auth_token: Some(key.clone()),
        shared_key: Some(key.clone()),
    };
    for body in [Body::None, Body::Form(&params), Body::Raw(body.as_bytes())] {
        let _ = validate(
            &Request {
                url: &url,
                body,
                signature: Some(&signature),
                settings: Some(&settings),
            },
            &keys,
        );
    }
    let _ = validate_websocket(&url, Some(&signature), Some(&settings), &keys);

    if key.is_empty() {
        return;
    }
    for (algorithm, header) in [
        (Algorithm::HmacSha1, None),
        (Algorithm::HmacSha256, Some("algorithm=HMAC_SHA256")),
    ] {
        let good = compute(&url, &params, key.as_bytes(), algorithm);
        let request = |signature| Request {
            url: &url,
            body: Body::Form(&params),
            signature: Some(signature),
            settings: header,
        };
        assert_eq!(validate(&request(&good), &keys), Ok(()));
        let mut bad = good.clone().into_bytes();
        bad[0] = if bad[0] == b'A' { b'B' } else { b'A' };
        let bad = String::from_utf8(bad).expect("base64 is ASCII");
        assert!(validate(&request(&bad), &keys).is_err());
    }
});
