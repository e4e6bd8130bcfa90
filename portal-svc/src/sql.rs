//! One connection type for the two metadata backends: embedded SQLite (the single-node
//! default) and PostgreSQL (shared by several nodes, `--database-url`).
//!
//! [`Conn`] mimics the part of rusqlite the handlers use (`execute`, `query_row` with
//! [`OptionalExtension::optional`], `prepare`/`prepare_cached` with `query_map`,
//! transactions, `row.get(i)`), so every call site is written once. Values cross the
//! boundary as [`Value`] (SQLite's five storage classes); reading converts them the way
//! rusqlite does (an integer column read as `bool` is `!= 0`), and PostgreSQL's typed
//! columns (`BIGINT`, `BOOLEAN` from a comparison, `NUMERIC` from `sum`) come back as
//! the same classes, so a handler cannot tell the backends apart.
//!
//! SQL is written once in the dialect both accept (SQLite ≥ 3.35: `RETURNING`,
//! `ON CONFLICT ... DO NOTHING/UPDATE`, `?N` placeholders, rewritten to `$N` for
//! PostgreSQL once per statement and connection, see [`crate::pg`]).

use std::cell::{Cell, RefCell};

/// Every failure of the metadata database.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// `query_row` found no row ([`OptionalExtension::optional`] turns it into `None`).
    NoRows,
    /// SQLite failed.
    Sqlite(rusqlite::Error),
    /// PostgreSQL failed (the message never holds the connection's password).
    Postgres(postgres::Error),
    /// A stored value could not be read as the type asked for (column index, why).
    Conversion(usize, String),
    /// A value could not be bound (an integer out of `i64`), or the pool failed.
    Other(String),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::NoRows => write!(f, "query returned no rows"),
            Error::Sqlite(e) => write!(f, "sqlite: {e}"),
            Error::Postgres(e) => match e.as_db_error() {
                Some(db) => write!(f, "postgres: {} ({})", db.message(), db.code().code()),
                None => write!(f, "postgres: {e}"),
            },
            Error::Conversion(i, why) => write!(f, "column {i}: {why}"),
            Error::Other(why) => write!(f, "{why}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Error {
        match e {
            rusqlite::Error::QueryReturnedNoRows => Error::NoRows,
            e => Error::Sqlite(e),
        }
    }
}

impl From<postgres::Error> for Error {
    fn from(e: postgres::Error) -> Error {
        Error::Postgres(e)
    }
}

impl Error {
    /// A stored value that does not parse as what it should be (column `index`).
    pub fn conversion(index: usize, why: impl std::fmt::Display) -> Error {
        Error::Conversion(index, why.to_string())
    }

    /// Whether this is a UNIQUE (or primary key) violation.
    pub fn is_unique_violation(&self) -> bool {
        match self {
            Error::Sqlite(rusqlite::Error::SqliteFailure(f, _)) => matches!(
                f.extended_code,
                rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE | rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
            ),
            Error::Postgres(e) => e.code() == Some(&postgres::error::SqlState::UNIQUE_VIOLATION),
            _ => false,
        }
    }
}

/// The result of a database call.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// `query_row`'s "no row" as `None`.
pub trait OptionalExtension<T> {
    /// `Ok(None)` for [`Error::NoRows`].
    fn optional(self) -> Result<Option<T>>;
}

