//! Twilio's own validator as the oracle for both signature suites (the filter's and the host's):
//! `tests/oracle/gen_signature_cases.py` signs cases with the `twilio` Python library.

use std::process::Command;

use serde_json::Value;

/// Runs the oracle generator with `args` and returns its JSON.
pub fn cases(args: &[&str]) -> Value {
    let script = e2e::repo_root().join("tests/oracle/gen_signature_cases.py");
    let out = Command::new(e2e::stack::oracle_python())
        .arg(&script)
        .args(args)
        .output()
        .expect("run the oracle generator");
    assert!(
        out.status.success(),
        "oracle failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("oracle prints JSON")
}

/// The string at `key` of an oracle case.
pub fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} is a string in {v}"))
}
