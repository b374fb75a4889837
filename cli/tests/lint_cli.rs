//! `twiml-guard lint` as a user runs it: golden human and JSON output for every rule's fixture,
//! the corpus verdicts the npm package must reproduce (checked against the core and the filter),
//! the SARIF log the Node tests validate, exit codes, and `--fix` in place.
//! `UPDATE_GOLDEN=1` rewrites the goldens in tests/fixtures/lint/.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;
use twiml_guard_edge::{config, decide};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn lint_dir() -> PathBuf {
    root().join("tests/fixtures/lint")
}

fn twiml_dir() -> PathBuf {
    root().join("twiml/fixtures")
}

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_twiml-guard"))
}

/// Runs `twiml-guard lint ARGS` in `dir`.
fn lint(dir: &Path, args: &[&str]) -> Output {
    bin()
        .arg("lint")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn update() -> bool {
    std::env::var_os("UPDATE_GOLDEN").is_some()
}

/// Compares `actual` with the golden file, or writes it under UPDATE_GOLDEN.
fn golden(path: &Path, actual: &[u8]) {
    if update() {
        fs::write(path, actual).unwrap();
        return;
    }
    let expected = fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(
        String::from_utf8_lossy(actual),
        String::from_utf8_lossy(&expected),
        "{} differs (UPDATE_GOLDEN=1 rewrites it)",
        path.display()
    );
}

/// The rule fixtures: every `.xml` in tests/fixtures/lint.
fn lint_fixtures() -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(lint_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".xml"))
        .collect();
    names.sort();
    names
}

/// Every input of both corpora, as paths relative to the repository root.
fn corpus() -> Vec<String> {
    let mut files = Vec::new();
    for (dir, rel) in [
        (twiml_dir(), "twiml/fixtures"),
        (lint_dir(), "tests/fixtures/lint"),
    ] {
        for e in fs::read_dir(dir).unwrap() {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            let input = (name.ends_with(".xml") || name.ends_with(".txt"))
                && name != "manifest.txt"
                && !name.ends_with(".strip.xml")
                && !name.ends_with(".start-recording.xml")
                && !name.ends_with(".human.txt");
            if input {
                files.push(format!("{rel}/{name}"));
            }
        }
    }
    files.sort();
    files
}

fn stem(name: &str) -> &str {
    name.strip_suffix(".xml").unwrap()
}

#[test]
fn every_rule_fixture_matches_its_human_and_json_goldens() {
    for name in lint_fixtures() {
        let human = lint(&lint_dir(), &[&name]);
        golden(
            &lint_dir().join(format!("{}.human.txt", stem(&name))),
            &human.stdout,
        );
        let json = lint(&lint_dir(), &["--format", "json", &name]);
        golden(
            &lint_dir().join(format!("{}.json", stem(&name))),
            &json.stdout,
        );
        assert_eq!(human.status.code(), json.status.code(), "{name}");
    }
}

