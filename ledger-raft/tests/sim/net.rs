//! Raft's HTTP messages over turmoil's simulated TCP: the client side through
//! `ledger_raft::network::NetworkOver`, the server side as an `axum::serve` listener.

use std::net::SocketAddr;
use std::time::Duration;

use ledger_raft::network::Connect;

/// Connects to a peer (`HOST:PORT`, the host a turmoil name) over the simulated network.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SimConnect;

impl Connect for SimConnect {
    type Stream = turmoil::net::TcpStream;

    async fn connect(&self, addr: &str) -> std::io::Result<turmoil::net::TcpStream> {
        let addr = addr.to_string();
        turmoil::net::TcpStream::connect(addr).await
    }
}

/// A turmoil listener that `axum::serve` accepts on.
pub(crate) struct SimListener(pub(crate) turmoil::net::TcpListener);

impl std::fmt::Debug for SimListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("SimListener").field(&self.0.local_addr().ok()).finish()
    }
}

impl axum::serve::Listener for SimListener {
    type Io = turmoil::net::TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.0.accept().await {
                Ok(accepted) => return accepted,
                // As axum does for a TCP listener: wait a little, accept again.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.0.local_addr()
    }
}
