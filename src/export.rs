//! CSV export of the stored history (`tiklive export`): the kinds of rows and their documented
//! columns, the SQL that reads them, the filters, the CSV writer with its spreadsheet-safety rule, and
//! the cursors of incremental exports. Rows stream from SQLite to the CSV writer in small batches, in
//! the order of their table id, so memory stays flat whatever the size of the export.

use std::borrow::Cow;
use std::io::{self, Write};
use std::sync::mpsc;

use rusqlite::types::{ToSql, ValueRef};
use rusqlite::{Connection, OptionalExtension};

use crate::events::{format_rfc3339_ms, rfc3339_ms};
use crate::money::format_minor;
use crate::store::raw::RawStatement;
use crate::store::spans;
use crate::store::{Store, StoreError};

/// The UTF-8 byte order mark, by which Excel recognises a UTF-8 CSV file.
pub const BOM: &[u8] = b"\xEF\xBB\xBF";

/// First bytes that make a spreadsheet read a cell as a formula (OWASP, "CSV injection"). Nicknames and
/// comments are typed by strangers, so a text cell starting with one of them gets a leading `'`.
const FORMULA_STARTS: &[u8] = b"=+-@\t\r";

/// How often (in rows) the progress is reported.
const PROGRESS_EVERY: u64 = 4096;

/// What an export writes: one kind of row, with its documented columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Every stored event, with its NDJSON line.
    Events,
    Chat,
    /// Finished gifts only: in-progress streak updates would count diamonds twice.
    Gifts,
    Likes,
    Members,
    Social,
    Viewers,
    Claims,
    Sales,
    Buyers,
}

impl Kind {
    pub const ALL: [Kind; 10] = [
        Kind::Events,
        Kind::Chat,
        Kind::Gifts,
        Kind::Likes,
        Kind::Members,
        Kind::Social,
        Kind::Viewers,
        Kind::Claims,
        Kind::Sales,
        Kind::Buyers,
    ];

    /// The name on the command line and in `export_cursors.kind`.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Events => "events",
            Kind::Chat => "chat",
            Kind::Gifts => "gifts",
            Kind::Likes => "likes",
            Kind::Members => "members",
            Kind::Social => "social",
            Kind::Viewers => "viewers",
            Kind::Claims => "claims",
            Kind::Sales => "sales",
            Kind::Buyers => "buyers",
        }
    }

    /// The header row.
    pub fn columns(self) -> Vec<&'static str> {
        Plan::of(self).columns.iter().map(|c| c.name).collect()
    }

    /// Whether rows can be exported incrementally: buyers change in place and have no arrival order.
    pub fn incremental(self) -> bool {
        self != Kind::Buyers
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Which rows are exported. Times are Unix milliseconds; each kind applies them to its own time
/// (event time, claim time, a sale's creation; buyers count what falls inside the filters).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filters {
    /// Rows at or after this time.
    pub since_ms: Option<i64>,
    /// Rows before this time.
    pub until_ms: Option<i64>,
    /// `lives.id`.
    pub live: Option<i64>,
    pub room: Option<u64>,
    /// `buyers.id` (TikTok's user id, as stored).
    pub user: Option<i64>,
}

impl Filters {
    fn any(&self) -> bool {
        *self != Filters::default()
    }
}

/// The bytes of the CSV.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CsvFormat {
    pub delimiter: u8,
    /// Start with [`BOM`].
    pub bom: bool,
    /// Decimal mark of prices: `,` for French spreadsheets.
    pub decimal_mark: char,
}

impl Default for CsvFormat {
    fn default() -> Self {
        CsvFormat {
            delimiter: b',',
            bom: false,
            decimal_mark: '.',
        }
    }
}

impl CsvFormat {
    /// What a French Excel opens without an import dialog: a BOM, `;` and decimal commas.
    pub fn excel_fr() -> CsvFormat {
        CsvFormat {
            delimiter: b';',
            bom: true,
            decimal_mark: ',',
        }
    }
}

/// Parses a delimiter: one ASCII character other than the quote and line ends, or `tab` / `\t`.
pub fn parse_delimiter(text: &str) -> Result<u8, String> {
    match text {
        "tab" | "\\t" | "\t" => return Ok(b'\t'),
        _ => {}
    }
    match text.as_bytes() {
        [b] if b.is_ascii() && !matches!(b, b'"' | b'\n' | b'\r') => Ok(*b),
        _ => Err(format!(
            "invalid delimiter {text:?}: use one ASCII character other than '\"' or a line end, \
             such as ',' ';' '|', or `tab`"
        )),
    }
}

/// One export: what to write, from which rows, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub kind: Kind,
    pub filters: Filters,
    pub format: CsvFormat,
    /// Only rows whose id is larger: an incremental export's [`Cursor::last_id`], else 0.
    pub after_id: i64,
}

/// What [`write_csv`] wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Written {
    /// Rows, the header not counted.
    pub rows: u64,
    /// The largest row id written (rows are written in id order, so the last one).
    pub last_id: Option<i64>,
}

/// Told how far a long export has got, for a progress bar.
pub trait Progress {
    /// Called once, before the first row, with the number of row ids the export walks through (0 when
    /// it cannot tell). Rows that the filters skip count too, so it is an upper bound of the rows.
    fn begin(&mut self, total: u64);
    /// Called now and then with how many of those ids have been passed.
    fn advance(&mut self, done: u64);
}

/// For callers that show no progress.
pub struct NoProgress;

impl Progress for NoProgress {
    fn begin(&mut self, _total: u64) {}
    fn advance(&mut self, _done: u64) {}
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The request cannot be answered as asked (a usage error at the command line).
    #[error("{0}")]
    Invalid(String),
    /// The live or room a filter names is not in the database.
    #[error("{0}")]
    NotFound(String),
    /// Another export with the same name advanced the cursor while this one ran.
    #[error(
        "another export named {0:?} ran at the same time and moved its cursor: the rows written here may also be in its output"
    )]
    CursorMoved(String),
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The output refused the CSV (a full disk, or a closed pipe: see `error::is_closed_pipe`).
    #[error("{0}")]
    Write(#[source] io::Error),
}

/// What can be refused without the database: an empty time range, a user filter on viewers. `user`
/// is the user asked for, still a `@handle` or an id.
pub fn check_filters(kind: Kind, filters: &Filters, user: Option<&str>) -> Result<(), ExportError> {
    if let (Some(since), Some(until)) = (filters.since_ms, filters.until_ms)
        && since >= until
    {
        return Err(ExportError::Invalid(format!(
            "the time range is empty: since {} is not before until {}",
            rfc3339_ms(since),
            rfc3339_ms(until)
        )));
    }
    if kind == Kind::Viewers && user.is_some() {
        return Err(ExportError::Invalid(
            "viewer counts have no user: a user filter does not apply to viewers".into(),
        ));
    }
    Ok(())
}

