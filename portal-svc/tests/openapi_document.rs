//! `GET /openapi.json` as a client generator reads it: typed parameters, declared
//! headers, optional bodies where an empty body is meant, success statuses that match
//! the answers, and a named 2xx schema for every operation (issue 16), with the
//! answers serialized from the types the schemas name.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;

use common::{ADMIN_EMAIL, ADMIN_PASSWORD, Service};
use serde_json::{Value, json};

fn document(svc: &Service) -> Value {
    let (status, doc) = svc.request("GET", "/openapi.json", None, None);
    assert_eq!(status, 200);
    doc
}

fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            ops.push((method.to_uppercase(), path.clone(), op.clone()));
        }
    }
    ops
}

fn parameter<'a>(op: &'a Value, name: &str) -> Option<&'a Value> {
    op["parameters"].as_array()?.iter().find(|p| p["name"] == name)
}

fn operation<'a>(doc: &'a Value, method: &str, path: &str) -> &'a Value {
    &doc["paths"][path][method.to_lowercase()]
}

/// The properties and required properties of the component `name`, through `allOf`
/// (a `#[serde(flatten)]` field) and `$ref`s.
fn fields(doc: &Value, name: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let schema = &doc["components"]["schemas"][name];
    let (mut properties, mut required) = (BTreeSet::new(), BTreeSet::new());
    let mut parts = vec![schema.clone()];
    parts.extend(schema["allOf"].as_array().into_iter().flatten().cloned());
    for part in parts {
        if let Some(reference) = part["$ref"].as_str() {
            let (p, r) = fields(doc, reference.trim_start_matches("#/components/schemas/"));
            properties.extend(p);
            required.extend(r);
        }
        properties.extend(part["properties"].as_object().into_iter().flatten().map(|(k, _)| k.clone()));
        required.extend(part["required"].as_array().into_iter().flatten().filter_map(|r| r.as_str()).map(String::from));
    }
    assert!(!properties.is_empty(), "{name}: no properties in {schema}");
    (properties, required)
}

/// Asserts that `value` is a `name` of the document: every key a property of the
/// component, every required property present and non-null.
fn assert_shape(doc: &Value, name: &str, value: &Value) {
    let (properties, required) = fields(doc, name);
    let keys: BTreeSet<String> =
        value.as_object().unwrap_or_else(|| panic!("{name}: {value}")).keys().cloned().collect();
    assert!(keys.is_subset(&properties), "{name}: {value} has keys the schema does not name: {properties:?}");
    for required in required {
        assert!(!value[required.as_str()].is_null(), "{name}.{required}: {value}");
    }
}

/// Every operation names its 2xx answer's schema: a component, for each media type it
/// answers (a report as JSON and as CSV).
#[test]
fn every_operation_declares_a_success_schema() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::start(dir.path(), true);
    let doc = document(&svc);
    let mut missing = BTreeSet::new();
    for (method, path, op) in operations(&doc) {
        let responses = op["responses"].as_object().unwrap();
        let success: Vec<_> = responses.iter().filter(|(code, _)| code.starts_with('2')).collect();
        assert_eq!(success.len(), 1, "{method} {path}: one success status");
        let content = success[0].1["content"].as_object();
        if content.is_none_or(|c| c.is_empty()) {
            missing.insert(format!("{method} {path}"));
        }
        for (media_type, body) in content.into_iter().flatten() {
            let reference = body["schema"]["$ref"].as_str().unwrap_or_else(|| panic!("{method} {path} {media_type}"));
            let name = reference.trim_start_matches("#/components/schemas/");
            assert!(doc["components"]["schemas"][name].is_object(), "{method} {path}: {reference} is not a component");
        }
    }
    assert!(missing.is_empty(), "operations without a success schema: {missing:#?}");
}

