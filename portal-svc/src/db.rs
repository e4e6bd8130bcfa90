//! The portal's metadata (users, clients, sessions, ...), with versioned migrations:
//! in embedded SQLite under the data directory (the single-node default), or in
//! PostgreSQL shared by several nodes (`--database-url`, [`crate::pg`]). Money never
//! lives here: it is in the ledger.
//!
//! Database calls block, so handlers reach a connection ([`Conn`], the same for both
//! backends, [`crate::sql`]) through [`Db::call`], which runs them on tokio's blocking
//! pool. Every statement uses bound parameters.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::error::ApiError;
pub use crate::sql::{Conn, Error, OptionalExtension, Result, Row, Transaction};

/// The connection type handlers are given (the name rusqlite gave it).
pub type Connection = Conn;

/// Migrations in order; the database records how many it has applied. Never edit one
/// that has shipped: add the next.
const MIGRATIONS: &[&str] = &[
    // 1: tenants, people and their sessions.
    "CREATE TABLE clients (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        created_at INTEGER NOT NULL
    );
    CREATE TABLE users (
        id INTEGER PRIMARY KEY,
        email TEXT NOT NULL UNIQUE COLLATE NOCASE,
        password_hash TEXT NOT NULL,
        role TEXT NOT NULL CHECK (role IN ('admin', 'client_admin', 'operator', 'viewer')),
        client_id INTEGER REFERENCES clients(id),
        mfa_secret TEXT,
        mfa_enabled INTEGER NOT NULL DEFAULT 0,
        created_at INTEGER NOT NULL,
        CHECK ((role = 'admin') = (client_id IS NULL))
    );
    CREATE TABLE sessions (
        token_hash BLOB PRIMARY KEY,
        user_id INTEGER NOT NULL REFERENCES users(id),
        expires_at INTEGER NOT NULL,
        created_at INTEGER NOT NULL
    );
    CREATE TABLE login_failures (
        email TEXT NOT NULL COLLATE NOCASE,
        at INTEGER NOT NULL
    );
    CREATE INDEX login_failures_email ON login_failures(email, at);",
    // 2: client applications and their API keys (stored only as hashes).
    "CREATE TABLE applications (
        id INTEGER PRIMARY KEY,
        client_id INTEGER NOT NULL REFERENCES clients(id),
        name TEXT NOT NULL,
        key_lookup TEXT NOT NULL UNIQUE,
        key_hash BLOB NOT NULL,
        revoked_at INTEGER,
        created_at INTEGER NOT NULL
    );",
    // 3: what the ledger does not hold about a transaction, and idempotent responses.
    "CREATE TABLE tx_meta (
        ledger_id BLOB PRIMARY KEY,
        client_id INTEGER NOT NULL,
        description TEXT
    );
    CREATE TABLE idempotency (
        client_id INTEGER NOT NULL,
        key TEXT NOT NULL,
        fingerprint BLOB NOT NULL,
        status INTEGER NOT NULL,
        response TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        PRIMARY KEY (client_id, key)
    );",
    // 4: support tickets and their comments.
    "CREATE TABLE tickets (
        id INTEGER PRIMARY KEY,
        client_id INTEGER NOT NULL REFERENCES clients(id),
        subject TEXT NOT NULL,
        body TEXT NOT NULL,
        priority TEXT NOT NULL CHECK (priority IN ('low', 'normal', 'high', 'urgent')),
        status TEXT NOT NULL CHECK (status IN ('open', 'in_progress', 'waiting', 'resolved', 'closed')),
        assignee_id INTEGER REFERENCES users(id),
        created_by TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
    );
    CREATE INDEX tickets_client ON tickets(client_id, id);
    CREATE TABLE ticket_comments (
        id INTEGER PRIMARY KEY,
        ticket_id INTEGER NOT NULL REFERENCES tickets(id),
        author TEXT NOT NULL,
        body TEXT NOT NULL,
        created_at INTEGER NOT NULL
    );",
    // 5: payment terminals, their groups (shared configuration), heartbeats with
    // diagnostics, and firmware rollouts with per-device progress.
    "CREATE TABLE device_groups (
        id INTEGER PRIMARY KEY,
        client_id INTEGER NOT NULL REFERENCES clients(id),
        name TEXT NOT NULL,
        config TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        UNIQUE (client_id, name)
    );
    CREATE TABLE devices (
        id INTEGER PRIMARY KEY,
        client_id INTEGER NOT NULL REFERENCES clients(id),
        serial TEXT NOT NULL UNIQUE,
        model TEXT NOT NULL,
        group_id INTEGER REFERENCES device_groups(id),
        firmware_version TEXT,
        last_seen INTEGER,
        created_at INTEGER NOT NULL
    );
    CREATE INDEX devices_client ON devices(client_id, id);
    CREATE TABLE device_heartbeats (
        id INTEGER PRIMARY KEY,
        device_id INTEGER NOT NULL REFERENCES devices(id),
        firmware_version TEXT NOT NULL,
        diagnostics TEXT NOT NULL,
        received_at INTEGER NOT NULL
    );
    CREATE INDEX device_heartbeats_device ON device_heartbeats(device_id, id);
    CREATE TABLE rollouts (
        id INTEGER PRIMARY KEY,
        client_id INTEGER NOT NULL REFERENCES clients(id),
        group_id INTEGER NOT NULL REFERENCES device_groups(id),
        version TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('in_progress', 'completed', 'cancelled')),
        created_by TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
    );
    CREATE TABLE rollout_devices (
        rollout_id INTEGER NOT NULL REFERENCES rollouts(id),
        device_id INTEGER NOT NULL REFERENCES devices(id),
        status TEXT NOT NULL CHECK (status IN ('pending', 'installed', 'failed')),
        updated_at INTEGER NOT NULL,
        PRIMARY KEY (rollout_id, device_id)
    );",
    // 6: MFA recovery codes and the last TOTP step accepted per user (a code is never
    // accepted twice), notes on transactions/devices/tickets, and the audit log.
    "ALTER TABLE users ADD COLUMN mfa_last_step INTEGER;
    CREATE TABLE mfa_recovery_codes (
        user_id INTEGER NOT NULL REFERENCES users(id),
        code_hash BLOB NOT NULL,
        used_at INTEGER,
        PRIMARY KEY (user_id, code_hash)
    );
    CREATE TABLE notes (
        id INTEGER PRIMARY KEY,
        client_id INTEGER NOT NULL REFERENCES clients(id),
        resource_type TEXT NOT NULL CHECK (resource_type IN ('transaction', 'device', 'ticket')),
        resource_id TEXT NOT NULL,
        body TEXT NOT NULL,
        author TEXT NOT NULL,
        created_at INTEGER NOT NULL
    );
    CREATE INDEX notes_resource ON notes(client_id, resource_type, resource_id, id);
    CREATE TABLE audit_log (
        id INTEGER PRIMARY KEY,
        client_id INTEGER,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        resource TEXT,
        at INTEGER NOT NULL
    );
    CREATE INDEX audit_log_client ON audit_log(client_id, at);",
    // 7 (issue 15): account lockout and the source address of failed sign-ins; user
    // lifecycle; the audit log's actor, outcome, detail and hash chain (entries from
    // before are chained at start by `audit::seal_legacy`).
    "ALTER TABLE users ADD COLUMN active INTEGER NOT NULL DEFAULT 1;
    ALTER TABLE users ADD COLUMN must_change_password INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE users ADD COLUMN failed_logins INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE users ADD COLUMN locked_until INTEGER;
    ALTER TABLE login_failures ADD COLUMN addr TEXT;
    CREATE INDEX login_failures_addr ON login_failures(addr, at);
    ALTER TABLE audit_log ADD COLUMN actor_type TEXT NOT NULL DEFAULT 'user';
    ALTER TABLE audit_log ADD COLUMN actor_id INTEGER;
    ALTER TABLE audit_log ADD COLUMN resource_type TEXT;
    ALTER TABLE audit_log ADD COLUMN resource_id TEXT;
    ALTER TABLE audit_log ADD COLUMN outcome TEXT NOT NULL DEFAULT 'ok';
    ALTER TABLE audit_log ADD COLUMN detail TEXT;
    ALTER TABLE audit_log ADD COLUMN hash BLOB;
    UPDATE audit_log SET actor_type = 'api_key', actor_id = CAST(substr(actor, 13) AS INTEGER)
        WHERE actor LIKE 'application:%';
    UPDATE audit_log SET actor_id = (SELECT id FROM users WHERE users.email = audit_log.actor)
        WHERE actor_type = 'user';
    UPDATE audit_log SET resource_type = substr(resource, 1, instr(resource, ':') - 1),
        resource_id = substr(resource, instr(resource, ':') + 1) WHERE instr(resource, ':') > 0;
    CREATE INDEX audit_log_action ON audit_log(action, id);",
    // 8 (issue 15): a client may require MFA of all its users.
    "ALTER TABLE clients ADD COLUMN mfa_required INTEGER NOT NULL DEFAULT 0;",
    // 9 (issue 15): a client's time zone (a UTC offset), daily settlement cut-over (and
    // the local day it last ran) and allowed currencies (comma-separated; NULL: all).
    "ALTER TABLE clients ADD COLUMN utc_offset_minutes INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE clients ADD COLUMN settlement_cutover TEXT;
    ALTER TABLE clients ADD COLUMN cutover_done_day TEXT;
    ALTER TABLE clients ADD COLUMN allowed_currencies TEXT;",
    // 10 (issue 15's throughput): the audit entry of a money action while the ledger
    // commits it, outside the chain (`audit::pend`, `audit::recover_pending`).
    "CREATE TABLE audit_pending (
        ledger_id BLOB PRIMARY KEY,
        at INTEGER NOT NULL,
        actor_type TEXT NOT NULL,
        actor_id INTEGER,
        actor TEXT NOT NULL,
        client_id INTEGER,
        action TEXT NOT NULL,
        resource_type TEXT,
        resource_id TEXT,
        detail TEXT
    ) WITHOUT ROWID;",
    // 11 (issue 17): events (money events from the ledger's change feed, one per ledger
    // seq; others inserted with the change that causes them), the feed position the
    // follower has made durable, webhook endpoints (secrets encrypted, `secrets.rs`),
    // their deliveries and every delivery attempt; the `last_seen` of a device whose
    // going offline was announced (`device.offline`; devices offline already, by
    // `routes::devices::ONLINE_SECS`, are taken as announced, so an upgrade does not
    // announce every terminal that went quiet long ago).
    "CREATE TABLE events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        client_id INTEGER NOT NULL,
        type TEXT NOT NULL,
        ledger_seq INTEGER UNIQUE,
        created_at INTEGER NOT NULL,
        object TEXT NOT NULL
    );
    CREATE INDEX events_client ON events(client_id, seq);
    CREATE TABLE event_feed (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        next_seq INTEGER NOT NULL
    );
    CREATE TABLE webhook_endpoints (
        id INTEGER PRIMARY KEY,
        client_id INTEGER NOT NULL REFERENCES clients(id),
        url TEXT NOT NULL,
        events TEXT NOT NULL,
        secret TEXT NOT NULL,
        active INTEGER NOT NULL DEFAULT 1,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
    );
    CREATE INDEX webhook_endpoints_client ON webhook_endpoints(client_id, id);
    CREATE TABLE webhook_deliveries (
        id INTEGER PRIMARY KEY,
        endpoint_id INTEGER NOT NULL REFERENCES webhook_endpoints(id),
        event_seq INTEGER NOT NULL REFERENCES events(seq),
        redelivery INTEGER NOT NULL DEFAULT 0,
        status TEXT NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed')),
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_ms INTEGER NOT NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
    );
    CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries(endpoint_id, id);
    CREATE INDEX webhook_deliveries_pending ON webhook_deliveries(endpoint_id, redelivery, event_seq)
        WHERE status = 'pending';
    CREATE TABLE webhook_attempts (
        id INTEGER PRIMARY KEY,
        delivery_id INTEGER NOT NULL REFERENCES webhook_deliveries(id),
        at_ms INTEGER NOT NULL,
        status_code INTEGER,
        error TEXT,
        latency_ms INTEGER NOT NULL
    );
    CREATE INDEX webhook_attempts_delivery ON webhook_attempts(delivery_id, id);
    ALTER TABLE devices ADD COLUMN offline_announced INTEGER;
    UPDATE devices SET offline_announced = last_seen
        WHERE last_seen < CAST(strftime('%s', 'now') AS INTEGER) - 300;",
    // 12 (issue 15): a client's time zone by IANA name (NULL: the fixed
    // `utc_offset_minutes`, as every client had before; that column then keeps the
    // name's offset when set, a fallback should a later build not know the name).
    "ALTER TABLE clients ADD COLUMN time_zone_name TEXT;",
    // 13: a value sealed under the secrets' key (`secrets::seal_all`): a node started
    // with another key is refused before it seals what the others cannot open.
    "CREATE TABLE secret_check (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        sealed TEXT NOT NULL
    );",
    // 14 (issue 19): one events position per node (`id`: the node's id in cluster
    // mode, 1 for a single node): nodes sharing one metadata database follow their own
    // ledgers, each at its own pace.
    "CREATE TABLE event_feed_per_node (
        id INTEGER PRIMARY KEY CHECK (id >= 1),
        next_seq INTEGER NOT NULL
    );
    INSERT INTO event_feed_per_node (id, next_seq) SELECT id, next_seq FROM event_feed;
    DROP TABLE event_feed;
    ALTER TABLE event_feed_per_node RENAME TO event_feed;",
];

