//! Secrets at rest: the key that encrypts the TOTP secrets in `portal.db`, the file
//! modes of everything under the data directory, and key rotation.
//!
//! A TOTP secret must be read back (to compute the expected code), so unlike
//! passwords, tokens, API keys and recovery codes (stored only as hashes) it is
//! encrypted: XChaCha20-Poly1305 (RustCrypto `chacha20poly1305`, a random 192-bit
//! nonce per value), with the user's id as associated data so a ciphertext moved to
//! another user's row does not decrypt. A stored value is
//! `v1:KEYID:HEX(nonce || ciphertext)`, `KEYID` naming the key (a BLAKE3 derivation,
//! not the key) so a rotation interrupted half way is finished at the next start.
//!
//! The key is 32 random bytes, hex in `DIR/secret.key` (created 0600 on first start),
//! or in the environment variable [`KEY_ENV`] (then no file is read or written).
//! `portal-svc rotate-key --data-dir DIR` (service stopped) writes a new key to
//! `DIR/secret.key.next`, re-encrypts every secret under it in one SQLite transaction,
//! then renames it over `secret.key`.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::db::Conn as Connection;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand_core::{OsRng, RngCore};

/// The environment variable that may hold the key (64 hex characters) instead of the file.
pub const KEY_ENV: &str = "PORTAL_SECRET_KEY";
/// The key file under the data directory.
pub const KEY_FILE: &str = "secret.key";
/// A rotation's new key, until every secret is re-encrypted under it.
pub const NEXT_KEY_FILE: &str = "secret.key.next";
/// Mode of every file under the data directory.
pub const FILE_MODE: u32 = 0o600;
/// Mode of every directory under the data directory.
pub const DIR_MODE: u32 = 0o700;
/// Prefix of an encrypted value (format version 1).
const SEALED_PREFIX: &str = "v1:";
/// Directory levels [`tighten_modes`] descends at most (the ledger's layout is two deep).
const DEPTH_MAX: usize = 8;

/// Why the secrets could not be opened.
#[derive(Debug)]
#[non_exhaustive]
pub enum KeyError {
    /// The key file or environment variable is not 64 hex characters.
    Malformed(String),
    /// Reading or writing a key file, or a mode, failed.
    Io(String, std::io::Error),
    /// A stored secret is under a key that is not loaded, or fails authentication.
    Undecryptable(String),
    /// The database failed.
    Db(crate::db::Error),
}

impl std::fmt::Display for KeyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyError::Malformed(what) => write!(f, "{what} is not a key (64 hex characters)"),
            KeyError::Io(what, e) => write!(f, "{what}: {e}"),
            KeyError::Undecryptable(what) => write!(f, "{what}"),
            KeyError::Db(e) => write!(f, "database: {e}"),
        }
    }
}

impl std::error::Error for KeyError {}

impl From<crate::db::Error> for KeyError {
    fn from(e: crate::db::Error) -> KeyError {
        KeyError::Db(e)
    }
}

/// One 256-bit key and its public name.
#[derive(Clone)]
struct Key {
    id: String,
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key").field("id", &self.id).finish_non_exhaustive()
    }
}

impl Key {
    fn from_bytes(bytes: &[u8; 32]) -> Key {
        let id = hex::encode(&blake3::derive_key("portal-svc secret key id v1", bytes)[..8]);
        Key { id, cipher: XChaCha20Poly1305::new(bytes.into()) }
    }

    fn parse(text: &str, what: &str) -> Result<Key, KeyError> {
        let bytes = hex::decode(text.trim()).map_err(|_| KeyError::Malformed(what.to_string()))?;
        let bytes: [u8; 32] = bytes.try_into().map_err(|_| KeyError::Malformed(what.to_string()))?;
        Ok(Key::from_bytes(&bytes))
    }
}

/// The keys secrets are encrypted with: the current one, and (while a rotation is
/// unfinished) the one before, for reading only.
#[derive(Debug, Clone)]
pub struct Keyring {
    current: Key,
    previous: Option<Key>,
}

impl Keyring {
    /// A keyring of one random key (tests, and the key of a new file).
    pub fn random() -> Keyring {
        let mut bytes = [0u8; 32];
        OsRng.fill_bytes(&mut bytes);
        Keyring { current: Key::from_bytes(&bytes), previous: None }
    }