/// Ids in paths are integers (a transaction's is its `tx_` string), `limit` is a
/// bounded integer, filters are enums or typed, notes' two parameters are required,
/// and nothing is a bare string that the service parses as something else.
#[test]
fn parameters_are_typed() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::start(dir.path(), true);
    let doc = document(&svc);
    for (method, path, op) in operations(&doc) {
        for p in op["parameters"].as_array().into_iter().flatten() {
            let (name, schema) = (p["name"].as_str().unwrap(), &p["schema"]);
            match (p["in"].as_str().unwrap(), name) {
                ("path", "id") if path.starts_with("/v1/transactions/") => {
                    assert_eq!(schema["pattern"], "^tx_[0-9a-f]{32}$", "{method} {path}");
                }
                ("path", "name") => assert_eq!(schema["type"], "string"),
                ("path", "session_id") => assert_eq!(schema["pattern"], "^[0-9a-f]{16}$"),
                ("path", _) => assert_eq!(
                    (schema["type"].as_str(), schema["minimum"].as_f64()),
                    (Some("integer"), Some(1.0)),
                    "{method} {path} {name}"
                ),
                ("query", "limit") => {
                    assert_eq!((schema["type"].as_str(), schema["maximum"].as_f64()), (Some("integer"), Some(100.0)));
                }
                ("query", "status" | "kind" | "order" | "format" | "outcome" | "group_by") => {
                    assert!(schema["enum"].as_array().is_some_and(|e| !e.is_empty()), "{method} {path} {name}");
                }
                ("query", "device_id" | "group_id" | "client_id" | "actor_id") => {
                    assert_eq!(schema["type"], "integer", "{method} {path} {name}");
                }
                ("query", "starting_after") if path == "/v1/transactions" => {
                    assert_eq!(schema["pattern"], "^tx_[0-9a-f]{32}$");
                }
                ("query", "starting_after") if path == "/v1/events" => {
                    assert_eq!(schema["pattern"], "^evt_[0-9a-f]{24}$");
                }
                ("query", "type") => {
                    assert!(schema["enum"].as_array().is_some_and(|e| e.len() == 9), "{method} {path} {name}");
                }
                ("query", "starting_after") => assert_eq!(schema["type"], "integer", "{method} {path}"),
                _ => {}
            }
        }
    }
    let notes = operation(&doc, "GET", "/v1/notes");
    for name in ["resource_type", "resource_id"] {
        assert_eq!(parameter(notes, name).unwrap()["required"], true, "{name}");
    }
    assert_eq!(parameter(notes, "limit").unwrap()["required"], false);
}

/// `Idempotency-Key` is declared where it is honoured, `X-CSRF-Token` on every write a
/// browser session can make; a capture's and a refund's body are optional, a
/// payment's is not.
#[test]
fn headers_and_optional_bodies_are_declared() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::start(dir.path(), true);
    let doc = document(&svc);
    for path in [
        "/v1/transactions",
        "/v1/transactions/{id}/capture",
        "/v1/transactions/{id}/void",
        "/v1/transactions/{id}/refunds",
    ] {
        let key = parameter(operation(&doc, "POST", path), "Idempotency-Key").unwrap_or_else(|| panic!("{path}"));
        assert_eq!((key["in"].as_str(), key["schema"]["maxLength"].as_u64()), (Some("header"), Some(255)));
    }
    for (method, path, op) in operations(&doc) {
        let cookie = op["security"].as_array().into_iter().flatten().any(|s| s.get("session_cookie").is_some());
        if method != "GET" && cookie {
            assert!(parameter(&op, "X-CSRF-Token").is_some(), "{method} {path}");
        }
    }
    assert_eq!(operation(&doc, "POST", "/v1/transactions")["requestBody"]["required"], true);
    for path in ["/v1/transactions/{id}/capture", "/v1/transactions/{id}/refunds"] {
        assert_eq!(operation(&doc, "POST", path)["requestBody"]["required"], false, "{path}");
    }
}

