//! Content codings: which `content-encoding` values the filter reads, how `accept-encoding` is
//! narrowed to them, and that a rewrite goes back out in the codings it came in.

use super::tests::{cfg, resp, CLEAN, CONFLICT, FALLBACK, STRIPPED};
use super::*;

#[test]
fn unreadable_encoding_is_malformed() {
    let mut r = resp("200", Some("text/xml"));
    r.content_encoding = Some("br".into());
    let ResponseStart::Early(o) = start_response(&Config::default(), &r) else {
        panic!("not early");
    };
    assert_eq!(o.label, Label::Malformed);
    assert_eq!(o.effect, Effect::Keep);
    assert!(
        o.detail.contains("\"br\" cannot be inspected"),
        "{}",
        o.detail
    );
}

#[test]
fn stacked_and_repeated_encodings() {
    let c = Config::default();
    let mut r = resp("200", Some("text/xml"));
    for (value, want) in [
        ("gzip, identity", Some(Encoding::Gzip)),
        ("identity, gzip", Some(Encoding::Gzip)),
        ("X-GZIP", Some(Encoding::Gzip)),
        ("identity, identity", Some(Encoding::Identity)),
        (" , identity", Some(Encoding::Identity)),
        (
            "gzip, gzip",
            Some(Encoding::Twice(Coding::Gzip, Coding::Gzip)),
        ),
        ("deflate", Some(Encoding::Deflate)),
        ("gzip, gzip, gzip", None),
        ("gzip, br", None),
        ("br, identity", None),
        ("zstd", None),
    ] {
        r.content_encoding = Some(value.into());
        match (start_response(&c, &r), want) {
            (ResponseStart::Inspect(enc), Some(w)) => assert_eq!(enc, w, "{value}"),
            (ResponseStart::Early(o), None) => {
                assert_eq!(o.label, Label::Malformed, "{value}");
                assert!(o.detail.contains("cannot be inspected"), "{}", o.detail);
            }
            (other, _) => panic!("{value}: {other:?}"),
        }
    }
    // Fails closed per on_malformed.
    r.content_encoding = Some("deflate, br".into());
    let c = cfg(r#"{"on_malformed": "reject"}"#);
    let ResponseStart::Early(o) = start_response(&c, &r) else {
        panic!("not early");
    };
    assert!(
        matches!(o.effect, Effect::Reply { status: 502, .. }),
        "{o:?}"
    );
}

#[test]
fn sniffing_reads_gzip_prefixes() {
    let c = Config::default();
    let page = gzip::encode(b"<!DOCTYPE html><html><body>hello</body></html>").unwrap();
    let twiml = gzip::encode(CONFLICT).unwrap();
    assert_eq!(
        sniff_body(&c, &page, Encoding::Gzip, false),
        twiml::Sniff::NotTwiml
    );
    assert_eq!(
        sniff_body(&c, &twiml, Encoding::Gzip, false),
        twiml::Sniff::Twiml
    );
    assert_eq!(
        sniff_body(&c, &twiml[..5], Encoding::Gzip, false),
        twiml::Sniff::NeedMore
    );
    // Not gzip at all: the full evaluation says malformed.
    assert_eq!(
        sniff_body(&c, b"<!DOCTYPE html><html>", Encoding::Gzip, false),
        twiml::Sniff::Twiml
    );
    assert_eq!(
        sniff_body(&c, b"<html>", Encoding::Identity, false),
        twiml::Sniff::NotTwiml
    );
}

#[test]
fn accept_encoding_is_narrowed_to_what_the_filter_reads() {
    for (sent, want) in [
        (None, Some("identity")),
        (Some("gzip, deflate, br"), Some("gzip, deflate")),
        (Some("br;q=1.0, gzip;q=0.8, *;q=0.1"), Some("gzip;q=0.8")),
        (Some("br"), Some("identity")),
        (Some("*"), Some("identity")),
        (Some(""), Some("identity")),
        (
            Some("zstd, x-gzip, Identity;q=0.5"),
            Some("x-gzip, Identity;q=0.5"),
        ),
        (Some("gzip"), None),
        (Some("gzip,identity"), None),
        (Some("identity"), None),
    ] {
        assert_eq!(narrow_accept_encoding(sent).as_deref(), want, "{sent:?}");
    }
}

#[test]
fn deflate_and_two_codings_are_read_and_rewritten_in_the_same_codings() {
    let c = Config::default();
    for enc in [
        Encoding::Deflate,
        Encoding::Twice(Coding::Gzip, Coding::Gzip),
        Encoding::Twice(Coding::Deflate, Coding::Gzip),
    ] {
        let wire = coding_encode(enc, CONFLICT);
        let o = evaluate(&c, &wire, enc);
        assert_eq!(o.label, Label::Rewritten, "{enc:?}");
        let Effect::Replace(out) = &o.effect else {
            panic!("{o:?}")
        };
        assert_eq!(coding_decode(enc, out), STRIPPED, "{enc:?}");
        let corrupt = &wire[..wire.len() - 4];
        assert_eq!(
            evaluate(&c, corrupt, enc).label,
            Label::Malformed,
            "{enc:?}"
        );
    }
}

fn coding_encode(enc: Encoding, plain: &[u8]) -> Vec<u8> {
    let mut wire = plain.to_vec();
    let layers = match enc {
        Encoding::Identity => vec![],
        Encoding::Gzip => vec![Coding::Gzip],
        Encoding::Deflate => vec![Coding::Deflate],
        Encoding::Twice(a, b) => vec![a, b],
    };
    for c in layers {
        wire = match c {
            Coding::Gzip => twiml::gzip::encode(&wire).unwrap(),
            Coding::Deflate => twiml::gzip::deflate(&wire).unwrap(),
        };
    }
    wire
}

fn coding_decode(enc: Encoding, wire: &[u8]) -> Vec<u8> {
    let mut plain = wire.to_vec();
    let layers = match enc {
        Encoding::Identity => vec![],
        Encoding::Gzip => vec![Coding::Gzip],
        Encoding::Deflate => vec![Coding::Deflate],
        Encoding::Twice(a, b) => vec![b, a],
    };
    for c in layers {
        plain = match c {
            Coding::Gzip => twiml::gzip::decode(&plain, 1 << 20).unwrap(),
            Coding::Deflate => twiml::gzip::inflate(&plain, 1 << 20).unwrap(),
        };
    }
    plain
}

#[test]
fn gzip_is_decoded_and_the_rewrite_recompressed() {
    let z = gzip::encode(CONFLICT).unwrap();
    let o = evaluate(&Config::default(), &z, Encoding::Gzip);
    assert_eq!(o.label, Label::Rewritten);
    let Effect::Replace(wire) = o.effect else {
        panic!()
    };
    assert_eq!(gzip::decode(&wire, 1 << 20).unwrap(), STRIPPED);

    let o = evaluate(
        &Config::default(),
        &gzip::encode(CLEAN).unwrap(),
        Encoding::Gzip,
    );
    assert_eq!((o.label, o.effect), (Label::Clean, Effect::Keep));

    let c = cfg(&format!(
        r#"{{"mode": "strict", "reject_style": "twiml", "fallback_twiml": "{FALLBACK}"}}"#
    ));
    let o = evaluate(&c, &z, Encoding::Gzip);
    let Effect::Replace(wire) = o.effect else {
        panic!()
    };
    assert_eq!(gzip::decode(&wire, 1 << 20).unwrap(), FALLBACK.as_bytes());
}

#[test]
fn gzip_bomb_is_oversize_and_bad_gzip_malformed() {
    let bomb = gzip::encode(&vec![b' '; 4 << 20]).unwrap();
    assert!(bomb.len() < 262_144);
    let o = evaluate(&Config::default(), &bomb, Encoding::Gzip);
    assert_eq!((o.label, &o.effect), (Label::Oversize, &Effect::Keep));
    assert_eq!(o.detail, "gzip body expands beyond max_body_bytes 262144");
    let o = evaluate(&Config::default(), CONFLICT, Encoding::Gzip);
    assert_eq!(o.label, Label::Malformed);
    assert!(
        o.detail.starts_with("gzip: invalid compressed data"),
        "{}",
        o.detail
    );
}
