//! Authentication: argon2id password hashes, random session tokens stored only as
//! BLAKE3 hashes, login throttling, API keys, the browser's session cookie with its
//! CSRF token, and the [`Principal`] every protected route takes.

use crate::db::OptionalExtension;
use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use rand_core::{OsRng, RngCore};
use subtle::ConstantTimeEq;

use crate::app::AppState;
use crate::audit;
use crate::db::now_secs;
use crate::error::ApiError;

/// How long a session token is valid, unless `--session-secs` says otherwise.
pub const SESSION_SECS: i64 = 12 * 3600;
/// The bounds of `--session-secs`: at least a second (tests make sessions expire
/// without waiting for hours), at most a week (a session is not a standing credential;
/// that is what API keys are for).
pub const SESSION_SECS_MIN: i64 = 1;
/// See [`SESSION_SECS_MIN`].
pub const SESSION_SECS_MAX: i64 = 7 * 24 * 3600;
/// Consecutive failed sign-ins that lock an account (PCI DSS 8.3.4: at most 10); an
/// email with no account is refused the same way, so the answers do not tell them apart.
pub const LOGIN_FAILURES_MAX: i64 = 10;
/// How long a lock lasts unless an administrator unlocks it (PCI DSS: at least 30 min).
pub const LOCK_SECS: i64 = 30 * 60;
/// Failed sign-ins from one source address, over every email, within
/// [`ADDR_WINDOW_SECS`] before that address is throttled (429) whatever it sends,
/// unless `--login-failures-per-address` says otherwise.
pub const ADDR_FAILURES_MAX: i64 = 30;
/// The window of [`ADDR_FAILURES_MAX`].
pub const ADDR_WINDOW_SECS: i64 = 15 * 60;

/// The source address of the request, put in its extensions by the accept loop.
/// (No `X-Forwarded-For` is trusted: the service is its own front.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerAddr(pub std::net::IpAddr);

/// A sign-in attempt.
#[derive(Debug)]
pub struct Attempt<'a> {
    pub email: &'a str,
    pub password: &'a str,
    pub otp: Option<&'a str>,
    /// The source address (`unknown` when the request came without one).
    pub addr: String,
    pub session_secs: i64,
    /// Failed attempts per address per [`ADDR_WINDOW_SECS`].
    pub addr_failures_max: i64,
}

/// A session opened by [`login`].
#[derive(Debug)]
pub struct SignedIn {
    pub token: String,
    pub expires_at: i64,
    /// What the user must do first, if anything (see [`Restriction`]).
    pub restriction: Option<Restriction>,
}

/// A role, from most to least powerful.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Viewer,
    Operator,
    ClientAdmin,
    Admin,
}

impl Role {
    /// Every role, least powerful first.
    pub const ALL: [Role; 4] = [Role::Viewer, Role::Operator, Role::ClientAdmin, Role::Admin];

    pub fn parse(s: &str) -> Option<Role> {
        Some(match s {
            "admin" => Role::Admin,
            "client_admin" => Role::ClientAdmin,
            "operator" => Role::Operator,
            "viewer" => Role::Viewer,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::ClientAdmin => "client_admin",
            Role::Operator => "operator",
            Role::Viewer => "viewer",
        }
    }
}

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// A signed-in user.
    User { id: i64, email: String },
    /// A client application with an API key; it acts for its client as an operator.
    Application { id: i64 },
}

/// Who is calling, with what role, for which client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub actor: Actor,
    pub role: Role,
    /// `None` for platform admins.
    pub client_id: Option<i64>,
}

