//! Over real HTTP: money through the portal. Idempotency, the payment lifecycle,
//! isolation between clients, bad input that stores nothing, and kill -9.
#![allow(clippy::unwrap_used)]

mod common;

use common::{ADMIN_EMAIL, ADMIN_PASSWORD, Service, error_code};
use serde_json::{Value, json};

fn sale(amount: &str) -> String {
    json!({ "kind": "payment", "amount": amount, "currency": "USD" }).to_string()
}

fn list_ids(svc: &Service, key: &str) -> Vec<String> {
    let (status, page) = svc.request("GET", "/v1/transactions?limit=100", Some(key), None);
    assert_eq!(status, 200, "{page}");
    page["data"].as_array().unwrap().iter().map(|t| t["id"].as_str().unwrap().to_string()).collect()
}

#[test]
fn idempotency_keys_replay_conflict_and_hold_under_concurrency() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::start(dir.path(), true);
    let admin = svc.token(ADMIN_EMAIL, ADMIN_PASSWORD);
    let (_, key) = svc.client_with_key(&admin, "A");

    let (status, replayed, first) = svc.post_keyed("/v1/transactions", &key, Some("order-1"), &sale("10.00"));
    assert_eq!((status, replayed), (201, false), "{first}");
    assert_eq!(
        (first["amount"].as_str(), first["status"].as_str(), first["kind"].as_str()),
        (Some("10.00"), Some("captured"), Some("payment"))
    );
    let (status, replayed, again) = svc.post_keyed("/v1/transactions", &key, Some("order-1"), &sale("10.00"));
    assert_eq!((status, replayed, &again), (201, true, &first), "the original response, replayed");
    let (status, _, conflict) = svc.post_keyed("/v1/transactions", &key, Some("order-1"), &sale("11.00"));
    assert_eq!((status, error_code(&conflict).as_str()), (409, "idempotency_conflict"));
    let (status, _, bad) = svc.post_keyed("/v1/transactions", &key, Some(&"k".repeat(256)), &sale("1.00"));
    assert_eq!((status, error_code(&bad).as_str()), (400, "invalid_idempotency_key"));

    // Eight concurrent requests with one key make one transaction.
    let bodies: Vec<(u16, Value)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                s.spawn(|| {
                    let (status, _, body) = svc.post_keyed("/v1/transactions", &key, Some("order-2"), &sale("7.50"));
                    (status, body)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(bodies.iter().all(|(s, b)| *s == 201 && b["id"] == bodies[0].1["id"]), "{bodies:?}");
    assert_eq!(list_ids(&svc, &key).len(), 2, "order-1 and order-2, once each");
    let (_, balance) = svc.request("GET", "/v1/transactions?limit=1", Some(&key), None);
    assert_eq!(balance["has_more"], json!(true));
}

#[test]
fn the_payment_lifecycle_and_client_isolation() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::start(dir.path(), true);
    let admin = svc.token(ADMIN_EMAIL, ADMIN_PASSWORD);
    let (_, a) = svc.client_with_key(&admin, "A");
    let (_, b) = svc.client_with_key(&admin, "B");
    let auth =
        json!({ "kind": "payment", "amount": "100.00", "currency": "USD", "capture": false, "description": "table 4" });
    let (status, _, payment) = svc.post_keyed("/v1/transactions", &a, None, &auth.to_string());
    assert_eq!(
        (status, payment["status"].as_str(), payment["batch_id"].clone()),
        (201, Some("authorized"), Value::Null)
    );
    let id = payment["id"].as_str().unwrap().to_string();

    let (status, _, capture) =
        svc.post_keyed(&format!("/v1/transactions/{id}/capture"), &a, None, r#"{"amount":"60.00"}"#);
    assert_eq!(
        (status, capture["kind"].as_str(), capture["ref_id"].as_str()),
        (201, Some("capture"), Some(id.as_str())),
        "{capture}"
    );
    let (_, got) = svc.request("GET", &format!("/v1/transactions/{id}"), Some(&a), None);
    assert_eq!(
        (got["status"].as_str(), got["captured"].as_str(), got["description"].as_str()),
        (Some("captured"), Some("60.00"), Some("table 4"))
    );

    let (status, _, over) =
        svc.post_keyed(&format!("/v1/transactions/{id}/refunds"), &a, None, r#"{"amount":"60.01"}"#);
    assert_eq!((status, error_code(&over).as_str()), (422, "refund_exceeds_captured"));
    let (status, _, refund) =
        svc.post_keyed(&format!("/v1/transactions/{id}/refunds"), &a, None, r#"{"amount":"10.00"}"#);
    assert_eq!((status, refund["kind"].as_str()), (201, Some("refund")));
    let (_, got) = svc.request("GET", &format!("/v1/transactions/{id}"), Some(&a), None);
    assert_eq!((got["status"].as_str(), got["refunded"].as_str()), (Some("partially_refunded"), Some("10.00")));
    let (status, _, void) = svc.post_keyed(&format!("/v1/transactions/{id}/void"), &a, None, "");
    assert_eq!((status, error_code(&void).as_str()), (422, "payment_not_voidable"));

    // Client B sees none of it, and cannot act on it.
    assert_eq!(svc.request("GET", &format!("/v1/transactions/{id}"), Some(&b), None).0, 404);
    let (status, _, _) = svc.post_keyed(&format!("/v1/transactions/{id}/refunds"), &b, None, r#"{"amount":"1.00"}"#);
    assert_eq!(status, 404);
    assert!(list_ids(&svc, &b).is_empty());
    assert_eq!(list_ids(&svc, &a).len(), 3);
}

#[test]
fn bad_input_is_a_400_with_the_error_body_and_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::start(dir.path(), true);
    let admin = svc.token(ADMIN_EMAIL, ADMIN_PASSWORD);
    let (_, key) = svc.client_with_key(&admin, "A");
    let cases = [
        (json!({ "kind": "payment", "amount": "1.234", "currency": "USD" }).to_string(), "invalid_amount"),
        (json!({ "kind": "payment", "amount": "-5.00", "currency": "USD" }).to_string(), "invalid_amount"),
        (json!({ "kind": "payment", "amount": "0", "currency": "USD" }).to_string(), "invalid_amount"),
        (json!({ "kind": "payment", "amount": "1e3", "currency": "USD" }).to_string(), "invalid_amount"),
        (json!({ "kind": "payment", "amount": "1.5", "currency": "JPY" }).to_string(), "invalid_amount"),
        (json!({ "kind": "payment", "amount": "5.00", "currency": "usd" }).to_string(), "invalid_currency"),
        (json!({ "kind": "teleport", "amount": "5.00", "currency": "USD" }).to_string(), "invalid_kind"),
        (json!({ "kind": "adjustment", "amount": "0.00", "currency": "USD" }).to_string(), "invalid_amount"),
        (json!({ "kind": "payment", "amount": 5, "currency": "USD" }).to_string(), "invalid_json"),
        (json!({ "kind": "payment", "amount": "5.00", "currency": "USD", "extra": 1 }).to_string(), "invalid_json"),
        ("not json".to_string(), "invalid_json"),
    ];
    for (body, code) in cases {
        let (status, _, reply) = svc.post_keyed("/v1/transactions", &key, None, &body);
        assert_eq!((status, error_code(&reply).as_str()), (400, code), "{body}");
    }
    assert!(list_ids(&svc, &key).is_empty(), "nothing was stored");
    // Money is rendered with the currency's digits.
    let (_, _, yen) = svc.post_keyed(
        "/v1/transactions",
        &key,
        None,
        &json!({ "kind": "payment", "amount": "100", "currency": "JPY" }).to_string(),
    );
    assert_eq!(yen["amount"].as_str(), Some("100"));
    let (status, reply) = svc.request("GET", "/v1/transactions?limit=0", Some(&key), None);
    assert_eq!((status, error_code(&reply).as_str()), (400, "invalid_limit"));
    assert_eq!(svc.request("GET", "/v1/transactions/tx_nothing", Some(&key), None).0, 404);
}

#[test]
fn every_2xx_survives_kill_9_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut svc = Service::start(dir.path(), true);
    let admin = svc.token(ADMIN_EMAIL, ADMIN_PASSWORD);
    let (_, key) = svc.client_with_key(&admin, "A");
    let mut acknowledged = Vec::new();
    for i in 0..40 {
        let (status, _, tx) =
            svc.post_keyed("/v1/transactions", &key, Some(&format!("k{i}")), &sale(&format!("{i}.25")));
        assert_eq!(status, 201);
        acknowledged.push(tx);
    }
    svc.child.kill().unwrap(); // SIGKILL
    svc.child.wait().unwrap();
    drop(svc);
    let svc = Service::start(dir.path(), true);
    for tx in &acknowledged {
        let (status, got) =
            svc.request("GET", &format!("/v1/transactions/{}", tx["id"].as_str().unwrap()), Some(&key), None);
        assert_eq!((status, &got), (200, tx));
    }
    // And the keys still replay after the restart.
    let (status, replayed, again) = svc.post_keyed("/v1/transactions", &key, Some("k3"), &sale("3.25"));
    assert_eq!((status, replayed, &again), (201, true, &acknowledged[3]));
}

#[test]
fn lists_filter_by_status_kind_device_currency_period_and_amount() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::start(dir.path(), true);
    let admin = svc.token(ADMIN_EMAIL, ADMIN_PASSWORD);
    let (client, key) = svc.client_with_key(&admin, "A");
    let (_, b_key) = svc.client_with_key(&admin, "B");
    let (status, _) = svc.post(
        "/v1/users",
        &admin,
        json!({ "email": "ca@a.test", "password": "a long enough password", "role": "client_admin", "client_id": client }),
    );
    assert_eq!(status, 201);
    let ca = svc.token("ca@a.test", "a long enough password");
    let (_, device) = svc.post("/v1/devices", &ca, json!({ "serial": "T-1", "model": "M" }));
    let device = device["id"].as_i64().unwrap();

    let pay = |body: Value| {
        let (status, _, tx) = svc.post_keyed("/v1/transactions", &key, None, &body.to_string());
        assert_eq!(status, 201, "{tx}");
        tx["id"].as_str().unwrap().to_string()
    };
    let small = pay(json!({ "kind": "payment", "amount": "5.00", "currency": "USD" }));
    let big = pay(json!({ "kind": "payment", "amount": "50.00", "currency": "USD", "device_id": device }));
    let auth = pay(json!({ "kind": "payment", "amount": "20.00", "currency": "USD", "capture": false }));
    let euro = pay(json!({ "kind": "payment", "amount": "7.00", "currency": "EUR", "device_id": device }));
    let (status, _, refund) =
        svc.post_keyed(&format!("/v1/transactions/{big}/refunds"), &key, None, r#"{"amount":"10.00"}"#);
    assert_eq!(status, 201);
    let refund = refund["id"].as_str().unwrap().to_string();
    pay(json!({ "kind": "payment", "amount": "1.00", "currency": "USD" }));
    svc.post_keyed("/v1/transactions", &b_key, None, &sale("5.00"));

    let listed = |query: &str| -> Vec<String> {
        let (status, page) = svc.request("GET", &format!("/v1/transactions?{query}"), Some(&key), None);
        assert_eq!(status, 200, "{query}: {page}");
        page["data"].as_array().unwrap().iter().map(|t| t["id"].as_str().unwrap().to_string()).collect()
    };
    // Oldest first where the assertions below name an order; newest first is the default.
    let ids = |query: &str| listed(&format!("order=oldest&{query}"));
    let mut newest = listed("limit=100");
    assert_eq!(newest.len(), 6, "the client's six transactions");
    newest.reverse();
    assert_eq!(newest, ids("limit=100"), "the default order is newest first");
    let (status, body) = svc.request("GET", "/v1/transactions?order=sideways", Some(&key), None);
    assert_eq!((status, body["error"]["param"].as_str()), (400, Some("order")), "{body}");
    // Newest-first pages go on from their cursor to older transactions.
    let (_, page) = svc.request("GET", "/v1/transactions?limit=4", Some(&key), None);
    let next = page["next_starting_after"].as_str().unwrap().to_string();
    let older = listed(&format!("limit=100&starting_after={next}"));
    assert_eq!(older, newest[..2].iter().rev().cloned().collect::<Vec<_>>(), "the two oldest, newest first");
    assert_eq!(ids("status=authorized"), [auth.as_str()]);
    assert_eq!(ids("status=partially_refunded"), [big.as_str()]);
    assert_eq!(ids("kind=refund"), [refund.as_str()]);
    assert_eq!(ids(&format!("device_id={device}")), [big.as_str(), euro.as_str()]);
    assert_eq!(ids("currency=EUR"), [euro.as_str()]);
    assert_eq!(ids("currency=USD&amount_min=5.00&amount_max=20.00&kind=payment"), [small.as_str(), auth.as_str()]);
    assert_eq!(ids(&format!("device_id={device}&currency=USD&status=partially_refunded")), [big.as_str()]);
    let today = time::OffsetDateTime::now_utc().date();
    assert_eq!(ids(&format!("from={today}&to={today}&kind=refund")), [refund.as_str()], "a date includes its day");
    assert!(ids(&format!("to={}", today.previous_day().unwrap())).is_empty());
    assert!(ids(&format!("from={}", today.next_day().unwrap())).is_empty());
    assert!(ids(&format!("device_id={device}&currency=JPY")).is_empty());

    // Pages of a filtered list go on from next_starting_after.
    let (_, first) = svc.request("GET", "/v1/transactions?order=oldest&kind=payment&limit=2", Some(&key), None);
    assert_eq!((first["data"].as_array().unwrap().len(), first["has_more"].as_bool()), (2, Some(true)));
    let next = first["next_starting_after"].as_str().unwrap();
    assert_eq!(next, big, "the last one shown");
    let rest = ids(&format!("kind=payment&limit=10&starting_after={next}"));
    assert_eq!(rest.len(), 3, "{rest:?}");
    let (_, last) = svc.request("GET", "/v1/transactions?order=oldest&kind=payment&limit=10", Some(&key), None);
    assert_eq!((last["has_more"].as_bool(), last["next_starting_after"].clone()), (Some(false), Value::Null));

    for (query, code, param) in [
        ("status=paid", "invalid_status", "status"),
        ("kind=sale", "invalid_kind", "kind"),
        ("amount_min=5.00", "missing_field", "currency"),
        ("currency=USD&amount_max=1.234", "invalid_amount", "amount_max"),
        ("currency=usd", "invalid_currency", "currency"),
        ("from=yesterday", "invalid_time", "from"),
        ("device_id=x", "invalid_query", "device_id"),
    ] {
        let (status, body) = svc.request("GET", &format!("/v1/transactions?{query}"), Some(&key), None);
        assert_eq!((status, error_code(&body).as_str()), (400, code), "{query}");
        assert_eq!(body["error"]["param"].as_str().unwrap_or_default(), param, "{query}");
    }
    let (_, other) = svc.request("GET", &format!("/v1/transactions?device_id={device}"), Some(&b_key), None);
    assert_eq!(other["data"], json!([]), "another client's device filters nothing in");
}

/// Issue 15: a payment that the ledger commits but whose metadata written after the
/// commit is lost (here that write fails, as a crash there would lose it) keeps its
/// description: it is on disk before the commit. Its key's response is not waited for:
/// the answer is the same, and a retry replays it from the fingerprint written ahead
/// and the ledger's record. A refused payment leaves no description behind.
#[test]
fn a_committed_payment_keeps_its_description_when_its_answer_is_lost() {
    if common::pg::enabled() {
        // It cuts writes off with an SQLite trigger on DIR/portal.db; the code under test
        // (the metadata writer's statements) is the same on PostgreSQL.
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::start(dir.path(), true);
    let admin = svc.token(ADMIN_EMAIL, ADMIN_PASSWORD);
    let (_, key) = svc.client_with_key(&admin, "cutoff");
    assert!(svc.stop());
    // Everything written after the commit with the stored response fails (the key's
    // row written ahead, status 0, goes in).
    let db = rusqlite::Connection::open(dir.path().join("portal.db")).unwrap();
    db.execute_batch(
        "CREATE TRIGGER cut_off BEFORE INSERT ON idempotency WHEN NEW.status <> 0
         BEGIN SELECT RAISE(ABORT, 'cut off'); END;",
    )
    .unwrap();
    drop(db);
    let svc = Service::start(dir.path(), true);
    let body = json!({ "kind": "payment", "amount": "3.00", "currency": "USD", "description": "Table 4, two soups" });
    let (status, replayed, first) = svc.post_keyed("/v1/transactions", &key, Some("order-77"), &body.to_string());
    assert_eq!((status, replayed), (201, false), "{first}");
    let (status, list) = svc.request("GET", "/v1/transactions", Some(&key), None);
    assert_eq!(status, 200);
    let data = list["data"].as_array().unwrap();
    assert_eq!(data.len(), 1, "the ledger committed it: {list}");
    assert_eq!(data[0]["description"], "Table 4, two soups");
    // The retry replays it from the ledger, byte for byte, before and after a restart.
    let (status, replayed, again) = svc.post_keyed("/v1/transactions", &key, Some("order-77"), &body.to_string());
    assert_eq!((status, replayed, &again), (201, true, &first));
    assert!(svc.stop());
    let db = rusqlite::Connection::open(dir.path().join("portal.db")).unwrap();
    db.execute_batch("DROP TRIGGER cut_off;").unwrap();
    let svc = Service::start(dir.path(), true);
    let (status, replayed, again) = svc.post_keyed("/v1/transactions", &key, Some("order-77"), &body.to_string());
    assert_eq!((status, replayed, &again), (201, true, &first));
    assert_eq!(again["description"], "Table 4, two soups");
    // A payment the ledger refuses (its total would leave the representable range)
    // leaves no description behind.
    let big = |note: &str| json!({ "kind": "payment", "amount": "9000000000000000000", "currency": "JPY", "description": note });
    assert_eq!(svc.post("/v1/transactions", &key, big("first")).0, 201);
    let (status, reply) = svc.post("/v1/transactions", &key, big("refused"));
    assert_eq!((status, error_code(&reply).as_str()), (422, "amount_out_of_range"));
    let kept: Vec<String> = db
        .prepare("SELECT description FROM tx_meta ORDER BY description")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(kept, ["Table 4, two soups", "first"]);
}

/// An `Idempotency-Key`'s response is stored after the answer; until it is (or when a
/// crash lost it), the row written ahead with the request's fingerprint and the
/// ledger's record answer: the same bytes as the original answer even after the
/// payment was captured and refunded, 409 for another body, and a key whose attempt
/// the ledger refused is judged afresh.
#[test]
fn a_key_whose_response_was_lost_replays_from_the_ledger() {
    if common::pg::enabled() {
        // It cuts writes off with an SQLite trigger on DIR/portal.db; the code under test
        // (the metadata writer's statements) is the same on PostgreSQL.
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::start(dir.path(), true);
    let admin = svc.token(ADMIN_EMAIL, ADMIN_PASSWORD);
    let (_, key) = svc.client_with_key(&admin, "lost");
    let auth = json!({ "kind": "payment", "amount": "10.00", "currency": "EUR", "capture": false }).to_string();
    let (status, _, original) = svc.post_keyed("/v1/transactions", &key, Some("auth-1"), &auth);
    assert_eq!((status, original["status"].as_str()), (201, Some("authorized")), "{original}");
    let id = original["id"].as_str().unwrap().to_string();
    assert_eq!(svc.post(&format!("/v1/transactions/{id}/capture"), &key, json!({})).0, 201);
    assert_eq!(svc.post(&format!("/v1/transactions/{id}/refunds"), &key, json!({ "amount": "4.00" })).0, 201);
    // An over-refund with a key: refused, and nothing kept for that key.
    let over = json!({ "amount": "99.00" }).to_string();
    let (status, _, refused) = svc.post_keyed(&format!("/v1/transactions/{id}/refunds"), &key, Some("refund-9"), &over);
    assert_eq!((status, error_code(&refused).as_str()), (422, "refund_exceeds_captured"));
    assert!(svc.stop());

    // As a crash right after the answer would leave it: the row written ahead only.
    let db = rusqlite::Connection::open(dir.path().join("portal.db")).unwrap();
    let (ahead, kept): (i64, i64) = db
        .query_row(
            "SELECT count(*) FILTER (WHERE status = 0), count(*) FILTER (WHERE key = 'refund-9') FROM idempotency",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((ahead, kept), (0, 0), "responses complete their rows; a refused attempt leaves none");
    db.execute("UPDATE idempotency SET status = 0, response = '' WHERE key = 'auth-1'", []).unwrap();
    drop(db);
    let svc = Service::start(dir.path(), true);
    let (status, replayed, again) = svc.post_keyed("/v1/transactions", &key, Some("auth-1"), &auth);
    assert_eq!((status, replayed, &again), (201, true, &original), "the original answer, not today's state");
    let other = json!({ "kind": "payment", "amount": "11.00", "currency": "EUR", "capture": false }).to_string();
    let (status, _, conflict) = svc.post_keyed("/v1/transactions", &key, Some("auth-1"), &other);
    assert_eq!((status, error_code(&conflict).as_str()), (409, "idempotency_conflict"));
    // The refused key, now within what was captured: judged afresh.
    let fits = json!({ "amount": "6.00" }).to_string();
    let (status, replayed, _) =
        svc.post_keyed(&format!("/v1/transactions/{id}/refunds"), &key, Some("refund-9"), &fits);
    assert_eq!((status, replayed), (201, false));
    let (status, replayed, _) =
        svc.post_keyed(&format!("/v1/transactions/{id}/refunds"), &key, Some("refund-9"), &fits);
    assert_eq!((status, replayed), (201, true));
}
