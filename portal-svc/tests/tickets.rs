//! Over real HTTP: support tickets, their state machine (illegal transitions are 409),
//! assignment within the client, comments, and isolation between clients.
#![allow(clippy::unwrap_used)]

mod common;

use common::{ADMIN_EMAIL, ADMIN_PASSWORD, Service, error_code};
use serde_json::json;

#[test]
fn tickets_follow_their_state_machine_and_stay_within_the_client() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::start(dir.path(), true);
    let admin = svc.token(ADMIN_EMAIL, ADMIN_PASSWORD);
    let (a_id, a) = svc.client_with_key(&admin, "A");
    let (b_id, b) = svc.client_with_key(&admin, "B");
    let (_, agent) = svc.post(
        "/v1/users",
        &admin,
        json!({ "email": "agent@a.test", "password": "twelve chars at least", "role": "operator", "client_id": a_id }),
    );
    let (_, outsider) = svc.post(
        "/v1/users",
        &admin,
        json!({ "email": "agent@b.test", "password": "twelve chars at least", "role": "operator", "client_id": b_id }),
    );
    let (_, viewer) = svc.post(
        "/v1/users",
        &admin,
        json!({ "email": "viewer@a.test", "password": "twelve chars at least", "role": "viewer", "client_id": a_id }),
    );
    assert!(viewer["id"].is_i64());

    let (status, ticket) = svc.post(
        "/v1/tickets",
        &a,
        json!({ "subject": "Terminal 3 offline", "body": "Since 9am.", "priority": "high" }),
    );
    assert_eq!(
        (status, ticket["status"].as_str(), ticket["priority"].as_str()),
        (201, Some("open"), Some("high")),
        "{ticket}"
    );
    let id = ticket["id"].as_i64().unwrap();
    let path = format!("/v1/tickets/{id}");
    let patch = |body: serde_json::Value| svc.request("PATCH", &path, Some(&a), Some(&body.to_string()));

    // Assignment: a user of the same client; another client's user is not found.
    let (status, t) = patch(json!({ "assignee_id": agent["id"], "status": "in_progress" }));
    assert_eq!(
        (status, t["assignee_id"].clone(), t["status"].as_str()),
        (200, agent["id"].clone(), Some("in_progress"))
    );
    assert_eq!(t["assignee"], json!({ "id": agent["id"], "email": "agent@a.test" }), "the assignee by name");
    let (_, listed) = svc.request("GET", "/v1/tickets", Some(&a), None);
    assert_eq!(listed["data"][0]["assignee"]["email"], "agent@a.test");
    let (status, reply) = patch(json!({ "assignee_id": outsider["id"] }));
    assert_eq!((status, reply["error"]["param"].as_str()), (404, Some("assignee_id")));
    let (_, unchanged) = svc.request("GET", &path, Some(&a), None);
    assert_eq!(unchanged["assignee"]["email"], "agent@a.test", "a refused assignment changes nothing");
    // Who may be assigned: the client's own active users only, by email.
    let (status, candidates) = svc.request("GET", "/v1/tickets/assignees", Some(&a), None);
    assert_eq!(status, 200, "{candidates}");
    assert_eq!(
        candidates["data"],
        json!([{ "id": agent["id"], "email": "agent@a.test" }, { "id": viewer["id"], "email": "viewer@a.test" }])
    );
    let (_, others) = svc.request("GET", "/v1/tickets/assignees", Some(&b), None);
    assert_eq!(others["data"], json!([{ "id": outsider["id"], "email": "agent@b.test" }]));
    assert_eq!(svc.request("POST", &format!("/v1/users/{}/deactivate", viewer["id"]), Some(&admin), None).0, 200);
    let (_, candidates) = svc.request("GET", "/v1/tickets/assignees", Some(&a), None);
    assert_eq!(candidates["data"].as_array().unwrap().len(), 1, "a deactivated user is not offered");
    assert_eq!(svc.request("POST", &format!("/v1/users/{}/reactivate", viewer["id"]), Some(&admin), None).0, 200);
    let (status, t) = patch(json!({ "assignee_id": null }));
    assert_eq!((status, t["assignee_id"].clone()), (200, serde_json::Value::Null), "null unassigns");
    assert_eq!(t["assignee"], serde_json::Value::Null);

    // The state machine: in_progress cannot close; resolve, close, and then it is final.
    let (status, reply) = patch(json!({ "status": "closed" }));
    assert_eq!((status, error_code(&reply).as_str()), (409, "illegal_transition"));
    assert_eq!(patch(json!({ "status": "resolved" })).0, 200);
    assert_eq!(patch(json!({ "status": "closed" })).0, 200);
    for to in ["open", "in_progress", "resolved"] {
        let (status, reply) = patch(json!({ "status": to }));
        assert_eq!((status, error_code(&reply).as_str()), (409, "illegal_transition"), "closed -> {to}");
    }
    let (status, reply) = patch(json!({ "status": "done" }));
    assert_eq!((status, error_code(&reply).as_str()), (400, "invalid_status"));

    // Comments, and the ticket with them.
    let (status, c) = svc.post(&format!("{path}/comments"), &a, json!({ "body": "Replaced the cable." }));
    assert_eq!(status, 201, "{c}");
    assert!(c["author"].as_str().unwrap().starts_with("application:"), "an API key's comments name its application");
    let (status, second) = svc.post(&format!("{path}/comments"), &a, json!({ "body": "Works now." }));
    assert_eq!(status, 201, "{second}");
    let (_, full) = svc.request("GET", &path, Some(&a), None);
    let comments = full["comments"].as_array().unwrap();
    assert_eq!(comments.len(), 2);
    // The answer names the comment, not the audit entry written with it (issue 15).
    assert_eq!((&comments[0]["id"], &comments[1]["id"]), (&c["id"], &second["id"]), "{full}");

    // Viewers read but do not write; another client sees nothing.
    let viewer_token = svc.token("viewer@a.test", "twelve chars at least");
    assert_eq!(svc.request("GET", &path, Some(&viewer_token), None).0, 200);
    assert_eq!(svc.post("/v1/tickets", &viewer_token, json!({ "subject": "s", "body": "b" })).0, 403);
    assert_eq!(svc.request("GET", &path, Some(&b), None).0, 404);
    assert_eq!(svc.request("PATCH", &path, Some(&b), Some(r#"{"status":"open"}"#)).0, 404);
    assert_eq!(svc.post(&format!("{path}/comments"), &b, json!({ "body": "x" })).0, 404);
    let (_, list) = svc.request("GET", "/v1/tickets", Some(&b), None);
    assert!(list["data"].as_array().unwrap().is_empty());

    // Bad input stores nothing.
    for body in [
        json!({ "subject": "", "body": "b" }),
        json!({ "subject": "s", "body": "b", "priority": "meh" }),
        json!({ "subject": "s" }),
    ] {
        assert_eq!(svc.post("/v1/tickets", &a, body.clone()).0, 400, "{body}");
    }
    let (_, list) = svc.request("GET", "/v1/tickets", Some(&a), None);
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
}

#[test]
fn ticket_lists_page_newest_first_and_filter_by_status() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::start(dir.path(), true);
    let admin = svc.token(ADMIN_EMAIL, ADMIN_PASSWORD);
    let (_, key) = svc.client_with_key(&admin, "A");
    let mut ids = Vec::new();
    for i in 0..7 {
        let (_, t) = svc.post("/v1/tickets", &key, json!({ "subject": format!("t{i}"), "body": "b" }));
        ids.push(t["id"].as_i64().unwrap());
    }
    let (status, _) =
        svc.request("PATCH", &format!("/v1/tickets/{}", ids[2]), Some(&key), Some(r#"{"status":"waiting"}"#));
    assert_eq!(status, 200);

    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let query = after.map_or(String::new(), |a: i64| format!("&starting_after={a}"));
        let (status, page) = svc.request("GET", &format!("/v1/tickets?limit=3{query}"), Some(&key), None);
        assert_eq!(status, 200, "{page}");
        let data = page["data"].as_array().unwrap();
        seen.extend(data.iter().map(|t| t["id"].as_i64().unwrap()));
        after = data.last().map(|t| t["id"].as_i64().unwrap());
        if !page["has_more"].as_bool().unwrap() {
            break;
        }
    }
    let newest_first: Vec<i64> = ids.iter().rev().copied().collect();
    assert_eq!(seen, newest_first, "every ticket once, newest first");
    let (_, waiting) = svc.request("GET", "/v1/tickets?status=waiting", Some(&key), None);
    let waiting: Vec<i64> = waiting["data"].as_array().unwrap().iter().map(|t| t["id"].as_i64().unwrap()).collect();
    assert_eq!(waiting, [ids[2]]);
    for bad in ["status=lost", "limit=0", "limit=abc", "starting_after=x"] {
        let (status, body) = svc.request("GET", &format!("/v1/tickets?{bad}"), Some(&key), None);
        assert_eq!(status, 400, "{bad}: {body}");
        error_code(&body);
    }
}
