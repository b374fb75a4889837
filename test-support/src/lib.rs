//! What the test suites of every crate share, so each waits, finds the venv, speaks, finds the
//! model and runs PostgreSQL ([`PgCluster`]) the same way: tests wait only by polling with a
//! deadline, never by sleeping a fixed time.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use tokio::time::Instant;

mod postgres;
pub use postgres::PgCluster;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("timed out after {0:?} waiting for {1}")]
    Timeout(Duration, String),
    #[error("running espeak-ng (`make setup` installs it): {0}")]
    EspeakStart(std::io::Error),
    #[error("espeak-ng failed on {text:?}: {stderr}")]
    Espeak { text: String, stderr: String },
    #[error("PostgreSQL is not installed (no {0}): `make setup` installs Debian's postgresql")]
    PostgresMissing(String),
    #[error("PostgreSQL test cluster: {what}: {detail}")]
    Postgres { what: String, detail: String },
}

/// Call `check` until it yields a value or `timeout` passes. The interval grows from 10 ms to
/// 200 ms: quick when the answer is near, cheap when it is not.
pub async fn poll<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> Result<T, Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    let mut interval = Duration::from_millis(10);
    loop {
        if let Some(v) = check().await {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            return Err(Error::Timeout(timeout, what.to_string()));
        }
        tokio::time::sleep(interval).await;
        interval = (interval * 2).min(Duration::from_millis(200));
    }
}

/// [`poll`] for code that cannot await (process start-up, `Drop`): the same deadline and
/// growing interval, sleeping the thread between calls.
pub fn poll_blocking<T>(
    timeout: Duration,
    what: &str,
    mut check: impl FnMut() -> Option<T>,
) -> Result<T, Error> {
    let deadline = std::time::Instant::now() + timeout;
    let mut interval = Duration::from_millis(10);
    loop {
        if let Some(v) = check() {
            return Ok(v);
        }
        if std::time::Instant::now() >= deadline {
            return Err(Error::Timeout(timeout, what.to_string()));
        }
        std::thread::sleep(interval);
        interval = (interval * 2).min(Duration::from_millis(200));
    }
}

/// The repository root: the workspace this crate lives in.
pub fn repo_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// The project's venv: `$TWIML_GUARD_VENV`, else `<repo>/.venv`.
pub fn venv() -> PathBuf {
    std::env::var_os("TWIML_GUARD_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".venv"))
}

/// The venv's Python.
pub fn venv_python() -> PathBuf {
    venv().join("bin").join("python")
}

/// The venv's Python for the signature oracles (Twilio's own `RequestValidator`), asserting it
/// is there with the command that makes it.
pub fn oracle_python() -> PathBuf {
    let python = venv_python();
    assert!(
        python.exists(),
        "{} is missing: run `make setup` (the oracle needs the twilio Python library)",
        python.display()
    );
    python
}

/// The Whisper model folder: `$TWIML_GUARD_WHISPER_MODEL`, else `<repo>/models/whisper-tiny.en`.
pub fn whisper_model_dir() -> PathBuf {
    std::env::var_os("TWIML_GUARD_WHISPER_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("models").join("whisper-tiny.en"))
}

/// Speak `text` with espeak-ng (US English, 150 words a minute) into a WAV file at `path`
/// (22.05 kHz mono, 16-bit): real speech for the speech-to-text tests, made on the spot.
pub fn speak(text: &str, path: &Path) -> Result<(), Error> {
    let out = Command::new("espeak-ng")
        .args(["-v", "en-us", "-s", "150", "-w"])
        .arg(path)
        .arg(text)
        .output()
        .map_err(Error::EspeakStart)?;
    // espeak-ng exits 0 when it cannot write the file, so the file itself is the proof.
    if !out.status.success() || !path.is_file() {
        return Err(Error::Espeak {
            text: text.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn poll_returns_the_first_value_and_times_out_naming_what_it_waited_for() {
        let mut calls = 0;
        let v = poll(Duration::from_secs(5), "the third call", || {
            calls += 1;
            let ready = calls == 3;
            async move { ready.then_some(calls) }
        })
        .await
        .unwrap();
        assert_eq!(v, 3);

        let err = poll(Duration::from_millis(30), "nothing", || async {
            None::<()>
        })
        .await
        .unwrap_err();
        assert_eq!(err.to_string(), "timed out after 30ms waiting for nothing");
    }

    #[test]
    fn poll_blocking_returns_the_first_value_and_times_out_naming_what_it_waited_for() {
        let mut calls = 0;
        let v = poll_blocking(Duration::from_secs(5), "the third call", || {
            calls += 1;
            (calls == 3).then_some(calls)
        })
        .unwrap();
        assert_eq!(v, 3);

        let err = poll_blocking(Duration::from_millis(30), "nothing", || None::<()>).unwrap_err();
        assert_eq!(err.to_string(), "timed out after 30ms waiting for nothing");
    }

    #[test]
    fn speak_reports_a_missing_output_folder() {
        let path = std::env::temp_dir().join("test-support-no-such-dir/x/speech.wav");
        match speak("hello", &path) {
            // Without espeak-ng the start fails; with it, the write does (and it still exits 0).
            Err(Error::EspeakStart(_)) => {}
            Err(Error::Espeak { text, stderr }) => {
                assert_eq!(text, "hello");
                assert!(stderr.contains("speech.wav"), "{stderr}");
            }
            other => panic!("expected an error, got {other:?}"),
        }
    }
}
