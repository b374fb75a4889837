//! The content codings of a response body: which the guard reads (gzip, `x-gzip` and deflate, one
//! or two layers, as an HTTP client such as Twilio's decodes them), how a body comes out of them
//! for the verdict, and how a rewritten body goes back into them.

use std::borrow::Cow;

use twiml::gzip::{self, GzipError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    Gzip,
    Deflate,
}

impl Coding {
    fn name(self) -> &'static str {
        match self {
            Coding::Gzip => "gzip",
            Coding::Deflate => "deflate",
        }
    }

    fn decode(self, body: &[u8], limit: usize) -> Result<Vec<u8>, GzipError> {
        match self {
            Coding::Gzip => gzip::decode(body, limit),
            Coding::Deflate => gzip::inflate(body, limit),
        }
    }

    fn decode_prefix(self, body: &[u8], limit: usize) -> Result<Vec<u8>, GzipError> {
        match self {
            Coding::Gzip => gzip::decode_prefix(body, limit),
            Coding::Deflate => gzip::inflate_prefix(body, limit),
        }
    }

    fn encode(self, plain: &[u8]) -> Result<Vec<u8>, GzipError> {
        match self {
            Coding::Gzip => gzip::encode(plain),
            Coding::Deflate => gzip::deflate(plain),
        }
    }
}

/// How a response body is encoded, as its `content-encoding` lists it (`identity` dropped).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Identity,
    Gzip,
    Deflate,
    /// Two codings in the order the backend applied them: `content-encoding: deflate, gzip` is
    /// deflate first, then gzip over it.
    Twice(Coding, Coding),
}

impl Encoding {
    fn layers(self) -> [Option<Coding>; 2] {
        match self {
            Encoding::Identity => [None, None],
            Encoding::Gzip => [Some(Coding::Gzip), None],
            Encoding::Deflate => [Some(Coding::Deflate), None],
            Encoding::Twice(first, second) => [Some(first), Some(second)],
        }
    }

    /// As `content-encoding` writes it (`deflate, gzip`); `identity` for none.
    pub fn name(self) -> String {
        let names: Vec<&str> = self.layers().iter().flatten().map(|c| c.name()).collect();
        if names.is_empty() {
            "identity".into()
        } else {
            names.join(", ")
        }
    }
}

/// The codings the guard reads in a response; `accept-encoding` is narrowed to these.
pub const READABLE_CODINGS: [&str; 4] = ["gzip", "x-gzip", "deflate", "identity"];

/// The encoding a `content-encoding` value (every value, joined with `,`) describes, or why the
/// guard cannot read it (`br`, `zstd`, an unknown coding, more than two layers).
pub fn parse(value: Option<&str>) -> Result<Encoding, String> {
    let Some(value) = value else {
        return Ok(Encoding::Identity);
    };
    let coding = |t: &str| match t {
        "gzip" | "x-gzip" => Some(Coding::Gzip),
        "deflate" => Some(Coding::Deflate),
        _ => None,
    };
    let listed: Vec<String> = value
        .split(',')
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty() && t != "identity")
        .collect();
    let codings: Option<Vec<Coding>> = listed.iter().map(|t| coding(t)).collect();
    match codings.as_deref() {
        Some([]) => Ok(Encoding::Identity),
        Some([Coding::Gzip]) => Ok(Encoding::Gzip),
        Some([Coding::Deflate]) => Ok(Encoding::Deflate),
        Some([first, second]) => Ok(Encoding::Twice(*first, *second)),
        _ => Err(format!(
            "content-encoding {value:?} cannot be inspected (only gzip and deflate, at most twice, and identity)"
        )),
    }
}

/// The body with every coding undone, last applied first; each layer is capped at `limit`.
pub fn decode(enc: Encoding, body: &[u8], limit: usize) -> Result<Cow<'_, [u8]>, GzipError> {
    let mut plain: Cow<'_, [u8]> = body.into();
    for coding in enc.layers().iter().rev().flatten() {
        plain = coding.decode(&plain, limit)?.into();
    }
    Ok(plain)
}

/// What the first bytes of a body still arriving decode to, for sniffing.
pub fn decode_prefix(enc: Encoding, body: &[u8], limit: usize) -> Result<Cow<'_, [u8]>, GzipError> {
    let mut plain: Cow<'_, [u8]> = body.into();
    for coding in enc.layers().iter().rev().flatten() {
        plain = coding.decode_prefix(&plain, limit)?.into();
    }
    Ok(plain)
}

/// Re-encode a replacement body the way the upstream encoded its own: the client already has (or
/// will get) the upstream's `content-encoding`, and a rewritten body must match it. Compressing
/// works whether or not headers are held, which dropping the header would not.
pub fn encode(enc: Encoding, plain: &[u8]) -> Result<Vec<u8>, String> {
    let mut wire = plain.to_vec();
    for coding in enc.layers().iter().flatten() {
        wire = coding.encode(&wire).map_err(|e| e.to_string())?;
    }
    Ok(wire)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWIML: &[u8] =
        b"<Response><Record/><Connect><Stream url=\"wss://a\"/></Connect></Response>";

    #[test]
    fn content_encodings_the_guard_reads() {
        let ok = |v: &str| parse(Some(v)).unwrap();
        assert_eq!(parse(None), Ok(Encoding::Identity));
        assert_eq!(ok("identity"), Encoding::Identity);
        assert_eq!(ok("GZIP"), Encoding::Gzip);
        assert_eq!(ok("x-gzip, identity"), Encoding::Gzip);
        assert_eq!(ok("deflate"), Encoding::Deflate);
        assert_eq!(
            ok("gzip, gzip"),
            Encoding::Twice(Coding::Gzip, Coding::Gzip)
        );
        assert_eq!(
            ok("deflate,gzip"),
            Encoding::Twice(Coding::Deflate, Coding::Gzip)
        );
        assert_eq!(ok("deflate, gzip").name(), "deflate, gzip");
        for bad in ["br", "gzip, br", "zstd", "compress", "gzip, gzip, gzip"] {
            assert!(parse(Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn every_encoding_round_trips_in_order() {
        for enc in [
            Encoding::Identity,
            Encoding::Gzip,
            Encoding::Deflate,
            Encoding::Twice(Coding::Gzip, Coding::Gzip),
            Encoding::Twice(Coding::Deflate, Coding::Gzip),
            Encoding::Twice(Coding::Gzip, Coding::Deflate),
        ] {
            let wire = encode(enc, TWIML).unwrap();
            assert_eq!(decode(enc, &wire, 1000).unwrap(), TWIML, "{enc:?}");
            let half = decode_prefix(enc, &wire[..wire.len() * 3 / 4], 1000).unwrap();
            assert!(TWIML.starts_with(&half), "{enc:?}");
        }
        // The outer layer is undone first: deflate-then-gzip is gzip on the wire.
        let wire = encode(Encoding::Twice(Coding::Deflate, Coding::Gzip), TWIML).unwrap();
        assert!(wire.starts_with(&[0x1f, 0x8b]));
        assert!(decode(Encoding::Twice(Coding::Gzip, Coding::Deflate), &wire, 1000).is_err());
        // Each layer is capped.
        assert_eq!(
            decode(
                Encoding::Deflate,
                &encode(Encoding::Deflate, TWIML).unwrap(),
                10
            ),
            Err(GzipError::TooLarge { limit: 10 })
        );
    }
}
