//! `portal-svc --data-dir DIR --listen ADDR`: serves the portal over the ledger whose
//! data (the ledger's log and the metadata database) lives under DIR.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use ledger_core::{Ledger, LedgerOptions};
use portal_svc::app::{self, AppState};
use portal_svc::db::Db;

#[derive(Debug, Parser)]
#[command(version, about = "The ledger's portal service")]
struct Args {
    /// Where everything is stored: DIR/ledger (the log) and DIR/portal.db (metadata).
    #[arg(long, default_value = "./portal-data")]
    data_dir: PathBuf,
    /// Address to listen on (port 0 picks a free port; the line `listening on ...`
    /// says which).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// How long a session from a login lasts, in seconds (1 to a week; 12 hours by default).
    #[arg(long, default_value_t = portal_svc::auth::SESSION_SECS,
          value_parser = clap::value_parser!(i64).range(portal_svc::auth::SESSION_SECS_MIN..=portal_svc::auth::SESSION_SECS_MAX))]
    session_secs: i64,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "portal_svc=info,warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    std::fs::create_dir_all(&args.data_dir)?;
    let ledger = Ledger::open(args.data_dir.join("ledger"), LedgerOptions::default())?;
    let db = Db::open(&args.data_dir.join("portal.db"))?;
    if let Some((email, password)) = app::bootstrap_admin(&db).map_err(|e| e.message)? {
        // Printed once, on stdout only (never logged): the one way to learn it.
        println!("created platform admin {email} with password {password}");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let state = AppState { session_secs: args.session_secs, ..AppState::new(db, ledger.clone()) };
    runtime.block_on(serve(args.listen, state))?;
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
    println!("listening on http://{addr}");
    std::io::stdout().flush()?;
    tracing::info!(%addr, "accepting connections");
    let service = hyper_util::service::TowerToHyperService::new(app::router(state));
    let (closing, closing_seen) = tokio::sync::watch::channel(false);
    let mut connections = tokio::task::JoinSet::new();
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors, say: wait for some to close rather than spin.
                    tracing::error!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(ACCEPT_RETRY_MS)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let (service, mut closing_seen) = (service.clone(), closing_seen.clone());
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
    let _ = closing.send(true);
    while connections.join_next().await.is_some() {}
    Ok(())
}

/// How long the accept loop waits after a failed accept before the next.
const ACCEPT_RETRY_MS: u64 = 100;

/// Resolves on SIGINT or SIGTERM; axum then drains in-flight requests.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = interrupt => {},
        _ = terminate => {},
    }
    tracing::info!("shutting down: draining in-flight requests");
}
