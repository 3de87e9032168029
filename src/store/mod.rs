//! The local SQLite database: every event of every live a seller followed or replayed, the buyers
//! behind them, their claims, the sales made from those claims and the cursors of incremental exports.
//!
//! One process writes through one [`StoreWriter`] (a dedicated thread, batched transactions); readers
//! such as the `sales` and `export` commands open a [`Store`]. Both open the file the same way: it is
//! created private (0600, since the same file will hold OAuth tokens) before SQLite touches it, put in
//! WAL mode so readers never block the writer, and migrated forward to [`SUPPORTED_VERSION`]. A
//! database written by a newer tiklive is refused without being modified.

pub mod history;
mod queue;
pub(crate) mod raw;
mod row;
mod schema;
pub(crate) mod spans;
mod writer;

#[cfg(test)]
mod test_support;

use std::fs::{self, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

pub use schema::{MIGRATIONS, SUPPORTED_VERSION};
pub use writer::{AutoSale, PreparedEvent, SEND_CHUNK, StoreWriter, WriterConfig, WriterStats};

/// How long a connection waits for another one's write lock before it gives up with `SQLITE_BUSY`.
pub const DEFAULT_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The database's row id of a live (a row of `lives`), returned by [`StoreWriter::begin_live`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LiveId(i64);

impl LiveId {
    /// The value of `lives.id`.
    pub fn get(self) -> i64 {
        self.0
    }
}

/// How the events of a live reached the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LiveSource {
    /// Followed live with `tiklive watch`.
    Watch,
    /// Read back from a recording with `tiklive replay`.
    Replay,
}

impl LiveSource {
    /// The value of `lives.source`.
    pub fn as_str(self) -> &'static str {
        match self {
            LiveSource::Watch => "watch",
            LiveSource::Replay => "replay",
        }
    }
}

/// A new row of `lives`: one connection to a room (reconnects included), or one replay of a recording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewLive {
    /// The host's `@unique_id`, without the `@`.
    pub host: String,
    /// 0 when not known yet; the first connection line that carries a room id fills it in.
    pub room_id: u64,
    pub title: Option<String>,
    pub source: LiveSource,
    /// Unix milliseconds.
    pub started_ms: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create the database {}: {source}", path.display())]
    Create {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The file (or what is at its path) exists but cannot be opened for writing.
    #[error("cannot open the database {}: {source}", path.display())]
    Access {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// `--db` names no database for a command that only reads or edits one (see
    /// [`Store::open_existing`]).
    #[error("cannot open the database {}: {why}", path.display())]
    Missing { path: PathBuf, why: &'static str },
    #[error("cannot open the database {}: {source}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error(
        "the database {} has schema version {found}, newer than the {supported} this tiklive knows; it was left untouched: use a newer tiklive",
        path.display()
    )]
    TooNew {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
    #[error(
        "{} is a SQLite database of another application, not tiklive's; it was left untouched",
        path.display()
    )]
    NotTiklive { path: PathBuf },
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The writer thread has stopped; the error that stopped it is returned by [`StoreWriter::finish`].
    #[error("the database writer stopped: {0}")]
    WriterGone(String),
}

/// A connection for readers and commands that edit the database (sales, export cursors). Events are
/// written by [`StoreWriter`] only.
#[derive(Debug)]
pub struct Store {
    conn: Connection,
    schema_version: u32,
}

