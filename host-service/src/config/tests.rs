//! The configuration's file and environment rules, key by key, and the shipped files against them.

use super::env::{keys, Kind};
use super::*;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

const UNSIGNED: (&str, &str) = ("HOST_SERVICE_TWILIO_VALIDATE_SIGNATURES", "false");

/// Why the file `x.toml` holding `text` is refused (signatures off, no other variable).
fn refused(text: &str) -> String {
    Config::from_parts(text, "x.toml", env(&[UNSIGNED]))
        .unwrap_err()
        .to_string()
}

#[test]
fn defaults_need_no_file_but_a_key_or_an_explicit_opt_out() {
    let err = Config::from_parts("", "-", env(&[]))
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "config key twilio.validate_signatures: is on but no key is set: set \
         twilio.auth_token (HOST_SERVICE_TWILIO_AUTH_TOKEN) or twilio.shared_key \
         (HOST_SERVICE_TWILIO_SHARED_KEY), or accept unsigned requests with \
         twilio.validate_signatures = false (HOST_SERVICE_TWILIO_VALIDATE_SIGNATURES=false)"
    );
    assert!(!err.contains('\n'));
    let c = Config::from_parts("", "-", env(&[UNSIGNED])).unwrap();
    assert_eq!(c.listen.to_string(), "127.0.0.1:7000");
    assert_eq!(c.data_dir, PathBuf::from("./data"));
    assert_eq!(c.recording.source, RecordingSource::Stream);
    assert_eq!(c.app.kind, AppKind::None);
    assert!(!c.validate_signatures());
    assert_eq!(c.websocket.max_sockets, 256);
    assert_eq!(c.websocket.idle_timeout_ms, 15_000);
    assert_eq!(c.recording.max_timestamp_jump_ms, 10_000);
    assert_eq!(c.http.shutdown_timeout_ms, 15_000);
    assert_eq!(c.retention.days, 30);
}

#[test]
fn a_shared_key_alone_turns_checking_on() {
    let base = ("HOST_SERVICE_PUBLIC_BASE_URL", "https://voice.example.com");
    let c = Config::from_parts(
        "",
        "-",
        env(&[("HOST_SERVICE_TWILIO_SHARED_KEY", "k"), base]),
    )
    .unwrap();
    assert!(c.validate_signatures());
    assert_eq!(c.twilio.auth_token, None);
    let c = Config::from_parts(
        "",
        "-",
        env(&[("HOST_SERVICE_TWILIO_AUTH_TOKEN", "t"), base]),
    )
    .unwrap();
    assert!(c.validate_signatures());
    // A key without the public URL cannot be checked either.
    let err = Config::from_parts("", "-", env(&[("HOST_SERVICE_TWILIO_SHARED_KEY", "k")]))
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("config key public_base_url:"), "{err}");
    // An empty key is no key.
    let err = Config::from_parts(
        "",
        "-",
        env(&[("HOST_SERVICE_TWILIO_AUTH_TOKEN", ""), base]),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.starts_with("config key twilio.validate_signatures:"),
        "{err}"
    );
}

#[test]
fn env_overrides_file_and_every_key_has_a_variable() {
    let c = Config::from_parts(
        "listen = \"0.0.0.0:1\"\n[pipeline]\nworkers = 3\n",
        "-",
        env(&[
            ("HOST_SERVICE_LISTEN", "127.0.0.1:9"),
            ("HOST_SERVICE_PIPELINE_LEASE_MS", "1500"),
            ("HOST_SERVICE_TRANSCRIPTION_ENGINE", "none"),
            ("HOST_SERVICE_CONFIG", "ignored.toml"),
            ("PATH", "/bin"),
            UNSIGNED,
        ]),
    )
    .unwrap();
    assert_eq!(c.listen.to_string(), "127.0.0.1:9");
    assert_eq!(c.pipeline.workers, 3);
    assert_eq!(c.pipeline.lease_ms, 1500);
    assert_eq!(c.transcription.engine, postcall::TranscriptionEngine::Off);
    assert_eq!(
        env_name("pipeline.lease_ms"),
        "HOST_SERVICE_PIPELINE_LEASE_MS"
    );
}

