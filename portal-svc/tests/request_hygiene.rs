//! The request-hygiene defects of issue 16, one test each: what the service accepts
//! and how it answers beyond the happy path (body types, credentials' spelling,
//! caching, idempotent bodies, query validation, amounts, text and emails).
#![allow(clippy::unwrap_used)]

mod common;

use common::{ADMIN_EMAIL, ADMIN_PASSWORD, Service, error_code};
use serde_json::{Value, json};

/// A raw request: `headers` as given (no Content-Type unless named), `body` if any.
/// Returns the status, the `Cache-Control` header and the body as JSON.
fn send(
    svc: &Service,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> (u16, Option<String>, Value) {
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let url = format!("{}{path}", svc.base);
    let response = match method {
        "GET" => {
            let mut r = agent.get(&url);
            for (k, v) in headers {
                r = r.header(*k, *v);
            }
            r.call()
        }
        _ => {
            let mut r = agent.post(&url);
            for (k, v) in headers {
                r = r.header(*k, *v);
            }
            match body {
                Some(b) => r.send(b),
                None => r.send_empty(),
            }
        }
    };
    let mut response = response.unwrap();
    let status = response.status().as_u16();
    let cache = response.headers().get("cache-control").map(|v| v.to_str().unwrap().to_string());
    let text = response.body_mut().read_to_string().unwrap();
    (status, cache, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn pay(svc: &Service, key: &str, amount: &str) -> String {
    let (status, tx) =
        svc.post("/v1/transactions", key, json!({ "kind": "payment", "amount": amount, "currency": "USD" }));
    assert_eq!(status, 201, "{tx}");
    tx["id"].as_str().unwrap().to_string()
}

fn count(svc: &Service, token: &str, path: &str) -> usize {
    let (status, list) = svc.request("GET", path, Some(token), None);
    assert_eq!(status, 200, "{list}");
    list["data"].as_array().unwrap().len()
}

/// serde reads a struct from a JSON array too: `["x"]` created a client. Any body
/// that is not a JSON object is now 400 and creates nothing.
#[test]
fn a_json_array_or_scalar_where_an_object_is_expected_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::start(dir.path(), true);
    let admin = svc.token(ADMIN_EMAIL, ADMIN_PASSWORD);
    let before = count(&svc, &admin, "/v1/clients");
    for body in [r#"["x"]"#, r#""x""#, "42", "null"] {
        let (status, reply) = svc.request("POST", "/v1/clients", Some(&admin), Some(body));
        assert_eq!((status, error_code(&reply).as_str()), (400, "invalid_json"), "{body}: {reply}");
    }
    let (_, key) = svc.client_with_key(&admin, "arrays");
    let (status, reply) = svc.request("POST", "/v1/transactions", Some(&key), Some(r#"["payment","1.00","USD"]"#));
    assert_eq!((status, error_code(&reply).as_str()), (400, "invalid_json"), "{reply}");
    assert_eq!(count(&svc, &admin, "/v1/clients"), before + 1, "only the client made on purpose");
    // A field of the wrong type names itself.
    let (status, reply) = svc.request("POST", "/v1/clients", Some(&admin), Some(r#"{"name": 7}"#));
    assert_eq!((status, reply["error"]["param"].as_str()), (400, Some("name")), "{reply}");
}

/// A body sent as anything but JSON is 415 and moves no money (`text/plain` created a
/// payment); JSON with parameters or a `+json` type is fine, and so is a capture with
/// no body at all.
#[test]
fn a_write_whose_body_is_not_declared_json_is_415() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::start(dir.path(), true);
    let admin = svc.token(ADMIN_EMAIL, ADMIN_PASSWORD);
    let (_, key) = svc.client_with_key(&admin, "types");
    let auth = bearer(&key);
    let payment = r#"{"kind": "payment", "amount": "5.00", "currency": "USD", "capture": false}"#;
    for content_type in [Some("text/plain"), Some("application/x-www-form-urlencoded"), None] {
        let mut headers = vec![("Authorization", auth.as_str())];
        if let Some(t) = content_type {
            headers.push(("Content-Type", t));
        }
        let (status, _, reply) = send(&svc, "POST", "/v1/transactions", &headers, Some(payment));
        assert_eq!((status, error_code(&reply).as_str()), (415, "unsupported_media_type"), "{content_type:?}");
        assert_eq!(reply["error"]["param"], "Content-Type");
    }
    let (_, balance) = svc.request("GET", "/v1/balance", Some(&key), None);
    assert_eq!(balance["data"], json!([]), "no money moved: {balance}");
    let mut ids = Vec::new();
    for content_type in ["application/json; charset=utf-8", "Application/JSON", "application/merge-patch+json"] {
        let headers = [("Authorization", auth.as_str()), ("Content-Type", content_type)];
        let (status, _, tx) = send(&svc, "POST", "/v1/transactions", &headers, Some(payment));
        assert_eq!(status, 201, "{content_type}: {tx}");
        ids.push(tx["id"].as_str().unwrap().to_string());
    }
    let (status, _, capture) =
        send(&svc, "POST", &format!("/v1/transactions/{}/capture", ids[0]), &[("Authorization", &auth)], None);
    assert_eq!((status, capture["amount"].as_str()), (201, Some("5.00")), "{capture}");
    // A body-less route refuses a text body as well.
    let headers = [("Authorization", auth.as_str()), ("Content-Type", "text/plain")];
    let (status, _, _) = send(&svc, "POST", &format!("/v1/transactions/{}/void", ids[1]), &headers, Some("now"));
    assert_eq!(status, 415);
}

/// RFC 7235: the scheme is case-insensitive, so `bearer` and `BEARER` authenticate;
/// another scheme does not.
#[test]
fn the_bearer_scheme_is_case_insensitive() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::start(dir.path(), true);
    let admin = svc.token(ADMIN_EMAIL, ADMIN_PASSWORD);
    let (_, key) = svc.client_with_key(&admin, "schemes");
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let auth = format!("{scheme} {key}");
        let (status, _, reply) = send(&svc, "GET", "/v1/balance", &[("Authorization", &auth)], None);
        assert_eq!(status, 200, "{scheme}: {reply}");
    }
    for auth in [format!("Basic {key}"), format!("Bearer{key}"), "bearer ".to_string()] {
        let (status, _, _) = send(&svc, "GET", "/v1/balance", &[("Authorization", &auth)], None);
        assert_eq!(status, 401, "{auth}");
    }
    // Signing out reads the scheme the same way: the session ends.
    let token = svc.token(ADMIN_EMAIL, ADMIN_PASSWORD);
    let auth = format!("bearer {token}");
    let (status, _, _) = send(&svc, "POST", "/v1/auth/logout", &[("Authorization", &auth)], None);
    assert_eq!(status, 200);
    let (status, _, _) = send(&svc, "GET", "/v1/users/me", &[("Authorization", &auth)], None);
    assert_eq!(status, 401, "the session ended");
}

/// Every API answer says `Cache-Control: no-store`, above all those that show a secret
/// once (a new API key, an MFA secret, a session token); errors too.
#[test]
fn api_answers_are_not_stored_by_caches() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::start(dir.path(), true);
    let json_type = ("Content-Type", "application/json");
    let login = json!({ "email": ADMIN_EMAIL, "password": ADMIN_PASSWORD }).to_string();
    let (status, cache, session) = send(&svc, "POST", "/v1/auth/login", &[json_type], Some(&login));
    assert_eq!((status, cache.as_deref()), (200, Some("no-store")));
    let auth = bearer(session["token"].as_str().unwrap());
    let (_, _, client) =
        send(&svc, "POST", "/v1/clients", &[("Authorization", &auth), json_type], Some(r#"{"name": "c"}"#));
    let path = format!("/v1/clients/{}/applications", client["id"]);
    let (status, cache, app) =
        send(&svc, "POST", &path, &[("Authorization", &auth), json_type], Some(r#"{"name": "a"}"#));
    assert_eq!((status, cache.as_deref()), (201, Some("no-store")), "{app}");
    assert!(app["api_key"].as_str().unwrap().starts_with("sk_"));
    let (status, cache, mfa) = send(&svc, "POST", "/v1/users/me/mfa", &[("Authorization", &auth)], None);
    assert_eq!((status, cache.as_deref()), (200, Some("no-store")), "{mfa}");
    assert!(mfa["secret"].is_string());
    for path in ["/v1/clients", "/v1/nothing-here", "/healthz"] {
        let (_, cache, _) = send(&svc, "GET", path, &[("Authorization", &auth)], None);
        assert_eq!(cache.as_deref(), Some("no-store"), "{path}");
    }
    let (status, cache, _) = send(&svc, "GET", "/v1/clients", &[], None);
    assert_eq!((status, cache.as_deref()), (401, Some("no-store")));
}

/// The same JSON with its keys in another order (or other spacing) is the same
/// request: replayed, not 409. A different value is still 409.
#[test]
fn an_idempotent_body_is_compared_by_its_json_value() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::start(dir.path(), true);
    let admin = svc.token(ADMIN_EMAIL, ADMIN_PASSWORD);
    let (_, key) = svc.client_with_key(&admin, "replays");
    let first = r#"{"kind":"payment","amount":"2.50","currency":"EUR"}"#;
    let reordered = "{ \"currency\": \"EUR\",\n  \"amount\": \"2.50\", \"kind\": \"payment\" }";
    let (status, replayed, original) = svc.post_keyed("/v1/transactions", &key, Some("order-1"), first);
    assert_eq!((status, replayed), (201, false), "{original}");
    let (status, replayed, again) = svc.post_keyed("/v1/transactions", &key, Some("order-1"), reordered);
    assert_eq!((status, replayed), (201, true), "{again}");
    assert_eq!(again["id"], original["id"]);
    let other = r#"{"currency":"EUR","amount":"2.51","kind":"payment"}"#;
    let (status, _, conflict) = svc.post_keyed("/v1/transactions", &key, Some("order-1"), other);
    assert_eq!((status, error_code(&conflict).as_str()), (409, "idempotency_conflict"));
}

/// One rule for a reversed period (400 `invalid_period`, as reports answered it) on
/// every list; a query parameter that does not parse is 400 `invalid_query` naming
/// it; one the route does not read is 400 `unknown_parameter` naming it.
#[test]
fn queries_are_validated_alike_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::start(dir.path(), true);
    let admin = svc.token(ADMIN_EMAIL, ADMIN_PASSWORD);
    let (_, key) = svc.client_with_key(&admin, "queries");
    pay(&svc, &key, "1.00");
    let reversed = [
        ("/v1/transactions?from=2026-12-05&to=2026-12-01", &key),
        ("/v1/reports/transactions?from=2026-12-05&to=2026-12-01", &key),
        ("/v1/audit?from=1800000000&to=1700000000", &admin),
    ];
    for (path, token) in reversed {
        let (status, reply) = svc.request("GET", path, Some(token), None);
        assert_eq!(
            (status, error_code(&reply).as_str(), reply["error"]["param"].as_str()),
            (400, "invalid_period", Some("from")),
            "{path}"
        );
    }
    let (status, list) = svc.request("GET", "/v1/transactions?from=2026-01-01&to=2099-01-01", Some(&key), None);
    assert_eq!((status, list["data"].as_array().map(Vec::len)), (200, Some(1)));
    for (path, param) in [
        ("/v1/transactions?limit=ten", "limit"),
        ("/v1/batches?starting_after=-x", "starting_after"),
        ("/v1/devices?group_id=1.5", "group_id"),
    ] {
        let (status, reply) = svc.request("GET", path, Some(&key), None);
        assert_eq!(
            (status, error_code(&reply).as_str(), reply["error"]["param"].as_str()),
            (400, "invalid_query", Some(param)),
            "{path}: {reply}"
        );
    }
    for (path, param) in [("/v1/transactions?statuss=captured", "statuss"), ("/v1/balance?currency=USD", "currency")] {
        let (status, reply) = svc.request("GET", path, Some(&key), None);
        assert_eq!(
            (status, error_code(&reply).as_str(), reply["error"]["param"].as_str()),
            (400, "unknown_parameter", Some(param)),
            "{path}: {reply}"
        );
    }
}

/// A `starting_after` that names nothing of the list is 404 naming it, on every list
/// (a bogus batch cursor answered an empty page, a bogus transaction cursor 404);
/// another client's object is nothing of this list (a note on another client's
/// payment is no cursor for one's own payment's notes).
#[test]
fn a_cursor_naming_nothing_is_404_on_every_list() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::start(dir.path(), true);
    let admin = svc.token(ADMIN_EMAIL, ADMIN_PASSWORD);
    let (_, key) = svc.client_with_key(&admin, "cursors");
    let (_, other) = svc.client_with_key(&admin, "elsewhere");
    let theirs = pay(&svc, &other, "1.00");
    let (status, batch) = svc.post("/v1/batches/close", &other, json!({ "currency": "USD" }));
    assert_eq!(status, 200, "{batch}");
    pay(&svc, &key, "1.00");
    for path in [
        "/v1/batches?starting_after=999999".to_string(),
        format!("/v1/batches?starting_after={}", batch["id"]),
        format!("/v1/transactions?starting_after={theirs}"),
        "/v1/transactions?starting_after=tx_00000000000000000000000000000001".to_string(),
        "/v1/tickets?starting_after=999999".to_string(),
        "/v1/devices?starting_after=999999".to_string(),
        "/v1/device-groups?starting_after=999999".to_string(),
    ] {
        let (status, reply) = svc.request("GET", &path, Some(&key), None);
        assert_eq!((status, reply["error"]["param"].as_str()), (404, Some("starting_after")), "{path}: {reply}");
    }
    let mine = pay(&svc, &key, "2.00");
    let (status, note) =
        svc.post("/v1/notes", &other, json!({ "resource_type": "transaction", "resource_id": theirs, "body": "x" }));
    assert_eq!(status, 201, "{note}");
    let (_, audit) = svc.request("GET", "/v1/audit?limit=1", Some(&admin), None);
    let newest = audit["data"][0]["id"].as_i64().unwrap();
    for (path, token) in [
        (format!("/v1/notes?resource_type=transaction&resource_id={mine}&starting_after={}", note["id"]), &key),
        (format!("/v1/audit?starting_after={}", newest + 1_000), &admin),
        ("/v1/users?starting_after=999999".to_string(), &admin),
    ] {
        let (status, reply) = svc.request("GET", &path, Some(token), None);
        assert_eq!((status, reply["error"]["param"].as_str()), (404, Some("starting_after")), "{path}: {reply}");
    }
    let (status, _) = svc.request("GET", &format!("/v1/audit?starting_after={newest}"), Some(&admin), None);
    assert_eq!(status, 200, "a real audit cursor pages on");
    let (status, batches) = svc.request("GET", "/v1/batches", Some(&key), None);
    let first = batches["data"][0]["id"].clone();
    assert_eq!(status, 200);
    let (status, _) = svc.request("GET", &format!("/v1/batches?starting_after={first}"), Some(&key), None);
    assert_eq!(status, 200, "a real cursor pages on");
}

/// A zero capture and a zero refund are the same mistake (400 `invalid_amount`; a zero
/// capture was 422). A refund without an amount refunds all that is left; once
/// nothing is, the ledger refuses it (422) and the refusal is audited.
#[test]
fn zero_amounts_alike_and_a_refund_without_amount_takes_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::start(dir.path(), true);
    let admin = svc.token(ADMIN_EMAIL, ADMIN_PASSWORD);
    let (_, key) = svc.client_with_key(&admin, "amounts");
    let (_, auth) = svc.post(
        "/v1/transactions",
        &key,
        json!({ "kind": "payment", "amount": "10.00", "currency": "USD", "capture": false }),
    );
    let auth_id = auth["id"].as_str().unwrap();
    let sale = pay(&svc, &key, "10.00");
    for (path, what) in [
        (format!("/v1/transactions/{auth_id}/capture"), "capture"),
        (format!("/v1/transactions/{sale}/refunds"), "refund"),
    ] {
        for zero in ["0", "0.00", "-1.00"] {
            let (status, reply) = svc.post(&path, &key, json!({ "amount": zero }));
            assert_eq!(
                (status, error_code(&reply).as_str(), reply["error"]["param"].as_str()),
                (400, "invalid_amount", Some("amount")),
                "{what} {zero}"
            );
        }
    }
    let (status, part) = svc.post(&format!("/v1/transactions/{sale}/refunds"), &key, json!({ "amount": "3.00" }));
    assert_eq!(status, 201, "{part}");
    let (status, rest) = svc.request("POST", &format!("/v1/transactions/{sale}/refunds"), Some(&key), None);
    assert_eq!((status, rest["amount"].as_str()), (201, Some("7.00")), "{rest}");
    let (_, payment) = svc.request("GET", &format!("/v1/transactions/{sale}"), Some(&key), None);
    assert_eq!((payment["status"].as_str(), payment["refunded"].as_str()), (Some("refunded"), Some("10.00")));
    let (status, none_left) = svc.post(&format!("/v1/transactions/{sale}/refunds"), &key, json!({}));
    assert_eq!((status, error_code(&none_left).as_str()), (422, "refund_exceeds_captured"));
    // Not captured: the ledger's own refusal, not a 400.
    let (status, uncaptured) = svc.post(&format!("/v1/transactions/{auth_id}/refunds"), &key, json!({}));
    assert_eq!((status, error_code(&uncaptured).as_str()), (422, "payment_not_captured"));
    let (_, refused) = svc.request("GET", "/v1/audit?action=transaction.refund&outcome=refused", Some(&admin), None);
    assert_eq!(refused["data"].as_array().unwrap().len(), 2, "{refused}");
}

/// NUL, other control characters and bidirectional overrides are refused in any text
/// (naming the field); tabs and line breaks in a ticket's body are text.
#[test]
fn text_with_control_or_bidi_override_characters_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::start(dir.path(), true);
    let admin = svc.token(ADMIN_EMAIL, ADMIN_PASSWORD);
    let (_, key) = svc.client_with_key(&admin, "texts");
    for (subject, body) in [
        ("nul\u{0} here", "fine"),
        ("fine", "gpj.\u{202e}exe"),
        ("bell\u{7}", "fine"),
        ("fine", "isolate \u{2067}x\u{2069}"),
        ("c1 \u{85}", "fine"),
    ] {
        let (status, reply) = svc.post("/v1/tickets", &key, json!({ "subject": subject, "body": body }));
        let param = if subject == "fine" { "body" } else { "subject" };
        assert_eq!(
            (status, error_code(&reply).as_str(), reply["error"]["param"].as_str()),
            (400, "invalid_text", Some(param)),
            "{reply}"
        );
    }
    let (status, reply) = svc.post(
        "/v1/transactions",
        &key,
        json!({ "kind": "payment", "amount": "1.00", "currency": "USD", "description": "a\u{202d}b" }),
    );
    assert_eq!((status, reply["error"]["param"].as_str()), (400, Some("description")));
    let (status, ticket) = svc.post("/v1/tickets", &key, json!({ "subject": "Till 4", "body": "line 1\r\n\tline 2" }));
    assert_eq!((status, ticket["body"].as_str()), (201, Some("line 1\r\n\tline 2")), "{ticket}");
    let (_, tickets) = svc.request("GET", "/v1/tickets", Some(&key), None);
    assert_eq!(tickets["data"].as_array().unwrap().len(), 1, "only the clean ticket was kept");
}

/// An email must be an address: `"><img src=x>@x.test` and friends are 400
/// `invalid_email` and create no user.
#[test]
fn emails_are_validated_as_addresses() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::start(dir.path(), true);
    let admin = svc.token(ADMIN_EMAIL, ADMIN_PASSWORD);
    let (client, _) = svc.client_with_key(&admin, "emails");
    let password = "a long enough passphrase 2026";
    for email in ["\"><img src=x>@x.test", "a b@x.test", "a@x", "a@@x.test", "a@x..test", "nobody"] {
        let (status, reply) = svc.post(
            "/v1/users",
            &admin,
            json!({ "email": email, "password": password, "role": "viewer", "client_id": client }),
        );
        assert_eq!(
            (status, error_code(&reply).as_str(), reply["error"]["param"].as_str()),
            (400, "invalid_email", Some("email")),
            "{email}"
        );
    }
    let (status, user) = svc.post(
        "/v1/users",
        &admin,
        json!({ "email": "o'brien+till@shop.example", "password": password, "role": "viewer", "client_id": client }),
    );
    assert_eq!(status, 201, "{user}");
    assert_eq!(count(&svc, &admin, &format!("/v1/users?client_id={client}")), 1);
}