    /// The current key's public name.
    pub fn key_id(&self) -> &str {
        &self.current.id
    }

    /// Encrypts `plain`, bound to `user_id`.
    pub fn seal(&self, user_id: i64, plain: &str) -> String {
        self.seal_with(&user_id.to_le_bytes(), plain)
    }

    /// Encrypts `plain`, bound to the associated data `aad` (which names the row it
    /// belongs to: a ciphertext copied to another row does not decrypt).
    pub fn seal_with(&self, aad: &[u8], plain: &str) -> String {
        let mut nonce = [0u8; 24];
        OsRng.fill_bytes(&mut nonce);
        // Encryption with a valid key and nonce only fails past 256 GiB of input.
        let sealed = self
            .current
            .cipher
            .encrypt(XNonce::from_slice(&nonce), Payload { msg: plain.as_bytes(), aad })
            .unwrap_or_default();
        let mut bytes = nonce.to_vec();
        bytes.extend_from_slice(&sealed);
        format!("{SEALED_PREFIX}{}:{}", self.current.id, hex::encode(bytes))
    }

    /// Whether `stored` is an encrypted value (of any key).
    pub fn is_sealed(stored: &str) -> bool {
        stored.starts_with(SEALED_PREFIX)
    }

    /// Decrypts what [`Keyring::seal`] made for `user_id`.
    pub fn open(&self, user_id: i64, stored: &str) -> Result<String, KeyError> {
        self.open_with(&user_id.to_le_bytes(), stored, &format!("the MFA secret of user {user_id}"))
    }

    /// Decrypts what [`Keyring::seal_with`] made for `aad`; `what` names the secret in
    /// errors.
    pub fn open_with(&self, aad: &[u8], stored: &str, what: &str) -> Result<String, KeyError> {
        let bad = |why: &str| KeyError::Undecryptable(format!("{what} {why}"));
        let rest = stored.strip_prefix(SEALED_PREFIX).ok_or_else(|| bad("is not encrypted"))?;
        let (id, data) = rest.split_once(':').ok_or_else(|| bad("is malformed"))?;
        let key = [Some(&self.current), self.previous.as_ref()]
            .into_iter()
            .flatten()
            .find(|k| k.id == id)
            .ok_or_else(|| bad("is under a key that is not loaded"))?;
        let bytes = hex::decode(data).map_err(|_| bad("is malformed"))?;
        if bytes.len() < 24 {
            return Err(bad("is malformed"));
        }
        let (nonce, sealed) = bytes.split_at(24);
        let plain = key
            .cipher
            .decrypt(XNonce::from_slice(nonce), Payload { msg: sealed, aad })
            .map_err(|_| bad("fails authentication"))?;
        String::from_utf8(plain).map_err(|_| bad("is malformed"))
    }
}

/// Sets the process's umask to 077, so every file and directory created from now on
/// (the database and its `-wal`/`-shm`, the ledger's segments, key files) is private
/// to the service's user from its creation.
pub fn private_umask() {
    // SAFETY: umask has no preconditions and cannot fail; it only sets the mask.
    unsafe {
        libc::umask(0o077);
    }
}

/// Creates `dir` (0700) if missing, then makes every directory under it 0700 and every
/// file 0600, logging each mode it had to tighten. Returns how many it changed.
pub fn tighten_modes(dir: &Path) -> Result<usize, KeyError> {
    std::fs::create_dir_all(dir).map_err(|e| KeyError::Io(format!("create {}", dir.display()), e))?;
    let mut changed = 0;
    tighten(dir, 0, &mut changed)?;
    Ok(changed)
}

