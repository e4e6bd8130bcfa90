//! Over real HTTP: health, bootstrap admin, login, sessions, throttling, and the error
//! body on every kind of bad input.
#![allow(clippy::unwrap_used)]

mod common;

use common::{ADMIN_EMAIL, ADMIN_PASSWORD, Service, error_code};

#[test]
fn health_login_and_the_session_token() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::start(dir.path(), true);
    assert_eq!(svc.request("GET", "/healthz", None, None).0, 200);
    assert!(svc.banner.is_empty(), "no generated password when the admin comes from the environment");

    let (status, body) = svc.login(ADMIN_EMAIL, ADMIN_PASSWORD);
    assert_eq!(status, 200, "{body}");
    let token = body["token"].as_str().unwrap().to_string();
    assert_eq!(token.len(), 64);
    assert!(body["expires_at"].as_i64().unwrap() > 0);
    let (status, me) = svc.request("GET", "/v1/users/me", Some(&token), None);
    assert_eq!((status, me["email"].as_str(), me["role"].as_str()), (200, Some(ADMIN_EMAIL), Some("admin")));

    // The token is stored only as a hash: it appears nowhere in the database file.
    let db = common::metadata_bytes(dir.path());
    assert!(!db.windows(token.len()).any(|w| w == token.as_bytes()), "the raw token is stored");

    for (token, code) in [(None, "missing_credentials"), (Some("nonsense"), "invalid_token")] {
        let (status, body) = svc.request("GET", "/v1/users/me", token, None);
        assert_eq!((status, error_code(&body).as_str()), (401, code));
    }
    assert!(svc.stop(), "SIGTERM drains and exits cleanly");
}

#[test]
fn bad_credentials_and_bad_bodies_get_the_error_body() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::start(dir.path(), true);
    for (email, password) in [(ADMIN_EMAIL, "wrong"), ("nobody@example.test", ADMIN_PASSWORD)] {
        let (status, body) = svc.login(email, password);
        assert_eq!((status, error_code(&body).as_str()), (401, "invalid_credentials"));
    }
    let bad_bodies = ["", "{", "[]", r#"{"email": 5}"#, r#"{"email":"a","password":"b","extra":1}"#];
    for body in bad_bodies {
        let (status, reply) = svc.request("POST", "/v1/auth/login", None, Some(body));
        assert_eq!((status, error_code(&reply).as_str()), (400, "invalid_json"), "{body:?}");
    }
    let (status, reply) = svc.request("POST", "/v1/auth/login", None, Some(r#"{"email":"","password":""}"#));
    assert_eq!((status, reply["error"]["param"].as_str()), (400, Some("email")));
    let huge = format!(r#"{{"email":"{}","password":"x"}}"#, "a".repeat(100_000));
    let (status, reply) = svc.request("POST", "/v1/auth/login", None, Some(&huge));
    assert_eq!((status, error_code(&reply).as_str()), (413, "body_too_large"), "bodies are size-limited");
    let (status, reply) = svc.request("GET", "/v1/no/such/route", None, None);
    assert_eq!((status, error_code(&reply).as_str()), (404, "not_found"));
}

#[test]
fn repeated_failures_are_throttled_even_for_the_right_password() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::start(dir.path(), true);
    for _ in 0..portal_svc::auth::LOGIN_FAILURES_MAX {
        assert_eq!(svc.login(ADMIN_EMAIL, "guess").0, 401);
    }
    let (status, body) = svc.login(ADMIN_EMAIL, ADMIN_PASSWORD);
    assert_eq!((status, error_code(&body).as_str()), (429, "too_many_login_attempts"));
}

#[test]
fn without_an_admin_in_the_environment_a_password_is_printed_once() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::start(dir.path(), false);
    let line = svc.banner.iter().find(|l| l.contains("admin@localhost")).expect("the generated admin is printed");
    let password = line.rsplit(' ').next().unwrap().to_string();
    assert_eq!(svc.login("admin@localhost", &password).0, 200);
    assert!(svc.stop());
    // A restart on the same data neither prints nor changes it.
    let svc = Service::start(dir.path(), false);
    assert!(svc.banner.is_empty(), "{:?}", svc.banner);
    assert_eq!(svc.login("admin@localhost", &password).0, 200);
}