/// Checks the filters against the database and sets their user to the buyer `user` names, so that an
/// empty time range or a live, room or user that is not in the database is an error rather than an
/// empty file. Shared by the command and the API, which must agree on what they refuse.
pub fn resolve_filters(
    store: &Store,
    kind: Kind,
    mut filters: Filters,
    user: Option<&str>,
) -> Result<Filters, ExportError> {
    check_filters(kind, &filters, user)?;
    if let Some(spec) = user {
        let found = store.find_buyer(spec).map_err(|e| match e {
            StoreError::Sqlite(e) => ExportError::Sqlite(e),
            other => ExportError::Invalid(other.to_string()),
        })?;
        filters.user = Some(
            found
                .ok_or_else(|| ExportError::NotFound(format!("no user {spec} in the database")))?,
        );
    }
    let conn = store.conn();
    let exists = |sql: &str, value: i64| -> rusqlite::Result<bool> {
        Ok(conn
            .query_row(sql, [value], |_| Ok(()))
            .optional()?
            .is_some())
    };
    if let Some(live) = filters.live
        && !exists("SELECT 1 FROM lives WHERE id = ?1", live)?
    {
        return Err(ExportError::NotFound(format!(
            "no live {live} in the database"
        )));
    }
    if let Some(room) = filters.room
        && !exists("SELECT 1 FROM lives WHERE room_id = ?1", room as i64)?
    {
        return Err(ExportError::NotFound(format!(
            "no live of room {room} in the database"
        )));
    }
    Ok(filters)
}

/// Writes the header and every row of `request` to `out` as CSV, then flushes it. Reads from one
/// snapshot of the database, so rows committed meanwhile are left for the next export.
///
/// Two threads share the work, as a pipeline: this one steps through the rows and copies their values
/// out of SQLite; a second one formats them (ids, times, prices), quotes them into CSV and writes them.
/// Batches of rows go back and forth over bounded channels and are reused, so memory stays flat.
pub fn write_csv<W: Write + Send>(
    conn: &Connection,
    request: &Request,
    out: W,
    progress: &mut dyn Progress,
) -> Result<Written, ExportError> {
    let plan = Plan::of(request.kind);
    let snapshot = conn.unchecked_transaction()?;
    let (full, to_write) = mpsc::sync_channel::<Batch>(BATCHES_IN_FLIGHT);
    let (written_back, reusable) = mpsc::channel::<Batch>();
    let format = request.format;
    let header = &plan.columns;
    let cells = &Cells::new(&plan, format);
    let (read, wrote) = std::thread::scope(|scope| {
        let writer = scope.spawn(move || -> Result<(), ExportError> {
            let mut out = out;
            let mut csv = Vec::with_capacity(1 << 20);
            if format.bom {
                csv.extend_from_slice(BOM);
            }
            for (i, column) in header.iter().enumerate() {
                if i > 0 {
                    csv.push(format.delimiter);
                }
                push_field(&mut csv, column.name.as_bytes(), format.delimiter);
            }
            csv.push(b'\n');
            for batch in to_write {
                for row in batch.values.chunks_exact(cells.cells.len()) {
                    cells.write(&mut csv, row, &batch.bytes);
                }
                out.write_all(&csv).map_err(ExportError::Write)?;
                csv.clear();
                // The reader may be done and gone: then the batch is simply dropped.
                let _ = written_back.send(batch);
            }
            out.write_all(&csv).map_err(ExportError::Write)?;
            out.flush().map_err(ExportError::Write)
        });
        let read = read_rows(&snapshot, &plan, request, progress, &full, &reusable);
        // Closing the channel tells the writer that no more rows come.
        drop(full);
        (read, writer.join())
    });
    let wrote = wrote.unwrap_or_else(|panic| std::panic::resume_unwind(panic));
    // A failed write stops the reading early: report it rather than the reading's outcome.
    wrote?;
    let written = read?;
    snapshot.commit()?;
    Ok(written)
}

/// Rows handed to the writing thread at once, and how many batches may wait for it.
const BATCH_ROWS: usize = 512;
const BATCHES_IN_FLIGHT: usize = 2;

/// Rows on their way to the writing thread, as read: the values of each row one after the other, with
/// the bytes of their text in one buffer. The buffers are kept when a batch is reused.
struct Batch {
    values: Vec<Value>,
    bytes: Vec<u8>,
    rows: usize,
}

/// A column's value as read; text and blobs are the range `start..end` of [`Batch::bytes`].
#[derive(Debug, Clone, Copy)]
enum Value {
    Null,
    Integer(i64),
    Real(f64),
    Text(usize, usize),
}

impl Batch {
    fn clear(&mut self) {
        self.values.clear();
        self.bytes.clear();
        self.rows = 0;
    }

    /// Appends the `columns` first values of `row`; returns the first one, the row's id.
    fn push(&mut self, row: &RawStatement<'_>, columns: usize) -> rusqlite::Result<i64> {
        let first = self.values.len();
        for i in 0..columns {
            let value = match row.column(i)? {
                ValueRef::Null => Value::Null,
                ValueRef::Integer(v) => Value::Integer(v),
                ValueRef::Real(v) => Value::Real(v),
                ValueRef::Text(text) | ValueRef::Blob(text) => {
                    let start = self.bytes.len();
                    self.bytes.extend_from_slice(text);
                    Value::Text(start, self.bytes.len())
                }
            };
            self.values.push(value);
        }
        self.rows += 1;
        // Every kind's first column is a table's INTEGER PRIMARY KEY.
        use rusqlite::types::Type;
        let found = match self.values.get(first) {
            Some(Value::Integer(id)) => return Ok(*id),
            Some(Value::Real(_)) => Type::Real,
            Some(Value::Text(..)) => Type::Text,
            Some(Value::Null) | None => Type::Null,
        };
        Err(rusqlite::Error::InvalidColumnType(0, "id".into(), found))
    }
}

/// The reading half of [`write_csv`]: runs the query and sends its rows, as records, to `full`.
/// Stops quietly when the writer has gone (it reports why).
fn read_rows(
    conn: &Connection,
    plan: &Plan,
    request: &Request,
    progress: &mut dyn Progress,
    full: &mpsc::SyncSender<Batch>,
    reusable: &mpsc::Receiver<Batch>,
) -> Result<Written, ExportError> {
    let mut written = Written::default();
    let Some(query) = plan.query(conn, &request.filters, request.after_id)? else {
        return Ok(written);
    };
    progress.begin(query.span());
    // Through the C API (see `store::raw`): fewer calls per value on this thread, the busier of the two.
    let mut rows = RawStatement::prepare(conn, &query.sql)?;
    let columns = plan.columns.len();
    if rows.column_count() < columns {
        return Err(rusqlite::Error::InvalidColumnIndex(columns - 1).into());
    }
    for (name, value) in &query.binds {
        rows.bind_named(name, *value)?;
    }
    let new_batch = || Batch {
        values: Vec::with_capacity(BATCH_ROWS * columns),
        bytes: Vec::new(),
        rows: 0,
    };
    let mut batch = new_batch();
    while rows.next_row()? {
        let id = batch.push(&rows, columns)?;
        written.rows += 1;
        written.last_id = Some(id);
        if batch.rows == BATCH_ROWS {
            let mut next = reusable.try_recv().unwrap_or_else(|_| new_batch());
            next.clear();
            if full.send(std::mem::replace(&mut batch, next)).is_err() {
                return Ok(written);
            }
        }
        if written.rows.is_multiple_of(PROGRESS_EVERY) {
            progress.advance(query.passed(id));
        }
    }
    if batch.rows > 0 {
        let _ = full.send(batch);
    }
    if let Some(id) = written.last_id {
        progress.advance(query.passed(id));
    }
    Ok(written)
}

