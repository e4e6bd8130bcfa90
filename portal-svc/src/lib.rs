//! `portal-svc`: the portal HTTP service over `ledger-core`.
//!
//! Built so far (issue 5): the service shell (CLI, data directory, graceful shutdown,
//! tracing), the metadata database with versioned migrations, the error body every
//! response uses, the bootstrap admin, session login (argon2id passwords, hashed tokens,
//! throttling), clients, users with roles, and client applications with `sk_` API keys
//! (shown once, stored as hashes, compared in constant time, revocable), every query
//! scoped to the caller's client; and transactions (payments, adjustments, captures,
//! voids, refunds, lookups, lists) committed durably through the engine, with
//! `Idempotency-Key` deriving the ledger id from (client, key) and replaying the stored
//! response; batches (close, list, get, reconciliation) and balances; support tickets
//! (state machine, assignment, comments). Reports, devices, notes, MFA, the audit log,
//! `/metrics` and `/openapi.json` come next; see `ARCHITECTURE.md`.
//!
//! Issue 15 (a payments security audit): secrets at rest (`secrets`), PCI lockout and
//! per-address throttling (`auth`), a hash-chained audit trail of every action
//! (`audit`, `routes::audit`), the user lifecycle and password policy
//! (`routes::users`, `password`), client settings with the settlement cut-over
//! (`settings`), and `/metrics` behind its own token.
//!
//! Issue 17: events from the ledger's change feed (`follower`, `events`), webhook
//! endpoints and signed, retried, ordered deliveries with an SSRF guard (`webhooks`,
//! `routes::webhooks`), `GET /v1/events` and its server-sent stream (`routes::events`).
//!
//! Issue 19: cluster mode (`cluster`, `routes::cluster`): node N of a replicated
//! ledger, writes on a follower forwarded to the leader.

pub mod api;
pub mod app;
pub mod audit;
pub mod auth;
pub mod backup;
pub mod cluster;
pub mod db;
pub mod error;
pub mod events;
pub mod extract;
pub mod follower;
pub mod idempotency;
pub mod mfa;
pub mod password;
pub mod pg;
pub mod reads;
pub mod routes;
pub mod schema;
pub mod secrets;
pub mod settings;
pub mod sql;
pub mod webhooks;
