//! `portal-svc`: the portal HTTP service over `ledger-core`.
//!
//! Built so far (issue 5, first increment): the service shell (CLI, data directory,
//! graceful shutdown, tracing), the metadata database with versioned migrations, the
//! error body every response uses, the bootstrap admin, and session login with
//! argon2id passwords, hashed tokens and login throttling. Clients, users,
//! applications and API keys, transactions, batches, reports, devices, tickets, notes,
//! MFA, `/metrics` and `/openapi.json` come next; see `ARCHITECTURE.md`.

pub mod app;
pub mod auth;
pub mod db;
pub mod error;
pub mod extract;
pub mod routes;
