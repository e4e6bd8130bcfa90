//! Over real HTTP, driven by the service's own route table (`GET /openapi.json`):
//! every route checks who may call it (401 without credentials, 403 for a role or an
//! API key it does not admit, never either for one it does), the declared access of
//! the contract's routes is what the contract says, and every route that names an
//! object answers 404 to another client, changing nothing. A route added without an
//! isolation case here fails the test.
#![allow(clippy::unwrap_used)]

mod common;

use common::{ADMIN_EMAIL, ADMIN_PASSWORD, Service};
use serde_json::{Value, json};

const PASSWORD: &str = "a long enough password";

struct Operation {
    method: String,
    path: String,
    roles: Vec<String>,
    api_key: bool,
    public: bool,
}

fn operations(svc: &Service) -> Vec<Operation> {
    let (status, doc) = svc.request("GET", "/openapi.json", None, None);
    assert_eq!(status, 200);
    assert_eq!(doc["openapi"].as_str().map(|v| v.starts_with("3.")), Some(true));
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let access = &op["x-access"];
            assert!(access.is_object(), "{method} {path} has no x-access");
            ops.push(Operation {
                method: method.to_uppercase(),
                path: path.clone(),
                roles: access["roles"].as_array().unwrap().iter().map(|r| r.as_str().unwrap().to_string()).collect(),
                api_key: access["api_key"].as_bool().unwrap(),
                public: access["public"].as_bool().unwrap(),
            });
        }
    }
    ops
}

fn user(svc: &Service, admin: &str, email: &str, role: &str, client_id: i64) -> String {
    let (status, body) = svc.post(
        "/v1/users",
        admin,
        json!({ "email": email, "password": PASSWORD, "role": role, "client_id": client_id }),
    );
    assert_eq!(status, 201, "{body}");
    svc.token(email, PASSWORD)
}