/// Prefixes `'` to text a spreadsheet would run as a formula; other text is returned as is.
pub fn neutralise(text: &[u8]) -> Cow<'_, [u8]> {
    match text.first() {
        Some(b) if FORMULA_STARTS.contains(b) => {
            let mut safe = Vec::with_capacity(text.len() + 1);
            safe.push(b'\'');
            safe.extend_from_slice(text);
            Cow::Owned(safe)
        }
        _ => Cow::Borrowed(text),
    }
}

/// The cursor of a named incremental export: the largest row id it has written, for one kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    name: String,
    kind: Kind,
    last_id: i64,
}

impl Cursor {
    /// The cursor called `name`, at 0 when it does not exist yet. A name already used for another
    /// kind is refused: ids of different tables cannot be compared.
    pub fn load(conn: &Connection, name: &str, kind: Kind) -> Result<Cursor, ExportError> {
        if name.trim().is_empty() {
            return Err(ExportError::Invalid(
                "the name of an incremental export cannot be empty".into(),
            ));
        }
        if !kind.incremental() {
            return Err(ExportError::Invalid(format!(
                "{kind} cannot be exported incrementally: their rows change in place; export them whole"
            )));
        }
        let found: Option<(String, i64)> = conn
            .query_row(
                "SELECT kind, last_id FROM export_cursors WHERE name = ?1",
                [name],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let last_id = match found {
            Some((other, _)) if other != kind.name() => {
                return Err(ExportError::Invalid(format!(
                    "the incremental export {name:?} exports {other}, not {kind}: use another name"
                )));
            }
            Some((_, last_id)) => last_id,
            None => 0,
        };
        Ok(Cursor {
            name: name.to_owned(),
            kind,
            last_id,
        })
    }

    /// The largest id exported so far under this name (0 before the first export).
    pub fn last_id(&self) -> i64 {
        self.last_id
    }

    /// Records an export that completed: the cursor moves to `written.last_id` and is stamped with
    /// `now_ms`. Call it only once the output is complete. Refused when another export of the same name
    /// moved the cursor since [`Cursor::load`].
    pub fn advance(
        &self,
        conn: &Connection,
        written: &Written,
        now_ms: i64,
    ) -> Result<(), ExportError> {
        let last_id = written.last_id.unwrap_or(self.last_id).max(self.last_id);
        let changed = conn.execute(
            "INSERT INTO export_cursors (name, kind, last_id, updated_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (name) DO UPDATE SET last_id = excluded.last_id, updated_at = excluded.updated_at
             WHERE export_cursors.kind = excluded.kind AND export_cursors.last_id = ?5",
            rusqlite::params![self.name, self.kind.name(), last_id, now_ms, self.last_id],
        )?;
        if changed == 0 {
            return Err(ExportError::CursorMoved(self.name.clone()));
        }
        Ok(())
    }
}

/// How an INTEGER value is written (text is always written as text, neutralised).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cell {
    Number,
    /// A TikTok id: stored as i64, it is a u64.
    Id,
    /// Unix milliseconds, written in RFC 3339 (UTC, milliseconds).
    Time,
    /// Minor units of the currency in the `currency` column.
    Price,
    Text,
}

#[derive(Debug, Clone, Copy)]
struct Column {
    name: &'static str,
    sql: &'static str,
    cell: Cell,
}

const fn col(name: &'static str, sql: &'static str, cell: Cell) -> Column {
    Column { name, sql, cell }
}

/// The table a kind scans in id order, which gives the columns its filters apply to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Table {
    Events,
    Claims,
    Sales,
}

impl Table {
    fn name(self) -> &'static str {
        match self {
            Table::Events => "events",
            Table::Claims => "claims",
            Table::Sales => "sales",
        }
    }

    /// The table's alias in the kinds' SQL.
    fn alias(self) -> &'static str {
        match self {
            Table::Events => "e",
            Table::Claims => "c",
            Table::Sales => "s",
        }
    }

    /// The column `--since` and `--until` apply to.
    fn time(self) -> &'static str {
        match self {
            Table::Events | Table::Claims => "ts",
            Table::Sales => "created_at",
        }
    }

    fn user(self) -> &'static str {
        match self {
            Table::Events => "user_id",
            Table::Claims | Table::Sales => "buyer_id",
        }
    }

    /// Whether an index holds `room_id`, so that the id range of a room is read from the index alone
    /// (the events' key, (msg_id, room_id): a scan, but of a B-tree a tenth of the table's size).
    fn indexed_room(self) -> bool {
        matches!(self, Table::Events)
    }
}

/// The columns every kind made of events starts with.
const EVENT_HEAD: [Column; 4] = [
    col("id", "e.id", Cell::Number),
    col("live_id", "e.live_id", Cell::Number),
    col("room_id", "e.room_id", Cell::Id),
    col("msg_id", "e.msg_id", Cell::Id),
];

const EVENT_USER: [Column; 4] = [
    col("time", "e.ts", Cell::Time),
    col("user_id", "e.user_id", Cell::Id),
    col("unique_id", "e.unique_id", Cell::Text),
    col("nickname", "e.nickname", Cell::Text),
];

/// Ranks claims by arrival in their live among all its claims, before any filter; only the lives of
/// the claims in the scanned id range are ranked, so that a daily incremental export does not rank
/// every live ever stored.
const CLAIMS_RANKED: &str = "(SELECT *, row_number() OVER (PARTITION BY live_id ORDER BY ts, msg_id) AS rank \
     FROM claims WHERE live_id IN (SELECT live_id FROM claims WHERE id BETWEEN :lo AND :hi)) c \
     JOIN events e ON e.id = c.event_id";

/// A kind's columns, where its rows come from, and the condition that picks them.
struct Plan {
    /// The table scanned in id order; `None` for buyers, which are aggregated.
    table: Option<Table>,
    columns: Vec<Column>,
    /// `FROM` and joins.
    from: &'static str,
    condition: Option<&'static str>,
}

