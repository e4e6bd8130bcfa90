//! One persistent HTTP/1.1 connection (hyper's low-level client, no pool), and the
//! setup and check calls made over it: login, a client, an application's API key, the
//! balance.

use std::collections::BTreeMap;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST, HeaderValue};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use ledger_core::Currency;
use ledger_core::money::parse_minor;
use serde_json::{Value, json};
use tokio::net::TcpStream;

use crate::BoxError;

/// A keep-alive connection; requests on it go one at a time.
#[derive(Debug)]
pub(crate) struct Conn {
    sender: SendRequest<Full<Bytes>>,
}

impl Conn {
    /// Connects to `authority` (`HOST:PORT`) and runs the HTTP/1.1 handshake; the
    /// connection is driven by a task of its own.
    pub(crate) async fn open(authority: &str) -> Result<Conn, BoxError> {
        let stream = TcpStream::connect(authority).await.map_err(|e| format!("connect to {authority}: {e}"))?;
        stream.set_nodelay(true)?;
        let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            // Ends when the sender is dropped or the peer closes; a failure shows up as
            // the error of the request in flight.
            let _ = connection.await;
        });
        Ok(Conn { sender })
    }

    /// Sends `request` and reads the whole response.
    pub(crate) async fn send(&mut self, request: Request<Full<Bytes>>) -> Result<(StatusCode, Bytes), hyper::Error> {
        self.sender.ready().await?;
        let response = self.sender.send_request(request).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        Ok((status, body))
    }

    /// A JSON call that must answer `expect`; returns the parsed body.
    pub(crate) async fn call(
        &mut self,
        host: &HeaderValue,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
        expect: StatusCode,
    ) -> Result<Value, BoxError> {
        let mut builder = Request::builder().method(method.clone()).uri(path).header(HOST, host.clone());
        if let Some(token) = token {
            builder = builder.header(AUTHORIZATION, format!("Bearer {token}"));
        }
        let body = match body {
            Some(b) => {
                builder = builder.header(CONTENT_TYPE, "application/json");
                Bytes::from(b.to_string())
            }
            None => Bytes::new(),
        };
        let (status, answer) = self.send(builder.body(Full::new(body))?).await?;
        if status != expect {
            return Err(format!(
                "{method} {path} answered {status} (expected {expect}): {}",
                String::from_utf8_lossy(&answer)
            )
            .into());
        }
        Ok(serde_json::from_slice(&answer).map_err(|e| format!("{method} {path}: the body is not JSON: {e}"))?)
    }
}

/// The `Host` header for `authority`.
pub(crate) fn host_header(authority: &str) -> Result<HeaderValue, BoxError> {
    Ok(HeaderValue::from_str(authority).map_err(|e| format!("bad address {authority:?}: {e}"))?)
}

/// What [`provision`] made: the application's API key, the client, the admin's token.
#[derive(Debug)]
pub(crate) struct Provisioned {
    pub(crate) api_key: String,
    pub(crate) client_id: i64,
    pub(crate) admin_token: String,
}

/// Signs in as the platform admin, creates a client named `client_name` and an
/// application for it.
pub(crate) async fn provision(
    authority: &str,
    email: &str,
    password: &str,
    client_name: &str,
) -> Result<Provisioned, BoxError> {
    let host = host_header(authority)?;
    let mut conn = Conn::open(authority).await?;
    let login = json!({ "email": email, "password": password });
    let session = conn.call(&host, Method::POST, "/v1/auth/login", None, Some(login), StatusCode::OK).await?;
    let token = session["token"].as_str().ok_or("the login answer has no token")?.to_string();
    let client = conn
        .call(
            &host,
            Method::POST,
            "/v1/clients",
            Some(&token),
            Some(json!({ "name": client_name })),
            StatusCode::CREATED,
        )
        .await?;
    let client_id = client["id"].as_i64().ok_or("the new client has no integer id")?;
    let app = conn
        .call(
            &host,
            Method::POST,
            &format!("/v1/clients/{client_id}/applications"),
            Some(&token),
            Some(json!({ "name": "portal-load" })),
            StatusCode::CREATED,
        )
        .await?;
    let api_key = app["api_key"].as_str().ok_or("the new application has no api_key")?.to_string();
    Ok(Provisioned { api_key, client_id, admin_token: token })
}

/// `GET /v1/balance`: the captured total of each currency, in minor units.
pub(crate) async fn captured_totals(authority: &str, api_key: &str) -> Result<BTreeMap<String, i64>, BoxError> {
    let host = host_header(authority)?;
    let mut conn = Conn::open(authority).await?;
    let balance = conn.call(&host, Method::GET, "/v1/balance", Some(api_key), None, StatusCode::OK).await?;
    let entries = balance["data"].as_array().ok_or("the balance has no data array")?;
    let mut totals = BTreeMap::new();
    for entry in entries {
        let code = entry["currency"].as_str().ok_or("a balance entry has no currency")?;
        let currency =
            Currency::from_code(code).ok_or_else(|| format!("the balance names an unknown currency {code}"))?;
        let captured = entry["captured"].as_str().ok_or("a balance entry has no captured string")?;
        let minor = parse_minor(captured, currency).map_err(|e| format!("captured {captured:?} {code}: {e}"))?;
        totals.insert(code.to_string(), minor);
    }
    Ok(totals)
}