impl<T> OptionalExtension<T> for Result<T> {
    fn optional(self) -> Result<Option<T>> {
        match self {
            Ok(v) => Ok(Some(v)),
            Err(Error::NoRows) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// A value as stored: SQLite's storage classes, which PostgreSQL's columns map onto.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Integer(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

/// What can be bound as a parameter.
pub trait ToSql {
    /// The value to bind.
    fn to_value(&self) -> Result<Value>;
}

impl<T: ToSql + ?Sized> ToSql for &T {
    fn to_value(&self) -> Result<Value> {
        (**self).to_value()
    }
}

impl<T: ToSql> ToSql for Option<T> {
    fn to_value(&self) -> Result<Value> {
        self.as_ref().map_or(Ok(Value::Null), ToSql::to_value)
    }
}

impl ToSql for Value {
    fn to_value(&self) -> Result<Value> {
        Ok(self.clone())
    }
}

macro_rules! to_sql_int {
    ($($t:ty),*) => {$(
        impl ToSql for $t {
            fn to_value(&self) -> Result<Value> {
                i64::try_from(*self).map(Value::Integer).map_err(|_| Error::Other(format!("{self} is out of range")))
            }
        }
    )*};
}
to_sql_int!(i64, i32, i16, i8, u32, u16, u8, u64, usize);

impl ToSql for bool {
    fn to_value(&self) -> Result<Value> {
        Ok(Value::Integer(i64::from(*self)))
    }
}

impl ToSql for f64 {
    fn to_value(&self) -> Result<Value> {
        Ok(Value::Real(*self))
    }
}

impl ToSql for str {
    fn to_value(&self) -> Result<Value> {
        Ok(Value::Text(self.to_string()))
    }
}

impl ToSql for String {
    fn to_value(&self) -> Result<Value> {
        Ok(Value::Text(self.clone()))
    }
}

impl ToSql for [u8] {
    fn to_value(&self) -> Result<Value> {
        Ok(Value::Blob(self.to_vec()))
    }
}

impl ToSql for Vec<u8> {
    fn to_value(&self) -> Result<Value> {
        Ok(Value::Blob(self.clone()))
    }
}

impl<const N: usize> ToSql for [u8; N] {
    fn to_value(&self) -> Result<Value> {
        Ok(Value::Blob(self.to_vec()))
    }
}

/// What a column can be read as.
pub trait FromSql: Sized {
    /// `value` as `Self`, or why not.
    fn from_value(value: &Value) -> Result<Self, String>;
}

impl<T: FromSql> FromSql for Option<T> {
    fn from_value(value: &Value) -> Result<Self, String> {
        match value {
            Value::Null => Ok(None),
            v => T::from_value(v).map(Some),
        }
    }
}

macro_rules! from_sql_int {
    ($($t:ty),*) => {$(
        impl FromSql for $t {
            fn from_value(value: &Value) -> Result<Self, String> {
                match value {
                    Value::Integer(i) => <$t>::try_from(*i).map_err(|_| format!("{i} is out of range")),
                    other => Err(format!("{other:?} is not an integer")),
                }
            }
        }
    )*};
}
from_sql_int!(i64, i32, i16, u32, u16, u8, u64, usize);

impl FromSql for bool {
    fn from_value(value: &Value) -> Result<Self, String> {
        match value {
            Value::Integer(i) => Ok(*i != 0),
            other => Err(format!("{other:?} is not a boolean")),
        }
    }
}

impl FromSql for f64 {
    fn from_value(value: &Value) -> Result<Self, String> {
        match value {
            Value::Real(f) => Ok(*f),
            // Precision beyond 2^53 is not a concern for the sums read as reals.
            #[allow(clippy::cast_precision_loss)]
            Value::Integer(i) => Ok(*i as f64),
            other => Err(format!("{other:?} is not a number")),
        }
    }
}

impl FromSql for String {
    fn from_value(value: &Value) -> Result<Self, String> {
        match value {
            Value::Text(s) => Ok(s.clone()),
            other => Err(format!("{other:?} is not text")),
        }
    }
}

impl FromSql for Vec<u8> {
    fn from_value(value: &Value) -> Result<Self, String> {
        match value {
            Value::Blob(b) => Ok(b.clone()),
            other => Err(format!("{other:?} is not a blob")),
        }
    }
}

impl<const N: usize> FromSql for [u8; N] {
    fn from_value(value: &Value) -> Result<Self, String> {
        match value {
            Value::Blob(b) => b.as_slice().try_into().map_err(|_| format!("a blob of {} bytes, not {N}", b.len())),
            other => Err(format!("{other:?} is not a blob")),
        }
    }
}

impl FromSql for Value {
    fn from_value(value: &Value) -> Result<Self, String> {
        Ok(value.clone())
    }
}

/// A column index.
pub trait RowIndex {
    /// The index.
    fn index(self) -> usize;
}

impl RowIndex for usize {
    fn index(self) -> usize {
        self
    }
}

/// One row of a result.
#[derive(Debug, Clone, Copy)]
pub struct Row<'a> {
    values: &'a [Value],
}

impl Row<'_> {
    /// Column `index` as `T`.
    pub fn get<I: RowIndex, T: FromSql>(&self, index: I) -> Result<T> {
        let i = index.index();
        let value = self.values.get(i).ok_or_else(|| Error::conversion(i, "no such column"))?;
        T::from_value(value).map_err(|why| Error::Conversion(i, why))
    }
}

/// Parameters of a statement: `[]`, `[a]`, `[a, b]` (one type), or [`params!`](crate::params).
pub trait Params {
    /// The values to bind, in order.
    fn values(self) -> Result<Vec<Value>>;
}

impl Params for [&dyn ToSql; 0] {
    fn values(self) -> Result<Vec<Value>> {
        Ok(Vec::new())
    }
}

impl Params for &[&dyn ToSql] {
    fn values(self) -> Result<Vec<Value>> {
        self.iter().map(|p| p.to_value()).collect()
    }
}

macro_rules! params_array {
    ($($n:literal),*) => {$(
        impl<T: ToSql> Params for [T; $n] {
            fn values(self) -> Result<Vec<Value>> {
                self.iter().map(ToSql::to_value).collect()
            }
        }
    )*};
}
params_array!(1, 2, 3, 4, 5, 6, 7, 8);

macro_rules! params_tuple {
    ($(($($t:ident $i:tt),+)),*) => {$(
        impl<$($t: ToSql),+> Params for ($($t,)+) {
            fn values(self) -> Result<Vec<Value>> {
                Ok(vec![$(self.$i.to_value()?),+])
            }
        }
    )*};
}
params_tuple!((A 0), (A 0, B 1), (A 0, B 1, C 2), (A 0, B 1, C 2, D 3));

/// Parameters of mixed types, as rusqlite's `params!`.
#[macro_export]
macro_rules! params {
    () => { &[] as &[&dyn $crate::sql::ToSql] };
    ($($p:expr),+ $(,)?) => { &[$(&$p as &dyn $crate::sql::ToSql),+] as &[&dyn $crate::sql::ToSql] };
}

/// The two backends.
pub(crate) enum Backend {
    Sqlite(rusqlite::Connection),
    Postgres(RefCell<Box<crate::pg::PgConn>>),
}

/// A connection to the metadata database (see the module's documentation).
pub struct Conn {
    pub(crate) backend: Backend,
    /// PostgreSQL: inside `BEGIN ... COMMIT` (SQLite knows it itself).
    in_tx: Cell<bool>,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.backend {
            Backend::Sqlite(_) => "Conn(sqlite)",
            Backend::Postgres(_) => "Conn(postgres)",
        })
    }
}