impl Plan {
    fn of(kind: Kind) -> Plan {
        let events = |condition: &'static str, tail: &[Column]| Plan {
            table: Some(Table::Events),
            columns: [&EVENT_HEAD[..], &EVENT_USER[..], tail].concat(),
            from: "events e",
            condition: Some(condition),
        };
        match kind {
            Kind::Events => Plan {
                table: Some(Table::Events),
                columns: [
                    &EVENT_HEAD[..],
                    &[col("type", "e.type", Cell::Text)],
                    &EVENT_USER[..],
                    &[
                        col("comment", "e.comment", Cell::Text),
                        col("gift_id", "e.gift_id", Cell::Id),
                        col("gift_name", "e.gift_name", Cell::Text),
                        col("repeat_count", "e.repeat_count", Cell::Number),
                        col("total_diamonds", "e.total_diamonds", Cell::Number),
                        col("streaking", "e.gift_streaking", Cell::Number),
                        col("like_count", "e.like_count", Cell::Number),
                        col("total_like_count", "e.total_like_count", Cell::Number),
                        col("viewer_count", "e.viewer_count", Cell::Number),
                        col("json", "e.json", Cell::Text),
                    ],
                ]
                .concat(),
                from: "events e",
                condition: None,
            },
            Kind::Chat => Plan {
                from: "events e LEFT JOIN claims c ON c.event_id = e.id",
                ..events(
                    "e.type = 'chat'",
                    &[
                        col("comment", "e.comment", Cell::Text),
                        col("claim_item", "c.item", Cell::Text),
                        col("claim_variant", "c.variant", Cell::Text),
                        col("claim_quantity", "c.quantity", Cell::Number),
                    ],
                )
            },
            Kind::Gifts => events(
                "e.type = 'gift' AND e.gift_streaking IS NOT 1",
                &[
                    col("gift_id", "e.gift_id", Cell::Id),
                    col("gift_name", "e.gift_name", Cell::Text),
                    col("repeat_count", "e.repeat_count", Cell::Number),
                    col(
                        "diamond_count",
                        "e.json ->> '$.diamond_count'",
                        Cell::Number,
                    ),
                    col("total_diamonds", "e.total_diamonds", Cell::Number),
                ],
            ),
            Kind::Likes => events(
                "e.type = 'like'",
                &[
                    col("like_count", "e.like_count", Cell::Number),
                    col("total_like_count", "e.total_like_count", Cell::Number),
                ],
            ),
            Kind::Members => events(
                "e.type = 'member'",
                &[col("action_id", "e.json ->> '$.action_id'", Cell::Number)],
            ),
            Kind::Social => events(
                "e.type = 'social'",
                &[
                    col("social_type", "e.json ->> '$.social_type'", Cell::Text),
                    col("share_count", "e.json ->> '$.share_count'", Cell::Number),
                ],
            ),
            Kind::Viewers => Plan {
                table: Some(Table::Events),
                columns: [
                    &EVENT_HEAD[..],
                    &[
                        col("time", "e.ts", Cell::Time),
                        col("viewer_count", "e.viewer_count", Cell::Number),
                        col(
                            "total_viewers",
                            "e.json ->> '$.total_viewers'",
                            Cell::Number,
                        ),
                    ],
                ]
                .concat(),
                from: "events e",
                condition: Some("e.type = 'room_user'"),
            },
            Kind::Claims => Plan {
                table: Some(Table::Claims),
                columns: vec![
                    col("id", "c.id", Cell::Number),
                    col("live_id", "c.live_id", Cell::Number),
                    col("room_id", "c.room_id", Cell::Id),
                    col("msg_id", "c.msg_id", Cell::Id),
                    col("time", "c.ts", Cell::Time),
                    col("user_id", "c.buyer_id", Cell::Id),
                    col("unique_id", "e.unique_id", Cell::Text),
                    col("nickname", "e.nickname", Cell::Text),
                    col("item", "c.item", Cell::Text),
                    col("variant", "c.variant", Cell::Text),
                    col("quantity", "c.quantity", Cell::Number),
                    col("raw", "c.raw", Cell::Text),
                    col("rank", "c.rank", Cell::Number),
                ],
                from: CLAIMS_RANKED,
                condition: None,
            },
            Kind::Sales => Plan {
                table: Some(Table::Sales),
                columns: vec![
                    col("id", "s.id", Cell::Number),
                    col("live_id", "s.live_id", Cell::Number),
                    col("room_id", "s.room_id", Cell::Id),
                    col("msg_id", "s.msg_id", Cell::Id),
                    col("buyer_id", "s.buyer_id", Cell::Id),
                    col("unique_id", "b.unique_id", Cell::Text),
                    col("nickname", "b.nickname", Cell::Text),
                    col("item", "s.item", Cell::Text),
                    col("variant", "s.variant", Cell::Text),
                    col("quantity", "s.quantity", Cell::Number),
                    col("unit_price", "s.unit_price_cents", Cell::Price),
                    col("currency", "s.currency", Cell::Text),
                    col("total", "s.unit_price_cents * s.quantity", Cell::Price),
                    col("status", "s.status", Cell::Text),
                    col("note", "s.note", Cell::Text),
                    col("created", "s.created_at", Cell::Time),
                    col("updated", "s.updated_at", Cell::Time),
                ],
                from: "sales s JOIN buyers b ON b.id = s.buyer_id",
                condition: None,
            },
            Kind::Buyers => Plan {
                table: None,
                columns: vec![
                    col("id", "b.id", Cell::Id),
                    col("unique_id", "b.unique_id", Cell::Text),
                    col("nickname", "b.nickname", Cell::Text),
                    col("avatar_url", "b.avatar_url", Cell::Text),
                    col("first_seen", "b.first_seen", Cell::Time),
                    col("last_seen", "b.last_seen", Cell::Time),
                    col("events", "coalesce(ev.n, 0)", Cell::Number),
                    col("claims", "coalesce(cl.n, 0)", Cell::Number),
                    col("sales", "coalesce(sa.n, 0)", Cell::Number),
                ],
                from: "buyers b LEFT JOIN ev ON ev.id = b.id LEFT JOIN cl ON cl.id = b.id \
                       LEFT JOIN sa ON sa.id = b.id",
                condition: None,
            },
        }
    }

    /// The SELECT for these filters, or `None` when no row can match.
    fn query(
        &self,
        conn: &Connection,
        filters: &Filters,
        after_id: i64,
    ) -> rusqlite::Result<Option<Query>> {
        let binds = Binds::of(filters);
        let select: Vec<&str> = self.columns.iter().map(|c| c.sql).collect();
        let select = select.join(", ");
        let Some(table) = self.table else {
            return self.buyers_query(conn, &select, filters, binds).map(Some);
        };
        let Some((lo, hi)) = id_range(conn, table, filters, Some(after_id))? else {
            return Ok(None);
        };
        let a = table.alias();
        // The range is the only condition an index may serve (`+` keeps SQLite from using another):
        // a scan in id order, with no sort, streams.
        let mut conditions = vec![format!("{a}.id BETWEEN :lo AND :hi")];
        conditions.extend(self.condition.map(str::to_owned));
        conditions.extend(filter_conditions(table, filters, "+"));
        let mut binds = binds;
        binds.push((":lo", lo));
        binds.push((":hi", hi));
        Ok(Some(Query {
            sql: format!(
                "SELECT {select} FROM {} WHERE {} ORDER BY {a}.id",
                self.from,
                conditions.join(" AND ")
            ),
            binds,
            range: Some((lo, hi)),
        }))
    }

    /// Buyers with, for each, what they did within the filters: only buyers who did something there
    /// when there are filters besides the user. Ordered by TikTok id as the u64 it is.
    fn buyers_query(
        &self,
        conn: &Connection,
        select: &str,
        filters: &Filters,
        mut binds: Vec<(&'static str, i64)>,
    ) -> rusqlite::Result<Query> {
        // The events have no time index: their times narrow the ids to read, as for an export of
        // events (`0`: no event can match).
        let mut events = None;
        if filters.since_ms.is_some() || filters.until_ms.is_some() {
            events = Some(match id_range(conn, Table::Events, filters, None)? {
                Some((lo, hi)) => {
                    binds.extend([(":events_lo", lo), (":events_hi", hi)]);
                    "e.id BETWEEN :events_lo AND :events_hi"
                }
                None => "0",
            });
        }
        let within = |table: Table, base: &str| {
            let mut conditions = vec![base.to_owned()];
            if table == Table::Events {
                conditions.extend(events.map(str::to_owned));
            }
            conditions.extend(filter_conditions(table, filters, ""));
            conditions.join(" AND ")
        };
        let activity = Filters {
            user: None,
            ..filters.clone()
        };
        let mut outer = Vec::new();
        if filters.user.is_some() {
            outer.push("b.id = :user".to_owned());
        }
        if activity.any() {
            outer.push("(ev.n IS NOT NULL OR cl.n IS NOT NULL OR sa.n IS NOT NULL)".to_owned());
        }
        let sql = format!(
            "WITH ev (id, n) AS (SELECT user_id, count(*) FROM events e WHERE {} GROUP BY user_id), \
             cl (id, n) AS (SELECT buyer_id, count(*) FROM claims c WHERE {} GROUP BY buyer_id), \
             sa (id, n) AS (SELECT buyer_id, count(*) FROM sales s WHERE {} GROUP BY buyer_id) \
             SELECT {select} FROM {} {} ORDER BY b.id < 0, b.id",
            within(Table::Events, "e.user_id IS NOT NULL"),
            within(Table::Claims, "c.buyer_id IS NOT NULL"),
            within(Table::Sales, "s.status <> 'cancelled'"),
            self.from,
            if outer.is_empty() {
                String::new()
            } else {
                format!("WHERE {}", outer.join(" AND "))
            }
        );
        Ok(Query {
            sql,
            binds,
            range: None,
        })
    }
}

