//! `Idempotency-Key`: scoped to the client; the ledger id of the transaction is derived
//! from (client, key), so the guarantee holds across restarts and crashes, and the
//! original response is stored to be replayed.
//!
//! Requests with the same key are serialized through a striped lock, so concurrent
//! duplicates wait for the first and then replay its response.
//!
//! The response is not waited for: the key's fingerprint is written ahead, in the
//! same group commit as the pending audit entry while the ledger commits
//! ([`AHEAD_STATUS`]), and the response completes that row after the answer. A replay
//! that finds only the row written ahead rebuilds the original answer from the
//! ledger's record as it stood at its commit, which is durable before any answer.

use std::sync::Arc;

use ledger_core::TxId;
use tokio::sync::{Mutex, MutexGuard};

use crate::error::ApiError;

/// The status of a key's row written ahead, while the ledger commits (a real one is
/// an HTTP status): the row holds the request's fingerprint but no response yet. A
/// retry that finds one answers from the ledger's record when the ledger has it
/// (the answer was, or would have been, built from that record), and is judged afresh
/// when it does not (the ledger refused or never got that attempt).
pub const AHEAD_STATUS: u16 = 0;

/// Longest key accepted (the contract: 1 to 255 printable ASCII characters).
pub const KEY_CHARS_MAX: usize = 255;
const STRIPES: usize = 256;

/// Striped locks serializing requests that share a key.
#[derive(Debug, Clone)]
pub struct KeyLocks {
    stripes: Arc<Vec<Mutex<()>>>,
}

impl Default for KeyLocks {
    fn default() -> Self {
        KeyLocks { stripes: Arc::new((0..STRIPES).map(|_| Mutex::new(())).collect()) }
    }
}

impl KeyLocks {
    /// Waits for the lock of `(client, key)`.
    pub async fn lock(&self, client_id: i64, key: &str) -> MutexGuard<'_, ()> {
        let h = blake3::hash(&[&client_id.to_le_bytes()[..], key.as_bytes()].concat());
        let stripe = usize::from(h.as_bytes()[0]) % STRIPES;
        self.stripes[stripe].lock().await
    }
}

/// Checks a key's form.
pub fn validate_key(key: &str) -> Result<(), ApiError> {
    if key.is_empty() || key.len() > KEY_CHARS_MAX || !key.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Err(ApiError::invalid(
            "invalid_idempotency_key",
            "Idempotency-Key must be 1 to 255 printable ASCII characters",
        )
        .with_param("Idempotency-Key"));
    }
    Ok(())
}

/// The ledger id of the transaction a (client, key) names: BLAKE3 of both, 128 bits.
pub fn ledger_id(client_id: i64, key: &str) -> TxId {
    let mut h = blake3::Hasher::new_derive_key("ledger portal-svc idempotency key 2026-11 v1");
    h.update(&client_id.to_le_bytes());
    h.update(key.as_bytes());
    let mut id = [0u8; 16];
    id.copy_from_slice(&h.finalize().as_bytes()[..16]);
    // A zero id is invalid in the ledger; 2^-128 odds, but never produce one.
    TxId(u128::from_le_bytes(id).max(1))
}

/// What identifies a request's content: method, path and body. The body counts by its
/// JSON value, not its bytes, so the same request with its keys in another order or
/// other spacing is the same request (it was a 409). An empty body is `{}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint {
    /// Over the body's JSON value (keys sorted, no spacing): what is stored.
    pub canonical: Vec<u8>,
    /// Over the body's bytes: how responses stored before were fingerprinted.
    raw: Vec<u8>,
}

impl Fingerprint {
    /// Whether a stored fingerprint is this request's (either form).
    pub fn matches(&self, stored: &[u8]) -> bool {
        stored == self.canonical.as_slice() || stored == self.raw.as_slice()
    }
}

fn hash(method: &str, path: &str, body: &[u8]) -> Vec<u8> {
    let mut h = blake3::Hasher::new();
    h.update(method.as_bytes());
    h.update(b"\0");
    h.update(path.as_bytes());
    h.update(b"\0");
    h.update(body);
    h.finalize().as_bytes().to_vec()
}

/// The fingerprint of a request. serde_json's maps are ordered by key (no
/// `preserve_order`), so a value printed again is canonical.
pub fn fingerprint(method: &str, path: &str, body: &[u8]) -> Fingerprint {
    let canonical = if body.is_empty() {
        "{}".to_string()
    } else {
        serde_json::from_slice::<serde_json::Value>(body)
            .map_or_else(|_| String::from_utf8_lossy(body).into_owned(), |v| v.to_string())
    };
    Fingerprint { canonical: hash(method, path, canonical.as_bytes()), raw: hash(method, path, body) }
}

/// A random ledger id for a request without a key.
pub fn random_id() -> TxId {
    use rand_core::{OsRng, RngCore};
    let mut id = [0u8; 16];
    OsRng.fill_bytes(&mut id);
    TxId(u128::from_le_bytes(id).max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_json_in_another_order_or_spacing_is_the_same_request() {
        let a = fingerprint("POST", "/v1/transactions", br#"{"amount":"1.00","currency":"USD","kind":"payment"}"#);
        let b = fingerprint(
            "POST",
            "/v1/transactions",
            b"{ \"kind\": \"payment\",\n \"currency\": \"USD\", \"amount\": \"1.00\" }",
        );
        assert_eq!(a.canonical, b.canonical);
        let other = fingerprint("POST", "/v1/transactions", br#"{"amount":"1.01","currency":"USD","kind":"payment"}"#);
        assert_ne!(a.canonical, other.canonical);
        assert!(!a.matches(&other.canonical));
        let elsewhere = fingerprint("POST", "/v1/other", br#"{"amount":"1.00","currency":"USD","kind":"payment"}"#);
        assert_ne!(a.canonical, elsewhere.canonical);
        // A response stored before (fingerprinted by bytes) still replays for its bytes.
        let legacy = hash(
            "POST",
            "/v1/transactions",
            b"{ \"kind\": \"payment\",\n \"currency\": \"USD\", \"amount\": \"1.00\" }",
        );
        assert!(b.matches(&legacy));
        assert_eq!(fingerprint("POST", "/p", b"").canonical, fingerprint("POST", "/p", b"{}").canonical);
    }
}
