//! The `portal_request` target: the portal's whole request path in process — routing,
//! authentication, the access check, path/query/header/JSON parsing, amounts, the
//! handlers, the ledger and SQLite — driven through `portal_svc::app::router` with
//! tower's `oneshot` on a current-thread tokio runtime.
//!
//! One portal is set up per process ([`portal`]): a data directory on tmpfs, the
//! ledger (no sync: durability is not what is fuzzed here) and the metadata database,
//! the bootstrap admin, two clients with a client_admin, operator and viewer each, API
//! keys (one revoked), and a few payments, devices, groups, rollouts, tickets, notes
//! and closed batches, all made through requests. Each input is then one request:
//! a method, a path built from the route table's own templates (ids filled in with
//! the caller's, another client's, missing or fuzzed ones) or from fragments, a
//! query, credentials (none, each role's session token, API keys, the session cookie
//! with or without its CSRF token, malformed ones), an `Idempotency-Key`, a
//! `Content-Type`, and a body (a JSON template of the route's fields with fuzzed
//! values, raw bytes, or a body past the size limit).
//!
//! Invariants of every response: never a 5xx (the ledger is healthy, so not even 503);
//! every 4xx carries the error body `{"error": {type, code, message, param?}}` as JSON;
//! a 4xx never moves money (the ledger's transaction count and last seq unchanged),
//! one request moves at most one record, and only a 2xx moves any; a 2xx JSON body is
//! JSON, and a transaction object in it is in the ledger as answered (id, seq,
//! amount); no answer to one client's credentials names another client's transaction.
//!
//! State accumulates across inputs (the fuzzer creates tickets, devices, payments,
//! revokes keys); each invariant is about one request and its response, so a failing
//! input replays on its own.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderName, HeaderValue, Method, Request, StatusCode};
use ledger_core::{Durability, Ledger, LedgerOptions, TxId};
use portal_svc::app::{self, AppState};
use portal_svc::db::Db;
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::input::{Reader, scratch_dir};

/// Body bytes the portal accepts (`app::BODY_BYTES_MAX`) plus some: the oversize choice.
const OVERSIZE_BYTES: usize = app::BODY_BYTES_MAX + 1024;

/// Who a request claims to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Who {
    /// No valid credentials.
    Nobody,
    /// A principal of client 1 (0) or 2 (1): its transactions are the only ones it may see.
    Client(usize),
    /// The platform admin.
    Admin,
}

/// Credentials: the Authorization header (or Cookie) and who they are.
#[derive(Debug, Clone)]
struct Cred {
    headers: Vec<(&'static str, String)>,
    who: Who,
}

/// The portal under test and what setup made.
pub struct Portal {
    rt: tokio::runtime::Runtime,
    router: Router,
    ledger: Ledger,
    creds: Vec<Cred>,
    /// Ids to fill path parameters with, by the collection segment before them; for
    /// each, the own client's ids first, then the other client's.
    ids: BTreeMap<&'static str, Vec<String>>,
    /// Each client's ledger transaction ids.
    tx_ids: [Vec<String>; 2],
    /// Route templates (method, path) from the route table.
    routes: Vec<(Method, &'static str)>,
    /// Every distinct path segment of the route table.
    segments: Vec<&'static str>,
    _dir: tempfile::TempDir,
}

impl std::fmt::Debug for Portal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Portal").field("routes", &self.routes.len()).finish_non_exhaustive()
    }
}

/// A response, read whole.
#[derive(Debug)]
pub struct Answer {
    /// Its status.
    pub status: StatusCode,
    /// Its Content-Type, if any.
    pub content_type: Option<String>,
    /// Its body.
    pub body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

impl Portal {
    /// Sends one request and reads the response.
    pub fn send(&self, request: Request<Body>) -> Answer {
        self.rt.block_on(async {
            let response = self.router.clone().oneshot(request).await.unwrap_or_else(|e| match e {});
            let status = response.status();
            let content_type =
                response.headers().get("content-type").map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
            // A server-sent event stream (`GET /v1/events/stream`) does not end: its
            // status and headers are what is checked, not a body.
            if content_type.as_deref().is_some_and(|t| t.starts_with("text/event-stream")) {
                return Answer { status, content_type, body: Vec::new() };
            }
            let body = axum::body::to_bytes(response.into_body(), usize::MAX).await.expect("read the response body");
            Answer { status, content_type, body: body.to_vec() }
        })
    }