/// Named parameters `:since`, `:until`, `:live`, `:room`, `:user` for the filters that are set.
struct Binds;

impl Binds {
    fn of(filters: &Filters) -> Vec<(&'static str, i64)> {
        [
            (":since", filters.since_ms),
            (":until", filters.until_ms),
            (":live", filters.live),
            (":room", filters.room.map(|r| r as i64)),
            (":user", filters.user),
        ]
        .into_iter()
        .filter_map(|(name, value)| value.map(|v| (name, v)))
        .collect()
    }
}

/// The SQL conditions of the filters that are set, on `table` (aliased as in [`Plan`]); `prefix` `+`
/// keeps SQLite from serving them with an index.
fn filter_conditions(
    table: Table,
    filters: &Filters,
    prefix: &'static str,
) -> impl Iterator<Item = String> {
    let a = table.alias();
    let (time, user) = (table.time(), table.user());
    [
        filters
            .since_ms
            .map(|_| format!("{prefix}{a}.{time} >= :since")),
        filters
            .until_ms
            .map(|_| format!("{prefix}{a}.{time} < :until")),
        filters.live.map(|_| format!("{prefix}{a}.live_id = :live")),
        filters.room.map(|_| format!("{prefix}{a}.room_id = :room")),
        filters.user.map(|_| format!("{prefix}{a}.{user} = :user")),
    ]
    .into_iter()
    .flatten()
}

/// The ids a scan of `table` has to go through: those after `after_id` (all of them for `None`),
/// narrowed by the times (the events' spans, the claims' time index) or the room's ids in the events'
/// key when a filter allows it. `None` when no row can match.
fn id_range(
    conn: &Connection,
    table: Table,
    filters: &Filters,
    after_id: Option<i64>,
) -> rusqlite::Result<Option<(i64, i64)>> {
    let name = table.name();
    let bounds =
        |sql: &str, binds: &[(&str, &dyn ToSql)]| -> rusqlite::Result<Option<(i64, i64)>> {
            conn.query_row(sql, binds, |r| {
                Ok(r.get::<_, Option<i64>>(0)?.zip(r.get::<_, Option<i64>>(1)?))
            })
        };
    // Two subqueries: SQLite reads a lone min() or max() of the key from one end of the B-tree, where
    // `min(id), max(id)` in one SELECT would scan the whole table.
    let Some((mut lo, mut hi)) = bounds(
        &format!("SELECT (SELECT min(id) FROM {name}), (SELECT max(id) FROM {name})"),
        &[],
    )?
    else {
        return Ok(None);
    };
    let window = (filters.since_ms.is_some() || filters.until_ms.is_some()).then(|| {
        let from = filters.since_ms.unwrap_or(i64::MIN);
        let to = filters
            .until_ms
            .map_or(i64::MAX, |until| until.saturating_sub(1));
        (from, to)
    });
    let narrowed = match (table, window) {
        // `event_spans` maps the events' times to runs of ids (see `store::spans`).
        (Table::Events, Some((from, to))) => Some(spans::hull(&spans::id_spans(conn)?, from, to)),
        // The claims' time index.
        (Table::Claims, Some((from, to))) => Some(bounds(
            "SELECT min(id), max(id) FROM claims WHERE ts BETWEEN :from AND :to",
            &[(":from", &from), (":to", &to)],
        )?),
        _ => match filters.room.filter(|_| table.indexed_room()) {
            Some(room) => Some(bounds(
                &format!("SELECT min(id), max(id) FROM {name} WHERE room_id = :room"),
                &[(":room", &(room as i64))],
            )?),
            None => None,
        },
    };
    match narrowed {
        Some(None) => return Ok(None),
        Some(Some((first, last))) => (lo, hi) = (lo.max(first), hi.min(last)),
        None => {}
    }
    if let Some(after_id) = after_id {
        lo = lo.max(after_id.saturating_add(1));
    }
    Ok((lo <= hi).then_some((lo, hi)))
}

struct Query {
    sql: String,
    binds: Vec<(&'static str, i64)>,
    /// The id range scanned in order, for progress; `None` when rows are not scanned by id.
    range: Option<(i64, i64)>,
}

impl Query {
    fn span(&self) -> u64 {
        self.range
            .map_or(0, |(lo, hi)| (hi as i128 - lo as i128 + 1) as u64)
    }

    /// How many ids of the range are passed once row `id` is written.
    fn passed(&self, id: i64) -> u64 {
        self.range
            .map_or(0, |(lo, _)| (id as i128 - lo as i128 + 1).max(0) as u64)
    }
}

/// Turns rows of one plan into CSV lines.
struct Cells {
    cells: Vec<Cell>,
    /// Index of the `currency` column, for prices.
    currency: Option<usize>,
    delimiter: u8,
    decimal_mark: char,
    /// Integers and times are written as they are, unless the delimiter is one of their characters.
    numbers_as_is: bool,
}

impl Cells {
    fn new(plan: &Plan, format: CsvFormat) -> Cells {
        Cells {
            cells: plan.columns.iter().map(|c| c.cell).collect(),
            currency: plan.columns.iter().position(|c| c.name == "currency"),
            delimiter: format.delimiter,
            decimal_mark: format.decimal_mark,
            numbers_as_is: !b"0123456789-+:.TZ".contains(&format.delimiter),
        }
    }

    /// Appends the CSV line of one row (its values, whose text is in `bytes`) to `out`.
    fn write(&self, out: &mut Vec<u8>, row: &[Value], bytes: &[u8]) {
        let mut digits = [0u8; 24];
        for (i, (cell, value)) in self.cells.iter().zip(row).enumerate() {
            if i > 0 {
                out.push(self.delimiter);
            }
            let field: Cow<'_, [u8]> = match *value {
                Value::Null => continue,
                Value::Integer(v) => {
                    let number = match cell {
                        Cell::Price => {
                            let currency = match self.currency.and_then(|c| row.get(c)) {
                                Some(Value::Text(start, end)) => {
                                    std::str::from_utf8(&bytes[*start..*end]).unwrap_or("")
                                }
                                _ => "",
                            };
                            let price = format_minor(v, currency, self.decimal_mark);
                            push_field(out, price.as_bytes(), self.delimiter);
                            continue;
                        }
                        Cell::Id => format_u64(v as u64, &mut digits),
                        Cell::Time => format_rfc3339_ms(v, &mut digits),
                        Cell::Number | Cell::Text => format_i64(v, &mut digits),
                    };
                    if self.numbers_as_is {
                        out.extend_from_slice(number);
                        continue;
                    }
                    Cow::Borrowed(number)
                }
                Value::Real(v) => Cow::Owned(v.to_string().into_bytes()),
                Value::Text(start, end) => neutralise(&bytes[start..end]),
            };
            push_field(out, &field, self.delimiter);
        }
        out.push(b'\n');
    }
}

