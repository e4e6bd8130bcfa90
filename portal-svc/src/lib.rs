//! `portal-svc`: the portal HTTP service (auth, clients, applications, transactions,
//! batches, reports, devices, tickets, notes) over `ledger-core`.
//!
//! Not built yet: it arrives with the portal-svc issue. Until then README's "run"
//! command runs the ledger-store example instead.
