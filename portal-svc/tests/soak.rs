//! The portal soak (issue 8): mixed traffic from several threads over two clients
//! (payments with and without `Idempotency-Key`, authorizations with captures and
//! voids, refunds including refused over-refunds, refused bad payments, batch closes,
//! device registrations and heartbeats, tickets and notes) while the service is
//! killed with SIGKILL at random moments and restarted on the same data directory.
//! Requests cut off by a kill are retried with the same `Idempotency-Key` where the
//! API has one, and otherwise recorded as having an unknown outcome.
//!
//! Afterwards, against the restarted service:
//! - every money movement answered 2xx is present exactly once, with its amount;
//! - nothing is present that was not acknowledged, except requests cut off by a kill
//!   (each found at most once, by its unique amount);
//! - nothing answered 4xx is present (bad payments by description; over-refunds by the
//!   payment's refunded total);
//! - the balance equals the sum of the movements; every batch's totals equal the
//!   transactions that count in it (and the service's own reconciliation agrees);
//! - every device, heartbeat, ticket and note acknowledged with 2xx is there;
//! - an acknowledged key still replays its original answer.
//!
//! Bounded: `PORTAL_SOAK_CYCLES` kill/restart cycles (default [`CYCLES_DEFAULT`],
//! about half a minute). `PORTAL_SOAK_SEED` replays a seed (printed at the start;
//! kill timing still depends on the machine). Long run:
//! `PORTAL_SOAK_CYCLES=100 cargo test -p portal-svc --test soak -- --nocapture`.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use common::{ADMIN_EMAIL, ADMIN_PASSWORD, Service};
use serde_json::{Value, json};

/// Kill/restart cycles when `PORTAL_SOAK_CYCLES` is unset: sized for CI (~30 s).
const CYCLES_DEFAULT: usize = 10;
/// Client threads: two per client.
const THREADS: usize = 4;
/// Traffic between two kills, in milliseconds (uniform in this range).
const RUN_MS: std::ops::Range<u64> = 300..1500;
/// How long a request that must be retried (it has an `Idempotency-Key`) may keep
/// failing to reach a service before the soak gives up: far above a restart.
const RETRY_SECS_MAX: u64 = 60;
/// Per-request timeout: no request of this soak takes near it.
const REQUEST_SECS_MAX: u64 = 20;
const PASSWORD: &str = "a long enough password";

/// SplitMix64: small, seeded, good enough to pick operations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// An index into a non-empty slice of `len`.
    fn index(&mut self, len: usize) -> usize {
        usize::try_from(self.below(len as u64)).unwrap()
    }
}