impl Store {
    /// Opens (creating it and its directory if needed) and migrates the database at `path`.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let conn = open_connection(path, DEFAULT_BUSY_TIMEOUT)?;
        Ok(Store {
            conn,
            schema_version: SUPPORTED_VERSION,
        })
    }

    /// As [`Store::open`], for a command that reads or edits what `watch` and `replay` stored
    /// (`export`, `sale`): a path that holds no database (a typo in `--db`, say) is an error, not a new,
    /// empty database that answers "nothing".
    pub fn open_existing(path: &Path) -> Result<Store, StoreError> {
        // SQLite takes an empty file for an empty database, and would write tiklive's tables into it.
        let why = match fs::metadata(path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Some("no such file; `tiklive watch` and `replay` create it")
            }
            Ok(meta) if meta.is_file() && meta.len() == 0 => {
                Some("an empty file, not a database; `tiklive watch` and `replay` create one")
            }
            _ => None,
        };
        match why {
            Some(why) => Err(StoreError::Missing {
                path: path.to_owned(),
                why,
            }),
            None => Store::open(path),
        }
    }

    /// A private database that lives as long as the `Store`: for tests and dry runs.
    pub fn open_in_memory() -> Result<Store, StoreError> {
        let path = Path::new(":memory:");
        let open_err = |source| StoreError::Open {
            path: path.to_owned(),
            source,
        };
        let mut conn = Connection::open_in_memory().map_err(open_err)?;
        configure(&conn).map_err(open_err)?;
        schema::migrate(&mut conn, path)?;
        Ok(Store {
            conn,
            schema_version: SUPPORTED_VERSION,
        })
    }

    /// The schema version of the database, which is the binary's after `open` migrated it.
    pub fn schema_version(&self) -> u32 {
        self.schema_version
    }

    pub fn conn(&self) -> &Connection {
        &self.conn
    }

    /// The `buyers.id` of `@handle`, `handle` or a numeric TikTok user id. A handle is matched against
    /// the latest one each buyer used; when TikTok gave it to several people over time, the one seen
    /// most recently wins. `None` when nobody matches.
    pub fn find_buyer(&self, spec: &str) -> Result<Option<i64>, StoreError> {
        use rusqlite::OptionalExtension;
        let spec = spec.trim();
        // TikTok handles are lower case; the index on unique_id then serves the lookup.
        let by_handle = |handle: &str| {
            self.conn
                .query_row(
                    "SELECT id FROM buyers WHERE unique_id = ?1 ORDER BY last_seen DESC LIMIT 1",
                    [handle.to_lowercase()],
                    |r| r.get::<_, i64>(0),
                )
                .optional()
        };
        if let Some(handle) = spec.strip_prefix('@') {
            return Ok(by_handle(handle)?);
        }
        if let Ok(id) = spec.parse::<u64>() {
            let found = self
                .conn
                .query_row("SELECT id FROM buyers WHERE id = ?1", [sql_id(id)], |r| {
                    r.get::<_, i64>(0)
                })
                .optional()?;
            if found.is_some() {
                return Ok(found);
            }
        }
        Ok(by_handle(spec)?)
    }

    /// For transactions (`Connection::transaction` needs `&mut`).
    pub fn conn_mut(&mut self) -> &mut Connection {
        &mut self.conn
    }
}

/// `$XDG_DATA_HOME/tiklive/tiklive.db`, else `$HOME/.local/share/tiklive/tiklive.db`; `None` when
/// neither variable is usable. `TIKLIVE_DB` / `--db` take precedence; the CLI applies them.
pub fn default_db_path() -> Option<PathBuf> {
    db_path_from(std::env::var_os("XDG_DATA_HOME"), std::env::var_os("HOME"))
}

fn db_path_from(
    xdg_data_home: Option<std::ffi::OsString>,
    home: Option<std::ffi::OsString>,
) -> Option<PathBuf> {
    // The XDG spec says a relative XDG_DATA_HOME is invalid and must be ignored.
    let data = xdg_data_home
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| {
            home.filter(|h| !h.is_empty())
                .map(|h| PathBuf::from(h).join(".local").join("share"))
        })?;
    Some(data.join("tiklive").join("tiklive.db"))
}

/// Opens a file database the way every connection of tiklive does; see the module comment.
fn open_connection(path: &Path, busy_timeout: Duration) -> Result<Connection, StoreError> {
    create_private_file(path)?;
    let open_err = |source| StoreError::Open {
        path: path.to_owned(),
        source,
    };
    // No SQLITE_OPEN_CREATE: the file exists (we made it), and no URI parsing of the path.
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let mut conn = Connection::open_with_flags(path, flags).map_err(open_err)?;
    conn.busy_timeout(busy_timeout).map_err(open_err)?;
    // Before anything that writes (WAL mode rewrites the header): a database we must refuse stays as
    // it was.
    schema::check_version(&conn, path)?;
    restrict_permissions(path)?;
    configure(&conn).map_err(open_err)?;
    schema::migrate(&mut conn, path)?;
    Ok(conn)
}