/// Rows read at most by one `query_row` (it answers the first).
const QUERY_ROW_ROWS_MAX: usize = 1;

impl Conn {
    /// A connection on SQLite.
    pub fn sqlite(conn: rusqlite::Connection) -> Conn {
        Conn { backend: Backend::Sqlite(conn), in_tx: Cell::new(false) }
    }

    /// A connection on a new in-memory SQLite database (tests).
    pub fn open_in_memory() -> Result<Conn> {
        Ok(Conn::sqlite(rusqlite::Connection::open_in_memory()?))
    }

    pub(crate) fn postgres(conn: crate::pg::PgConn) -> Conn {
        Conn { backend: Backend::Postgres(RefCell::new(Box::new(conn))), in_tx: Cell::new(false) }
    }

    /// Whether this is SQLite (for what only SQLite has: pragmas, `VACUUM`, backups).
    pub fn is_sqlite(&self) -> bool {
        matches!(self.backend, Backend::Sqlite(_))
    }

    /// The SQLite connection, when this is one.
    pub fn as_sqlite(&self) -> Option<&rusqlite::Connection> {
        match &self.backend {
            Backend::Sqlite(c) => Some(c),
            Backend::Postgres(_) => None,
        }
    }

    /// Runs `sql` (statements without parameters, separated by `;`).
    pub fn execute_batch(&self, sql: &str) -> Result<()> {
        match &self.backend {
            Backend::Sqlite(c) => Ok(c.execute_batch(sql)?),
            Backend::Postgres(c) => c.borrow_mut().batch(sql),
        }
    }

    /// Runs one statement; returns the rows it changed.
    pub fn execute<P: Params>(&self, sql: &str, params: P) -> Result<usize> {
        let values = params.values()?;
        match &self.backend {
            Backend::Sqlite(c) => Ok(c.prepare_cached(sql)?.execute(rusqlite::params_from_iter(values.iter()))?),
            Backend::Postgres(c) => c.borrow_mut().execute(sql, &values),
        }
    }

    /// The first row of a query, through `f`; [`Error::NoRows`] without one.
    pub fn query_row<T, P: Params, F: FnOnce(&Row<'_>) -> Result<T>>(&self, sql: &str, params: P, f: F) -> Result<T> {
        let rows = self.rows(sql, params.values()?, Some(QUERY_ROW_ROWS_MAX))?;
        let first = rows.first().ok_or(Error::NoRows)?;
        f(&Row { values: first })
    }