/// A shared handle on the metadata database.
#[derive(Debug, Clone)]
pub struct Db {
    store: Arc<Store>,
    /// The group-committing writer of what money requests keep beside the ledger.
    meta: std::sync::mpsc::Sender<MetaJob>,
}

/// Where the metadata is.
#[derive(Debug)]
enum Store {
    /// One shared connection on the file; readers that must not hold it for long (the
    /// audit chain's verification) open their own on `path`.
    Sqlite { conn: Mutex<Conn>, path: PathBuf },
    /// A pool on the shared database.
    Postgres(crate::pg::Pool),
}

/// A connection of its own, for as long as it is held: an SQLite connection opened for
/// it, or one taken from the PostgreSQL pool.
#[derive(Debug)]
pub enum OwnConn {
    Sqlite(Conn),
    Postgres(r2d2::PooledConnection<crate::pg::Manager>),
}

impl std::ops::Deref for OwnConn {
    type Target = Conn;

    fn deref(&self) -> &Conn {
        match self {
            OwnConn::Sqlite(c) => c,
            OwnConn::Postgres(c) => c,
        }
    }
}

impl std::ops::DerefMut for OwnConn {
    fn deref_mut(&mut self) -> &mut Conn {
        match self {
            OwnConn::Sqlite(c) => c,
            OwnConn::Postgres(c) => c,
        }
    }
}