fn tighten(path: &Path, depth: usize, changed: &mut usize) -> Result<(), KeyError> {
    let io = |what: &str, e| KeyError::Io(format!("{what} {}", path.display()), e);
    let meta = std::fs::symlink_metadata(path).map_err(|e| io("inspect", e))?;
    if meta.file_type().is_symlink() {
        return Ok(());
    }
    let wanted = if meta.is_dir() { DIR_MODE } else { FILE_MODE };
    let mode = meta.permissions().mode() & 0o777;
    if mode & !wanted != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(wanted)).map_err(|e| io("chmod", e))?;
        tracing::warn!(path = %path.display(), from = format!("{mode:o}"), to = format!("{wanted:o}"),
            "a file under the data directory was readable by others: mode tightened");
        *changed += 1;
    }
    if meta.is_dir() && depth < DEPTH_MAX {
        for entry in std::fs::read_dir(path).map_err(|e| io("list", e))? {
            let entry = entry.map_err(|e| io("list", e))?;
            tighten(&entry.path(), depth + 1, changed)?;
        }
    }
    Ok(())
}

/// Writes `key` (hex) to a new file at `path`, 0600, synced.
fn write_key_file(path: &Path, key: &[u8; 32]) -> Result<(), KeyError> {
    let io = |e| KeyError::Io(format!("write {}", path.display()), e);
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(FILE_MODE).open(path).map_err(io)?;
    file.write_all(hex::encode(key).as_bytes()).map_err(io)?;
    file.write_all(b"\n").map_err(io)?;
    file.sync_all().map_err(io)
}

fn read_key_file(path: &Path) -> Result<Option<Key>, KeyError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Key::parse(&text, &path.display().to_string()).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(KeyError::Io(format!("read {}", path.display()), e)),
    }
}

fn sync_dir(dir: &Path) -> Result<(), KeyError> {
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(|e| KeyError::Io(format!("sync {}", dir.display()), e))
}

/// Where the key comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// [`KEY_ENV`].
    Environment,
    /// A file under the data directory.
    File(PathBuf),
}

/// Loads the key from [`KEY_ENV`], else from `DIR/secret.key` (creating it, 0600, on
/// first start). With the file, a `secret.key.next` left by an interrupted rotation
/// becomes the current key and the old one is kept for reading until
/// [`seal_all`] has re-encrypted everything (then [`finish_rotation`]).
pub fn load(dir: &Path) -> Result<(Keyring, KeySource), KeyError> {
    if let Ok(text) = std::env::var(KEY_ENV) {
        let current = Key::parse(&text, KEY_ENV)?;
        return Ok((Keyring { current, previous: None }, KeySource::Environment));
    }
    let path = dir.join(KEY_FILE);
    let next = read_key_file(&dir.join(NEXT_KEY_FILE))?;
    let current = match read_key_file(&path)? {
        Some(key) => key,
        None if next.is_some() => {
            return Err(KeyError::Undecryptable(format!(
                "{} exists without {}: restore the key file",
                NEXT_KEY_FILE, KEY_FILE
            )));
        }
        None => {
            let mut bytes = [0u8; 32];
            OsRng.fill_bytes(&mut bytes);
            write_key_file(&path, &bytes)?;
            sync_dir(dir)?;
            tracing::info!(path = %path.display(), "created the key that encrypts secrets at rest");
            Key::from_bytes(&bytes)
        }
    };
    let ring = match next {
        Some(next) => Keyring { current: next, previous: Some(current) },
        None => Keyring { current, previous: None },
    };
    Ok((ring, KeySource::File(path)))
}