    /// A statement to run (SQLite caches the compiled statement, PostgreSQL the
    /// prepared one, per connection).
    pub fn prepare(&self, sql: &str) -> Result<Statement<'_>> {
        Ok(Statement { conn: self, sql: sql.to_string() })
    }

    /// The same as [`Conn::prepare`] (both are cached).
    pub fn prepare_cached(&self, sql: &str) -> Result<Statement<'_>> {
        self.prepare(sql)
    }

    /// Whether no transaction is open.
    pub fn is_autocommit(&self) -> bool {
        match &self.backend {
            Backend::Sqlite(c) => c.is_autocommit(),
            Backend::Postgres(_) => !self.in_tx.get(),
        }
    }

    /// Sets an SQLite pragma; nothing on PostgreSQL (whose durability and constraints
    /// are the server's).
    pub fn pragma_update(&self, _schema: Option<&str>, name: &str, value: &str) -> Result<()> {
        match &self.backend {
            Backend::Sqlite(c) => Ok(c.pragma_update(None, name, value)?),
            Backend::Postgres(_) => Ok(()),
        }
    }

    /// Whether the table `name` exists.
    pub fn table_exists(&self, name: &str) -> Result<bool> {
        let sql = match self.backend {
            Backend::Sqlite(_) => "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = ?1",
            Backend::Postgres(_) => "SELECT to_regclass(?1) IS NOT NULL",
        };
        self.query_row(sql, [name], |row| row.get(0))
    }

    /// A transaction that writes (see [`crate::db::write_tx`]): SQLite takes its write
    /// lock at once (`BEGIN IMMEDIATE`); PostgreSQL takes the metadata's advisory write
    /// lock, so writers on every node are serialized as SQLite's are.
    pub fn transaction(&mut self) -> Result<Transaction<'_>> {
        self.begin()?;
        Ok(Transaction { conn: self, open: true })
    }

    fn begin(&self) -> Result<()> {
        match &self.backend {
            Backend::Sqlite(c) => c.execute_batch("BEGIN IMMEDIATE")?,
            Backend::Postgres(c) => c.borrow_mut().begin_write()?,
        }
        self.in_tx.set(true);
        Ok(())
    }

    /// Ends the transaction with `sql` (`COMMIT` or `ROLLBACK`); a failed `COMMIT` is
    /// rolled back, so the connection is never left inside a transaction.
    fn end(&self, sql: &str) -> Result<()> {
        self.in_tx.set(false);
        let ended = self.execute_batch(sql);
        if ended.is_err() && sql == "COMMIT" && !self.is_autocommit_now() {
            let _ = self.execute_batch("ROLLBACK");
        }
        ended
    }

    /// Whether the backend is outside a transaction now (after a failed `COMMIT`).
    fn is_autocommit_now(&self) -> bool {
        match &self.backend {
            Backend::Sqlite(c) => c.is_autocommit(),
            // A failed COMMIT ends a PostgreSQL transaction (rolled back) by itself.
            Backend::Postgres(_) => true,
        }
    }

    /// Runs `f` in a write transaction on this connection (no other may be open):
    /// committed when it returns `Ok`, rolled back otherwise.
    pub fn in_write_tx<T, E: From<Error>>(&self, f: impl FnOnce(&Conn) -> Result<T, E>) -> Result<T, E> {
        self.begin()?;
        match f(self) {
            Ok(v) => {
                self.end("COMMIT")?;
                Ok(v)
            }
            Err(e) => {
                if let Err(rollback) = self.end("ROLLBACK") {
                    tracing::error!(error = %rollback, "rollback failed");
                }
                Err(e)
            }
        }
    }

    /// Runs `f` as SQLite runs every handler's call: alone. Nothing to do on SQLite (the
    /// calls share one connection behind a mutex); on PostgreSQL `f` holds the
    /// metadata's advisory lock ([`crate::pg::WRITE_LOCK`]) throughout, released after
    /// it even if it panics, so calls on every node and connection do not interleave.
    pub fn exclusive<T>(&mut self, f: impl FnOnce(&mut Conn) -> T) -> Result<T> {
        let Backend::Postgres(c) = &self.backend else {
            return Ok(f(self));
        };
        c.borrow_mut().lock_session()?;
        struct Unlock<'a>(&'a mut Conn);
        impl Drop for Unlock<'_> {
            fn drop(&mut self) {
                if let Backend::Postgres(c) = &self.0.backend
                    && let Err(e) = c.borrow_mut().unlock_session()
                {
                    tracing::error!(error = %e, "cannot release the metadata lock");
                }
            }
        }
        let guard = Unlock(self);
        Ok(f(guard.0))
    }

    fn rows(&self, sql: &str, values: Vec<Value>, max: Option<usize>) -> Result<Vec<Vec<Value>>> {
        match &self.backend {
            Backend::Sqlite(c) => {
                let mut stmt = c.prepare_cached(sql)?;
                let columns = stmt.column_count();
                let mut rows = stmt.query(rusqlite::params_from_iter(values.iter()))?;
                let mut out = Vec::new();
                while let Some(row) = rows.next()? {
                    let mut values = Vec::with_capacity(columns);
                    for i in 0..columns {
                        values.push(from_sqlite(row.get_ref(i)?));
                    }
                    out.push(values);
                    if max.is_some_and(|max| out.len() >= max) {
                        break;
                    }
                }
                Ok(out)
            }
            Backend::Postgres(c) => c.borrow_mut().query(sql, &values),
        }
    }
}

