//! A prepared statement driven through SQLite's C API, for the two loops that run once per row at full
//! speed: the writer's `events` INSERT and the export's SELECT. rusqlite copies every text it binds
//! (SQLITE_TRANSIENT: an allocation and a copy of each event's JSON line), binds each NULL by a call,
//! and checks the column count and type again for every value it reads. In the writer that was a tenth
//! of its instructions; the export's reading thread went from 62 % to 55 % of the export's samples.
//! This is the crate's only `unsafe` SQLite code; what it hands out is safe to use.

use std::ffi::{CStr, CString, c_int};
use std::marker::PhantomData;
use std::ptr::NonNull;

use rusqlite::types::ValueRef;
use rusqlite::{Connection, ffi};

/// A statement of `conn`, finalized when dropped (it borrows the connection, so it cannot outlive it).
pub struct RawStatement<'conn> {
    db: NonNull<ffi::sqlite3>,
    stmt: NonNull<ffi::sqlite3_stmt>,
    columns: c_int,
    /// Whether the last step gave a row (the columns are readable only then).
    on_row: bool,
    _conn: PhantomData<&'conn Connection>,
}

/// Binds the parameters of one [`RawStatement::execute`] to values that outlive that call; unbound
/// parameters are NULL. The first error is kept and the binds after it are skipped.
pub struct Binder<'value> {
    db: NonNull<ffi::sqlite3>,
    stmt: NonNull<ffi::sqlite3_stmt>,
    result: rusqlite::Result<()>,
    _values: PhantomData<&'value str>,
}

