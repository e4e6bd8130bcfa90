//! Over real HTTP: a transaction's history, notes on transactions and tickets, the
//! transactions report (JSON totals, CSV rows and grouped CSV, filters, periods) and
//! the activity report from the audit log.
#![allow(clippy::unwrap_used)]

mod common;

use common::{ADMIN_EMAIL, ADMIN_PASSWORD, Service, error_code};
use serde_json::{Value, json};

fn pay(svc: &Service, key: &str, amount: &str, currency: &str, extra: Value) -> Value {
    let mut body = json!({ "kind": "payment", "amount": amount, "currency": currency });
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let (status, tx) = svc.post("/v1/transactions", key, body);
    assert_eq!(status, 201, "{tx}");
    tx
}

fn today() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    // Days since the epoch to a civil date (the test's own oracle, independent of the service's).
    let z = i64::try_from(secs / 86_400).unwrap() + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

#[test]
fn history_and_notes_follow_the_payment() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::start(dir.path(), true);
    let admin = svc.token(ADMIN_EMAIL, ADMIN_PASSWORD);
    let (_, key) = svc.client_with_key(&admin, "A");
    let (_, other_key) = svc.client_with_key(&admin, "B");

    let auth = pay(&svc, &key, "50.00", "USD", json!({ "capture": false, "description": "order 7" }));
    let id = auth["id"].as_str().unwrap().to_string();
    pay(&svc, &key, "1.00", "USD", json!({})); // unrelated, in between
    let (status, capture) = svc.post(&format!("/v1/transactions/{id}/capture"), &key, json!({ "amount": "40.00" }));
    assert_eq!(status, 201, "{capture}");
    let mut refunds = Vec::new();
    for amount in ["5.00", "7.50"] {
        let (status, r) = svc.post(&format!("/v1/transactions/{id}/refunds"), &key, json!({ "amount": amount }));
        assert_eq!(status, 201, "{r}");
        refunds.push(r["id"].as_str().unwrap().to_string());
    }
    let (status, note) = svc.post(
        "/v1/notes",
        &key,
        json!({ "resource_type": "transaction", "resource_id": refunds[1], "body": "customer called" }),
    );
    assert_eq!(status, 201, "{note}");
    assert_eq!(
        (note["resource_id"].as_str(), note["author"].as_str().map(|a| a.starts_with("application:"))),
        (Some(refunds[1].as_str()), Some(true))
    );

    // Asked through any member of the family, the history is the same.
    for ask in [&id, &refunds[0]] {
        let (status, h) = svc.request("GET", &format!("/v1/transactions/{ask}/history"), Some(&key), None);
        assert_eq!(status, 200, "{h}");
        let kinds: Vec<&str> = h["events"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
        assert_eq!(kinds, ["payment", "capture", "refund", "refund"]);
        assert_eq!(h["payment"]["id"].as_str(), Some(id.as_str()));
        assert_eq!(h["payment"]["description"].as_str(), Some("order 7"));
        assert_eq!(
            (h["payment"]["captured"].as_str(), h["payment"]["refunded"].as_str()),
            (Some("40.00"), Some("12.50"))
        );
        assert_eq!(h["notes"].as_array().unwrap().len(), 1);
        assert_eq!(h["notes"][0]["body"].as_str(), Some("customer called"));
    }
    let (status, h) = svc.request("GET", &format!("/v1/transactions/{id}/history"), Some(&other_key), None);
    assert_eq!((status, error_code(&h).as_str()), (404, "not_found"), "another client's history");

    // Notes: listing, and a resource of another client or that does not exist is 404.
    let (status, list) = svc.request(
        "GET",
        &format!("/v1/notes?resource_type=transaction&resource_id={}", refunds[1]),
        Some(&key),
        None,
    );
    assert_eq!((status, list["data"].as_array().unwrap().len()), (200, 1));
    let (status, body) = svc.request(
        "GET",
        &format!("/v1/notes?resource_type=transaction&resource_id={}", refunds[1]),
        Some(&other_key),
        None,
    );
    assert_eq!((status, error_code(&body).as_str()), (404, "not_found"));
    let (status, body) =
        svc.post("/v1/notes", &other_key, json!({ "resource_type": "transaction", "resource_id": id, "body": "x" }));
    assert_eq!((status, error_code(&body).as_str()), (404, "not_found"));
    let (_, ticket) = svc.post("/v1/tickets", &key, json!({ "subject": "s", "body": "b" }));
    let ticket_id = ticket["id"].as_i64().unwrap();
    let (status, _) =
        svc.post("/v1/notes", &key, json!({ "resource_type": "ticket", "resource_id": ticket_id, "body": "n" }));
    assert_eq!(status, 201);
    let (status, body) =
        svc.post("/v1/notes", &other_key, json!({ "resource_type": "ticket", "resource_id": ticket_id, "body": "n" }));
    assert_eq!((status, error_code(&body).as_str()), (404, "not_found"));
    for (bad, code) in [
        (json!({ "resource_type": "invoice", "resource_id": "1", "body": "n" }), "invalid_resource_type"),
        (json!({ "resource_type": "ticket", "resource_id": ticket_id, "body": "  " }), "invalid_text"),
        (json!({ "resource_type": "ticket", "resource_id": [1], "body": "n" }), "invalid_resource_id"),
        (json!({ "resource_type": "ticket", "resource_id": 1, "body": "n", "extra": 1 }), "invalid_json"),
    ] {
        let (status, body) = svc.post("/v1/notes", &key, bad.clone());
        assert_eq!((status, error_code(&body).as_str()), (400, code), "{bad}");
    }
    let (_, list) =
        svc.request("GET", &format!("/v1/notes?resource_type=ticket&resource_id={ticket_id}"), Some(&key), None);
    assert_eq!(list["data"].as_array().unwrap().len(), 1, "rejected notes were not stored");
}

