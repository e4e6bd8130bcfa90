//! Over real HTTP: device registration (unique serials, validation, roles), heartbeats
//! (status, firmware, bounded diagnostics history), device groups and their
//! configuration, firmware rollouts driven to completion by heartbeats, and isolation
//! between clients. The audit log is read straight from the service's database.
#![allow(clippy::unwrap_used)]

mod common;

use common::{ADMIN_EMAIL, ADMIN_PASSWORD, Service, error_code};
use portal_svc::db::now_secs;
use serde_json::{Value, json};

const PASSWORD: &str = "twelve chars at least";

/// A running service with two clients, each with an API key and users.
struct World {
    svc: Service,
    /// Client A: its id, API key, a client_admin and a viewer (session tokens).
    a_id: i64,
    a_key: String,
    a_admin: String,
    a_viewer: String,
    /// Client B: its API key and client_admin.
    b_key: String,
    b_admin: String,
    /// The platform admin's token.
    root: String,
    /// Dropped last: the service runs on it.
    dir: tempfile::TempDir,
}

fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::start(dir.path(), true);
    let root = svc.token(ADMIN_EMAIL, ADMIN_PASSWORD);
    let (a_id, a_key) = svc.client_with_key(&root, "A");
    let (b_id, b_key) = svc.client_with_key(&root, "B");
    let user = |email: &str, role: &str, client_id: i64| {
        let (status, body) = svc.post(
            "/v1/users",
            &root,
            json!({ "email": email, "password": PASSWORD, "role": role, "client_id": client_id }),
        );
        assert_eq!(status, 201, "{body}");
        svc.token(email, PASSWORD)
    };
    let a_admin = user("admin@a.test", "client_admin", a_id);
    let a_viewer = user("viewer@a.test", "viewer", a_id);
    let b_admin = user("admin@b.test", "client_admin", b_id);
    World { svc, a_id, a_key, a_admin, a_viewer, b_key, b_admin, root, dir }
}

impl World {
    fn get(&self, path: &str, token: &str) -> (u16, Value) {
        self.svc.request("GET", path, Some(token), None)
    }

    fn post(&self, path: &str, token: &str, body: Value) -> (u16, Value) {
        self.svc.post(path, token, body)
    }

    fn send(&self, method: &str, path: &str, token: &str, body: Value) -> (u16, Value) {
        self.svc.request(method, path, Some(token), Some(&body.to_string()))
    }

    /// Registers a device for client A; returns its id.
    fn device(&self, serial: &str) -> i64 {
        let (status, device) = self.post("/v1/devices", &self.a_admin, json!({ "serial": serial, "model": "T100" }));
        assert_eq!(status, 201, "{device}");
        device["id"].as_i64().unwrap()
    }

    /// Client A's key reports a heartbeat for `device`; returns the reply.
    fn beat(&self, device: i64, firmware: &str, diagnostics: Value) -> Value {
        let (status, reply) = self.post(
            &format!("/v1/devices/{device}/heartbeat"),
            &self.a_key,
            json!({ "firmware_version": firmware, "diagnostics": diagnostics }),
        );
        assert_eq!(status, 200, "{reply}");
        reply
    }

    /// Creates a group for client A; returns its id.
    fn group(&self, name: &str, config: Value) -> i64 {
        let (status, group) = self.post("/v1/device-groups", &self.a_admin, json!({ "name": name, "config": config }));
        assert_eq!(status, 201, "{group}");
        group["id"].as_i64().unwrap()
    }

    fn assign(&self, device: i64, group: Value) -> Value {
        let (status, reply) =
            self.send("PUT", &format!("/v1/devices/{device}/group"), &self.a_admin, json!({ "group_id": group }));
        assert_eq!(status, 200, "{reply}");
        reply
    }

    /// A count from the service's database (`?1` is bound to `arg`).
    fn count(&self, sql: &str, arg: i64) -> i64 {
        let db = common::open_metadata(self.dir.path());
        db.call_blocking(|conn| conn.query_row(sql, [arg], |row| row.get::<_, i64>(0))).unwrap().unwrap()
    }