/// Per-connection settings. WAL lets readers run beside the writer; `synchronous = NORMAL` is safe
/// from corruption in WAL mode and may lose only the last transactions on a power cut, not on a crash.
fn configure(conn: &Connection) -> rusqlite::Result<()> {
    // Before the first write, so only a new database gets it: 16 KiB pages write a batch of events in
    // a quarter of the WAL frames (and system calls) of the default 4 KiB.
    conn.pragma_update(None, "page_size", 16_384)?;
    let mode: String =
        conn.pragma_update_and_check(None, "journal_mode", "wal", |row| row.get(0))?;
    if mode != "wal" && mode != "memory" {
        tracing::warn!(%mode, "the database cannot use WAL mode here; readers may block the writer");
    }
    conn.pragma_update(None, "foreign_keys", true)?;
    conn.pragma_update(None, "synchronous", "normal")?;
    Ok(())
}

/// Creates the database file (and its missing directories, 0700) as 0600 if it does not exist, so that
/// SQLite, which gives the -wal and -shm files the main file's mode, never creates a readable file.
fn create_private_file(path: &Path) -> Result<(), StoreError> {
    let create_err = |source| StoreError::Create {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        let mut builder = fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(dir).map_err(create_err)?;
    }
    let mut options = OpenOptions::new();
    options.read(true).write(true).create(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path).map_err(|source| {
        if fs::symlink_metadata(path).is_ok() {
            StoreError::Access {
                path: path.to_owned(),
                source,
            }
        } else {
            create_err(source)
        }
    })?;
    Ok(())
}

