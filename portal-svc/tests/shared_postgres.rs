//! Two portal-svc processes on one PostgreSQL database (`--database-url`) share their
//! metadata: a session, a user and an API key made through one work on the other, a
//! revocation on one holds on the other, and writes sent to both at once (tickets,
//! with their audit entries) all land once, in one audit chain that verifies from
//! either node; a node given another secret key is refused. Runs on a real PostgreSQL (`common::pg`) whatever the suite's backend.
#![allow(clippy::unwrap_used)]

mod common;

use common::{ADMIN_EMAIL, ADMIN_PASSWORD, Launch, Service, error_code, pg};
use serde_json::{Value, json};

const THREADS_PER_NODE: usize = 4;
const TICKETS_PER_THREAD: usize = 10;
const RACES: usize = 10;
const PASSWORD: &str = "another long and correct password";

fn node(dir: &std::path::Path, url: &str, key: &str) -> Service {
    let launch = Launch {
        args: vec!["--database-url".to_string(), url.to_string()],
        env: vec![("PORTAL_SECRET_KEY".to_string(), key.to_string())],
        ..Launch::default()
    };
    Service::start_with(dir, true, &launch)
}

fn audit_entries(svc: &Service, admin: &str) -> u64 {
    let (status, verdict) = svc.request("GET", "/v1/audit/verify", Some(admin), None);
    assert_eq!((status, verdict["ok"].as_bool(), verdict["first_bad_id"].clone()), (200, Some(true), Value::Null));
    verdict["entries"].as_u64().unwrap()
}

/// Every ticket id of the caller's client, paging through the list.
fn ticket_ids(svc: &Service, key: &str) -> Vec<i64> {
    let (mut ids, mut after) = (Vec::new(), None::<i64>);
    loop {
        let cursor = after.map(|id| format!("&starting_after={id}")).unwrap_or_default();
        let (status, page) = svc.request("GET", &format!("/v1/tickets?limit=100{cursor}"), Some(key), None);
        assert_eq!(status, 200, "{page}");
        let data = page["data"].as_array().unwrap();
        ids.extend(data.iter().map(|t| t["id"].as_i64().unwrap()));
        if !page["has_more"].as_bool().unwrap() {
            return ids;
        }
        after = data.last().and_then(|t| t["id"].as_i64());
    }
}

