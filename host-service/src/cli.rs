//! The host service as a command: flags, the configuration, logging, and serving until SIGTERM
//! or SIGINT, then draining. The engines come from the caller, so the shipped binary (engines
//! from the configuration) and a test's binary (stand-ins) share everything else.

use crate::config::{self, Config};
use crate::StartError;
use anyhow::Context;
use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;

/// Terminates Twilio Media Streams, records calls and runs the post-call pipeline.
#[derive(Debug, Parser)]
#[command(name = "host-service", version)]
struct Cli {
    /// TOML configuration file; every key can also be set by environment variable.
    #[arg(long, env = "HOST_SERVICE_CONFIG")]
    config: Option<PathBuf>,
    /// Log filter (tracing-subscriber syntax).
    #[arg(long, env = "HOST_SERVICE_LOG", default_value = "info")]
    log: String,
    /// Log as JSON lines instead of text.
    #[arg(long)]
    log_json: bool,
    /// Print every config key and its environment variable, then exit.
    #[arg(long)]
    print_keys: bool,
    /// Check the configuration (file and environment), print how long a SIGTERM drain may take,
    /// then exit: 0 when it would start, 1 naming the bad key otherwise. Opens nothing.
    #[arg(long)]
    check_config: bool,
}

/// How a binary builds its engines once the configuration is loaded.
pub type MakeEngines = fn(&Config) -> Result<postcall::Engines, StartError>;

/// Run the command with this process's arguments.
pub fn main(engines: MakeEngines) -> ExitCode {
    main_with(std::env::args_os(), engines)
}

/// Run the command with `args` (the first is the program's name).
pub fn main_with(
    args: impl IntoIterator<Item = impl Into<std::ffi::OsString> + Clone>,
    engines: MakeEngines,
) -> ExitCode {
    let cli = Cli::parse_from(args);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("host-service: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(cli, engines)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line a person can act on: the key, the file or the address that is wrong.
            eprintln!("host-service: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(cli: Cli, engines: MakeEngines) -> anyhow::Result<()> {
    if cli.print_keys {
        for (key, env) in config::env_names() {
            println!("{key}\t{env}");
        }
        return Ok(());
    }
    if cli.check_config {
        let config = Config::load(cli.config.as_deref(), std::env::vars())?;
        let (http, stages) = (
            config.http.shutdown_timeout_ms,
            config.pipeline.drain_timeout_ms,
        );
        // Deployments size terminationGracePeriodSeconds and the readiness probe's
        // timeoutSeconds from this line (deploy/k8s).
        println!(
            "config ok; a SIGTERM drain takes at most {} ms \
             (http.shutdown_timeout_ms {http} + pipeline.drain_timeout_ms {stages}); \
             /readyz answers within {} ms (database.ready_timeout_ms)",
            http.saturating_add(stages),
            config.database.ready_timeout_ms
        );
        return Ok(());
    }
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.log)
        .with_context(|| format!("bad log filter {:?}", cli.log))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()));
    if cli.log_json {
        builder.json().init();
    } else {
        builder.init();
    }
    let config = Config::load(cli.config.as_deref(), std::env::vars())?;
    let engines = engines(&config)?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    crate::run(listener, config, engines, shutdown_signal()).await?;
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot watch SIGTERM");
            std::future::pending::<()>().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!(signal = "SIGTERM", "signal"),
        _ = tokio::signal::ctrl_c() => tracing::info!(signal = "SIGINT", "signal"),
    }
}
