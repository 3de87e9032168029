//! What every benchmark needs: where cached bench data lives, number knobs from the environment, and
//! numbers printed the way README quotes them.

use std::path::{Path, PathBuf};
use std::str::FromStr;

/// `<target>/bench-data`, beside the profile directory of the `tiklive` binary under test, so that
/// generated inputs survive between runs and `cargo clean` removes them.
pub fn data_dir() -> PathBuf {
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_tiklive"));
    // <target>/<profile>/tiklive → <target>/bench-data
    exe.parent()
        .and_then(Path::parent)
        .map(|t| t.join("bench-data"))
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-data"))
}

/// A number from the environment (`TIKLIVE_BENCH_RUNS=5`); `None` when unset or not a number.
pub fn env_number<T: FromStr>(name: &str) -> Option<T> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// `1234567` → `1,234,567`.
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}
