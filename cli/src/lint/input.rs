//! Reading what `twiml-guard lint` checks (a file or standard input, bounded) and writing a fixed
//! file back in place without ever leaving it half written.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// Larger inputs are refused: no TwiML comes near it, and the whole input is held in memory.
pub const MAX_INPUT_BYTES: u64 = 64 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("cannot read: {0}")]
    Read(std::io::Error),
    #[error("larger than {MAX_INPUT_BYTES} bytes")]
    TooLarge,
    #[error("--fix cannot rewrite standard input; name the file")]
    FixStdin,
    #[error("cannot rewrite: {0}")]
    Fix(String),
    #[error("cannot write the fixed file: {0}")]
    Write(std::io::Error),
}

/// One input's bytes and where they came from.
pub struct Input {
    /// As the user named it (`-` for standard input), for diagnostics and SARIF.
    pub name: String,
    pub path: Option<PathBuf>,
    pub bytes: Vec<u8>,
}

pub fn display_name(path: &Path) -> String {
    if path == Path::new("-") {
        "-".into()
    } else {
        path.display().to_string()
    }
}

impl Input {
    pub fn read(path: &Path) -> Result<Input, InputError> {
        let name = display_name(path);
        let (bytes, path) = if name == "-" {
            (read_bounded(std::io::stdin().lock())?, None)
        } else {
            let file = std::fs::File::open(path).map_err(InputError::Read)?;
            (read_bounded(file)?, Some(path.to_path_buf()))
        };
        Ok(Input { name, path, bytes })
    }

    /// Writes `new` over the file: a temporary file in the same directory, with the original's
    /// permissions, renamed over it.
    pub fn replace(&mut self, new: Vec<u8>) -> Result<(), InputError> {
        let path = self.path.as_ref().ok_or(InputError::FixStdin)?;
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let permissions = std::fs::metadata(path)
            .map_err(InputError::Write)?
            .permissions();
        let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(InputError::Write)?;
        tmp.write_all(&new).map_err(InputError::Write)?;
        tmp.as_file()
            .set_permissions(permissions)
            .map_err(InputError::Write)?;
        tmp.persist(path).map_err(|e| InputError::Write(e.error))?;
        self.bytes = new;
        Ok(())
    }
}

fn read_bounded(source: impl Read) -> Result<Vec<u8>, InputError> {
    let mut bytes = Vec::new();
    source
        .take(MAX_INPUT_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(InputError::Read)?;
    if bytes.len() as u64 > MAX_INPUT_BYTES {
        return Err(InputError::TooLarge);
    }
    Ok(bytes)
}
