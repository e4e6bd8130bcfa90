//! `portal-svc backup DEST` while the service runs (issue 18): the copy is the whole
//! service as of one moment, and a service started on it (with the original's secret
//! key) holds every payment acknowledged before the backup and none after.

#![allow(clippy::unwrap_used)] // tests

mod common;

use std::process::Command;

use common::{ADMIN_EMAIL, ADMIN_PASSWORD, Service};
use serde_json::json;

fn pay(service: &Service, key: &str, amount: &str) -> String {
    let body =
        json!({ "kind": "payment", "amount": amount, "currency": "USD", "description": format!("order {amount}") });
    let (status, answer) = service.request("POST", "/v1/transactions", Some(key), Some(&body.to_string()));
    assert_eq!(status, 201, "{answer}");
    answer["id"].as_str().expect("an id").to_string()
}

fn backup(dir: &std::path::Path, dest: &std::path::Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_portal-svc"))
        .args(["--data-dir", dir.to_str().unwrap(), "backup", dest.to_str().unwrap()])
        .output()
        .expect("run portal-svc backup")
}

#[test]
fn a_backup_taken_while_the_service_runs_restores_to_that_moment() {
    let data = tempfile::tempdir().unwrap();
    let service = Service::start(data.path(), true);
    let (_, login) = service.login(ADMIN_EMAIL, ADMIN_PASSWORD);
    let admin = login["token"].as_str().unwrap().to_string();
    let (_, client) = service.request("POST", "/v1/clients", Some(&admin), Some(r#"{"name":"Corner Cafe"}"#));
    let path = format!("/v1/clients/{}/applications", client["id"]);
    let (_, app) = service.request("POST", &path, Some(&admin), Some(r#"{"name":"till"}"#));
    let key = app["api_key"].as_str().unwrap().to_string();
    let before: Vec<String> = (1..=40).map(|i| pay(&service, &key, &format!("{i}.00"))).collect();

    let work = tempfile::tempdir().unwrap();
    let dest = work.path().join("backup");
    // Payments go on while the backup runs: those acknowledged before it started must
    // be in it, those after it ended must not; the ones in between may be either.
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (out, during) = std::thread::scope(|s| {
        let writer = s.spawn(|| {
            let mut during = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Acquire) {
                during.push(pay(&service, &key, "1.25"));
            }
            during
        });
        std::thread::sleep(std::time::Duration::from_millis(50));
        let out = backup(data.path(), &dest);
        stop.store(true, std::sync::atomic::Ordering::Release);
        (out, writer.join().unwrap())
    });
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!during.is_empty(), "payments went on during the backup");
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(printed.contains("secret key is not copied"), "{printed}");
    assert!(!dest.join("secret.key").exists(), "the key stays apart from the backup");
    let after = pay(&service, &key, "99.00");
    // Into a directory that is not empty: refused, and nothing changes.
    let again = backup(data.path(), &dest);
    assert!(!again.status.success(), "a non-empty destination is refused");
    assert!(service.stop(), "the service stops cleanly");

    // The operator restores: the backup, with the original's key beside it.
    std::fs::copy(data.path().join("secret.key"), dest.join("secret.key")).unwrap();
    let restored = Service::start(&dest, false);
    let (status, login) = restored.login(ADMIN_EMAIL, ADMIN_PASSWORD);
    assert_eq!(status, 200, "the users are in the copy: {login}");
    for id in &before {
        let (status, tx) = restored.request("GET", &format!("/v1/transactions/{id}"), Some(&key), None);
        assert_eq!(status, 200, "{id} was acknowledged before the backup: {tx}");
        assert!(tx["description"].as_str().is_some_and(|d| d.starts_with("order ")), "its metadata too: {tx}");
    }
    let (status, _) = restored.request("GET", &format!("/v1/transactions/{after}"), Some(&key), None);
    assert_eq!(status, 404, "a payment after the backup is not in it");
    // Those during it: a prefix of them is in the copy (the ledger's copy is as of one
    // seq, taken after the metadata's).
    let present: Vec<bool> = during
        .iter()
        .map(|id| restored.request("GET", &format!("/v1/transactions/{id}"), Some(&key), None).0 == 200)
        .collect();
    let kept = present.iter().take_while(|p| **p).count();
    assert!(present[kept..].iter().all(|p| !p), "the payments kept are a prefix: {present:?}");
    // The restored service goes on taking payments.
    pay(&restored, &key, "5.00");
    assert!(restored.stop());
}