#[test]
fn engine_keys_nest_and_take_their_defaults_type() {
    let c = Config::from_parts(
        "",
        "-",
        env(&[
            (
                "HOST_SERVICE_TRANSCRIPTION_WHISPER_MODEL_DIR",
                "/models/123",
            ),
            ("HOST_SERVICE_TRANSCRIPTION_WHISPER_BEAM_SIZE", "1"),
            ("HOST_SERVICE_TRANSCRIPTION_WHISPER_LANGUAGE", "he"),
            ("HOST_SERVICE_EXTRACTION_LOCAL_DEFAULT_REGION", "IL"),
            UNSIGNED,
        ]),
    )
    .unwrap();
    assert_eq!(
        c.transcription.whisper.model_dir,
        PathBuf::from("/models/123")
    );
    assert_eq!(c.transcription.whisper.beam_size, 1);
    assert_eq!(c.transcription.whisper.language.as_deref(), Some("he"));
    assert_eq!(c.extraction.local.default_region, "IL");
    let err = Config::from_parts(
        "",
        "-",
        env(&[("HOST_SERVICE_TRANSCRIPTION_WHISPER_MODEL", "x")]),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "unknown environment variable HOST_SERVICE_TRANSCRIPTION_WHISPER_MODEL (no such config key)"
    );
    // The engines' keys follow the same typing rule as the host's.
    let err = Config::from_parts(
        "",
        "-",
        env(&[
            ("HOST_SERVICE_TRANSCRIPTION_WHISPER_BEAM_SIZE", "five"),
            UNSIGNED,
        ]),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "environment variable HOST_SERVICE_TRANSCRIPTION_WHISPER_BEAM_SIZE: \"five\" is not an integer"
    );
}

#[test]
fn every_variable_names_one_key() {
    let mut names: Vec<String> = env_names().into_iter().map(|(_, env)| env).collect();
    let all = names.len();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), all);
}

/// One client for every OpenAI-compatible engine; each engine names its model.
#[test]
fn the_openai_client_is_one_section_and_models_are_per_engine() {
    let file = "[openai]\nbase_url = \"http://127.0.0.1:9\"\ntimeout_secs = 20\n\
                [transcription]\nengine = \"openai\"\n[transcription.openai]\nmodel = \"w\"\n\
                [extraction]\nengine = \"openai\"\n[extraction.openai]\nmodel = \"g\"\n";
    let c = Config::from_parts(
        file,
        "-",
        env(&[("HOST_SERVICE_OPENAI_MAX_RETRIES", "1"), UNSIGNED]),
    )
    .unwrap();
    assert_eq!(
        c.openai,
        postcall::OpenAiConfig {
            base_url: "http://127.0.0.1:9".into(),
            timeout_secs: 20,
            max_retries: 1,
            ..Default::default()
        }
    );
    assert_eq!(c.transcription.openai.model, "w");
    assert_eq!(c.extraction.openai.model, "g");
    let err = refused("[transcription.openai]\nbase_url = \"http://127.0.0.1:9\"\n");
    assert!(
        err.starts_with(
            "config file x.toml: key transcription.openai.base_url: unknown field `base_url`"
        ),
        "{err}"
    );
    for (file, want) in [
        (
            "[openai]\nbase_url = \"ftp://x\"\n",
            "config key openai.base_url: \"ftp://x\" is not an http(s) URL",
        ),
        (
            "[openai]\ntimeout_secs = 0\n",
            "config key openai.timeout_secs: must be at least 1",
        ),
        (
            "[extraction.openai]\nmodel = \"\"\n",
            "config key extraction.openai.model: must not be empty",
        ),
        (
            "[transcription.whisper]\nbeam_size = 0\n",
            "config key transcription.whisper.beam_size: must be at least 1",
        ),
    ] {
        assert_eq!(refused(file), want);
    }
}

#[test]
fn unknown_keys_and_variables_are_errors_that_name_them() {
    let err = Config::from_parts("[pipeline]\nworker = 3\n", "x.toml", env(&[])).unwrap_err();
    assert!(err.to_string().contains("worker"), "{err}");
    let err = Config::from_parts("", "-", env(&[("HOST_SERVICE_LISTN", "x")])).unwrap_err();
    assert_eq!(
        err.to_string(),
        "unknown environment variable HOST_SERVICE_LISTN (no such config key)"
    );
    let err =
        Config::from_parts("", "-", env(&[("HOST_SERVICE_PIPELINE_WORKERS", "two")])).unwrap_err();
    assert!(err.to_string().contains("not an integer"), "{err}");
    let err = Config::from_parts("[recording]\nsource = \"tape\"\n", "-", env(&[])).unwrap_err();
    assert!(err.to_string().contains("tape"), "{err}");
}

#[test]
fn a_wrong_type_names_the_dotted_key() {
    let err = Config::from_parts(
        "[pipeline]\nworkers = \"two\"\n",
        "x.toml",
        env(&[UNSIGNED]),
    )
    .unwrap_err()
    .to_string();
    assert_eq!(
        err,
        "config file x.toml: key pipeline.workers: invalid type: string \"two\", expected usize"
    );
    let err = Config::from_parts("[twilio]\nvalidate_signatures = 1\n", "x.toml", env(&[]))
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("config file x.toml: key twilio.validate_signatures: invalid type"),
        "{err}"
    );
}

