//! Over real HTTP (issue 15): a client's own configuration, set by its client admin:
//! allowed currencies (refused otherwise), the time zone its reports' days follow (an
//! IANA name with its daylight saving changes, or a fixed offset), and
//! a daily settlement cut-over that closes its open batches by itself.
#![allow(clippy::unwrap_used)]

mod common;

use common::{ADMIN_EMAIL, ADMIN_PASSWORD, Service, error_code};
use serde_json::{Value, json};

/// A client with a client admin (signed in) and an API key: (client, admin, key).
fn client(svc: &Service, admin: &str, name: &str) -> (i64, String, String) {
    let (client, key) = svc.client_with_key(admin, name);
    let email = format!("ca@{name}.test");
    let (status, _) = svc.post(
        "/v1/users",
        admin,
        json!({ "email": email, "password": "a long enough password", "role": "client_admin", "client_id": client }),
    );
    assert_eq!(status, 201);
    (client, svc.token(&email, "a long enough password"), key)
}

fn patch(svc: &Service, token: &str, client: i64, body: Value) -> (u16, Value) {
    svc.request("PATCH", &format!("/v1/clients/{client}"), Some(token), Some(&body.to_string()))
}

/// The civil date of Unix seconds (the test's own oracle).
fn civil(secs: i64) -> String {
    let z = secs.div_euclid(86_400) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

fn now() -> i64 {
    i64::try_from(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()).unwrap()
}

#[test]
fn settings_are_checked_shown_scoped_and_audited() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::start(dir.path(), true);
    let admin = svc.token(ADMIN_EMAIL, ADMIN_PASSWORD);
    let (id, client_admin, key) = client(&svc, &admin, "cafe");
    let (_, other_admin, _) = client(&svc, &admin, "other");
    for (body, code) in [
        (json!({ "time_zone": "Europe/Pariss" }), "invalid_time_zone"),
        (json!({ "time_zone": "Mars/Olympus_Mons" }), "invalid_time_zone"),
        (json!({ "time_zone": "+15:00" }), "invalid_time_zone"),
        (json!({ "settlement_cutover": "24:00" }), "invalid_cutover"),
        (json!({ "settlement_cutover": 7 }), "invalid_cutover"),
        (json!({ "allowed_currencies": ["usd"] }), "invalid_currency"),
        (json!({ "allowed_currencies": [] }), "invalid_currency"),
    ] {
        let (status, reply) = patch(&svc, &client_admin, id, body.clone());
        assert_eq!((status, error_code(&reply).as_str()), (400, code), "{body}");
    }
    assert_eq!(patch(&svc, &other_admin, id, json!({ "time_zone": "UTC" })).0, 404);
    let (_, key_owner) = svc.request("GET", "/v1/users/me", Some(&key), None);
    assert_eq!(key_owner["object"], "application");
    assert_eq!(patch(&svc, &key, id, json!({ "time_zone": "UTC" })).0, 403);

    let (status, settings) = patch(
        &svc,
        &client_admin,
        id,
        json!({ "time_zone": "-03:30", "settlement_cutover": "23:45", "allowed_currencies": ["EUR", "GBP"] }),
    );
    assert_eq!(status, 200, "{settings}");
    let (_, shown) = svc.request("GET", &format!("/v1/clients/{id}"), Some(&client_admin), None);
    for field in ["time_zone", "settlement_cutover", "allowed_currencies", "mfa_required"] {
        assert_eq!(shown[field], settings[field], "{field}");
    }
    assert_eq!(
        (shown["time_zone"].as_str(), shown["settlement_cutover"].as_str(), shown["allowed_currencies"].clone()),
        (Some("-03:30"), Some("23:45"), json!(["EUR", "GBP"]))
    );

    // Allowed currencies: another is refused before the ledger, and survives a restart.
    let pay = |key: &str, currency: &str| {
        svc.post("/v1/transactions", key, json!({ "kind": "payment", "amount": "5.00", "currency": currency }))
    };
    let (status, reply) = pay(&key, "USD");
    assert_eq!((status, error_code(&reply).as_str()), (400, "currency_not_allowed"));
    assert_eq!(pay(&key, "EUR").0, 201);
    let (_, other_key) = svc.client_with_key(&admin, "third");
    assert_eq!(pay(&other_key, "USD").0, 201, "other clients keep every currency");
    let (status, cleared) = patch(&svc, &client_admin, id, json!({ "allowed_currencies": null }));
    assert_eq!((status, cleared["allowed_currencies"].clone()), (200, Value::Null));
    assert_eq!(pay(&key, "USD").0, 201);

    let (_, audit) = svc.request("GET", "/v1/audit?action=client.settings", Some(&client_admin), None);
    assert_eq!(audit["data"].as_array().unwrap().len(), 2, "{audit}");
}