impl<'conn> RawStatement<'conn> {
    pub fn prepare(conn: &'conn Connection, sql: &str) -> rusqlite::Result<RawStatement<'conn>> {
        let sql = CString::new(sql).map_err(rusqlite::Error::NulError)?;
        // SAFETY: the handle is `conn`'s, open for 'conn; the statement is finalized in `drop`.
        unsafe {
            let db = NonNull::new(conn.handle()).expect("an open connection has a handle");
            let mut stmt = std::ptr::null_mut();
            let rc = ffi::sqlite3_prepare_v2(
                db.as_ptr(),
                sql.as_ptr(),
                -1,
                &mut stmt,
                std::ptr::null_mut(),
            );
            match (rc, NonNull::new(stmt)) {
                (ffi::SQLITE_OK, Some(stmt)) => Ok(RawStatement {
                    db,
                    stmt,
                    columns: ffi::sqlite3_column_count(stmt.as_ptr()),
                    on_row: false,
                    _conn: PhantomData,
                }),
                // SQL without a statement (empty, or only a comment).
                (ffi::SQLITE_OK, None) => Err(rusqlite::Error::SqliteFailure(
                    ffi::Error::new(ffi::SQLITE_MISUSE),
                    Some("no SQL statement to prepare".into()),
                )),
                (rc, stmt) => {
                    let err = error(db, rc);
                    if let Some(stmt) = stmt {
                        ffi::sqlite3_finalize(stmt.as_ptr());
                    }
                    Err(err)
                }
            }
        }
    }

    /// Binds with `bind`, runs the statement (an INSERT, UPDATE or DELETE: one that returns no rows)
    /// and returns how many rows it changed. Texts are bound in place, not copied: the bindings are
    /// cleared before this returns or unwinds, while the values (which outlive the call) are still
    /// there.
    pub fn execute<'value>(
        &mut self,
        bind: impl FnOnce(&mut Binder<'value>),
    ) -> rusqlite::Result<u64> {
        /// Resets the statement and clears its bindings when dropped, so that no pointer to a bound
        /// text survives this call, even when `bind` panics.
        struct Clear(NonNull<ffi::sqlite3_stmt>);
        impl Drop for Clear {
            fn drop(&mut self) {
                // SAFETY: a live statement. Reset returns the step's error again, already taken.
                unsafe {
                    ffi::sqlite3_reset(self.0.as_ptr());
                    ffi::sqlite3_clear_bindings(self.0.as_ptr());
                }
            }
        }
        let _clear = Clear(self.stmt);
        self.on_row = false;
        // 'value, a lifetime parameter of this call, lasts at least until it returns.
        let mut binder = Binder {
            db: self.db,
            stmt: self.stmt,
            result: Ok(()),
            _values: PhantomData,
        };
        bind(&mut binder);
        let bound = binder.result;
        bound.and_then(|()| match self.step_raw() {
            // SAFETY: a live connection; the statement has completed, so the count is its own.
            ffi::SQLITE_DONE => Ok(unsafe { ffi::sqlite3_changes64(self.db.as_ptr()) } as u64),
            ffi::SQLITE_ROW => Err(rusqlite::Error::ExecuteReturnedResults),
            rc => Err(error(self.db, rc)),
        })
    }

    /// Binds `value` to the parameter called `name` (with its `:`), copying nothing that could dangle.
    pub fn bind_named(&mut self, name: &str, value: i64) -> rusqlite::Result<()> {
        let cname = CString::new(name).map_err(rusqlite::Error::NulError)?;
        // SAFETY: a live statement and a NUL-terminated name.
        let index =
            unsafe { ffi::sqlite3_bind_parameter_index(self.stmt.as_ptr(), cname.as_ptr()) };
        if index == 0 {
            return Err(rusqlite::Error::InvalidParameterName(name.to_owned()));
        }
        // SAFETY: a live statement and an index it has.
        check(self.db, unsafe {
            ffi::sqlite3_bind_int64(self.stmt.as_ptr(), index, value)
        })
    }

    /// Steps to the next row: `false` once there is none.
    pub fn next_row(&mut self) -> rusqlite::Result<bool> {
        let rc = self.step_raw();
        self.on_row = rc == ffi::SQLITE_ROW;
        match rc {
            ffi::SQLITE_ROW => Ok(true),
            ffi::SQLITE_DONE => Ok(false),
            rc => Err(error(self.db, rc)),
        }
    }

    /// How many columns each row has.
    pub fn column_count(&self) -> usize {
        usize::try_from(self.columns).unwrap_or(0)
    }

    /// Column `index` of the current row, valid until the next step. (Inlined: the export's reading
    /// thread calls it for every value, and the call took 15 % of that thread's instructions.)
    #[inline]
    pub fn column(&self, index: usize) -> rusqlite::Result<ValueRef<'_>> {
        let i = match c_int::try_from(index) {
            Ok(i) if i < self.columns => i,
            _ => return Err(rusqlite::Error::InvalidColumnIndex(index)),
        };
        if !self.on_row {
            return Err(rusqlite::Error::QueryReturnedNoRows);
        }
        // SAFETY: a live statement on a row, and a column it has. The value is read through the
        // `sqlite3_value` interfaces (one column look-up instead of one per call: a tenth of the
        // export's reading thread). SQLite calls that value "unprotected", which only means that no
        // connection mutex is held for it: this connection is used by one thread at a time (`&self`
        // borrows it, and rusqlite's `Connection` is not `Sync`). The text or blob pointer is read
        // before its length, as SQLite asks, and stays valid until the next step, which needs
        // `&mut self`.
        unsafe {
            let value = ffi::sqlite3_column_value(self.stmt.as_ptr(), i);
            Ok(match ffi::sqlite3_value_type(value) {
                ffi::SQLITE_INTEGER => ValueRef::Integer(ffi::sqlite3_value_int64(value)),
                ffi::SQLITE_FLOAT => ValueRef::Real(ffi::sqlite3_value_double(value)),
                ffi::SQLITE_TEXT => {
                    ValueRef::Text(self.bytes(ffi::sqlite3_value_text(value), value)?)
                }
                ffi::SQLITE_BLOB => {
                    ValueRef::Blob(self.bytes(ffi::sqlite3_value_blob(value).cast(), value)?)
                }
                _ => ValueRef::Null,
            })
        }
    }

