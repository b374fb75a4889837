//! `twiml-guard mode|config|status`: live configuration of the edge filter through ECDS. The
//! commands write the resource file Envoy watches (`ops::ecds`) and read what Envoy made of it
//! from its admin API (`ops::admin`).

mod admin;
mod ecds;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use admin::{Admin, Snapshot};
use ecds::{Applied, EcdsError};
use twiml_guard_edge::config::Mode;
use twiml_guard_edge::metrics::Counter;

/// The names `mode set` takes: the filter's own mode list.
fn mode_names() -> clap::builder::PossibleValuesParser {
    clap::builder::PossibleValuesParser::new(Mode::ALL.map(Mode::as_str))
}

/// Where the resource lives, and optionally the Envoy to confirm the change with.
#[derive(clap::Args, Debug)]
pub struct Target {
    /// The directory Envoy watches (`watched_directory` in envoy.yaml; `run/ecds` for `make run`).
    #[arg(long, env = "TWIML_GUARD_ECDS_DIR")]
    pub ecds_dir: PathBuf,
    /// Envoy's admin URL: wait until Envoy runs the new version, and fail if it refuses it.
    #[arg(long)]
    pub admin: Option<String>,
    /// How long to wait for Envoy with `--admin`, in seconds.
    #[arg(long, default_value_t = 10.0)]
    pub wait: f64,
}

#[derive(clap::Subcommand)]
pub enum ModeCommand {
    /// Set the default mode (rules keep theirs); everything else stays as it is.
    Set {
        #[arg(value_parser = mode_names())]
        mode: String,
        #[command(flatten)]
        target: Target,
    },
}

#[derive(clap::Subcommand)]
pub enum ConfigCommand {
    /// Validate FILE (the plugin JSON) and write it as the new ECDS resource.
    Apply {
        file: PathBuf,
        #[command(flatten)]
        target: Target,
    },
    /// Validate FILE (or the resource in --ecds-dir) with the filter's own parser; write nothing.
    Check {
        #[arg(required_unless_present = "ecds_dir", conflicts_with = "ecds_dir")]
        file: Option<PathBuf>,
        /// Check the plugin configuration of the resource in this directory instead.
        #[arg(long)]
        ecds_dir: Option<PathBuf>,
    },
}

#[derive(clap::Args)]
pub struct StatusArgs {
    /// Envoy's admin URL.
    #[arg(long, default_value = "http://127.0.0.1:9901")]
    pub admin: String,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("twiml-guard: {msg}");
    ExitCode::from(1)
}

