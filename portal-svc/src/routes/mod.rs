//! HTTP routes, one module per resource; each declares its endpoints for the route
//! table (`crate::api`).

pub mod audit;
pub mod auth;
pub mod batches;
pub mod clients;
pub mod cluster;
pub mod devices;
pub mod events;
pub mod health;
pub mod notes;
pub mod reports;
pub mod tickets;
pub mod transactions;
pub mod users;
pub mod web;
pub mod webhooks;