    /// The bytes at `data`, SQLite's buffer for the column `value` of the current row.
    ///
    /// # Safety
    /// `data` is what `sqlite3_value_text` or `_blob` just returned for `value`, a column of the
    /// current row.
    unsafe fn bytes(
        &self,
        data: *const u8,
        value: *mut ffi::sqlite3_value,
    ) -> rusqlite::Result<&[u8]> {
        // SAFETY: per the contract; SQLite keeps `len` bytes at `data` until the next step.
        unsafe {
            let len = usize::try_from(ffi::sqlite3_value_bytes(value)).unwrap_or(0);
            match (data.is_null(), len) {
                (false, len) => Ok(std::slice::from_raw_parts(data, len)),
                // An empty blob has no pointer.
                (true, 0) => Ok(&[]),
                // A value SQLite could not convert: out of memory.
                (true, _) => Err(error(self.db, ffi::SQLITE_NOMEM)),
            }
        }
    }

    fn step_raw(&mut self) -> c_int {
        // SAFETY: a live statement, used by this thread only (`&mut self`).
        unsafe { ffi::sqlite3_step(self.stmt.as_ptr()) }
    }
}

impl Drop for RawStatement<'_> {
    fn drop(&mut self) {
        // SAFETY: prepared on the connection this borrows, still open.
        unsafe {
            ffi::sqlite3_finalize(self.stmt.as_ptr());
        }
    }
}

impl<'value> Binder<'value> {
    /// Parameter `index` (from 1) is `value`; `None` leaves it NULL.
    pub fn int(&mut self, index: c_int, value: Option<i64>) {
        if let (Ok(()), Some(value)) = (&self.result, value) {
            // SAFETY: a live statement; SQLite refuses an index it does not have with an error.
            let rc = unsafe { ffi::sqlite3_bind_int64(self.stmt.as_ptr(), index, value) };
            self.result = check(self.db, rc);
        }
    }

    /// Parameter `index` (from 1) is `value`, bound in place; `None` leaves it NULL.
    pub fn text(&mut self, index: c_int, value: Option<&'value str>) {
        if let (Ok(()), Some(value)) = (&self.result, value) {
            // SAFETY: as for `int`; `value` outlives the `execute` call that clears this binding.
            let rc = unsafe {
                ffi::sqlite3_bind_text64(
                    self.stmt.as_ptr(),
                    index,
                    value.as_ptr().cast(),
                    value.len() as u64,
                    ffi::SQLITE_STATIC(),
                    ffi::SQLITE_UTF8 as u8,
                )
            };
            self.result = check(self.db, rc);
        }
    }
}

fn check(db: NonNull<ffi::sqlite3>, rc: c_int) -> rusqlite::Result<()> {
    match rc {
        ffi::SQLITE_OK => Ok(()),
        rc => Err(error(db, rc)),
    }
}

