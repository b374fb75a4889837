//! The WAV format, in one place: reading any common flavour a block at a time (`read`), and
//! writing 16-bit PCM, whole or a block at a time, with the repair of a header a crash left
//! unfinished (`write`). Pure over `Read`/`Write`/`Seek`, tested on in-memory bytes.

mod read;
mod write;

pub use read::{decode, Pcm, WavStream};
pub use write::{encode_i16, f32_to_i16, header_i16, pcm16_le, repair_header, HEADER_LEN};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WavError {
    #[error("not a readable WAV file: {0}")]
    Wav(String),
    #[error("unsupported WAV sample format: {0}")]
    Unsupported(String),
    #[error("WAV file has no channels or a zero sample rate")]
    Empty,
}

pub(crate) fn wav_err(e: hound::Error) -> WavError {
    match e {
        hound::Error::Unsupported => WavError::Unsupported("format not supported".into()),
        other => WavError::Wav(other.to_string()),
    }
}

fn io_err(e: std::io::Error) -> WavError {
    WavError::Wav(e.to_string())
}
