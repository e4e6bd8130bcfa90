//! Errors that axum answers by itself (a known path with another method, a body past
//! the limit read by a `Bytes` extractor) carry the API's error body like every other
//! error. Found by the `portal_request` fuzz target (fuzz/seeds/portal_request/
//! wrong-method and body-too-large).
#![allow(clippy::unwrap_used)]

mod common;

use common::{ADMIN_EMAIL, ADMIN_PASSWORD, Service, error_code};
use serde_json::Value;

#[test]
fn a_known_path_with_another_method_is_405_with_the_error_body() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::start(dir.path(), true);
    let admin = svc.token(ADMIN_EMAIL, ADMIN_PASSWORD);
    for (method, path) in [("DELETE", "/v1/balance"), ("PUT", "/v1/transactions"), ("PATCH", "/healthz")] {
        let (status, body) = svc.request(method, path, Some(&admin), Some("{}"));
        assert_eq!((status, error_code(&body).as_str()), (405, "method_not_allowed"), "{method} {path}: {body}");
    }
    // The Allow header axum sets is kept.
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let response = agent.delete(&format!("{}/v1/balance", svc.base)).call().unwrap();
    assert_eq!(response.status().as_u16(), 405);
    let allow = response.headers().get("allow").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    assert!(allow.contains("GET"), "Allow: {allow:?}");
    assert!(response.headers().get("content-type").is_some_and(|v| v == "application/json"));
}

#[test]
fn an_oversized_money_request_is_413_with_the_error_body() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::start(dir.path(), true);
    let admin = svc.token(ADMIN_EMAIL, ADMIN_PASSWORD);
    let (_, key) = svc.client_with_key(&admin, "acme");
    let padding = " ".repeat(portal_svc::app::BODY_BYTES_MAX + 1);
    let body = format!(r#"{padding}{{"kind":"payment","amount":"1.00","currency":"USD"}}"#);
    for path in ["/v1/transactions", "/v1/transactions/tx_00000000000000000000000000000001/refunds"] {
        let (status, reply) = svc.request("POST", path, Some(&key), Some(&body));
        assert_eq!((status, error_code(&reply).as_str()), (413, "body_too_large"), "{path}: {reply}");
    }
    let (status, reply) = svc.request("GET", "/v1/transactions", Some(&key), None);
    assert_eq!(status, 200);
    assert_eq!(reply["data"], Value::Array(vec![]), "nothing was committed");
}