/// The answers are what the schemas say: a payment answered by create, get, list and
/// history has exactly the properties of the `Transaction` component, with its enum
/// values; and the heartbeat answers the status its operation documents.
#[test]
fn answers_match_their_documented_schema_and_status() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::start(dir.path(), true);
    let doc = document(&svc);
    let admin = svc.token(ADMIN_EMAIL, ADMIN_PASSWORD);
    let (client, key) = svc.client_with_key(&admin, "documented");
    let schema = &doc["components"]["schemas"]["Transaction"];
    let properties: BTreeSet<&String> = schema["properties"].as_object().unwrap().keys().collect();
    let check = |tx: &Value| {
        let keys: BTreeSet<&String> = tx.as_object().unwrap().keys().collect();
        assert_eq!(keys, properties, "{tx}");
        for field in ["kind", "status"] {
            let reference = schema["properties"][field]["$ref"].as_str().unwrap();
            let name = reference.trim_start_matches("#/components/schemas/");
            let values = doc["components"]["schemas"][name]["enum"].as_array().unwrap();
            assert!(values.contains(&tx[field]), "{field} {} not in {values:?}", tx[field]);
        }
    };
    let (status, created) =
        svc.post("/v1/transactions", &key, json!({ "kind": "payment", "amount": "4.20", "currency": "USD" }));
    assert!(operation(&doc, "POST", "/v1/transactions")["responses"][status.to_string()].is_object());
    check(&created);
    let id = created["id"].as_str().unwrap();
    let (_, got) = svc.request("GET", &format!("/v1/transactions/{id}"), Some(&key), None);
    check(&got);
    let (_, list) = svc.request("GET", "/v1/transactions", Some(&key), None);
    list["data"].as_array().unwrap().iter().for_each(check);
    let list_schema = &doc["components"]["schemas"]["TransactionList"]["properties"];
    let keys: BTreeSet<&String> = list.as_object().unwrap().keys().collect();
    assert_eq!(keys, list_schema.as_object().unwrap().keys().collect());
    let (_, history) = svc.request("GET", &format!("/v1/transactions/{id}/history"), Some(&key), None);
    history["events"].as_array().unwrap().iter().for_each(check);
    let (status, refund) = svc.post(&format!("/v1/transactions/{id}/refunds"), &key, json!({}));
    assert_eq!(status, 201, "{refund}");
    check(&refund);

    // Batches and balances.
    let (status, closed) = svc.post("/v1/batches/close", &key, json!({ "currency": "USD" }));
    assert_eq!(status, 200, "{closed}");
    assert_shape(&doc, "Batch", &closed);
    let (_, got) = svc.request("GET", &format!("/v1/batches/{}", closed["id"]), Some(&key), None);
    assert_shape(&doc, "Batch", &got);
    let (_, batches) = svc.request("GET", "/v1/batches", Some(&key), None);
    assert_shape(&doc, "BatchList", &batches);
    let (_, reconciliation) =
        svc.request("GET", &format!("/v1/batches/{}/reconciliation", closed["id"]), Some(&key), None);
    assert_shape(&doc, "Reconciliation", &reconciliation);
    assert_shape(&doc, "BatchTotals", &reconciliation["transactions"]);
    let (_, balance) = svc.request("GET", "/v1/balance", Some(&key), None);
    assert_shape(&doc, "Balance", &balance);
    assert_shape(&doc, "CurrencyBalance", &balance["data"][0]);

    // The audit trail and its verification.
    let (_, entries) = svc.request("GET", "/v1/audit?limit=5", Some(&admin), None);
    assert_shape(&doc, "AuditEntryList", &entries);
    entries["data"].as_array().unwrap().iter().for_each(|e| assert_shape(&doc, "AuditEntry", e));
    let (_, verdict) = svc.request("GET", "/v1/audit/verify", Some(&admin), None);
    assert_shape(&doc, "AuditVerification", &verdict);

    // Tickets and comments.
    let (status, ticket) = svc.post("/v1/tickets", &key, json!({ "subject": "Till 2", "body": "It beeps." }));
    assert_eq!(status, 201, "{ticket}");
    assert_shape(&doc, "Ticket", &ticket);
    let comments = format!("/v1/tickets/{}/comments", ticket["id"]);
    let (status, comment) = svc.post(&comments, &key, json!({ "body": "Still beeping." }));
    assert_eq!(status, 201, "{comment}");
    assert_shape(&doc, "Comment", &comment);
    let (_, one) = svc.request("GET", &format!("/v1/tickets/{}", ticket["id"]), Some(&key), None);
    assert_shape(&doc, "Ticket", &one);
    assert_eq!(one["comments"][0], comment, "a comment is shown alike when made and when listed");
    let (_, tickets) = svc.request("GET", "/v1/tickets", Some(&key), None);
    assert_shape(&doc, "TicketList", &tickets);

    // Notes, alone and in a payment's history.
    let (status, note) =
        svc.post("/v1/notes", &key, json!({ "resource_type": "transaction", "resource_id": id, "body": "Regular." }));
    assert_eq!(status, 201, "{note}");
    assert_shape(&doc, "Note", &note);
    let (_, notes) =
        svc.request("GET", &format!("/v1/notes?resource_type=transaction&resource_id={id}"), Some(&key), None);
    assert_shape(&doc, "NoteList", &notes);
    let (_, history) = svc.request("GET", &format!("/v1/transactions/{id}/history"), Some(&key), None);
    assert_shape(&doc, "TransactionHistory", &history);
    assert_eq!(history["notes"][0], note);

    // Who one is, signing in and out, MFA enrolment.
    let (_, login) = svc.login(ADMIN_EMAIL, ADMIN_PASSWORD);
    assert_shape(&doc, "LoginAnswer", &login);
    let (_, me) = svc.request("GET", "/v1/users/me", Some(&admin), None);
    assert_shape(&doc, "Me", &me);
    let (_, me_key) = svc.request("GET", "/v1/users/me", Some(&key), None);
    assert_shape(&doc, "Me", &me_key);
    let (_, session) = svc.request("GET", "/v1/auth/session", Some(&admin), None);
    assert_shape(&doc, "SessionInfo", &session);
    let (_, enrolment) = svc.request("POST", "/v1/users/me/mfa", Some(&admin), None);
    assert_shape(&doc, "MfaEnrolment", &enrolment);
    let token = login["token"].as_str().unwrap();
    let (_, out) = svc.request("POST", "/v1/auth/logout", Some(token), None);
    assert_shape(&doc, "SignedOut", &out);

    // Applications: the key shown once, then only its hint; revoked.
    let apps = format!("/v1/clients/{client}/applications");
    let (status, app) = svc.post(&apps, &admin, json!({ "name": "second till" }));
    assert_eq!(status, 201, "{app}");
    assert_shape(&doc, "NewApplicationAnswer", &app);
    let (_, list) = svc.request("GET", &apps, Some(&admin), None);
    assert_shape(&doc, "ApplicationList", &list);
    list["data"].as_array().unwrap().iter().for_each(|a| assert_shape(&doc, "Application", a));
    let (_, revoked) = svc.request("DELETE", &format!("{apps}/{}", app["id"]), Some(&admin), None);
    assert_shape(&doc, "RevokedApplication", &revoked);

    // The heartbeat: documented and answered alike.
    let email = "ca@documented.test";
    let password = "a long enough passphrase 2026";
    let (status, _) = svc.post(
        "/v1/users",
        &admin,
        json!({ "email": email, "password": password, "role": "client_admin", "client_id": client }),
    );
    assert_eq!(status, 201);
    let client_admin = svc.token(email, password);
    let (status, device) = svc.post("/v1/devices", &client_admin, json!({ "serial": "SN-DOC-1", "model": "T1" }));
    assert_eq!(status, 201, "{device}");
    let path = format!("/v1/devices/{}/heartbeat", device["id"]);
    let (status, beat) =
        svc.post(&path, &key, json!({ "firmware_version": "1.0.0", "diagnostics": { "battery": 90 } }));
    let documented = operation(&doc, "POST", "/v1/devices/{id}/heartbeat")["responses"].as_object().unwrap();
    assert!(documented.contains_key(&status.to_string()), "answered {status}: {beat}; documented {documented:?}");
}

