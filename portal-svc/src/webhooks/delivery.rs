//! The delivery worker: one tokio task, off the request path, that hands each due
//! delivery to a task of its own and records every attempt.
//!
//! Order and independence: deliveries of an endpoint form two lanes, first deliveries
//! and redeliveries, and a lane has at most one delivery in flight, always its
//! pending delivery of the lowest event seq. So an event's first attempt waits until
//! the endpoint's earlier events have succeeded or been marked failed (first
//! deliveries arrive in the client's seq order), while endpoints never wait for each
//! other: a slow or dead receiver holds up only its own lane.
//!
//! Each attempt is a POST of the event's JSON with `Portal-Signature`, through a
//! client that follows no redirect, uses no proxy and resolves names through the SSRF
//! filter. A 2xx within [`super::TIMEOUT_SECS`] succeeds; anything else (another
//! status, a redirect, a timeout, a refused address) is retried after
//! [`super::Config::backoff_ms`], until [`super::Config::attempts_max`] attempts,
//! then the delivery is `failed`. A crash between an attempt and its record means
//! the event is sent again after the restart: at least once, same event id.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::db::{Connection, OptionalExtension};
use crate::params;

use super::{Config, TIMEOUT_SECS, address, signature};
use crate::app::AppState;
use crate::db::{now_ms, now_secs};
use crate::events::Event;

/// Deliveries in flight at once, over every endpoint.
pub const IN_FLIGHT_MAX: usize = 64;
/// Longest the worker sleeps when nothing wakes it (it also wakes for a retry due).
const IDLE_MS_MAX: i64 = 1000;
/// Longest error text kept with an attempt.
const ERROR_CHARS_MAX: usize = 300;
/// Shortest time between two scans of every lane (see [`run`]).
const SCAN_GAP: Duration = Duration::from_millis(25);
/// How long the worker waits after its database failed before trying again.
const DB_RETRY_MS: u64 = 1000;
/// How often a node that is not the cluster's leader looks whether it leads now (only
/// the leader sends webhooks).
const FOLLOWER_POLL_MS: u64 = 250;

/// The deliveries of one endpoint that go one at a time, in event order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Lane {
    endpoint_id: i64,
    redelivery: bool,
}

/// The HTTP client deliveries use.
pub fn client(config: &Config) -> reqwest::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(TIMEOUT_SECS))
        .no_proxy()
        .user_agent(concat!("portal-svc-webhooks/", env!("CARGO_PKG_VERSION")))
        .pool_max_idle_per_host(2);
    if !config.allow_private {
        builder = builder.dns_resolver(Arc::new(address::FilteringResolver));
    }
    builder.build()
}

type Shared = Arc<Mutex<crate::db::OwnConn>>;