fn money(cents: i64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

fn minor(amount: &Value) -> i64 {
    let s = amount.as_str().unwrap_or_else(|| panic!("not an amount: {amount}"));
    let (sign, digits) = s.strip_prefix('-').map_or((1, s), |d| (-1, d));
    let (major, minor) = digits.split_once('.').unwrap();
    sign * (major.parse::<i64>().unwrap() * 100 + minor.parse::<i64>().unwrap())
}

/// Where the service currently listens (it moves at each restart).
struct Target {
    base: RwLock<String>,
}

/// What came back: a status with its body, or no answer at all (the service died).
type Reply = Result<(u16, bool, Value), String>;

struct Client {
    agent: ureq::Agent,
    target: Arc<Target>,
    requests: usize,
    statuses: HashMap<u16, usize>,
    cut_off: usize,
}

impl Client {
    fn new(target: Arc<Target>) -> Client {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(REQUEST_SECS_MAX)))
            .build()
            .into();
        Client { agent, target, requests: 0, statuses: HashMap::new(), cut_off: 0 }
    }

    fn send(&mut self, method: &str, path: &str, token: &str, key: Option<&str>, body: Option<&str>) -> Reply {
        let url = format!("{}{path}", self.target.base.read().unwrap());
        let auth = format!("Bearer {token}");
        self.requests += 1;
        let response = if method == "GET" {
            self.agent.get(&url).header("Authorization", &auth).call()
        } else {
            let mut r = self.agent.post(&url).header("Authorization", &auth).header("Content-Type", "application/json");
            if let Some(k) = key {
                r = r.header("Idempotency-Key", k);
            }
            r.send(body.unwrap_or(""))
        };
        let reply = response.and_then(|mut r| {
            let replayed = r.headers().get("Idempotent-Replayed").is_some_and(|v| v == "true");
            let status = r.status().as_u16();
            let text = r.body_mut().read_to_string()?;
            Ok((status, replayed, serde_json::from_str(&text).unwrap_or(Value::String(text))))
        });
        match reply {
            Ok((status, replayed, body)) => {
                *self.statuses.entry(status).or_default() += 1;
                assert!(status < 500, "{method} {path}: {status} {body}");
                Ok((status, replayed, body))
            }
            Err(e) => {
                self.cut_off += 1;
                Err(e.to_string())
            }
        }
    }

    /// Sends until an answer comes: only for requests that are safe to repeat (reads, and
    /// writes with an `Idempotency-Key`).
    fn until_answered(
        &mut self,
        method: &str,
        path: &str,
        token: &str,
        key: Option<&str>,
        body: Option<&str>,
    ) -> (u16, bool, Value) {
        let deadline = Instant::now() + Duration::from_secs(RETRY_SECS_MAX);
        loop {
            match self.send(method, path, token, key, body) {
                Ok(reply) => return reply,
                Err(e) => {
                    assert!(Instant::now() < deadline, "{method} {path}: no answer for {RETRY_SECS_MAX} s: {e}");
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
    }
}

/// A money movement (or an authorization/void, which move none) answered 2xx.
#[derive(Debug, Clone)]
struct Acked {
    id: String,
    kind: &'static str,
    cents: i64,
    /// For a capture, refund or void: the payment it acts on.
    ref_id: Option<String>,
    /// For replays: the request that made it.
    key: Option<String>,
    body: String,
}

/// What one thread did and was told.
#[derive(Debug, Default)]
struct Record {
    acked: Vec<Acked>,
    /// Authorizations (their ids): not a sale, so they count in no batch themselves.
    auths: HashSet<String>,
    /// Sales without a key that a kill cut off: (cents, description).
    unknown_sales: Vec<(i64, String)>,
    /// Payments answered 4xx: their descriptions.
    refused_payments: Vec<String>,
    /// Over-refunds answered 422.
    refused_refunds: usize,
    /// Own captured payments: id -> (captured, refunded) in cents, from 2xx answers.
    refundable: Vec<(String, i64, i64)>,
    batch_closes: usize,
    devices: Vec<(i64, String)>,
    /// (device id, marker in the diagnostics).
    heartbeats: Vec<(i64, String)>,
    tickets: Vec<(i64, String)>,
    /// (ticket id, note body).
    notes: Vec<(i64, String)>,
    replays: usize,
}

struct Tenant {
    key: String,
    admin: String,
}

struct Worker {
    thread: usize,
    http: Client,
    rng: Rng,
    tenant: Arc<Tenant>,
    record: Record,
    device: i64,
    n: u64,
}

impl Worker {
    fn pay(&mut self, key: Option<String>, cents: i64, capture: bool, description: &str) -> Option<(u16, Value)> {
        let body = json!({ "kind": "payment", "amount": money(cents), "currency": "USD", "capture": capture,
                           "description": description })
        .to_string();
        let tenant = Arc::clone(&self.tenant);
        let reply = match &key {
            Some(k) => Ok(self.http.until_answered("POST", "/v1/transactions", &tenant.key, Some(k), Some(&body))),
            None => self.http.send("POST", "/v1/transactions", &tenant.key, None, Some(&body)),
        };
        let Ok((status, _, tx)) = reply else {
            self.record.unknown_sales.push((cents, description.to_string()));
            return None;
        };
        if status == 201 {
            let id = tx["id"].as_str().unwrap().to_string();
            assert_eq!(minor(&tx["amount"]), cents, "{tx}");
            self.record.acked.push(Acked { id: id.clone(), kind: "payment", cents, ref_id: None, key, body });
            if capture {
                self.record.refundable.push((id, cents, 0));
            } else {
                self.record.auths.insert(id);
            }
        }
        Some((status, tx))
    }

    /// A capture, void or refund with a key, retried until answered.
    fn act(&mut self, payment: &str, action: &'static str, cents: Option<i64>) -> (u16, Value) {
        let key = format!("{action}-{}-{}", self.thread, self.n);
        let body = cents.map_or_else(String::new, |c| json!({ "amount": money(c) }).to_string());
        let path = format!("/v1/transactions/{payment}/{action}");
        let tenant = Arc::clone(&self.tenant);
        let (status, _, tx) = self.http.until_answered("POST", &path, &tenant.key, Some(&key), Some(&body));
        if status == 201 {
            let kind = match action {
                "capture" => "capture",
                "void" => "void",
                _ => "refund",
            };
            let id = tx["id"].as_str().unwrap().to_string();
            self.record.acked.push(Acked {
                id,
                kind,
                cents: cents.unwrap_or(0),
                ref_id: Some(payment.to_string()),
                key: Some(key),
                body,
            });
        }
        (status, tx)
    }

    fn step(&mut self) {
        self.n += 1;
        let (t, n) = (self.thread, self.n);
        let tenant = Arc::clone(&self.tenant);
        match self.rng.below(100) {
            0..25 => {
                let c = 100 + self.rng.below(10_000) as i64;
                let reply = self.pay(Some(format!("sale-{t}-{n}")), c, true, &format!("keyed {t}-{n}"));
                assert_eq!(reply.map(|r| r.0), Some(201));
            }
            25..40 => {
                // Unique amount per request, so one cut off by a kill is recognized by it.
                let c = 1_000_000 * (t as i64 + 1) + n as i64;
                if let Some((status, tx)) = self.pay(None, c, true, &format!("unkeyed {t}-{n}")) {
                    assert_eq!(status, 201, "{tx}");
                }
            }
            40..55 => {
                let c = 1_000 + self.rng.below(5_000) as i64;
                let (status, auth) =
                    self.pay(Some(format!("auth-{t}-{n}")), c, false, &format!("auth {t}-{n}")).unwrap();
                assert_eq!(status, 201, "{auth}");
                let id = auth["id"].as_str().unwrap().to_string();
                if self.rng.below(4) == 0 {
                    let (status, void) = self.act(&id, "void", None);
                    assert_eq!(status, 201, "{void}");
                } else {
                    let part = c - self.rng.below(500) as i64;
                    let (status, capture) = self.act(&id, "capture", Some(part));
                    assert_eq!(status, 201, "{capture}");
                    self.record.refundable.push((id, part, 0));
                }
            }
            55..68 => {
                let open: Vec<usize> = (0..self.record.refundable.len())
                    .filter(|&i| self.record.refundable[i].1 > self.record.refundable[i].2)
                    .collect();
                if open.is_empty() {
                    return;
                }
                let i = open[self.rng.index(open.len())];
                let (id, captured, refunded) = self.record.refundable[i].clone();
                let left = captured - refunded;
                if self.rng.below(3) == 0 {
                    let (status, body) = self.act(&id, "refunds", Some(left + 1));
                    assert_eq!((status, body["error"]["code"].as_str()), (422, Some("refund_exceeds_captured")));
                    self.record.refused_refunds += 1;
                    self.n += 1; // a fresh key for the refund below
                }
                let amount = 1 + self.rng.below(left as u64) as i64;
                let (status, refund) = self.act(&id, "refunds", Some(amount));
                assert_eq!(status, 201, "{refund}");
                self.record.refundable[i].2 += amount;
            }
            68..71 => {
                let description = format!("refused {t}-{n}");
                let body =
                    json!({ "kind": "payment", "amount": "1.234", "currency": "USD", "description": description });
                if let Ok((status, _, reply)) =
                    self.http.send("POST", "/v1/transactions", &tenant.key, None, Some(&body.to_string()))
                {
                    assert_eq!(status, 400, "{reply}");
                }
                self.record.refused_payments.push(description);
            }
            71..74 if t % 2 == 0 => {
                let body = json!({ "currency": "USD" }).to_string();
                if let Ok((status, _, reply)) =
                    self.http.send("POST", "/v1/batches/close", &tenant.key, None, Some(&body))
                {
                    assert!(status == 200 || status == 404, "{status} {reply}");
                    self.record.batch_closes += usize::from(status == 200);
                }
            }
            71..86 => {
                let marker = format!("hb {t}-{n}");
                let body =
                    json!({ "firmware_version": format!("1.{n}"), "diagnostics": { "soak": marker } }).to_string();
                let path = format!("/v1/devices/{}/heartbeat", self.device);
                if let Ok((status, _, reply)) = self.http.send("POST", &path, &tenant.key, None, Some(&body)) {
                    assert_eq!(status, 200, "{reply}");
                    self.record.heartbeats.push((self.device, marker));
                }
            }
            86..95 => {
                let subject = format!("ticket {t}-{n}");
                let body = json!({ "subject": subject, "body": "the till is slow" }).to_string();
                if let Ok((status, _, ticket)) = self.http.send("POST", "/v1/tickets", &tenant.key, None, Some(&body)) {
                    assert_eq!(status, 201, "{ticket}");
                    let id = ticket["id"].as_i64().unwrap();
                    self.record.tickets.push((id, subject));
                    let note = format!("note {t}-{n}");
                    let body = json!({ "resource_type": "ticket", "resource_id": id, "body": note }).to_string();
                    if let Ok((status, _, reply)) = self.http.send("POST", "/v1/notes", &tenant.key, None, Some(&body))
                    {
                        assert_eq!(status, 201, "{reply}");
                        self.record.notes.push((id, note));
                    }
                }
            }
            95..98 => {
                let serial = format!("SOAK-{t}-{n}");
                let body = json!({ "serial": serial, "model": "T1" }).to_string();
                if let Ok((status, _, device)) = self.http.send("POST", "/v1/devices", &tenant.admin, None, Some(&body))
                {
                    assert_eq!(status, 201, "{device}");
                    self.record.devices.push((device["id"].as_i64().unwrap(), serial));
                }
            }
            _ => {
                let keyed: Vec<Acked> =
                    self.record.acked.iter().filter(|a| a.key.is_some() && a.kind == "payment").cloned().collect();
                if keyed.is_empty() {
                    return;
                }
                let a = &keyed[self.rng.index(keyed.len())];
                let (status, replayed, tx) =
                    self.http.until_answered("POST", "/v1/transactions", &tenant.key, a.key.as_deref(), Some(&a.body));
                assert_eq!((status, replayed, tx["id"].as_str()), (201, true, Some(a.id.as_str())), "replay of {a:?}");
                self.record.replays += 1;
            }
        }
    }
}

/// Every transaction of the client, by paging the list.
fn all_transactions(http: &mut Client, key: &str) -> Vec<Value> {
    let (mut out, mut after) = (Vec::new(), String::new());
    loop {
        let path = if after.is_empty() {
            "/v1/transactions?limit=100".to_string()
        } else {
            format!("/v1/transactions?limit=100&starting_after={after}")
        };
        let (status, _, page) = http.until_answered("GET", &path, key, None, None);
        assert_eq!(status, 200, "{page}");
        let data = page["data"].as_array().unwrap();
        out.extend(data.iter().cloned());
        if !page["has_more"].as_bool().unwrap() {
            return out;
        }
        after = page["next_starting_after"].as_str().unwrap().to_string();
    }
}

fn all_batches(http: &mut Client, key: &str) -> Vec<Value> {
    let (mut out, mut after) = (Vec::new(), None::<u64>);
    loop {
        // A cursor names a batch of the list (issue 16: no `starting_after=0`).
        let cursor = after.map(|a| format!("&starting_after={a}")).unwrap_or_default();
        let path = format!("/v1/batches?limit=100{cursor}");
        let (status, _, page) = http.until_answered("GET", &path, key, None, None);
        assert_eq!(status, 200, "{page}");
        out.extend(page["data"].as_array().unwrap().iter().cloned());
        if !page["has_more"].as_bool().unwrap() {
            return out;
        }
        after = Some(page["next_starting_after"].as_u64().unwrap());
    }
}

/// Checks one client's books against what its threads were told.
fn check_client(http: &mut Client, tenant: &Tenant, records: &[&Record]) -> (usize, usize) {
    let txs = all_transactions(http, &tenant.key);
    let mut by_id: HashMap<&str, &Value> = HashMap::new();
    for tx in &txs {
        assert!(by_id.insert(tx["id"].as_str().unwrap(), tx).is_none(), "listed twice: {tx}");
    }
    // Every acknowledged movement: present once, with its kind and amount.
    let mut acked_ids = HashSet::new();
    for a in records.iter().flat_map(|r| &r.acked) {
        let tx = by_id.get(a.id.as_str()).unwrap_or_else(|| panic!("acknowledged but missing: {a:?}"));
        assert_eq!(tx["kind"].as_str(), Some(a.kind), "{a:?}: {tx}");
        if a.kind != "void" {
            assert_eq!(minor(&tx["amount"]), a.cents, "{a:?}: {tx}");
        }
        assert_eq!(tx["ref_id"].as_str(), a.ref_id.as_deref(), "{a:?}: {tx}");
        assert!(acked_ids.insert(a.id.as_str()), "acknowledged twice under one id: {a:?}");
    }
    // Anything else is a sale a kill cut off, found at most once by its unique amount.
    let mut unknown: HashMap<i64, &str> =
        records.iter().flat_map(|r| &r.unknown_sales).map(|(c, d)| (*c, d.as_str())).collect();
    let mut found_unknown = Vec::new();
    for tx in &txs {
        let id = tx["id"].as_str().unwrap();
        if acked_ids.contains(id) {
            continue;
        }
        let amount = minor(&tx["amount"]);
        let description = unknown
            .remove(&amount)
            .unwrap_or_else(|| panic!("present but never acknowledged nor cut off (or present twice): {tx}"));
        assert_eq!(tx["kind"].as_str(), Some("payment"), "{tx}");
        // The description is written after the ledger's commit: a kill in between loses it.
        assert!(tx["description"].is_null() || tx["description"].as_str() == Some(description), "{tx}");
        found_unknown.push(id);
    }
    // Nothing refused is present.
    let refused: HashSet<&str> = records.iter().flat_map(|r| &r.refused_payments).map(String::as_str).collect();
    assert!(txs.iter().all(|tx| !tx["description"].as_str().is_some_and(|d| refused.contains(d))));
    for r in records {
        for (id, captured, refunded) in &r.refundable {
            let tx = by_id[id.as_str()];
            assert_eq!((minor(&tx["captured"]), minor(&tx["refunded"])), (*captured, *refunded), "{tx}");
        }
    }
    // The balance is the sum of the movements.
    let sum = |kind: &str| -> i64 {
        txs.iter()
            .filter(|tx| tx["kind"].as_str() == Some(kind))
            .filter(|tx| kind != "payment" || !records.iter().any(|r| r.auths.contains(tx["id"].as_str().unwrap())))
            .map(|tx| minor(&tx["amount"]))
            .sum()
    };
    let (captured, refunded) = (sum("payment") + sum("capture"), sum("refund"));
    let (status, _, balance) = http.until_answered("GET", "/v1/balance", &tenant.key, None, None);
    assert_eq!(status, 200);
    let usd = balance["data"].as_array().unwrap().iter().find(|b| b["currency"] == "USD").unwrap();
    assert_eq!((minor(&usd["captured"]), minor(&usd["refunded"])), (captured, refunded), "{usd}");
    assert_eq!(minor(&usd["net"]), captured - refunded, "{usd}");
    assert_eq!(minor(&usd["settled_net"]) + minor(&usd["open_net"]), captured - refunded, "{usd}");
    // Each batch's totals are its transactions', and the service's reconciliation agrees.
    let batches = all_batches(http, &tenant.key);
    let mut nets = 0;
    for b in &batches {
        let id = b["id"].as_u64().unwrap();
        let in_batch = |kind: &str| -> (u64, i64) {
            let mine: Vec<&Value> = txs
                .iter()
                .filter(|tx| tx["batch_id"].as_u64() == Some(id) && tx["kind"].as_str() == Some(kind))
                .filter(|tx| kind != "payment" || !records.iter().any(|r| r.auths.contains(tx["id"].as_str().unwrap())))
                .collect();
            (mine.len() as u64, mine.iter().map(|tx| minor(&tx["amount"])).sum())
        };
        let ((sales, sold), (captures, captured), (refunds, refunded)) =
            (in_batch("payment"), in_batch("capture"), in_batch("refund"));
        assert_eq!(
            (
                b["payment_count"].as_u64(),
                minor(&b["payment_total"]),
                b["refund_count"].as_u64(),
                minor(&b["refund_total"])
            ),
            (Some(sales + captures), sold + captured, Some(refunds), refunded),
            "batch {b}"
        );
        assert_eq!(minor(&b["net"]), sold + captured - refunded, "{b}");
        nets += minor(&b["net"]);
        let (status, _, rec) =
            http.until_answered("GET", &format!("/v1/batches/{id}/reconciliation"), &tenant.key, None, None);
        assert_eq!((status, rec["matches"].as_bool()), (200, Some(true)), "{rec}");
    }
    assert_eq!(nets, captured - refunded, "the batches add up to the balance");
    let closed = batches.iter().filter(|b| b["status"] == "closed").count();
    assert!(closed >= records.iter().map(|r| r.batch_closes).sum::<usize>(), "an acknowledged close is missing");
    // Metadata acknowledged with 2xx is there.
    for r in records {
        for (id, serial) in &r.devices {
            let (status, _, d) = http.until_answered("GET", &format!("/v1/devices/{id}"), &tenant.key, None, None);
            assert_eq!((status, d["serial"].as_str()), (200, Some(serial.as_str())), "{d}");
        }
        let mut history: HashMap<i64, HashSet<String>> = HashMap::new();
        // The service keeps the newest HEARTBEATS_PER_DEVICE_MAX per device; a long run
        // checks the newest acknowledged ones, leaving room for cut-off ones that landed.
        let kept = usize::try_from(portal_svc::routes::devices::HEARTBEATS_PER_DEVICE_MAX).unwrap() / 2;
        let recent = r.heartbeats.len().saturating_sub(kept);
        for (device, marker) in &r.heartbeats[recent..] {
            let seen = history.entry(*device).or_insert_with(|| {
                let path = format!("/v1/devices/{device}/diagnostics?limit=100");
                let mut seen = HashSet::new();
                let mut after = None;
                loop {
                    let page_path = after.map_or_else(|| path.clone(), |a: i64| format!("{path}&starting_after={a}"));
                    let (status, _, page) = http.until_answered("GET", &page_path, &tenant.key, None, None);
                    assert_eq!(status, 200, "{page}");
                    for h in page["data"].as_array().unwrap() {
                        seen.insert(h["diagnostics"]["soak"].as_str().unwrap_or_default().to_string());
                        after = h["id"].as_i64();
                    }
                    if !page["has_more"].as_bool().unwrap_or(false) {
                        break seen;
                    }
                }
            });
            assert!(seen.contains(marker), "acknowledged heartbeat {marker} of device {device} is missing");
        }
        for (id, subject) in &r.tickets {
            let (status, _, t) = http.until_answered("GET", &format!("/v1/tickets/{id}"), &tenant.key, None, None);
            assert_eq!((status, t["subject"].as_str()), (200, Some(subject.as_str())), "{t}");
        }
        for (ticket, body) in &r.notes {
            let path = format!("/v1/notes?resource_type=ticket&resource_id={ticket}&limit=100");
            let (status, _, notes) = http.until_answered("GET", &path, &tenant.key, None, None);
            assert_eq!(status, 200, "{notes}");
            assert!(notes["data"].as_array().unwrap().iter().any(|n| n["body"].as_str() == Some(body)), "{body}");
        }
    }
    (txs.len(), found_unknown.len())
}

#[test]
fn every_2xx_survives_random_kill_9_under_mixed_traffic() {
    let cycles: usize =
        std::env::var("PORTAL_SOAK_CYCLES").map_or(CYCLES_DEFAULT, |v| v.parse().expect("PORTAL_SOAK_CYCLES"));
    let seed: u64 = std::env::var("PORTAL_SOAK_SEED").map_or_else(
        |_| std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos().into(),
        |v| v.parse().expect("PORTAL_SOAK_SEED"),
    );
    println!("portal soak: PORTAL_SOAK_SEED={seed} PORTAL_SOAK_CYCLES={cycles}");
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let mut svc = Service::start(dir.path(), true);
    let admin = svc.token(ADMIN_EMAIL, ADMIN_PASSWORD);
    let mut tenants = Vec::new();
    let mut first_devices = Vec::new();
    for name in ["acme", "globex"] {
        let (client, key) = svc.client_with_key(&admin, name);
        let email = format!("ca@{name}.test");
        let (status, _) = svc.post(
            "/v1/users",
            &admin,
            json!({ "email": email, "password": PASSWORD, "role": "client_admin", "client_id": client }),
        );
        assert_eq!(status, 201);
        let tenant = Arc::new(Tenant { key, admin: svc.token(&email, PASSWORD) });
        for t in 0..THREADS / 2 {
            let (status, d) =
                svc.post("/v1/devices", &tenant.admin, json!({ "serial": format!("{name}-{t}"), "model": "T1" }));
            assert_eq!(status, 201, "{d}");
            first_devices.push(d["id"].as_i64().unwrap());
        }
        tenants.push(tenant);
    }

    let target = Arc::new(Target { base: RwLock::new(svc.base.clone()) });
    let stop = Arc::new(AtomicBool::new(false));
    let records: Arc<Mutex<Vec<(usize, Record, Client)>>> = Arc::default();
    let handles: Vec<_> = (0..THREADS)
        .map(|thread| {
            let mut worker = Worker {
                thread,
                http: Client::new(Arc::clone(&target)),
                rng: Rng(seed ^ (thread as u64 + 1).wrapping_mul(0x2545_F491_4F6C_DD1D)),
                tenant: Arc::clone(&tenants[thread % 2]),
                record: Record::default(),
                device: first_devices[(thread % 2) * (THREADS / 2) + thread / 2],
                n: 0,
            };
            let (stop, records) = (Arc::clone(&stop), Arc::clone(&records));
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    worker.step();
                }
                records.lock().unwrap().push((worker.thread, worker.record, worker.http));
            })
        })
        .collect();

    let mut rng = Rng(seed);
    for _ in 0..cycles {
        std::thread::sleep(Duration::from_millis(RUN_MS.start + rng.below(RUN_MS.end - RUN_MS.start)));
        if handles.iter().any(|h| h.is_finished()) {
            break; // a worker failed: its panic is reported below
        }
        svc.child.kill().unwrap(); // SIGKILL
        svc.child.wait().unwrap();
        svc = Service::start(dir.path(), true);
        *target.base.write().unwrap() = svc.base.clone();
    }
    std::thread::sleep(Duration::from_millis(RUN_MS.start));
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        if let Err(panic) = h.join() {
            std::panic::resume_unwind(panic);
        }
    }
    let traffic = started.elapsed();

    // The books, after one last kill in the quiet, so nothing is checked from memory only.
    svc.child.kill().unwrap();
    svc.child.wait().unwrap();
    svc = Service::start(dir.path(), true);
    *target.base.write().unwrap() = svc.base.clone();
    let mut records = std::mem::take(&mut *records.lock().unwrap());
    records.sort_by_key(|(t, _, _)| *t);
    let mut checker = Client::new(Arc::clone(&target));
    let mut listed = 0;
    let mut found_unknown = 0;
    for (i, tenant) in tenants.iter().enumerate() {
        let mine: Vec<&Record> = records.iter().filter(|(t, _, _)| t % 2 == i).map(|(_, r, _)| r).collect();
        let (txs, found) = check_client(&mut checker, tenant, &mine);
        listed += txs;
        found_unknown += found;
    }

    let total = |f: &dyn Fn(&Record) -> usize| records.iter().map(|(_, r, _)| f(r)).sum::<usize>();
    let requests: usize = records.iter().map(|(_, _, c)| c.requests).sum();
    let cut_off: usize = records.iter().map(|(_, _, c)| c.cut_off).sum();
    let mut statuses: Vec<(u16, usize)> = records
        .iter()
        .flat_map(|(_, _, c)| c.statuses.iter().map(|(s, n)| (*s, *n)))
        .fold(HashMap::new(), |mut m: HashMap<u16, usize>, (s, n)| {
            *m.entry(s).or_default() += n;
            m
        })
        .into_iter()
        .collect();
    statuses.sort_unstable();
    println!(
        "portal soak: seed {seed}: {cycles} kill -9 cycles survived in {traffic:.1?} ({:.1?} with checks); \
         {requests} requests, {cut_off} cut off by a kill, statuses {statuses:?}; \
         2xx money movements {} (payments/auths, captures, voids, refunds), listed {listed}, \
         unkeyed sales cut off {} of which committed {found_unknown}; refused: {} bad payments, {} over-refunds; \
         {} batch closes, {} devices, {} heartbeats, {} tickets, {} notes, {} replays",
        started.elapsed(),
        total(&|r| r.acked.len()),
        total(&|r| r.unknown_sales.len()),
        total(&|r| r.refused_payments.len()),
        total(&|r| r.refused_refunds),
        total(&|r| r.batch_closes),
        total(&|r| r.devices.len()),
        total(&|r| r.heartbeats.len()),
        total(&|r| r.tickets.len()),
        total(&|r| r.notes.len()),
        total(&|r| r.replays),
    );
    assert!(total(&|r| r.acked.len()) > 0 && cut_off > 0 || cycles == 0, "the soak moved no money or killed nothing");
}