/// Takes group and other permissions away from the database and its -wal/-shm files, for a database
/// created before, or by something else than, this version of tiklive.
fn restrict_permissions(path: &Path) -> Result<(), StoreError> {
    #[cfg(unix)]
    for file in sidecar_paths(path) {
        use std::os::unix::fs::PermissionsExt;
        let meta = match fs::metadata(&file) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(source) => return Err(StoreError::Access { path: file, source }),
        };
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            fs::set_permissions(&file, fs::Permissions::from_mode(mode & 0o700))
                .map_err(|source| StoreError::Access { path: file, source })?;
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// The database file and the -wal and -shm files SQLite keeps beside it in WAL mode.
fn sidecar_paths(path: &Path) -> [PathBuf; 3] {
    let with_suffix = |suffix: &str| {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        PathBuf::from(name)
    };
    [path.to_owned(), with_suffix("-wal"), with_suffix("-shm")]
}

/// TikTok ids are below 2^63 and stored as SQLite's signed INTEGER. The cast keeps every bit, so
/// `value as u64` gives the id back even if TikTok ever used the top bit.
fn sql_id(id: u64) -> i64 {
    id as i64
}

/// Counts (diamonds, likes, viewers) saturate rather than wrap.
fn sql_count(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;

    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn default_path_follows_xdg_data_home_then_home() {
        let os = |s: &str| Some(OsString::from(s));
        assert_eq!(
            db_path_from(os("/data"), os("/home/me")),
            Some(PathBuf::from("/data/tiklive/tiklive.db"))
        );
        assert_eq!(
            db_path_from(None, os("/home/me")),
            Some(PathBuf::from("/home/me/.local/share/tiklive/tiklive.db"))
        );
        // A relative or empty XDG_DATA_HOME is ignored, as the XDG spec says.
        assert_eq!(
            db_path_from(os("rel"), os("/home/me")),
            Some(PathBuf::from("/home/me/.local/share/tiklive/tiklive.db"))
        );
        assert_eq!(
            db_path_from(os(""), os("/home/me")),
            Some(PathBuf::from("/home/me/.local/share/tiklive/tiklive.db"))
        );
        assert_eq!(db_path_from(None, os("")), None);
        assert_eq!(db_path_from(None, None), None);
    }

    #[test]
    fn new_database_has_the_latest_schema_in_wal_mode_with_foreign_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data/tiklive/tiklive.db");
        let store = Store::open(&path).unwrap();
        let conn = store.conn();
        assert_eq!(store.schema_version(), SUPPORTED_VERSION);
        assert_eq!(SUPPORTED_VERSION as usize, MIGRATIONS.len());
        let pragma = |name: &str| -> rusqlite::types::Value {
            conn.pragma_query_value(None, name, |r| r.get(0)).unwrap()
        };
        use rusqlite::types::Value::{Integer, Text};
        assert_eq!(pragma("user_version"), Integer(SUPPORTED_VERSION.into()));
        assert_eq!(pragma("journal_mode"), Text("wal".into()));
        assert_eq!(pragma("foreign_keys"), Integer(1));
        assert_eq!(pragma("busy_timeout"), Integer(5000));
        assert_eq!(pragma("synchronous"), Integer(1), "NORMAL");
        let mut tables: Vec<String> = conn
            .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        tables.sort();
        assert_eq!(
            tables,
            [
                "accounts",
                "buyers",
                "claims",
                "event_spans",
                "events",
                "export_cursors",
                "lives",
                "sales"
            ]
        );
        // The missing directories were created private too.
        assert_eq!(mode(path.parent().unwrap()), 0o700);

        let memory = Store::open_in_memory().unwrap();
        assert_eq!(memory.schema_version(), SUPPORTED_VERSION);
    }

    #[test]
    fn database_and_its_wal_and_shm_files_are_private() {
        let dir = tempfile::tempdir().unwrap();
        // A new file, and one that existed with the usual 0644 (from an older tool, say).
        let fresh = dir.path().join("fresh.db");
        let loose = dir.path().join("loose.db");
        fs::write(&loose, b"").unwrap();
        fs::set_permissions(&loose, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
        for path in [fresh, loose] {
            let writer = StoreWriter::spawn(&path, WriterConfig::default()).unwrap();
            let live = writer.begin_live(test_support::live("host")).unwrap();
            writer
                .send(live, &test_support::like(1, 10, 1_000))
                .unwrap();
            writer.flush().unwrap();
            // A reader too: the -shm file is shared by every connection.
            let reader = Store::open(&path).unwrap();
            let n: i64 = reader
                .conn()
                .query_row("SELECT count(*) FROM events", [], |r| r.get(0))
                .unwrap();
            assert_eq!(n, 1);
            for file in sidecar_paths(&path) {
                assert!(file.exists(), "{} exists while open", file.display());
                assert_eq!(mode(&file), 0o600, "{}", file.display());
            }
            writer.finish().unwrap();
        }
    }

    #[test]
    fn buyers_are_found_by_handle_or_user_id() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let writer = StoreWriter::spawn(&path, WriterConfig::default()).unwrap();
        let live = writer.begin_live(test_support::live("host")).unwrap();
        let chat = |msg, id, handle: &str, ts| {
            test_support::chat(msg, test_support::user(id, handle), ts, "hi", None)
        };
        writer.send(live, &chat(1, 42, "anna", 1_000)).unwrap();
        writer.send(live, &chat(2, 43, "4242", 1_000)).unwrap();
        // TikTok gave the handle "anna" to someone else later.
        writer.send(live, &chat(3, 42, "anna_new", 2_000)).unwrap();
        writer.send(live, &chat(4, 44, "anna", 3_000)).unwrap();
        writer.finish().unwrap();
        let store = Store::open(&path).unwrap();
        let find = |spec| store.find_buyer(spec).unwrap();
        assert_eq!(find("@anna_new"), Some(42));
        assert_eq!(find("ANNA_new"), Some(42));
        assert_eq!(find("@anna"), Some(44));
        assert_eq!(find("42"), Some(42));
        assert_eq!(find("4242"), Some(43), "a numeric handle");
        assert_eq!(find("@nobody"), None);
        assert_eq!(find("999"), None);
    }

    #[test]
    fn a_database_of_another_application_is_refused_and_left_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("other.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(
                "CREATE TABLE bookmarks (url TEXT); INSERT INTO bookmarks VALUES ('x');",
            )
            .unwrap();
        }
        let before = fs::read(&path).unwrap();
        let err = Store::open(&path).unwrap_err();
        assert!(matches!(err, StoreError::NotTiklive { .. }), "{err:?}");
        assert!(err.to_string().contains("other.db"), "{err}");
        assert_eq!(fs::read(&path).unwrap(), before);
    }

    #[test]
    fn errors_convert_to_anyhow_and_the_writer_is_shareable() {
        fn error<E: std::error::Error + Send + Sync + 'static>() {}
        fn shared<T: Send + Sync>() {}
        error::<StoreError>();
        shared::<StoreWriter>();
    }

    #[test]
    fn ids_keep_every_bit() {
        let big = u64::MAX - 5;
        assert_eq!(sql_id(big) as u64, big);
        assert_eq!(sql_count(u64::MAX), i64::MAX);
    }
}
