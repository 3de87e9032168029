//! Test support shared by the integration tests: loopback mocks of TikTok and the signing service
//! (`mock`) and of TikTok's Login Kit (`oauth`), webcast messages to push through them (`messages`),
//! and helpers that run the real `tiklive` binary in a temp dir with a clean environment and a hard
//! time limit.
// Each test binary uses only part of this module.
#![allow(dead_code, unused_imports)]

pub mod api;
pub mod browser;
pub mod http;
pub mod messages;
pub mod mock;
pub mod oauth;

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub use messages::*;
pub use mock::*;

/// No run of the binary may take longer than this; a hung child is killed and the test fails.
pub const RUN_LIMIT: Duration = Duration::from_secs(30);

/// Flags that make reconnects and heartbeats fast enough for tests; `watch` leaves out those a test
/// sets itself (clap refuses a repeated flag).
pub const FAST: &[(&str, &str)] = &[
    ("--retry-delay", "100ms"),
    ("--max-retries", "3"),
    ("--heartbeat-interval", "200ms"),
    ("--dead-after", "5s"),
    ("--http-timeout", "5s"),
];

/// `tiklive` with no inherited `TIKLIVE_*` variable or proxy, run in `dir` (so no `.env` is loaded),
/// stdin from /dev/null, storing in `dir/data/tiklive/tiklive.db` (see [`default_db`]).
pub fn tiklive(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tiklive"));
    for (name, _) in std::env::vars_os() {
        let upper = name.to_string_lossy().to_ascii_uppercase();
        if upper.starts_with("TIKLIVE_") || upper.ends_with("_PROXY") || upper == "RUST_LOG" {
            cmd.env_remove(&name);
        }
    }
    // The default database lands in the test's own directory: $XDG_DATA_HOME/tiklive/tiklive.db.
    cmd.env("NO_PROXY", "*")
        .env("XDG_DATA_HOME", dir.join("data"))
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// Where [`tiklive`] stores by default.
pub fn default_db(dir: &Path) -> std::path::PathBuf {
    dir.join("data").join("tiklive").join("tiklive.db")
}

/// `tiklive watch @user` pointed at the mock, with the fast flags and then `extra`.
pub fn watch(mock: &Mock, dir: &Path, user: &str, extra: &[&str]) -> Command {
    let mut cmd = tiklive(dir);
    cmd.env("TIKLIVE_WEB_URL", &mock.web_url)
        .env("TIKLIVE_WEBCAST_URL", &mock.webcast_url)
        .env("TIKLIVE_SIGN_URL", &mock.sign_url)
        .arg("watch")
        .arg(user);
    for (flag, value) in FAST {
        if !extra.contains(flag) {
            cmd.args([flag, value]);
        }
    }
    cmd.args(extra);
    cmd
}

/// What a finished run printed.
#[derive(Debug)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// Every stdout line parsed as JSON; a line that is not JSON fails the test.
    pub fn events(&self) -> Vec<serde_json::Value> {
        self.stdout
            .lines()
            .map(|line| {
                serde_json::from_str(line)
                    .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {line}\n{self}"))
            })
            .collect()
    }
}

impl std::fmt::Display for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit: {}\n--- stdout ---\n{}--- stderr ---\n{}",
            self.status, self.stdout, self.stderr
        )
    }
}

/// Spawns `cmd` and collects its output; kills it and fails the test after `RUN_LIMIT`.
pub fn run(mut cmd: Command) -> Output {
    let child = cmd.spawn().expect("spawn tiklive");
    finish(child)
}

/// Waits for a spawned child (stdout and stderr piped, not yet read) with the same time limit.
pub fn finish(mut child: Child) -> Output {
    let pipe = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut text);
            }
            String::from_utf8_lossy(&text).into_owned()
        })
    };
    let stdout = pipe(child.stdout.take().map(|s| Box::new(s) as _));
    let stderr = pipe(child.stderr.take().map(|s| Box::new(s) as _));
    let status = wait_limited(&mut child);
    let output = Output {
        status: status.unwrap_or_else(|| {
            let _ = child.kill();
            child.wait().expect("wait for the killed child")
        }),
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    };
    assert!(
        status.is_some(),
        "tiklive did not finish within {RUN_LIMIT:?} and was killed\n{output}"
    );
    output
}

/// The exit status, or `None` when the child is still running after `RUN_LIMIT`.
fn wait_limited(child: &mut Child) -> Option<ExitStatus> {
    let deadline = Instant::now() + RUN_LIMIT;
    let mut pause = Duration::from_millis(5);
    loop {
        if let Some(status) = child.try_wait().expect("poll the child") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// Reads the first stdout line of a spawned child, then closes the pipe as `| head -1` does. Kills
/// the child and fails the test when no line comes within `RUN_LIMIT`.
pub fn first_line_then_close(child: &mut Child) -> String {
    let stdout = child.stdout.take().expect("stdout is piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let read = std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line);
        // The reader is dropped here: the pipe is closed before the test goes on.
        let _ = tx.send(read.map(|_| line));
    });
    match rx.recv_timeout(RUN_LIMIT) {
        Ok(Ok(line)) => line,
        Ok(Err(e)) => panic!("cannot read tiklive's stdout: {e}"),
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("tiklive printed no line within {RUN_LIMIT:?}");
        }
    }
}