    /// Audit records of client A with `action`.
    fn audited(&self, action: &str) -> Vec<String> {
        let db = common::open_metadata(self.dir.path());
        let (client, action) = (self.a_id, action.to_string());
        db.call_blocking(|conn| {
            let mut stmt = conn
                .prepare("SELECT resource FROM audit_log WHERE client_id = ?1 AND action = ?2 ORDER BY id")
                .unwrap();
            stmt.query_map((client, action), |row| row.get::<_, String>(0)).unwrap().map(Result::unwrap).collect()
        })
        .unwrap()
    }
}

fn ids(list: &Value) -> Vec<i64> {
    list["data"].as_array().unwrap().iter().map(|d| d["id"].as_i64().unwrap()).collect()
}

#[test]
fn devices_register_once_with_valid_input_and_only_by_client_admins() {
    let w = world();
    let (status, device) = w.post("/v1/devices", &w.a_admin, json!({ "serial": " SN-0001 ", "model": "T100" }));
    assert_eq!(status, 201, "{device}");
    let id = device["id"].as_i64().unwrap();
    assert_eq!(
        device,
        json!({
            "id": id, "object": "device", "serial": "SN-0001", "model": "T100", "group_id": null,
            "status": "offline", "last_seen": null, "firmware_version": null,
            "created_at": device["created_at"], "target_firmware": null,
        })
    );
    assert!((device["created_at"].as_i64().unwrap() - now_secs()).abs() < 60);
    assert_eq!(w.audited("device.register"), vec![format!("device:{id}")]);

    // A serial is registered once across the platform, whichever client asks.
    for token in [&w.a_admin, &w.b_admin] {
        let (status, reply) = w.post("/v1/devices", token, json!({ "serial": "SN-0001", "model": "T200" }));
        assert_eq!((status, error_code(&reply).as_str()), (409, "serial_taken"), "{reply}");
        assert_eq!(reply["error"]["param"], "serial");
    }

    // Bad input is a 400 with the error body and stores nothing.
    let long = "x".repeat(65);
    for body in [
        json!({ "serial": "", "model": "T100" }),
        json!({ "serial": "   ", "model": "T100" }),
        json!({ "serial": long, "model": "T100" }),
        json!({ "serial": "SN-2", "model": "m".repeat(101) }),
        json!({ "serial": "SN-2", "model": "" }),
        json!({ "serial": "SN\n2", "model": "T100" }),
        json!({ "serial": "SN-2" }),
        json!({ "serial": 2, "model": "T100" }),
        json!({ "serial": "SN-2", "model": "T100", "owner": "me" }),
    ] {
        let (status, reply) = w.post("/v1/devices", &w.a_admin, body.clone());
        assert_eq!(status, 400, "{body}: {reply}");
        error_code(&reply);
    }
    let (status, reply) = w.svc.request("POST", "/v1/devices", Some(&w.a_admin), Some("{not json"));
    assert_eq!((status, error_code(&reply).as_str()), (400, "invalid_json"));
    assert_eq!(w.count("SELECT count(*) FROM devices WHERE id > ?1", 0), 1, "nothing stored");

    // Viewers, API keys and platform admins do not register; keys and viewers read.
    for token in [&w.a_viewer, &w.a_key, &w.root] {
        let (status, reply) = w.post("/v1/devices", token, json!({ "serial": "SN-3", "model": "T100" }));
        assert_eq!((status, error_code(&reply).as_str()), (403, "forbidden"), "{reply}");
    }
    for token in [&w.a_viewer, &w.a_key, &w.a_admin] {
        let (status, got) = w.get(&format!("/v1/devices/{id}"), token);
        assert_eq!((status, got["serial"].as_str()), (200, Some("SN-0001")));
        let (status, list) = w.get("/v1/devices", token);
        assert_eq!((status, ids(&list), list["has_more"].as_bool()), (200, vec![id], Some(false)));
    }
    assert_eq!(w.count("SELECT count(*) FROM devices WHERE id > ?1", 0), 1);

    // Heartbeats come from API keys only.
    for token in [&w.a_admin, &w.a_viewer] {
        let (status, reply) = w.post(
            &format!("/v1/devices/{id}/heartbeat"),
            token,
            json!({ "firmware_version": "1.0", "diagnostics": {} }),
        );
        assert_eq!((status, error_code(&reply).as_str()), (403, "forbidden"));
    }
    assert_eq!(w.get(&format!("/v1/devices/{id}"), &w.a_admin).1["last_seen"], Value::Null);

    // Lists page by id.
    let more: Vec<i64> = (0..4).map(|i| w.device(&format!("SN-1{i}"))).collect();
    let (_, first) = w.get("/v1/devices?limit=3", &w.a_viewer);
    assert_eq!((ids(&first), first["has_more"].as_bool()), (vec![id, more[0], more[1]], Some(true)));
    let (_, rest) = w.get(&format!("/v1/devices?limit=3&starting_after={}", more[1]), &w.a_viewer);
    assert_eq!((ids(&rest), rest["has_more"].as_bool()), (vec![more[2], more[3]], Some(false)));
    for bad in ["/v1/devices?limit=0", "/v1/devices?limit=101", "/v1/devices?status=asleep", "/v1/devices?limit=x"] {
        let (status, reply) = w.get(bad, &w.a_viewer);
        assert_eq!(status, 400, "{bad}: {reply}");
        error_code(&reply);
    }
}

