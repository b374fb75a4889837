//! The default engine on real speech: espeak-ng voices sent through 8 kHz mu-law, transcribed by
//! Whisper tiny.en on CTranslate2, judged by word error rate and by where segments fall in time.

use crate::common;

use common::{model_dir, phone_speech, secs, silence, write_wav};
use postcall::wer::wer;
use postcall::whisper::WhisperEngine;
use postcall::{
    EngineError, Segment, TranscribeRequest, Transcriber, TranscriptionConfig, WhisperConfig,
};
use std::sync::OnceLock;

// Synthetic voices are harder for Whisper than people, and tiny.en is the smallest model, but a
// working chain (decode, resample, windows, timestamps) keeps most words: measured WER on these
// sentences is 0 to 0.1. A broken link (no resampling, wrong rate, lost window) gives 0.6 or
// more, so 0.25 separates the two with room for the model's own slips.
const WER_BOUND: f64 = 0.25;

fn engine() -> &'static WhisperEngine {
    static ENGINE: OnceLock<WhisperEngine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        WhisperEngine::load(&WhisperConfig {
            model_dir: model_dir(),
            ..Default::default()
        })
        .expect("load the Whisper model")
    })
}

fn text_of(segments: &[Segment]) -> String {
    segments
        .iter()
        .map(|s| s.text.as_str())
        .collect::<Vec<_>>()
        .join(" ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transcribes_a_phone_call_within_the_wer_bound() {
    let said = "Hello, I would like to book an appointment for tomorrow morning. \
                Please call me back on my mobile phone.";
    let mut audio = silence(0.5);
    audio.extend(phone_speech(said));
    audio.extend(silence(0.5));
    let dir = tempfile::tempdir().unwrap();
    let path = write_wav(dir.path(), "call.wav", &[audio.clone()]);

    let t = engine()
        .transcribe(&TranscribeRequest {
            call_sid: "CA00000000000000000000000000000001".into(),
            recording: path,
        })
        .await
        .expect("transcribe");
    assert_eq!(t.engine, "whisper");
    assert_eq!(t.model, model_dir().file_name().unwrap().to_string_lossy());
    assert!(t.segments.iter().all(|s| s.speaker == "caller"));
    let rate = wer(said, &t.text);
    eprintln!("heard {:?}, WER {rate:.3}", t.text);
    assert!(rate < WER_BOUND, "WER {rate:.3} for {:?}", t.text);
    let first = &t.segments[0];
    let last = t.segments.last().unwrap();
    assert!(first.start >= 0.0 && first.start < 1.5, "{first:?}");
    assert!(
        last.end <= secs(&audio) + 0.01 && last.end > secs(&audio) - 2.0,
        "{last:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_call_transcribes_whole_across_windows() {
    let sentences = [
        "Good morning, this is the first part of a long call.",
        "My car broke down on the highway near the river.",
        "I need a tow truck as soon as possible.",
        "The car is a blue station wagon.",
        "You can reach me at this number all day.",
        "The engine stopped after a loud noise.",
        "I am waiting at the gas station.",
        "My name is John and I live in Boston.",
        "Please send someone in the next hour.",
        "Thank you very much for your help today.",
    ];
    // A sentence every 7 s: 71 s in all, with pauses of two seconds and more between them.
    let mut audio = Vec::new();
    let mut starts = Vec::new();
    for s in sentences {
        audio.extend(silence(1.0));
        starts.push(secs(&audio));
        let speech = phone_speech(s);
        let pad = 6.0 - secs(&speech);
        assert!(pad > 2.0, "sentence too long for the layout: {s}");
        audio.extend(speech);
        audio.extend(silence(pad));
    }
    // Over 30 s of speech: Whisper sees it in more than one window.
    let at_16k = media::audio::resample(&audio, common::RATE, postcall::audio::WHISPER_RATE);
    let regions = postcall::audio::speech_regions(&at_16k, postcall::audio::WHISPER_RATE);
    assert_eq!(regions.len(), sentences.len());
    let windows = postcall::audio::pack(&regions, &at_16k, postcall::audio::WHISPER_RATE, 30.0);
    assert!(windows.len() >= 2, "{} windows", windows.len());
    assert!(secs(&audio) > 60.0);
    let pcm = media::wav::Pcm {
        sample_rate: common::RATE,
        channels: vec![audio],
    };
    let e = engine().clone();
    let t = tokio::task::spawn_blocking(move || e.transcribe_pcm(&pcm))
        .await
        .unwrap()
        .expect("transcribe");
    eprintln!("{:#?}", t.segments);

    let all = sentences.join(" ");
    let rate = wer(&all, &text_of(&t.segments));
    assert!(rate < WER_BOUND, "WER {rate:.3}");
    for pair in t.segments.windows(2) {
        assert!(
            pair[0].start <= pair[1].start,
            "segments out of order: {pair:?}"
        );
    }
    // Every sentence is found, at its own time: the segment that best matches it starts within
    // a second of where it was placed.
    for (sentence, at) in sentences.iter().zip(&starts) {
        let best = t
            .segments
            .iter()
            .min_by(|a, b| wer(sentence, &a.text).total_cmp(&wer(sentence, &b.text)))
            .unwrap();
        assert!(
            wer(sentence, &best.text) < 0.5,
            "{sentence:?} not heard; best {best:?}"
        );
        assert!(
            (best.start - at).abs() < 1.0,
            "{sentence:?} placed at {at:.2} s, heard at {:.2} s",
            best.start
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_channels_give_caller_and_agent_in_time_order() {
    let agent_1 = "Thank you for calling, how can I help you?";
    let caller_1 = "I want to cancel my order please.";
    let agent_2 = "Of course, I have cancelled it for you.";
    let a1 = phone_speech(agent_1);
    let c1 = phone_speech(caller_1);
    let a2 = phone_speech(agent_2);
    // agent 0.5 s, caller after the agent, agent again after the caller.
    let t_a1 = 0.5;
    let t_c1 = t_a1 + secs(&a1) + 1.0;
    let t_a2 = t_c1 + secs(&c1) + 1.0;
    let total = t_a2 + secs(&a2) + 0.5;
    let place = |track: &mut Vec<f32>, at: f64, speech: &[f32]| {
        let i = (at * f64::from(common::RATE)) as usize;
        track[i..i + speech.len()].copy_from_slice(speech);
    };
    let mut left = silence(total);
    let mut right = silence(total);
    place(&mut right, t_a1, &a1);
    place(&mut left, t_c1, &c1);
    place(&mut right, t_a2, &a2);
    let dir = tempfile::tempdir().unwrap();
    let path = write_wav(dir.path(), "stereo.wav", &[left, right]);

    let t = engine()
        .transcribe(&TranscribeRequest {
            call_sid: "CA00000000000000000000000000000002".into(),
            recording: path,
        })
        .await
        .expect("transcribe");
    eprintln!("{:#?}", t.segments);
    let speakers: Vec<&str> = t.segments.iter().map(|s| s.speaker.as_str()).collect();
    let mut turns = speakers.clone();
    turns.dedup();
    assert_eq!(turns, ["agent", "caller", "agent"], "{:?}", t.segments);
    let caller: Vec<Segment> = t
        .segments
        .iter()
        .filter(|s| s.speaker == "caller")
        .cloned()
        .collect();
    let agent: Vec<Segment> = t
        .segments
        .iter()
        .filter(|s| s.speaker == "agent")
        .cloned()
        .collect();
    assert!(wer(caller_1, &text_of(&caller)) < WER_BOUND, "{caller:?}");
    assert!(
        wer(&format!("{agent_1} {agent_2}"), &text_of(&agent)) < WER_BOUND,
        "{agent:?}"
    );
    assert!(
        (caller[0].start - t_c1).abs() < 1.5,
        "caller at {t_c1:.2}: {caller:?}"
    );
    assert!(t.text.starts_with("agent: "), "{}", t.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silence_and_bad_files_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let quiet = write_wav(dir.path(), "quiet.wav", &[silence(5.0), silence(5.0)]);
    let err = engine()
        .transcribe(&TranscribeRequest {
            call_sid: "CA3".into(),
            recording: quiet,
        })
        .await
        .unwrap_err();
    assert_eq!(
        err,
        EngineError::Permanent(
            "no speech recognised in 5.0 s of audio (both channels are silent or unintelligible)"
                .into()
        )
    );
    let junk = dir.path().join("junk.wav");
    std::fs::write(&junk, b"this is not audio").unwrap();
    let err = engine()
        .transcribe(&TranscribeRequest {
            call_sid: "CA4".into(),
            recording: junk,
        })
        .await
        .unwrap_err();
    assert!(
        matches!(&err, EngineError::Permanent(m) if m.starts_with("recording: not a readable WAV file")),
        "{err}"
    );
    let missing = dir.path().join("missing.wav");
    let err = engine()
        .transcribe(&TranscribeRequest {
            call_sid: "CA5".into(),
            recording: missing.clone(),
        })
        .await
        .unwrap_err();
    assert!(
        matches!(&err, EngineError::Permanent(m) if m.starts_with(&format!("cannot read recording {}", missing.display()))),
        "{err}"
    );
}

/// A real voice (public test audio, `tests/data/README.md`) through the 8 kHz mu-law line
/// Twilio carries: held out from tuning, so it says how the engine does on people.
#[test]
fn a_real_voice_through_the_phone_line_is_heard_within_five_percent() {
    const SAID: &str = "And so, my fellow Americans, ask not what your country can do for you, \
                        ask what you can do for your country.";
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/jfk-8k-mulaw.wav");
    let t = engine().transcribe_file(&path).expect("transcribe");
    let rate = wer(SAID, &t.text);
    eprintln!("heard {:?}, WER {rate:.3}", t.text);
    assert!(rate <= 0.05, "WER {rate:.3} for {:?}", t.text);
    assert!(t.segments[0].start < 1.0, "{:?}", t.segments);
}

/// The CTranslate2 library this process loaded is the version `requirements.txt` pins (the one
/// pin: `make ct2lib` links whatever that installed, and ct2rs 0.10.3's headers are 4.8.4's).
/// Another version may differ in class layout and crash or misbehave instead of failing to
/// link. The version is read from the file actually mapped (`/proc/self/maps`), e.g.
/// `libctranslate2-<hash>.so.4.8.4` from the wheel.
#[test]
fn the_loaded_ctranslate2_is_the_pinned_version() {
    let pin = include_str!("../../../requirements.txt")
        .lines()
        .find_map(|l| l.trim().strip_prefix("ctranslate2=="))
        .expect("requirements.txt pins ctranslate2==<version>")
        .trim();
    engine();
    let maps = std::fs::read_to_string("/proc/self/maps").expect("/proc/self/maps");
    let mut loaded: Vec<&str> = maps
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .filter(|p| {
            std::path::Path::new(p)
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("libctranslate2"))
        })
        .collect();
    loaded.dedup();
    assert_eq!(
        loaded.len(),
        1,
        "one CTranslate2 library mapped: {loaded:?}"
    );
    let version = loaded[0]
        .rsplit_once(".so.")
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("no version in the file name {}", loaded[0]));
    assert_eq!(
        version, pin,
        "{} is CTranslate2 {version}; requirements.txt pins {pin} (run `make ct2lib`)",
        loaded[0]
    );
}

#[test]
fn from_config_loads_whisper_by_default_and_refuses_bad_settings() {
    let cfg = TranscriptionConfig {
        whisper: WhisperConfig {
            model_dir: model_dir(),
            ..Default::default()
        },
        ..Default::default()
    };
    let engines =
        postcall::Engines::from_config(&Default::default(), &cfg, &Default::default()).unwrap();
    assert!(engines.transcriber.is_some());

    let err = WhisperEngine::load(&WhisperConfig {
        model_dir: "/nonexistent/model".into(),
        ..Default::default()
    })
    .err()
    .unwrap();
    assert_eq!(
        err,
        EngineError::Config(
            "transcription.whisper.model_dir: /nonexistent/model has no model.bin (a CTranslate2 \
             Whisper folder is expected; `make setup` prepares the default one)"
                .into()
        )
    );
    let err = WhisperEngine::load(&WhisperConfig {
        model_dir: model_dir(),
        compute_type: "int4".into(),
        ..Default::default()
    })
    .err()
    .unwrap();
    assert!(
        matches!(err, EngineError::Config(m) if m.starts_with("transcription.whisper.compute_type: unknown \"int4\""))
    );
    let err = WhisperEngine::load(&WhisperConfig {
        model_dir: model_dir(),
        language: Some("he".into()),
        ..Default::default()
    })
    .err()
    .unwrap();
    assert!(
        matches!(err, EngineError::Config(m) if m.starts_with("transcription.whisper.language: \"he\" needs a multilingual model"))
    );
}

/// Set in the child process of `a_four_hour_call_transcribes_in_bounded_memory`: the folder
/// holding its recordings.
const LONG_CALL_CHILD: &str = "POSTCALL_LONG_CALL_CHILD";
// Its full name in the test binary: suites are modules of `tests/integration/main.rs`.
const LONG_CALL_TEST: &str = "whisper::a_four_hour_call_transcribes_in_bounded_memory";
const CALLER_SAYS: &str = "I would like to change my delivery address please.";
const AGENT_SAYS: &str = "Your new address has been saved, thank you for waiting.";
const CALLER_AT: f64 = 5400.0;
const AGENT_AT: f64 = 12_000.0;
const FOUR_HOURS: u64 = 4 * 3600;

/// The process's peak resident memory so far (`VmHWM`), in kB.
fn peak_rss_kb() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/self/status")
}

/// The child: transcribe a short call first, so the model and one window's working memory are
/// already in the peak, then the four-hour one; report both peaks and the transcript.
fn long_call_child(dir: &std::path::Path) {
    let e = engine();
    e.transcribe_file(&dir.join("short.wav"))
        .expect("short call");
    let before = peak_rss_kb();
    let t = e
        .transcribe_file(&dir.join("four_hours.wav"))
        .expect("four-hour call");
    let after = peak_rss_kb();
    println!(
        "long_call {}",
        serde_json::json!({"before_kb": before, "after_kb": after, "segments": t.segments})
    );
}

#[test]
fn a_four_hour_call_transcribes_in_bounded_memory() {
    if let Some(dir) = std::env::var_os(LONG_CALL_CHILD) {
        return long_call_child(std::path::Path::new(&dir));
    }
    let dir = tempfile::tempdir().unwrap();
    let caller = phone_speech(CALLER_SAYS);
    let agent = phone_speech(AGENT_SAYS);
    let mut short_left = silence(0.5);
    short_left.extend(&caller);
    short_left.extend(silence(1.0 + secs(&agent)));
    let mut short_right = silence(1.0 + secs(&caller));
    short_right.extend(&agent);
    short_right.extend(silence(0.5));
    write_wav(dir.path(), "short.wav", &[short_left, short_right]);
    // 460 MB on disk: two channels of 8 kHz 16-bit audio, silent but for one sentence each.
    common::write_long_wav(
        dir.path(),
        "four_hours.wav",
        2,
        FOUR_HOURS * u64::from(common::RATE),
        &[(0, CALLER_AT, &caller), (1, AGENT_AT, &agent)],
    );
    // A process of its own, so its peak memory is this transcription's alone.
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", LONG_CALL_TEST, "--nocapture", "--test-threads=1"])
        .env(LONG_CALL_CHILD, dir.path())
        .output()
        .expect("run the child test process");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "child failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = stdout
        .lines()
        // libtest prints the child's line after its own "test ... " prefix.
        .find_map(|l| l.split_once("long_call ").map(|(_, json)| json))
        .map(|j| serde_json::from_str(j).unwrap())
        .unwrap_or_else(|| panic!("no report from the child: {stdout}"));
    let (before, after) = (
        report["before_kb"].as_u64().unwrap(),
        report["after_kb"].as_u64().unwrap(),
    );
    // The stated bound: the samples windowing may hold (docs/postcall.md), as f32. Reading the
    // whole file instead would add at least its 460 MB, and its samples as f32 twice that.
    let bound_kb = (postcall::windowing::max_held(2, common::RATE) * 4 / 1024) as u64;
    eprintln!("peak RSS {before} kB after a short call, {after} kB after four hours (bound: +{bound_kb} kB)");
    assert!(
        after - before <= bound_kb,
        "four hours raised the peak by {} kB, more than the {bound_kb} kB bound",
        after - before
    );
    let segments: Vec<Segment> = serde_json::from_value(report["segments"].clone()).unwrap();
    eprintln!("{segments:#?}");
    for (speaker, said, at) in [
        ("caller", CALLER_SAYS, CALLER_AT),
        ("agent", AGENT_SAYS, AGENT_AT),
    ] {
        let mine: Vec<Segment> = segments
            .iter()
            .filter(|s| s.speaker == speaker)
            .cloned()
            .collect();
        assert!(
            wer(said, &text_of(&mine)) < WER_BOUND,
            "{speaker}: {mine:?}"
        );
        assert!(
            (mine[0].start - at).abs() < 1.0,
            "{speaker} at {at}: {mine:?}"
        );
    }
}