/// What a money request keeps beside the ledger: a description, and the response of an
/// idempotent request.
#[derive(Debug, Default)]
pub struct MetaWrite {
    /// `(ledger id, client, description)`.
    pub description: Option<(Vec<u8>, i64, String)>,
    /// `(client, key, fingerprint, status, response)`: fills in a row written ahead,
    /// never replaces a complete one.
    pub idempotency: Option<(i64, String, Vec<u8>, u16, String)>,
    /// `(client, key, fingerprint)` written while the ledger commits, status
    /// [`crate::idempotency::AHEAD_STATUS`]: a retry after a crash that lost the
    /// response finds the key's fingerprint and answers from the ledger's record.
    pub idempotency_ahead: Option<(i64, String, Vec<u8>)>,
    /// `(client, key)` whose row written ahead is dropped (the ledger refused it).
    pub forget_idempotency: Option<(i64, String)>,
    /// The money action's audit entry (chained in the group's order).
    pub audit: Option<crate::audit::Entry>,
    /// `(ledger id, client, description)` written before the ledger commit, replacing
    /// any: a crash between the commit and the answer cannot lose it.
    pub description_ahead: Option<(Vec<u8>, i64, String)>,
    /// A ledger id whose description written ahead is dropped (the ledger refused it).
    pub forget_description: Option<Vec<u8>>,
    /// `(ledger id, entry)`: the audit entry the money action will have if the ledger
    /// commits it, written while the ledger commits (`audit::pend`).
    pub pending_audit: Option<(Vec<u8>, crate::audit::Entry)>,
    /// A ledger id whose pending entry is settled by this write's `audit`.
    pub resolved_audit: Option<Vec<u8>>,
}