#[test]
fn heartbeats_bring_devices_online_and_keep_their_history() {
    let w = world();
    let id = w.device("SN-A");
    let silent = w.device("SN-B");
    let (_, device) = w.get(&format!("/v1/devices/{id}"), &w.a_viewer);
    assert_eq!((device["status"].as_str(), &device["last_seen"]), (Some("offline"), &Value::Null));

    let reply = w.beat(id, "1.0.0", json!({ "battery": 90, "signal": "good" }));
    let device = &reply["device"];
    assert_eq!(
        (device["id"].as_i64(), device["status"].as_str(), device["firmware_version"].as_str()),
        (Some(id), Some("online"), Some("1.0.0"))
    );
    assert!((device["last_seen"].as_i64().unwrap() - now_secs()).abs() < 60);
    assert_eq!((&reply["config"], &reply["target_firmware"]), (&Value::Null, &Value::Null), "no group, no rollout");
    let (_, got) = w.get(&format!("/v1/devices/{id}"), &w.a_viewer);
    assert_eq!((got["status"].as_str(), got["firmware_version"].as_str()), (Some("online"), Some("1.0.0")));
    assert_eq!(got["last_seen"], device["last_seen"]);

    let (_, online) = w.get("/v1/devices?status=online", &w.a_viewer);
    assert_eq!(ids(&online), vec![id]);
    let (_, offline) = w.get("/v1/devices?status=offline", &w.a_viewer);
    assert_eq!(ids(&offline), vec![silent]);

    w.beat(id, "1.0.1", json!({ "battery": 80 }));
    w.beat(id, "1.0.1", json!({ "battery": 70, "errors": ["paper_low"] }));
    assert_eq!(w.get(&format!("/v1/devices/{id}"), &w.a_key).1["firmware_version"], "1.0.1");

    // The history, newest first, with the diagnostics as JSON; viewers and keys read it.
    let path = format!("/v1/devices/{id}/diagnostics");
    let (status, history) = w.get(&path, &w.a_viewer);
    assert_eq!(status, 200, "{history}");
    let data = history["data"].as_array().unwrap();
    let seen: Vec<(Value, Value)> =
        data.iter().map(|h| (h["firmware_version"].clone(), h["diagnostics"].clone())).collect();
    assert_eq!(
        seen,
        vec![
            (json!("1.0.1"), json!({ "battery": 70, "errors": ["paper_low"] })),
            (json!("1.0.1"), json!({ "battery": 80 })),
            (json!("1.0.0"), json!({ "battery": 90, "signal": "good" })),
        ]
    );
    let hb_ids = ids(&history);
    assert!(hb_ids.windows(2).all(|w| w[0] > w[1]), "newest first: {hb_ids:?}");
    assert!(data.iter().all(|h| h["received_at"].as_i64().unwrap() <= now_secs()));
    let (_, page) = w.get(&format!("{path}?limit=2"), &w.a_key);
    assert_eq!((ids(&page), page["has_more"].as_bool()), (hb_ids[..2].to_vec(), Some(true)));
    let (_, page) = w.get(&format!("{path}?limit=2&starting_after={}", hb_ids[1]), &w.a_key);
    assert_eq!((ids(&page), page["has_more"].as_bool()), (vec![hb_ids[2]], Some(false)));
    assert!(w.get(&format!("/v1/devices/{silent}/diagnostics"), &w.a_viewer).1["data"].as_array().unwrap().is_empty());

    // Bad heartbeats are refused whole: no history, no firmware change.
    let big = "x".repeat(16 << 10);
    for body in [
        json!({ "firmware_version": "9.9", "diagnostics": [1, 2] }),
        json!({ "firmware_version": "9.9", "diagnostics": "fine" }),
        json!({ "firmware_version": "9.9", "diagnostics": null }),
        json!({ "firmware_version": "9.9", "diagnostics": { "dump": big } }),
        json!({ "firmware_version": "9.9" }),
        json!({ "firmware_version": "", "diagnostics": {} }),
        json!({ "firmware_version": "9.9", "diagnostics": {}, "extra": 1 }),
    ] {
        let (status, reply) = w.post(&format!("/v1/devices/{id}/heartbeat"), &w.a_key, body.clone());
        assert_eq!(status, 400, "{reply}");
        error_code(&reply);
    }
    assert_eq!(w.get(&path, &w.a_viewer).1["data"].as_array().unwrap().len(), 3);
    assert_eq!(w.get(&format!("/v1/devices/{id}"), &w.a_key).1["firmware_version"], "1.0.1");
    let (status, reply) =
        w.post("/v1/devices/999999/heartbeat", &w.a_key, json!({ "firmware_version": "1", "diagnostics": {} }));
    assert_eq!((status, error_code(&reply).as_str()), (404, "not_found"));
    assert!(w.audited("device.heartbeat").is_empty(), "heartbeats are not audited");
}