#[test]
fn transactions_report_totals_rows_and_csv() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::start(dir.path(), true);
    let admin = svc.token(ADMIN_EMAIL, ADMIN_PASSWORD);
    let (client_a, key) = svc.client_with_key(&admin, "A");
    let (_, other_key) = svc.client_with_key(&admin, "B");
    pay(&svc, &other_key, "999.00", "USD", json!({})); // never in A's report

    let (status, _) = svc.post(
        "/v1/users",
        &admin,
        json!({ "email": "ca@a.test", "password": "a long enough password", "role": "client_admin", "client_id": client_a }),
    );
    assert_eq!(status, 201);
    let ca = svc.token("ca@a.test", "a long enough password");
    let (status, device) = svc.post("/v1/devices", &ca, json!({ "serial": "SN-1", "model": "T1" }));
    assert_eq!(status, 201, "{device}");
    let dev = device["id"].as_i64().unwrap();
    // A device that is not the client's is refused, and nothing is stored.
    for wrong in [dev + 1000, i64::MAX] {
        let (status, body) = svc.post(
            "/v1/transactions",
            &key,
            json!({ "kind": "payment", "amount": "1.00", "currency": "USD", "device_id": wrong }),
        );
        assert_eq!((status, body["error"]["param"].as_str()), (404, Some("device_id")), "{body}");
    }
    let (status, body) = svc.post(
        "/v1/transactions",
        &other_key,
        json!({ "kind": "payment", "amount": "1.00", "currency": "USD", "device_id": dev }),
    );
    assert_eq!((status, error_code(&body).as_str()), (404, "not_found"), "another client's device");
    let a = pay(&svc, &key, "10.00", "USD", json!({ "device_id": dev }));
    pay(&svc, &key, "2.50", "USD", json!({ "device_id": dev }));
    pay(&svc, &key, "300", "JPY", json!({}));
    let (status, _) =
        svc.post(&format!("/v1/transactions/{}/refunds", a["id"].as_str().unwrap()), &key, json!({ "amount": "4.00" }));
    assert_eq!(status, 201);

    let day = today();
    let (status, report) =
        svc.request("GET", &format!("/v1/reports/transactions?from={day}&to={day}"), Some(&key), None);
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["count"], json!(4));
    assert_eq!(report["rows"].as_array().unwrap().len(), 4);
    let by_day = report["totals"]["by_day"].as_array().unwrap();
    let usd = by_day.iter().find(|g| g["currency"] == "USD").unwrap();
    assert_eq!(
        (usd["day"].as_str(), usd["count"].as_u64(), usd["net"].as_str()),
        (Some(day.as_str()), Some(3), Some("8.50"))
    );
    let jpy = by_day.iter().find(|g| g["currency"] == "JPY").unwrap();
    assert_eq!((jpy["count"].as_u64(), jpy["amount"].as_str()), (Some(1), Some("300")));
    let by_kind = report["totals"]["by_kind"].as_array().unwrap();
    let refund = by_kind.iter().find(|g| g["kind"] == "refund").unwrap();
    assert_eq!(
        (refund["count"].as_u64(), refund["amount"].as_str(), refund["refunded"].as_str(), refund["net"].as_str()),
        (Some(1), Some("0.00"), Some("4.00"), Some("-4.00")),
        "a refund takes nothing in: it gives back"
    );
    let by_status = report["totals"]["by_status"].as_array().unwrap();
    assert!(by_status.iter().any(|g| g["status"] == "partially_refunded" && g["count"] == 1), "{by_status:?}");
    let device =
        report["totals"]["by_device"].as_array().unwrap().iter().find(|g| g["device_id"] == dev).unwrap().clone();
    assert_eq!((device["count"].as_u64(), device["amount"].as_str()), (Some(2), Some("12.50")));

    // Filters and totals only.
    let (_, only) =
        svc.request("GET", "/v1/reports/transactions?kind=payment&currency=USD&rows=false", Some(&key), None);
    assert_eq!((only["count"].as_u64(), only["rows"].is_null()), (Some(2), true), "{only}");

    // CSV: a header line and one line per transaction.
    let (status, csv) =
        svc.request("GET", &format!("/v1/reports/transactions?from={day}&format=csv"), Some(&key), None);
    assert_eq!(status, 200);
    let csv = csv.as_str().unwrap().to_string();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "id,created_at,kind,status,amount,currency,captured,refunded,ref_id,device_id,batch_id,seq");
    assert_eq!(lines.len(), 5, "{csv}");
    assert!(lines[1].contains(&format!(",payment,partially_refunded,10.00,USD,10.00,4.00,,{dev},")), "{}", lines[1]);
    assert!(lines[4].contains(",refund,applied,4.00,USD,"), "{}", lines[4]);
    let (_, grouped) = svc.request("GET", "/v1/reports/transactions?format=csv&group_by=kind", Some(&key), None);
    let grouped = grouped.as_str().unwrap().to_string();
    assert!(grouped.starts_with("kind,currency,count,amount,captured,refunded,adjusted,net\n"), "{grouped}");
    assert!(
        grouped.contains("payment,USD,2,12.50,12.50,0.00,0.00,12.50\n")
            && grouped.contains("refund,USD,1,0.00,0.00,4.00,0.00,-4.00\n"),
        "{grouped}"
    );

    // A period with nothing in it, and bad periods.
    let (_, empty) = svc.request("GET", "/v1/reports/transactions?from=2001-01-01&to=2001-01-31", Some(&key), None);
    assert_eq!((empty["count"].as_u64(), empty["rows"].as_array().map(Vec::len)), (Some(0), Some(0)));
    for (query, param) in [
        ("from=yesterday", "from"),
        ("from=2026-02-01&to=2026-01-01", "from"),
        ("format=xml", "format"),
        ("group_by=hour", "group_by"),
        ("kind=sale", "kind"),
    ] {
        let (status, body) = svc.request("GET", &format!("/v1/reports/transactions?{query}"), Some(&key), None);
        assert_eq!((status, body["error"]["param"].as_str()), (400, Some(param)), "{query}: {body}");
    }
}

