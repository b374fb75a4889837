//! Writing WAV: 16-bit PCM files whole or a block at a time (the header apart), and the repair
//! of a header a crash left with the sizes of an empty file.

use super::{wav_err, WavError};
use std::io::{Cursor, Read, Seek, SeekFrom, Write};

/// Encode channels as a 16-bit PCM WAV file (what the speech engines and `sox` read).
pub fn encode_i16(channels: &[Vec<f32>], sample_rate: u32) -> Result<Vec<u8>, WavError> {
    let n = channels.len();
    let frames = channels.first().map_or(0, Vec::len);
    if n == 0 || sample_rate == 0 || channels.iter().any(|c| c.len() != frames) {
        return Err(WavError::Empty);
    }
    let spec = hound::WavSpec {
        channels: n as u16,
        sample_rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut out = Cursor::new(Vec::with_capacity(44 + frames * n * 2));
    {
        let mut w = hound::WavWriter::new(&mut out, spec).map_err(wav_err)?;
        for f in 0..frames {
            for c in channels {
                w.write_sample(f32_to_i16(c[f])).map_err(wav_err)?;
            }
        }
        w.finalize().map_err(wav_err)?;
    }
    Ok(out.into_inner())
}

/// The 44-byte header of a 16-bit PCM WAV file of `frames` frames, for writing one whose
/// samples are produced a block at a time (`pcm16_le` for the samples).
pub fn header_i16(channels: u16, sample_rate: u32, frames: u64) -> Result<Vec<u8>, WavError> {
    if channels == 0 || sample_rate == 0 {
        return Err(WavError::Empty);
    }
    let block_align = u32::from(channels) * 2;
    let data_len = u32::try_from(frames * u64::from(block_align))
        .ok()
        .filter(|&n| n <= u32::MAX - 36)
        .ok_or_else(|| WavError::Unsupported(format!("{frames} frames do not fit one WAV file")))?;
    let mut h = Vec::with_capacity(44);
    h.extend_from_slice(b"RIFF");
    h.extend_from_slice(&(36 + data_len).to_le_bytes());
    h.extend_from_slice(b"WAVEfmt ");
    h.extend_from_slice(&16u32.to_le_bytes());
    h.extend_from_slice(&1u16.to_le_bytes()); // PCM
    h.extend_from_slice(&channels.to_le_bytes());
    h.extend_from_slice(&sample_rate.to_le_bytes());
    h.extend_from_slice(&(sample_rate * block_align).to_le_bytes());
    h.extend_from_slice(&(block_align as u16).to_le_bytes());
    h.extend_from_slice(&16u16.to_le_bytes());
    h.extend_from_slice(b"data");
    h.extend_from_slice(&data_len.to_le_bytes());
    Ok(h)
}

/// Float samples as 16-bit little-endian PCM bytes, on the decoder's scale (`v / 32768`), so
/// audio that came from 16-bit or mu-law samples is written back exactly.
pub fn pcm16_le(samples: &[f32], out: &mut Vec<u8>) {
    for &s in samples {
        let v = (f64::from(s) * 32768.0).round().clamp(-32768.0, 32767.0) as i16;
        out.extend_from_slice(&v.to_le_bytes());
    }
}

/// A float sample to 16 bits, clipped.
pub fn f32_to_i16(s: f32) -> i16 {
    (s.clamp(-1.0, 1.0) * 32767.0).round() as i16
}

/// The length of the header `header_i16` writes.
pub const HEADER_LEN: u64 = 44;

/// Fix the header of a 16-bit PCM file of `channels` at `sample_rate` that was written a block
/// at a time and never finished (the process died): its sizes become those of the whole frames
/// on disk, which are kept. A file shorter than a header gets an empty one. Returns the frames.
/// A file that is not such a WAV is refused and left as it is.
pub fn repair_header<F: Read + Write + Seek>(
    file: &mut F,
    file_len: u64,
    channels: u16,
    sample_rate: u32,
) -> Result<u64, WavError> {
    let io = |e: std::io::Error| WavError::Wav(e.to_string());
    let block_align = u64::from(channels) * 2;
    if file_len < HEADER_LEN {
        // The crash came before the header was complete: an empty recording.
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        file.write_all(&header_i16(channels, sample_rate, 0)?)
            .map_err(io)?;
        return Ok(0);
    }
    let mut head = [0u8; HEADER_LEN as usize];
    file.seek(SeekFrom::Start(0)).map_err(io)?;
    file.read_exact(&mut head).map_err(io)?;
    if &head[0..4] != b"RIFF" || &head[8..12] != b"WAVE" || &head[36..40] != b"data" {
        return Err(WavError::Wav("not a header this writer made".into()));
    }
    if head[22..24] != channels.to_le_bytes() || head[24..28] != sample_rate.to_le_bytes() {
        return Err(WavError::Unsupported(format!(
            "expected {channels} channels at {sample_rate} Hz"
        )));
    }
    let frames = (file_len - HEADER_LEN) / block_align.max(1);
    file.seek(SeekFrom::Start(0)).map_err(io)?;
    file.write_all(&header_i16(channels, sample_rate, frames)?)
        .map_err(io)?;
    file.flush().map_err(io)?;
    Ok(frames)
}

#[cfg(test)]
mod tests {
    use super::super::read::decode;
    use super::super::read::tests::{int_spec, wav_bytes};
    use super::*;

    #[test]
    fn wav_writer_round_trips_through_the_reader() {
        let left = vec![0.5f32, -0.25, 1.5];
        let right = vec![0.0f32, 0.125, -2.0];
        let bytes = encode_i16(&[left, right], 16000).unwrap();
        let pcm = decode(&bytes).unwrap();
        assert_eq!(pcm.sample_rate, 16000);
        let q = |x: f32| f32::from(f32_to_i16(x)) / 32768.0;
        assert_eq!(
            pcm.channels,
            vec![
                vec![q(0.5), q(-0.25), q(1.0)],
                vec![q(0.0), q(0.125), q(-1.0)]
            ]
        );
        assert!(encode_i16(&[vec![0.0], vec![]], 8000).is_err());
        assert!(encode_i16(&[], 8000).is_err());
    }

    #[test]
    fn header_and_samples_written_apart_read_back_exactly() {
        let samples = [0i16, 1, -1, 32767, -32768, 12345];
        let original = decode(&wav_bytes(int_spec(1, 8000, 16), &samples)).unwrap();
        let mut bytes = header_i16(1, 8000, samples.len() as u64).unwrap();
        pcm16_le(&original.channels[0], &mut bytes);
        assert_eq!(bytes, wav_bytes(int_spec(1, 8000, 16), &samples));
        assert!(header_i16(0, 8000, 1).is_err());
        assert!(header_i16(1, 8000, 3_000_000_000).is_err());
    }

    #[test]
    fn repair_sets_the_sizes_of_what_is_on_disk() {
        let mut bytes = header_i16(2, 8000, 0).unwrap();
        bytes.extend_from_slice(&[1, 0, 2, 0, 3, 0, 4, 0, 5, 0]);
        let len = bytes.len() as u64;
        let mut file = Cursor::new(bytes);
        assert_eq!(repair_header(&mut file, len, 2, 8000), Ok(2));
        let pcm = decode(file.get_ref()).unwrap();
        assert_eq!(
            pcm.channels,
            vec![
                vec![1.0 / 32768.0, 3.0 / 32768.0],
                vec![2.0 / 32768.0, 4.0 / 32768.0]
            ]
        );

        let mut short = Cursor::new(b"RIFF".to_vec());
        assert_eq!(repair_header(&mut short, 4, 2, 8000), Ok(0));
        assert_eq!(short.get_ref(), &header_i16(2, 8000, 0).unwrap());

        let mut other = Cursor::new(header_i16(1, 16000, 0).unwrap());
        assert!(matches!(
            repair_header(&mut other, 44, 2, 8000),
            Err(WavError::Unsupported(_))
        ));
        let mut text = Cursor::new(vec![b'x'; 50]);
        assert!(matches!(
            repair_header(&mut text, 50, 2, 8000),
            Err(WavError::Wav(_))
        ));
        assert_eq!(text.get_ref(), &vec![b'x'; 50]);
    }
}
