//! Golden test over the fixture corpus in twiml/fixtures: each file's verdict and place
//! match manifest.txt, and each conflicting file rewrites to exactly its `.strip.xml` and
//! `.start-recording.xml` neighbours. `UPDATE_GOLDEN=1` rewrites those neighbours (never the
//! seed's strip output, copied verbatim from the incident write-up); review the diff before
//! committing.
//!
//! The public-pattern corpus in twiml/fixtures/corpus is checked the same way from its
//! `manifest.json` (verdict, the stream blocked, the place of each conflicting and each kept
//! `<Record>`, and the file holding each action's output bytes), the manifest every other runner
//! (the CLI, the filter in Envoy, the npm package) reads too.

// Test code: clippy.toml's allow-*-in-tests switches cover `#[test]` functions, not this
// binary's helpers.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;
use twiml::{analyze, inspect, line_column, rewrite, RewriteAction, RewriteOptions, Verdict};

/// The callback the start-recording goldens are made with.
const CALLBACK: &str = "https://guard.example/recording-status?src=twiml-guard&v=1";

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

struct Entry {
    file: String,
    verdict: String,
    places: Vec<(u32, u32)>,
}

fn manifest() -> Vec<Entry> {
    let text = fs::read_to_string(dir().join("manifest.txt")).unwrap();
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|line| {
            let mut words = line.split_whitespace();
            let file = words.next().unwrap().to_owned();
            let verdict = words.next().unwrap_or_else(|| panic!("{line}")).to_owned();
            let places = words
                .map(|w| {
                    let (l, c) = w.split_once(':').unwrap_or_else(|| panic!("{line}"));
                    (l.parse().unwrap(), c.parse().unwrap())
                })
                .collect();
            Entry {
                file,
                verdict,
                places,
            }
        })
        .collect()
}

fn golden_name(file: &str, action: RewriteAction) -> String {
    let stem = file.rsplit_once('.').map_or(file, |(stem, _)| stem);
    format!("{stem}.{}.xml", action.name())
}

fn options(action: RewriteAction) -> RewriteOptions {
    RewriteOptions {
        action,
        recording_status_callback: Some(CALLBACK.to_owned()),
    }
}

