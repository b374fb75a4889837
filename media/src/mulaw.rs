//! G.711 mu-law, the only encoding Twilio Media Streams carries (`audio/x-mulaw`, 8 kHz).
//! Decoding goes through a 256-entry table built at compile time; encoding is the Sun/ITU
//! reference algorithm, so bytes match other G.711 implementations (CPython audioop among them).

const BIAS: i32 = 0x84;
const CLIP14: i32 = 8159;

const fn decode_one(byte: u8) -> i16 {
    let u = !byte;
    let sign = u & 0x80;
    let exponent = ((u >> 4) & 0x07) as i32;
    let mantissa = (u & 0x0F) as i32;
    let magnitude = (((mantissa << 3) + BIAS) << exponent) - BIAS;
    if sign != 0 {
        -magnitude as i16
    } else {
        magnitude as i16
    }
}

const fn build_table() -> [i16; 256] {
    let mut table = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = decode_one(i as u8);
        i += 1;
    }
    table
}

static DECODE: [i16; 256] = build_table();

/// One mu-law byte to a linear 16-bit sample.
#[inline]
pub fn decode_sample(byte: u8) -> i16 {
    DECODE[byte as usize]
}

/// One linear 16-bit sample to mu-law, as the Sun/ITU reference `linear2ulaw` does it (the
/// sample is first cut to 14 bits), so the bytes match every other G.711 implementation.
#[inline]
pub fn encode_sample(sample: i16) -> u8 {
    const SEG_END: [i32; 8] = [0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF];
    let mut pcm = (sample as i32) >> 2;
    let mask: u8 = if pcm < 0 {
        pcm = -pcm;
        0x7F
    } else {
        0xFF
    };
    pcm = pcm.min(CLIP14) + (BIAS >> 2);
    match SEG_END.iter().position(|&end| pcm <= end) {
        Some(seg) => (((seg as i32) << 4 | ((pcm >> (seg + 1)) & 0x0F)) as u8) ^ mask,
        None => 0x7F ^ mask,
    }
}

pub fn decode(bytes: &[u8]) -> Vec<i16> {
    bytes.iter().map(|&b| decode_sample(b)).collect()
}

pub fn encode(samples: &[i16]) -> Vec<u8> {
    samples.iter().map(|&s| encode_sample(s)).collect()
}

/// The mu-law byte for digital silence.
pub const SILENCE: u8 = 0xFF;

#[cfg(test)]
mod tests {
    use super::*;

    // Expected values are CPython's `audioop.ulaw2lin` / `audioop.lin2ulaw`, which implement the
    // Sun G.711 reference code.
    #[test]
    fn decode_matches_reference_points() {
        let cases = [
            (0xFF, 0),
            (0x7F, 0),
            (0x00, -32124),
            (0x80, 32124),
            (0xF0, 120),
            (0x70, -120),
            (0xEF, 132),
            (0x8F, 16764),
        ];
        for (byte, linear) in cases {
            assert_eq!(decode_sample(byte), linear, "byte {byte:#04x}");
        }
    }

    #[test]
    fn encode_matches_reference_points() {
        let cases = [
            (0, 0xFF),
            (-1, 0x7E),
            (2, 0xFF),
            (5, 0xFE),
            (-5, 0x7E),
            (120, 0xF0),
            (1000, 0xCE),
            (-1000, 0x4E),
            (7932, 0xA0),
            (12345, 0x97),
            (30000, 0x82),
            (-30000, 0x02),
            (32767, 0x80),
            (-32768, 0x00),
        ];
        for (linear, byte) in cases {
            assert_eq!(encode_sample(linear), byte, "sample {linear}");
        }
    }

    #[test]
    fn every_code_round_trips_through_linear() {
        for byte in 0..=255u8 {
            let linear = decode_sample(byte);
            let again = encode_sample(linear);
            // 0x7F and 0xFF both mean zero; the encoder picks the positive one.
            let expected = if byte == 0x7F { 0xFF } else { byte };
            assert_eq!(again, expected, "byte {byte:#04x} -> {linear}");
        }
    }

    #[test]
    fn encoding_error_is_bounded_by_segment_step() {
        for s in (-32768i32..=32767).step_by(7) {
            let back = decode_sample(encode_sample(s as i16)) as i32;
            // The top segment's quantisation step is 1024; clipping costs at most 32767 - 32124.
            assert!((back - s).abs() <= 1024, "sample {s} decoded to {back}");
        }
    }
}
