//! Bounded gzip and deflate for upstream TwiML, the HTTP content codings an HTTP client such as
//! Twilio's can decode: a backend that compresses its answers must not hide a `<Record>` from the
//! guard, and a small compressed body must not expand without limit (a gzip bomb) inside the
//! filter's fixed memory. `deflate` is the zlib format HTTP specifies, or raw deflate, which some
//! servers send and clients accept too.

use std::io::{Read, Write};

use flate2::read::{DeflateDecoder, MultiGzDecoder, ZlibDecoder};
use flate2::write::{GzEncoder, ZlibEncoder};
use flate2::Compression;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GzipError {
    /// The decompressed body would exceed the caller's limit; decoding stopped there.
    #[error("decompressed body exceeds {limit} bytes")]
    TooLarge { limit: usize },
    /// Not a valid gzip or deflate stream (bad header, corrupt data, truncated, bad checksum).
    #[error("invalid compressed data: {0}")]
    Invalid(String),
}

/// Decompress a gzip body (one or more members), producing at most `limit` bytes.
///
/// Reads at most `limit + 1` decompressed bytes, so the work and memory spent on a bomb are bounded
/// by the limit, not by what the stream claims.
pub fn decode(compressed: &[u8], limit: usize) -> Result<Vec<u8>, GzipError> {
    bounded(MultiGzDecoder::new(compressed), compressed.len(), limit)
}

/// [`decode`] for a `deflate` body: zlib when its first two bytes are a zlib header, else raw
/// deflate.
pub fn inflate(compressed: &[u8], limit: usize) -> Result<Vec<u8>, GzipError> {
    if is_zlib(compressed) {
        bounded(ZlibDecoder::new(compressed), compressed.len(), limit)
    } else {
        bounded(DeflateDecoder::new(compressed), compressed.len(), limit)
    }
}

/// [`decode_prefix`] for a `deflate` body.
pub fn inflate_prefix(compressed: &[u8], limit: usize) -> Result<Vec<u8>, GzipError> {
    if is_zlib(compressed) {
        prefix(ZlibDecoder::new(compressed), limit)
    } else {
        prefix(DeflateDecoder::new(compressed), limit)
    }
}

/// Compress `plain` as `deflate` (zlib, as HTTP specifies it).
pub fn deflate(plain: &[u8]) -> Result<Vec<u8>, GzipError> {
    let mut enc = ZlibEncoder::new(
        Vec::with_capacity(plain.len() / 2 + 16),
        Compression::default(),
    );
    enc.write_all(plain)
        .map_err(|e| GzipError::Invalid(e.to_string()))?;
    enc.finish().map_err(|e| GzipError::Invalid(e.to_string()))
}

/// RFC 1950: compression method 8 and a header whose 16-bit value is a multiple of 31.
fn is_zlib(data: &[u8]) -> bool {
    matches!(data, [cmf, flg, ..] if cmf & 0x0F == 8 && (u16::from(*cmf) << 8 | u16::from(*flg)) % 31 == 0)
}

/// Reads at most `limit + 1` bytes from `decoder`: more is `TooLarge`.
fn bounded(decoder: impl Read, compressed_len: usize, limit: usize) -> Result<Vec<u8>, GzipError> {
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    let mut out = Vec::with_capacity(limit.min(compressed_len.saturating_mul(4)));
    decoder
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
    prefix(MultiGzDecoder::new(compressed), limit)
}

fn prefix(decoder: impl Read, limit: usize) -> Result<Vec<u8>, GzipError> {
    let cap = u64::try_from(limit).unwrap_or(u64::MAX);
    let mut out = Vec::new();
    // `read_to_end` keeps what it read before an error.
    match decoder.take(cap).read_to_end(&mut out) {
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
    fn deflate_round_trips_as_zlib_and_raw_deflate_is_read_too() {
        let z = deflate(TWIML).unwrap();
        assert!(is_zlib(&z));
        assert_eq!(inflate(&z, TWIML.len()).unwrap(), TWIML);
        let mut raw = flate2::write::DeflateEncoder::new(Vec::new(), Compression::default());
        raw.write_all(TWIML).unwrap();
        let raw = raw.finish().unwrap();
        assert!(!is_zlib(&raw));
        assert_eq!(inflate(&raw, TWIML.len()).unwrap(), TWIML);
        assert_eq!(
            inflate(&z, TWIML.len() - 1),
            Err(GzipError::TooLarge {
                limit: TWIML.len() - 1
            })
        );
        assert!(matches!(
            inflate(&z[..z.len() - 3], 1000),
            Err(GzipError::Invalid(_))
        ));
        let half = inflate_prefix(&z[..z.len() / 2], 1000).unwrap();
        assert!(!half.is_empty() && TWIML.starts_with(&half));
    }

    #[test]
    fn empty_input_is_invalid() {
        // A gzip body needs at least a header; an empty one is not a valid stream.
        assert!(matches!(decode(b"", 10), Err(GzipError::Invalid(_))));
    }
}