/// A report's days are the client's days: a payment made now is on today's date in
/// the client's time zone (UTC+14:00 here, a day ahead of UTC for ten hours a day).
#[test]
fn reports_group_by_the_clients_day() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::start(dir.path(), true);
    let admin = svc.token(ADMIN_EMAIL, ADMIN_PASSWORD);
    let (id, client_admin, key) = client(&svc, &admin, "kiribati");
    assert_eq!(patch(&svc, &client_admin, id, json!({ "time_zone": "+14:00" })).0, 200);
    let before = now();
    let (status, _) =
        svc.post("/v1/transactions", &key, json!({ "kind": "payment", "amount": "1.00", "currency": "AUD" }));
    assert_eq!(status, 201);
    let after = now();
    let (status, report) = svc.request("GET", "/v1/reports/transactions?rows=false", Some(&key), None);
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["time_zone"], "+14:00");
    let day = report["totals"]["by_day"][0]["day"].as_str().unwrap().to_string();
    let expected = [civil(before + 14 * 3600), civil(after + 14 * 3600)];
    assert!(expected.contains(&day), "{day} not in {expected:?}");
    // A date asked for is that local day.
    let (_, today) =
        svc.request("GET", &format!("/v1/reports/transactions?rows=false&from={day}&to={day}"), Some(&key), None);
    assert_eq!(today["count"], 1, "{today}");
}

/// A named time zone is kept as named, survives a restart, and a report's date is that
/// zone's day: 23 hours on the spring-forward day, 25 on the fall-back day.
#[test]
fn a_named_time_zone_is_kept_and_its_days_follow_daylight_saving() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::start(dir.path(), true);
    let admin = svc.token(ADMIN_EMAIL, ADMIN_PASSWORD);
    let (id, client_admin, key) = client(&svc, &admin, "paris");
    let (status, changed) = patch(&svc, &client_admin, id, json!({ "time_zone": "Europe/Paris" }));
    assert_eq!((status, changed["time_zone"].as_str()), (200, Some("Europe/Paris")), "{changed}");
    let (_, shown) = svc.request("GET", &format!("/v1/clients/{id}"), Some(&client_admin), None);
    assert_eq!(shown["time_zone"], "Europe/Paris");
    let (_, audit) = svc.request("GET", "/v1/audit?action=client.settings", Some(&client_admin), None);
    assert_eq!(audit["data"][0]["detail"]["time_zone"], "Europe/Paris", "{audit}");
    let period = |from: &str, to: &str| {
        let path = format!("/v1/reports/transactions?rows=false&from={from}&to={to}");
        let (status, report) = svc.request("GET", &path, Some(&key), None);
        assert_eq!(status, 200, "{report}");
        assert_eq!(report["time_zone"], "Europe/Paris");
        (report["from"].as_i64().unwrap(), report["to"].as_i64().unwrap())
    };
    // 2026-03-29 runs from 23:00 UTC the day before to 22:00 UTC; 2026-10-25 from
    // 22:00 UTC the day before to 23:00 UTC.
    assert_eq!(period("2026-03-29", "2026-03-29"), (1_774_738_800, 1_774_821_600));
    assert_eq!(period("2026-10-25", "2026-10-25"), (1_792_879_200, 1_792_969_200));

    assert!(svc.stop());
    let svc = Service::start(dir.path(), false);
    let client_admin = svc.token("ca@paris.test", "a long enough password");
    let (_, shown) = svc.request("GET", &format!("/v1/clients/{id}"), Some(&client_admin), None);
    assert_eq!(shown["time_zone"], "Europe/Paris", "after a restart");
    // Back to a fixed offset, which drops the name.
    let (status, changed) = patch(&svc, &client_admin, id, json!({ "time_zone": "+01:00" }));
    assert_eq!((status, changed["time_zone"].as_str()), (200, Some("+01:00")));
    let (status, changed) = patch(&svc, &client_admin, id, json!({ "time_zone": "America/New_York" }));
    assert_eq!((status, changed["time_zone"].as_str()), (200, Some("America/New_York")));
}

