//! A real PostgreSQL (Debian's package) for the tests: one server per test binary,
//! initialised into a temporary directory, listening on a free loopback port with its
//! socket in that directory, stopped and removed when the binary exits; a fresh
//! database per data directory (so a restarted service finds its metadata again).
//!
//! As root (CI), the server runs as the unprivileged `postgres` user through `runuser`
//! (initdb refuses root). `PG_BIN` may name the directory of `initdb`/`pg_ctl`;
//! otherwise the newest `/usr/lib/postgresql/N/bin`, then `PATH`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

/// Run every service of the suite on PostgreSQL when this is set (to anything but `0`).
pub const POSTGRES_ENV: &str = "PORTAL_TEST_POSTGRES";

/// Whether the suite runs on PostgreSQL.
pub fn enabled() -> bool {
    std::env::var(POSTGRES_ENV).is_ok_and(|v| !v.is_empty() && v != "0")
}

/// The running server.
pub struct Server {
    /// The temporary directory (data, socket, log); removed at exit.
    pub dir: PathBuf,
    pub port: u16,
    bin: PathBuf,
    as_postgres: bool,
}

static SERVER: OnceLock<Server> = OnceLock::new();
/// Databases created so far (by name).
static CREATED: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("PG_BIN") {
        return PathBuf::from(dir);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, bin): &(u32, PathBuf)| bin.join("initdb").exists())
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin).unwrap_or_default()
}

impl Server {
    fn command(&self, tool: &str) -> Command {
        let tool = if self.bin.as_os_str().is_empty() { PathBuf::from(tool) } else { self.bin.join(tool) };
        if self.as_postgres {
            let mut cmd = Command::new("runuser");
            cmd.args(["-u", "postgres", "--"]).arg(tool);
            cmd
        } else {
            Command::new(tool)
        }
    }

    fn start() -> Server {
        let as_postgres = unsafe_free_is_root();
        let dir = std::env::temp_dir().join(format!("portal-pg-{}-{}", std::process::id(), unique()));
        std::fs::create_dir_all(&dir).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let server = Server { dir, port, bin: bin_dir(), as_postgres };
        if as_postgres {
            let status = Command::new("chown").args(["-R", "postgres:postgres"]).arg(&server.dir).status().unwrap();
            assert!(status.success(), "chown of the PostgreSQL directory");
        }
        let data = server.dir.join("data");
        let out = server
            .command("initdb")
            .args(["-D"])
            .arg(&data)
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync", "--locale=C"])
            .output()
            .unwrap_or_else(|e| panic!("initdb (apt-get install postgresql, or set PG_BIN): {e}"));
        assert!(out.status.success(), "initdb failed: {}", String::from_utf8_lossy(&out.stderr));
        // Tests want speed, not durability: nothing is synced.
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off \
             -c full_page_writes=off -c max_connections=300 -c shared_buffers=32MB",
            server.port,
            server.dir.display()
        );
        let out = server
            .command("pg_ctl")
            .arg("-D")
            .arg(&data)
            .args(["-o", &options, "-l"])
            .arg(server.dir.join("server.log"))
            .args(["-w", "start"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pg_ctl start failed: {}{}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(server.dir.join("server.log")).unwrap_or_default()
        );
        extern "C" fn stop_at_exit() {
            if let Some(server) = SERVER.get() {
                server.stop();
            }
        }
        // SAFETY: `stop_at_exit` is a plain `extern "C" fn()` that never unwinds out
        // (the commands it runs report failure by status, which it ignores).
        unsafe {
            libc::atexit(stop_at_exit);
        }
        server
    }

    /// Stops the server and removes its directory.
    pub fn stop(&self) {
        let _ = self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-m", "immediate", "-w", "stop"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }

    /// The url of database `name` (no password: the server trusts loopback).
    pub fn url(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// Creates database `name` unless it was created already; returns its url.
    pub fn database(&self, name: &str) -> String {
        let mut created = CREATED.lock().unwrap();
        if !created.iter().any(|n| n == name) {
            let mut admin = postgres::Client::connect(&self.url("postgres"), postgres::NoTls).unwrap();
            admin.batch_execute(&format!("CREATE DATABASE \"{name}\"")).unwrap();
            created.push(name.to_string());
        }
        self.url(name)
    }
}

fn unsafe_free_is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn unique() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(0))
}

/// The suite's server, started on first use.
pub fn server() -> &'static Server {
    SERVER.get_or_init(Server::start)
}

/// The url of the database that belongs to data directory `dir` (created now if new).
pub fn database_for(dir: &Path) -> String {
    let name = format!("t_{}", &blake3::hash(dir.as_os_str().as_encoded_bytes()).to_hex()[..16]);
    server().database(&name)
}