fn from_sqlite(v: rusqlite::types::ValueRef<'_>) -> Value {
    use rusqlite::types::ValueRef;
    match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::Integer(i),
        ValueRef::Real(f) => Value::Real(f),
        ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => Value::Blob(b.to_vec()),
    }
}

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(ToSqlOutput::Borrowed(match self {
            Value::Null => ValueRef::Null,
            Value::Integer(i) => ValueRef::Integer(*i),
            Value::Real(f) => ValueRef::Real(*f),
            Value::Text(s) => ValueRef::Text(s.as_bytes()),
            Value::Blob(b) => ValueRef::Blob(b),
        }))
    }
}

/// A statement of a connection.
#[derive(Debug)]
pub struct Statement<'c> {
    conn: &'c Conn,
    sql: String,
}

impl Statement<'_> {
    /// Runs it; returns the rows it changed.
    pub fn execute<P: Params>(&mut self, params: P) -> Result<usize> {
        self.conn.execute(&self.sql, params)
    }

    /// Its first row through `f`.
    pub fn query_row<T, P: Params, F: FnOnce(&Row<'_>) -> Result<T>>(&mut self, params: P, f: F) -> Result<T> {
        self.conn.query_row(&self.sql, params, f)
    }

    /// Every row through `f` (read in full first).
    pub fn query_map<T, P: Params, F: FnMut(&Row<'_>) -> Result<T>>(
        &mut self,
        params: P,
        mut f: F,
    ) -> Result<std::vec::IntoIter<Result<T>>> {
        let rows = self.conn.rows(&self.sql, params.values()?, None)?;
        Ok(rows.iter().map(|values| f(&Row { values })).collect::<Vec<_>>().into_iter())
    }

    /// Every row, to step through with [`Rows::next`].
    pub fn query<P: Params>(&mut self, params: P) -> Result<Rows> {
        Ok(Rows { rows: self.conn.rows(&self.sql, params.values()?, None)?, next: 0 })
    }

    /// Whether it returns a row.
    pub fn exists<P: Params>(&mut self, params: P) -> Result<bool> {
        Ok(!self.conn.rows(&self.sql, params.values()?, Some(1))?.is_empty())
    }
}

/// The rows of [`Statement::query`].
#[derive(Debug)]
pub struct Rows {
    rows: Vec<Vec<Value>>,
    next: usize,
}

impl Rows {
    /// The next row.
    #[allow(clippy::should_implement_trait)] // rusqlite's shape: a fallible `next`
    pub fn next(&mut self) -> Result<Option<Row<'_>>> {
        let row = self.rows.get(self.next).map(|values| Row { values });
        self.next += 1;
        Ok(row)
    }
}

/// An open write transaction; rolled back when dropped without [`Transaction::commit`].
#[derive(Debug)]
pub struct Transaction<'c> {
    conn: &'c mut Conn,
    open: bool,
}

impl Transaction<'_> {
    /// Commits it.
    pub fn commit(mut self) -> Result<()> {
        self.open = false;
        self.conn.end("COMMIT")
    }
}

impl std::ops::Deref for Transaction<'_> {
    type Target = Conn;

    fn deref(&self) -> &Conn {
        self.conn
    }
}

impl Drop for Transaction<'_> {
    fn drop(&mut self) {
        if self.open
            && let Err(e) = self.conn.end("ROLLBACK")
        {
            tracing::error!(error = %e, "rollback failed");
        }
    }
}
