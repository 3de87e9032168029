//! The command line as a script sees it: usage errors exit 2 with a clear message, `replay` reads
//! stdin, and a damaged recording prints everything before the damage and then exits 1.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

fn tiklive(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tiklive"));
    cmd.args(args)
        .current_dir(dir.path())
        .env("XDG_DATA_HOME", dir.path())
        .env_remove("TIKLIVE_DB")
        .env_remove("TIKLIVE_FILTER")
        .env_remove("TIKLIVE_CLAIM_PATTERN")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    if let Some(bytes) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        pipe.write_all(bytes).unwrap();
    }
    child.wait_with_output().unwrap()
}

fn capture_frame() -> Vec<u8> {
    std::fs::read(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/captures/pushframe-like.bin"),
    )
    .unwrap()
}

fn record(frames: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for frame in frames {
        out.extend_from_slice(&(frame.len() as u32).to_be_bytes());
        out.extend_from_slice(frame);
    }
    out
}

#[test]
fn usage_errors_exit_2_with_a_message() {
    for (args, needle) in [
        (vec!["watch"], "required"),
        (vec!["watch", "@x", "--bogus"], "--bogus"),
        (vec!["replay", "-", "--filter", "chat,gifts"], "\"gifts\""),
        (
            vec!["replay", "-", "--claim-pattern", "(unclosed"],
            "--claim-pattern",
        ),
        (
            vec!["watch", "@x", "--retry-delay", "5 parsecs"],
            "duration",
        ),
        (vec!["watch", "@x", "--max-retries", "many"], "max-retries"),
    ] {
        let out = tiklive(&args, Some(b""));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}

#[test]
fn help_and_version_exit_0() {
    let out = tiklive(&["--version"], None);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("tiklive "));
    let out = tiklive(&["watch", "--help"], None);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("Exit codes"));
}

#[test]
fn replay_reads_stdin() {
    let frame = capture_frame();
    let out = tiklive(&["replay", "-", "-q"], Some(&record(&[&frame])));
    assert_eq!(out.status.code(), Some(0));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 1);
    assert!(
        stdout.contains(r#""like_count":15,"total_like_count":14470"#),
        "{stdout}"
    );
}

#[test]
fn truncated_recording_prints_what_is_intact_then_exits_1() {
    let frame = capture_frame();
    let mut bytes = record(&[&frame]);
    bytes.extend_from_slice(&100u32.to_be_bytes());
    bytes.extend_from_slice(&[1, 2, 3]); // a record cut short
    let out = tiklive(&["replay", "-", "-q"], Some(&bytes));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("truncated"), "{stderr}");
    assert!(
        stderr.contains(&format!("byte {}", frame.len() + 4)),
        "{stderr}"
    );
    assert_eq!(String::from_utf8(out.stdout).unwrap().lines().count(), 1);
}

#[test]
fn garbage_is_not_a_recording() {
    let out = tiklive(
        &["replay", "-", "-q"],
        Some(b"<html>not a recording</html>"),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("not a tiklive recording"), "{stderr}");
    assert!(!stderr.contains("panicked"));
}

#[test]
fn include_raw_and_filters_apply_to_replay() {
    let frame = capture_frame();
    let rec = record(&[&frame]);
    let out = tiklive(&["replay", "-", "-q", "--include-raw"], Some(&rec));
    let line: serde_json::Value =
        serde_json::from_str(String::from_utf8(out.stdout).unwrap().trim()).unwrap();
    assert_eq!(line["raw"]["count"], 15);
    assert_eq!(line["raw"]["user"]["display_id"], "hulajnoga.czek5");
    let out = tiklive(&["replay", "-", "-q", "--filter", "chat"], Some(&rec));
    assert_eq!(out.status.code(), Some(0));
    assert!(out.stdout.is_empty());
}

#[test]
fn a_closed_stderr_is_no_reason_to_panic() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tiklive"))
        .args(["replay", "missing.rec", "--db", "t.db"])
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The reader goes away before tiklive logs or reports anything.
    drop(child.stderr.take());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(1), "an error exit, not a panic (101)");
}
