//! `twiml-guard lint`: the core's lint rules over files, as human, JSON or SARIF diagnostics, and
//! `--fix` to apply the filter's rewrite in place. Exit status: 0 nothing at `error`, 1 findings at
//! `error`, 2 an input could not be read (or fixed), whatever else was found.

mod human;
mod input;
mod json;
mod sarif;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use twiml::lint::{Report, Severity};
use twiml::{RewriteAction, RewriteOptions, Verdict};

pub use input::{Input, InputError};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// rustc-style diagnostics with the source line and a caret under the span.
    Human,
    /// One JSON document (the npm package's `lint()` fields, per file).
    Json,
    /// SARIF 2.1.0, for code scanning in CI.
    Sarif,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Action {
    /// Remove each conflicting <Record>.
    Strip,
    /// Turn the first conflicting <Record> into <Start><Recording channels="dual"/>, remove the rest.
    StartRecording,
}

impl From<Action> for RewriteAction {
    fn from(a: Action) -> Self {
        match a {
            Action::Strip => RewriteAction::Strip,
            Action::StartRecording => RewriteAction::StartRecording,
        }
    }
}

#[derive(clap::Args)]
pub struct Args {
    /// Files to check; `-` reads standard input.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Output format, on standard output.
    #[arg(long, value_enum, default_value_t = Format::Human)]
    pub format: Format,
    /// Rewrite each file whose <Record> blocks a <Stream> (TG001), in place, keeping every other
    /// byte; then report what is left.
    #[arg(long)]
    pub fix: bool,
    /// The rewrite `--fix` applies (the filter's `rewrite_action`).
    #[arg(long, value_enum, default_value_t = Action::Strip, requires = "fix")]
    pub action: Action,
    /// start-recording: the recordingStatusCallback to add when the <Record> has none.
    #[arg(long, value_name = "URL", requires = "fix")]
    pub recording_status_callback: Option<String>,
}

/// One input and what lint found in it (after `--fix`, when it fixed anything).
pub struct Checked {
    pub input: Input,
    pub report: Report,
    /// The number of `<Record>` elements `--fix` rewrote.
    pub fixed: usize,
}

/// Every input's outcome, in the order given.
pub enum Outcome {
    Checked(Checked),
    Failed { name: String, error: InputError },
}

pub fn run(args: Args) -> ExitCode {
    let outcomes = check_all(&args);
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let written = match args.format {
        Format::Human => human::write(&mut out, &outcomes),
        Format::Json => json::write(&mut out, &outcomes),
        Format::Sarif => sarif::write(&mut out, &outcomes),
    };
    if let Err(e) = written.and_then(|()| out.flush()) {
        eprintln!("twiml-guard lint: cannot write the report: {e}");
        return ExitCode::from(2);
    }
    if args.format != Format::Human {
        for o in &outcomes {
            if let Outcome::Failed { name, error } = o {
                eprintln!("twiml-guard lint: {name}: {error}");
            }
        }
    }
    ExitCode::from(exit_code(&outcomes))
}

/// 2 when an input failed, else 1 when something is at `error`, else 0.
pub fn exit_code(outcomes: &[Outcome]) -> u8 {
    if outcomes.iter().any(|o| matches!(o, Outcome::Failed { .. })) {
        return 2;
    }
    let error = outcomes.iter().any(|o| match o {
        Outcome::Checked(c) => c.report.worst() == Some(Severity::Error),
        Outcome::Failed { .. } => false,
    });
    u8::from(error)
}

fn check_all(args: &Args) -> Vec<Outcome> {
    let opts = RewriteOptions {
        action: args.action.into(),
        recording_status_callback: args.recording_status_callback.clone(),
    };
    args.files
        .iter()
        .map(|path| {
            let name = input::display_name(path);
            match check(path, args.fix.then_some(&opts)) {
                Ok(checked) => Outcome::Checked(checked),
                Err(error) => Outcome::Failed { name, error },
            }
        })
        .collect()
}

fn check(path: &std::path::Path, fix: Option<&RewriteOptions>) -> Result<Checked, InputError> {
    if fix.is_some() && path == std::path::Path::new("-") {
        return Err(InputError::FixStdin);
    }
    let mut input = Input::read(path)?;
    let mut report = twiml::lint::lint(&input.bytes);
    let mut fixed = 0;
    if let (Some(opts), Verdict::Conflict(conflicts)) = (fix, &report.verdict) {
        let new = twiml::rewrite(&input.bytes, conflicts, opts)
            .map_err(|e| InputError::Fix(e.to_string()))?;
        input.replace(new)?;
        fixed = conflicts.len();
        report = twiml::lint::lint(&input.bytes);
    }
    Ok(Checked {
        input,
        report,
        fixed,
    })
}