pub fn mode(cmd: ModeCommand) -> ExitCode {
    let ModeCommand::Set { mode, target } = cmd;
    let current = match ecds::Resource::load(&target.ecds_dir) {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    let plugin = current
        .plugin_json()
        .and_then(|text| ecds::plugin_object(text, "the current plugin configuration"));
    let mut plugin = match plugin {
        Ok(p) => p,
        Err(e) => return fail(e),
    };
    let what = format!("mode {mode}");
    plugin.insert("mode".into(), mode.into());
    write_and_confirm(&target, plugin, &what)
}

pub fn config(cmd: ConfigCommand) -> ExitCode {
    match cmd {
        ConfigCommand::Apply { file, target } => match read_plugin(&file) {
            Ok(plugin) => write_and_confirm(&target, plugin, &file.display().to_string()),
            Err(e) => fail(e),
        },
        ConfigCommand::Check { file, ecds_dir } => {
            let (name, text) = match (file, ecds_dir) {
                (Some(file), _) => (
                    file.display().to_string(),
                    std::fs::read(&file).map_err(|source| EcdsError::Io { path: file, source }),
                ),
                (None, Some(dir)) => {
                    let name = dir.join(ecds::RESOURCE_FILE).display().to_string();
                    let text = ecds::Resource::load(&dir).and_then(|r| {
                        let text = r.plugin_json()?;
                        ecds::check_env_passed(&r, text)?;
                        Ok(text.as_bytes().to_vec())
                    });
                    (name, text)
                }
                (None, None) => return fail("config check: give FILE or --ecds-dir"),
            };
            // The bytes as they are: exactly what the filter would be handed.
            let checked = text
                .and_then(|bytes| twiml_guard_edge::config::parse(&bytes).map_err(EcdsError::from));
            match checked {
                Ok(cfg) => {
                    println!(
                        "{name}: valid (mode {}, {} rules, config_version {})",
                        cfg.mode.as_str(),
                        cfg.rules.len(),
                        cfg.config_version.as_deref().unwrap_or("none")
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => fail(format!("{name}: {e}")),
            }
        }
    }
}

fn read_plugin(file: &Path) -> Result<serde_json::Map<String, serde_json::Value>, EcdsError> {
    let text = std::fs::read_to_string(file).map_err(|source| EcdsError::Io {
        path: file.to_path_buf(),
        source,
    })?;
    ecds::plugin_object(&text, &file.display().to_string())
}

fn write_and_confirm(
    target: &Target,
    plugin: serde_json::Map<String, serde_json::Value>,
    what: &str,
) -> ExitCode {
    // Counted before the write, so a refusal of this update is told from older ones.
    let admin = target.admin.as_deref().map(Admin::new);
    let before = match admin.as_ref().map(Admin::snapshot).transpose() {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let applied = match ecds::apply(&target.ecds_dir, plugin) {
        Ok(a) => a,
        Err(e) => return fail(e),
    };
    println!(
        "wrote {} version {} (was {}): {what}",
        applied.path.display(),
        applied.version,
        applied.previous
    );
    match (admin, before) {
        (Some(admin), Some(before)) => confirm(&admin, &before, &applied, target.wait),
        _ => ExitCode::SUCCESS,
    }
}

/// Poll the admin API until Envoy runs `applied.version`, or refuses it, or the deadline passes.
fn confirm(admin: &Admin, before: &Snapshot, applied: &Applied, wait: f64) -> ExitCode {
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(wait.clamp(0.1, 600.0));
    loop {
        match admin.snapshot() {
            Ok(now) if now.active_version() == Some(applied.version.as_str()) => {
                println!(
                    "envoy runs version {} (mode {}) after {} ms",
                    applied.version,
                    now.mode().unwrap_or("unknown"),
                    started.elapsed().as_millis()
                );
                return ExitCode::SUCCESS;
            }
            Ok(now) if now.updates_rejected() > before.updates_rejected() => {
                return fail(format!(
                    "envoy REJECTED version {}; it still runs version {}; Envoy's log says why \
                     (a line with `invalid plugin configuration`)",
                    applied.version,
                    now.active_version().unwrap_or("none")
                ));
            }
            Ok(_) | Err(_) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(25));
            }
            Ok(now) => {
                return fail(format!(
                "envoy did not take version {} within {wait} s (it runs {}): is it watching {}?",
                applied.version,
                now.active_version().unwrap_or("none"),
                applied.path.display()
            ))
            }
            Err(e) => return fail(e),
        }
    }
}

pub fn status(args: StatusArgs) -> ExitCode {
    let snap = match Admin::new(&args.admin).snapshot() {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    if args.json {
        println!("{}", snap.to_json());
    } else {
        print!("{}", render(&snap));
    }
    ExitCode::SUCCESS
}

fn render(s: &Snapshot) -> String {
    let last = if s.last_update_rejected() {
        format!(
            "REJECTED: version {} was refused, Envoy still runs the active version (see its log)",
            s.received_version.as_deref().unwrap_or("?")
        )
    } else {
        "accepted".to_string()
    };
    let responses: Vec<String> = s
        .stats
        .responses()
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    format!(
        "active version:  {}\nmode:            {}\nrules:           {}\nlast update:     {last}\n\
         updates:         accepted={} rejected={}\nresponses:       {}\n\
         signatures:      ok={} rejected={}\n",
        s.active_version()
            .unwrap_or("none (no configuration accepted yet)"),
        s.mode().unwrap_or("unknown"),
        s.stats.rules().unwrap_or(0),
        s.stats.updates_accepted(),
        s.updates_rejected(),
        responses.join(" "),
        s.count(Counter::SignatureOk),
        s.count(Counter::SignatureRejected),
    )
}
