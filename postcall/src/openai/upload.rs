//! The audio a transcription request carries, streamed from the recording a block at a time so
//! an upload's memory does not depend on the call's length: a one-channel file as it is, or one
//! channel of a two-channel file as a one-channel WAV made on the fly.

use crate::{recording, EngineError};
use media::wav::{header_i16, pcm16_le};
use std::path::PathBuf;
use tokio::io::AsyncReadExt;

/// What is sent as the `file` field, streamed from the recording a block at a time: the memory
/// an upload holds does not depend on the call's length.
pub(super) enum Upload {
    /// A one-channel recording, as it is.
    File(PathBuf),
    /// One channel of a two-channel recording, as a one-channel 16-bit WAV file.
    Channel {
        path: PathBuf,
        channel: usize,
        sample_rate: u32,
        frames: u64,
    },
}

/// Chunks of a file upload.
const UPLOAD_CHUNK: usize = 64 * 1024;
/// Blocks a channel upload reads ahead of the socket.
const UPLOAD_QUEUE: usize = 4;

type Chunk = Result<Vec<u8>, std::io::Error>;

impl Upload {
    /// A fresh body for one attempt.
    pub(super) fn part(&self) -> Result<reqwest::multipart::Part, EngineError> {
        match self {
            Upload::File(path) => {
                let file = std::fs::File::open(path).map_err(|e| {
                    EngineError::Permanent(format!("cannot read recording {}: {e}", path.display()))
                })?;
                let len = file
                    .metadata()
                    .map_err(|e| EngineError::Permanent(format!("recording: {e}")))?
                    .len();
                let body = reqwest::Body::wrap_stream(file_chunks(tokio::fs::File::from_std(file)));
                Ok(reqwest::multipart::Part::stream_with_length(body, len))
            }
            Upload::Channel {
                path,
                channel,
                sample_rate,
                frames,
            } => {
                let header = header_i16(1, *sample_rate, *frames)
                    .map_err(|e| EngineError::Permanent(format!("recording: {e}")))?;
                let len = header.len() as u64 + 2 * frames;
                let chunks = channel_chunks(path.clone(), *channel, *frames, header);
                Ok(reqwest::multipart::Part::stream_with_length(
                    reqwest::Body::wrap_stream(chunks),
                    len,
                ))
            }
        }
    }
}

/// A file as a stream of chunks; it ends at the first error.
fn file_chunks(file: tokio::fs::File) -> impl futures_util::Stream<Item = Chunk> {
    futures_util::stream::unfold(Some(file), |file| async move {
        let mut file = file?;
        let mut buf = vec![0u8; UPLOAD_CHUNK];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(buf), Some(file)))
            }
            Err(e) => Some((Err(e), None)),
        }
    })
}

/// One channel of a recording as a one-channel WAV file: `header`, then the channel's samples
/// as 16-bit PCM, exactly `frames` of them, read on a blocking thread a block ahead of the
/// socket (silence stands in for frames a file cut short since it was scanned no longer has).
fn channel_chunks(
    path: PathBuf,
    channel: usize,
    frames: u64,
    header: Vec<u8>,
) -> impl futures_util::Stream<Item = Chunk> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Chunk>(UPLOAD_QUEUE);
    tokio::task::spawn_blocking(move || {
        if tx.blocking_send(Ok(header)).is_err() {
            return;
        }
        let mut stream = match recording::open(&path) {
            Ok(s) => s,
            Err(e) => {
                let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
                return;
            }
        };
        let mut block = Vec::new();
        let mut left = frames;
        while left > 0 {
            let mut bytes = Vec::new();
            match stream.read_block(recording::BLOCK_FRAMES, &mut block) {
                Ok(0) => {
                    let n = left.min(recording::BLOCK_FRAMES as u64);
                    bytes.resize(2 * n as usize, 0);
                    left -= n;
                }
                Ok(_) => {
                    let samples = block.get(channel).map_or(&[][..], Vec::as_slice);
                    let n = samples
                        .len()
                        .min(usize::try_from(left).unwrap_or(usize::MAX));
                    pcm16_le(&samples[..n], &mut bytes);
                    left -= n as u64;
                }
                Err(e) => {
                    let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
                    return;
                }
            }
            // The request is gone (answered, failed or cancelled): stop reading.
            if tx.blocking_send(Ok(bytes)).is_err() {
                return;
            }
        }
    });
    futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (chunk, rx))
    })
}