impl Principal {
    /// Requires at least `role`; a lesser one is 403.
    pub fn require(&self, role: Role) -> Result<(), ApiError> {
        if self.role >= role {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!("requires the {} role", role.as_str())))
        }
    }

    /// Requires a user (not an API key) with at least `role`.
    pub fn require_user(&self, role: Role) -> Result<(), ApiError> {
        match self.actor {
            Actor::User { .. } => self.require(role),
            Actor::Application { .. } => Err(ApiError::forbidden("API keys cannot do this; sign in as a user")),
        }
    }

    /// The caller's own client, for routes that always act within one (money,
    /// tickets): platform admins, who have none, act through a client's user or key.
    pub fn own_client(&self) -> Result<i64, ApiError> {
        self.client_id.ok_or_else(|| ApiError::forbidden("platform admins act through a client's user or API key"))
    }

    /// [`Principal::own_client`] as the ledger's client id.
    pub fn ledger_client(&self) -> Result<u64, ApiError> {
        u64::try_from(self.own_client()?).map_err(ApiError::internal)
    }

    /// How the caller is named in authorship and the audit log: the user's email, or
    /// `application:ID`.
    pub fn label(&self) -> String {
        match &self.actor {
            Actor::User { email, .. } => email.clone(),
            Actor::Application { id } => format!("application:{id}"),
        }
    }

    /// Whether the caller may see objects of `client_id` (admins see every client).
    /// Another client's object must be answered as not found, never as forbidden.
    pub fn sees_client(&self, client_id: i64) -> bool {
        self.role == Role::Admin || self.client_id == Some(client_id)
    }
}

/// API keys already verified against the database, by the hash of the key: a
/// request with a known key needs no database round trip. The service is the only
/// writer of its database, so revoking through it ([`KeyCache::forget_application`])
/// keeps the cache exact. Unknown keys are never cached. On a database shared with
/// other nodes (PostgreSQL) another node may revoke a key, so the cache is not used
/// there: every request with a key reads its row.
#[derive(Debug, Default)]
pub struct KeyCache {
    /// The keys, and a generation that every revocation bumps: a lookup that read the
    /// database before a revocation cannot put the revoked key back afterwards.
    keys: std::sync::RwLock<(u64, std::collections::HashMap<Vec<u8>, Principal>)>,
}

impl KeyCache {
    /// Entries kept at most; past it the cache starts over (a memory bound, not a policy).
    const ENTRIES_MAX: usize = 100_000;

    fn get(&self, hash: &[u8]) -> Option<Principal> {
        self.keys.read().ok()?.1.get(hash).cloned()
    }

    /// The generation to pass to [`KeyCache::insert`], read before the database.
    fn generation(&self) -> Option<u64> {
        self.keys.read().ok().map(|k| k.0)
    }

    fn insert(&self, generation: Option<u64>, hash: Vec<u8>, principal: Principal) {
        if let Ok(mut keys) = self.keys.write()
            && Some(keys.0) == generation
        {
            if keys.1.len() >= KeyCache::ENTRIES_MAX {
                keys.1.clear();
            }
            keys.1.insert(hash, principal);
        }
    }

    /// Drops the application's key: call when it is revoked, after the database
    /// commit and before answering.
    pub fn forget_application(&self, app_id: i64) {
        let mut keys = self.keys.write().unwrap_or_else(|poisoned| {
            self.keys.clear_poison();
            poisoned.into_inner()
        });
        keys.0 += 1;
        keys.1.retain(|_, p| p.actor != Actor::Application { id: app_id });
    }
}

/// Prefix of every API key.
pub const API_KEY_PREFIX: &str = "sk_";
/// Hex characters of the key used to find its row (not secret on its own).
const KEY_LOOKUP_CHARS: usize = 16;

/// A new API key and what is stored for it: `(key, lookup, hash)`. The key is
/// `sk_` + 64 hex characters (256 random bits); the first 16 find the row, and the
/// BLAKE3 hash of the whole key is compared in constant time.
pub fn new_api_key() -> (String, String, Vec<u8>) {
    let secret = random_secret(32);
    let key = format!("{API_KEY_PREFIX}{secret}");
    let lookup = secret[..KEY_LOOKUP_CHARS].to_string();
    let hash = token_hash(&key);
    (key, lookup, hash)
}

/// Hashes a password with argon2id and a random salt (PHC string).
pub fn hash_password(password: &str) -> Result<String, ApiError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default().hash_password(password.as_bytes(), &salt).map(|h| h.to_string()).map_err(ApiError::internal)
}