/// Appends `field` as a CSV field, the way the `csv` crate's writer does by default: quoted, with its
/// quotes doubled, when it holds the delimiter, a quote or a line break; as is otherwise.
///
/// Every event's JSON comes here, a quote every eight bytes or so. It is copied eight bytes at a
/// time into room made beforehand; for each quote among those eight, the word is copied again from
/// that quote on, one byte further, which doubles the quote and moves what follows it. No branch per
/// byte, and a quote costs a shift and an eight-byte copy. (Nothing written is read back: building
/// the eight bytes in a buffer and copying it on stalls the CPU on every load.)
fn push_field(out: &mut Vec<u8>, field: &[u8], delimiter: u8) {
    let special = |b: &u8| matches!(*b, b'"' | b'\n' | b'\r') || *b == delimiter;
    if !field.iter().any(special) {
        out.extend_from_slice(field);
        return;
    }
    let start = out.len();
    // The most a field can take (every byte a doubled quote, and the two around it), and the slack
    // of the last copies.
    out.resize(start + 2 * field.len() + 2 + 16, 0);
    let room = &mut out[start..];
    room[0] = b'"';
    let mut at = 1;
    let mut words = field.chunks_exact(8);
    for chunk in &mut words {
        let word = u64::from_le_bytes(chunk.try_into().expect("chunks of 8"));
        // Room for the eight bytes, their quotes doubled, and the slack of the last copy.
        let window: &mut [u8; 24] = (&mut room[at..at + 24]).try_into().expect("24 bytes");
        window[..8].copy_from_slice(chunk);
        let mut quotes = quote_mask(word);
        let mut added = 0;
        while quotes != 0 {
            let byte = (quotes.trailing_zeros() / 8) as usize;
            // Just after where the quote now is: its double, then the rest of the word. (At most
            // 7 + 7 + 1: the mask changes nothing but shows the compiler the bounds.)
            let to = (byte + added + 1) & 15;
            window[to..to + 8].copy_from_slice(&(word >> (8 * byte)).to_le_bytes());
            added += 1;
            quotes &= quotes - 1;
        }
        at += 8 + added;
    }
    for &b in words.remainder() {
        room[at] = b;
        room[at + 1] = b'"';
        at += 1 + usize::from(b == b'"');
    }
    room[at] = b'"';
    out.truncate(start + at + 1);
}

/// The high bit of each byte of `word` that is a quote, and no other bit. Exact (no carry crosses a
/// byte): `x & 0x7f.. + 0x7f..` sets a byte's high bit when its low seven bits are not all zero.
fn quote_mask(word: u64) -> u64 {
    const QUOTES: u64 = u64::from_ne_bytes([b'"'; 8]);
    const LOW_SEVEN: u64 = u64::from_ne_bytes([0x7f; 8]);
    let x = word ^ QUOTES;
    !(((x & LOW_SEVEN) + LOW_SEVEN) | x | LOW_SEVEN)
}

/// Writes `n` in decimal at the end of `buf` and returns those bytes: no allocation, no formatter.
fn format_u64(mut n: u64, buf: &mut [u8; 24]) -> &[u8] {
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[at..];
        }
    }
}