#[derive(Debug)]
struct MetaJob {
    write: MetaWrite,
    /// `None`: nobody waits (a failed commit is logged; what it held is recovered from
    /// `audit_pending` at the next start).
    done: Option<tokio::sync::oneshot::Sender<Result<(), String>>>,
}

/// A write handed to the metadata writer; await it for its commit.
#[derive(Debug)]
pub struct MetaCommit(Result<tokio::sync::oneshot::Receiver<Result<(), String>>, ApiError>);

impl std::future::IntoFuture for MetaCommit {
    type Output = Result<(), ApiError>;
    type IntoFuture = std::pin::Pin<Box<dyn std::future::Future<Output = Self::Output> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let committed = self.0?;
            committed.await.map_err(|_| ApiError::internal("the metadata writer stopped"))?.map_err(ApiError::internal)
        })
    }
}

/// Waits for a lock held by the other connection rather than failing at once.
const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A connection of its own on the SQLite database at `path`, set up as the shared one.
pub fn connect_own(path: &Path) -> Result<Conn> {
    connect(path)
}

fn connect(path: &Path) -> Result<Conn> {
    let conn = rusqlite::Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // Deleted or overwritten content is zeroed, not left in free pages.
    conn.pragma_update(None, "secure_delete", "ON")?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    Ok(Conn::sqlite(conn))
}

