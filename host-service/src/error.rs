//! Why the service could not start: one error naming the key, the file or the address at fault.

use crate::{config, recording, socket, store};
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error(transparent)]
    Db(#[from] store::DbError),
    #[error("data directory {path}: {error}")]
    DataDir {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error(transparent)]
    Greeting(#[from] socket::voice::GreetingError),
    #[error(transparent)]
    Twilio(#[from] recording::twilio::rest::TwilioError),
    #[error(transparent)]
    Engines(#[from] postcall::EngineError),
    #[error("serving: {0}")]
    Serve(std::io::Error),
}
