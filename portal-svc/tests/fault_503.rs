//! The portal over a ledger whose storage fails: the service is built in process
//! (`app::router` over a `Ledger` opened through a `fault::SimulatedDisk`, served on an
//! ephemeral port) and spoken to over HTTP. A payment or a batch close the ledger could
//! not make durable is answered 503 with the error body
//! `{"error": {"type": "api_error", "code": "ledger_unavailable", ...}}`, never a 2xx;
//! every 201 is in the ledger after a restart.
//!
//! `a_real_full_disk_answers_503` puts the ledger on a 64 KiB tmpfs and fills it for
//! real; it needs `mount` (root), and says why it skips when that is not permitted.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use ledger_core::fault::{Fault, SimulatedDisk};
use ledger_core::{Ledger, LedgerOptions, Storage, StorageOp};
use portal_svc::app::{self, AppState};
use portal_svc::db::Db;
use serde_json::{Value, json};

/// Small segments: the roll-over test fills one with a few dozen payments.
const SEGMENT_BYTES: usize = 16 << 10;
/// Payments tried before giving up on seeing the disk fill.
const PAYMENTS_MAX: usize = 2_000;
/// How long a stopping portal may take to drop its tasks (and so its ledger).
const SHUTDOWN_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

fn options() -> LedgerOptions {
    LedgerOptions { segment_bytes: SEGMENT_BYTES, snapshot_every_records: 0, ..LedgerOptions::default() }
}

/// The portal served in process on an ephemeral port; stops when dropped.
struct Portal {
    base: String,
    runtime: tokio::runtime::Runtime,
    agent: ureq::Agent,
}

impl Portal {
    fn start(db: Db, ledger: Ledger) -> Portal {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let router = app::router(AppState::new(db, ledger));
        runtime.spawn(async move { axum::serve(listener, router).await });
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        Portal { base, runtime, agent }
    }

    fn post(&self, path: &str, token: &str, body: Value) -> (u16, Value) {
        let response = self
            .agent
            .post(&format!("{}{path}", self.base))
            .header("Content-Type", "application/json")
            .header("Authorization", &format!("Bearer {token}"))
            .send(body.to_string());
        read(response.unwrap())
    }

    fn get(&self, path: &str, token: &str) -> (u16, Value) {
        let response =
            self.agent.get(&format!("{}{path}", self.base)).header("Authorization", &format!("Bearer {token}")).call();
        read(response.unwrap())
    }

    /// Signs the admin in, makes a client with an application, returns its API key.
    fn api_key(&self, admin: &(String, String)) -> String {
        let (status, login) = self
            .agent
            .post(&format!("{}/v1/auth/login", self.base))
            .header("Content-Type", "application/json")
            .send(json!({ "email": admin.0, "password": admin.1 }).to_string())
            .map(read)
            .unwrap();
        assert_eq!(status, 200, "{login}");
        let token = login["token"].as_str().unwrap().to_string();
        let (status, client) = self.post("/v1/clients", &token, json!({ "name": "shop" }));
        assert_eq!(status, 201, "{client}");
        let id = client["id"].as_i64().unwrap();
        let (status, application) =
            self.post(&format!("/v1/clients/{id}/applications"), &token, json!({ "name": "till" }));
        assert_eq!(status, 201, "{application}");
        application["api_key"].as_str().unwrap().to_string()
    }

    fn pay(&self, key: &str) -> (u16, Value) {
        self.post(
            "/v1/transactions",
            key,
            json!({ "kind": "payment", "amount": "1.00", "currency": "USD", "capture": true }),
        )
    }

    /// The client's USD net, in minor units, as the API reports it.
    fn net_cents(&self, key: &str) -> i64 {
        let (status, balance) = self.get("/v1/balance", key);
        assert_eq!(status, 200, "{balance}");
        let Some(usd) = balance["data"].as_array().unwrap().iter().find(|b| b["currency"] == "USD") else { return 0 };
        let net = usd["net"].as_str().unwrap();
        net.replace('.', "").parse().unwrap()
    }
}

impl Drop for Portal {
    fn drop(&mut self) {
        // Stops the server task and lets go of its `AppState` (and the ledger in it).
        let runtime =
            std::mem::replace(&mut self.runtime, tokio::runtime::Builder::new_current_thread().build().unwrap());
        runtime.shutdown_timeout(SHUTDOWN_WAIT);
    }
}

fn read(mut response: ureq::http::Response<ureq::Body>) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

/// The metadata database with its platform admin; returns the admin's credentials.
fn db(dir: &Path) -> (Db, (String, String)) {
    let db = Db::open(&dir.join("portal.db")).unwrap();
    let admin = match app::bootstrap_admin(&db).unwrap() {
        Some(generated) => generated,
        None => (std::env::var("PORTAL_ADMIN_EMAIL").unwrap(), std::env::var("PORTAL_ADMIN_PASSWORD").unwrap()),
    };
    (db, admin)
}

fn assert_unavailable(status: u16, body: &Value, what: &str) {
    assert_eq!(status, 503, "{what}: {body}");
    let error = &body["error"];
    assert_eq!(
        (error["type"].as_str(), error["code"].as_str()),
        (Some("api_error"), Some("ledger_unavailable")),
        "{what}"
    );
    let message = error["message"].as_str().unwrap_or_default();
    assert!(!message.is_empty(), "{what}: {body}");
    // The engine's detail names files and OS errors: the log gets it, the caller not.
    for leak in ["/", ".seg", "error:", "Input/output", "No space"] {
        assert!(!message.contains(leak), "{what}: the message shows {leak:?}: {body}");
    }
}

