//! `twiml-guard lint`: the core's lint rules over files, as human, JSON or SARIF diagnostics.

use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// Files to check; `-` reads standard input.
    pub files: Vec<std::path::PathBuf>,
}

pub fn run(_args: Args) -> ExitCode {
    eprintln!("twiml-guard lint: not built yet");
    ExitCode::from(2)
}