/// The daily settlement cut-over closes every open batch of the client by itself once
/// its local time has passed, once a day, audited as the system's.
#[test]
fn the_settlement_cutover_closes_open_batches_by_itself() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::start(dir.path(), true);
    let admin = svc.token(ADMIN_EMAIL, ADMIN_PASSWORD);
    let (id, client_admin, key) = client(&svc, &admin, "nightly");
    let (_, other_key) = svc.client_with_key(&admin, "untouched");
    for (k, currency) in [(&key, "USD"), (&key, "EUR"), (&other_key, "USD")] {
        let (status, _) =
            svc.post("/v1/transactions", k, json!({ "kind": "payment", "amount": "2.00", "currency": currency }));
        assert_eq!(status, 201);
    }
    let open =
        |k: &str| svc.request("GET", "/v1/batches?status=open", Some(k), None).1["data"].as_array().unwrap().len();
    assert_eq!(open(&key), 2);
    // Midnight local: always past, so the cut-over is due at once.
    assert_eq!(patch(&svc, &client_admin, id, json!({ "settlement_cutover": "00:00" })).0, 200);
    let started = std::time::Instant::now();
    while open(&key) > 0 {
        assert!(started.elapsed() < std::time::Duration::from_secs(15), "the open batches were not closed");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let (_, closed) = svc.request("GET", "/v1/batches?status=closed", Some(&key), None);
    assert_eq!(closed["data"].as_array().unwrap().len(), 2);
    assert_eq!(open(&other_key), 1, "another client's batch stays open");
    let (_, audit) = svc.request("GET", "/v1/audit?action=batch.close", Some(&client_admin), None);
    let entries = audit["data"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    assert!(entries.iter().all(|e| e["actor_type"] == "system" && e["outcome"] == "ok"), "{entries:?}");
    // Once a day: a payment after it stays in the open batch.
    let (status, _) =
        svc.post("/v1/transactions", &key, json!({ "kind": "payment", "amount": "2.00", "currency": "USD" }));
    assert_eq!(status, 201);
    std::thread::sleep(std::time::Duration::from_millis(2 * 2_000 + 500));
    assert_eq!(open(&key), 1);
}

/// The platform admin's cross-client view: each client with its number of users and
/// its captured volume per currency; a client admin's list carries neither.
#[test]
fn the_platform_admin_sees_each_clients_users_and_volume() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::start(dir.path(), true);
    let admin = svc.token(ADMIN_EMAIL, ADMIN_PASSWORD);
    let (id, client_admin, key) = client(&svc, &admin, "volume");
    for amount in ["10.00", "2.50"] {
        let (status, _) =
            svc.post("/v1/transactions", &key, json!({ "kind": "payment", "amount": amount, "currency": "USD" }));
        assert_eq!(status, 201);
    }
    let (_, list) = svc.request("GET", "/v1/clients", Some(&admin), None);
    let row = list["data"].as_array().unwrap().iter().find(|c| c["id"] == id).unwrap().clone();
    assert_eq!(row["user_count"], 1, "{row}");
    assert_eq!(row["volume"], json!([{ "currency": "USD", "captured": "12.50", "net": "12.50" }]));
    let (_, own) = svc.request("GET", "/v1/clients", Some(&client_admin), None);
    assert!(own["data"][0].get("volume").is_none() && own["data"][0].get("user_count").is_none(), "{own}");
}