/// Runs `f` with the worker's connection on the blocking pool.
async fn blocking<T: Send + 'static>(
    conn: &Shared,
    f: impl FnOnce(&mut Connection) -> crate::db::Result<T> + Send + 'static,
) -> Result<T, String> {
    let conn = Arc::clone(conn);
    tokio::task::spawn_blocking(move || {
        let mut guard = conn.lock().map_err(|_| "the deliveries' database lock was poisoned".to_string())?;
        f(&mut guard).map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| e.to_string())?
}

/// The worker: runs until the runtime stops.
pub async fn run(state: AppState) {
    let client = match client(&state.webhooks.config) {
        Ok(client) => client,
        Err(e) => {
            tracing::error!(error = %e, "webhook deliveries are off: no HTTP client");
            return;
        }
    };
    let conn = loop {
        // Opening may block (a PostgreSQL connection is made by its client's own runtime).
        let db = state.db.clone();
        let opened = tokio::task::spawn_blocking(move || db.own_conn().map_err(|e| e.to_string()))
            .await
            .unwrap_or_else(|e| Err(e.to_string()));
        match opened {
            Ok(conn) => {
                // An attempt's record lost to a power cut only means the event is sent
                // again: no fsync of its own (the next synced commit carries it).
                if let Err(e) = conn.pragma_update(None, "synchronous", "NORMAL") {
                    tracing::warn!(error = %e, "webhook deliveries: synchronous stays FULL");
                }
                break Arc::new(Mutex::new(conn));
            }
            Err(e) => {
                tracing::error!(error = %e, "webhook deliveries: cannot open the database; retrying");
                tokio::time::sleep(Duration::from_millis(DB_RETRY_MS)).await;
            }
        }
    };
    let (done, mut finished) = tokio::sync::mpsc::unbounded_channel::<Lane>();
    let mut busy: HashSet<Lane> = HashSet::new();
    // Every lane is looked at (a full scan) when new deliveries may be queued (a wake),
    // when a retry falls due, and at start; at most once per SCAN_GAP, so a stream of
    // wake-ups under load costs a bounded amount of work. A lane whose delivery just
    // ended is looked at alone, at once: a healthy endpoint's next delivery does not
    // wait for a scan.
    let mut want_full = true;
    let mut last_full: Option<Instant> = None;
    let mut due_at = i64::MAX;
    let mut ended: Vec<Lane> = Vec::new();
    loop {
        // Cluster mode: every node's follower queues the same events (their ids come
        // from the seq), and only the leader sends them, so an event goes out once per
        // attempt, not once per node; a new leader sends what is still pending.
        if let Some(cluster) = &state.cluster
            && !cluster.node().leads_with_quorum()
        {
            tokio::time::sleep(Duration::from_millis(FOLLOWER_POLL_MS)).await;
            want_full = true;
            continue;
        }
        let full = want_full && last_full.is_none_or(|at| at.elapsed() >= SCAN_GAP);
        let lanes = if full { None } else { Some(std::mem::take(&mut ended)) };
        if full {
            (want_full, last_full, due_at) = (false, Some(Instant::now()), i64::MAX);
        }
        if lanes.as_ref().is_none_or(|lanes| !lanes.is_empty()) {
            let now = now_ms();
            match blocking(&conn, move |conn| heads(conn, lanes.as_deref())).await {
                Ok(heads) => {
                    for (lane, delivery_id, next_attempt_ms) in heads {
                        if busy.contains(&lane) {
                            continue;
                        }
                        if next_attempt_ms > now {
                            due_at = due_at.min(next_attempt_ms);
                            continue;
                        }
                        if busy.len() >= IN_FLIGHT_MAX {
                            // The rest wait for the next full scan.
                            want_full = true;
                            break;
                        }
                        busy.insert(lane);
                        let (state, client, conn, done) = (state.clone(), client.clone(), conn.clone(), done.clone());
                        tokio::spawn(async move {
                            if let Err(e) = attempt(&state, &client, &conn, delivery_id).await {
                                tracing::error!(delivery_id, error = %e, "a webhook delivery could not be attempted");
                                tokio::time::sleep(Duration::from_millis(DB_RETRY_MS)).await;
                            }
                            let _ = done.send(lane);
                        });
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "webhook deliveries: cannot read what is due");
                    want_full = true;
                    tokio::time::sleep(Duration::from_millis(DB_RETRY_MS)).await;
                }
            }
        }
        let sleep = if want_full {
            last_full.map_or(Duration::ZERO, |at| SCAN_GAP.saturating_sub(at.elapsed()))
        } else {
            let until_due = due_at.min(now_ms().saturating_add(IDLE_MS_MAX)).saturating_sub(now_ms());
            Duration::from_millis(u64::try_from(until_due).unwrap_or(0))
        };
        tokio::select! {
            () = state.webhooks.wake.notified() => want_full = true,
            Some(lane) = finished.recv() => {
                busy.remove(&lane);
                ended.push(lane);
                while let Ok(lane) = finished.try_recv() {
                    busy.remove(&lane);
                    ended.push(lane);
                }
            }
            () = tokio::time::sleep(sleep) => want_full = true,
        }
    }
}

/// The next delivery (id, when it is due, Unix ms) of each lane of an active endpoint:
/// of every one, or of `lanes`.
fn heads(conn: &mut Connection, lanes: Option<&[Lane]>) -> crate::db::Result<Vec<(Lane, i64, i64)>> {
    let all: Vec<Lane>;
    let lanes = match lanes {
        Some(lanes) => lanes,
        None => {
            let endpoints: Vec<i64> = conn
                .prepare_cached("SELECT id FROM webhook_endpoints WHERE active = 1 ORDER BY id")?
                .query_map([], |row| row.get(0))?
                .collect::<Result<_, _>>()?;
            all = endpoints
                .into_iter()
                .flat_map(|endpoint_id| [false, true].map(|redelivery| Lane { endpoint_id, redelivery }))
                .collect();
            &all
        }
    };
    let mut head = conn.prepare_cached(
        "SELECT d.id, d.next_attempt_ms FROM webhook_deliveries d
         JOIN webhook_endpoints e ON e.id = d.endpoint_id AND e.active = 1
         WHERE d.endpoint_id = ?1 AND d.redelivery = ?2 AND d.status = 'pending'
         ORDER BY d.event_seq, d.id LIMIT 1",
    )?;
    let mut heads = Vec::new();
    for lane in lanes {
        if let Some((id, due)) = head
            .query_row(params![lane.endpoint_id, lane.redelivery], |row| Ok((row.get(0)?, row.get(1)?)))
            .optional()?
        {
            heads.push((*lane, id, due));
        }
    }
    Ok(heads)
}

/// What an attempt needs: the endpoint's url and sealed secret, and the event.
struct Work {
    endpoint_id: i64,
    url: String,
    sealed_secret: String,
    attempts: u32,
    event: Event,
}

/// How an attempt ended, as the metrics count it.
fn outcome_label(status: Option<u16>, error: Option<&AttemptError>) -> &'static str {
    match (status, error) {
        (Some(s), _) if (200..300).contains(&s) => "success",
        (Some(_), _) => "http_error",
        (None, Some(AttemptError::Refused(_))) => "refused",
        (None, Some(AttemptError::Timeout)) => "timeout",
        _ => "network_error",
    }
}

