//! Liveness.

/// `GET /healthz`: 200 while the service accepts connections.
pub async fn healthz() -> &'static str {
    "ok"
}
