//! Over real HTTP: clients, users and roles, client scoping, and application API keys
//! (shown once, stored as a hash, revocable).
#![allow(clippy::unwrap_used)]

mod common;

use common::{ADMIN_EMAIL, ADMIN_PASSWORD, Service, error_code};
use serde_json::json;

const PASSWORD: &str = "twelve chars at least";

/// An admin token and two clients, A and B, each with a client_admin.
fn setup(svc: &Service) -> (String, i64, i64, String, String) {
    let admin = svc.token(ADMIN_EMAIL, ADMIN_PASSWORD);
    let (status, a) = svc.post("/v1/clients", &admin, json!({ "name": "Client A" }));
    assert_eq!(status, 201, "{a}");
    let (_, b) = svc.post("/v1/clients", &admin, json!({ "name": "Client B" }));
    let (a, b) = (a["id"].as_i64().unwrap(), b["id"].as_i64().unwrap());
    for (email, client) in [("a-admin@example.test", a), ("b-admin@example.test", b)] {
        let (status, user) = svc.post(
            "/v1/users",
            &admin,
            json!({ "email": email, "password": PASSWORD, "role": "client_admin", "client_id": client }),
        );
        assert_eq!((status, user["client_id"].as_i64()), (201, Some(client)), "{user}");
    }
    let a_admin = svc.token("a-admin@example.test", PASSWORD);
    let b_admin = svc.token("b-admin@example.test", PASSWORD);
    (admin, a, b, a_admin, b_admin)
}

#[test]
fn roles_and_client_scoping_for_users_and_clients() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::start(dir.path(), true);
    let (admin, a, b, a_admin, _) = setup(&svc);

    // A client_admin creates users of its own client only, and never admins.
    let (status, op) =
        svc.post("/v1/users", &a_admin, json!({ "email": "op@a.test", "password": PASSWORD, "role": "operator" }));
    assert_eq!((status, op["client_id"].as_i64()), (201, Some(a)), "the caller's client is the default");
    let cases = [
        (json!({ "email": "x@b.test", "password": PASSWORD, "role": "viewer", "client_id": b }), 404, "not_found"),
        (json!({ "email": "x@a.test", "password": PASSWORD, "role": "admin" }), 403, "forbidden"),
        (json!({ "email": "op@a.test", "password": PASSWORD, "role": "viewer" }), 409, "email_taken"),
        (json!({ "email": "x@a.test", "password": "short", "role": "viewer" }), 400, "weak_password"),
        (json!({ "email": "not-an-email", "password": PASSWORD, "role": "viewer" }), 400, "invalid_email"),
        (json!({ "email": "x@a.test", "password": PASSWORD, "role": "owner" }), 400, "invalid_role"),
    ];
    for (body, status, code) in cases {
        let (got, reply) = svc.post("/v1/users", &a_admin, body.clone());
        assert_eq!((got, error_code(&reply).as_str()), (status, code), "{body}");
    }
    // Operators and viewers create no users; only admins create clients.
    let op_token = svc.token("op@a.test", PASSWORD);
    let (status, reply) =
        svc.post("/v1/users", &op_token, json!({ "email": "y@a.test", "password": PASSWORD, "role": "viewer" }));
    assert_eq!((status, error_code(&reply).as_str()), (403, "forbidden"));
    let (status, _) = svc.post("/v1/clients", &a_admin, json!({ "name": "Mine" }));
    assert_eq!(status, 403);
    // The admin's own rules: an admin has no client, anyone else needs one.
    let (status, _) =
        svc.post("/v1/users", &admin, json!({ "email": "z@x.test", "password": PASSWORD, "role": "viewer" }));
    assert_eq!(status, 400);
    let (status, _) = svc.post(
        "/v1/users",
        &admin,
        json!({ "email": "z@x.test", "password": PASSWORD, "role": "viewer", "client_id": 999 }),
    );
    assert_eq!(status, 404);

    // Listing and fetching clients is scoped; another client's is 404.
    let (_, all) = svc.request("GET", "/v1/clients", Some(&admin), None);
    assert_eq!(all["data"].as_array().unwrap().len(), 2);
    let (_, own) = svc.request("GET", "/v1/clients", Some(&a_admin), None);
    assert_eq!(own["data"].as_array().unwrap().iter().map(|c| c["id"].as_i64().unwrap()).collect::<Vec<_>>(), vec![a]);
    assert_eq!(svc.request("GET", &format!("/v1/clients/{a}"), Some(&a_admin), None).0, 200);
    let (status, reply) = svc.request("GET", &format!("/v1/clients/{b}"), Some(&a_admin), None);
    assert_eq!((status, error_code(&reply).as_str()), (404, "not_found"));
    let (status, reply) = svc.request("GET", "/v1/clients/abc", Some(&admin), None);
    assert_eq!((status, error_code(&reply).as_str()), (400, "invalid_path"));
}

