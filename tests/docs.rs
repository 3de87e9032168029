//! Shell completions (completions/) and man pages (man/) are generated from the clap definition in
//! src/cli.rs and committed. This test regenerates them and fails when the committed copies are stale.
//! To refresh them after changing the CLI: `TIKLIVE_UPDATE_DOCS=1 cargo test --test docs`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clap::CommandFactory;
use clap_complete::Shell;
use tiklive::cli::Cli;

/// Every generated file, by path relative to the repository root.
fn generated() -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    for (shell, name) in [
        (Shell::Bash, "tiklive.bash"),
        (Shell::Zsh, "_tiklive"),
        (Shell::Fish, "tiklive.fish"),
        (Shell::PowerShell, "_tiklive.ps1"),
        (Shell::Elvish, "tiklive.elv"),
    ] {
        let mut out = Vec::new();
        clap_complete::generate(shell, &mut Cli::command(), "tiklive", &mut out);
        files.insert(Path::new("completions").join(name), out);
    }
    let dir = tempfile::tempdir().unwrap();
    clap_mangen::generate_to(Cli::command(), dir.path()).unwrap();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let entry = entry.unwrap();
        files.insert(
            Path::new("man").join(entry.file_name()),
            std::fs::read(entry.path()).unwrap(),
        );
    }
    files
}

#[test]
fn committed_completions_and_man_pages_are_current() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let files = generated();
    assert!(files.contains_key(Path::new("man/tiklive.1")));
    assert!(files.contains_key(Path::new("man/tiklive-watch.1")));
    assert!(files.contains_key(Path::new("man/tiklive-replay.1")));
    if std::env::var_os("TIKLIVE_UPDATE_DOCS").is_some() {
        for dir in ["completions", "man"] {
            let _ = std::fs::remove_dir_all(root.join(dir));
            std::fs::create_dir_all(root.join(dir)).unwrap();
        }
        for (path, bytes) in &files {
            std::fs::write(root.join(path), bytes).unwrap();
        }
        return;
    }
    let mut stale = Vec::new();
    for (path, bytes) in &files {
        if std::fs::read(root.join(path)).ok().as_ref() != Some(bytes) {
            stale.push(path.display().to_string());
        }
    }
    for dir in ["completions", "man"] {
        for entry in std::fs::read_dir(root.join(dir))
            .into_iter()
            .flatten()
            .flatten()
        {
            let path = Path::new(dir).join(entry.file_name());
            if !files.contains_key(&path) {
                stale.push(format!("{} (no longer generated)", path.display()));
            }
        }
    }
    assert!(
        stale.is_empty(),
        "stale generated docs: {stale:?}; run `TIKLIVE_UPDATE_DOCS=1 cargo test --test docs` and commit"
    );
}

#[test]
fn man_page_documents_the_schema_and_exit_codes() {
    let files = generated();
    let watch = String::from_utf8_lossy(&files[Path::new("man/tiklive-watch.1")]).into_owned();
    for needle in [
        "total_like_count",
        "claim",
        "Exit codes",
        "TIKLIVE_SIGN_URL",
    ] {
        assert!(watch.contains(needle), "man page lacks {needle}");
    }
}
