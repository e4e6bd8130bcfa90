//! Starts the real `portal-svc` binary on an ephemeral port and talks HTTP to it.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)] // each test file uses a subset

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

pub mod cluster;
pub mod pg;

pub const ADMIN_EMAIL: &str = "root@example.test";
pub const ADMIN_PASSWORD: &str = "a long and correct password";

/// How [`Service::start_with`] starts the binary beyond the defaults.
#[derive(Debug, Default, Clone)]
pub struct Launch {
    /// More command-line arguments (`--session-secs 2`).
    pub args: Vec<String>,
    /// More environment (`RUST_LOG`).
    pub env: Vec<(String, String)>,
    /// A file that stderr is appended to (the service's logs), instead of nowhere.
    pub stderr: Option<std::path::PathBuf>,
    /// A command the binary runs under (`ip netns exec NS`), which must exec it in
    /// place: the child's pid is the service's.
    pub prefix: Vec<String>,
    /// The public listener's address, instead of `127.0.0.1:0`.
    pub listen: Option<String>,
}

/// A running service; stopped (SIGTERM, then waited for) when dropped.
pub struct Service {
    pub child: Child,
    pub base: String,
    /// Lines the service printed on stdout before `listening on`.
    pub banner: Vec<String>,
    agent: ureq::Agent,
}

impl Service {
    /// Starts the service on `dir`, with the admin from the environment when `admin`.
    pub fn start(dir: &std::path::Path, admin: bool) -> Service {
        Service::start_with(dir, admin, &Launch::default())
    }

    /// [`Service::start`] with more arguments, environment and where stderr goes.
    pub fn start_with(dir: &std::path::Path, admin: bool, launch: &Launch) -> Service {
        let binary = env!("CARGO_BIN_EXE_portal-svc");
        let mut cmd = match launch.prefix.split_first() {
            Some((program, args)) => {
                let mut cmd = Command::new(program);
                cmd.args(args).arg(binary);
                cmd
            }
            None => Command::new(binary),
        };
        let stderr = match &launch.stderr {
            Some(path) => Stdio::from(std::fs::OpenOptions::new().create(true).append(true).open(path).unwrap()),
            None if std::env::var_os("PORTAL_TEST_STDERR").is_some() => Stdio::inherit(),
            None => Stdio::null(),
        };
        let listen = launch.listen.as_deref().unwrap_or("127.0.0.1:0");
        cmd.args(["--data-dir", dir.to_str().unwrap(), "--listen", listen]).args(&launch.args);
        // PORTAL_TEST_POSTGRES: the metadata in a database of its own on the suite's server.
        if pg::enabled() && !launch.args.iter().any(|a| a == "--database-url") {
            cmd.args(["--database-url", &pg::database_for(dir)]);
        }
        cmd.stdout(Stdio::piped()).stderr(stderr).env_remove("PORTAL_ADMIN_EMAIL").env_remove("PORTAL_ADMIN_PASSWORD");
        for (name, value) in &launch.env {
            cmd.env(name, value);
        }
        if admin {
            cmd.env("PORTAL_ADMIN_EMAIL", ADMIN_EMAIL).env("PORTAL_ADMIN_PASSWORD", ADMIN_PASSWORD);
        }
        let mut child = cmd.spawn().unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut banner = Vec::new();
        let base = loop {
            let line = lines.next().expect("the service exited before listening").unwrap();
            if let Some(addr) = line.strip_prefix("listening on ") {
                break addr.to_string();
            }
            banner.push(line);
        };
        if pg::enabled() {
            assert!(!dir.join("portal.db").exists(), "on PostgreSQL, no metadata under the data directory");
        }
        // The service closes a keep-alive connection idle for HEAD_SECS_MAX (hyper's
        // header read timeout); reusing one near that age races the close and fails
        // with a reset (seen in a_slow_body_is_cut_off, whose last request follows a
        // 10 s wait). Pooled connections are retired well before it.
        let idle = std::time::Duration::from_secs(portal_svc::app::HEAD_SECS_MAX / 2);
        let agent: ureq::Agent =
            ureq::Agent::config_builder().http_status_as_error(false).max_idle_age(idle).build().into();
        Service { child, base, banner, agent }
    }

