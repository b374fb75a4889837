//! Bounded gzip for upstream TwiML: a backend that compresses its answers must not hide a
//! `<Record>` from the guard, and a small compressed body must not expand without limit (a gzip
//! bomb) inside the filter's fixed memory.

use std::io::{Read, Write};

use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GzipError {
    /// The decompressed body would exceed the caller's limit; decoding stopped there.
    #[error("decompressed body exceeds {limit} bytes")]
    TooLarge { limit: usize },
    /// Not a valid gzip stream (bad header, corrupt data, truncated, bad checksum).
    #[error("invalid gzip data: {0}")]
    Invalid(String),
}

/// Decompress a gzip body (one or more members), producing at most `limit` bytes.
///
/// Reads at most `limit + 1` decompressed bytes, so the work and memory spent on a bomb are bounded
/// by the limit, not by what the stream claims.
pub fn decode(compressed: &[u8], limit: usize) -> Result<Vec<u8>, GzipError> {
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    let mut out = Vec::with_capacity(limit.min(compressed.len().saturating_mul(4)));
    MultiGzDecoder::new(compressed)
        .take(cap)
        .read_to_end(&mut out)
        .map_err(|e| GzipError::Invalid(e.to_string()))?;
    if out.len() > limit {
        return Err(GzipError::TooLarge { limit });
    }
    Ok(out)
}

/// Decompress what the first bytes of a gzip body give, at most `limit` bytes: for looking at the
/// start of a body that is still arriving. A stream cut short is not an error here (its bytes so
/// far are returned); corrupt data is.
pub fn decode_prefix(compressed: &[u8], limit: usize) -> Result<Vec<u8>, GzipError> {
    let cap = u64::try_from(limit).unwrap_or(u64::MAX);
    let mut out = Vec::new();
    // `read_to_end` keeps what it read before an error.
    match MultiGzDecoder::new(compressed)
        .take(cap)
        .read_to_end(&mut out)
    {
        Ok(_) => Ok(out),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(out),
        Err(e) => Err(GzipError::Invalid(e.to_string())),
    }
}

/// Compress `plain` as one gzip member.
pub fn encode(plain: &[u8]) -> Result<Vec<u8>, GzipError> {
    let mut enc = GzEncoder::new(
        Vec::with_capacity(plain.len() / 2 + 32),
        Compression::default(),
    );
    enc.write_all(plain)
        .map_err(|e| GzipError::Invalid(e.to_string()))?;
    enc.finish().map_err(|e| GzipError::Invalid(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWIML: &[u8] =
        b"<Response><Record/><Connect><Stream url=\"wss://x/ws\"/></Connect></Response>";

    #[test]
    fn round_trip() {
        let z = encode(TWIML).unwrap();
        assert_ne!(z.as_slice(), TWIML);
        assert_eq!(decode(&z, TWIML.len()).unwrap(), TWIML);
    }

    #[test]
    fn limit_is_inclusive() {
        let z = encode(TWIML).unwrap();
        assert_eq!(decode(&z, TWIML.len()).unwrap().len(), TWIML.len());
        assert_eq!(
            decode(&z, TWIML.len() - 1),
            Err(GzipError::TooLarge {
                limit: TWIML.len() - 1
            })
        );
    }

    #[test]
    fn bomb_stops_at_limit() {
        // 64 MiB of zeros compresses to about 64 KiB; decoding must stop at the limit.
        let zeros = vec![0u8; 64 << 20];
        let z = encode(&zeros).unwrap();
        assert!(z.len() < 100_000, "{}", z.len());
        assert_eq!(
            decode(&z, 262_144),
            Err(GzipError::TooLarge { limit: 262_144 })
        );
    }

    #[test]
    fn multi_member_is_concatenated() {
        let mut z = encode(b"<Response>").unwrap();
        z.extend(encode(b"</Response>").unwrap());
        assert_eq!(decode(&z, 100).unwrap(), b"<Response></Response>");
    }

    #[test]
    fn garbage_and_truncation_are_invalid() {
        assert!(matches!(
            decode(b"<Response/>", 100),
            Err(GzipError::Invalid(_))
        ));
        let z = encode(TWIML).unwrap();
        for cut in 1..z.len() {
            assert!(
                matches!(decode(&z[..cut], 1000), Err(GzipError::Invalid(_))),
                "prefix of {cut} bytes"
            );
        }
    }

    #[test]
    fn every_prefix_decodes_to_a_prefix() {
        let z = encode(TWIML).unwrap();
        let mut longest = 0;
        for cut in 0..=z.len() {
            let plain = decode_prefix(&z[..cut], 1000).unwrap();
            assert!(TWIML.starts_with(&plain), "prefix of {cut} bytes");
            assert!(plain.len() >= longest, "prefix of {cut} bytes went back");
            longest = plain.len();
        }
        assert_eq!(longest, TWIML.len());
        assert_eq!(decode_prefix(&z, 10).unwrap(), &TWIML[..10]);
        // Ten bytes decide the header; a wrong magic number is corrupt data.
        assert!(matches!(
            decode_prefix(b"<!DOCTYPE html><html>", 100),
            Err(GzipError::Invalid(_))
        ));
    }

    #[test]
    fn empty_input_is_invalid() {
        // A gzip body needs at least a header; an empty one is not a valid stream.
        assert!(matches!(decode(b"", 10), Err(GzipError::Invalid(_))));
    }
}
