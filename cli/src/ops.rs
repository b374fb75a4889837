//! `twiml-guard mode|config|status`: live configuration of the edge filter through ECDS.

use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum ModeCommand {
    /// Set the default mode.
    Set { mode: String },
}

#[derive(clap::Subcommand)]
pub enum ConfigCommand {
    /// Validate FILE and write it as the new ECDS resource.
    Apply { file: std::path::PathBuf },
}

#[derive(clap::Args)]
pub struct StatusArgs {}

pub fn mode(_cmd: ModeCommand) -> ExitCode {
    eprintln!("twiml-guard mode: not built yet");
    ExitCode::from(2)
}

pub fn config(_cmd: ConfigCommand) -> ExitCode {
    eprintln!("twiml-guard config: not built yet");
    ExitCode::from(2)
}

pub fn status(_args: StatusArgs) -> ExitCode {
    eprintln!("twiml-guard status: not built yet");
    ExitCode::from(2)
}
