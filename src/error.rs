//! Exit codes, and the one function that picks the code for an error by looking at what it is, so the
//! documented codes cannot drift from what the binary does.

use crate::claims::ClaimPatternError;
use crate::pipeline::UnknownEventType;
use crate::recording::{RecordingError, ReplayError};
use crate::store::StoreError;
use crate::webcast::ConnectError;

/// The process exit codes documented in README.md and the man pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Success = 0,
    Failure = 1,
    Usage = 2,
    NotLive = 3,
    Refused = 4,
    Network = 5,
    Database = 6,
    NotFound = 7,
    /// A TikTok login failed or must be done again (consent refused, wrong state, a code or refresh
    /// token TikTok refused, no callback in time).
    Auth = 8,
    Interrupted = 130,
    Terminated = 143,
}

/// Marks an error as a usage error (exit 2) when clap could not see it.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Something the user named does not exist (a sale, a message, a buyer), or a sale already exists for
/// a message (exit 7).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct NotFoundError(pub String);

/// Ctrl-C ended a command that waits (exit 130).
#[derive(Debug, thiserror::Error)]
#[error("interrupted")]
pub struct Interrupted;

/// The error and its causes on one line, "what failed: why", each said once. Many errors already end
/// with their cause (thiserror's `{source}`, rusqlite's message, which is also the text of its SQLite
/// error code), and anyhow's `{:#}` would repeat it after them.
pub fn message(err: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in err.chain() {
        // rusqlite's error shows its message, or else this code's description: either way, said.
        if !text.is_empty() && cause.is::<rusqlite::ffi::Error>() {
            continue;
        }
        let part = cause.to_string();
        if part.is_empty() || text.ends_with(&part) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&part);
    }
    text
}

/// Picks the exit code for an error from the first typed error in its chain.
pub fn exit_for(err: &anyhow::Error) -> Exit {
    for cause in err.chain() {
        if let Some(e) = cause.downcast_ref::<ConnectError>() {
            return e.exit();
        }
        if let Some(e) = cause.downcast_ref::<StoreError>() {
            return store_exit(e);
        }
        if let Some(e) = cause.downcast_ref::<crate::oauth::OAuthError>() {
            return e.exit();
        }
        if let Some(e) = cause.downcast_ref::<crate::certs::CertError>() {
            return match e {
                crate::certs::CertError::BadName(_) | crate::certs::CertError::BadDays(_) => {
                    Exit::Usage
                }
                _ => Exit::Failure,
            };
        }
        if cause.is::<Interrupted>() {
            return Exit::Interrupted;
        }
        if cause.is::<NotFoundError>() {
            return Exit::NotFound;
        }
        if cause.is::<UsageError>()
            || cause.is::<UnknownEventType>()
            || cause.is::<ClaimPatternError>()
        {
            return Exit::Usage;
        }
        if cause.is::<RecordingError>() || cause.is::<ReplayError>() {
            return Exit::Failure;
        }
    }
    Exit::Failure
}

/// The exit code of a database error.
pub fn store_exit(err: &StoreError) -> Exit {
    match err {
        StoreError::Create { .. }
        | StoreError::Access { .. }
        | StoreError::Missing { .. }
        | StoreError::Open { .. }
        | StoreError::TooNew { .. }
        | StoreError::NotTiklive { .. } => Exit::Database,
        StoreError::Sqlite(_) | StoreError::WriterGone(_) => Exit::Failure,
    }
}

/// True when an I/O error means our reader went away (`| head -1`): a normal end, not a failure.
pub fn is_closed_pipe(err: &std::io::Error) -> bool {
    matches!(
        err.kind(),
        std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cause_already_in_the_text_is_said_once() {
        let sqlite = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_NOTADB),
            Some("file is not a database".into()),
        );
        let err = anyhow::Error::from(StoreError::Open {
            path: "notes.db".into(),
            source: sqlite,
        });
        assert_eq!(
            message(&err),
            "cannot open the database notes.db: file is not a database"
        );
        // Without a message of its own, rusqlite shows the code's description, also once.
        let bare = StoreError::Sqlite(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL),
            None,
        ));
        let text = message(&anyhow::Error::from(bare));
        assert_eq!(text.matches("full").count(), 1, "{text}");
        // Context that does not repeat its cause keeps it.
        let io = std::io::Error::other("disk on fire");
        let err = anyhow::Error::from(io).context("cannot write out.csv");
        assert_eq!(message(&err), "cannot write out.csv: disk on fire");
    }
}