#[test]
fn api_keys_are_shown_once_stored_hashed_and_revocable() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::start(dir.path(), true);
    let (_, a, b, a_admin, b_admin) = setup(&svc);
    let (status, app) = svc.post(&format!("/v1/clients/{a}/applications"), &a_admin, json!({ "name": "POS backend" }));
    assert_eq!(status, 201, "{app}");
    let key = app["api_key"].as_str().unwrap().to_string();
    assert!(key.starts_with("sk_") && key.len() == 67, "{key}");
    let app_id = app["id"].as_i64().unwrap();

    // The key acts for its client as an operator.
    let (status, me) = svc.request("GET", "/v1/users/me", Some(&key), None);
    assert_eq!(
        (status, me["object"].as_str(), me["role"].as_str(), me["client_id"].as_i64()),
        (200, Some("application"), Some("operator"), Some(a))
    );
    // ... but cannot manage users or applications.
    let (status, _) =
        svc.post("/v1/users", &key, json!({ "email": "k@a.test", "password": PASSWORD, "role": "viewer" }));
    assert_eq!(status, 403);
    let (status, _) = svc.post(&format!("/v1/clients/{a}/applications"), &key, json!({ "name": "x" }));
    assert_eq!(status, 403);
    // Another client's admin sees neither the client nor its applications.
    let (status, _) = svc.post(&format!("/v1/clients/{a}/applications"), &b_admin, json!({ "name": "x" }));
    assert_eq!(status, 404);
    let (status, _) = svc.request("DELETE", &format!("/v1/clients/{a}/applications/{app_id}"), Some(&b_admin), None);
    assert_eq!(status, 404);
    let (status, _) = svc.request("DELETE", &format!("/v1/clients/{b}/applications/{app_id}"), Some(&b_admin), None);
    assert_eq!(status, 404, "an application is found only under its own client");

    // Stored only as a hash: the key is nowhere in the database file.
    let db = common::metadata_bytes(dir.path());
    assert!(!db.windows(key.len() - 3).any(|w| w == &key.as_bytes()[3..]), "the raw key is stored");

    // A near-miss key (same lookup prefix, different secret) is refused.
    let mut forged = key.clone();
    forged.replace_range(66..67, if key.ends_with('0') { "1" } else { "0" });
    let (status, reply) = svc.request("GET", "/v1/users/me", Some(&forged), None);
    assert_eq!((status, error_code(&reply).as_str()), (401, "invalid_api_key"));

    // Revoked: refused from then on; revoking again is harmless.
    let (status, _) = svc.request("DELETE", &format!("/v1/clients/{a}/applications/{app_id}"), Some(&a_admin), None);
    assert_eq!(status, 200);
    let (status, reply) = svc.request("GET", "/v1/users/me", Some(&key), None);
    assert_eq!((status, error_code(&reply).as_str()), (401, "invalid_api_key"));
    assert_eq!(svc.request("DELETE", &format!("/v1/clients/{a}/applications/{app_id}"), Some(&a_admin), None).0, 200);
    assert_eq!(svc.request("DELETE", &format!("/v1/clients/{a}/applications/9999"), Some(&a_admin), None).0, 404);
}