/// Checks a password against a stored PHC string (argon2 compares in constant time).
pub fn verify_password(password: &str, stored: &str) -> bool {
    PasswordHash::new(stored).is_ok_and(|hash| Argon2::default().verify_password(password.as_bytes(), &hash).is_ok())
}

/// A fresh random secret, hex-encoded (`bytes` random bytes).
pub fn random_secret(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    OsRng.fill_bytes(&mut buf);
    hex::encode(buf)
}

/// What is stored for a token: its BLAKE3 hash. A leaked database yields no tokens.
pub fn token_hash(token: &str) -> Vec<u8> {
    blake3::hash(token.as_bytes()).as_bytes().to_vec()
}

/// A hash to verify against when the email is unknown, so that an unknown email and a
/// wrong password take the same time.
fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash_password("not a real password").unwrap_or_default())
}

/// The account row sign-in reads.
struct Account {
    id: i64,
    password_hash: String,
    active: bool,
    locked_until: Option<i64>,
    client_id: Option<i64>,
}

fn account(conn: &crate::db::Conn, email: &str) -> crate::db::Result<Option<Account>> {
    conn.prepare_cached("SELECT id, password_hash, active, locked_until, client_id FROM users WHERE email = ?1")?
        .query_row([email], |row| {
            Ok(Account {
                id: row.get(0)?,
                password_hash: row.get(1)?,
                active: row.get::<_, i64>(2)? != 0,
                locked_until: row.get(3)?,
                client_id: row.get(4)?,
            })
        })
        .optional()
}

/// Seconds until sign-in from `addr` is allowed again; 0 when it is now.
fn addr_wait(conn: &crate::db::Conn, addr: &str, max: i64, now: i64) -> crate::db::Result<i64> {
    let since = now - ADDR_WINDOW_SECS;
    let count: i64 = conn.query_row(
        "SELECT count(*) FROM login_failures WHERE addr = ?1 AND at >= ?2",
        crate::params![addr, since],
        |row| row.get(0),
    )?;
    if count < max {
        return Ok(0);
    }
    // Allowed again when enough of the window's failures have aged out of it.
    let pivot: i64 = conn.query_row(
        "SELECT at FROM login_failures WHERE addr = ?1 AND at >= ?2 ORDER BY at LIMIT 1 OFFSET ?3",
        crate::params![addr, since, count - max],
        |row| row.get(0),
    )?;
    Ok((pivot + ADDR_WINDOW_SECS - now).max(1))
}

/// Seconds until the account (or the email without one) may sign in again; 0 when now.
fn lock_wait(conn: &crate::db::Conn, email: &str, account: Option<&Account>, now: i64) -> crate::db::Result<i64> {
    if let Some(a) = account {
        return Ok(a.locked_until.map_or(0, |until| (until - now).max(0)));
    }
    let recent: Vec<i64> = conn
        .prepare_cached("SELECT at FROM login_failures WHERE email = ?1 AND at >= ?2 ORDER BY at DESC LIMIT ?3")?
        .query_map(crate::params![email, now - LOCK_SECS, LOGIN_FAILURES_MAX], |row| row.get(0))?
        .collect::<Result<_, _>>()?;
    Ok(match recent.last() {
        Some(tenth) if i64::try_from(recent.len()).unwrap_or(0) >= LOGIN_FAILURES_MAX => {
            (tenth + LOCK_SECS - now).max(1)
        }
        _ => 0,
    })
}

/// The answer to a locked or throttled sign-in.
fn throttled(wait: i64) -> ApiError {
    ApiError::throttled("too_many_login_attempts", "too many failed sign-ins; try again later", wait)
}

