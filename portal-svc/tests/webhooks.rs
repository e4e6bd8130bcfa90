//! Webhooks (issue 17) over real processes: the service binary, started with
//! `--allow-private-webhooks` and fast retries, and a receiver this test runs on
//! 127.0.0.1 that checks every signature itself (HMAC-SHA256, not the service's code).
//! Every 2xx money movement yields exactly one event id of its type; signatures verify
//! (and not under another secret); a receiver that is down gets everything afterwards,
//! each client's first deliveries in seq order, and never another client's events;
//! kill -9 during deliveries loses and invents nothing; private urls, other schemes and
//! redirects are refused; a slow receiver does not slow payments.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{ADMIN_EMAIL, ADMIN_PASSWORD, Launch, Service};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

const PASSWORD: &str = "a long enough password";
const METRICS_TOKEN: &str = "a metrics token of some length";
/// Fast retries: 50 ms, doubling.
const FAST: [&str; 5] = ["--allow-private-webhooks", "--webhook-retry-base-ms", "50", "--webhook-attempts-max", "30"];

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Got {
    path: String,
    signature: String,
    body: Vec<u8>,
    event: Value,
}

#[derive(Default)]
struct Shared {
    got: Mutex<Vec<Got>>,
    /// Paths that are "down": the connection is closed without an answer.
    down: Mutex<HashSet<String>>,
    /// Paths that answer 302 to /redirected.
    redirect: Mutex<HashSet<String>>,
    delay_ms: AtomicU64,
    stop: AtomicBool,
}

/// A tiny HTTP/1.1 server: one thread per connection, `Connection: close`.
struct Receiver {
    port: u16,
    shared: Arc<Shared>,
}

impl Receiver {
    fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Shared::default());
        let accept = Arc::clone(&shared);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if accept.stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                let shared = Arc::clone(&accept);
                std::thread::spawn(move || handle(stream, &shared));
            }
        });
        Receiver { port, shared }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn got(&self, path: &str) -> Vec<Got> {
        self.shared.got.lock().unwrap().iter().filter(|g| g.path == path).cloned().collect()
    }

    fn set_down(&self, path: &str, down: bool) {
        let mut set = self.shared.down.lock().unwrap();
        if down {
            set.insert(path.to_string());
        } else {
            set.remove(path);
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn handle(mut stream: TcpStream, shared: &Shared) {
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
    let (mut length, mut signature) = (0usize, String::new());
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).is_err() || header == "\r\n" || header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.trim_end().split_once(':') {
            match name.to_ascii_lowercase().as_str() {
                "content-length" => length = value.trim().parse().unwrap_or(0),
                "portal-signature" => signature = value.trim().to_string(),
                _ => {}
            }
        }
    }
    let mut body = vec![0; length];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    if shared.down.lock().unwrap().contains(&path) {
        let _ = stream.shutdown(std::net::Shutdown::Both);
        return;
    }
    let redirect = shared.redirect.lock().unwrap().contains(&path);
    let delay = shared.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        std::thread::sleep(Duration::from_millis(delay));
    }
    let event = serde_json::from_slice(&body).unwrap_or(Value::Null);
    shared.got.lock().unwrap().push(Got { path, signature, body, event });
    let answer = if redirect {
        "HTTP/1.1 302 Found\r\nLocation: /redirected\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    } else {
        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
    };
    let _ = stream.write_all(answer.as_bytes());
}

/// Checks `Portal-Signature: t=..,v1=..` over `body` under `secret`, independently of
/// the service's code.
fn signed_by(secret: &str, header: &str, body: &[u8]) -> bool {
    let field = |name: &str| header.split(',').find_map(|p| p.strip_prefix(name)).unwrap_or("");
    let (t, v1) = (field("t="), field("v1="));
    if t.parse::<i64>().is_err() {
        return false;
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    hex::encode(mac.finalize().into_bytes()) == v1
}

fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A client with an API key and a client_admin's session.
struct Client {
    id: i64,
    key: String,
    admin: String,
}

fn client(svc: &Service, admin: &str, name: &str) -> Client {
    let (id, key) = svc.client_with_key(admin, name);
    let email = format!("admin@{}.test", name.to_lowercase());
    let (status, body) = svc.post(
        "/v1/users",
        admin,
        json!({ "email": email, "password": PASSWORD, "role": "client_admin", "client_id": id }),
    );
    assert_eq!(status, 201, "{body}");
    Client { id, key, admin: svc.token(&email, PASSWORD) }
}

/// Creates an endpoint; returns (id, secret).
fn endpoint(svc: &Service, c: &Client, url: &str, events: &[&str]) -> (i64, String) {
    let (status, body) = svc.post("/v1/webhook-endpoints", &c.admin, json!({ "url": url, "events": events }));
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["active"], true);
    let secret = body["secret"].as_str().unwrap().to_string();
    assert!(secret.starts_with("whsec_"), "{secret}");
    (body["id"].as_i64().unwrap(), secret)
}