/// Re-encrypts under the current key every MFA secret that is in clear (written by a
/// version before encryption) or under the previous key, in one transaction; then, if
/// any was in clear, rewrites the database so no old page keeps it. Returns how many
/// changed.
pub fn seal_all(conn: &mut Connection, ring: &Keyring) -> Result<usize, KeyError> {
    let tx = conn.transaction()?;
    let rows: Vec<(i64, String)> = {
        let mut stmt = tx.prepare("SELECT id, mfa_secret FROM users WHERE mfa_secret IS NOT NULL")?;
        stmt.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?.collect::<Result<_, _>>()?
    };
    let (mut changed, mut clear) = (0, 0);
    for (id, stored) in rows {
        let plain = if Keyring::is_sealed(&stored) {
            if stored.strip_prefix(SEALED_PREFIX).is_some_and(|r| r.starts_with(&format!("{}:", ring.current.id))) {
                continue;
            }
            ring.open(id, &stored)?
        } else {
            clear += 1;
            stored
        };
        tx.execute("UPDATE users SET mfa_secret = ?1 WHERE id = ?2", crate::params![ring.seal(id, &plain), id])?;
        changed += 1;
    }
    // Webhook signing secrets are only ever stored sealed; a rotation re-seals them.
    // (`rotate-key` may run on a database older than the table.)
    let has_endpoints = tx.table_exists("webhook_endpoints")?;
    let endpoints: Vec<(i64, String)> = if !has_endpoints {
        Vec::new()
    } else {
        let mut stmt = tx.prepare("SELECT id, secret FROM webhook_endpoints")?;
        stmt.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?.collect::<Result<_, _>>()?
    };
    for (id, stored) in endpoints {
        if stored.strip_prefix(SEALED_PREFIX).is_some_and(|r| r.starts_with(&format!("{}:", ring.current.id))) {
            continue;
        }
        let aad = crate::webhooks::secret_aad(id);
        let plain = ring.open_with(&aad, &stored, &format!("the secret of webhook endpoint {id}"))?;
        tx.execute(
            "UPDATE webhook_endpoints SET secret = ?1 WHERE id = ?2",
            crate::params![ring.seal_with(&aad, &plain), id],
        )?;
        changed += 1;
    }
    check_key(&tx, ring)?;
    tx.commit()?;
    if clear > 0 && conn.is_sqlite() {
        // secure_delete is on: VACUUM rebuilds every page, and the checkpoint moves the
        // rebuilt pages over the old ones and empties the WAL.
        conn.execute_batch("VACUUM")?;
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        tracing::warn!(count = clear, "MFA secrets stored in clear were encrypted");
    }
    Ok(changed)
}

/// What the key check seals (not secret: it proves which key the database is under).
const CHECK_TEXT: &str = "portal-svc secret key check v1";
/// Its associated data.
const CHECK_AAD: &[u8] = b"portal-svc secret_check";

/// The key check (migration 13): sealed under the current key the first time; from
/// then on it must open, so a node given another key than the database's secrets are
/// under (nodes sharing one PostgreSQL database must share the key) is refused at
/// start, before it seals anything the others cannot open. Re-sealed by a rotation.
fn check_key(conn: &Connection, ring: &Keyring) -> Result<(), KeyError> {
    if !conn.table_exists("secret_check")? {
        return Ok(()); // `rotate-key` on a database from before migration 13
    }
    let stored: Option<String> = crate::db::OptionalExtension::optional(conn.query_row(
        "SELECT sealed FROM secret_check WHERE id = 1",
        [],
        |row| row.get(0),
    ))?;
    let current = stored.as_deref().is_some_and(|stored| {
        stored.strip_prefix(SEALED_PREFIX).is_some_and(|r| r.starts_with(&format!("{}:", ring.current.id)))
    });
    if let Some(stored) = &stored {
        let opened = ring.open_with(CHECK_AAD, stored, "the key check").ok();
        if opened.as_deref() != Some(CHECK_TEXT) {
            return Err(KeyError::Undecryptable(format!(
                "the secret key (id {}) is not the key this database's secrets are under: every node sharing \
                 one database needs the same key (copy DIR/{KEY_FILE}, or set {KEY_ENV})",
                ring.current.id
            )));
        }
    }
    if !current {
        conn.execute(
            "INSERT INTO secret_check (id, sealed) VALUES (1, ?1) ON CONFLICT (id) DO UPDATE SET sealed = excluded.sealed",
            [ring.seal_with(CHECK_AAD, CHECK_TEXT)],
        )?;
    }
    Ok(())
}

/// After [`seal_all`] under a keyring from an interrupted rotation: the next key
/// becomes `secret.key`.
pub fn finish_rotation(dir: &Path) -> Result<bool, KeyError> {
    let next = dir.join(NEXT_KEY_FILE);
    if !next.exists() {
        return Ok(false);
    }
    std::fs::rename(&next, dir.join(KEY_FILE)).map_err(|e| KeyError::Io(format!("rename {}", next.display()), e))?;
    sync_dir(dir)?;
    Ok(true)
}

