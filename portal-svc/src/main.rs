//! `portal-svc --data-dir DIR --listen ADDR`: serves the portal over the ledger whose
//! data (the ledger's log and the metadata database) lives under DIR. With
//! `--node-id N --peers 1=HOST:PORT,...` it is node N of a replicated ledger
//! (`portal_svc::cluster`).

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use ledger_core::{Ledger, LedgerOptions, TxId};
use portal_svc::app::{self, AppState};
use portal_svc::cluster::Cluster;
use portal_svc::db::Db;
use portal_svc::secrets;

#[derive(Debug, Parser)]
#[command(version, about = "The ledger's portal service")]
struct Args {
    /// Where everything is stored: DIR/ledger (the log), DIR/portal.db (metadata) and
    /// DIR/secret.key (the key of secrets at rest, unless PORTAL_SECRET_KEY gives it).
    #[arg(long, default_value = "./portal-data", global = true)]
    data_dir: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
    /// Keep the metadata (users, keys, tickets, ...) in this PostgreSQL database,
    /// shared by every node given it, instead of DIR/portal.db:
    /// `postgres://USER@HOST:PORT/DB` (`?host=/socket/dir` for a Unix socket). Rather
    /// than a password here (visible to `ps`), set PORTAL_DATABASE_URL, read when this
    /// is not given. Nodes sharing a database need the same secret key (DIR/secret.key
    /// copied, or PORTAL_SECRET_KEY).
    #[arg(long, global = true)]
    database_url: Option<String>,
    /// Address to listen on (port 0 picks a free port; the line `listening on ...`
    /// says which).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// How long a session from a login lasts, in seconds (1 to a week; 12 hours by default).
    #[arg(long, default_value_t = portal_svc::auth::SESSION_SECS,
          value_parser = clap::value_parser!(i64).range(portal_svc::auth::SESSION_SECS_MIN..=portal_svc::auth::SESSION_SECS_MAX))]
    session_secs: i64,
    /// Failed sign-ins from one source address, over every email, in 15 minutes before
    /// that address is answered 429 (raise it when many users share one address).
    #[arg(long, default_value_t = portal_svc::auth::ADDR_FAILURES_MAX,
          value_parser = clap::value_parser!(i64).range(1..=1_000_000))]
    login_failures_per_address: i64,
    /// Admit webhook urls on loopback and private addresses (refused otherwise: a
    /// webhook must not reach into the service's own network). For tests and closed
    /// networks.
    #[arg(long)]
    allow_private_webhooks: bool,
    /// The delay before a failed webhook delivery's first retry, in milliseconds; each
    /// next retry waits twice as long.
    #[arg(long, default_value_t = portal_svc::webhooks::RETRY_BASE_MS_DEFAULT,
          value_parser = clap::value_parser!(u64).range(1..=86_400_000))]
    webhook_retry_base_ms: u64,
    /// Attempts of a webhook delivery before it is marked failed.
    #[arg(long, default_value_t = portal_svc::webhooks::ATTEMPTS_MAX_DEFAULT,
          value_parser = clap::value_parser!(u32).range(1..=100))]
    webhook_attempts_max: u32,
    /// Cluster mode: this service is node N of a replicated ledger whose members are
    /// `--peers` (its Raft log under DIR/raft). Without it, a single node.
    #[arg(long, requires = "peers", value_parser = clap::value_parser!(u64).range(1..))]
    node_id: Option<u64>,
    /// Cluster mode: every node's replication address, this node's included, the same
    /// list on every node: `1=HOST:PORT,2=HOST:PORT,3=HOST:PORT`. Raft's messages and
    /// the writes followers forward travel there, unauthenticated: keep those
    /// addresses on a private network.
    #[arg(long, requires = "node_id", value_parser = portal_svc::cluster::parse_peers)]
    peers: Option<std::collections::BTreeMap<u64, String>>,
    /// Cluster mode: build a snapshot of the ledger every N Raft entries (an entry is
    /// one commit group; 0: never). A node further behind than the Raft log keeps
    /// catches up from the leader's snapshot.
    #[arg(long, requires = "node_id", default_value_t = ledger_raft::node::SNAPSHOT_EVERY_ENTRIES)]
    raft_snapshot_every: u64,
    /// Cluster mode: Raft entries kept behind the newest snapshot (a node briefly away
    /// catches up from them rather than from a whole snapshot).
    #[arg(long, requires = "node_id", default_value_t = ledger_raft::node::LOG_KEPT_ENTRIES)]
    raft_log_kept: u64,
    /// Cluster mode: join a cluster already formed, as a new node (`--peers` needs only
    /// this node's own entry): it waits until a platform admin's `POST
    /// /v1/cluster/members` (a new member) or `POST /v1/cluster/replace` (in a lost
    /// node's place) on any node makes it a member.
    #[arg(long, requires = "node_id")]
    join: bool,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Re-encrypt every secret at rest under a new key (the service must be stopped):
    /// DIR/secret.key is replaced; with PORTAL_SECRET_KEY set, the new key is taken from
    /// PORTAL_SECRET_KEY_NEW and the variable must then be replaced by it.
    RotateKey,
    /// A consistent copy of the whole service into DEST (new or empty), taken while it
    /// runs: the metadata database through SQLite's online backup API, then the ledger
    /// (`ledger backup`: as of one seq, at or past everything the copied metadata names),
    /// each verified. The secret key is not copied: keep it apart from backups.
    Backup {
        /// Where the copy goes: DEST/portal.db and DEST/ledger.
        dest: PathBuf,
    },
}