/// Records a failed attempt for `email` from `addr` (and on the account when there is
/// one: the tenth in a row locks it for [`LOCK_SECS`]), with its audit entries, and
/// commits. `reason` goes into the audit entry only.
pub fn record_failure(
    tx: crate::db::Transaction<'_>,
    email: &str,
    addr: &str,
    account: Option<(i64, Option<i64>)>,
    reason: &str,
) -> Result<(), ApiError> {
    let now = now_secs();
    tx.execute("INSERT INTO login_failures (email, at, addr) VALUES (?1, ?2, ?3)", crate::params![email, now, addr])?;
    let detail = serde_json::json!({ "email": email, "address": addr, "reason": reason });
    let mut entries = vec![
        audit::Entry::anonymous("user", account.map(|a| a.0), email, "auth.login_failed")
            .in_client(account.and_then(|a| a.1))
            .outcome("failed")
            .detail(detail),
    ];
    if let Some((id, client)) = account {
        let (failed, locked_until): (i64, Option<i64>) =
            tx.query_row("SELECT failed_logins, locked_until FROM users WHERE id = ?1", [id], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?;
        // A lock that has run out starts a new count.
        let failed = if locked_until.is_some_and(|u| u <= now) { 1 } else { failed + 1 };
        let lock = failed >= LOGIN_FAILURES_MAX && locked_until.is_none_or(|u| u <= now);
        let until = if lock { Some(now + LOCK_SECS) } else { locked_until.filter(|u| *u > now) };
        tx.execute(
            "UPDATE users SET failed_logins = ?1, locked_until = ?2 WHERE id = ?3",
            crate::params![failed, until, id],
        )?;
        entries[0] = entries[0].clone().on("user", id);
        if lock {
            entries.push(
                audit::Entry::anonymous("system", None, "system", "auth.lock")
                    .on("user", id)
                    .in_client(client)
                    .outcome("ok")
                    .detail(serde_json::json!({ "failures": failed, "locked_until": now + LOCK_SECS })),
            );
        }
    }
    audit::append(&tx, &entries)?;
    tx.commit()?;
    Ok(())
}

/// Verifies credentials (and the second factor when the user has MFA on) and opens a
/// session. Refused with 429 and `Retry-After`, before any password is checked: an
/// account locked by [`LOGIN_FAILURES_MAX`] failures in a row (until [`LOCK_SECS`] pass
/// or an administrator unlocks it), and an address past its failures per
/// [`ADDR_WINDOW_SECS`]. A wrong password, a wrong code or a deactivated account is a
/// failure (401, counted, audited); a right password without a code is not (the client
/// asks for one and retries).
pub fn login(
    conn: &mut crate::db::Conn,
    ring: &crate::secrets::Keyring,
    attempt: &Attempt<'_>,
) -> Result<SignedIn, ApiError> {
    let (email, now) = (attempt.email, now_secs());
    conn.execute("DELETE FROM login_failures WHERE at < ?1", [now - LOCK_SECS.max(ADDR_WINDOW_SECS)])?;
    let wait = addr_wait(conn, &attempt.addr, attempt.addr_failures_max, now)?;
    if wait > 0 {
        return Err(throttled(wait));
    }
    let user = account(conn, email)?;
    let wait = lock_wait(conn, email, user.as_ref(), now)?;
    if wait > 0 {
        return Err(throttled(wait));
    }
    let verified = match &user {
        Some(a) => verify_password(attempt.password, &a.password_hash),
        None => {
            let _ = verify_password(attempt.password, dummy_hash());
            false
        }
    };
    let tx = crate::db::write_tx(conn)?;
    let refused = || ApiError::unauthenticated("invalid_credentials", "the email or password is wrong");
    let Some(user) = user.filter(|_| verified) else {
        let known = account(&tx, email)?.map(|a| (a.id, a.client_id));
        record_failure(tx, email, &attempt.addr, known, "wrong_password")?;
        return Err(refused());
    };
    if !user.active {
        record_failure(tx, email, &attempt.addr, Some((user.id, user.client_id)), "deactivated")?;
        return Err(refused());
    }
    let (_, mfa_enabled, _) = crate::mfa::state(&tx, user.id)?;
    if mfa_enabled {
        let Some(otp) = attempt.otp.filter(|o| !o.trim().is_empty()) else {
            return Err(
                ApiError::unauthenticated("mfa_required", "this account needs a one-time code (otp)").with_param("otp")
            );
        };
        if !crate::mfa::accept(&tx, ring, user.id, email, otp)? {
            record_failure(tx, email, &attempt.addr, Some((user.id, user.client_id)), "wrong_otp")?;
            return Err(ApiError::unauthenticated("invalid_otp", "the one-time code is wrong or was already used")
                .with_param("otp"));
        }
    }
    tx.execute("DELETE FROM login_failures WHERE email = ?1", [email])?;
    tx.execute("UPDATE users SET failed_logins = 0, locked_until = NULL WHERE id = ?1", [user.id])?;
    let token = random_secret(32);
    let expires_at = now + attempt.session_secs;
    tx.execute(
        "INSERT INTO sessions (token_hash, user_id, expires_at, created_at) VALUES (?1, ?2, ?3, ?4)",
        crate::params![token_hash(&token), user.id, expires_at, now],
    )?;
    audit::append(
        &tx,
        &[audit::Entry::anonymous("user", Some(user.id), email, "auth.login")
            .on("user", user.id)
            .in_client(user.client_id)
            .detail(serde_json::json!({ "address": attempt.addr, "mfa": mfa_enabled }))],
    )?;
    let (must_change, mfa_required): (bool, bool) = tx.query_row(
        "SELECT u.must_change_password, coalesce(c.mfa_required, 0) FROM users u
         LEFT JOIN clients c ON c.id = u.client_id WHERE u.id = ?1",
        [user.id],
        |row| Ok((row.get::<_, i64>(0)? != 0, row.get::<_, i64>(1)? != 0)),
    )?;
    tx.commit()?;
    let restriction = Restriction::of(must_change, mfa_required, mfa_enabled);
    Ok(SignedIn { token, expires_at, restriction })
}

/// The token of `Authorization: Bearer TOKEN`; the scheme in any case (RFC 7235:
/// `bearer`, `BEARER`), one or more spaces before the token.
fn bearer(parts: &Parts) -> Option<&str> {
    bearer_token(parts.headers.get(axum::http::header::AUTHORIZATION)?.to_str().ok()?)
}

/// The token of an `Authorization` value with the Bearer scheme (any case).
pub fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim()).filter(|t| !t.is_empty())
}