fn fill(path: &str, value: impl Fn(&str, &str) -> String) -> String {
    let first = path.trim_start_matches("/v1/").split('/').next().unwrap().to_string();
    path.split('/')
        .map(|seg| match seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            Some(param) => value(&first, param),
            None => seg.to_string(),
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// The status of `GET path` with `token`, reading only the status line (for a route
/// whose answer streams without end).
fn stream_status(svc: &Service, path: &str, token: &str) -> u16 {
    use std::io::{BufRead, Write};
    let addr = svc.base.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(stream).read_line(&mut line).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn every_route_checks_role_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::start(dir.path(), true);
    let admin = svc.token(ADMIN_EMAIL, ADMIN_PASSWORD);
    let (a, key) = svc.client_with_key(&admin, "A");
    let callers: Vec<(&str, String)> = vec![
        ("viewer", user(&svc, &admin, "v@a.test", "viewer", a)),
        ("operator", user(&svc, &admin, "o@a.test", "operator", a)),
        ("client_admin", user(&svc, &admin, "ca@a.test", "client_admin", a)),
        ("admin", admin.clone()),
        ("api_key", key.clone()),
    ];
    let ops = operations(&svc);
    assert!(ops.len() >= 40, "only {} operations", ops.len());

    // The contract's own statements about who may call.
    let expect = |method: &str, path: &str, roles: &[&str], api_key: bool| {
        let op = ops.iter().find(|o| o.method == method && o.path == path).unwrap_or_else(|| panic!("{method} {path}"));
        assert_eq!(
            (op.roles.iter().map(String::as_str).collect::<Vec<_>>(), op.api_key),
            (roles.to_vec(), api_key),
            "{method} {path}"
        );
    };
    let (viewer_up, operator_up) = (["viewer", "operator", "client_admin"], ["operator", "client_admin"]);
    expect("POST", "/v1/clients", &["admin"], false);
    expect("POST", "/v1/users", &["client_admin", "admin"], false);
    expect("POST", "/v1/clients/{id}/applications", &["client_admin", "admin"], false);
    expect("DELETE", "/v1/clients/{id}/applications/{app_id}", &["client_admin", "admin"], false);
    expect("POST", "/v1/transactions", &operator_up, true);
    expect("POST", "/v1/transactions/{id}/refunds", &operator_up, true);
    expect("GET", "/v1/transactions", &viewer_up, true);
    expect("GET", "/v1/balance", &viewer_up, true);
    expect("POST", "/v1/batches/close", &operator_up, true);
    expect("GET", "/v1/reports/transactions", &viewer_up, true);
    expect("POST", "/v1/devices", &["client_admin"], false);
    expect("GET", "/v1/devices", &viewer_up, true);
    expect("POST", "/v1/device-groups", &["client_admin"], false);
    expect("PUT", "/v1/devices/{id}/group", &["client_admin"], false);
    expect("POST", "/v1/device-groups/{id}/firmware", &["client_admin"], false);
    expect("POST", "/v1/devices/{id}/heartbeat", &[], true);
    expect("POST", "/v1/tickets", &operator_up, true);
    expect("PATCH", "/v1/tickets/{id}", &operator_up, true);
    expect("POST", "/v1/notes", &operator_up, true);
    expect("GET", "/v1/notes", &viewer_up, true);
    expect("POST", "/v1/auth/login", &[], false);
    expect("POST", "/v1/auth/session", &[], false);
    expect("GET", "/v1/users", &["client_admin", "admin"], false);
    expect("PATCH", "/v1/users/{id}", &["client_admin", "admin"], false);
    expect("GET", "/v1/clients/{id}/applications", &["client_admin", "admin"], false);

    let mut checked = 0;
    for op in &ops {
        let path = fill(&op.path, |_, _| "999999".to_string());
        let (status, body) = svc.request(&op.method, &path, None, Some("{}"));
        if op.public {
            assert!(status != 401 && status != 403, "{} {path} is public: {status} {body}", op.method);
            continue;
        }
        assert_eq!(status, 401, "{} {path} without credentials: {body}", op.method);
        for (who, token) in &callers {
            let allowed = if *who == "api_key" { op.api_key } else { op.roles.iter().any(|r| r == who) };
            // The event stream does not end: only its status line is read.
            let (status, body) = if op.path == "/v1/events/stream" {
                (stream_status(&svc, &path, token), Value::Null)
            } else {
                svc.request(&op.method, &path, Some(token), Some("{}"))
            };
            if op.path == "/v1/events/stream" && !allowed {
                assert_eq!(status, 403, "{who} may not open the event stream");
                checked += 1;
                continue;
            }
            if allowed {
                assert!(status != 401 && status != 403, "{who} may {} {path}: {status} {body}", op.method);
            } else {
                assert_eq!(status, 403, "{who} may not {} {path}: {body}", op.method);
                assert_eq!(body["error"]["type"].as_str(), Some("permission_error"), "{body}");
            }
            checked += 1;
        }
    }
    assert!(checked > 150, "{checked} checks");
}

#[test]
fn another_clients_objects_are_not_found_on_every_route() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::start(dir.path(), true);
    let admin = svc.token(ADMIN_EMAIL, ADMIN_PASSWORD);
    let (a, key_a) = svc.client_with_key(&admin, "A");
    let (b, key_b) = svc.client_with_key(&admin, "B");
    let admin_a = user(&svc, &admin, "ca@a.test", "client_admin", a);
    let admin_b = user(&svc, &admin, "ca@b.test", "client_admin", b);

    // One object of every kind in client A.
    let (_, auth) = svc.post(
        "/v1/transactions",
        &key_a,
        json!({ "kind": "payment", "amount": "20.00", "currency": "USD", "capture": false }),
    );
    let tx = auth["id"].as_str().unwrap().to_string();
    let (_, sale) =
        svc.post("/v1/transactions", &key_a, json!({ "kind": "payment", "amount": "5.00", "currency": "EUR" }));
    let (status, batch) = svc.post("/v1/batches/close", &key_a, json!({ "currency": "EUR" }));
    assert_eq!(status, 200, "{batch}");
    let (_, ticket) = svc.post("/v1/tickets", &key_a, json!({ "subject": "s", "body": "b" }));
    let (status, device) = svc.post("/v1/devices", &admin_a, json!({ "serial": "A-0001", "model": "T1" }));
    assert_eq!(status, 201, "{device}");
    let (status, group) =
        svc.post("/v1/device-groups", &admin_a, json!({ "name": "front", "config": { "tip": true } }));
    assert_eq!(status, 201, "{group}");
    let (status, _) = svc.request(
        "PUT",
        &format!("/v1/devices/{}/group", device["id"]),
        Some(&admin_a),
        Some(&json!({ "group_id": group["id"] }).to_string()),
    );
    assert_eq!(status, 200);
    let (status, rollout) =
        svc.post(&format!("/v1/device-groups/{}/firmware", group["id"]), &admin_a, json!({ "version": "2.0" }));
    assert_eq!(status, 201, "{rollout}");
    let (_, apps) = svc.post(&format!("/v1/clients/{a}/applications"), &admin_a, json!({ "name": "second" }));
    let (status, user_a) = svc.post(
        "/v1/users",
        &admin_a,
        json!({ "email": "op@a.test", "password": PASSWORD, "role": "operator", "client_id": a }),
    );
    assert_eq!(status, 201, "{user_a}");

    let (status, hook) = svc.post(
        "/v1/webhook-endpoints",
        &admin_a,
        json!({ "url": "https://hooks.example.invalid/a", "events": ["payment.created"] }),
    );
    assert_eq!(status, 201, "{hook}");

    let id_of = |first: &str, param: &str| -> String {
        match (first, param) {
            ("clients", "id") => a.to_string(),
            ("clients", "app_id") => apps["id"].to_string(),
            ("transactions", "id") => tx.clone(),
            ("batches", "id") => batch["id"].to_string(),
            ("tickets", "id") => ticket["id"].to_string(),
            ("devices", "id") => device["id"].to_string(),
            ("device-groups", "id") => group["id"].to_string(),
            ("rollouts", "id") => rollout["id"].to_string(),
            ("users", "id") => user_a["id"].to_string(),
            ("webhook-endpoints", "id") => hook["id"].to_string(),
            // The endpoint is another client's, so 404 whatever the delivery.
            ("webhook-endpoints", "delivery_id") => "1".to_string(),
            // Any well-formed session id: the user is another client's, so 404 first.
            ("users", "session_id") => "0123456789abcdef".to_string(),
            _ => panic!("no isolation case for /v1/{first}/.../{{{param}}}: add one"),
        }
    };
    let body_for = |method: &str, path: &str| -> Value {
        match (method, path) {
            ("POST", p) if p.ends_with("/refunds") || p.ends_with("/capture") => json!({ "amount": "1.00" }),
            ("POST", p) if p.ends_with("/comments") => json!({ "body": "x" }),
            ("POST", p) if p.ends_with("/heartbeat") => json!({ "firmware_version": "9.9", "diagnostics": {} }),
            ("POST", p) if p.ends_with("/firmware") => json!({ "version": "3.0" }),
            ("POST", p) if p.ends_with("/applications") => json!({ "name": "x" }),
            ("POST", p) if p.ends_with("/password") => json!({ "password": "a long enough password" }),
            ("PUT", _) => json!({ "group_id": null }),
            ("PATCH", p) if p.starts_with("/v1/tickets") => json!({ "status": "closed" }),
            ("PATCH", p) if p.starts_with("/v1/users") => json!({ "role": "viewer" }),
            ("PATCH", p) if p.starts_with("/v1/clients") => json!({ "mfa_required": true }),
            ("PATCH", _) => json!({ "name": "renamed", "config": {} }),
            _ => json!({}),
        }
    };
    let mut checked = 0;
    // Public routes (the web portal's files) name no client's object, nor do the
    // cluster's members (platform admins only).
    for op in
        operations(&svc).iter().filter(|o| o.path.contains('{') && !o.public && !o.path.starts_with("/v1/cluster/"))
    {
        let path = fill(&op.path, id_of);
        let body = body_for(&op.method, &op.path).to_string();
        let mut callers = Vec::new();
        if op.api_key {
            callers.push(("B's API key", &key_b));
        }
        if op.roles.iter().any(|r| r == "client_admin") {
            callers.push(("B's client_admin", &admin_b));
        }
        assert!(!callers.is_empty(), "{} {path}: nobody of client B can call it", op.method);
        for (who, token) in callers {
            let (status, reply) = svc.request(&op.method, &path, Some(token), Some(&body));
            assert_eq!(status, 404, "{who}: {} {path} -> {reply}", op.method);
            assert_eq!(reply["error"]["code"].as_str(), Some("not_found"), "{reply}");
            checked += 1;
        }
    }
    assert!(checked >= 25, "{checked} checks");
    // Notes name their resource in the query.
    let (status, _) =
        svc.request("GET", &format!("/v1/notes?resource_type=transaction&resource_id={tx}"), Some(&key_b), None);
    assert_eq!(status, 404);

    // Nothing of A's changed.
    let (_, after) = svc.request("GET", &format!("/v1/transactions/{tx}"), Some(&key_a), None);
    assert_eq!((after["status"].as_str(), after["captured"].as_str()), (Some("authorized"), Some("0.00")), "{after}");
    let (_, t) = svc.request("GET", &format!("/v1/tickets/{}", ticket["id"]), Some(&key_a), None);
    assert_eq!((t["status"].as_str(), t["comments"].as_array().map(Vec::len)), (Some("open"), Some(0)));
    let (_, users) = svc.request("GET", &format!("/v1/users?client_id={a}"), Some(&admin_a), None);
    assert!(users["data"].as_array().unwrap().iter().any(|u| u["id"] == user_a["id"] && u["role"] == "operator"));
    let (_, d) = svc.request("GET", &format!("/v1/devices/{}", device["id"]), Some(&key_a), None);
    assert_eq!((d["group_id"].clone(), d["last_seen"].clone()), (group["id"].clone(), Value::Null), "{d}");
    let (_, g) = svc.request("GET", &format!("/v1/device-groups/{}", group["id"]), Some(&key_a), None);
    assert_eq!(g["name"].as_str(), Some("front"), "{g}");
    let (status, _) = svc.request("GET", "/v1/balance", Some(apps["api_key"].as_str().unwrap()), None);
    assert_eq!(status, 200, "A's second key still works");
    assert_eq!(sale["status"].as_str(), Some("captured"));
}