/// The environment variable read for `--database-url` when it is not given.
const DATABASE_URL_ENV: &str = "PORTAL_DATABASE_URL";

/// `--database-url`, else PORTAL_DATABASE_URL (never logged: it may hold a password).
fn database_url(args: &Args) -> Option<String> {
    args.database_url.clone().or_else(|| std::env::var(DATABASE_URL_ENV).ok()).filter(|url| !url.is_empty())
}

/// The file a running service holds locked, so `rotate-key` cannot run beside it.
const LOCK_FILE: &str = "portal.lock";

/// Locks `DIR/portal.lock` for the life of the returned file.
fn lock_data_dir(dir: &std::path::Path) -> Result<std::fs::File, Box<dyn std::error::Error>> {
    let path = dir.join(LOCK_FILE);
    let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path)?;
    file.try_lock().map_err(|e| format!("{} is in use by another portal-svc ({e})", dir.display()))?;
    Ok(file)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "portal_svc=info,warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    // Before anything is created: every file 0600 and directory 0700 from its creation.
    secrets::private_umask();
    if let Some(Command::Backup { dest }) = &args.command {
        if database_url(&args).is_some() {
            return Err(
                "the metadata is in PostgreSQL: back it up with pg_dump, the ledger with `ledger backup`".into()
            );
        }
        // Beside the running service: no lock taken, nothing of DIR changed.
        return portal_svc::backup::backup(&args.data_dir, dest);
    }
    secrets::tighten_modes(&args.data_dir)?;
    let _lock = lock_data_dir(&args.data_dir)?;
    if let Some(Command::RotateKey) = args.command {
        let id = match database_url(&args) {
            Some(url) => Db::open_postgres(&url)?
                .call_blocking(|conn| secrets::rotate(&args.data_dir, conn))
                .map_err(|e| e.message)??,
            None => {
                let conn = rusqlite::Connection::open(args.data_dir.join("portal.db"))?;
                conn.pragma_update(None, "secure_delete", "ON")?;
                secrets::rotate(&args.data_dir, &mut portal_svc::db::Conn::sqlite(conn))?
            }
        };
        println!("secrets re-encrypted under key {id}");
        return Ok(());
    }
    let (keyring, _) = secrets::load(&args.data_dir)?;
    let metrics_token = match std::env::var(portal_svc::routes::health::METRICS_TOKEN_ENV) {
        Ok(token) if token.chars().count() >= portal_svc::routes::health::METRICS_TOKEN_CHARS_MIN => {
            Some(*blake3::hash(token.as_bytes()).as_bytes())
        }
        Ok(_) => {
            return Err(format!(
                "{} needs at least {} characters",
                portal_svc::routes::health::METRICS_TOKEN_ENV,
                portal_svc::routes::health::METRICS_TOKEN_CHARS_MIN
            )
            .into());
        }
        Err(_) => None,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    // Cluster mode: the node opens the replicated ledger and joins its peers.
    let cluster = match (args.node_id, args.peers.clone()) {
        (Some(id), Some(peers)) => {
            let options = portal_svc::cluster::NodeOptions {
                snapshot_every_entries: args.raft_snapshot_every,
                log_kept_entries: args.raft_log_kept,
                join: args.join,
            };
            Some(std::sync::Arc::new(runtime.block_on(Cluster::start(id, peers, &args.data_dir, options))?))
        }
        _ => None,
    };
    let ledger = match &cluster {
        Some(cluster) => cluster.node().ledger().clone(),
        None => Ledger::open(args.data_dir.join("ledger"), LedgerOptions::default())?,
    };
    let db = match database_url(&args) {
        Some(url) => Db::open_postgres(&url)?,
        None => Db::open(&args.data_dir.join("portal.db"))?,
    };
    db.call_blocking(|conn| secrets::seal_all(conn, &keyring)).map_err(|e| e.message)??;
    // Money actions a crash left with their audit entry pending are chained now, as
    // the ledger decided them.
    let (ok, failed) = db
        .call_blocking(|conn| {
            portal_svc::audit::recover_pending(conn, |id| {
                <[u8; 16]>::try_from(id).is_ok_and(|id| ledger.lookup(TxId(u128::from_le_bytes(id))).is_some())
            })
        })
        .map_err(|e| e.message)??;
    if ok + failed > 0 {
        tracing::warn!(ok, failed, "chained the audit entries a stop left pending");
    }
    secrets::finish_rotation(&args.data_dir)?;
    // The engine made its files after the walk above, under the umask: check them too.
    secrets::tighten_modes(&args.data_dir)?;
    if let Some((email, password)) = app::bootstrap_admin(&db).map_err(|e| e.message)? {
        // Printed once, on stdout only (never logged): the one way to learn it.
        println!("created platform admin {email} with password {password}");
    }
    let state = AppState {
        session_secs: args.session_secs,
        addr_failures_max: args.login_failures_per_address,
        metrics_token,
        keyring: std::sync::Arc::new(keyring),
        webhooks: std::sync::Arc::new(portal_svc::webhooks::Webhooks::new(portal_svc::webhooks::Config {
            allow_private: args.allow_private_webhooks,
            retry_base_ms: args.webhook_retry_base_ms,
            attempts_max: args.webhook_attempts_max,
        })),
        cluster: cluster.clone(),
        ..AppState::new(db, ledger.clone())
    };
    if let Some(cluster) = &cluster {
        // The other nodes' forwarded writes, answered by the whole service.
        cluster.serve_forwarded(app::router(state.clone()));
    }
    // The holding feed is open before any request is accepted: every record committed
    // from now on (and any after the stored position) becomes an event.
    let follower = portal_svc::follower::start(&state)?;
    // Each client's daily settlement cut-over closes its open batches by itself.
    runtime.spawn(portal_svc::settings::cutover_task(state.clone()));
    // Devices that stop sending heartbeats are announced offline (device.offline).
    runtime.spawn(portal_svc::routes::devices::offline_task(state.clone()));
    // Webhook deliveries, off the request path.
    runtime.spawn(portal_svc::webhooks::delivery::run(state.clone()));
    let db = state.db.clone();
    runtime.block_on(serve(args.listen, state))?;
    follower.stop();
    // Audit entries queued by the last answers are committed before the exit.
    if let Err(e) = runtime.block_on(db.settle()) {
        tracing::error!(error = %e.message, "the last audit entries stay pending until the next start");
    }
    if let Some(cluster) = &cluster
        && let Err(e) = runtime.block_on(cluster.shutdown())
    {
        tracing::error!(error = %e, "the node did not close its ledger cleanly");
    }
    // Stops the cut-over task (it may be between two awaits) before the ledger closes.
    runtime.shutdown_timeout(std::time::Duration::from_secs(SHUTDOWN_TASKS_SECS));
    ledger.close()?;
    Ok(())
}