fn pay(svc: &Service, key: &str, amount: &str) -> Value {
    let (status, body) =
        svc.post("/v1/transactions", key, json!({ "kind": "payment", "amount": amount, "currency": "USD" }));
    assert_eq!(status, 201, "{body}");
    body
}

const ALL: [&str; 6] =
    ["payment.created", "payment.captured", "payment.voided", "refund.created", "adjustment.created", "batch.closed"];

#[test]
fn every_money_movement_yields_one_signed_event_of_its_type() {
    let dir = tempfile::tempdir().unwrap();
    let launch = Launch {
        args: FAST.map(String::from).to_vec(),
        env: vec![("PORTAL_METRICS_TOKEN".to_string(), METRICS_TOKEN.to_string())],
        ..Launch::default()
    };
    let svc = Service::start_with(dir.path(), true, &launch);
    let root = svc.token(ADMIN_EMAIL, ADMIN_PASSWORD);
    let a = client(&svc, &root, "A");
    let receiver = Receiver::start();
    let (endpoint_id, secret) = endpoint(&svc, &a, &receiver.url("/a"), &ALL);

    // Every kind of money movement, each answer kept: (type, object).
    let mut expected: Vec<(&str, Value)> = Vec::new();
    let (status, sale) = svc.post(
        "/v1/transactions",
        &a.key,
        json!({ "kind": "payment", "amount": "10.00", "currency": "USD", "description": "coffee" }),
    );
    assert_eq!(status, 201);
    expected.push(("payment.created", sale.clone()));
    let (_, auth) = svc.post(
        "/v1/transactions",
        &a.key,
        json!({ "kind": "payment", "amount": "20.00", "currency": "USD", "capture": false }),
    );
    expected.push(("payment.created", auth.clone()));
    let (status, capture) =
        svc.post(&format!("/v1/transactions/{}/capture", auth["id"].as_str().unwrap()), &a.key, json!({}));
    assert_eq!(status, 201, "{capture}");
    expected.push(("payment.captured", capture));
    let (_, auth2) = svc.post(
        "/v1/transactions",
        &a.key,
        json!({ "kind": "payment", "amount": "5.00", "currency": "USD", "capture": false }),
    );
    expected.push(("payment.created", auth2.clone()));
    let (status, void) =
        svc.post(&format!("/v1/transactions/{}/void", auth2["id"].as_str().unwrap()), &a.key, json!({}));
    assert_eq!(status, 201, "{void}");
    expected.push(("payment.voided", void));
    let (status, refund) = svc.post(
        &format!("/v1/transactions/{}/refunds", sale["id"].as_str().unwrap()),
        &a.key,
        json!({ "amount": "3.00" }),
    );
    assert_eq!(status, 201, "{refund}");
    expected.push(("refund.created", refund));
    let (_, adjustment) =
        svc.post("/v1/transactions", &a.key, json!({ "kind": "adjustment", "amount": "-1.50", "currency": "USD" }));
    expected.push(("adjustment.created", adjustment));
    // A refused movement (422) makes no event.
    let (status, _) = svc.post(
        &format!("/v1/transactions/{}/refunds", sale["id"].as_str().unwrap()),
        &a.key,
        json!({ "amount": "99.00" }),
    );
    assert_eq!(status, 422);
    let (status, batch) = svc.post("/v1/batches/close", &a.key, json!({ "currency": "USD" }));
    assert_eq!(status, 200, "{batch}");
    expected.push(("batch.closed", batch));

    wait_until("every event", Duration::from_secs(30), || receiver.got("/a").len() >= expected.len());
    std::thread::sleep(Duration::from_millis(300));
    let got = receiver.got("/a");
    assert_eq!(got.len(), expected.len(), "one delivery per movement");
    for g in &got {
        assert!(signed_by(&secret, &g.signature, &g.body), "the signature verifies: {}", g.signature);
        assert!(!signed_by("whsec_wrong", &g.signature, &g.body), "not under another secret");
        let mut tampered = g.body.clone();
        tampered.push(b' ');
        assert!(!signed_by(&secret, &g.signature, &tampered), "not over another body");
        assert_eq!(g.event["object"], "event");
        assert_eq!(g.event["client_id"], a.id);
    }
    // Exactly one event id per movement, of its type, with the object as answered (the
    // transaction as it stood at its commit, description included).
    for ((kind, object), g) in expected.iter().zip(&got) {
        assert_eq!(g.event["type"], *kind, "{}", g.event);
        assert_eq!(&g.event["data"]["object"], object, "{kind}");
    }
    assert_eq!(got[0].event["data"]["object"]["description"], "coffee");
    let ids: HashSet<&str> = got.iter().map(|g| g.event["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), expected.len(), "distinct ids");
    let seqs: Vec<i64> = got.iter().map(|g| g.event["seq"].as_i64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "in seq order: {seqs:?}");

    // GET /v1/events lists the same events, newest first, and filters by type.
    let (status, list) = svc.request("GET", "/v1/events?limit=100", Some(&a.key), None);
    assert_eq!(status, 200, "{list}");
    let listed: Vec<&Value> = list["data"].as_array().unwrap().iter().collect();
    assert_eq!(listed.len(), expected.len());
    for (listed, g) in listed.iter().rev().zip(&got) {
        assert_eq!(**listed, g.event);
    }
    let (_, refunds) = svc.request("GET", "/v1/events?type=refund.created", Some(&a.key), None);
    assert_eq!(refunds["data"].as_array().unwrap().len(), 1);
    let newest = listed[0]["id"].as_str().unwrap();
    let (_, page) = svc.request("GET", &format!("/v1/events?limit=2&starting_after={newest}"), Some(&a.key), None);
    assert_eq!(page["data"][0], *listed[1]);
    assert_eq!(page["has_more"], true);
    let (status, bad) = svc.request("GET", "/v1/events?type=payment.exploded", Some(&a.key), None);
    assert_eq!((status, common::error_code(&bad)), (400, "invalid_type".to_string()));

    // The delivery log: each delivery succeeded on its first attempt, with status and
    // latency.
    let (status, log) =
        svc.request("GET", &format!("/v1/webhook-endpoints/{endpoint_id}/deliveries?limit=100"), Some(&a.admin), None);
    assert_eq!(status, 200, "{log}");
    let deliveries = log["data"].as_array().unwrap();
    assert_eq!(deliveries.len(), expected.len());
    for d in deliveries {
        assert_eq!(d["status"], "succeeded", "{d}");
        assert_eq!(d["attempts"][0]["status_code"], 200, "{d}");
        assert!(d["attempts"][0]["latency_ms"].as_i64().unwrap() >= 0);
    }

    // Manual redelivery: the same event id again.
    let first = &deliveries[deliveries.len() - 1];
    let (status, again) = svc.post(
        &format!("/v1/webhook-endpoints/{endpoint_id}/deliveries/{}/redeliver", first["id"]),
        &a.admin,
        json!({}),
    );
    assert_eq!(status, 201, "{again}");
    assert_eq!((again["redelivery"].clone(), again["event_id"].clone()), (json!(true), first["event_id"].clone()));
    wait_until("the redelivery", Duration::from_secs(10), || receiver.got("/a").len() > expected.len());
    assert_eq!(receiver.got("/a").last().unwrap().event["id"], first["event_id"]);

    // A rotated secret signs what follows; the old one no longer does.
    let (status, rotated) =
        svc.post(&format!("/v1/webhook-endpoints/{endpoint_id}/rotate-secret"), &a.admin, json!({}));
    assert_eq!(status, 200, "{rotated}");
    let new_secret = rotated["secret"].as_str().unwrap().to_string();
    assert_ne!(new_secret, secret);
    let (_, one) = svc.request("GET", &format!("/v1/webhook-endpoints/{endpoint_id}"), Some(&a.admin), None);
    assert!(one.get("secret").is_none(), "the secret is shown only once: {one}");
    let before = receiver.got("/a").len();
    pay(&svc, &a.key, "1.00");
    wait_until("a payment after the rotation", Duration::from_secs(10), || receiver.got("/a").len() > before);
    let last = receiver.got("/a").pop().unwrap();
    assert!(signed_by(&new_secret, &last.signature, &last.body) && !signed_by(&secret, &last.signature, &last.body));

    // Disabled: nothing more is delivered; the log stays.
    let (status, disabled) =
        svc.request("DELETE", &format!("/v1/webhook-endpoints/{endpoint_id}"), Some(&a.admin), None);
    assert_eq!((status, disabled["active"].clone()), (200, json!(false)));
    let before = receiver.got("/a").len();
    pay(&svc, &a.key, "2.00");
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(receiver.got("/a").len(), before, "a disabled endpoint gets nothing");
    let (status, _) =
        svc.request("GET", &format!("/v1/webhook-endpoints/{endpoint_id}/deliveries"), Some(&a.admin), None);
    assert_eq!(status, 200);

    // /metrics: the follower is up and caught up; attempts and their latency counted.
    let (status, metrics) = svc.request("GET", "/metrics", Some(METRICS_TOKEN), None);
    assert_eq!(status, 200);
    let metrics = metrics.as_str().unwrap().to_string();
    for line in [
        "portal_events_feed_lag_records 0",
        "portal_events_follower_up 1",
        "portal_events_follower_errors_total 0",
        "portal_webhook_deliveries_pending 0",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in\n{metrics}");
    }
    let successes = metrics
        .lines()
        .find_map(|l| l.strip_prefix("portal_webhook_delivery_attempts_total{outcome=\"success\"} "))
        .unwrap_or_else(|| panic!("no successful attempts counted in\n{metrics}"));
    assert!(successes.parse::<u64>().unwrap() >= expected.len() as u64);
    assert!(metrics.contains("portal_webhook_delivery_duration_seconds_bucket"), "{metrics}");

    // Every action is audited.
    let (_, audit) = svc.request("GET", "/v1/audit?limit=100", Some(&a.admin), None);
    let actions: Vec<&str> = audit["data"].as_array().unwrap().iter().filter_map(|e| e["action"].as_str()).collect();
    for action in [
        "webhook_endpoint.create",
        "webhook_endpoint.rotate_secret",
        "webhook_endpoint.delete",
        "webhook_delivery.redeliver",
    ] {
        assert!(actions.contains(&action), "{action} in {actions:?}");
    }
    assert!(svc.stop());
    // Neither secret is anywhere under the data directory.
    for path in walk(dir.path()) {
        let bytes = std::fs::read(&path).unwrap();
        for s in [&secret, &new_secret] {
            assert!(!bytes.windows(s.len()).any(|w| w == s.as_bytes()), "{} holds a secret", path.display());
        }
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

/// First deliveries: each event id's first arrival, in arrival order.
fn first_arrivals(got: &[Got]) -> Vec<Value> {
    let mut seen = HashSet::new();
    got.iter().filter(|g| seen.insert(g.event["id"].as_str().unwrap().to_string())).map(|g| g.event.clone()).collect()
}

#[test]
fn a_receiver_down_for_a_while_gets_every_event_in_order_and_only_its_clients() {
    let dir = tempfile::tempdir().unwrap();
    let svc =
        Service::start_with(dir.path(), true, &Launch { args: FAST.map(String::from).to_vec(), ..Launch::default() });
    let root = svc.token(ADMIN_EMAIL, ADMIN_PASSWORD);
    let (a, b) = (client(&svc, &root, "A"), client(&svc, &root, "B"));
    let receiver = Receiver::start();
    receiver.set_down("/a", true);
    receiver.set_down("/b", true);
    endpoint(&svc, &a, &receiver.url("/a"), &ALL);
    endpoint(&svc, &b, &receiver.url("/b"), &["payment.created"]);
    let (mut ids_a, mut ids_b) = (Vec::new(), Vec::new());
    for i in 0..12 {
        ids_a.push(pay(&svc, &a.key, &format!("{}.00", i + 1))["id"].as_str().unwrap().to_string());
        ids_b.push(pay(&svc, &b.key, &format!("{}.01", i + 1))["id"].as_str().unwrap().to_string());
    }
    // B also moves money of types its endpoint did not subscribe to.
    let (_, adjustment) =
        svc.post("/v1/transactions", &b.key, json!({ "kind": "adjustment", "amount": "4.00", "currency": "USD" }));
    assert!(adjustment["id"].is_string());
    std::thread::sleep(Duration::from_millis(1500));
    assert!(receiver.got("/a").is_empty() && receiver.got("/b").is_empty());
    receiver.set_down("/a", false);
    receiver.set_down("/b", false);
    wait_until("every event after the receiver came back", Duration::from_secs(40), || {
        first_arrivals(&receiver.got("/a")).len() >= ids_a.len()
            && first_arrivals(&receiver.got("/b")).len() >= ids_b.len()
    });
    std::thread::sleep(Duration::from_millis(300));
    for (path, client, ids) in [("/a", &a, &ids_a), ("/b", &b, &ids_b)] {
        let firsts = first_arrivals(&receiver.got(path));
        let tx_ids: Vec<&str> = firsts.iter().map(|e| e["data"]["object"]["id"].as_str().unwrap()).collect();
        assert_eq!(tx_ids, ids.iter().map(String::as_str).collect::<Vec<_>>(), "{path}: all, in commit order");
        let seqs: Vec<i64> = firsts.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{path}: first deliveries in seq order: {seqs:?}");
        for e in &firsts {
            assert_eq!(e["client_id"], client.id, "{path} got another client's event: {e}");
            assert_eq!(e["type"], "payment.created");
        }
    }
    // The failed attempts are in the log.
    let (_, endpoints) = svc.request("GET", "/v1/webhook-endpoints", Some(&a.admin), None);
    let id = endpoints["data"][0]["id"].as_i64().unwrap();
    let (_, log) =
        svc.request("GET", &format!("/v1/webhook-endpoints/{id}/deliveries?limit=100"), Some(&a.admin), None);
    let oldest = log["data"].as_array().unwrap().last().unwrap().clone();
    assert!(oldest["attempt_count"].as_i64().unwrap() >= 2, "{oldest}");
    assert!(oldest["attempts"][0]["error"].is_string() && oldest["attempts"][0]["status_code"].is_null(), "{oldest}");
    // Another client's endpoint and events are not found.
    let (status, _) = svc.request("GET", &format!("/v1/webhook-endpoints/{id}"), Some(&b.admin), None);
    assert_eq!(status, 404);
    let (_, events_b) = svc.request("GET", "/v1/events?limit=100", Some(&b.key), None);
    assert!(events_b["data"].as_array().unwrap().iter().all(|e| e["client_id"] == b.id));
    let (status, _) = svc.request(
        "GET",
        &format!("/v1/events?starting_after={}", firsts_id(&receiver.got("/a"))),
        Some(&b.key),
        None,
    );
    assert_eq!(status, 404, "another client's event is no cursor");
}

fn firsts_id(got: &[Got]) -> String {
    got[0].event["id"].as_str().unwrap().to_string()
}

#[test]
fn kill9_during_deliveries_loses_nothing_and_invents_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let launch = Launch { args: FAST.map(String::from).to_vec(), ..Launch::default() };
    let mut svc = Service::start_with(dir.path(), true, &launch);
    let root = svc.token(ADMIN_EMAIL, ADMIN_PASSWORD);
    let a = client(&svc, &root, "A");
    let receiver = Receiver::start();
    receiver.shared.delay_ms.store(40, Ordering::SeqCst);
    endpoint(&svc, &a, &receiver.url("/a"), &ALL);
    let mut tx_ids = Vec::new();
    for round in 0..3 {
        for i in 0..15 {
            tx_ids.push(pay(&svc, &a.key, &format!("{}.{:02}", round + 1, i))["id"].as_str().unwrap().to_string());
        }
        // Killed while deliveries are in flight (some received, most not).
        wait_until("some deliveries", Duration::from_secs(20), || !receiver.got("/a").is_empty());
        let _ = svc.child.kill();
        let _ = svc.child.wait();
        svc = Service::start_with(dir.path(), true, &launch);
    }
    wait_until("every event after the restarts", Duration::from_secs(60), || {
        first_arrivals(&receiver.got("/a")).len() >= tx_ids.len()
    });
    std::thread::sleep(Duration::from_millis(500));
    let got = receiver.got("/a");
    eprintln!("{} deliveries of {} events across 3 kills", got.len(), tx_ids.len());
    // One event id per transaction (however often it arrived), and no other.
    let mut by_tx: BTreeMap<String, HashSet<String>> = BTreeMap::new();
    let mut by_id: HashMap<String, Value> = HashMap::new();
    for g in &got {
        let tx = g.event["data"]["object"]["id"].as_str().unwrap().to_string();
        let id = g.event["id"].as_str().unwrap().to_string();
        by_tx.entry(tx).or_default().insert(id.clone());
        if let Some(seen) = by_id.insert(id, g.event.clone()) {
            assert_eq!(seen, g.event, "the same event id always carries the same event");
        }
    }
    assert_eq!(by_tx.len(), tx_ids.len(), "every payment, nothing else");
    for tx in &tx_ids {
        assert_eq!(by_tx.get(tx).map(HashSet::len), Some(1), "{tx}: exactly one event id");
    }
    let firsts = first_arrivals(&got);
    let seqs: Vec<i64> = firsts.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "first deliveries in seq order across restarts: {seqs:?}");
    let (_, events) = svc.request("GET", "/v1/events?limit=100", Some(&a.key), None);
    assert_eq!(events["data"].as_array().unwrap().len(), tx_ids.len(), "no event invented in the list either");
}

#[test]
fn urls_are_refused_by_scheme_and_address_and_redirects_are_failures() {
    let dir = tempfile::tempdir().unwrap();
    let strict = Service::start(dir.path(), true);
    let root = strict.token(ADMIN_EMAIL, ADMIN_PASSWORD);
    let a = client(&strict, &root, "A");
    for url in [
        "http://127.0.0.1:9/hook",
        "http://[::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://10.0.0.7/hook",
        "http://169.254.169.254/latest",
        "http://localhost:8080/hook",
        "http://2130706433/hook",
        "ftp://hooks.example.com/hook",
        "file:///etc/passwd",
    ] {
        let (status, body) = strict.post("/v1/webhook-endpoints", &a.admin, json!({ "url": url, "events": ALL }));
        assert!(status == 422 || status == 400, "{url}: {status} {body}");
        if status == 422 {
            assert_eq!(common::error_code(&body), "url_not_allowed", "{url}");
        }
    }
    let (status, body) = strict.post(
        "/v1/webhook-endpoints",
        &a.admin,
        json!({ "url": "https://hooks.example.invalid/x", "events": ["payment.exploded"] }),
    );
    assert_eq!((status, common::error_code(&body)), (422, "invalid_event_type".to_string()), "{body}");
    assert_eq!(body["error"]["param"], "events");
    let (status, _) = strict.post(
        "/v1/webhook-endpoints",
        &a.key,
        json!({ "url": "https://hooks.example.invalid/x", "events": ["payment.created"] }),
    );
    assert_eq!(status, 403, "an API key cannot");
    let (status, body) = strict.post(
        "/v1/webhook-endpoints",
        &a.admin,
        json!({ "url": "https://hooks.example.invalid/x", "events": ["payment.created"] }),
    );
    assert_eq!(status, 201, "{body}");
    drop(strict);

    // With private addresses allowed: a 302 is a failed attempt, never followed.
    let dir = tempfile::tempdir().unwrap();
    let args = ["--allow-private-webhooks", "--webhook-retry-base-ms", "30", "--webhook-attempts-max", "2"];
    let svc =
        Service::start_with(dir.path(), true, &Launch { args: args.map(String::from).to_vec(), ..Launch::default() });
    let root = svc.token(ADMIN_EMAIL, ADMIN_PASSWORD);
    let a = client(&svc, &root, "A");
    let receiver = Receiver::start();
    receiver.shared.redirect.lock().unwrap().insert("/moved".to_string());
    let (id, _) = endpoint(&svc, &a, &receiver.url("/moved"), &["payment.created"]);
    pay(&svc, &a.key, "1.00");
    let path = format!("/v1/webhook-endpoints/{id}/deliveries");
    let mut log = Value::Null;
    wait_until("the delivery to fail", Duration::from_secs(20), || {
        log = svc.request("GET", &path, Some(&a.admin), None).1;
        log["data"][0]["status"] == "failed"
    });
    let delivery = &log["data"][0];
    assert_eq!(delivery["attempt_count"], 2, "{delivery}");
    assert!(delivery["attempts"].as_array().unwrap().iter().all(|t| t["status_code"] == 302), "{delivery}");
    assert_eq!(receiver.got("/moved").len(), 2);
    assert!(receiver.got("/redirected").is_empty(), "the redirect was not followed");

    // No answer within 10 s is a failed attempt too.
    let b = client(&svc, &root, "B");
    let sleepy = Receiver::start();
    sleepy.shared.delay_ms.store(12_000, Ordering::SeqCst);
    let (id, _) = endpoint(&svc, &b, &sleepy.url("/sleepy"), &["payment.created"]);
    pay(&svc, &b.key, "1.00");
    let path = format!("/v1/webhook-endpoints/{id}/deliveries");
    let mut log = Value::Null;
    wait_until("the first attempt to time out", Duration::from_secs(30), || {
        log = svc.request("GET", &path, Some(&b.admin), None).1;
        log["data"][0]["attempts"].as_array().is_some_and(|a| !a.is_empty())
    });
    let attempt = &log["data"][0]["attempts"][0];
    assert!(attempt["status_code"].is_null(), "{attempt}");
    assert!(attempt["error"].as_str().unwrap().contains("10 s"), "{attempt}");
    assert!((10_000..12_000).contains(&attempt["latency_ms"].as_i64().unwrap()), "{attempt}");
}

#[test]
fn a_slow_receiver_does_not_slow_payments() {
    const ROUNDS: usize = 6;
    const PER_ROUND: usize = 8;
    let dir = tempfile::tempdir().unwrap();
    let svc =
        Service::start_with(dir.path(), true, &Launch { args: FAST.map(String::from).to_vec(), ..Launch::default() });
    let root = svc.token(ADMIN_EMAIL, ADMIN_PASSWORD);
    let (a, b) = (client(&svc, &root, "A"), client(&svc, &root, "B"));
    // B's endpoint answers after a second; A has none. Their payments alternate in
    // rounds, so both rates are measured under the same load of the machine (the other
    // tests run beside this one).
    let receiver = Receiver::start();
    receiver.shared.delay_ms.store(1000, Ordering::SeqCst);
    endpoint(&svc, &b, &receiver.url("/slow"), &ALL);
    let (mut without, mut with) = (Duration::ZERO, Duration::ZERO);
    for round in 0..ROUNDS {
        for (c, total) in [(&a, &mut without), (&b, &mut with)] {
            let started = Instant::now();
            for i in 0..PER_ROUND {
                pay(&svc, &c.key, &format!("{}.{:02}", round + 1, i));
            }
            *total += started.elapsed();
        }
    }
    let rate = |d: Duration| (ROUNDS * PER_ROUND) as f64 / d.as_secs_f64();
    let (without, with) = (rate(without), rate(with));
    eprintln!("payments/s: {without:.0} without an endpoint, {with:.0} with one taking 1 s per delivery");
    assert!(with * 3.0 >= without, "payments slowed by a slow receiver: {with:.0}/s against {without:.0}/s");
    // The deliveries are still under way (a second each, one at a time).
    let got = receiver.got("/slow").len();
    assert!(got < ROUNDS * PER_ROUND / 4, "{got} deliveries already");
}

#[test]
fn tickets_and_rollouts_make_events_and_the_stream_shows_them_live() {
    let dir = tempfile::tempdir().unwrap();
    let svc =
        Service::start_with(dir.path(), true, &Launch { args: FAST.map(String::from).to_vec(), ..Launch::default() });
    let root = svc.token(ADMIN_EMAIL, ADMIN_PASSWORD);
    let (a, b) = (client(&svc, &root, "A"), client(&svc, &root, "B"));
    let receiver = Receiver::start();
    endpoint(&svc, &a, &receiver.url("/a"), &["ticket.updated", "rollout.completed", "payment.created"]);

    // The stream of A's events, as the web portal reads it (a session, not a key).
    let addr = svc.base.trim_start_matches("http://").to_string();
    let mut stream = TcpStream::connect(&addr).unwrap();
    write!(
        stream,
        "GET /v1/events/stream HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\nAccept: text/event-stream\r\n\r\n",
        a.admin
    )
    .unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut lines = BufReader::new(stream.try_clone().unwrap());
    let mut status = String::new();
    lines.read_line(&mut status).unwrap();
    assert!(status.contains(" 200 "), "{status}");
    let (status, _) = svc.request("GET", "/v1/events/stream", Some(&a.key), None);
    assert_eq!(status, 403, "the stream is for signed-in users");

    // B's payment must not appear on A's stream; A's must.
    pay(&svc, &b.key, "7.00");
    let mine = pay(&svc, &a.key, "8.00");
    let mut streamed = Vec::new();
    let mut line = String::new();
    while streamed.is_empty() {
        line.clear();
        assert!(lines.read_line(&mut line).unwrap() > 0, "the stream ended");
        if let Some(data) = line.trim_end().strip_prefix("data: ") {
            let event: Value = serde_json::from_str(data).unwrap();
            streamed.push(event);
        }
    }
    assert_eq!(streamed[0]["client_id"], a.id, "{}", streamed[0]);
    assert_eq!(streamed[0]["data"]["object"]["id"], mine["id"]);

    // ticket.updated, with the ticket as it is after the change.
    let (_, ticket) = svc.post("/v1/tickets", &a.key, json!({ "subject": "s", "body": "b" }));
    let (status, changed) = svc.request(
        "PATCH",
        &format!("/v1/tickets/{}", ticket["id"]),
        Some(&a.key),
        Some(&json!({ "status": "in_progress" }).to_string()),
    );
    assert_eq!(status, 200, "{changed}");
    // rollout.completed, when the last device reports the version.
    let (status, device) = svc.post("/v1/devices", &a.admin, json!({ "serial": "A-1", "model": "T1" }));
    assert_eq!(status, 201, "{device}");
    let (_, group) = svc.post("/v1/device-groups", &a.admin, json!({ "name": "front", "config": {} }));
    let (status, _) = svc.request(
        "PUT",
        &format!("/v1/devices/{}/group", device["id"]),
        Some(&a.admin),
        Some(&json!({ "group_id": group["id"] }).to_string()),
    );
    assert_eq!(status, 200);
    let (status, rollout) =
        svc.post(&format!("/v1/device-groups/{}/firmware", group["id"]), &a.admin, json!({ "version": "2.0" }));
    assert_eq!(status, 201, "{rollout}");
    let (status, _) = svc.post(
        &format!("/v1/devices/{}/heartbeat", device["id"]),
        &a.key,
        json!({ "firmware_version": "2.0", "diagnostics": {} }),
    );
    assert_eq!(status, 200);
    wait_until("the ticket and rollout events", Duration::from_secs(20), || {
        let types: Vec<Value> = receiver.got("/a").iter().map(|g| g.event["type"].clone()).collect();
        types.contains(&json!("ticket.updated")) && types.contains(&json!("rollout.completed"))
    });
    let got = receiver.got("/a");
    let ticket_event = got.iter().find(|g| g.event["type"] == "ticket.updated").unwrap();
    assert_eq!(ticket_event.event["data"]["object"], changed);
    let rollout_event = got.iter().find(|g| g.event["type"] == "rollout.completed").unwrap();
    assert_eq!(rollout_event.event["data"]["object"]["id"], rollout["id"]);
    assert_eq!(rollout_event.event["data"]["object"]["status"], "completed");
    let (_, events) = svc.request("GET", "/v1/events?type=ticket.updated", Some(&a.key), None);
    assert_eq!(events["data"][0]["id"], ticket_event.event["id"]);
    // The service stops although a stream is open.
    assert!(svc.stop());
}