/// The browser's session cookie: it carries the same session token as `Bearer`, and is
/// `HttpOnly` (no script reads it), `SameSite=Strict` (no other site's page sends it)
/// and `Path=/`.
pub const SESSION_COOKIE: &str = "portal_session";
/// The header a cookie-authenticated request that changes something must carry, with
/// the session's [`csrf_token`].
pub const CSRF_HEADER: &str = "x-csrf-token";
/// Derivation context of CSRF tokens (BLAKE3 `derive_key`): domain-separated from the
/// token hash the database stores, so neither reveals the other.
const CSRF_CONTEXT: &str = "portal-svc 2025 session cookie csrf token v1";

/// The CSRF token of a session: derived from the session token (which only the
/// server and the cookie hold), so it needs no storage, survives restarts, cannot be
/// guessed without the token, and does not reveal it.
pub fn csrf_token(session_token: &str) -> String {
    hex::encode(blake3::derive_key(CSRF_CONTEXT, session_token.as_bytes()))
}

/// The `Set-Cookie` value that gives the browser `token` for `max_age_secs`.
pub fn session_cookie(token: &str, max_age_secs: i64) -> String {
    format!("{SESSION_COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age_secs}")
}

/// The `Set-Cookie` value that makes the browser drop its session cookie.
pub fn cleared_session_cookie() -> String {
    format!("{SESSION_COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0")
}

/// The session token of the request's cookie, if it has one.
pub fn cookie_token(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.trim())
        .filter(|t| !t.is_empty())
}

/// Whether a request with `method` may change something (and so needs the CSRF token
/// when its credentials are the cookie a browser attaches by itself).
pub fn changes_state(method: &axum::http::Method) -> bool {
    !matches!(*method, axum::http::Method::GET | axum::http::Method::HEAD | axum::http::Method::OPTIONS)
}