/// Serves HTTP/1.1 on `listen` until SIGTERM/SIGINT, then stops accepting, lets each
/// connection finish the request it is in and waits for them all.
///
/// The accept loop is this one rather than `axum::serve`, which gives hyper no timer,
/// so hyper's limit on reading a request head never ran: a connection that sent
/// nothing, or a head a byte at a time, was held open forever (found by
/// `tests/security.rs`, `a_silent_or_slow_head_is_cut_off`). Here every connection
/// has [`app::HEAD_SECS_MAX`] to send each request head, idle keep-alive included.
async fn serve(listen: SocketAddr, state: AppState) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    // The handlers are installed before the line is printed: a SIGTERM sent as soon as
    // it is seen drains, rather than killing the process by the default action.
    let shutdown = shutdown_signal(terminate_signal());
    println!("listening on http://{addr}");
    std::io::stdout().flush()?;
    tracing::info!(%addr, "accepting connections");
    let webhooks = std::sync::Arc::clone(&state.webhooks);
    let router = app::router(state);
    let (closing, closing_seen) = tokio::sync::watch::channel(false);
    let mut connections = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, say: wait for some to close rather than spin.
                    tracing::error!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(ACCEPT_RETRY_MS)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = stream;
        // Each request carries its source address (sign-in throttling by address).
        let inner = hyper_util::service::TowerToHyperService::new(router.clone());
        let service = hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
            request.extensions_mut().insert(portal_svc::auth::PeerAddr(peer.ip()));
            hyper::service::Service::call(&inner, request)
        });
        let mut closing_seen = closing_seen.clone();
        connections.spawn(async move {
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(std::time::Duration::from_secs(app::HEAD_SECS_MAX))
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            tokio::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => return,
                _ = closing_seen.changed() => connection.as_mut().graceful_shutdown(),
            }
            let _ = connection.await;
        });
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    // Event streams never end by themselves: end them, so their connections drain.
    webhooks.close_streams();
    let _ = closing.send(true);
    while connections.join_next().await.is_some() {}
    Ok(())
}

/// How long background tasks may take to stop once the connections are drained.
const SHUTDOWN_TASKS_SECS: u64 = 5;

/// How long the accept loop waits after a failed accept before the next.
const ACCEPT_RETRY_MS: u64 = 100;

/// The SIGTERM stream, registered now (`None` if it cannot be).
fn terminate_signal() -> Option<tokio::signal::unix::Signal> {
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok()
}

/// Resolves on SIGINT or SIGTERM; the accept loop then drains in-flight requests.
fn shutdown_signal(terminate: Option<tokio::signal::unix::Signal>) -> impl std::future::Future<Output = ()> {
    // ctrl_c registers its handler when first polled; register it now through a
    // signal stream of its own, like SIGTERM.
    let interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()).ok();
    async move {
        let wait = |s: Option<tokio::signal::unix::Signal>| async move {
            match s {
                Some(mut s) => {
                    s.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = wait(interrupt) => {},
            _ = wait(terminate) => {},
        }
        tracing::info!("shutting down: draining in-flight requests");
    }
}
