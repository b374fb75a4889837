//! `twilio-sim`: plays Twilio's part against a local stack so nobody needs a phone to test.
//! Exit codes: 0 the stream ran, 1 error, 2 `<Record>` loop, 3 refused, 4 no stream,
//! 5 some load-test calls failed, 64 bad usage.

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use twilio_sim::call::Direction;
use twilio_sim::twiml_doc::Method;
use twilio_sim::urls::UrlMap;
use twilio_sim::CallConfig;

#[derive(Parser)]
#[command(
    name = "twilio-sim",
    version,
    about = "Place simulated Twilio calls against a voice backend"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Place one call and print its report.
    Call {
        #[command(flatten)]
        call: CallArgs,
        /// Save the audio the server sent back (8 kHz WAV).
        #[arg(long, value_name = "FILE")]
        save_outbound: Option<PathBuf>,
        /// Also write the JSON report to FILE (whatever is printed).
        #[arg(long, value_name = "FILE")]
        report_json: Option<PathBuf>,
    },
    /// Place many calls and report totals and latency percentiles.
    Load {
        #[command(flatten)]
        call: CallArgs,
        /// Calls to place.
        #[arg(long, default_value_t = 10)]
        calls: usize,
        /// Calls in flight at once.
        #[arg(long, default_value_t = 4)]
        concurrency: usize,
    },
}

#[derive(Args)]
struct CallArgs {
    /// The voice webhook, as Twilio would request it.
    #[arg(long)]
    url: String,
    /// Send every absolute URL to this host:port instead (https/wss become http/ws, path kept).
    #[arg(long, value_name = "HOST:PORT")]
    local: Option<String>,
    /// Sign requests and the stream handshake with X-Twilio-Signature.
    #[arg(long, env = "TWILIO_AUTH_TOKEN", hide_env_values = true)]
    auth_token: Option<String>,
    #[arg(long, default_value = "AC00000000000000000000000000000000")]
    account_sid: String,
    #[arg(long, default_value = "+15005550006")]
    from: String,
    #[arg(long, default_value = "+15005550001")]
    to: String,
    /// `inbound` or `outbound-api`.
    #[arg(long, value_enum, default_value = "inbound")]
    direction: Direction,
    /// Method for the voice webhook.
    #[arg(long, value_enum, default_value = "POST")]
    method: Method,
    /// The caller's speech: a WAV file, any rate (converted to 8 kHz mu-law).
    #[arg(long, value_name = "FILE")]
    audio: Option<PathBuf>,
    /// Without --audio, seconds of silence to stream.
    #[arg(long, default_value_t = 2.0)]
    silence: f64,
    /// Stream N times faster than real time.
    #[arg(long, default_value_t = 1.0)]
    speed: f64,
    /// DTMF digits pressed at a stream time: DIGITS@SECONDS (repeatable).
    #[arg(long, value_name = "DIGITS@SECONDS")]
    dtmf: Vec<String>,
    /// Requests of one URL by the same <Record> that count as a loop.
    #[arg(long, default_value_t = 3)]
    loop_limit: u32,
    /// Requests per call before giving up.
    #[arg(long, default_value_t = 20)]
    max_requests: u32,
    /// After the audio, seconds to wait for the server's audio and marks.
    #[arg(long, default_value_t = 2.0)]
    linger: f64,
    /// Webhook timeout in seconds (Twilio's is 15).
    #[arg(long, default_value_t = 15.0)]
    timeout: f64,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

fn secs(name: &str, v: f64) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(v)
        .with_context(|| format!("--{name} must be a non-negative number of seconds"))
}

impl CallArgs {
    fn config(&self, keep_outbound: bool) -> anyhow::Result<CallConfig> {
        if !(self.speed.is_finite() && self.speed > 0.0) {
            anyhow::bail!("--speed must be a positive number");
        }
        let audio = match &self.audio {
            Some(path) => twilio_sim::load_audio(path)?,
            None => {
                let n = (secs("silence", self.silence)?.as_secs_f64() * 8000.0) as usize;
                vec![media::mulaw::SILENCE; n.max(160)]
            }
        };
        let mut dtmf = Vec::new();
        for spec in &self.dtmf {
            dtmf.extend(twilio_sim::parse_dtmf(spec)?);
        }
        let map = match &self.local {
            Some(addr) => UrlMap::local(addr)?,
            None => UrlMap::direct(),
        };
        map.absolute(&self.url)?;
        let mut cfg = CallConfig::new(self.url.clone());
        cfg.map = map;
        cfg.auth_token = self.auth_token.clone().filter(|t| !t.is_empty());
        cfg.account_sid = self.account_sid.clone();
        cfg.from = self.from.clone();
        cfg.to = self.to.clone();
        cfg.direction = self.direction;
        cfg.method = self.method;
        cfg.audio = Arc::new(audio);
        cfg.speed = self.speed;
        cfg.dtmf = dtmf;
        cfg.linger = secs("linger", self.linger)?;
        cfg.loop_limit = self.loop_limit;
        cfg.max_requests = self.max_requests.max(1);
        cfg.webhook_timeout = secs("timeout", self.timeout)?;
        cfg.keep_outbound = keep_outbound;
        Ok(cfg)
    }
}

fn save_wav(path: &PathBuf, mulaw: &[u8]) -> anyhow::Result<()> {
    let samples = media::audio::mulaw_to_f32(mulaw);
    let wav = media::wav::encode_i16(&[samples], media::SAMPLE_RATE)
        .map_err(|e| anyhow::anyhow!("cannot encode outbound audio: {e}"))?;
    std::fs::write(path, wav).with_context(|| format!("cannot write {}", path.display()))
}

async fn run(cli: Cli) -> anyhow::Result<i32> {
    let client = twilio_sim::call::client().context("cannot build the HTTP client")?;
    match cli.command {
        Command::Call {
            call,
            save_outbound,
            report_json,
        } => {
            let cfg = call.config(save_outbound.is_some())?;
            let report = twilio_sim::place_call(&client, &cfg).await;
            if call.json {
                println!("{}", report.to_json());
            } else {
                print!("{}", report.render());
            }
            if let Some(path) = report_json {
                std::fs::write(&path, report.to_json())
                    .with_context(|| format!("cannot write {}", path.display()))?;
            }
            if let Some(path) = save_outbound {
                let audio: Vec<u8> = report
                    .streams
                    .iter()
                    .flat_map(|s| s.outbound_audio.iter().copied())
                    .collect();
                if audio.is_empty() {
                    eprintln!("no outbound audio to save in {}", path.display());
                } else {
                    save_wav(&path, &audio)?;
                }
            }
            Ok(report.exit_code)
        }
        Command::Load {
            call,
            calls,
            concurrency,
        } => {
            let cfg = call.config(false)?;
            let summary = twilio_sim::load::run_load(&client, &cfg, calls, concurrency).await;
            if call.json {
                println!("{}", serde_json::to_string_pretty(&summary)?);
            } else {
                print!("{}", summary.render());
            }
            Ok(summary.exit_code())
        }
    }
}

fn main() {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 64 } else { 0 };
            let _ = e.print();
            std::process::exit(code);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("twilio-sim: cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    let code = match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("twilio-sim: {e:#}");
            1
        }
    };
    std::process::exit(code);
}