/// The answers typed in issue 16's second part are what their schemas say: clients,
/// users and their sessions, devices, heartbeats, groups, rollouts and both reports.
#[test]
fn answers_of_every_resource_match_their_schemas() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::start(dir.path(), true);
    let doc = document(&svc);
    let admin = svc.token(ADMIN_EMAIL, ADMIN_PASSWORD);
    let (client, key) = svc.client_with_key(&admin, "typed");
    let (_, got) = svc.request("GET", &format!("/v1/clients/{client}"), Some(&admin), None);
    assert_shape(&doc, "Client", &got);
    for field in ["mfa_required", "time_zone", "settlement_cutover", "allowed_currencies"] {
        assert!(got.as_object().unwrap().contains_key(field), "{field}: {got}");
    }
    let (status, changed) = svc.request(
        "PATCH",
        &format!("/v1/clients/{client}"),
        Some(&admin),
        Some(r#"{"time_zone": "+02:00", "allowed_currencies": ["USD", "EUR"]}"#),
    );
    assert_eq!(status, 200, "{changed}");
    assert_shape(&doc, "Client", &changed);
    assert_eq!(
        (changed["time_zone"].as_str(), changed["allowed_currencies"].clone()),
        (Some("+02:00"), json!(["USD", "EUR"]))
    );
    let (_, clients) = svc.request("GET", "/v1/clients", Some(&admin), None);
    assert_shape(&doc, "ClientList", &clients);
    let listed = &clients["data"][0];
    assert_shape(&doc, "Client", listed);
    assert!(listed["user_count"].is_i64() && listed["volume"].is_array(), "the platform's view: {listed}");
    let (_, own) = svc.request("GET", "/v1/clients", Some(&key), None);
    assert!(own["data"][0].get("user_count").is_none(), "only platform admins see counts: {own}");

    // Users: created, listed, changed, and through their lifecycle.
    let (email, password) = ("ca@typed.test", "a long enough passphrase 2026");
    let (status, created) = svc.post(
        "/v1/users",
        &admin,
        json!({ "email": email, "password": password, "role": "client_admin", "client_id": client }),
    );
    assert_eq!(status, 201, "{created}");
    assert_shape(&doc, "UserIdentity", &created);
    assert_eq!((created["role"].as_str(), created["client_id"].as_i64()), (Some("client_admin"), Some(client)));
    let (status, operator) = svc.post(
        "/v1/users",
        &admin,
        json!({ "email": "op@typed.test", "password": password, "role": "operator", "client_id": client }),
    );
    assert_eq!(status, 201, "{operator}");
    let user = format!("/v1/users/{}", operator["id"]);
    let (_, users) = svc.request("GET", "/v1/users", Some(&admin), None);
    assert_shape(&doc, "UserList", &users);
    users["data"].as_array().unwrap().iter().for_each(|u| assert_shape(&doc, "User", u));
    let (status, viewer) = svc.request("PATCH", &user, Some(&admin), Some(r#"{"role": "viewer"}"#));
    assert_eq!(status, 200, "{viewer}");
    assert_shape(&doc, "User", &viewer);
    assert_eq!(viewer["role"], "viewer");
    let _ = svc.token("op@typed.test", password);
    let (_, sessions) = svc.request("GET", &format!("{user}/sessions"), Some(&admin), None);
    assert_shape(&doc, "UserSessionList", &sessions);
    let session = sessions["data"][0].clone();
    assert_shape(&doc, "UserSession", &session);
    let (status, ended) =
        svc.request("DELETE", &format!("{user}/sessions/{}", session["id"].as_str().unwrap()), Some(&admin), None);
    assert_eq!(status, 200, "{ended}");
    assert_shape(&doc, "User", &ended);
    for action in ["deactivate", "reactivate", "unlock", "mfa/reset"] {
        let (status, answer) = svc.request("POST", &format!("{user}/{action}"), Some(&admin), None);
        assert_eq!(status, 200, "{action}: {answer}");
        assert_shape(&doc, "User", &answer);
    }
    let (status, answer) = svc.request("DELETE", &format!("{user}/sessions"), Some(&admin), None);
    assert_eq!(status, 200, "{answer}");
    assert_shape(&doc, "User", &answer);

    // Devices, groups, heartbeats, rollouts.
    let client_admin = svc.token(email, password);
    let (status, device) = svc.post("/v1/devices", &client_admin, json!({ "serial": "SN-TYPED-1", "model": "T1" }));
    assert_eq!(status, 201, "{device}");
    assert_shape(&doc, "Device", &device);
    let (status, group) =
        svc.post("/v1/device-groups", &client_admin, json!({ "name": "front", "config": { "tip": true } }));
    assert_eq!(status, 201, "{group}");
    assert_shape(&doc, "DeviceGroup", &group);
    let (status, moved) = svc.request(
        "PUT",
        &format!("/v1/devices/{}/group", device["id"]),
        Some(&client_admin),
        Some(&json!({ "group_id": group["id"] }).to_string()),
    );
    assert_eq!(status, 200, "{moved}");
    assert_shape(&doc, "Device", &moved);
    let (status, rollout) =
        svc.post(&format!("/v1/device-groups/{}/firmware", group["id"]), &client_admin, json!({ "version": "2.0" }));
    assert_eq!(status, 201, "{rollout}");
    assert_shape(&doc, "Rollout", &rollout);
    assert_shape(&doc, "RolloutProgress", &rollout["progress"]);
    assert_shape(&doc, "RolloutDevice", &rollout["devices"][0]);
    let (status, beat) = svc.post(
        &format!("/v1/devices/{}/heartbeat", device["id"]),
        &key,
        json!({ "firmware_version": "2.0", "diagnostics": { "battery": 80 } }),
    );
    assert_eq!(status, 200, "{beat}");
    assert_shape(&doc, "HeartbeatReply", &beat);
    assert_shape(&doc, "Device", &beat["device"]);
    assert_eq!(beat["config"], json!({ "tip": true }));
    for (path, list, item) in [
        ("/v1/devices".to_string(), "DeviceList", "Device"),
        (format!("/v1/devices/{}/diagnostics", device["id"]), "HeartbeatList", "HeartbeatRecord"),
        ("/v1/device-groups".to_string(), "DeviceGroupList", "DeviceGroup"),
        (format!("/v1/device-groups/{}/rollouts", group["id"]), "RolloutList", "Rollout"),
    ] {
        let (status, page) = svc.request("GET", &path, Some(&key), None);
        assert_eq!(status, 200, "{path}: {page}");
        assert_shape(&doc, list, &page);
        assert!(!page["data"].as_array().unwrap().is_empty(), "{path}");
        page["data"].as_array().unwrap().iter().for_each(|v| assert_shape(&doc, item, v));
    }
    let (_, one) = svc.request("GET", &format!("/v1/rollouts/{}", rollout["id"]), Some(&key), None);
    assert_shape(&doc, "Rollout", &one);
    assert_eq!(one["status"], "completed", "the device reported the version: {one}");
    let (status, renamed) = svc.request(
        "PATCH",
        &format!("/v1/device-groups/{}", group["id"]),
        Some(&client_admin),
        Some(r#"{"name": "back"}"#),
    );
    assert_eq!(status, 200, "{renamed}");
    assert_shape(&doc, "DeviceGroup", &renamed);
    assert_shape(&doc, "Rollout", &renamed["latest_rollout"]);

    // Reports: the streamed JSON is a TransactionReport, its groups their components.
    let (status, _) = svc.post(
        "/v1/transactions",
        &key,
        json!({ "kind": "payment", "amount": "3.00", "currency": "USD", "device_id": device["id"] }),
    );
    assert_eq!(status, 201);
    let (status, report) = svc.request("GET", "/v1/reports/transactions", Some(&key), None);
    assert_eq!(status, 200, "{report}");
    assert_shape(&doc, "TransactionReport", &report);
    assert_shape(&doc, "ReportTotals", &report["totals"]);
    assert_shape(&doc, "Transaction", &report["rows"][0]);
    assert_shape(&doc, "ReportSums", &report["totals"]["by_currency"][0]);
    for (group, name) in [
        ("by_day", "DayTotals"),
        ("by_kind", "KindTotals"),
        ("by_status", "StatusTotals"),
        ("by_device", "DeviceTotals"),
    ] {
        assert_shape(&doc, name, &report["totals"][group][0]);
    }
    assert_eq!(report["totals"]["by_device"][0]["device_id"], device["id"]);
    let (_, totals_only) = svc.request("GET", "/v1/reports/transactions?rows=false", Some(&key), None);
    assert!(totals_only["rows"].is_null(), "{totals_only}");
    let (status, activity) = svc.request("GET", "/v1/reports/activity", Some(&client_admin), None);
    assert_eq!(status, 200, "{activity}");
    assert_shape(&doc, "ActivityReport", &activity);
    activity["rows"].as_array().unwrap().iter().for_each(|r| assert_shape(&doc, "ActivityRow", r));
    assert_shape(&doc, "ActorCount", &activity["by_actor"][0]);
    assert_shape(&doc, "ActionCount", &activity["by_action"][0]);
}

/// Every operation lists the error codes it can answer: 401 and 403 where credentials
/// are needed, 404 where the path names an object, 400 where it reads a body or a
/// query, 415 for a body, 409 with `Idempotency-Key`, 422 where the ledger refuses;
/// each as the shared error body with its codes named.
#[test]
fn every_operation_lists_its_errors() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::start(dir.path(), true);
    let doc = document(&svc);
    let codes = |op: &Value, status: &str| -> Vec<String> {
        let response = &op["responses"][status];
        if response.is_null() {
            return Vec::new();
        }
        assert_eq!(response["content"]["application/json"]["schema"]["$ref"], "#/components/schemas/Error");
        let description = response["description"].as_str().unwrap();
        let list = description.split_once("error code ").map_or("", |(_, codes)| codes);
        list.split(", ").filter(|c| !c.is_empty()).map(String::from).collect()
    };
    for (method, path, op) in operations(&doc) {
        let name = format!("{method} {path}");
        let public = op["security"].as_array().is_none_or(|s| s.is_empty());
        if !public {
            assert!(codes(&op, "401").contains(&"missing_credentials".to_string()), "{name}: 401");
            assert!(codes(&op, "403").contains(&"forbidden".to_string()), "{name}: 403");
        }
        let params = op["parameters"].as_array().cloned().unwrap_or_default();
        if params.iter().any(|p| p["in"] == "path") {
            assert!(codes(&op, "404").contains(&"not_found".to_string()), "{name}: 404");
        }
        if params.iter().any(|p| p["in"] == "query") {
            assert!(codes(&op, "400").contains(&"invalid_query".to_string()), "{name}: 400");
        }
        if op["requestBody"].is_object() {
            assert!(codes(&op, "400").contains(&"invalid_json".to_string()), "{name}: 400");
            assert!(codes(&op, "415").contains(&"unsupported_media_type".to_string()), "{name}: 415");
        }
        if params.iter().any(|p| p["name"] == "Idempotency-Key") {
            assert!(codes(&op, "409").contains(&"idempotency_conflict".to_string()), "{name}: 409");
        }
        assert!(op["responses"]["default"].is_object(), "{name}: default");
    }
    let refusals = |method: &str, path: &str| codes(operation(&doc, method, path), "422");
    assert!(refusals("POST", "/v1/transactions/{id}/refunds").contains(&"refund_exceeds_captured".to_string()));
    assert!(refusals("POST", "/v1/transactions/{id}/capture").contains(&"capture_exceeds_authorized".to_string()));
    assert!(refusals("POST", "/v1/transactions/{id}/void").contains(&"payment_not_voidable".to_string()));
    assert!(refusals("POST", "/v1/device-groups/{id}/firmware").contains(&"group_empty".to_string()));
    let login = codes(operation(&doc, "POST", "/v1/auth/login"), "401");
    for code in ["invalid_credentials", "mfa_required", "invalid_otp"] {
        assert!(login.contains(&code.to_string()), "login: {code} in {login:?}");
    }
    assert!(codes(operation(&doc, "POST", "/v1/auth/login"), "429").contains(&"too_many_login_attempts".to_string()));
    assert!(codes(operation(&doc, "POST", "/v1/devices"), "409").contains(&"serial_taken".to_string()));
    assert!(codes(operation(&doc, "PATCH", "/v1/tickets/{id}"), "409").contains(&"illegal_transition".to_string()));

    // What the service answers is among what the operation lists.
    let admin = svc.token(ADMIN_EMAIL, ADMIN_PASSWORD);
    let (_, key) = svc.client_with_key(&admin, "errors");
    let (status, payment) =
        svc.post("/v1/transactions", &key, json!({ "kind": "payment", "amount": "1.00", "currency": "USD" }));
    assert_eq!(status, 201);
    let refunds = format!("/v1/transactions/{}/refunds", payment["id"].as_str().unwrap());
    let (status, refused) = svc.post(&refunds, &key, json!({ "amount": "5.00" }));
    assert_eq!(status, 422, "{refused}");
    assert!(refusals("POST", "/v1/transactions/{id}/refunds").contains(&common::error_code(&refused)));
    let (status, missing) = svc.request("GET", "/v1/devices/999", Some(&key), None);
    assert_eq!(status, 404);
    assert!(codes(operation(&doc, "GET", "/v1/devices/{id}"), "404").contains(&common::error_code(&missing)));
}

/// Links let a client (and Schemathesis's stateful phase) walk from what a request
/// created to what can be done with it; each names an operation of the document, with
/// every path parameter of that operation.
#[test]
fn created_objects_link_to_their_operations() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::start(dir.path(), true);
    let doc = document(&svc);
    let mut ids = BTreeSet::new();
    for (method, path, op) in operations(&doc) {
        ids.insert(op["operationId"].as_str().unwrap_or_else(|| panic!("{method} {path}")).to_string());
    }
    let mut targets = std::collections::BTreeMap::new();
    for (method, path, op) in operations(&doc) {
        for (status, response) in op["responses"].as_object().unwrap() {
            for (name, link) in response["links"].as_object().into_iter().flatten() {
                let target = link["operationId"].as_str().unwrap();
                assert!(ids.contains(target), "{method} {path} {status} {name}: no operation {target}");
                let (target_method, target_path) = target.split_once(' ').unwrap();
                let target_op = operation(&doc, target_method, target_path);
                for p in target_op["parameters"].as_array().into_iter().flatten().filter(|p| p["in"] == "path") {
                    let given = &link["parameters"][p["name"].as_str().unwrap()];
                    assert!(given.as_str().is_some_and(|e| e.starts_with("$response.body#/")), "{name}: {p}");
                }
                targets.entry(format!("{method} {path}")).or_insert_with(BTreeSet::new).insert(target.to_string());
            }
        }
    }
    let expect = |from: &str, to: &[&str]| {
        let linked = targets.get(from).unwrap_or_else(|| panic!("{from} has no links"));
        for target in to {
            assert!(linked.contains(*target), "{from} does not link to {target}: {linked:?}");
        }
    };
    expect(
        "POST /v1/transactions",
        &[
            "get /v1/transactions/{id}",
            "post /v1/transactions/{id}/capture",
            "post /v1/transactions/{id}/void",
            "post /v1/transactions/{id}/refunds",
            "get /v1/transactions/{id}/history",
        ],
    );
    expect("POST /v1/batches/close", &["get /v1/batches/{id}", "get /v1/batches/{id}/reconciliation"]);
    expect("POST /v1/tickets", &["get /v1/tickets/{id}", "patch /v1/tickets/{id}", "post /v1/tickets/{id}/comments"]);
    expect("POST /v1/devices", &["get /v1/devices/{id}", "post /v1/devices/{id}/heartbeat"]);
    expect("POST /v1/device-groups", &["get /v1/device-groups/{id}", "post /v1/device-groups/{id}/firmware"]);
    expect("POST /v1/device-groups/{id}/firmware", &["get /v1/rollouts/{id}"]);
    expect("POST /v1/clients", &["get /v1/clients/{id}"]);
    expect("POST /v1/clients/{id}/applications", &["delete /v1/clients/{id}/applications/{app_id}"]);
}

/// Webhook endpoints, their delivery log and events (issue 17) are what their schemas
/// say.
#[test]
fn webhook_and_event_answers_match_their_schemas() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::start(dir.path(), true);
    let doc = document(&svc);
    let admin = svc.token(ADMIN_EMAIL, ADMIN_PASSWORD);
    let (client, key) = svc.client_with_key(&admin, "hooks");
    let (email, password) = ("hooks-admin@doc.test", "a long enough password");
    let (status, _) = svc.post(
        "/v1/users",
        &admin,
        json!({ "email": email, "password": password, "role": "client_admin", "client_id": client }),
    );
    assert_eq!(status, 201);
    let client_admin = svc.token(email, password);
    let (status, endpoint) = svc.post(
        "/v1/webhook-endpoints",
        &client_admin,
        json!({ "url": "https://hooks.example.invalid/doc", "events": ["payment.created"] }),
    );
    assert_eq!(status, 201, "{endpoint}");
    assert_shape(&doc, "WebhookEndpoint", &endpoint);
    let (status, _) =
        svc.post("/v1/transactions", &key, json!({ "kind": "payment", "amount": "1.00", "currency": "USD" }));
    assert_eq!(status, 201);
    let id = endpoint["id"].as_i64().unwrap();
    // The host does not resolve: the first attempt fails, with an error and no status.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let log = loop {
        let (_, log) = svc.request("GET", &format!("/v1/webhook-endpoints/{id}/deliveries"), Some(&client_admin), None);
        if log["data"][0]["attempts"].as_array().is_some_and(|a| !a.is_empty()) {
            break log;
        }
        assert!(std::time::Instant::now() < deadline, "no attempt: {log}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert_shape(&doc, "WebhookDeliveryList", &log);
    assert_shape(&doc, "WebhookDelivery", &log["data"][0]);
    assert_shape(&doc, "DeliveryAttempt", &log["data"][0]["attempts"][0]);
    let (status, again) = svc.post(
        &format!("/v1/webhook-endpoints/{id}/deliveries/{}/redeliver", log["data"][0]["id"]),
        &client_admin,
        json!({}),
    );
    assert_eq!(status, 201, "{again}");
    assert_shape(&doc, "WebhookDelivery", &again);
    let (_, list) = svc.request("GET", "/v1/webhook-endpoints", Some(&client_admin), None);
    assert_shape(&doc, "WebhookEndpointList", &list);
    assert_shape(&doc, "WebhookEndpoint", &list["data"][0]);
    let (status, rotated) = svc.post(&format!("/v1/webhook-endpoints/{id}/rotate-secret"), &client_admin, json!({}));
    let documented =
        operation(&doc, "POST", "/v1/webhook-endpoints/{id}/rotate-secret")["responses"].as_object().unwrap();
    assert!(documented.contains_key(&status.to_string()), "answered {status}: {rotated}");
    assert_shape(&doc, "WebhookEndpoint", &rotated);
    let (_, events) = svc.request("GET", "/v1/events", Some(&key), None);
    assert_shape(&doc, "EventList", &events);
    assert_shape(&doc, "Event", &events["data"][0]);
    assert_shape(&doc, "EventData", &events["data"][0]["data"]);
    let (status, disabled) = svc.request("DELETE", &format!("/v1/webhook-endpoints/{id}"), Some(&client_admin), None);
    assert_eq!(status, 200);
    assert_shape(&doc, "WebhookEndpoint", &disabled);
}