#[test]
fn activity_report_reads_the_audit_log() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::start(dir.path(), true);
    let admin = svc.token(ADMIN_EMAIL, ADMIN_PASSWORD);
    let (client_id, key) = svc.client_with_key(&admin, "A");
    let (status, _) = svc.post(
        "/v1/users",
        &admin,
        json!({ "email": "ca@a.test", "password": "a long enough password", "role": "client_admin", "client_id": client_id }),
    );
    assert_eq!(status, 201);
    let ca = svc.token("ca@a.test", "a long enough password");
    let (_, ticket) = svc.post("/v1/tickets", &key, json!({ "subject": "s", "body": "b" }));
    svc.post("/v1/notes", &ca, json!({ "resource_type": "ticket", "resource_id": ticket["id"], "body": "seen" }));

    let (status, report) = svc.request("GET", "/v1/reports/activity", Some(&ca), None);
    assert_eq!(status, 200, "{report}");
    let actions: Vec<&str> = report["rows"].as_array().unwrap().iter().map(|r| r["action"].as_str().unwrap()).collect();
    assert!(actions.contains(&"note.create"), "{actions:?}");
    assert!(report["rows"].as_array().unwrap().iter().all(|r| r["client_id"] == json!(client_id)), "own client only");
    let (status, csv) = svc.request("GET", "/v1/reports/activity?format=csv", Some(&ca), None);
    assert_eq!(status, 200);
    assert!(csv.as_str().unwrap().starts_with("id,at,client_id,actor,action,resource\n"));
    // Operators (and API keys) do not read the audit log.
    let (status, _) = svc.request("GET", "/v1/reports/activity", Some(&key), None);
    assert_eq!(status, 403);
}