/// Where the metadata writer gets its connection.
enum WriterConn {
    Sqlite(Conn),
    Postgres(crate::pg::Pool),
}

impl Db {
    /// Opens (creating) the SQLite database at `path`, applies pending migrations, and
    /// starts the metadata writer on its own connection.
    pub fn open(path: &Path) -> Result<Db> {
        let mut conn = connect(path)?;
        migrate(&mut conn)?;
        crate::audit::seal_legacy(&mut conn)?;
        let writer = WriterConn::Sqlite(connect(path)?);
        Db::start(Store::Sqlite { conn: Mutex::new(conn), path: path.to_path_buf() }, writer)
    }

    /// Connects to the PostgreSQL database at `url` (`postgres://...`), applies pending
    /// migrations (each once, whichever node starts first), and starts the metadata
    /// writer. Never logs the url (it may hold a password).
    pub fn open_postgres(url: &str) -> Result<Db> {
        let pool = crate::pg::pool(url)?;
        {
            let mut conn = pool.get().map_err(|e| Error::Other(e.to_string()))?;
            crate::pg::migrate(&conn)?;
            crate::audit::seal_legacy(&mut conn)?;
        }
        Db::start(Store::Postgres(pool.clone()), WriterConn::Postgres(pool))
    }

    fn start(store: Store, writer: WriterConn) -> Result<Db> {
        let (meta, jobs) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("portal-meta-writer".into())
            .spawn(move || meta_writer(writer, &jobs))
            .map_err(|e| Error::Other(format!("cannot start the metadata writer: {e}")))?;
        Ok(Db { store: Arc::new(store), meta })
    }