/// An id in the query is 1 to i64::MAX, as the document says: `device_id` past it (it
/// was parsed as a u64 and matched nothing) or 0 is 400 naming it (found by
/// Schemathesis's negative data, issue 16), on every list that filters by an id.
#[test]
fn query_ids_out_of_range_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::start(dir.path(), true);
    let admin = svc.token(ADMIN_EMAIL, ADMIN_PASSWORD);
    let (_, key) = svc.client_with_key(&admin, "ids");
    for path in [
        "/v1/transactions?device_id=9223372036854775808",
        "/v1/transactions?device_id=0",
        "/v1/reports/transactions?device_id=9223372036854775808",
        "/v1/reports/transactions?device_id=-1",
        "/v1/devices?group_id=0",
        "/v1/tickets?starting_after=0",
    ] {
        let (status, body) = svc.request("GET", path, Some(&key), None);
        assert_eq!(status, 400, "{path}: {body}");
        assert_eq!(error_code(&body), "invalid_query", "{path}");
        let name = path.split_once('?').unwrap().1.split('=').next().unwrap();
        assert_eq!(body["error"]["param"], name, "{path}");
    }
    for path in ["/v1/transactions?device_id=9223372036854775807", "/v1/reports/transactions?device_id=1"] {
        let (status, body) = svc.request("GET", path, Some(&key), None);
        assert_eq!(status, 200, "{path}: {body}");
    }
    let (status, body) = svc.request("GET", "/v1/users?client_id=0", Some(&admin), None);
    assert_eq!((status, error_code(&body)), (400, "invalid_query".to_string()), "{body}");
}

/// An audit filter by an unknown actor type is 400 naming it, like an unknown outcome;
/// it matched nothing (200 and empty) until Schemathesis sent `actor_type=null`.
#[test]
fn an_unknown_actor_type_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::start(dir.path(), true);
    let admin = svc.token(ADMIN_EMAIL, ADMIN_PASSWORD);
    let (status, body) = svc.request("GET", "/v1/audit?actor_type=null", Some(&admin), None);
    assert_eq!((status, error_code(&body)), (400, "invalid_actor_type".to_string()), "{body}");
    assert_eq!(body["error"]["param"], "actor_type");
    let (status, body) = svc.request("GET", "/v1/audit?actor_type=user", Some(&admin), None);
    assert_eq!(status, 200, "{body}");
    assert!(body["data"].as_array().unwrap().iter().all(|e| e["actor_type"] == "user"), "{body}");
    assert!(!body["data"].as_array().unwrap().is_empty(), "the admin's sign-in is there");
}
