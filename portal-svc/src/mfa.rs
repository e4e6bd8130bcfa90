//! TOTP multi-factor authentication (RFC 6238: SHA-1, 6 digits, 30-second steps) with
//! single-use recovery codes.
//!
//! A code is accepted for the step before, the current one and the one after (clock
//! skew), and never twice: the last accepted step is stored per user and only later
//! steps pass. Recovery codes are random, stored only as BLAKE3 hashes, and each works
//! once.

use crate::db::{Connection, OptionalExtension};
use crate::params;
use rand_core::{OsRng, RngCore};
use subtle::ConstantTimeEq;
use totp_rs::{Algorithm, Secret, TOTP};

use crate::db::now_secs;
use crate::error::ApiError;

/// Seconds per TOTP step.
pub const STEP_SECS: u64 = 30;
/// Digits per code.
pub const DIGITS: usize = 6;
/// Recovery codes issued at enrolment.
pub const RECOVERY_CODES: usize = 10;
/// Issuer shown by authenticator apps.
pub const ISSUER: &str = "portal";

/// A new random 160-bit secret (RFC 4226's recommended length), base32.
pub fn new_secret() -> String {
    let mut bytes = [0u8; 20];
    OsRng.fill_bytes(&mut bytes);
    Secret::Raw(bytes.to_vec()).to_encoded().to_string()
}

fn totp(secret_base32: &str, account: &str) -> Result<TOTP, ApiError> {
    let bytes =
        Secret::Encoded(secret_base32.to_string()).to_bytes().map_err(|e| ApiError::internal(format!("{e:?}")))?;
    TOTP::new(Algorithm::SHA1, DIGITS, 1, STEP_SECS, bytes, Some(ISSUER.to_string()), account.to_string())
        .map_err(ApiError::internal)
}

/// The `otpauth://` URL an authenticator app scans.
pub fn otpauth_url(secret_base32: &str, account: &str) -> Result<String, ApiError> {
    Ok(totp(secret_base32, account)?.get_url())
}

/// The step whose code `code` is, among the previous, current and next step at `now`
/// (Unix seconds), compared in constant time.
pub fn matching_step(secret_base32: &str, account: &str, code: &str, now: u64) -> Result<Option<u64>, ApiError> {
    let totp = totp(secret_base32, account)?;
    let step = now / STEP_SECS;
    let mut found = None;
    for s in [step.saturating_sub(1), step, step + 1] {
        let expected = totp.generate(s * STEP_SECS);
        if bool::from(expected.as_bytes().ct_eq(code.as_bytes())) {
            found = Some(s);
        }
    }
    Ok(found)
}

/// Fresh recovery codes, `xxxxx-xxxxx` from an unambiguous alphabet (50 bits each).
pub fn new_recovery_codes() -> Vec<String> {
    // Crockford's base32: no i, l, o or u to misread.
    const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";
    (0..RECOVERY_CODES)
        .map(|_| {
            let mut bytes = [0u8; 10];
            OsRng.fill_bytes(&mut bytes);
            let chars: String = bytes.iter().map(|b| char::from(ALPHABET[usize::from(b & 31)])).collect();
            format!("{}-{}", &chars[..5], &chars[5..])
        })
        .collect()
}

/// What is stored of a recovery code: the hash of its normalized form.
pub fn recovery_hash(code: &str) -> Vec<u8> {
    let normalized: String =
        code.chars().filter(|c| *c != '-' && !c.is_whitespace()).flat_map(char::to_lowercase).collect();
    blake3::derive_key("portal-svc mfa recovery code v1", normalized.as_bytes()).to_vec()
}

/// The MFA state of a user: `(secret as stored (encrypted), enabled, last accepted step)`.
pub fn state(conn: &Connection, user_id: i64) -> Result<(Option<String>, bool, Option<i64>), ApiError> {
    Ok(conn
        .query_row("SELECT mfa_secret, mfa_enabled, mfa_last_step FROM users WHERE id = ?1", [user_id], |row| {
            Ok((row.get(0)?, row.get::<_, i64>(1)? != 0, row.get(2)?))
        })
        .optional()?
        .unwrap_or((None, false, None)))
}

/// Accepts `otp` for the user once: a TOTP code of a step after the last accepted one
/// (recorded), or an unused recovery code (marked used). Call inside a transaction.
/// The stored secret is decrypted with `ring` (see [`crate::secrets`]).
pub fn accept(
    conn: &Connection,
    ring: &crate::secrets::Keyring,
    user_id: i64,
    account: &str,
    otp: &str,
) -> Result<bool, ApiError> {
    let (secret, _, last_step) = state(conn, user_id)?;
    let Some(secret) = secret else { return Ok(false) };
    let secret = ring.open(user_id, &secret).map_err(ApiError::internal)?;
    let otp = otp.trim();
    if otp.len() == DIGITS && otp.bytes().all(|b| b.is_ascii_digit()) {
        let now = u64::try_from(now_secs()).unwrap_or(0);
        let Some(step) = matching_step(&secret, account, otp, now)? else { return Ok(false) };
        let step = i64::try_from(step).map_err(ApiError::internal)?;
        if last_step.is_some_and(|last| step <= last) {
            return Ok(false);
        }
        conn.execute("UPDATE users SET mfa_last_step = ?1 WHERE id = ?2", params![step, user_id])?;
        return Ok(true);
    }
    let used = conn.execute(
        "UPDATE mfa_recovery_codes SET used_at = ?1 WHERE user_id = ?2 AND code_hash = ?3 AND used_at IS NULL",
        params![now_secs(), user_id, recovery_hash(otp)],
    )?;
    Ok(used == 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_match_their_step_only() {
        let secret = new_secret();
        let totp = totp(&secret, "a@example.test").expect("totp");
        let now = 1_800_000_000;
        let code = totp.generate(now);
        assert_eq!(matching_step(&secret, "a@example.test", &code, now).expect("check"), Some(now / STEP_SECS));
        assert_eq!(
            matching_step(&secret, "a@example.test", &code, now + STEP_SECS).expect("check"),
            Some(now / STEP_SECS),
            "one step of skew"
        );
        assert_eq!(matching_step(&secret, "a@example.test", &code, now + 3 * STEP_SECS).expect("check"), None);
        assert!(otpauth_url(&secret, "a@example.test").expect("url").starts_with("otpauth://totp/"));
    }

    #[test]
    fn recovery_codes_are_random_and_normalized() {
        let codes = new_recovery_codes();
        assert_eq!(codes.len(), RECOVERY_CODES);
        assert_ne!(codes[0], codes[1]);
        assert_eq!(recovery_hash(&codes[0]), recovery_hash(&codes[0].to_uppercase().replace('-', "")));
    }
}