/// Checks the request's `X-CSRF-Token` against the session's, in constant time; 403
/// `csrf_failed` when it is missing or wrong.
pub fn check_csrf(headers: &axum::http::HeaderMap, session_token: &str) -> Result<(), ApiError> {
    let expected = csrf_token(session_token);
    let sent = headers.get(CSRF_HEADER).map(|v| v.as_bytes()).unwrap_or_default();
    if bool::from(sent.ct_eq(expected.as_bytes())) {
        Ok(())
    } else {
        Err(ApiError {
            status: axum::http::StatusCode::FORBIDDEN,
            kind: "permission_error",
            code: "csrf_failed",
            message: format!(
                "a request signed in by the session cookie that changes something needs the {CSRF_HEADER} header \
                 (GET /v1/auth/session gives it)"
            ),
            param: None,
            retry_after_secs: None,
        })
    }
}

/// How the caller's credentials came, for a signed-in user's session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The session's CSRF token (see [`csrf_token`]).
    pub csrf_token: String,
    /// When the session ends (Unix seconds).
    pub expires_at: i64,
    /// Whether the session token came in the cookie rather than `Authorization`.
    pub via_cookie: bool,
    /// What is stored of the session's token (its BLAKE3 hash).
    pub token_hash: Vec<u8>,
    /// What the user must do before anything else, if anything.
    pub restriction: Option<Restriction>,
}

/// A session's user as authentication reads it: id, email, role, client, session end,
/// must change the password, MFA on, MFA required by the client.
type SessionRow = (i64, String, String, Option<i64>, i64, bool, bool, bool);

/// What a signed-in user must do before the session may do anything else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restriction {
    /// An administrator set a temporary password: change it (403 `password_change_required`).
    PasswordChange,
    /// The user's client requires MFA and the user has none: enrol (403 `mfa_enrollment_required`).
    MfaEnrollment,
}

impl Restriction {
    /// The restriction of a user who must change a temporary password, or whose client
    /// requires MFA without the user having it; none otherwise.
    pub fn of(must_change_password: bool, mfa_required: bool, mfa_enabled: bool) -> Option<Restriction> {
        if must_change_password {
            Some(Restriction::PasswordChange)
        } else if mfa_required && !mfa_enabled {
            Some(Restriction::MfaEnrollment)
        } else {
            None
        }
    }

    /// The routes a restricted session may call: who it is, its session, signing out,
    /// changing the password and enrolling in MFA.
    const ALLOWED: [(&'static str, &'static str); 6] = [
        ("GET", "/v1/users/me"),
        ("GET", "/v1/auth/session"),
        ("POST", "/v1/auth/logout"),
        ("POST", "/v1/users/me/password"),
        ("POST", "/v1/users/me/mfa"),
        ("POST", "/v1/users/me/mfa/verify"),
    ];

    /// The 403 for a call of `method` `route` (a route template) outside [`Restriction::ALLOWED`].
    pub fn check(self, method: &axum::http::Method, route: &str) -> Result<(), ApiError> {
        if Restriction::ALLOWED.iter().any(|(m, r)| *m == method.as_str() && *r == route) {
            return Ok(());
        }
        let (code, message) = match self {
            Restriction::PasswordChange => (
                "password_change_required",
                "an administrator set a temporary password: change it first (POST /v1/users/me/password)",
            ),
            Restriction::MfaEnrollment => {
                ("mfa_enrollment_required", "your organisation requires MFA: enrol first (POST /v1/users/me/mfa)")
            }
        };
        Err(ApiError { code, ..ApiError::forbidden(message) })
    }

    /// The name the API shows (`GET /v1/users/me`, the sign-in answer).
    pub fn as_str(self) -> &'static str {
        match self {
            Restriction::PasswordChange => "password_change",
            Restriction::MfaEnrollment => "mfa_enrollment",
        }
    }
}