#[test]
fn the_heartbeat_history_is_bounded_per_device() {
    let w = world();
    let id = w.device("SN-H");
    let other = w.device("SN-I");
    w.beat(other, "1", json!({ "n": -1 }));
    for n in 0..1005 {
        w.beat(id, "1", json!({ "n": n }));
    }
    assert_eq!(w.count("SELECT count(*) FROM device_heartbeats WHERE device_id = ?1", id), 1000);
    assert_eq!(w.count("SELECT count(*) FROM device_heartbeats WHERE device_id = ?1", other), 1, "others untouched");
    // The newest 1000 are kept: n = 5 to 1004.
    let (_, newest) = w.get(&format!("/v1/devices/{id}/diagnostics?limit=1"), &w.a_viewer);
    assert_eq!(newest["data"][0]["diagnostics"], json!({ "n": 1004 }));
    let mut after = None;
    let mut seen = Vec::new();
    loop {
        let path = match after {
            None => format!("/v1/devices/{id}/diagnostics?limit=100"),
            Some(a) => format!("/v1/devices/{id}/diagnostics?limit=100&starting_after={a}"),
        };
        let (_, page) = w.get(&path, &w.a_viewer);
        seen.extend(page["data"].as_array().unwrap().iter().map(|h| h["diagnostics"]["n"].as_i64().unwrap()));
        after = ids(&page).last().copied();
        if !page["has_more"].as_bool().unwrap() {
            break;
        }
    }
    assert_eq!(seen, (5..1005).rev().collect::<Vec<i64>>());
}