#[test]
fn every_fixture_has_its_manifest_verdict_and_place() {
    let mut failures = Vec::new();
    for entry in manifest() {
        let body = fs::read(dir().join(&entry.file)).unwrap();
        let verdict = analyze(&body);
        let places: Vec<(u32, u32)> = match &verdict {
            Verdict::Conflict(cs) => cs.iter().map(|c| (c.line, c.column)).collect(),
            Verdict::Malformed(m) => vec![(m.line, m.column)],
            Verdict::Clean | Verdict::NotTwiml => vec![],
        };
        if verdict.name() != entry.verdict || places != entry.places {
            failures.push(format!(
                "{}: expected {} {:?}, got {verdict}",
                entry.file, entry.verdict, entry.places
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn conflicting_fixtures_rewrite_to_their_goldens() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut failures = Vec::new();
    for entry in manifest() {
        let body = fs::read(dir().join(&entry.file)).unwrap();
        let verdict = analyze(&body);
        for action in [RewriteAction::Strip, RewriteAction::StartRecording] {
            let golden = dir().join(golden_name(&entry.file, action));
            let Verdict::Conflict(conflicts) = &verdict else {
                assert!(!golden.exists(), "{} has no conflict", golden.display());
                continue;
            };
            let out = rewrite(&body, conflicts, &options(action)).unwrap();
            assert_eq!(
                analyze(&out),
                Verdict::Clean,
                "{} after {}",
                entry.file,
                action.name()
            );
            let verbatim = entry.file.starts_with("seed_") && action == RewriteAction::Strip;
            if update && !verbatim {
                fs::write(&golden, &out).unwrap();
            }
            match fs::read(&golden) {
                Ok(expected) if expected == out => {}
                Ok(_) => failures.push(format!("{} differs", golden.display())),
                Err(e) => failures.push(format!("{}: {e}", golden.display())),
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn seed_strip_golden_is_the_incident_after() {
    let after = fs::read_to_string(dir().join("seed_001.strip.xml")).unwrap();
    assert_eq!(
        after,
        r#"<?xml version="1.0" encoding="UTF-8"?>
<Response>
  <Connect action="https://prosaas.pro/webhook/stream_ended">
    <Stream track="inbound_track" url="wss://prosaas.pro/ws/twilio-media">
      <Parameter name="CallSid" value="CA19ccfe8b0c90c3b22c9fb591bf36aa25" />
      <Parameter name="To" value="+97233762734" />
    </Stream>
  </Connect>
</Response>
"#
    );
}

#[test]
fn every_file_is_listed_in_the_manifest_and_described_in_the_readme() {
    let entries = manifest();
    let readme = fs::read_to_string(dir().join("README.md")).unwrap();
    let mut known: BTreeSet<String> = [
        "README.md",
        "manifest.txt",
        "generate_twilio.py",
        ".gitattributes",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    for entry in &entries {
        assert!(
            readme.contains(&format!("`{}`", entry.file)),
            "README.md does not describe {}",
            entry.file
        );
        known.insert(entry.file.clone());
        for action in [RewriteAction::Strip, RewriteAction::StartRecording] {
            known.insert(golden_name(&entry.file, action));
        }
    }
    for file in fs::read_dir(dir()).unwrap() {
        let file = file.unwrap();
        let name = file.file_name().into_string().unwrap();
        if file.file_type().unwrap().is_dir() {
            assert_eq!(name, "corpus");
            continue;
        }
        assert!(known.contains(&name), "{name} is not in manifest.txt");
    }
}

#[test]
fn every_prefix_of_every_fixture_analyzes_and_rewrites_without_panic() {
    let files = fs::read_dir(dir())
        .unwrap()
        .chain(fs::read_dir(corpus_dir()).unwrap())
        .map(|f| f.unwrap().path())
        .filter(|p| p.is_file());
    for path in files {
        let body = fs::read(path).unwrap();
        for end in 0..=body.len() {
            let prefix = &body[..end];
            if let Verdict::Conflict(conflicts) = analyze(prefix) {
                for action in [RewriteAction::Strip, RewriteAction::StartRecording] {
                    let out = rewrite(prefix, &conflicts, &options(action)).unwrap();
                    assert_eq!(analyze(&out), Verdict::Clean);
                }
            }
        }
    }
}

fn corpus_dir() -> PathBuf {
    dir().join("corpus")
}

fn places(body: &[u8], offsets: impl Iterator<Item = usize>) -> Vec<String> {
    offsets
        .map(|at| {
            let (line, column) = line_column(body, at);
            format!("{line}:{column}")
        })
        .collect()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn the_public_pattern_corpus_gets_its_manifest_verdicts_and_bytes() {
    let manifest: Value =
        serde_json::from_slice(&fs::read(corpus_dir().join("manifest.json")).unwrap()).unwrap();
    let callback = manifest["recording_status_callback"].as_str().unwrap();
    assert_eq!(callback, CALLBACK);
    let docs = manifest["documents"].as_array().unwrap();
    assert!(docs.len() >= 25, "{}", docs.len());
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut listed = BTreeSet::new();
    let mut failures = Vec::new();
    for doc in docs {
        let file = doc["file"].as_str().unwrap();
        let body = fs::read(corpus_dir().join(file)).unwrap();
        let verdict = analyze(&body);
        let conflicts = verdict.conflicts();
        let conflict_at = places(&body, conflicts.iter().map(|c| c.span.start));
        let records = inspect(&body).unwrap().records;
        let kept = records
            .iter()
            .filter(|r| !conflicts.iter().any(|c| c.span == **r))
            .map(|r| r.start);
        let got = (
            verdict.name(),
            verdict.blocked().map(|b| b.path()),
            conflict_at,
            places(&body, kept),
        );
        let want = (
            doc["verdict"].as_str().unwrap(),
            doc["blocks"].as_str().map(str::to_owned),
            strings(&doc["conflicts"]),
            strings(&doc["kept_records"]),
        );
        if got != want {
            failures.push(format!("{file}: expected {want:?}, got {got:?}"));
        }
        listed.insert(file.to_owned());
        for (key, action) in [
            ("strip", RewriteAction::Strip),
            ("start_recording", RewriteAction::StartRecording),
        ] {
            let expected_file = doc[key].as_str().unwrap();
            listed.insert(expected_file.to_owned());
            let out = rewrite(&body, conflicts, &options(action)).unwrap();
            assert_eq!(analyze(&out), Verdict::Clean, "{file} after {key}");
            let golden = corpus_dir().join(expected_file);
            if update && expected_file != file {
                fs::write(&golden, &out).unwrap();
            }
            if fs::read(&golden).ok().as_deref() != Some(&out[..]) {
                failures.push(format!("{file}: {key} output differs from {expected_file}"));
            }
        }
    }
    for file in fs::read_dir(corpus_dir()).unwrap() {
        let name = file.unwrap().file_name().into_string().unwrap();
        let tool =
            matches!(name.as_str(), "manifest.json" | "README.md") || name.starts_with("generate_");
        if !tool && !listed.contains(&name) {
            failures.push(format!("{name} is not in manifest.json"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