/// Ends the session of `token` (a no-op when there is none).
pub fn end_session(conn: &crate::db::Conn, token: &str) -> Result<(), ApiError> {
    conn.execute("DELETE FROM sessions WHERE token_hash = ?1", [token_hash(token)])?;
    Ok(())
}

/// The principal the access check of the route table left in the request; a handler
/// reached without one (a route declared public) authenticates here.
impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Principal, ApiError> {
        match parts.extensions.get::<Principal>() {
            Some(p) => Ok(p.clone()),
            None => authenticate(parts, state).await,
        }
    }
}

/// Who sent this request: a session token's user or an API key's application
/// (401 when neither is valid; 403 `csrf_failed` for a cookie session's request that
/// changes something without the CSRF token).
pub async fn authenticate(parts: &Parts, state: &AppState) -> Result<Principal, ApiError> {
    authenticate_session(parts, state).await.map(|(principal, _)| principal)
}

/// [`authenticate`], with the session when the caller is a signed-in user.
///
/// Credentials are `Authorization: Bearer` (a session token or an API key) or, only
/// when that header is absent, the session cookie. A request with the cookie is one
/// the browser may have been made to send by another page, so when it changes
/// something it must also carry the session's CSRF token, which a page can only know
/// by reading it from this origin.
pub async fn authenticate_session(parts: &Parts, state: &AppState) -> Result<(Principal, Option<Session>), ApiError> {
    let (token, via_cookie) = if parts.headers.contains_key(axum::http::header::AUTHORIZATION) {
        (bearer(parts), false)
    } else {
        (cookie_token(&parts.headers), true)
    };
    let token = token
        .ok_or_else(|| {
            ApiError::unauthenticated(
                "missing_credentials",
                "send Authorization: Bearer TOKEN, or sign in (session cookie)",
            )
        })?
        .to_string();
    if !via_cookie && let Some(secret) = token.strip_prefix(API_KEY_PREFIX) {
        let lookup = secret.get(..KEY_LOOKUP_CHARS).unwrap_or_default().to_string();
        let hash = token_hash(&token);
        let shared = state.db.is_postgres();
        if !shared && let Some(principal) = state.key_cache.get(&hash) {
            return Ok((principal, None));
        }
        let cache = std::sync::Arc::clone(&state.key_cache);
        let generation = cache.generation();
        return state
            .db
            .call(move |conn| {
                let row: Option<(i64, i64, Vec<u8>)> = conn
                    .query_row(
                        "SELECT id, client_id, key_hash FROM applications WHERE key_lookup = ?1 AND revoked_at IS NULL",
                        [lookup],
                        |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
                    )
                    .optional()?;
                match row {
                    Some((id, client_id, stored)) if bool::from(stored.as_slice().ct_eq(hash.as_slice())) => {
                        let principal = Principal {
                            actor: Actor::Application { id },
                            role: Role::Operator,
                            client_id: Some(client_id),
                        };
                        if !shared {
                            cache.insert(generation, hash, principal.clone());
                        }
                        Ok((principal, None))
                    }
                    _ => Err(ApiError::unauthenticated("invalid_api_key", "the API key is unknown or revoked")),
                }
            })
            .await;
    }
    // The token is looked up by its hash: an equality match on a 256-bit digest,
    // so timing reveals nothing about valid tokens.
    let hash = token_hash(&token);
    let stored_hash = hash.clone();
    let (principal, expires_at, restriction) = state
        .db
        .call(move |conn| {
            // A deactivated user's sessions are refused here even if one outlived the
            // deactivation (which deletes them).
            let row: Option<SessionRow> = conn
                .prepare_cached(
                    "SELECT u.id, u.email, u.role, u.client_id, s.expires_at, u.must_change_password,
                            u.mfa_enabled, coalesce(c.mfa_required, 0)
                     FROM sessions s JOIN users u ON u.id = s.user_id LEFT JOIN clients c ON c.id = u.client_id
                     WHERE s.token_hash = ?1 AND s.expires_at > ?2 AND u.active = 1",
                )?
                .query_row(crate::params![hash, now_secs()], |row| {
                    Ok((
                        row.get(0)?,
                        row.get(1)?,
                        row.get(2)?,
                        row.get(3)?,
                        row.get(4)?,
                        row.get::<_, i64>(5)? != 0,
                        row.get::<_, i64>(6)? != 0,
                        row.get::<_, i64>(7)? != 0,
                    ))
                })
                .optional()?;
            let (user_id, email, role, client_id, expires_at, must_change, mfa_enabled, mfa_required) =
                row.ok_or_else(|| ApiError::unauthenticated("invalid_token", "the token is unknown or expired"))?;
            let role = Role::parse(&role).ok_or_else(|| ApiError::internal("unknown role in the database"))?;
            let restriction = Restriction::of(must_change, mfa_required, mfa_enabled);
            Ok((Principal { actor: Actor::User { id: user_id, email }, role, client_id }, expires_at, restriction))
        })
        .await?;
    // Checked after the session, so an expired cookie is a 401 (sign in again), not a 403.
    if via_cookie && changes_state(&parts.method) {
        check_csrf(&parts.headers, &token)?;
    }
    let session =
        Session { csrf_token: csrf_token(&token), expires_at, via_cookie, token_hash: stored_hash, restriction };
    Ok((principal, Some(session)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_hash_with_argon2id_and_verify() {
        let hash = hash_password("correct horse").expect("hash");
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(verify_password("correct horse", &hash));
        assert!(!verify_password("correct horse!", &hash));
        assert!(!verify_password("correct horse", "not a phc string"));
        assert_ne!(hash_password("correct horse").expect("hash"), hash, "salted");
    }

    #[test]
    fn secrets_are_random_and_stored_hashed() {
        let a = random_secret(32);
        assert_eq!(a.len(), 64);
        assert_ne!(a, random_secret(32));
        assert_eq!(token_hash(&a).len(), 32);
        assert_ne!(token_hash(&a), a.as_bytes());
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let mut headers = axum::http::HeaderMap::new();
        assert_eq!(cookie_token(&headers), None);
        headers.append(axum::http::header::COOKIE, "theme=dark; portal_session_x=no".parse().expect("value"));
        assert_eq!(cookie_token(&headers), None, "only the exact name");
        headers.append(axum::http::header::COOKIE, "a=1;  portal_session=abc123 ; b=2".parse().expect("value"));
        assert_eq!(cookie_token(&headers), Some("abc123"));
        let cookie = session_cookie("abc123", 60);
        for attribute in ["portal_session=abc123", "HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=60"] {
            assert!(cookie.split("; ").any(|a| a == attribute), "{cookie} lacks {attribute}");
        }
        assert!(cleared_session_cookie().contains("Max-Age=0"));
    }

    #[test]
    fn csrf_tokens_are_derived_per_session_and_checked() {
        let (a, b) = (random_secret(32), random_secret(32));
        assert_eq!(csrf_token(&a), csrf_token(&a), "stable: no storage needed");
        assert_ne!(csrf_token(&a), csrf_token(&b));
        assert_ne!(csrf_token(&a).as_bytes(), hex::encode(token_hash(&a)).as_bytes(), "not the stored hash");
        assert!(!csrf_token(&a).contains(&a));
        let mut headers = axum::http::HeaderMap::new();
        assert_eq!(check_csrf(&headers, &a).map_err(|e| e.code), Err("csrf_failed"));
        headers.insert(CSRF_HEADER, csrf_token(&b).parse().expect("value"));
        assert_eq!(check_csrf(&headers, &a).map_err(|e| e.code), Err("csrf_failed"), "another session's token");
        headers.insert(CSRF_HEADER, csrf_token(&a).parse().expect("value"));
        assert!(check_csrf(&headers, &a).is_ok());
        assert!(changes_state(&axum::http::Method::POST) && changes_state(&axum::http::Method::DELETE));
        assert!(!changes_state(&axum::http::Method::GET) && !changes_state(&axum::http::Method::HEAD));
    }
}