    /// Whether the metadata is in PostgreSQL.
    pub fn is_postgres(&self) -> bool {
        matches!(*self.store, Store::Postgres(_))
    }

    /// Stores `write` durably: requests arriving together share one transaction (and,
    /// on SQLite, one fsync: group commit), and each returns once its rows are committed.
    pub async fn write_meta(&self, write: MetaWrite) -> Result<(), ApiError> {
        self.start_meta(write).await
    }

    /// [`Db::write_meta`], queued at once (before the first poll): the caller can
    /// start something else, such as the ledger's commit, and await both.
    pub fn start_meta(&self, write: MetaWrite) -> MetaCommit {
        let (done, committed) = tokio::sync::oneshot::channel();
        MetaCommit(
            self.meta
                .send(MetaJob { write, done: Some(done) })
                .map(|()| committed)
                .map_err(|_| ApiError::internal("the metadata writer stopped")),
        )
    }

    /// Queues `write` and returns without waiting for its commit: for what must not
    /// delay an answer and is recovered at start if lost (a resolved audit entry).
    pub fn write_meta_later(&self, write: MetaWrite) {
        if self.meta.send(MetaJob { write, done: None }).is_err() {
            tracing::error!("the metadata writer stopped; pending audit entries are chained at the next start");
        }
    }

    /// Returns once every write queued before this call is committed: readers of the
    /// audit log call it first, so an answered action's entry is always listed.
    pub async fn settle(&self) -> Result<(), ApiError> {
        self.write_meta(MetaWrite::default()).await
    }

    /// Runs `f` with a connection on the blocking pool (SQLite: the shared one;
    /// PostgreSQL: one from the pool, holding the metadata lock: [`Conn::exclusive`]).
    pub async fn call<T, F>(&self, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Conn) -> Result<T, ApiError> + Send + 'static,
    {
        let store = Arc::clone(&self.store);
        tokio::task::spawn_blocking(move || store.with(f)?).await.map_err(ApiError::internal)?
    }

    /// Runs `f` on the blocking pool with a connection of its own, opened for this call:
    /// for long reads that must not hold the shared connection.
    pub async fn call_own<T, F>(&self, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Conn) -> Result<T, ApiError> + Send + 'static,
    {
        let db = self.clone();
        tokio::task::spawn_blocking(move || f(&mut *db.own_conn()?)).await.map_err(ApiError::internal)?
    }

    /// A connection of its own (the events follower and the webhook deliveries, which
    /// must not queue behind handlers on the shared connection). Blocks.
    pub fn own_conn(&self) -> Result<OwnConn> {
        match &*self.store {
            Store::Sqlite { path, .. } => Ok(OwnConn::Sqlite(connect(path)?)),
            Store::Postgres(pool) => Ok(OwnConn::Postgres(pool.get().map_err(|e| Error::Other(e.to_string()))?)),
        }
    }

    /// Where the SQLite database file is (`None`: in PostgreSQL).
    pub fn path(&self) -> Option<&Path> {
        match &*self.store {
            Store::Sqlite { path, .. } => Some(path),
            Store::Postgres(_) => None,
        }
    }

    /// Runs `f` with a connection on the calling thread (start-up only).
    pub fn call_blocking<T>(&self, f: impl FnOnce(&mut Conn) -> T) -> Result<T, ApiError> {
        self.store.with(f)
    }
}

impl Store {
    fn with<T>(&self, f: impl FnOnce(&mut Conn) -> T) -> Result<T, ApiError> {
        match self {
            Store::Sqlite { conn, .. } => {
                let mut guard = conn.lock().map_err(|_| ApiError::internal("the database lock was poisoned"))?;
                Ok(f(&mut guard))
            }
            Store::Postgres(pool) => {
                let mut conn =
                    pool.get().map_err(|e| ApiError::internal(format!("no metadata database connection: {e}")))?;
                Ok(conn.exclusive(f)?)
            }
        }
    }
}