fn format_i64(n: i64, buf: &mut [u8; 24]) -> &[u8] {
    let len = format_u64(n.unsigned_abs(), buf).len();
    let start = buf.len() - len;
    if n < 0 {
        buf[start - 1] = b'-';
        return &buf[start - 1..];
    }
    &buf[start..]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    #[test]
    fn fields_are_quoted_exactly_as_the_csv_crate_quotes_them() {
        let fields: [&[u8]; 12] = [
            b"",
            b"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"",
            b"1234567\"12345678\"1234567,\"",
            b"no quote, but a comma past the first eight bytes",
            b"plain",
            br#"{"type":"chat","comment":"say \"hi\", then go"}"#,
            b"\"",
            b"a;b",
            b"line\nbreak",
            b"cr\rhere",
            b"'=1+1",
            "caf\u{e9} \u{2728}".as_bytes(),
        ];
        for delimiter in [b',', b';', b'\t', b'-'] {
            let mut ours = Vec::new();
            for (i, field) in fields.iter().enumerate() {
                if i > 0 {
                    ours.push(delimiter);
                }
                push_field(&mut ours, field, delimiter);
            }
            ours.push(b'\n');
            let mut theirs = csv::WriterBuilder::new()
                .delimiter(delimiter)
                .from_writer(Vec::new());
            theirs.write_record(fields).unwrap();
            assert_eq!(
                String::from_utf8_lossy(&ours),
                String::from_utf8_lossy(&theirs.into_inner().unwrap())
            );
        }
    }

    #[test]
    fn random_fields_are_quoted_exactly_as_the_csv_crate_quotes_them() {
        // Quotes dense, and sparse enough to leave runs of 16 bytes and more without one.
        let dense: &[u8] = b"\"\"\"ab,;\n\r\xc3\xa9{}:";
        let sparse: &[u8] = b"\"abcdefghijklmnopqrstuvwxyz0123456789{}:";
        let mut rng = fastrand::Rng::with_seed(7);
        for n in 0..10_000 {
            let alphabet = if n % 2 == 0 { dense } else { sparse };
            let field: Vec<u8> = (0..rng.usize(0..200))
                .map(|_| alphabet[rng.usize(..alphabet.len())])
                .collect();
            let mut ours = b"x,".to_vec();
            push_field(&mut ours, &field, b',');
            ours.push(b'\n');
            let mut theirs = csv::Writer::from_writer(Vec::new());
            theirs.write_record([&b"x"[..], &field]).unwrap();
            assert_eq!(ours, theirs.into_inner().unwrap(), "{field:?}");
        }
    }

    /// Two lives; events of several types (a gift streak update among them), a claim, a sale.
    fn store() -> Store {
        let store = Store::open_in_memory().unwrap();
        store
            .conn()
            .execute_batch(
                r#"
                INSERT INTO lives (id, host, room_id, source, started_at) VALUES
                    (1, 'shop', 7, 'watch', 0), (2, 'shop', 8, 'watch', 0);
                INSERT INTO buyers VALUES (42, 'anna', 'Anna', NULL, 1000, 5000);
                INSERT INTO events (id, live_id, room_id, msg_id, type, ts, user_id, unique_id, nickname,
                                    comment, gift_id, gift_name, repeat_count, total_diamonds,
                                    gift_streaking, json) VALUES
                    (1, 1, 7, 900, 'chat', 1000, 42, 'anna', 'Anna', 'jp 12', NULL, NULL, NULL, NULL, NULL,
                     '{"type":"chat"}'),
                    (2, 1, 7, 901, 'gift', 2000, 42, 'anna', 'Anna', NULL, 5655, 'Rose', 1, 1, 1,
                     '{"type":"gift","diamond_count":1}'),
                    (3, 1, 7, 902, 'gift', 3000, 42, 'anna', 'Anna', NULL, 5655, 'Rose', 2, 2, 0,
                     '{"type":"gift","diamond_count":1}'),
                    (4, 2, 8, 903, 'member', 4000, 42, 'anna', 'Anna', NULL, NULL, NULL, NULL, NULL, NULL,
                     '{"type":"member","action_id":1}'),
                    (5, 2, 8, 904, 'chat', 5000, 42, 'anna', 'Anna', '=1+1', NULL, NULL, NULL, NULL, NULL,
                     '{"type":"chat"}');
                INSERT INTO events (id, live_id, room_id, msg_id, type, ts, user_id, like_count,
                                    total_like_count, viewer_count, json) VALUES
                    (6, 2, 8, 905, 'like', 6000, 42, 15, 1500, NULL, '{"type":"like"}'),
                    (7, 2, 8, 906, 'social', 7000, 42, NULL, NULL, NULL,
                     '{"type":"social","social_type":"share","share_count":3}'),
                    (8, 2, 8, 907, 'room_user', 8000, NULL, NULL, NULL, 118,
                     '{"type":"room_user","total_viewers":342}');
                INSERT INTO claims (event_id, live_id, room_id, msg_id, buyer_id, item, variant, quantity, raw, ts)
                    VALUES (1, 1, 7, 900, 42, '12', NULL, 1, 'jp 12', 1000);
                INSERT INTO sales (live_id, room_id, buyer_id, claim_id, msg_id, item, quantity,
                                   unit_price_cents, currency, created_at, updated_at)
                    VALUES (1, 7, 42, 1, 900, '12', 3, 1250, 'EUR', 1000, 1000),
                           (1, 7, 42, NULL, NULL, 'yen', 2, 1500, 'JPY', 1000, 1000);
                -- As if each event had been a commit of the writer.
                INSERT INTO event_spans SELECT id, id, ts, ts FROM events;
                "#,
            )
            .unwrap();
        store
    }

    fn export(store: &Store, kind: Kind, filters: Filters, format: CsvFormat) -> String {
        let request = Request {
            kind,
            filters,
            format,
            after_id: 0,
        };
        let mut out = Vec::new();
        write_csv(store.conn(), &request, &mut out, &mut NoProgress).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn text_starting_like_a_formula_gets_a_leading_quote() {
        for text in ["=1+1", "+33 6", "-1", "@SUM(A1)", "\tx", "\rx", "=", "-"] {
            let safe = neutralise(text.as_bytes());
            assert_eq!(&*safe, format!("'{text}").as_bytes(), "{text:?}");
        }
        for text in [
            "",
            "Anna",
            "a=b",
            "1-1",
            " =1",
            "'=x",
            "✨=",
            "{\"v\":1}",
            "\n=1",
        ] {
            assert!(
                matches!(neutralise(text.as_bytes()), Cow::Borrowed(t) if t == text.as_bytes()),
                "{text:?}"
            );
        }
    }

    #[test]
    fn prices_take_the_decimal_mark_and_the_currency_digits() {
        let store = store();
        let comma = export(
            &store,
            Kind::Sales,
            Filters::default(),
            CsvFormat::excel_fr(),
        );
        let mut lines = comma.strip_prefix("\u{feff}").unwrap().lines().skip(1);
        let first: Vec<&str> = lines.next().unwrap().split(';').collect();
        // unit_price, currency, total
        assert_eq!(first[10..13], ["12,50", "EUR", "37,50"]);
        let yen: Vec<&str> = lines.next().unwrap().split(';').collect();
        assert_eq!(yen[10..13], ["1500", "JPY", "3000"]);
        let dot = export(
            &store,
            Kind::Sales,
            Filters::default(),
            CsvFormat::default(),
        );
        assert!(dot.contains(",12.50,EUR,37.50,pending,"), "{dot}");
    }

    /// The header of each kind is what `tiklive export --help` documents.
    #[test]
    fn columns_are_those_the_help_documents() {
        let help = crate::cli::EXPORT_HELP;
        let mut documented: Vec<(String, Vec<String>)> = Vec::new();
        for line in help.lines().skip(1) {
            if !line.starts_with(' ') {
                break;
            }
            let text = match line.find('(') {
                Some(at) => &line[..at],
                None => line,
            };
            if line.starts_with("  ") && !line.starts_with("   ") {
                let (kind, rest) = text.trim().split_once(' ').unwrap();
                documented.push((kind.to_owned(), Vec::new()));
                documented.last_mut().unwrap().1.push(rest.to_owned());
            } else {
                documented.last_mut().unwrap().1.push(text.to_owned());
            }
        }
        let documented: Vec<(String, Vec<String>)> = documented
            .into_iter()
            .map(|(kind, parts)| {
                let columns = parts
                    .concat()
                    .split(',')
                    .map(|c| c.trim().to_owned())
                    .filter(|c| !c.is_empty())
                    .collect();
                (kind, columns)
            })
            .collect();
        let actual: Vec<(String, Vec<String>)> = Kind::ALL
            .iter()
            .map(|k| {
                let columns = k.columns().into_iter().map(str::to_owned).collect();
                (k.name().to_owned(), columns)
            })
            .collect();
        assert_eq!(documented, actual);
    }

    #[test]
    fn every_kind_writes_its_header_then_rows_of_the_same_width_starting_with_the_id() {
        let store = store();
        for kind in Kind::ALL {
            let columns = kind.columns();
            assert_eq!(columns[0], "id", "{kind}");
            let text = export(&store, kind, Filters::default(), CsvFormat::default());
            let rows: Vec<csv::StringRecord> = csv::ReaderBuilder::new()
                .has_headers(false)
                .from_reader(text.as_bytes())
                .records()
                .map(Result::unwrap)
                .collect();
            assert_eq!(rows[0].iter().collect::<Vec<_>>(), columns, "{kind}");
            assert!(rows.len() > 1, "{kind} has rows in the test store");
            assert!(rows.iter().all(|r| r.len() == columns.len()), "{kind}");
        }
        let gifts = export(
            &store,
            Kind::Gifts,
            Filters::default(),
            CsvFormat::default(),
        );
        assert_eq!(
            gifts.lines().skip(1).collect::<Vec<_>>(),
            ["3,1,7,902,1970-01-01T00:00:03.000Z,42,anna,Anna,5655,Rose,2,1,2"],
            "the streak update is left out"
        );
        let text = |kind| export(&store, kind, Filters::default(), CsvFormat::default());
        assert!(text(Kind::Members).ends_with(",anna,Anna,1\n"));
        assert!(text(Kind::Social).ends_with(",42,,,share,3\n"));
        assert!(text(Kind::Viewers).ends_with("\n8,2,8,907,1970-01-01T00:00:08.000Z,118,342\n"));
    }

    #[test]
    fn a_delimiter_found_in_numbers_or_times_gets_them_quoted() {
        let store = store();
        let read = |text: &str, delimiter: u8| -> Vec<csv::StringRecord> {
            csv::ReaderBuilder::new()
                .has_headers(false)
                .delimiter(delimiter)
                .from_reader(text.as_bytes())
                .records()
                .map(Result::unwrap)
                .collect()
        };
        let with = |delimiter| CsvFormat {
            delimiter,
            ..CsvFormat::default()
        };
        let commas = export(&store, Kind::Events, Filters::default(), with(b','));
        assert!(!commas.contains("\"1970"), "times are not quoted: {commas}");
        for delimiter in [b'0', b'9', b'-', b':', b'.', b'T', b'Z', b';'] {
            let text = export(&store, Kind::Events, Filters::default(), with(delimiter));
            assert_eq!(
                read(&text, delimiter),
                read(&commas, b','),
                "{}",
                delimiter as char
            );
        }
    }

    /// Every kind read by id scans its table in id order without sorting: rows stream, whatever the
    /// filters, and memory stays flat.
    #[test]
    fn scans_follow_the_id_and_never_sort() {
        let store = store();
        let all = Filters {
            since_ms: Some(0),
            until_ms: Some(10_000),
            live: Some(1),
            room: Some(7),
            user: Some(42),
        };
        for kind in Kind::ALL
            .into_iter()
            .filter(|k| *k != Kind::Buyers && *k != Kind::Claims)
        {
            for filters in [Filters::default(), all.clone()] {
                let plan = Plan::of(kind);
                let query = plan.query(store.conn(), &filters, 0).unwrap().unwrap();
                let binds: Vec<(&str, &dyn ToSql)> = query
                    .binds
                    .iter()
                    .map(|(name, value)| (*name, value as &dyn ToSql))
                    .collect();
                let mut stmt = store
                    .conn()
                    .prepare(&format!("EXPLAIN QUERY PLAN {}", query.sql))
                    .unwrap();
                let steps: Vec<String> = stmt
                    .query_map(&*binds, |r| r.get(3))
                    .unwrap()
                    .map(Result::unwrap)
                    .collect();
                let alias = plan.table.unwrap().alias();
                assert!(
                    steps[0].starts_with(&format!("SEARCH {alias} USING INTEGER PRIMARY KEY")),
                    "{kind}: {steps:?}"
                );
                assert!(
                    !steps.iter().any(|s| s.contains("TEMP B-TREE")),
                    "{kind}: {steps:?}"
                );
            }
        }
    }

    #[test]
    fn buyers_count_the_events_of_a_time_range_whatever_their_ids() {
        let store = store();
        // Written by hand, with no span, at an id SQLite never gives.
        store
            .conn()
            .execute(
                "INSERT INTO events (id, live_id, room_id, msg_id, type, ts, user_id, json) \
                 VALUES (-3, 1, 7, 899, 'like', 2500, 42, '{}')",
                [],
            )
            .unwrap();
        let window = Filters {
            since_ms: Some(2000),
            until_ms: Some(4000),
            ..Filters::default()
        };
        let csv = export(&store, Kind::Buyers, window, CsvFormat::default());
        let anna = csv.lines().nth(1).unwrap();
        // Events 2, 3 and -3; the claim and sales are at 1000.
        assert!(anna.ends_with(",3,0,0"), "{csv}");
    }

    #[test]
    fn time_and_room_narrow_the_ids_scanned() {
        let store = store();
        let range = |filters: Filters, after: i64| {
            id_range(store.conn(), Table::Events, &filters, Some(after)).unwrap()
        };
        assert_eq!(range(Filters::default(), 0), Some((1, 8)));
        assert_eq!(range(Filters::default(), 3), Some((4, 8)));
        assert_eq!(range(Filters::default(), 8), None);
        let window = Filters {
            since_ms: Some(2000),
            until_ms: Some(4000),
            ..Filters::default()
        };
        assert_eq!(range(window.clone(), 0), Some((2, 3)));
        assert_eq!(range(window, 3), None);
        let room = Filters {
            room: Some(8),
            ..Filters::default()
        };
        assert_eq!(range(room.clone(), 0), Some((4, 8)));
        let plan: String = store
            .conn()
            .query_row(
                "EXPLAIN QUERY PLAN SELECT min(id), max(id) FROM events WHERE room_id = 8",
                [],
                |r| r.get(3),
            )
            .unwrap();
        assert!(
            plan.contains("COVERING INDEX sqlite_autoindex_events_1"),
            "{plan}"
        );
        // Claims have no index holding the room: their whole range is scanned, filtered row by row.
        let claims = id_range(store.conn(), Table::Claims, &room, Some(0)).unwrap();
        let all = id_range(store.conn(), Table::Claims, &Filters::default(), Some(0)).unwrap();
        assert!(all.is_some());
        assert_eq!(claims, all);
        let nothing = Filters {
            since_ms: Some(9000),
            ..Filters::default()
        };
        assert_eq!(range(nothing, 0), None);
    }

    #[test]
    fn delimiters_are_one_ascii_character_but_the_quote() {
        assert_eq!(parse_delimiter(";"), Ok(b';'));
        assert_eq!(parse_delimiter("|"), Ok(b'|'));
        assert_eq!(parse_delimiter("tab"), Ok(b'\t'));
        assert_eq!(parse_delimiter("\\t"), Ok(b'\t'));
        for bad in ["", ";;", "\"", "\n", "\r", "é", "tabs"] {
            assert!(parse_delimiter(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn integers_are_written_in_full() {
        let mut buf = [0u8; 24];
        assert_eq!(format_u64(0, &mut buf), b"0");
        assert_eq!(format_u64(u64::MAX, &mut buf), b"18446744073709551615");
        assert_eq!(format_i64(-1, &mut buf), b"-1");
        assert_eq!(format_i64(i64::MIN, &mut buf), b"-9223372036854775808");
        assert_eq!(format_i64(1250, &mut buf), b"1250");
    }

    #[test]
    fn cursors_belong_to_one_kind_and_move_once_per_export() {
        let store = store();
        let conn = store.conn();
        let cursor = Cursor::load(conn, "daily", Kind::Chat).unwrap();
        assert_eq!(cursor.last_id(), 0);
        let concurrent = Cursor::load(conn, "daily", Kind::Chat).unwrap();
        let written = Written {
            rows: 2,
            last_id: Some(5),
        };
        cursor.advance(conn, &written, 7_000).unwrap();
        let again = Cursor::load(conn, "daily", Kind::Chat).unwrap();
        assert_eq!(again.last_id(), 5);
        // An export that started from the same cursor cannot move it back or twice.
        assert!(matches!(
            concurrent.advance(conn, &written, 7_000),
            Err(ExportError::CursorMoved(name)) if name == "daily"
        ));
        // Nothing new: the cursor stays, stamped with the time of the run.
        again.advance(conn, &Written::default(), 8_000).unwrap();
        let (kind, last_id, updated): (String, i64, i64) = conn
            .query_row(
                "SELECT kind, last_id, updated_at FROM export_cursors WHERE name = 'daily'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        assert_eq!((kind.as_str(), last_id, updated), ("chat", 5, 8_000));
        assert!(matches!(
            Cursor::load(conn, "daily", Kind::Gifts),
            Err(ExportError::Invalid(m)) if m.contains("\"daily\" exports chat")
        ));
        assert!(matches!(
            Cursor::load(conn, "all", Kind::Buyers),
            Err(ExportError::Invalid(_))
        ));
    }

    #[test]
    fn an_incremental_export_writes_only_rows_after_the_cursor() {
        let store = store();
        let request = Request {
            kind: Kind::Events,
            filters: Filters::default(),
            format: CsvFormat::default(),
            after_id: 3,
        };
        let mut out = Vec::new();
        let written = write_csv(store.conn(), &request, &mut out, &mut NoProgress).unwrap();
        assert_eq!(
            written,
            Written {
                rows: 5,
                last_id: Some(8)
            }
        );
        let ids: Vec<&str> = std::str::from_utf8(&out)
            .unwrap()
            .lines()
            .skip(1)
            .map(|l| l.split(',').next().unwrap())
            .collect();
        assert_eq!(ids, ["4", "5", "6", "7", "8"]);
    }
}