#[test]
fn a_failed_sync_answers_503_and_never_a_false_2xx() {
    let dir = tempfile::tempdir().unwrap();
    let ledger_dir = dir.path().join("ledger");
    let disk = Arc::new(SimulatedDisk::attach(&ledger_dir).unwrap());
    let ledger =
        Ledger::open_with_storage(&ledger_dir, options(), Storage::with_injector(Arc::clone(&disk) as _)).unwrap();
    let (db, admin) = db(dir.path());
    let portal = Portal::start(db, ledger.clone());
    let key = portal.api_key(&admin);
    let (status, paid) = portal.pay(&key);
    assert_eq!(status, 201, "{paid}");

    // Every msync fails from now on.
    disk.fail_from(StorageOp::SyncRange, disk.calls(StorageOp::SyncRange) + 1, Fault::Eio);
    let (status, body) = portal.pay(&key);
    assert_unavailable(status, &body, "the payment whose sync failed");
    let (status, body) = portal.pay(&key);
    assert_unavailable(status, &body, "a payment after the failure (the ledger refuses until reopened)");
    let (status, body) = portal.post("/v1/batches/close", &key, json!({ "currency": "USD" }));
    assert_unavailable(status, &body, "a batch close");
    // A refund of the acknowledged payment is refused the same way.
    let refund = format!("/v1/transactions/{}/refunds", paid["id"].as_str().unwrap());
    let (status, body) = portal.post(&refund, &key, json!({ "amount": "0.50" }));
    assert_unavailable(status, &body, "a refund");
    // Reads still answer, from what was acknowledged only.
    assert_eq!(portal.net_cents(&key), 100);
    assert_eq!(ledger.transaction_count(), 1);
    assert_eq!(disk.faults_injected(), 1, "fsyncgate: the failed sync is never retried");
}

#[test]
fn a_full_disk_at_roll_over_answers_503_and_every_201_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let ledger_dir = dir.path().join("ledger");
    let disk = Arc::new(SimulatedDisk::attach(&ledger_dir).unwrap());
    let storage = Storage::with_injector(Arc::clone(&disk) as _);
    let ledger = Ledger::open_with_storage(&ledger_dir, options(), storage.clone()).unwrap();
    let (db, admin) = db(dir.path());
    let portal = Portal::start(db.clone(), ledger);
    let key = portal.api_key(&admin);
    // The disk is full from now on: the next segment cannot be filled.
    disk.fail_from(StorageOp::WriteFile, disk.calls(StorageOp::WriteFile) + 1, Fault::Enospc);
    let mut created = 0;
    let mut unavailable = 0;
    for _ in 0..PAYMENTS_MAX {
        let (status, body) = portal.pay(&key);
        match status {
            201 => {
                assert_eq!(unavailable, 0, "a 201 after a 503: the ledger refuses until reopened");
                created += 1;
            }
            _ => {
                assert_unavailable(status, &body, "a payment on a full disk");
                unavailable += 1;
                if unavailable == 3 {
                    break;
                }
            }
        }
    }
    assert!(created > 0 && unavailable == 3, "{created} created, {unavailable} unavailable");
    assert_eq!(portal.net_cents(&key), created * 100);
    drop(portal);

    // Space is freed and the service restarts: exactly the 201s are there, and it writes.
    disk.heal();
    let ledger = Ledger::open_with_storage(&ledger_dir, options(), storage).unwrap();
    let portal = Portal::start(db, ledger);
    assert_eq!(portal.net_cents(&key), created * 100, "every 201 and nothing else");
    assert_eq!(portal.pay(&key).0, 201);
    assert_eq!(portal.net_cents(&key), (created + 1) * 100);
}

/// Unmounts (lazily) on drop.
struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_real_full_disk_answers_503() {
    let dir = tempfile::tempdir().unwrap();
    let ledger_dir = dir.path().join("ledger");
    std::fs::create_dir(&ledger_dir).unwrap();
    let mounted = Command::new("mount").args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"]).arg(&ledger_dir).output();
    match mounted {
        Ok(out) if out.status.success() => {}
        Ok(out) => {
            println!("skipped: mount -t tmpfs is not permitted here: {}", String::from_utf8_lossy(&out.stderr).trim());
            return;
        }
        Err(e) => {
            println!("skipped: cannot run mount: {e}");
            return;
        }
    }
    let _mount = Mount(ledger_dir.clone());
    // 16 KiB segments on 64 KiB: the fourth or fifth segment file cannot be filled.
    // The metadata database lives outside the tmpfs: only the ledger runs out of space.
    let options = LedgerOptions { segment_bytes: 16 << 10, snapshot_every_records: 0, ..LedgerOptions::default() };
    let ledger = Ledger::open(&ledger_dir, options).unwrap();
    let (db, admin) = db(dir.path());
    let portal = Portal::start(db, ledger);
    let key = portal.api_key(&admin);
    let mut created = 0;
    let mut unavailable = 0;
    for _ in 0..20_000 {
        let (status, body) = portal.pay(&key);
        if status == 201 {
            assert_eq!(unavailable, 0, "a 201 after a 503");
            created += 1;
        } else {
            assert_unavailable(status, &body, "a payment on a full tmpfs");
            unavailable += 1;
            if unavailable == 2 {
                break;
            }
        }
    }
    assert!(created > 0 && unavailable == 2, "{created} created, {unavailable} unavailable");
    assert_eq!(portal.net_cents(&key), created * 100);
    println!("a real full disk: {created} payments created, then 503 ledger_unavailable");
    drop(portal);
    let ledger = Ledger::open(&ledger_dir, options).unwrap();
    assert_eq!(ledger.transaction_count() as i64, created, "every 201 is in the ledger after a restart");
}