/// Jobs committed together at most: bounds one transaction's size.
const META_GROUP_MAX: usize = 4096;

/// The metadata writer's loop: take every job waiting, commit them in one transaction,
/// answer each. Ends when every [`Db`] is dropped.
///
/// A group that nobody waits for (only resolved audit entries, whose pending form is
/// durable already) commits without an fsync of its own (`synchronous=NORMAL`): the
/// WAL is written in order, so the next group that is waited for syncs it too, and a
/// power loss before that only sends its entries back to `audit_pending`, chained at
/// the next start. The disk's flushes are the scarce resource (the ledger syncs on the
/// same disk), so they are spent only where an answer waits.
///
/// On PostgreSQL each group takes a pooled connection (a broken one is replaced) and
/// commits under the write lock like any writer; durability is the server's.
fn meta_writer(mut writer: WriterConn, jobs: &std::sync::mpsc::Receiver<MetaJob>) {
    let mut synced = true;
    while let Ok(first) = jobs.recv() {
        let mut group = vec![first];
        while group.len() < META_GROUP_MAX {
            match jobs.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        let sync = group.iter().any(|job| job.done.is_some());
        let mut pooled;
        let conn: &mut Conn = match &mut writer {
            WriterConn::Sqlite(conn) => conn,
            WriterConn::Postgres(pool) => match pool.get() {
                Ok(got) => {
                    pooled = got;
                    &mut pooled
                }
                Err(e) => {
                    let e = format!("no metadata database connection: {e}");
                    tracing::error!(error = %e, jobs = group.len(), "metadata group commit failed");
                    for job in group {
                        if let Some(done) = job.done {
                            let _ = done.send(Err(e.clone()));
                        }
                    }
                    continue;
                }
            },
        };
        if sync != synced {
            match conn.pragma_update(None, "synchronous", if sync { "FULL" } else { "NORMAL" }) {
                Ok(()) => synced = sync,
                Err(e) => tracing::error!(error = %e, "cannot change the metadata writer's synchronous mode"),
            }
        }
        let result = if synced || !sync {
            commit_meta(conn, &group).map_err(|e| e.to_string())
        } else {
            Err("the metadata writer cannot sync".to_string())
        };
        if let Err(e) = &result {
            tracing::error!(error = %e, jobs = group.len(), "metadata group commit failed");
        }
        for job in group {
            if let Some(done) = job.done {
                let _ = done.send(result.clone());
            }
        }
    }
}

fn commit_meta(conn: &mut Conn, group: &[MetaJob]) -> Result<()> {
    let tx = write_tx(conn)?;
    {
        let mut describe = tx.prepare_cached(
            "INSERT INTO tx_meta (ledger_id, client_id, description) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
        )?;
        // Status 0 is a row written ahead (`idempotency::AHEAD_STATUS`): the response
        // completes it; a complete row is never replaced.
        let mut remember = tx.prepare_cached(
            "INSERT INTO idempotency (client_id, key, fingerprint, status, response, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (client_id, key) DO UPDATE SET
                 fingerprint = excluded.fingerprint, status = excluded.status, response = excluded.response
             WHERE idempotency.status = 0",
        )?;
        let mut remember_ahead = tx.prepare_cached(
            "INSERT INTO idempotency (client_id, key, fingerprint, status, response, created_at)
             VALUES (?1, ?2, ?3, 0, '', ?4)
             ON CONFLICT (client_id, key) DO UPDATE SET fingerprint = excluded.fingerprint, created_at = excluded.created_at
             WHERE idempotency.status = 0",
        )?;
        let mut forget_key =
            tx.prepare_cached("DELETE FROM idempotency WHERE client_id = ?1 AND key = ?2 AND status = 0")?;
        let mut ahead = tx.prepare_cached(
            "INSERT INTO tx_meta (ledger_id, client_id, description) VALUES (?1, ?2, ?3)
             ON CONFLICT (ledger_id) DO UPDATE SET client_id = excluded.client_id, description = excluded.description",
        )?;
        let mut forget = tx.prepare_cached("DELETE FROM tx_meta WHERE ledger_id = ?1")?;
        let now = now_secs();
        for job in group {
            if let Some((id, client, description)) = &job.write.description_ahead {
                ahead.execute(crate::params![id, client, description])?;
            }
            if let Some(id) = &job.write.forget_description {
                forget.execute([id])?;
            }
            if let Some((id, client, description)) = &job.write.description {
                describe.execute(crate::params![id, client, description])?;
            }
            if let Some((client, key, fingerprint)) = &job.write.idempotency_ahead {
                remember_ahead.execute(crate::params![client, key, fingerprint, now])?;
            }
            if let Some((client, key)) = &job.write.forget_idempotency {
                forget_key.execute(crate::params![client, key])?;
            }
            if let Some((client, key, fingerprint, status, response)) = &job.write.idempotency {
                remember.execute(crate::params![client, key, fingerprint, status, response, now])?;
            }
            if let Some((id, entry)) = &job.write.pending_audit {
                crate::audit::pend(&tx, id, entry)?;
            }
            if let Some(id) = &job.write.resolved_audit {
                crate::audit::resolve(&tx, id)?;
            }
        }
    }
    let entries: Vec<crate::audit::Entry> = group.iter().filter_map(|job| job.write.audit.clone()).collect();
    if !entries.is_empty() {
        crate::audit::append(&tx, &entries)?;
    }
    tx.commit()
}

fn migrate(conn: &mut Conn) -> Result<()> {
    let applied: i64 = conn.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(usize::try_from(applied).unwrap_or(0)) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", &(i + 1).to_string())?;
        tx.commit()?;
    }
    Ok(())
}