    fn call(&self, method: Method, path: &str, auth: Option<&str>, body: Value) -> Value {
        let mut b = Request::builder().method(method.clone()).uri(path).header("content-type", "application/json");
        if let Some(token) = auth {
            b = b.header("authorization", format!("Bearer {token}"));
        }
        let body = if body.is_null() { Body::empty() } else { Body::from(body.to_string()) };
        let answer = self.send(b.body(body).expect("a setup request"));
        assert!(
            answer.status.is_success(),
            "setup: {method} {path}: {} {}",
            answer.status,
            String::from_utf8_lossy(&answer.body)
        );
        answer.json()
    }
}

fn id_string(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn build_portal() -> Portal {
    let dir = scratch_dir();
    let options = LedgerOptions {
        durability: Durability::None,
        segment_bytes: 1 << 20,
        snapshot_every_records: 0,
        ..LedgerOptions::default()
    };
    let ledger = Ledger::open(dir.path().join("ledger"), options).expect("open the ledger");
    let db = Db::open(&dir.path().join("portal.db")).expect("open the database");
    let (admin_email, admin_password) =
        app::bootstrap_admin(&db).expect("bootstrap").expect("a fresh database creates an admin");
    let router = app::router(AppState::new(db, ledger.clone()));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime");
    let routes: Vec<(Method, &'static str)> = app::endpoints().iter().map(|e| (e.method.clone(), e.path)).collect();
    let mut segments: Vec<&'static str> =
        routes.iter().flat_map(|(_, p)| p.split('/')).filter(|s| !s.is_empty() && !s.starts_with('{')).collect();
    segments.sort_unstable();
    segments.dedup();
    let mut portal = Portal {
        rt,
        router,
        ledger,
        creds: Vec::new(),
        ids: BTreeMap::new(),
        tx_ids: [Vec::new(), Vec::new()],
        routes,
        segments,
        _dir: dir,
    };

    let login = |p: &Portal, email: &str, password: &str| {
        id_string(
            &p.call(Method::POST, "/v1/auth/login", None, json!({ "email": email, "password": password }))["token"],
        )
    };
    let admin = login(&portal, &admin_email, &admin_password);
    let password = "a long and correct password";
    let mut per_client: Vec<BTreeMap<&str, Vec<String>>> = vec![BTreeMap::new(), BTreeMap::new()];
    let mut tokens: Vec<Vec<String>> = Vec::new();
    let mut keys: Vec<String> = Vec::new();
    for (c, name) in ["acme", "globex"].into_iter().enumerate() {
        let client = portal.call(Method::POST, "/v1/clients", Some(&admin), json!({ "name": name }))["id"].clone();
        let ids = &mut per_client[c];
        ids.entry("clients").or_default().push(id_string(&client));
        let mut these = Vec::new();
        for role in ["client_admin", "operator", "viewer"] {
            let email = format!("{role}@{name}.test");
            let user = portal.call(
                Method::POST,
                "/v1/users",
                Some(&admin),
                json!({ "email": email, "password": password, "role": role, "client_id": client }),
            );
            per_client[c].entry("users").or_default().push(id_string(&user["id"]));
            these.push(login(&portal, &email, password));
        }
        let apps = format!("/v1/clients/{}/applications", id_string(&client));
        let app = portal.call(Method::POST, &apps, Some(&admin), json!({ "name": "pos" }));
        keys.push(id_string(&app["api_key"]));
        per_client[c].entry("applications").or_default().push(id_string(&app["id"]));
        let key = keys.last().cloned().expect("a key");
        let ca = these[0].clone();
        let ids = &mut per_client[c];
        let tx = |body: Value, ids: &mut BTreeMap<&str, Vec<String>>| {
            let t = portal.call(Method::POST, "/v1/transactions", Some(&key), body);
            ids.entry("transactions").or_default().push(id_string(&t["id"]));
            id_string(&t["id"])
        };
        let sale = tx(json!({ "kind": "payment", "amount": "10.00", "currency": "USD" }), ids);
        let auth = tx(json!({ "kind": "payment", "amount": "5.00", "currency": "USD", "capture": false }), ids);
        tx(json!({ "kind": "payment", "amount": "700", "currency": "JPY", "description": "yen" }), ids);
        tx(json!({ "kind": "adjustment", "amount": "-1.25", "currency": "USD" }), ids);
        let refund = portal.call(
            Method::POST,
            &format!("/v1/transactions/{sale}/refunds"),
            Some(&key),
            json!({ "amount": "2.50" }),
        );
        ids.entry("transactions").or_default().push(id_string(&refund["id"]));
        let _ = auth;
        let batch = portal.call(Method::POST, "/v1/batches/close", Some(&key), json!({ "currency": "USD" }));
        ids.entry("batches").or_default().push(id_string(&batch["id"]));
        // One more open authorization to capture or void.
        tx(json!({ "kind": "payment", "amount": "3.00", "currency": "USD", "capture": false }), ids);
        let device = portal.call(
            Method::POST,
            "/v1/devices",
            Some(&ca),
            json!({ "serial": format!("{name}-1"), "model": "t1" }),
        );
        ids.entry("devices").or_default().push(id_string(&device["id"]));
        let group = portal.call(
            Method::POST,
            "/v1/device-groups",
            Some(&ca),
            json!({ "name": "g", "config": { "tip": true } }),
        );
        ids.entry("device-groups").or_default().push(id_string(&group["id"]));
        portal.call(
            Method::PUT,
            &format!("/v1/devices/{}/group", id_string(&device["id"])),
            Some(&ca),
            json!({ "group_id": group["id"] }),
        );
        let rollout = portal.call(
            Method::POST,
            &format!("/v1/device-groups/{}/firmware", id_string(&group["id"])),
            Some(&ca),
            json!({ "version": "2.0.0" }),
        );
        ids.entry("rollouts").or_default().push(id_string(&rollout["id"]));
        let ticket = portal.call(Method::POST, "/v1/tickets", Some(&these[1]), json!({ "subject": "s", "body": "b" }));
        ids.entry("tickets").or_default().push(id_string(&ticket["id"]));
        let note = portal.call(
            Method::POST,
            "/v1/notes",
            Some(&these[1]),
            json!({ "resource_type": "transaction", "resource_id": sale, "body": "n" }),
        );
        ids.entry("notes").or_default().push(id_string(&note["id"]));
        portal.tx_ids[c] = ids["transactions"].clone();
        tokens.push(these);
    }
    // A revoked key of client 1.
    let apps = format!("/v1/clients/{}/applications", per_client[0]["clients"][0]);
    let revoked = portal.call(Method::POST, &apps, Some(&admin), json!({ "name": "old" }));
    portal.call(Method::DELETE, &format!("{apps}/{}", id_string(&revoked["id"])), Some(&admin), Value::Null);

    let bearer = |t: &str| vec![("authorization", format!("Bearer {t}"))];
    let mut creds = vec![Cred { headers: vec![], who: Who::Nobody }, Cred { headers: bearer(&admin), who: Who::Admin }];
    for (c, these) in tokens.iter().enumerate() {
        for t in these {
            creds.push(Cred { headers: bearer(t), who: Who::Client(c) });
        }
        creds.push(Cred { headers: bearer(&keys[c]), who: Who::Client(c) });
    }
    creds.push(Cred { headers: bearer(&id_string(&revoked["api_key"])), who: Who::Nobody });
    // The operator of client 1 as a browser: the session cookie, with and without CSRF.
    let operator = &tokens[0][1];
    let cookie = format!("portal_session={operator}");
    let csrf = portal_svc::auth::csrf_token(operator);
    creds.push(Cred { headers: vec![("cookie", cookie.clone())], who: Who::Client(0) });
    creds.push(Cred { headers: vec![("cookie", cookie), ("x-csrf-token", csrf)], who: Who::Client(0) });
    creds.push(Cred { headers: vec![("authorization", format!("Basic {operator}"))], who: Who::Nobody });
    creds.push(Cred { headers: vec![("authorization", keys[0].clone())], who: Who::Nobody });
    portal.creds = creds;

    portal.ids.insert("assets", ["style.css", "app.js", "api.js", "index.html"].map(String::from).to_vec());
    // Path ids: the caller's own (client 1's) first, then client 2's, then made up.
    for (name, own) in &per_client[0] {
        let mut all = own.clone();
        all.extend(per_client[1].get(name).cloned().unwrap_or_default());
        portal.ids.insert(name, all);
    }
    portal
}

/// The portal (set up on first use).
pub fn portal() -> &'static Portal {
    static PORTAL: OnceLock<Portal> = OnceLock::new();
    PORTAL.get_or_init(build_portal)
}

// ---------------------------------------------------------------------------------------
// Building a request from the input.
// ---------------------------------------------------------------------------------------

/// Strings fuzzed values are often drawn from.
const WORDS: &[&str] = &[
    "",
    "0",
    "1",
    "-1",
    "1.5",
    "10.00",
    "0.001",
    "-0.01",
    "92233720368547758.07",
    "92233720368547758.08",
    "99999999999999999999",
    "1e3",
    " 1",
    "USD",
    "JPY",
    "KWD",
    "usd",
    "XXX",
    "payment",
    "adjustment",
    "capture",
    "void",
    "refund",
    "authorized",
    "captured",
    "refunded",
    "open",
    "in_progress",
    "waiting",
    "resolved",
    "closed",
    "low",
    "urgent",
    "transaction",
    "device",
    "ticket",
    "json",
    "csv",
    "day",
    "kind",
    "status",
    "client_admin",
    "operator",
    "viewer",
    "admin",
    "2025-01-01",
    "2025-01-01T00:00:00Z",
    "tx_",
    "tx_00000000000000000000000000000000",
    "\u{0}",
    "\u{fffd}",
    "%",
    "\\",
    "\"",
    "null",
];

/// JSON literals a numeric or loosely typed field is often given.
const LITERALS: &[&str] = &[
    "0",
    "1",
    "-1",
    "2",
    "18446744073709551615",
    "18446744073709551616",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775809",
    "1.5",
    "1e400",
    "-0",
    "null",
    "true",
    "false",
    "\"7\"",
    "[]",
    "{}",
    "{\"a\":[1,{\"b\":null}]}",
    "\"\"",
];

/// Fields of the request bodies, by template.
const TEMPLATES: &[&[(&str, Slot)]] = &[
    &[
        ("kind", Slot::Str),
        ("amount", Slot::Str),
        ("currency", Slot::Str),
        ("capture", Slot::Lit),
        ("device_id", Slot::Lit),
        ("description", Slot::Str),
    ],
    &[("amount", Slot::Str)],
    &[("currency", Slot::Str)],
    &[("subject", Slot::Str), ("body", Slot::Str), ("priority", Slot::Str)],
    &[("status", Slot::Str), ("assignee_id", Slot::Lit)],
    &[("resource_type", Slot::Str), ("resource_id", Slot::Any), ("body", Slot::Str)],
    &[("serial", Slot::Str), ("model", Slot::Str)],
    &[("name", Slot::Str), ("config", Slot::Any)],
    &[("firmware_version", Slot::Str), ("diagnostics", Slot::Any)],
    &[("group_id", Slot::Lit)],
    &[("version", Slot::Str)],
    &[("email", Slot::Str), ("password", Slot::Str), ("role", Slot::Str), ("client_id", Slot::Lit)],
    &[("name", Slot::Str)],
    &[("email", Slot::Str), ("password", Slot::Str), ("otp", Slot::Str)],
    &[("otp", Slot::Str)],
    &[("role", Slot::Str)],
];

#[derive(Debug, Clone, Copy)]
enum Slot {
    Str,
    Lit,
    Any,
}

/// A short string: a word, an id of the setup, or bytes from the input.
fn string(r: &mut Reader<'_>, p: &Portal) -> String {
    let b = r.u8();
    match b >> 6 {
        0 | 1 => WORDS[usize::from(b & 0x7f) % WORDS.len()].to_string(),
        2 => {
            let all: Vec<&String> = p.ids.values().flatten().collect();
            all[usize::from(b & 0x3f) % all.len()].clone()
        }
        _ => String::from_utf8_lossy(r.take(usize::from(b & 0x3f))).into_owned(),
    }
}

/// A JSON value for a slot.
fn value(r: &mut Reader<'_>, p: &Portal, slot: Slot) -> String {
    let sel = r.u8();
    match (slot, sel >> 6) {
        (Slot::Str, 0..=2) => Value::String(string(r, p)).to_string(),
        (Slot::Lit, 0..=2) => LITERALS[usize::from(sel & 0x3f) % LITERALS.len()].to_string(),
        (Slot::Any, 0) => Value::String(string(r, p)).to_string(),
        (Slot::Any, 1 | 2) => LITERALS[usize::from(sel & 0x3f) % LITERALS.len()].to_string(),
        _ => {
            // Raw bytes in the value's place: broken JSON, deep nesting, anything.
            let n = usize::from(sel & 0x3f);
            String::from_utf8_lossy(r.take(n)).into_owned()
        }
    }
}

/// A JSON body from a template: each field present or not, values fuzzed, maybe an
/// unknown field.
fn template_body(r: &mut Reader<'_>, p: &Portal) -> Vec<u8> {
    let t = TEMPLATES[usize::from(r.u8()) % TEMPLATES.len()];
    let present = r.u8();
    let mut fields = Vec::new();
    for (i, (name, slot)) in t.iter().enumerate() {
        if present & (1 << (i % 8)) == 0 {
            fields.push(format!("{}:{}", Value::String((*name).to_string()), value(r, p, *slot)));
        }
    }
    if present & 0x80 != 0 {
        fields.push(format!("\"extra\":{}", value(r, p, Slot::Any)));
    }
    format!("{{{}}}", fields.join(",")).into_bytes()
}

/// Percent-encodes everything but unreserved characters.
fn encode(s: &[u8]) -> String {
    let mut out = String::new();
    for &b in s {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A path parameter after the collection segment `collection`.
fn param(r: &mut Reader<'_>, p: &Portal, collection: &str) -> String {
    let ids = p.ids.get(collection).map(Vec::as_slice).unwrap_or_default();
    let sel = r.u8();
    match sel >> 5 {
        0..=3 if !ids.is_empty() => ids[usize::from(sel & 0x7f) % ids.len()].clone(),
        4 => ["0", "-1", "999999", "18446744073709551616", "1.0", "tx_1", "%00", ""][usize::from(sel & 7)].to_string(),
        _ => encode(string(r, p).as_bytes()),
    }
}

/// The path: a route template with its parameters filled in, maybe changed at the
/// end; or fragments of the route table's segments and input bytes.
fn path(r: &mut Reader<'_>, p: &Portal) -> (Option<Method>, String) {
    let sel = r.u8();
    if sel < 0xe0 {
        let (method, template) = &p.routes[usize::from(sel) % p.routes.len()];
        let mut out = String::new();
        let mut previous = "";
        for seg in template.split('/').filter(|s| !s.is_empty()) {
            out.push('/');
            if seg.starts_with('{') {
                out.push_str(&param(r, p, previous));
            } else {
                out.push_str(seg);
            }
            previous = seg;
        }
        match r.u8() {
            0xff => out.push('/'),
            0xfe => out.push_str("/x"),
            0xfd => out = out.replacen("/v1", "/v1/", 1),
            0xfc => out.push_str("/.."),
            _ => {}
        }
        return (Some(method.clone()), out);
    }
    let mut out = String::new();
    for _ in 0..(sel & 7) + 1 {
        let f = r.u8();
        out.push('/');
        match f {
            0..=0xbf => out.push_str(p.segments[usize::from(f) % p.segments.len()]),
            0xc0..=0xdf => out.push_str(&param(r, p, "transactions")),
            _ => out.push_str(&encode(r.take(usize::from(f & 0x1f)))),
        }
    }
    (None, out)
}

const QUERY_NAMES: &[&str] = &[
    "limit",
    "starting_after",
    "status",
    "group_id",
    "from",
    "to",
    "format",
    "rows",
    "group_by",
    "kind",
    "currency",
    "device_id",
    "client_id",
    "resource_type",
    "resource_id",
    "amount_min",
    "amount_max",
];

fn query(r: &mut Reader<'_>, p: &Portal) -> String {
    let n = r.u8() % 5;
    let mut pairs = Vec::new();
    for _ in 0..n {
        let name = QUERY_NAMES[usize::from(r.u8()) % QUERY_NAMES.len()];
        pairs.push(format!("{name}={}", encode(string(r, p).as_bytes())));
    }
    pairs.join("&")
}

const METHODS: [&str; 8] = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "TRACE"];

/// The request an input describes, and who it claims to be (`None`: not a request
/// `http` can represent).
pub fn build(data: &[u8], p: &Portal) -> Option<(Request<Body>, Who, String)> {
    let mut r = Reader::new(data);
    let method_sel = r.u8();
    let cred = p.creds[usize::from(r.u8()) % p.creds.len()].clone();
    let flags = r.u8();
    let (route_method, mut uri) = path(&mut r, p);
    let method = match (route_method, method_sel) {
        (Some(m), 0..=0xbf) => m,
        _ => Method::from_bytes(METHODS[usize::from(method_sel) % METHODS.len()].as_bytes()).ok()?,
    };
    if flags & 0x08 != 0 {
        uri.push('?');
        uri.push_str(&query(&mut r, p));
    }
    let mut b = Request::builder().method(method).uri(&uri);
    for (name, v) in &cred.headers {
        b = b.header(*name, v);
    }
    if flags & 0x01 != 0 {
        let key = string(&mut r, p);
        b = b.header("idempotency-key", HeaderValue::from_bytes(key.as_bytes()).ok()?);
    }
    match (flags >> 1) & 3 {
        1 => b = b.header("content-type", "application/json"),
        2 => b = b.header("content-type", "text/plain"),
        3 => b = b.header("content-type", HeaderValue::from_bytes(string(&mut r, p).as_bytes()).ok()?),
        _ => {}
    }
    if flags & 0x40 != 0 {
        let n = usize::from(r.u8() % 16) + 1;
        let name = HeaderName::from_bytes(r.take(n)).ok()?;
        b = b.header(name, HeaderValue::from_bytes(string(&mut r, p).as_bytes()).ok()?);
    }
    let mut body = if flags & 0x10 != 0 { template_body(&mut r, p) } else { r.rest().to_vec() };
    if flags & 0x20 != 0 {
        body.splice(0..0, std::iter::repeat_n(b' ', OVERSIZE_BYTES));
    }
    let request = b.body(Body::from(body)).ok()?;
    Some((request, cred.who, uri))
}

// ---------------------------------------------------------------------------------------
// The oracle.
// ---------------------------------------------------------------------------------------

/// Every value of an `id` or `ref_id` key anywhere in `v`.
fn ids_in(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, x) in map {
                if let ("id" | "ref_id", Value::String(s)) = (k.as_str(), x) {
                    out.push(s.clone());
                }
                ids_in(x, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|x| ids_in(x, out)),
        _ => {}
    }
}

/// Checks a transaction object of a 2xx answer against the ledger.
fn check_transaction(p: &Portal, t: &Value) {
    let Some(id) = t["id"].as_str() else { return };
    let raw = id.strip_prefix("tx_").and_then(|h| u128::from_str_radix(h, 16).ok());
    let record = raw.and_then(|x| p.ledger.lookup(TxId(x)));
    let record = record.unwrap_or_else(|| panic!("a 2xx names transaction {id}, which the ledger does not hold"));
    assert_eq!(t["seq"].as_u64(), Some(record.seq), "seq of {id}");
    if let Some(c) = record.tx.currency() {
        let amount = ledger_core::money::format_minor(record.tx.amount, c);
        assert_eq!(t["amount"].as_str(), Some(amount.as_str()), "amount of {id}");
        assert_eq!(t["currency"].as_str(), Some(c.code()), "currency of {id}");
    }
}

/// The status an input's request is answered with and its route template, for corpus
/// statistics (`None`: not a request).
pub fn verdict(data: &[u8]) -> Option<String> {
    let p = portal();
    let (request, _, _) = build(data, p)?;
    let method = request.method().clone();
    let answer = p.send(request);
    let code = if answer.status.is_client_error() {
        let v = answer.json();
        format!(" {}", v["error"]["code"].as_str().unwrap_or("?"))
    } else {
        String::new()
    };
    Some(format!("{method} {}{code}", answer.status.as_u16()))
}

/// The whole target.
pub fn portal_request(data: &[u8]) {
    let p = portal();
    let Some((request, who, uri)) = build(data, p) else { return };
    let method = request.method().clone();
    let before = (p.ledger.transaction_count(), p.ledger.last_seq());
    let answer = p.send(request);
    let after = (p.ledger.transaction_count(), p.ledger.last_seq());
    let status = answer.status;
    let text = String::from_utf8_lossy(&answer.body);
    let what =
        format!("{method} {uri} -> {status} {:?} {}", answer.content_type, text.chars().take(300).collect::<String>());

    assert!(!status.is_server_error(), "a 5xx: {what}");
    let moved = after.1 - before.1;
    assert!(moved <= 1 && after.0 - before.0 <= moved as usize, "one request moved {moved} records: {what}");
    if status.is_client_error() {
        assert_eq!(before, after, "a 4xx moved money: {what}");
        if method != Method::HEAD {
            let json_type = answer.content_type.as_deref().is_some_and(|c| c.starts_with("application/json"));
            assert!(json_type, "a 4xx without a JSON body: {what}");
            let v: Value =
                serde_json::from_slice(&answer.body).unwrap_or_else(|e| panic!("4xx body is not JSON ({e}): {what}"));
            let e = &v["error"];
            for field in ["type", "code", "message"] {
                assert!(e[field].is_string(), "4xx error body lacks {field}: {what}");
            }
            assert!(e.get("param").is_none_or(|x| x.is_string() || x.is_null()), "param: {what}");
        }
    } else if moved > 0 {
        assert!(status.is_success(), "money moved on a {status}: {what}");
    }
    let json = answer.content_type.as_deref().is_some_and(|c| c.starts_with("application/json"));
    if status.is_success() && json && method != Method::HEAD {
        let v: Value =
            serde_json::from_slice(&answer.body).unwrap_or_else(|e| panic!("2xx JSON is not JSON ({e}): {what}"));
        if v["object"] == "transaction" {
            check_transaction(p, &v);
        }
        for item in v["data"].as_array().into_iter().flatten().filter(|t| t["object"] == "transaction") {
            check_transaction(p, item);
        }
        if let Who::Client(c) = who {
            let mut named = Vec::new();
            ids_in(&v, &mut named);
            let others = &p.tx_ids[1 - c];
            let leaked: Vec<&String> = named.iter().filter(|id| others.contains(id)).collect();
            assert!(leaked.is_empty(), "client {} was shown client {}'s {leaked:?}: {what}", c + 1, 2 - c);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Seeds.
// ---------------------------------------------------------------------------------------

fn route_index(p: &Portal, method: &Method, path: &str) -> u8 {
    let i =
        p.routes.iter().position(|(m, t)| m == method && *t == path).unwrap_or_else(|| panic!("route {method} {path}"));
    u8::try_from(i).expect("fewer than 224 routes")
}

fn cred_index(p: &Portal, who: &str) -> u8 {
    // Order of `build_portal`: nobody, admin, then per client: client_admin, operator,
    // viewer, key; then the revoked key, the cookie, cookie + CSRF, Basic, bare key.
    let i = match who {
        "nobody" => 0,
        "admin" => 1,
        "client_admin" => 2,
        "operator" => 3,
        "viewer" => 4,
        "key" => 5,
        "key2" => 9,
        "revoked" => 10,
        "cookie" => 11,
        "cookie+csrf" => 12,
        _ => panic!("credential {who}"),
    };
    assert!(usize::from(i) < p.creds.len());
    i
}

/// Seed inputs, by file name. They name routes by their place in the route table,
/// so they are regenerated (`cargo run --example gen_seeds`) when routes change.
pub fn seed_inputs() -> Vec<(&'static str, Vec<u8>)> {
    let p = portal();
    let post = |path: &str| route_index(p, &Method::POST, path);
    let get = |path: &str| route_index(p, &Method::GET, path);
    // method_sel 0 = the route's own method; flags: 0x02 JSON content type, 0x10 template body.
    let json_body = |cred: &str, route: u8, params: &[u8], template: u8, present: u8, values: &[u8]| {
        let mut v = vec![0, cred_index(p, cred), 0x12, route];
        v.extend(params);
        v.push(0); // no change at the end of the path
        v.extend([template, present]);
        v.extend(values);
        v
    };
    // Values: 0x00.. a WORDS index (strings) or LITERALS index (literals).
    let word = |w: &str| u8::try_from(WORDS.iter().position(|x| *x == w).expect("a word")).expect("small");
    let payment = json_body(
        "key",
        post("/v1/transactions"),
        &[],
        0,
        0b0011_1000,
        &[0, word("payment"), 0, word("10.00"), 0, word("USD")],
    );
    let too_precise = json_body(
        "key",
        post("/v1/transactions"),
        &[],
        0,
        0b0011_1000,
        &[0, word("payment"), 0, word("0.001"), 0, word("USD")],
    );
    let refund = json_body("operator", post("/v1/transactions/{id}/refunds"), &[0], 1, 0, &[0, word("1.5")]);
    let close = json_body("key", post("/v1/batches/close"), &[], 2, 0, &[0, word("JPY")]);
    let ticket = json_body("operator", post("/v1/tickets"), &[], 3, 0b100, &[0, word("low"), 0, word("open")]);
    let login = json_body("nobody", post("/v1/auth/login"), &[], 13, 0b100, &[0, word("admin"), 0, word("1")]);
    let mut raw_json = vec![0, cred_index(p, "key"), 0x02, post("/v1/transactions"), 0];
    raw_json.extend(br#"{"kind":"payment","amount":1000,"currency":"USD"}"#);
    let mut oversize = vec![0, cred_index(p, "key"), 0x22, post("/v1/transactions"), 0];
    oversize.extend(br#"{"kind":"payment","amount":"1.00","currency":"USD"}"#);
    let mut idempotent = vec![0, cred_index(p, "key"), 0x13, post("/v1/transactions"), 0, 0];
    idempotent.extend([word("tx_"), 0, 0b0011_1000, 0, word("payment"), 0, word("1.5"), 0, word("USD")]);
    vec![
        ("payment", payment),
        ("payment-too-precise", too_precise),
        ("refund", refund),
        ("close-jpy", close),
        ("ticket-bad-priority", ticket),
        ("login-wrong", login),
        ("amount-as-number", raw_json),
        ("body-too-large", oversize),
        ("idempotent-payment", idempotent),
        (
            "list-transactions-query",
            vec![0, cred_index(p, "viewer"), 0x08, get("/v1/transactions"), 0, 2, 0, 0x43, 1, 0x40],
        ),
        ("get-other-clients-tx", vec![0, cred_index(p, "key"), 0, get("/v1/transactions/{id}"), 0x7f, 0]),
        ("cookie-without-csrf", vec![0, cred_index(p, "cookie"), 0x12, post("/v1/batches/close"), 0, 2, 0, 0, 0]),
        ("revoked-key", vec![0, cred_index(p, "revoked"), 0, get("/v1/balance"), 0]),
        ("wrong-method", vec![0xc4, cred_index(p, "admin"), 0, get("/v1/balance"), 0]),
        ("fragments", vec![0, cred_index(p, "viewer"), 0, 0xe2, 0, 1, 0xe3, b'%', b'0', b'0']),
    ]
}
