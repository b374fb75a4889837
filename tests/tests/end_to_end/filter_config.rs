//! The shipped envoy.yaml is valid as shipped, and a bad plugin configuration is refused with a
//! log line naming the field, instead of running with a guess.

use crate::common;

use std::process::Command;

use e2e::{
    envoy_binary, render_envoy_config, run_envoy_refusing, shipped_envoy_yaml,
    validate_envoy_config_env, EnvoySetup, SHIPPED_WASM_PATH,
};

#[test]
fn shipped_envoy_yaml_validates_as_shipped() {
    // Byte for byte the shipped files, in a directory laid out like the repo after `make run`
    // seeded run/ecds/ (the paths in them are relative), with the module under test linked in.
    // `--mode validate` checks the bootstrap only: Envoy loads no ECDS resource in it.
    let dir = tempfile::tempdir().unwrap();
    let wasm_link = dir.path().join(SHIPPED_WASM_PATH);
    std::fs::create_dir_all(wasm_link.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(common::wasm_path(), &wasm_link).unwrap();
    let config = dir.path().join("envoy.yaml");
    std::fs::write(&config, shipped_envoy_yaml().unwrap()).unwrap();
    std::fs::create_dir_all(dir.path().join(e2e::ECDS_DIR)).unwrap();
    std::fs::copy(
        e2e::repo_root().join(e2e::SHIPPED_ECDS_SEED),
        dir.path().join(e2e::ECDS_FILE),
    )
    .unwrap();
    let token = [
        (e2e::AUTH_TOKEN_ENV, "shipped-config-token"),
        (e2e::MEDIA_KEY_ENV, e2e::MEDIA_KEY),
    ];
    let (status, out) = validate_envoy_config_env(&config, dir.path(), &token).unwrap();
    assert!(status.success(), "{out}");
    assert!(out.contains("OK"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_guard_configuration_loads_and_needs_the_token() {
    let any = "127.0.0.1:9".parse().unwrap();
    let envoy = e2e::Envoy::start(&EnvoySetup::new(any, any).auth_token("shipped-config-token"))
        .await
        .unwrap();
    let out = envoy
        .wait_log("configured mode=Rewrite reject_style=Status holds_headers=true")
        .await
        .unwrap();
    // The module says what it is and which configuration it runs, and the shipped config checks
    // signatures.
    assert!(
        out.contains(&format!(
            "twiml_guard version={} commit=",
            env!("CARGO_PKG_VERSION")
        )),
        "{out}"
    );
    assert!(
        out.contains("config applied config_version=1 digest="),
        "{out}"
    );
    assert!(
        out.contains(
            "signature=on enforce=true public_base_url=https://voice.example.com \
             paths=[\"/webhook/\"]"
        ),
        "{out}"
    );
    assert!(!out.contains("shipped-config-token"), "{out}");
    drop(envoy);

    // Without the token the shipped config fails closed: the guard refuses it, every request is
    // answered 500, and the critical line names the variable and how to pass it.
    let cfg = render_envoy_config(
        &shipped_envoy_yaml().unwrap(),
        &EnvoySetup::new(any, any),
        &common::wasm_path(),
    )
    .unwrap();
    let (status, out) = run_envoy_refusing(&cfg, &[]).await.unwrap();
    assert_eq!(status, 500, "{out}");
    assert!(
        out.contains("[critical][wasm]")
            && out.contains(
                "invalid plugin configuration: field `signature`: auth_token_env: environment \
             variable TWILIO_AUTH_TOKEN is not set in the VM: set TWILIO_AUTH_TOKEN in Envoy's \
             environment and list it in vm_config.environment_variables.host_env_keys"
            ),
        "{out}"
    );
}

#[test]
fn envoy_is_the_pinned_version() {
    let out = Command::new(envoy_binary().unwrap())
        .arg("--version")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("/1.40.0/"), "{text}");
}

fn setup(json: &str) -> e2e::EnvoyConfig {
    let any = "127.0.0.1:9".parse().unwrap();
    render_envoy_config(
        &shipped_envoy_yaml().unwrap(),
        &EnvoySetup::new(any, any).plugin_config(json),
        &common::wasm_path(),
    )
    .unwrap()
}

/// A bad initial configuration is refused: the listener answers 500 (nothing passes unguarded)
/// and the log names the field. `make run` and the demo check the file with `twiml-guard config
/// check` before starting Envoy, so there it stops the start instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_plugin_config_is_refused_naming_the_field() {
    let cases = [
        (
            r#"{"mode": "strcit"}"#,
            "field `mode`: unknown variant `strcit`",
        ),
        (r#"{"mdoe": "strict"}"#, "unknown field `mdoe`"),
        (
            r#"{"max_body_bytes": "big"}"#,
            "field `max_body_bytes`: invalid type",
        ),
        (
            r#"{"recording_status_callback": "/cb"}"#,
            "field `recording_status_callback`: \"/cb\" is not an absolute http(s) URL",
        ),
        (
            r#"{"reject_status": 700}"#,
            "field `reject_status`: 700 is not an HTTP status (100-599)",
        ),
        ("mode: strict", "plugin configuration is not valid JSON"),
    ];
    // Each case is its own Envoy; they start side by side.
    let runs = cases.map(|(json, _)| async move { run_envoy_refusing(&setup(json), &[]).await });
    let results = futures_util::future::join_all(runs).await;
    for ((json, want), result) in cases.iter().zip(results) {
        let (status, log) = result.unwrap();
        assert_eq!(status, 500, "{json}: a request passed\n{log}");
        assert!(
            log.contains(&format!("invalid plugin configuration: {want}")),
            "{json}: log lacks {want:?}\n{log}"
        );
    }
}
