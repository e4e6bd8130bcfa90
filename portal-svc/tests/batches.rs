//! Over real HTTP: closing batches, listing and reconciling them, and balances, each
//! client seeing only its own.
#![allow(clippy::unwrap_used)]

mod common;

use common::{ADMIN_EMAIL, ADMIN_PASSWORD, Service, error_code};
use serde_json::json;

#[test]
fn batches_close_reconcile_and_balances_follow() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::start(dir.path(), true);
    let admin = svc.token(ADMIN_EMAIL, ADMIN_PASSWORD);
    let (_, a) = svc.client_with_key(&admin, "A");
    let (_, b) = svc.client_with_key(&admin, "B");

    let (status, reply) = svc.post("/v1/batches/close", &a, json!({ "currency": "USD" }));
    assert_eq!((status, error_code(&reply).as_str()), (404, "not_found"), "nothing to close yet");

    let pay = |amount: &str, capture: bool| {
        let body = json!({ "kind": "payment", "amount": amount, "currency": "USD", "capture": capture }).to_string();
        let (status, _, tx) = svc.post_keyed("/v1/transactions", &a, None, &body);
        assert_eq!(status, 201, "{tx}");
        tx["id"].as_str().unwrap().to_string()
    };
    let sale = pay("25.00", true);
    let auth = pay("40.00", false);
    svc.post_keyed(&format!("/v1/transactions/{auth}/capture"), &a, None, r#"{"amount":"30.00"}"#);
    svc.post_keyed(&format!("/v1/transactions/{sale}/refunds"), &a, None, r#"{"amount":"5.00"}"#);
    let adj = json!({ "kind": "adjustment", "amount": "-1.50", "currency": "USD" }).to_string();
    assert_eq!(svc.post_keyed("/v1/transactions", &a, None, &adj).0, 201);

    let (status, balance) = svc.request("GET", "/v1/balance", Some(&a), None);
    assert_eq!(status, 200);
    assert_eq!(
        balance["data"][0],
        json!({ "currency": "USD", "captured": "55.00", "refunded": "5.00", "adjusted": "-1.50", "net": "48.50", "settled_net": "0.00", "open_net": "48.50" })
    );

    let (status, batch) = svc.post("/v1/batches/close", &a, json!({ "currency": "USD" }));
    assert_eq!(status, 200, "{batch}");
    assert_eq!(
        (batch["status"].as_str(), batch["payment_count"].as_u64(), batch["payment_total"].as_str()),
        (Some("closed"), Some(2), Some("55.00"))
    );
    assert_eq!(
        (batch["refund_total"].as_str(), batch["adjustment_total"].as_str(), batch["net"].as_str()),
        (Some("5.00"), Some("-1.50"), Some("48.50"))
    );
    let id = batch["id"].as_u64().unwrap();

    let (_, rec) = svc.request("GET", &format!("/v1/batches/{id}/reconciliation"), Some(&a), None);
    assert_eq!(rec["matches"], json!(true), "{rec}");
    assert_eq!(rec["transactions"]["net"].as_str(), Some("48.50"));
    let (_, got) = svc.request("GET", &format!("/v1/batches/{id}"), Some(&a), None);
    assert_eq!(got, batch);
    let (_, list) = svc.request("GET", "/v1/batches", Some(&a), None);
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    let (_, balance) = svc.request("GET", "/v1/balance", Some(&a), None);
    assert_eq!(
        (balance["data"][0]["settled_net"].as_str(), balance["data"][0]["open_net"].as_str()),
        (Some("48.50"), Some("0.00"))
    );

    // Client B sees none of it.
    assert_eq!(svc.request("GET", &format!("/v1/batches/{id}"), Some(&b), None).0, 404);
    assert_eq!(svc.request("GET", &format!("/v1/batches/{id}/reconciliation"), Some(&b), None).0, 404);
    let (_, list) = svc.request("GET", "/v1/batches", Some(&b), None);
    assert!(list["data"].as_array().unwrap().is_empty());
    let (_, balance) = svc.request("GET", "/v1/balance", Some(&b), None);
    assert!(balance["data"].as_array().unwrap().is_empty());
    let (status, reply) = svc.post("/v1/batches/close", &b, json!({ "currency": "usd" }));
    assert_eq!((status, error_code(&reply).as_str()), (400, "invalid_currency"));
}

#[test]
fn batch_lists_filter_open_and_closed() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::start(dir.path(), true);
    let admin = svc.token(ADMIN_EMAIL, ADMIN_PASSWORD);
    let (_, a) = svc.client_with_key(&admin, "A");
    let pay = |currency: &str| {
        let body = json!({ "kind": "payment", "amount": "3.00", "currency": currency }).to_string();
        assert_eq!(svc.post_keyed("/v1/transactions", &a, None, &body).0, 201);
    };
    let statuses = |query: &str| -> Vec<(String, String)> {
        let (status, page) = svc.request("GET", &format!("/v1/batches?{query}"), Some(&a), None);
        assert_eq!(status, 200, "{page}");
        page["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| (b["currency"].as_str().unwrap().to_string(), b["status"].as_str().unwrap().to_string()))
            .collect()
    };
    pay("USD");
    pay("EUR");
    for _ in 0..3 {
        let (status, _) = svc.post("/v1/batches/close", &a, json!({ "currency": "USD" }));
        assert_eq!(status, 200);
        pay("USD");
    }
    let open = statuses("status=open");
    assert_eq!(open.len(), 2, "{open:?}");
    assert!(open.iter().all(|(_, s)| s == "open") && open.iter().any(|(c, _)| c == "EUR"), "{open:?}");
    let closed = statuses("status=closed");
    assert_eq!(closed, vec![("USD".to_string(), "closed".to_string()); 3]);
    let (_, page) = svc.request("GET", "/v1/batches?status=closed&limit=2", Some(&a), None);
    assert_eq!((page["data"].as_array().unwrap().len(), page["has_more"].as_bool()), (2, Some(true)));
    let next = page["next_starting_after"].as_u64().unwrap();
    assert_eq!(statuses(&format!("status=closed&starting_after={next}")).len(), 1);
    let (status, body) = svc.request("GET", "/v1/batches?status=settled", Some(&a), None);
    assert_eq!((status, error_code(&body).as_str()), (400, "invalid_status"));
}
