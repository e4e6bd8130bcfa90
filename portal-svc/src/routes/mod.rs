//! HTTP routes, one module per resource.

pub mod auth;
pub mod batches;
pub mod clients;
pub mod health;
pub mod tickets;
pub mod transactions;