#[test]
fn groups_carry_configuration_to_their_devices() {
    let w = world();
    let id = w.device("SN-G");
    let (status, group) = w.post(
        "/v1/device-groups",
        &w.a_admin,
        json!({ "name": "Front desk", "config": { "tips": true, "idle_secs": 60 } }),
    );
    assert_eq!(status, 201, "{group}");
    let gid = group["id"].as_i64().unwrap();
    assert_eq!(
        (
            group["object"].as_str(),
            group["name"].as_str(),
            &group["config"],
            &group["device_count"],
            &group["latest_rollout"]
        ),
        (Some("device_group"), Some("Front desk"), &json!({ "tips": true, "idle_secs": 60 }), &json!(0), &Value::Null)
    );
    assert_eq!(w.audited("group.create"), vec![format!("device_group:{gid}")]);

    // Names are unique per client; another client may use the same name.
    let (status, reply) = w.post("/v1/device-groups", &w.a_admin, json!({ "name": "Front desk", "config": {} }));
    assert_eq!((status, error_code(&reply).as_str()), (409, "group_name_taken"));
    let (status, b_group) = w.post("/v1/device-groups", &w.b_admin, json!({ "name": "Front desk", "config": {} }));
    assert_eq!(status, 201, "{b_group}");
    for body in [
        json!({ "name": "x", "config": [1] }),
        json!({ "name": "x", "config": "tips" }),
        json!({ "name": "x" }),
        json!({ "name": "", "config": {} }),
        json!({ "name": "x", "config": { "blob": "y".repeat(16 << 10) } }),
    ] {
        let (status, reply) = w.post("/v1/device-groups", &w.a_admin, body.clone());
        assert_eq!(status, 400, "{body}: {reply}");
    }
    for token in [&w.a_viewer, &w.a_key] {
        assert_eq!(w.post("/v1/device-groups", token, json!({ "name": "y", "config": {} })).0, 403);
    }
    let (_, groups) = w.get("/v1/device-groups", &w.a_key);
    assert_eq!((ids(&groups), groups["has_more"].as_bool()), (vec![gid], Some(false)));

    // Assignment: own groups only; another client's group is not found.
    let device = w.assign(id, json!(gid));
    assert_eq!(device["group_id"], json!(gid));
    let (status, reply) =
        w.send("PUT", &format!("/v1/devices/{id}/group"), &w.a_admin, json!({ "group_id": b_group["id"] }));
    assert_eq!(
        (status, error_code(&reply).as_str(), reply["error"]["param"].as_str()),
        (404, "not_found", Some("group_id"))
    );
    let (status, _) = w.send("PUT", &format!("/v1/devices/{id}/group"), &w.a_admin, json!({}));
    assert_eq!(status, 400, "group_id is required (null unassigns)");
    for token in [&w.a_viewer, &w.a_key] {
        assert_eq!(w.send("PUT", &format!("/v1/devices/{id}/group"), token, json!({ "group_id": null })).0, 403);
    }
    assert_eq!(w.get(&format!("/v1/devices/{id}"), &w.a_viewer).1["group_id"], json!(gid));
    assert_eq!(w.get(&format!("/v1/device-groups/{gid}"), &w.a_viewer).1["device_count"], 1);
    assert_eq!(ids(&w.get(&format!("/v1/devices?group_id={gid}"), &w.a_viewer).1), vec![id]);
    assert_eq!(w.audited("device.group"), vec![format!("device:{id}")]);

    // The heartbeat answers the group's configuration, as it is now.
    assert_eq!(w.beat(id, "1.0", json!({}))["config"], json!({ "tips": true, "idle_secs": 60 }));
    let (status, changed) =
        w.send("PATCH", &format!("/v1/device-groups/{gid}"), &w.a_admin, json!({ "config": { "tips": false } }));
    assert_eq!(
        (status, &changed["config"], changed["name"].as_str()),
        (200, &json!({ "tips": false }), Some("Front desk"))
    );
    assert_eq!(w.beat(id, "1.0", json!({}))["config"], json!({ "tips": false }));
    let (status, renamed) =
        w.send("PATCH", &format!("/v1/device-groups/{gid}"), &w.a_admin, json!({ "name": "Lobby" }));
    assert_eq!((status, renamed["name"].as_str(), &renamed["config"]), (200, Some("Lobby"), &json!({ "tips": false })));
    w.group("Bar", json!({}));
    let (status, reply) = w.send("PATCH", &format!("/v1/device-groups/{gid}"), &w.a_admin, json!({ "name": "Bar" }));
    assert_eq!((status, error_code(&reply).as_str()), (409, "group_name_taken"));
    let (status, _) = w.send("PATCH", &format!("/v1/device-groups/{gid}"), &w.a_admin, json!({ "config": null }));
    assert_eq!(status, 400);
    assert_eq!(w.send("PATCH", &format!("/v1/device-groups/{gid}"), &w.a_viewer, json!({ "name": "Z" })).0, 403);
    assert_eq!(w.get(&format!("/v1/device-groups/{gid}"), &w.a_viewer).1["name"], "Lobby");
    assert_eq!(w.audited("group.update").len(), 2);

    // Out of the group: no configuration any more.
    assert_eq!(w.assign(id, Value::Null)["group_id"], Value::Null);
    assert_eq!(w.beat(id, "1.0", json!({}))["config"], Value::Null);
    assert_eq!(w.get(&format!("/v1/device-groups/{gid}"), &w.a_viewer).1["device_count"], 0);
}