    /// Sends a request; returns the status and the body parsed as JSON (Null if none).
    pub fn request(&self, method: &str, path: &str, token: Option<&str>, body: Option<&str>) -> (u16, Value) {
        let url = format!("{}{path}", self.base);
        let auth = token.map(|t| format!("Bearer {t}"));
        let response = match (method, body) {
            ("GET", _) => {
                let mut r = self.agent.get(&url);
                if let Some(a) = &auth {
                    r = r.header("Authorization", a);
                }
                r.call()
            }
            ("DELETE", _) => {
                let mut r = self.agent.delete(&url);
                if let Some(a) = &auth {
                    r = r.header("Authorization", a);
                }
                r.call()
            }
            ("PUT", body) => {
                let mut r = self.agent.put(&url).header("Content-Type", "application/json");
                if let Some(a) = &auth {
                    r = r.header("Authorization", a);
                }
                r.send(body.unwrap_or(""))
            }
            ("PATCH", body) => {
                let mut r = self.agent.patch(&url).header("Content-Type", "application/json");
                if let Some(a) = &auth {
                    r = r.header("Authorization", a);
                }
                r.send(body.unwrap_or(""))
            }
            (_, body) => {
                let mut r = self.agent.post(&url).header("Content-Type", "application/json");
                if let Some(a) = &auth {
                    r = r.header("Authorization", a);
                }
                r.send(body.unwrap_or(""))
            }
        };
        let mut response = response.unwrap();
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    pub fn login(&self, email: &str, password: &str) -> (u16, Value) {
        let body = serde_json::json!({ "email": email, "password": password }).to_string();
        self.request("POST", "/v1/auth/login", None, Some(&body))
    }

    /// Sends SIGTERM and waits; returns whether it exited successfully.
    pub fn stop(mut self) -> bool {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        self.child.wait().unwrap().success()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Asserts the API's error body and returns its code.
pub fn error_code(body: &Value) -> String {
    let error = &body["error"];
    assert!(error["type"].is_string() && error["message"].is_string(), "not an error body: {body}");
    error["code"].as_str().unwrap().to_string()
}

impl Service {
    /// Signs in and returns the session token.
    pub fn token(&self, email: &str, password: &str) -> String {
        let (status, body) = self.login(email, password);
        assert_eq!(status, 200, "login {email}: {body}");
        body["token"].as_str().unwrap().to_string()
    }

    /// POSTs `body` as JSON and returns status and reply.
    pub fn post(&self, path: &str, token: &str, body: Value) -> (u16, Value) {
        self.request("POST", path, Some(token), Some(&body.to_string()))
    }
}

impl Service {
    /// POSTs JSON with an optional Idempotency-Key; returns status, whether the reply
    /// says Idempotent-Replayed, and the body.
    pub fn post_keyed(&self, path: &str, token: &str, key: Option<&str>, body: &str) -> (u16, bool, Value) {
        let mut r = self
            .agent
            .post(&format!("{}{path}", self.base))
            .header("Content-Type", "application/json")
            .header("Authorization", &format!("Bearer {token}"));
        if let Some(k) = key {
            r = r.header("Idempotency-Key", k);
        }
        let mut response = r.send(body).unwrap();
        let replayed = response.headers().get("Idempotent-Replayed").is_some_and(|v| v == "true");
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().unwrap();
        (status, replayed, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    /// An admin-made client with an application; returns (client id, API key).
    pub fn client_with_key(&self, admin: &str, name: &str) -> (i64, String) {
        let (_, client) = self.post("/v1/clients", admin, serde_json::json!({ "name": name }));
        let id = client["id"].as_i64().unwrap();
        let (status, app) =
            self.post(&format!("/v1/clients/{id}/applications"), admin, serde_json::json!({ "name": "app" }));
        assert_eq!(status, 201, "{app}");
        (id, app["api_key"].as_str().unwrap().to_string())
    }
}

/// The metadata database of the service on `dir` (SQLite under it, or its PostgreSQL
/// database when the suite runs on PostgreSQL), opened beside the service.
pub fn open_metadata(dir: &std::path::Path) -> portal_svc::db::Db {
    if pg::enabled() {
        portal_svc::db::Db::open_postgres(&pg::database_for(dir)).unwrap()
    } else {
        portal_svc::db::Db::open(&dir.join("portal.db")).unwrap()
    }
}

/// Everything the metadata database holds, as bytes to search: the SQLite file, or
/// every row of every table of the PostgreSQL database as text.
pub fn metadata_bytes(dir: &std::path::Path) -> Vec<u8> {
    if !pg::enabled() {
        return std::fs::read(dir.join("portal.db")).unwrap();
    }
    let mut client = postgres::Client::connect(&pg::database_for(dir), postgres::NoTls).unwrap();
    let tables: Vec<String> = client
        .query("SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public'", &[])
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    let mut out = Vec::new();
    for table in tables {
        for row in client.query(&format!("SELECT CAST(t AS TEXT) FROM \"{table}\" t"), &[]).unwrap() {
            out.extend_from_slice(row.get::<_, String>(0).as_bytes());
            out.push(b'\n');
        }
    }
    out
}