/// `portal-svc rotate-key`: a new key in `secret.key.next`, every secret re-encrypted
/// under it, then the rename. With the key in [`KEY_ENV`], the new key comes from
/// `PORTAL_SECRET_KEY_NEW` and the operator then replaces the variable. Returns the
/// new key's id.
pub fn rotate(dir: &Path, conn: &mut Connection) -> Result<String, KeyError> {
    if std::env::var_os(KEY_ENV).is_some() {
        let (old, _) = load(dir)?;
        let text = std::env::var("PORTAL_SECRET_KEY_NEW")
            .map_err(|_| KeyError::Malformed("PORTAL_SECRET_KEY_NEW (needed with PORTAL_SECRET_KEY)".into()))?;
        let ring = Keyring { current: Key::parse(&text, "PORTAL_SECRET_KEY_NEW")?, previous: Some(old.current) };
        seal_all(conn, &ring)?;
        return Ok(ring.current.id);
    }
    let (old, _) = load(dir)?;
    if old.previous.is_some() {
        // An interrupted rotation: finish that one first.
        seal_all(conn, &old)?;
        finish_rotation(dir)?;
    }
    let (old, _) = load(dir)?;
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    write_key_file(&dir.join(NEXT_KEY_FILE), &bytes)?;
    sync_dir(dir)?;
    let ring = Keyring { current: Key::from_bytes(&bytes), previous: Some(old.current) };
    seal_all(conn, &ring)?;
    finish_rotation(dir)?;
    Ok(ring.current.id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rotation_reseals_webhook_secrets_bound_to_their_endpoint() {
        let dir = tempfile::tempdir().expect("a directory");
        let db = crate::db::Db::open(&dir.path().join("portal.db")).expect("a database");
        let old = Keyring::random();
        let aad = crate::webhooks::secret_aad(1);
        let sealed = old.seal_with(&aad, "whsec_abc");
        db.call_blocking(|conn| {
            conn.execute("INSERT INTO clients (id, name, created_at) VALUES (1, 'A', 0)", [])?;
            conn.execute(
                "INSERT INTO webhook_endpoints (id, client_id, url, events, secret, active, created_at, updated_at)
                 VALUES (1, 1, 'https://x.test/', 'payment.created', ?1, 1, 0, 0)",
                [&sealed],
            )
        })
        .expect("the lock")
        .expect("rows");
        let new = Keyring { current: Keyring::random().current, previous: Some(old.current.clone()) };
        assert_eq!(db.call_blocking(|conn| seal_all(conn, &new)).expect("the lock").expect("sealed"), 1);
        let stored: String = db
            .call_blocking(|conn| conn.query_row("SELECT secret FROM webhook_endpoints", [], |r| r.get(0)))
            .expect("the lock")
            .expect("the row");
        assert_eq!(new.open_with(&aad, &stored, "it").expect("opens"), "whsec_abc");
        assert!(old.open_with(&aad, &stored, "it").is_err(), "the old key alone no longer opens it");
        assert!(new.open_with(&crate::webhooks::secret_aad(2), &stored, "it").is_err(), "another endpoint's row");
        assert!(new.open(1, &stored).is_err(), "a user's MFA secret slot");
    }

    #[test]
    fn sealed_secrets_open_only_for_their_user_and_key() {
        let ring = Keyring::random();
        let sealed = ring.seal(7, "JBSWY3DPEHPK3PXP");
        assert!(Keyring::is_sealed(&sealed) && !sealed.contains("JBSWY3DPEHPK3PXP"));
        assert_ne!(sealed, ring.seal(7, "JBSWY3DPEHPK3PXP"), "a fresh nonce each time");
        assert_eq!(ring.open(7, &sealed).expect("open"), "JBSWY3DPEHPK3PXP");
        assert!(ring.open(8, &sealed).is_err(), "another user's row");
        assert!(Keyring::random().open(7, &sealed).is_err(), "another key");
        let mut tampered = sealed.clone();
        let last = tampered.pop().map_or('0', |c| if c == '0' { '1' } else { '0' });
        tampered.push(last);
        assert!(ring.open(7, &tampered).is_err(), "an edited ciphertext");
        let rotated = Keyring { current: Keyring::random().current, previous: Some(ring.current.clone()) };
        assert_eq!(rotated.open(7, &sealed).expect("previous key reads"), "JBSWY3DPEHPK3PXP");
    }
}