#[test]
fn rollouts_advance_with_heartbeats_and_a_new_one_cancels_the_old() {
    let w = world();
    let gid = w.group("Fleet", json!({ "currency": "USD" }));
    let (status, reply) = w.post(&format!("/v1/device-groups/{gid}/firmware"), &w.a_admin, json!({ "version": "2.0" }));
    assert_eq!((status, error_code(&reply).as_str()), (422, "group_empty"));

    let [up, d2, d3, leaver] = ["R-1", "R-2", "R-3", "R-4"].map(|s| w.device(s));
    w.beat(up, "2.0", json!({}));
    for d in [d2, d3, leaver] {
        w.beat(d, "1.0", json!({}));
    }
    for d in [up, d2, d3, leaver] {
        w.assign(d, json!(gid));
    }
    for token in [&w.a_viewer, &w.a_key] {
        assert_eq!(w.post(&format!("/v1/device-groups/{gid}/firmware"), token, json!({ "version": "2.0" })).0, 403);
    }
    assert_eq!(w.post(&format!("/v1/device-groups/{gid}/firmware"), &w.a_admin, json!({ "version": "" })).0, 400);

    let (status, rollout) =
        w.post(&format!("/v1/device-groups/{gid}/firmware"), &w.a_admin, json!({ "version": "2.0" }));
    assert_eq!(status, 201, "{rollout}");
    let rid = rollout["id"].as_i64().unwrap();
    assert_eq!(
        (rollout["object"].as_str(), &rollout["group_id"], rollout["version"].as_str(), rollout["status"].as_str()),
        (Some("rollout"), &json!(gid), Some("2.0"), Some("in_progress"))
    );
    assert_eq!(rollout["progress"], json!({ "pending": 3, "installed": 1, "failed": 0, "total": 4 }));
    let entries: Vec<(i64, &str)> = rollout["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["device_id"].as_i64().unwrap(), e["status"].as_str().unwrap()))
        .collect();
    assert_eq!(entries, vec![(up, "installed"), (d2, "pending"), (d3, "pending"), (leaver, "pending")]);
    assert_eq!(w.audited("rollout.schedule"), vec![format!("rollout:{rid}")]);
    let rollout_path = format!("/v1/rollouts/{rid}");
    assert_eq!(w.get(&format!("/v1/devices/{d2}"), &w.a_viewer).1["target_firmware"], "2.0");
    assert_eq!(w.get(&format!("/v1/devices/{up}"), &w.a_viewer).1["target_firmware"], Value::Null);

    // A heartbeat on the old firmware without a failure changes nothing but says what to apply.
    let reply = w.beat(d2, "1.0", json!({ "battery": 50 }));
    assert_eq!((&reply["target_firmware"], &reply["config"]), (&json!("2.0"), &json!({ "currency": "USD" })));
    assert_eq!(w.get(&rollout_path, &w.a_viewer).1["progress"]["pending"], 3);

    // Installed, failed, and a device leaving the group leaves the rollout.
    assert_eq!(w.beat(d2, "2.0", json!({}))["target_firmware"], Value::Null);
    let reply = w.beat(d3, "1.0", json!({ "firmware_update": "failed", "reason": "checksum" }));
    assert_eq!(reply["target_firmware"], Value::Null);
    let (_, now) = w.get(&rollout_path, &w.a_key);
    assert_eq!(
        (now["status"].as_str(), &now["progress"]),
        (Some("in_progress"), &json!({ "pending": 1, "installed": 2, "failed": 1, "total": 4 }))
    );
    w.assign(leaver, Value::Null);
    let (_, done) = w.get(&rollout_path, &w.a_viewer);
    assert_eq!(
        (done["status"].as_str(), &done["progress"]),
        (Some("completed"), &json!({ "pending": 0, "installed": 2, "failed": 1, "total": 3 }))
    );
    let statuses: Vec<(i64, &str)> = done["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["device_id"].as_i64().unwrap(), e["status"].as_str().unwrap()))
        .collect();
    assert_eq!(statuses, vec![(up, "installed"), (d2, "installed"), (d3, "failed")]);
    let (_, group) = w.get(&format!("/v1/device-groups/{gid}"), &w.a_viewer);
    assert_eq!((&group["latest_rollout"]["id"], &group["device_count"]), (&json!(rid), &json!(3)));
    // The list shows the same (the Devices page read "undefined" there: issue 15).
    let (_, groups) = w.get("/v1/device-groups", &w.a_viewer);
    let listed = groups["data"].as_array().unwrap().iter().find(|g| g["id"] == json!(gid)).unwrap().clone();
    assert_eq!((&listed["latest_rollout"]["id"], &listed["device_count"]), (&json!(rid), &json!(3)), "{listed}");

    // The failed device retries and reports the version: installed, even though the
    // rollout has completed (it stayed failed: issue 15).
    w.beat(d3, "2.0", json!({}));
    let (_, done) = w.get(&rollout_path, &w.a_viewer);
    assert_eq!(
        (done["status"].as_str(), &done["progress"]),
        (Some("completed"), &json!({ "pending": 0, "installed": 3, "failed": 0, "total": 3 }))
    );

    // A new rollout cancels the group's in-progress one.
    let (_, first) = w.post(&format!("/v1/device-groups/{gid}/firmware"), &w.a_admin, json!({ "version": "3.0" }));
    assert_eq!((first["status"].as_str(), &first["progress"]["pending"]), (Some("in_progress"), &json!(3)));
    let first_id = first["id"].as_i64().unwrap();
    let (status, second) =
        w.post(&format!("/v1/device-groups/{gid}/firmware"), &w.a_admin, json!({ "version": "3.1" }));
    assert_eq!(status, 201, "{second}");
    let second_id = second["id"].as_i64().unwrap();
    assert_eq!(w.get(&format!("/v1/rollouts/{first_id}"), &w.a_viewer).1["status"], "cancelled");
    assert_eq!(w.audited("rollout.cancel"), vec![format!("rollout:{first_id}")]);
    assert_eq!(w.get(&format!("/v1/devices/{d2}"), &w.a_viewer).1["target_firmware"], "3.1");
    // Reports against the cancelled rollout no longer count.
    assert_eq!(w.beat(d2, "3.0", json!({}))["target_firmware"], "3.1");
    assert_eq!(w.get(&format!("/v1/rollouts/{first_id}"), &w.a_viewer).1["progress"]["pending"], 3);
    for d in [up, d2, d3] {
        w.beat(d, "3.1", json!({}));
    }
    let (_, second) = w.get(&format!("/v1/rollouts/{second_id}"), &w.a_viewer);
    assert_eq!(
        (second["status"].as_str(), &second["progress"]),
        (Some("completed"), &json!({ "pending": 0, "installed": 3, "failed": 0, "total": 3 }))
    );

    // The group's rollouts, newest first, paged.
    let path = format!("/v1/device-groups/{gid}/rollouts");
    let (_, list) = w.get(&path, &w.a_key);
    let versions: Vec<&str> = list["data"].as_array().unwrap().iter().map(|r| r["version"].as_str().unwrap()).collect();
    assert_eq!((versions, list["has_more"].as_bool()), (vec!["3.1", "3.0", "2.0"], Some(false)));
    let (_, page) = w.get(&format!("{path}?limit=1&starting_after={second_id}"), &w.a_key);
    assert_eq!((ids(&page), page["has_more"].as_bool()), (vec![first_id], Some(true)));

    // Everyone already on the version: completed at once.
    let (_, instant) = w.post(&format!("/v1/device-groups/{gid}/firmware"), &w.a_admin, json!({ "version": "3.1" }));
    assert_eq!(
        (instant["status"].as_str(), &instant["progress"]),
        (Some("completed"), &json!({ "pending": 0, "installed": 3, "failed": 0, "total": 3 }))
    );
}

#[test]
fn another_clients_devices_groups_and_rollouts_are_not_found() {
    let w = world();
    let id = w.device("ISO-1");
    let gid = w.group("Mine", json!({ "secret": "a" }));
    w.assign(id, json!(gid));
    let (_, rollout) = w.post(&format!("/v1/device-groups/{gid}/firmware"), &w.a_admin, json!({ "version": "5" }));
    let rid = rollout["id"].as_i64().unwrap();
    let (_, b_group) = w.post("/v1/device-groups", &w.b_admin, json!({ "name": "Theirs", "config": {} }));
    let b_gid = b_group["id"].as_i64().unwrap();

    for token in [&w.b_key, &w.b_admin] {
        for path in [
            format!("/v1/devices/{id}"),
            format!("/v1/devices/{id}/diagnostics"),
            format!("/v1/device-groups/{gid}"),
            format!("/v1/device-groups/{gid}/rollouts"),
            format!("/v1/rollouts/{rid}"),
            format!("/v1/devices?group_id={gid}"),
        ] {
            let (status, reply) = w.get(&path, token);
            assert_eq!((status, error_code(&reply).as_str()), (404, "not_found"), "{path}: {reply}");
            assert!(!reply.to_string().contains("ISO-1") && !reply.to_string().contains("secret"));
        }
        let (_, list) = w.get("/v1/devices", token);
        assert!(list["data"].as_array().unwrap().is_empty());
        let (_, groups) = w.get("/v1/device-groups", token);
        assert_eq!(ids(&groups), vec![b_gid]);
    }
    let (status, _) =
        w.post(&format!("/v1/devices/{id}/heartbeat"), &w.b_key, json!({ "firmware_version": "5", "diagnostics": {} }));
    assert_eq!(status, 404);
    let b = &w.b_admin;
    assert_eq!(w.send("PUT", &format!("/v1/devices/{id}/group"), b, json!({ "group_id": null })).0, 404);
    assert_eq!(w.send("PUT", &format!("/v1/devices/{id}/group"), b, json!({ "group_id": b_gid })).0, 404);
    assert_eq!(w.send("PATCH", &format!("/v1/device-groups/{gid}"), b, json!({ "name": "Taken over" })).0, 404);
    assert_eq!(w.post(&format!("/v1/device-groups/{gid}/firmware"), b, json!({ "version": "6" })).0, 404);

    // Nothing of A's changed.
    let (_, device) = w.get(&format!("/v1/devices/{id}"), &w.a_viewer);
    assert_eq!(
        (&device["last_seen"], &device["firmware_version"], &device["group_id"], &device["target_firmware"]),
        (&Value::Null, &Value::Null, &json!(gid), &json!("5"))
    );
    let (_, group) = w.get(&format!("/v1/device-groups/{gid}"), &w.a_viewer);
    assert_eq!((group["name"].as_str(), &group["latest_rollout"]["id"]), (Some("Mine"), &json!(rid)));
    assert_eq!(w.get(&format!("/v1/rollouts/{rid}"), &w.a_viewer).1["status"], "in_progress");
    assert_eq!(w.count("SELECT count(*) FROM device_heartbeats WHERE device_id = ?1", id), 0);
}