/// Issue 15: the report's money is in the balance's terms, so its totals reconcile with
/// `GET /v1/balance`: an authorization, a void, or a payment with its capture are not
/// counted as volume twice, refunds count against it; and a total past the int64
/// maximum is neither clipped nor wrapped.
#[test]
fn report_totals_reconcile_with_the_balance() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::start(dir.path(), true);
    let admin = svc.token(ADMIN_EMAIL, ADMIN_PASSWORD);
    let (_, key) = svc.client_with_key(&admin, "books");
    let sale = pay(&svc, &key, "100.00", "USD", json!({}));
    let auth = pay(&svc, &key, "50.00", "USD", json!({ "capture": false }));
    let voided = pay(&svc, &key, "20.00", "USD", json!({ "capture": false }));
    pay(&svc, &key, "7.00", "EUR", json!({}));
    let post = |path: String, body: Value| {
        let (status, reply) = svc.post(&path, &key, body);
        assert_eq!(status, 201, "{path}: {reply}");
    };
    post(format!("/v1/transactions/{}/capture", auth["id"].as_str().unwrap()), json!({ "amount": "30.00" }));
    post(format!("/v1/transactions/{}/void", voided["id"].as_str().unwrap()), json!({}));
    post(format!("/v1/transactions/{}/refunds", sale["id"].as_str().unwrap()), json!({ "amount": "10.00" }));
    let (status, _) = svc.post(
        &format!("/v1/transactions/{}/refunds", sale["id"].as_str().unwrap()),
        &key,
        json!({ "amount": "95.00" }),
    );
    assert_eq!(status, 422);
    for amount in ["-5.00", "2.50"] {
        let (status, _) =
            svc.post("/v1/transactions", &key, json!({ "kind": "adjustment", "amount": amount, "currency": "USD" }));
        assert_eq!(status, 201);
    }
    // Past the int64 maximum counted the old way (authorization plus capture).
    let big = pay(&svc, &key, "5000000000000000000", "JPY", json!({ "capture": false }));
    post(format!("/v1/transactions/{}/capture", big["id"].as_str().unwrap()), json!({}));

    let (status, balance) = svc.request("GET", "/v1/balance", Some(&key), None);
    assert_eq!(status, 200);
    let (status, report) = svc.request("GET", "/v1/reports/transactions?rows=false", Some(&key), None);
    assert_eq!(status, 200, "{report}");
    let totals = report["totals"]["by_currency"].as_array().unwrap();
    let balances = balance["data"].as_array().unwrap();
    assert_eq!(totals.len(), 3, "{totals:?}");
    for b in balances {
        let t = totals.iter().find(|t| t["currency"] == b["currency"]).unwrap();
        for field in ["captured", "refunded", "adjusted", "net"] {
            assert_eq!(t[field], b[field], "{field} of {}: report {t} balance {b}", b["currency"]);
        }
    }
    let usd = totals.iter().find(|t| t["currency"] == "USD").unwrap();
    assert_eq!((usd["amount"].as_str(), usd["net"].as_str()), (Some("130.00"), Some("117.50")));
    let jpy = totals.iter().find(|t| t["currency"] == "JPY").unwrap();
    assert_eq!(jpy["captured"], "5000000000000000000");
    // Each grouping adds up to the same totals.
    for group in ["by_day", "by_kind", "by_status"] {
        let net: f64 = report["totals"][group]
            .as_array()
            .unwrap()
            .iter()
            .filter(|g| g["currency"] == "USD")
            .map(|g| g["net"].as_str().unwrap().parse::<f64>().unwrap())
            .sum();
        assert!((net - 117.5).abs() < 1e-9, "{group}: {net}");
    }
}