/// Why an attempt got no status.
#[derive(Debug)]
enum AttemptError {
    /// The SSRF guard refused the url or every address of its host.
    Refused(String),
    Timeout,
    Network(String),
}

impl std::fmt::Display for AttemptError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AttemptError::Refused(why) => write!(f, "refused: {why}"),
            AttemptError::Timeout => write!(f, "no answer within {TIMEOUT_SECS} s"),
            AttemptError::Network(why) => f.write_str(why),
        }
    }
}

/// The error of a failed request, without its url (which may hold a token in its
/// query), with its causes.
fn describe(e: reqwest::Error) -> AttemptError {
    if e.is_timeout() {
        return AttemptError::Timeout;
    }
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    let mut refused = false;
    while let Some(cause) = source {
        refused |= cause.downcast_ref::<address::UrlError>().is_some();
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    if refused {
        AttemptError::Refused(address::UrlError::PrivateAddress.to_string())
    } else {
        AttemptError::Network(text)
    }
}

/// Makes one attempt of delivery `delivery_id` and records it. `Err` only when the
/// database failed (the delivery is then tried again later).
async fn attempt(state: &AppState, client: &reqwest::Client, conn: &Shared, delivery_id: i64) -> Result<(), String> {
    let work = blocking(conn, move |conn| load(conn, delivery_id)).await?;
    let Some(work) = work else { return Ok(()) };
    let config = &state.webhooks.config;
    let started = Instant::now();
    let sent = send(state, client, config, &work).await;
    let latency_ms = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
    let (status, error) = match sent {
        Ok(status) => (Some(status), None),
        Err(e) => (None, Some(e)),
    };
    let outcome = outcome_label(status, error.as_ref());
    state.metrics.webhook_attempt(outcome, started.elapsed().as_secs_f64());
    let succeeded = outcome == "success";
    let attempts = work.attempts.saturating_add(1);
    let final_failure = !succeeded && attempts >= config.attempts_max;
    let next_attempt_ms = now_ms().saturating_add(i64::try_from(config.backoff_ms(attempts)).unwrap_or(i64::MAX));
    let error_text = error.map(|e| e.to_string().chars().take(ERROR_CHARS_MAX).collect::<String>());
    if final_failure {
        tracing::warn!(delivery_id, endpoint_id = work.endpoint_id, event = %work.event.id, attempts,
                       "a webhook delivery failed for good");
    }
    blocking(conn, move |conn| {
        let tx = crate::db::write_tx(conn)?;
        tx.execute(
            "INSERT INTO webhook_attempts (delivery_id, at_ms, status_code, error, latency_ms)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![delivery_id, now_ms(), status, error_text, latency_ms],
        )?;
        let new_status = if succeeded {
            "succeeded"
        } else if final_failure {
            "failed"
        } else {
            "pending"
        };
        tx.execute(
            "UPDATE webhook_deliveries SET attempts = ?1, status = ?2, next_attempt_ms = ?3, updated_at = ?4
             WHERE id = ?5 AND status = 'pending'",
            params![attempts, new_status, next_attempt_ms, now_secs(), delivery_id],
        )?;
        tx.commit()
    })
    .await
}

/// The delivery's work, if it is still pending for an active endpoint.
fn load(conn: &mut Connection, delivery_id: i64) -> crate::db::Result<Option<Work>> {
    let row = conn
        .prepare_cached(
            "SELECT d.endpoint_id, d.event_seq, d.attempts, e.url, e.secret FROM webhook_deliveries d
             JOIN webhook_endpoints e ON e.id = d.endpoint_id
             WHERE d.id = ?1 AND d.status = 'pending' AND e.active = 1",
        )?
        .query_row([delivery_id], |row| {
            Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?, row.get::<_, u32>(2)?, row.get(3)?, row.get(4)?))
        })
        .optional()?;
    let Some((endpoint_id, event_seq, attempts, url, sealed_secret)) = row else { return Ok(None) };
    let event = crate::events::load(conn, event_seq)?;
    Ok(event.map(|event| Work { endpoint_id, url, sealed_secret, attempts, event }))
}

/// POSTs the event; the status, or why there is none.
async fn send(state: &AppState, client: &reqwest::Client, config: &Config, work: &Work) -> Result<u16, AttemptError> {
    let url = address::check_url(&work.url, config.allow_private).map_err(|e| AttemptError::Refused(e.to_string()))?;
    let secret = state
        .keyring
        .open_with(
            &super::secret_aad(work.endpoint_id),
            &work.sealed_secret,
            &format!("the secret of webhook endpoint {}", work.endpoint_id),
        )
        .map_err(|e| AttemptError::Network(format!("cannot sign: {e}")))?;
    let body = serde_json::to_vec(&work.event).map_err(|e| AttemptError::Network(e.to_string()))?;
    let header = signature::header_value(&secret, now_secs(), &body);
    let response = client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(signature::HEADER, header)
        .body(body)
        .send()
        .await
        .map_err(describe)?;
    Ok(response.status().as_u16())
}