#[test]
fn an_unknown_key_is_refused_naming_it() {
    let err = Config::from_parts("[websocket]\nmax_socket = 3\n", "x.toml", env(&[UNSIGNED]))
        .unwrap_err();
    assert!(matches!(err, ConfigError::Key { .. }), "{err:?}");
    let err = err.to_string();
    assert!(
        err.starts_with("config file x.toml: key websocket"),
        "{err}"
    );
    assert!(err.contains("unknown field `max_socket`"), "{err}");
    let err = Config::from_parts("lisen = \"x\"\n", "x.toml", env(&[UNSIGNED]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown field `lisen`"), "{err}");
}

#[test]
fn an_env_override_wins_over_the_file() {
    let file = "[pipeline]\nworkers = 3\n[twilio]\nvalidate_signatures = true\n";
    let c = Config::from_parts(
        file,
        "-",
        env(&[("HOST_SERVICE_PIPELINE_WORKERS", "5"), UNSIGNED]),
    )
    .unwrap();
    assert_eq!(c.pipeline.workers, 5);
    assert!(!c.validate_signatures());
}

/// The documented table and the type agree: every key and variable in
/// docs/host-service.md exists, and every key of the type is documented.
#[test]
fn every_documented_key_and_variable_and_only_those() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/host-service.md");
    let doc = std::fs::read_to_string(path).unwrap();
    let mut documented: Vec<(String, String)> = doc
        .lines()
        .filter_map(|l| {
            let mut cells = l.strip_prefix("| `")?.split('|');
            let key = cells.next()?.trim().trim_matches('`');
            let env = cells.next()?.trim().trim_matches('`');
            (!key.contains('*') && env.starts_with(ENV_PREFIX))
                .then(|| (key.to_owned(), env.to_owned()))
        })
        .collect();
    documented.sort();
    let mut ours = env_names();
    ours.sort();
    assert_eq!(ours, documented);
    assert_eq!(ours.len(), 72);
}

/// Variables for optional keys are taken as text: a digits-only token stays a string.
#[test]
fn optional_keys_are_text() {
    let defaults = serde_json::to_value(Config::default()).unwrap();
    for (key, kind) in keys() {
        let mut node = &defaults;
        for part in key.split('.') {
            node = &node[part];
        }
        if !node.is_null() {
            continue;
        }
        assert_eq!(kind, Kind::Str, "{key}");
        let digits = "1234567890123456";
        let loaded = Config::from_parts("", "-", env(&[(&env_name(&key), digits), UNSIGNED]));
        if let Err(e @ ConfigError::Key { .. }) = loaded {
            panic!("{key}: {e}");
        }
    }
    let c = Config::from_parts(
        "",
        "-",
        env(&[("HOST_SERVICE_API_TOKEN", "1234567890123456"), UNSIGNED]),
    )
    .unwrap();
    assert_eq!(c.api_token.as_deref(), Some("1234567890123456"));
}

/// The engines come from `[transcription]` and `[extraction]` only: no key selects stand-ins.
#[test]
fn no_key_selects_test_engines() {
    let err = refused("[pipeline]\nengines = \"test\"\n");
    assert!(
        err.starts_with(
            "config file x.toml: key pipeline.engines: unknown field `engines`, expected one of"
        ),
        "{err}"
    );
    let err = Config::from_parts(
        "",
        "-",
        env(&[("HOST_SERVICE_PIPELINE_ENGINES", "test"), UNSIGNED]),
    )
    .unwrap_err()
    .to_string();
    assert_eq!(
        err,
        "unknown environment variable HOST_SERVICE_PIPELINE_ENGINES (no such config key)"
    );
    let err = refused("[test_engines]\ndelay_ms = 1\n");
    assert!(err.contains("unknown field `test_engines`"), "{err}");
}

#[test]
fn the_shipped_example_is_valid() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../host-service.toml");
    let c = Config::load(Some(&path), env(&[UNSIGNED])).unwrap();
    assert_eq!(c, {
        let mut d = Config::default();
        d.transcription.engine = postcall::TranscriptionEngine::Off;
        d.twilio.validate_signatures = false;
        d
    });
}

#[test]
fn dependent_keys_are_checked() {
    let err = Config::from_parts("[recording]\nsource = \"twilio\"\n", "-", env(&[]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("twilio.auth_token"), "{err}");
    let err = Config::from_parts("[twilio]\nauth_token = \"t\"\n", "-", env(&[]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("public_base_url"), "{err}");
    let err = Config::from_parts(
        "[edge]\nenvoy_admin_url = \"127.0.0.1:9901\"\n",
        "-",
        env(&[UNSIGNED]),
    )
    .unwrap_err()
    .to_string();
    assert!(err.starts_with("config key edge.envoy_admin_url:"), "{err}");
    let c = Config::from_parts(
        "",
        "-",
        env(&[
            ("HOST_SERVICE_EDGE_ENVOY_ADMIN_URL", "http://127.0.0.1:9901"),
            UNSIGNED,
        ]),
    )
    .unwrap();
    assert_eq!(
        c.edge.envoy_admin_url.as_deref(),
        Some("http://127.0.0.1:9901")
    );
    let err = Config::from_parts("[dashboard]\nmax_sessions = 0\n", "-", env(&[UNSIGNED]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("dashboard.max_sessions"), "{err}");
    let err = Config::from_parts("api_token = \"short\"\n", "-", env(&[UNSIGNED]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("api_token"), "{err}");
}
