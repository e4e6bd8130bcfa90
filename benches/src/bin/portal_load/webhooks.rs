//! `--webhooks`: a local receiver of the service's webhook deliveries (HTTP/1.1 on
//! 127.0.0.1, answering 200, after `--webhook-delay-ms` when a slow receiver is
//! wanted), and the endpoint that subscribes it to the run's client's payments.
//!
//! It counts deliveries and distinct event ids and times the first and the last, so
//! the report says how many deliveries per second reached it and how long after the
//! load the last one came; the service must run with `--allow-private-webhooks`.

use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::BoxError;
use crate::http::{Conn, host_header};

/// What the receiver saw.
#[derive(Debug, Default)]
pub(crate) struct Seen {
    pub(crate) deliveries: AtomicU64,
    pub(crate) signed: AtomicU64,
    ids: Mutex<HashSet<String>>,
    times: Mutex<Option<(Instant, Instant)>>,
}

impl Seen {
    /// Distinct event ids received.
    pub(crate) fn events(&self) -> u64 {
        self.ids.lock().len() as u64
    }

    /// When the first and the last delivery arrived.
    pub(crate) fn span(&self) -> Option<(Instant, Instant)> {
        *self.times.lock()
    }

    fn record(&self, body: &[u8], signed: bool) {
        let now = Instant::now();
        self.deliveries.fetch_add(1, Ordering::Relaxed);
        if signed {
            self.signed.fetch_add(1, Ordering::Relaxed);
        }
        if let Ok(event) = serde_json::from_slice::<Value>(body)
            && let Some(id) = event["id"].as_str()
        {
            self.ids.lock().insert(id.to_string());
        }
        let mut times = self.times.lock();
        *times = Some(times.map_or((now, now), |(first, _)| (first, now)));
    }
}

/// A receiver running on its own tasks until the runtime stops.
#[derive(Debug)]
pub(crate) struct Receiver {
    pub(crate) url: String,
    pub(crate) seen: Arc<Seen>,
}

/// Starts the receiver on a free port of 127.0.0.1.
pub(crate) async fn start(delay: Duration) -> Result<Receiver, BoxError> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    let seen = Arc::new(Seen::default());
    let shared = Arc::clone(&seen);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let seen = Arc::clone(&shared);
            tokio::spawn(async move {
                let service = service_fn(move |request: Request<Incoming>| {
                    let seen = Arc::clone(&seen);
                    async move {
                        let signed = request.headers().get("portal-signature").is_some();
                        let body = request.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                        if !delay.is_zero() {
                            tokio::time::sleep(delay).await;
                        }
                        seen.record(&body, signed);
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
                    }
                });
                let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
    Ok(Receiver { url, seen })
}

/// As the platform admin (`token`), makes a client admin for `client_id`, signs in as
/// them and subscribes `url` to the client's payment events.
pub(crate) async fn subscribe(authority: &str, token: &str, client_id: i64, url: &str) -> Result<(), BoxError> {
    let host = host_header(authority)?;
    let mut conn = Conn::open(authority).await?;
    let email = format!("hooks-{client_id}@portal-load.invalid");
    let password = "portal-load webhook admin password";
    let user = json!({ "email": email, "password": password, "role": "client_admin", "client_id": client_id });
    conn.call(&host, Method::POST, "/v1/users", Some(token), Some(user), StatusCode::CREATED).await?;
    let login = json!({ "email": email, "password": password });
    let session = conn.call(&host, Method::POST, "/v1/auth/login", None, Some(login), StatusCode::OK).await?;
    let session = session["token"].as_str().ok_or("the client admin's login has no token")?.to_string();
    let endpoint = json!({ "url": url, "events": ["payment.created"] });
    conn.call(&host, Method::POST, "/v1/webhook-endpoints", Some(&session), Some(endpoint), StatusCode::CREATED)
        .await?;
    Ok(())
}

/// Waits until `want` distinct events arrived or `limit` passed; true when they all did.
pub(crate) async fn drained(seen: &Seen, want: u64, limit: Duration) -> bool {
    let until = Instant::now() + limit;
    while seen.events() < want {
        if Instant::now() >= until {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    true
}
