//! Throughput of the core on bodies the filter sees: the seed conflict, a 256 KiB document
//! without `<Record` (fast path), a 256 KiB document with a conflict (full parse + strip), and
//! the sniff that lets a `text/html` page pass from its first bytes.
//! Run: `cargo bench -p twiml --bench core`. Plain std timing, so it builds anywhere.

use std::hint::black_box;
use std::time::{Duration, Instant};

use twiml::{analyze, rewrite, sniff, RewriteOptions, Verdict};

const SEED: &[u8] = include_bytes!("../fixtures/seed_001.xml");

/// A document of about `size` bytes: many `<Say>`s, optionally a `<Record>` and a stream.
fn big(size: usize, record: bool) -> Vec<u8> {
    let mut s = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response>\n");
    if record {
        s.push_str("  <Record maxLength=\"600\" playBeep=\"false\"/>\n");
    }
    while s.len() < size {
        s.push_str("  <Say voice=\"Polly.Joanna\">Hello &amp; welcome, caller number 42.</Say>\n");
    }
    s.push_str("  <Connect><Stream url=\"wss://m.example/ws\"/></Connect>\n</Response>\n");
    s.into_bytes()
}

fn measure(name: &str, body: &[u8], f: impl Fn(&[u8])) {
    // Warm up, then run for about half a second.
    for _ in 0..10 {
        f(body);
    }
    let mut runs = 0u32;
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(500) {
        f(body);
        runs += 1;
    }
    let per = start.elapsed() / runs;
    let mib_s = body.len() as f64 / per.as_secs_f64() / (1024.0 * 1024.0);
    println!(
        "{name:<40} {:>8} bytes {:>12?}/op {:>10.1} MiB/s",
        body.len(),
        per,
        mib_s
    );
}

fn main() {
    let analyze_only = |b: &[u8]| {
        black_box(analyze(black_box(b)));
    };
    let analyze_and_strip = |b: &[u8]| {
        if let Verdict::Conflict(c) = analyze(black_box(b)) {
            black_box(rewrite(b, &c, &RewriteOptions::default()).ok());
        }
    };
    measure("analyze seed (conflict)", SEED, analyze_only);
    measure("analyze+strip seed", SEED, analyze_and_strip);
    let clean = big(256 * 1024, false);
    measure(
        "analyze 256 KiB without <Record (fast)",
        &clean,
        analyze_only,
    );
    let conflict = big(256 * 1024, true);
    measure(
        "analyze 256 KiB conflict (full parse)",
        &conflict,
        analyze_only,
    );
    measure(
        "analyze+strip 256 KiB conflict",
        &conflict,
        analyze_and_strip,
    );
    let sniff_only = |b: &[u8]| {
        black_box(sniff(black_box(b), false));
    };
    let page = b"<!DOCTYPE html>\n<!-- a comment -->\n<html lang=\"en\"><head>".repeat(64);
    measure("sniff an HTML page's first bytes", &page, sniff_only);
    measure("sniff the seed", SEED, sniff_only);
}