#[test]
fn two_nodes_on_one_database_share_users_keys_and_one_audit_chain() {
    let url = pg::server().database("shared_nodes");
    let secret = "11".repeat(32);
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = node(dir_a.path(), &url, &secret);
    let b = node(dir_b.path(), &url, &secret);
    assert!(
        !a.banner.iter().chain(&b.banner).any(|l| l.contains("created platform admin")),
        "the admin came from the environment"
    );

    // A session, a client and an API key made on A work on B.
    let admin_a = a.token(ADMIN_EMAIL, ADMIN_PASSWORD);
    let (status, me) = b.request("GET", "/v1/users/me", Some(&admin_a), None);
    assert_eq!((status, me["email"].as_str()), (200, Some(ADMIN_EMAIL)), "{me}");
    let (client, key) = a.client_with_key(&admin_a, "shared");
    let (status, me) = b.request("GET", "/v1/users/me", Some(&key), None);
    assert_eq!((status, me["client_id"].as_i64()), (200, Some(client)), "{me}");
    // A user created on B signs in on A.
    let (status, user) = b.post(
        "/v1/users",
        &admin_a,
        json!({ "email": "Ops@Shared.test", "password": PASSWORD, "role": "operator", "client_id": client }),
    );
    assert_eq!(status, 201, "{user}");
    let (status, _) = a.login("ops@shared.test", PASSWORD);
    assert_eq!(status, 200, "emails compare without case on PostgreSQL too");
    // The same email again, in other case, through the other node: taken.
    let (status, taken) = a.post(
        "/v1/users",
        &admin_a,
        json!({ "email": "OPS@shared.test", "password": PASSWORD, "role": "viewer", "client_id": client }),
    );
    assert_eq!(status, 409, "{taken}");

    // Read-then-insert across nodes: the same new email sent to both at once is created
    // once and refused once (409, as on one node; never a 500 from the UNIQUE index).
    for round in 0..RACES {
        let email = format!("race{round}@shared.test");
        let statuses: Vec<u16> = std::thread::scope(|scope| {
            let racers: Vec<_> = [&a, &b]
                .map(|svc| {
                    let (email, admin) = (&email, &admin_a);
                    scope.spawn(move || {
                        let body =
                            json!({ "email": email, "password": PASSWORD, "role": "viewer", "client_id": client });
                        svc.post("/v1/users", admin, body).0
                    })
                })
                .into_iter()
                .collect();
            racers.into_iter().map(|r| r.join().unwrap()).collect()
        });
        let mut sorted = statuses.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, [201, 409], "round {round}: {statuses:?}");
    }

    // Writes sent to both nodes at once: each ticket lands once, with its audit entry,
    // and the chain stays one valid chain (writers on both serialize on the lock).
    let before = audit_entries(&a, &admin_a);
    let created: Vec<i64> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..THREADS_PER_NODE * 2)
            .map(|t| {
                let (svc, key) = (if t % 2 == 0 { &a } else { &b }, &key);
                scope.spawn(move || {
                    (0..TICKETS_PER_THREAD)
                        .map(|i| {
                            let body = json!({ "subject": format!("t{t} n{i}"), "body": "both nodes" });
                            let (status, ticket) = svc.post("/v1/tickets", key, body);
                            assert_eq!(status, 201, "{ticket}");
                            ticket["id"].as_i64().unwrap()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers.into_iter().flat_map(|w| w.join().unwrap()).collect()
    });
    let total = THREADS_PER_NODE * 2 * TICKETS_PER_THREAD;
    let mut unique = created.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), total, "every ticket has an id of its own");
    for svc in [&a, &b] {
        let mut listed = ticket_ids(svc, &key);
        listed.sort_unstable();
        assert_eq!(listed, unique, "both nodes list every ticket");
    }
    let after_a = audit_entries(&a, &admin_a);
    assert_eq!(after_a, audit_entries(&b, &admin_a), "one chain, seen alike from both nodes");
    let (status, page) = b.request("GET", "/v1/audit?limit=100&action=ticket.create", Some(&admin_a), None);
    assert_eq!(status, 200);
    assert_eq!(page["data"].as_array().unwrap().len(), 80.min(total));
    assert!(after_a >= before + u64::try_from(total).unwrap(), "{before} -> {after_a}");

    // Revoked on B: refused on A from then on.
    let (status, apps) = a.request("GET", &format!("/v1/clients/{client}/applications"), Some(&admin_a), None);
    assert_eq!(status, 200, "{apps}");
    let app_id = apps["data"][0]["id"].as_i64().unwrap();
    let (status, _) = b.request("DELETE", &format!("/v1/clients/{client}/applications/{app_id}"), Some(&admin_a), None);
    assert_eq!(status, 200);
    let (status, body) = a.request("GET", "/v1/users/me", Some(&key), None);
    assert_eq!((status, error_code(&body).as_str()), (401, "invalid_api_key"));

    // A third node given another secret key is refused at start: it could not read the
    // secrets the others sealed, and what it sealed they could not read.
    let dir_c = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_portal-svc"))
        .args(["--data-dir", dir_c.path().to_str().unwrap(), "--listen", "127.0.0.1:0", "--database-url", &url])
        .env("PORTAL_SECRET_KEY", "22".repeat(32))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("not the key this database's secrets are under"), "{stderr}");
    assert!(!stderr.contains("postgres://"), "the database url is never printed: {stderr}");
    assert!(a.stop());
    assert!(b.stop());
}