// The two lists of migrations stay in step: the same number, the same meaning.
const _: () = assert!(MIGRATIONS.len() == crate::pg::MIGRATIONS_LEN);

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Seconds since the Unix epoch.
pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// A transaction that takes the write lock at once. The metadata writer commits on its
/// own connection, so a transaction that read first and wrote later could fail with
/// SQLITE_BUSY (its snapshot outdated); taking the lock up front waits instead. On
/// PostgreSQL the lock is the advisory one every node's writers take
/// ([`crate::pg::WRITE_LOCK`]), so a read-then-write stays atomic across nodes.
pub fn write_tx(conn: &mut Conn) -> Result<Transaction<'_>> {
    conn.transaction()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Migration 14 keeps the single node's events position and lets every node of a
    /// cluster keep its own (ids from 1 up).
    #[test]
    fn the_events_position_survives_migration_14_and_becomes_per_node() {
        let dir = tempfile::tempdir().expect("dir");
        let mut conn = connect(&dir.path().join("portal.db")).expect("open");
        for (i, sql) in MIGRATIONS.iter().enumerate().take(13) {
            let tx = conn.transaction().expect("begin");
            tx.execute_batch(sql).expect("migration");
            tx.pragma_update(None, "user_version", &(i + 1).to_string()).expect("version");
            tx.commit().expect("commit");
        }
        conn.execute("INSERT INTO event_feed (id, next_seq) VALUES (1, 42)", []).expect("position");
        assert!(conn.execute("INSERT INTO event_feed (id, next_seq) VALUES (2, 7)", []).is_err(), "one row before");

        migrate(&mut conn).expect("migrate");
        let kept: i64 = conn.query_row("SELECT next_seq FROM event_feed WHERE id = 1", [], |r| r.get(0)).expect("row");
        assert_eq!(kept, 42);
        conn.execute("INSERT INTO event_feed (id, next_seq) VALUES (2, 7)", []).expect("node 2's own row");
        assert!(conn.execute("INSERT INTO event_feed (id, next_seq) VALUES (0, 7)", []).is_err(), "ids from 1");
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).expect("version");
        assert_eq!(usize::try_from(version).ok(), Some(MIGRATIONS.len()));
    }
}