/// rusqlite's error for result code `rc`, with the connection's message.
fn error(db: NonNull<ffi::sqlite3>, rc: c_int) -> rusqlite::Error {
    // SAFETY: a live connection; errmsg returns a NUL-terminated string it owns, copied at once.
    let message = unsafe {
        let text = ffi::sqlite3_errmsg(db.as_ptr());
        (!text.is_null()).then(|| CStr::from_ptr(text).to_string_lossy().into_owned())
    };
    rusqlite::Error::SqliteFailure(ffi::Error::new(rc), message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn() -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE t (id INTEGER PRIMARY KEY, n INTEGER, s TEXT NOT NULL UNIQUE, r REAL, b BLOB)",
        )
        .unwrap();
        conn
    }

    #[test]
    fn execute_binds_in_place_and_leaves_the_rest_null() {
        let conn = conn();
        let mut insert = RawStatement::prepare(
            &conn,
            "INSERT INTO t (n, s) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
        )
        .unwrap();
        for (n, s) in [(Some(1), "a"), (None, "b"), (Some(3), "a")] {
            let text = format!("{s}é");
            let changed = insert
                .execute(|b| {
                    b.int(1, n);
                    b.text(2, Some(&text));
                })
                .unwrap();
            assert_eq!(changed, u64::from(n != Some(3)), "{n:?} {s}");
        }
        let rows: Vec<(Option<i64>, String)> = conn
            .prepare("SELECT n, s FROM t ORDER BY id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(rows, [(Some(1), "aé".into()), (None, "bé".into())]);
        // A constraint error is returned with SQLite's message, and the statement stays usable.
        let err = insert.execute(|b| b.int(1, Some(9))).unwrap_err();
        assert_eq!(
            err.sqlite_error_code(),
            Some(rusqlite::ErrorCode::ConstraintViolation)
        );
        assert!(err.to_string().contains("NOT NULL"), "{err}");
        let err = insert.execute(|b| b.int(7, Some(1))).unwrap_err();
        assert!(err.to_string().contains("range"), "{err}");
        assert_eq!(insert.execute(|b| b.text(2, Some("c"))).unwrap(), 1);
    }

    #[test]
    fn a_panic_while_binding_leaves_no_text_bound() {
        let conn = conn();
        let mut insert =
            RawStatement::prepare(&conn, "INSERT INTO t (n, s) VALUES (?1, ?2)").unwrap();
        let text = String::from("gone");
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            insert
                .execute(|b| {
                    b.text(2, Some(&text));
                    panic!("while binding");
                })
                .ok()
        }));
        assert!(panicked.is_err());
        drop(text);
        // Parameter 2 was cleared: NOT NULL refuses the row instead of reading freed memory.
        let err = insert.execute(|b| b.int(1, Some(1))).unwrap_err();
        assert!(err.to_string().contains("NOT NULL"), "{err}");
        let mut select = RawStatement::prepare(&conn, "SELECT 1").unwrap();
        assert!(matches!(
            select.execute(|_| {}),
            Err(rusqlite::Error::ExecuteReturnedResults)
        ));
    }

    #[test]
    fn rows_read_every_type_as_rusqlite_does() {
        let conn = conn();
        conn.execute_batch(
            "INSERT INTO t VALUES (1, 5, 'x', 1.5, x'00ff'), (2, NULL, '', NULL, x''), (3, -1, 'z', 0, NULL)",
        )
        .unwrap();
        let sql = "SELECT id, n, s, r, b FROM t WHERE id >= :lo ORDER BY id";
        let mut raw = RawStatement::prepare(&conn, sql).unwrap();
        raw.bind_named(":lo", 2).unwrap();
        assert!(matches!(
            raw.bind_named(":nope", 1),
            Err(rusqlite::Error::InvalidParameterName(_))
        ));
        let mut expected = conn.prepare(sql).unwrap();
        let mut rows = expected.query(rusqlite::named_params! {":lo": 2}).unwrap();
        let mut seen = 0;
        while raw.next_row().unwrap() {
            let row = rows.next().unwrap().unwrap();
            for i in 0..5 {
                assert_eq!(
                    raw.column(i).unwrap(),
                    row.get_ref(i).unwrap(),
                    "row {seen} column {i}"
                );
            }
            assert!(matches!(
                raw.column(5),
                Err(rusqlite::Error::InvalidColumnIndex(5))
            ));
            seen += 1;
        }
        assert_eq!(seen, 2);
        assert!(matches!(
            raw.column(0),
            Err(rusqlite::Error::QueryReturnedNoRows)
        ));
        assert!(rows.next().unwrap().is_none());
        assert!(RawStatement::prepare(&conn, "SELECT nope FROM t").is_err());
        let err = RawStatement::prepare(&conn, " -- nothing").err().unwrap();
        assert!(err.to_string().contains("no SQL statement"), "{err}");
    }
}