#[test]
fn each_rule_fires_in_its_own_fixture_and_nowhere_unexpected() {
    let mut seen = BTreeSet::new();
    for name in lint_fixtures() {
        let out = lint(&lint_dir(), &["--format", "json", &name]);
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        let codes: BTreeSet<String> = v["files"][0]["diagnostics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["code"].as_str().unwrap().to_owned())
            .collect();
        match name.get(..5).map(str::to_ascii_uppercase) {
            Some(code) if code.starts_with("TG") => {
                assert_eq!(codes, BTreeSet::from([code.clone()]), "{name}");
                seen.insert(code);
            }
            _ => assert!(codes.is_empty(), "{name}: {codes:?}"),
        }
    }
    let all: BTreeSet<String> = twiml::lint::RULES
        .iter()
        .map(|r| r.code.to_owned())
        .collect();
    assert_eq!(seen, all);
}

#[test]
fn exit_codes() {
    let dir = lint_dir();
    let code = |args: &[&str]| lint(&dir, args).status.code();
    assert_eq!(code(&["clean_stream_with_recording.xml"]), Some(0));
    // Warnings alone do not fail a build.
    assert_eq!(code(&["tg002_record_without_action.xml"]), Some(0));
    assert_eq!(code(&["tg001_record_blocks_stream.xml"]), Some(1));
    assert_eq!(
        code(&["tg001_record_blocks_stream.xml", "no-such-file.xml"]),
        Some(2)
    );
    assert_eq!(code(&["--format", "sarif", "."]), Some(2));
    // No file at all is a usage error (clap's 2), not a silent pass.
    assert_eq!(code(&[]), Some(2));
}

#[test]
fn an_unreadable_input_is_reported_and_the_others_still_checked() {
    let out = lint(
        &lint_dir(),
        &["no-such-file.xml", "tg006_connect_without_action.xml"],
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.starts_with("error: no-such-file.xml: cannot read: "),
        "{text}"
    );
    assert!(text.contains("warning[TG006]"), "{text}");
    assert!(text.ends_with("0 errors, 1 warning in 2 files\n"), "{text}");
}

#[test]
fn stdin_is_read_with_a_dash() {
    let mut child = bin()
        .args(["lint", "--format", "json", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"<Response><Connect><Stream url=\"wss://h/p\"/></Connect></Response>")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["files"][0]["file"], "-");
    assert_eq!(v["files"][0]["diagnostics"][0]["code"], "TG006");
    assert_eq!(out.status.code(), Some(0));
}

/// The whole corpus through the CLI equals the core's lint, its verdict equals the filter's, and
/// the result is the golden the npm package is held to (npm/test/corpus.test.js).
#[test]
fn corpus_verdicts_agree_between_cli_core_and_filter() {
    let files = corpus();
    assert!(files.len() >= 35, "{}", files.len());
    let args: Vec<&str> = ["--format", "json"]
        .into_iter()
        .chain(files.iter().map(String::as_str))
        .collect();
    let out = lint(&root(), &args);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let cfg = config::Config::default();
    for (file, got) in files.iter().zip(v["files"].as_array().unwrap()) {
        assert_eq!(got["file"], file.as_str());
        let body = fs::read(root().join(file)).unwrap();
        let core = twiml::lint::lint(&body);
        let mut expected = twiml::report::lint_value(&body, &core);
        expected["file"] = Value::from(file.as_str());
        expected["fixed"] = Value::from(0);
        assert_eq!(got, &expected, "{file}");
        assert_eq!(got["verdict"], twiml::analyze(&body).name(), "{file}");
        let label = decide::evaluate(&cfg, &body, decide::Encoding::Identity).label;
        let want = match core.verdict.name() {
            "clean" | "not_twiml" => "clean",
            "conflict" => "rewritten",
            _ => "malformed",
        };
        assert_eq!(label.as_str(), want, "{file}");
    }
    // The golden the npm package is compared with: file, verdict and diagnostics per input.
    let mut pretty = serde_json::to_vec_pretty(&v["files"]).unwrap();
    pretty.push(b'\n');
    golden(&lint_dir().join("corpus.json"), &pretty);
}

#[test]
fn sarif_log_of_the_rule_fixtures() {
    let mut args = vec!["--format", "sarif"];
    let names = lint_fixtures();
    args.extend(names.iter().map(String::as_str));
    let out = lint(&lint_dir(), &args);
    assert_eq!(out.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["version"], "2.1.0");
    let run = &v["runs"][0];
    assert_eq!(run["tool"]["driver"]["rules"].as_array().unwrap().len(), 8);
    let results = run["results"].as_array().unwrap();
    let first = &results[0];
    assert_eq!(first["ruleId"], "TG001");
    let location = &first["locations"][0]["physicalLocation"];
    assert_eq!(
        location["artifactLocation"]["uri"],
        "tg001_record_blocks_stream.xml"
    );
    let region = &location["region"];
    assert_eq!(
        (region["startLine"].as_u64(), region["startColumn"].as_u64()),
        (Some(3), Some(3))
    );
    golden(&lint_dir().join("all.sarif"), &out.stdout);
}

#[test]
fn fix_strip_rewrites_the_seed_in_place_to_the_incident_fix() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("seed.xml");
    fs::copy(twiml_dir().join("seed_001.xml"), &file).unwrap();
    let out = lint(dir.path(), &["--fix", "seed.xml"]);
    assert_eq!(
        fs::read(&file).unwrap(),
        fs::read(twiml_dir().join("seed_001.strip.xml")).unwrap()
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        text,
        "fixed: seed.xml: rewrote 1 blocking <Record>\n0 errors, 0 warnings in 1 file\n"
    );
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn fix_start_recording_with_a_callback_keeps_every_other_byte() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["seed_001", "multiple_records", "crlf", "bom"] {
        let file = dir.path().join(format!("{name}.xml"));
        fs::copy(twiml_dir().join(format!("{name}.xml")), &file).unwrap();
    }
    let out = lint(
        dir.path(),
        &[
            "--fix",
            "--action",
            "start-recording",
            "--recording-status-callback",
            "https://guard.example/recording-status?src=twiml-guard&v=1",
            "seed_001.xml",
            "multiple_records.xml",
            "crlf.xml",
            "bom.xml",
        ],
    );
    for name in ["seed_001", "multiple_records", "crlf", "bom"] {
        assert_eq!(
            fs::read(dir.path().join(format!("{name}.xml"))).unwrap(),
            fs::read(twiml_dir().join(format!("{name}.start-recording.xml"))).unwrap(),
            "{name}"
        );
    }
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn fix_leaves_files_without_a_conflict_untouched_and_refuses_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("t.xml");
    fs::copy(lint_dir().join("tg003_stream_url_not_wss.xml"), &file).unwrap();
    let before = fs::metadata(&file).unwrap().modified().unwrap();
    let out = lint(dir.path(), &["--fix", "t.xml"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        fs::read(&file).unwrap(),
        fs::read(lint_dir().join("tg003_stream_url_not_wss.xml")).unwrap()
    );
    assert_eq!(fs::metadata(&file).unwrap().modified().unwrap(), before);
    let out = lint(dir.path(), &["--fix", "-"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stdout).contains("--fix cannot rewrite standard input"));
}

/// The filter's strict-mode reply for the seed, which the Express middleware must send as is.
#[test]
fn strict_reply_golden_is_the_filters() {
    let body = fs::read(twiml_dir().join("seed_001.xml")).unwrap();
    let conflicts = twiml::analyze(&body).conflicts().to_vec();
    let reply = decide::reject_body(&decide::Problem::Conflicts(conflicts));
    golden(&lint_dir().join("seed_001.strict.json"), &reply);
}

/// The filter's reply for a malformed body with `on_malformed: reject`, which the middleware with
/// `onMalformed: "reject"` must send as is.
#[test]
fn malformed_reply_golden_is_the_filters() {
    let body = fs::read(twiml_dir().join("malformed_mismatched.xml")).unwrap();
    let cfg = config::parse(br#"{"on_malformed": "reject"}"#).unwrap();
    let outcome = decide::evaluate(&cfg, &body, decide::Encoding::Identity);
    let decide::Effect::Reply { status, body, .. } = outcome.effect else {
        panic!("{:?}", outcome.effect);
    };
    assert_eq!(status, 502);
    golden(&lint_dir().join("malformed_mismatched.reject.json"), &body);
}

/// The public-pattern corpus (`twiml/fixtures/corpus/manifest.json`) through the CLI: each
/// document's verdict is the manifest's, and `--fix` with either action writes exactly the bytes
/// the manifest names (a clean document is left as it is, not even rewritten in place).
#[test]
fn the_public_pattern_corpus_through_lint_and_fix() {
    let corpus = twiml_dir().join("corpus");
    let manifest: Value =
        serde_json::from_slice(&fs::read(corpus.join("manifest.json")).unwrap()).unwrap();
    let callback = manifest["recording_status_callback"].as_str().unwrap();
    let docs = manifest["documents"].as_array().unwrap();
    assert!(docs.len() >= 25, "{}", docs.len());
    let files: Vec<&str> = docs.iter().map(|d| d["file"].as_str().unwrap()).collect();
    let args: Vec<&str> = ["--format", "json"]
        .into_iter()
        .chain(files.iter().copied())
        .collect();
    let v: Value = serde_json::from_slice(&lint(&corpus, &args).stdout).unwrap();
    for (doc, got) in docs.iter().zip(v["files"].as_array().unwrap()) {
        assert_eq!(got["file"], doc["file"]);
        assert_eq!(got["verdict"], doc["verdict"], "{}", doc["file"]);
        let tg001: Vec<String> = got["diagnostics"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["code"] == "TG001")
            .map(|d| format!("{}:{}", d["line"], d["column"]))
            .collect();
        let conflicts: Vec<String> = doc["conflicts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap().to_owned())
            .collect();
        assert_eq!(tg001, conflicts, "{}", doc["file"]);
    }
    for (action, key) in [("strip", "strip"), ("start-recording", "start_recording")] {
        let dir = tempfile::tempdir().unwrap();
        for file in &files {
            fs::copy(corpus.join(file), dir.path().join(file)).unwrap();
        }
        let mut args = vec![
            "--fix",
            "--action",
            action,
            "--recording-status-callback",
            callback,
        ];
        args.extend(files.iter().copied());
        let out = lint(dir.path(), &args);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        for doc in docs {
            let file = doc["file"].as_str().unwrap();
            let want = fs::read(corpus.join(doc[key].as_str().unwrap())).unwrap();
            assert_eq!(
                String::from_utf8_lossy(&fs::read(dir.path().join(file)).unwrap()),
                String::from_utf8_lossy(&want),
                "{file} --fix --action {action}"
            );
        }
    }
}
