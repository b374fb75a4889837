//! `twiml-guard`: one binary for the jobs around the edge filter, each a subcommand in its own module.

mod lint;
mod ops;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "twiml-guard", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check TwiML files for what breaks calls on Twilio (CI, editors, pre-commit).
    Lint(lint::Args),
    /// Switch the filter's mode live through ECDS.
    #[command(subcommand)]
    Mode(ops::ModeCommand),
    /// Validate and apply a whole plugin configuration live through ECDS.
    #[command(subcommand)]
    Config(ops::ConfigCommand),
    /// What the running Envoy's guard is doing, read from its admin API.
    Status(ops::StatusArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Lint(args) => lint::run(args),
        Command::Mode(cmd) => ops::mode(cmd),
        Command::Config(cmd) => ops::config(cmd),
        Command::Status(args) => ops::status(args),
    }
}