#[test]
fn users_are_listed_and_their_roles_changed_within_the_client() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::start(dir.path(), true);
    let (admin, a, b, a_admin, b_admin) = setup(&svc);
    let (_, op) =
        svc.post("/v1/users", &a_admin, json!({ "email": "op@a.test", "password": PASSWORD, "role": "operator" }));
    let op_id = op["id"].as_i64().unwrap();
    let op_token = svc.token("op@a.test", PASSWORD);
    let emails = |token: &str, query: &str| -> Vec<String> {
        let (status, page) = svc.request("GET", &format!("/v1/users{query}"), Some(token), None);
        assert_eq!(status, 200, "{page}");
        page["data"].as_array().unwrap().iter().map(|u| u["email"].as_str().unwrap().to_string()).collect()
    };
    assert_eq!(emails(&a_admin, ""), ["a-admin@example.test", "op@a.test"]);
    assert_eq!(emails(&admin, "").len(), 4, "the platform admin sees everyone");
    assert_eq!(emails(&admin, &format!("?client_id={b}")), ["b-admin@example.test"]);
    assert_eq!(emails(&admin, "?limit=1").len(), 1);
    let (status, _) = svc.request("GET", &format!("/v1/users?client_id={b}"), Some(&a_admin), None);
    assert_eq!(status, 404, "another client's users are not found");
    assert_eq!(svc.request("GET", "/v1/users", Some(&op_token), None).0, 403);
    let (_, page) = svc.request("GET", "/v1/users", Some(&a_admin), None);
    let listed = page.to_string();
    assert!(!listed.contains("argon2") && !listed.contains("mfa_secret"), "{listed}");

    // A role change takes effect on the user's next request, with its session.
    let patch = |token: &str, id: i64, role: &str| {
        svc.request("PATCH", &format!("/v1/users/{id}"), Some(token), Some(&json!({ "role": role }).to_string()))
    };
    let (status, changed) = patch(&a_admin, op_id, "viewer");
    assert_eq!((status, changed["role"].as_str()), (200, Some("viewer")), "{changed}");
    let (status, reply) = svc.post("/v1/tickets", &op_token, json!({ "subject": "s", "body": "b" }));
    assert_eq!((status, error_code(&reply).as_str()), (403, "forbidden"), "a viewer now");
    let (status, _) = patch(&admin, op_id, "client_admin");
    assert_eq!(status, 200, "a platform admin changes anyone's");
    assert_eq!(svc.request("GET", "/v1/users", Some(&op_token), None).0, 200, "a client_admin now");

    let a_admin_id = {
        let (_, me) = svc.request("GET", "/v1/users/me", Some(&a_admin), None);
        me["id"].as_i64().unwrap()
    };
    let admin_id = {
        let (_, me) = svc.request("GET", "/v1/users/me", Some(&admin), None);
        me["id"].as_i64().unwrap()
    };
    for (token, id, role, status, code) in [
        (&a_admin, a_admin_id, "viewer", 409, "own_role"),
        (&b_admin, op_id, "viewer", 404, "not_found"),
        (&a_admin, admin_id, "viewer", 404, "not_found"),
        (&admin, admin_id, "viewer", 409, "own_role"),
        (&a_admin, op_id, "admin", 400, "invalid_role"),
        (&a_admin, 99_999, "viewer", 404, "not_found"),
    ] {
        let (got, reply) = patch(token, id, role);
        assert_eq!((got, error_code(&reply).as_str()), (status, code), "{id} -> {role}");
    }
    let (status, second_admin) =
        svc.post("/v1/users", &admin, json!({ "email": "root2@x.test", "password": PASSWORD, "role": "admin" }));
    assert_eq!(status, 201);
    let (status, reply) = patch(&admin, second_admin["id"].as_i64().unwrap(), "viewer");
    assert_eq!((status, error_code(&reply).as_str()), (409, "platform_admin_role"));
    let (_, user) = svc.request("GET", &format!("/v1/users?client_id={a}"), Some(&admin), None);
    assert_eq!(user["data"][1]["role"].as_str(), Some("client_admin"), "nothing else changed");
}

#[test]
fn applications_are_listed_without_their_keys() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::start(dir.path(), true);
    let (admin, a, _, a_admin, b_admin) = setup(&svc);
    let (_, first) = svc.post(&format!("/v1/clients/{a}/applications"), &a_admin, json!({ "name": "till" }));
    let (_, second) = svc.post(&format!("/v1/clients/{a}/applications"), &admin, json!({ "name": "web shop" }));
    let key = first["api_key"].as_str().unwrap();
    svc.request("DELETE", &format!("/v1/clients/{a}/applications/{}", second["id"]), Some(&a_admin), None);

    let (status, list) = svc.request("GET", &format!("/v1/clients/{a}/applications"), Some(&a_admin), None);
    assert_eq!(status, 200, "{list}");
    let apps = list["data"].as_array().unwrap();
    assert_eq!(apps.len(), 2);
    assert_eq!((apps[0]["name"].as_str(), apps[0]["revoked_at"].is_null()), (Some("till"), true));
    assert_eq!((apps[1]["name"].as_str(), apps[1]["revoked_at"].is_i64()), (Some("web shop"), true));
    assert_eq!(apps[0]["key_hint"].as_str(), Some(&key[..11]), "sk_ and 8 characters to tell keys apart");
    assert!(!list.to_string().contains(&key[11..]), "the key itself is never shown again");
    assert_eq!(svc.request("GET", &format!("/v1/clients/{a}/applications"), Some(&admin), None).0, 200);
    assert_eq!(svc.request("GET", &format!("/v1/clients/{a}/applications"), Some(&b_admin), None).0, 404);
    assert_eq!(svc.request("GET", &format!("/v1/clients/{a}/applications"), Some(key), None).0, 403);
}
