//! Over real HTTP: TOTP enrolment, verification, login with the second factor, codes
//! never accepted twice, single-use recovery codes.
#![allow(clippy::unwrap_used)]

mod common;

use common::{ADMIN_EMAIL, ADMIN_PASSWORD, Service, error_code};
use serde_json::json;
use totp_rs::{Algorithm, Secret, TOTP};

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

/// The code an authenticator would show at `time` for the enrolment `secret`.
fn code(secret: &str, time: u64) -> String {
    let bytes = Secret::Encoded(secret.to_string()).to_bytes().unwrap();
    TOTP::new_unchecked(Algorithm::SHA1, 6, 0, 30, bytes, None, String::new()).generate(time)
}

fn login_otp(svc: &Service, otp: Option<&str>) -> (u16, serde_json::Value) {
    let mut body = json!({ "email": ADMIN_EMAIL, "password": ADMIN_PASSWORD });
    if let Some(otp) = otp {
        body["otp"] = json!(otp);
    }
    svc.request("POST", "/v1/auth/login", None, Some(&body.to_string()))
}

#[test]
fn enrol_verify_and_log_in_with_codes_used_once() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::start(dir.path(), true);
    let token = svc.token(ADMIN_EMAIL, ADMIN_PASSWORD);

    let (status, enrol) = svc.post("/v1/users/me/mfa", &token, json!({}));
    assert_eq!(status, 200, "{enrol}");
    let secret = enrol["secret"].as_str().unwrap().to_string();
    assert!(secret.len() >= 32 && secret.chars().all(|c| c.is_ascii_uppercase() || ('2'..='7').contains(&c)));
    let url = enrol["otpauth_url"].as_str().unwrap();
    assert!(url.starts_with("otpauth://totp/") && url.contains(&format!("secret={secret}")), "{url}");
    let recovery: Vec<String> =
        enrol["recovery_codes"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().to_string()).collect();
    assert_eq!(recovery.len(), 10);

    // Not enforced until verified: a password alone still signs in.
    assert_eq!(login_otp(&svc, None).0, 200);

    // A wrong code is refused and MFA stays off.
    let (status, body) = svc.post("/v1/users/me/mfa/verify", &token, json!({ "otp": "000000" }));
    let wrong_is_right = code(&secret, now()) == "000000";
    if !wrong_is_right {
        assert_eq!((status, error_code(&body).as_str()), (401, "invalid_otp"));
        assert_eq!(login_otp(&svc, None).0, 200);
    }

    let step = now() / 30;
    let first = code(&secret, step * 30);
    let (status, body) = svc.post("/v1/users/me/mfa/verify", &token, json!({ "otp": first }));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["mfa_enabled"], json!(true));

    // Now the second factor is required, and the code used to verify is spent.
    let (status, body) = login_otp(&svc, None);
    assert_eq!((status, error_code(&body).as_str()), (401, "mfa_required"));
    let (status, body) = login_otp(&svc, Some(&first));
    assert_eq!((status, error_code(&body).as_str()), (401, "invalid_otp"), "a code is accepted at most once");

    // The next step's code (within the allowed skew) works once.
    let next = code(&secret, (step + 1) * 30);
    let (status, body) = login_otp(&svc, Some(&next));
    assert_eq!(status, 200, "{body}");
    let (status, body) = login_otp(&svc, Some(&next));
    assert_eq!((status, error_code(&body).as_str()), (401, "invalid_otp"));

    // A recovery code works once, in any case and with or without its dash.
    let recovery_input = recovery[3].to_uppercase().replace('-', "");
    assert_eq!(login_otp(&svc, Some(&recovery_input)).0, 200);
    let (status, body) = login_otp(&svc, Some(&recovery[3]));
    assert_eq!((status, error_code(&body).as_str()), (401, "invalid_otp"));

    // Enrolling again while MFA is on is a conflict (it would drop the second factor).
    let (status, body) = svc.post("/v1/users/me/mfa", &token, json!({}));
    assert_eq!((status, error_code(&body).as_str()), (409, "mfa_already_enabled"));

    // Neither the secret nor the recovery codes are logged or stored in the clear
    // (the secret must be stored to verify codes; the recovery codes need not be).
    let db = common::metadata_bytes(dir.path());
    for c in &recovery {
        assert!(!db.windows(c.len()).any(|w| w == c.as_bytes()), "a recovery code is stored in the clear");
    }
}

#[test]
fn wrong_codes_count_towards_throttling_and_keys_have_no_mfa() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::start(dir.path(), true);
    let token = svc.token(ADMIN_EMAIL, ADMIN_PASSWORD);
    let (_, enrol) = svc.post("/v1/users/me/mfa", &token, json!({}));
    let secret = enrol["secret"].as_str().unwrap().to_string();
    let (status, _) = svc.post("/v1/users/me/mfa/verify", &token, json!({ "otp": code(&secret, now()) }));
    assert_eq!(status, 200);

    // Guessing codes with the right password is throttled like guessing passwords.
    let mut throttled = false;
    for guess in 0..=portal_svc::auth::LOGIN_FAILURES_MAX {
        let guess = format!("{:06}", 100_000 + guess);
        let (status, body) = login_otp(&svc, Some(&guess));
        if status == 429 {
            assert_eq!(error_code(&body), "too_many_login_attempts");
            throttled = true;
            break;
        }
        assert_eq!(status, 401, "{body}");
    }
    assert!(throttled, "wrong codes in a row lock the account like wrong passwords");

    let (_, key) = svc.client_with_key(&token, "acme");
    let (status, body) = svc.post("/v1/users/me/mfa", &key, json!({}));
    assert_eq!((status, error_code(&body).as_str()), (403, "forbidden"));
    let (status, body) = svc.post("/v1/users/me/mfa/verify", &key, json!({ "otp": "123456" }));
    assert_eq!((status, error_code(&body).as_str()), (403, "forbidden"));
}
