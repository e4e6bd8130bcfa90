//! Webhooks (issue 17): endpoints per client subscribed to event types, deliveries
//! signed like Stripe's (`signature`), at least once, in event order per endpoint on
//! first delivery, retried with exponential backoff up to a bound and then marked
//! failed (`delivery`), to addresses the SSRF guard admits (`address`).
//!
//! What the rest of the service shares with the deliveries and the event stream is
//! [`Webhooks`]: the configuration, the worker's wake-up, the broadcast of new events
//! to `GET /v1/events/stream`, and the events follower's health.

pub mod address;
pub mod delivery;
pub mod signature;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::events::Event;

/// Prefix of an endpoint's signing secret.
pub const SECRET_PREFIX: &str = "whsec_";
/// Random bytes in a secret (hex after the prefix).
pub const SECRET_BYTES: usize = 32;

/// A new signing secret: `whsec_` and 64 hex digits.
pub fn new_secret() -> String {
    use rand_core::RngCore;
    let mut bytes = [0u8; SECRET_BYTES];
    rand_core::OsRng.fill_bytes(&mut bytes);
    format!("{SECRET_PREFIX}{}", hex::encode(bytes))
}

/// The associated data an endpoint's sealed secret is bound to (`secrets.rs`): its
/// row, in a namespace of its own (a user's MFA secret under the same id does not
/// decrypt as it).
pub fn secret_aad(endpoint_id: i64) -> Vec<u8> {
    let mut aad = b"webhook_endpoint:".to_vec();
    aad.extend_from_slice(&endpoint_id.to_le_bytes());
    aad
}

/// How deliveries are made.
#[derive(Debug, Clone)]
pub struct Config {
    /// `--allow-private-webhooks`: loopback and private addresses are admitted.
    pub allow_private: bool,
    /// The first retry's delay; each next one doubles it.
    pub retry_base_ms: u64,
    /// Attempts of a delivery before it is marked failed.
    pub attempts_max: u32,
}

/// Default first retry delay: with [`ATTEMPTS_MAX_DEFAULT`] doubling delays, the last
/// attempt comes about an hour after the first (30 s + 1 + 2 + ... + 32 min).
pub const RETRY_BASE_MS_DEFAULT: u64 = 30_000;
/// Default attempts of one delivery.
pub const ATTEMPTS_MAX_DEFAULT: u32 = 8;
/// How long a receiver has to answer one delivery.
pub const TIMEOUT_SECS: u64 = 10;

impl Default for Config {
    fn default() -> Config {
        Config { allow_private: false, retry_base_ms: RETRY_BASE_MS_DEFAULT, attempts_max: ATTEMPTS_MAX_DEFAULT }
    }
}

impl Config {
    /// The delay after the `attempt`th failed attempt (1-based): base * 2^(attempt-1),
    /// at most a day.
    pub fn backoff_ms(&self, attempt: u32) -> u64 {
        const DELAY_MS_MAX: u64 = 24 * 3600 * 1000;
        let factor = 1u64.checked_shl(attempt.saturating_sub(1).min(40)).unwrap_or(u64::MAX);
        self.retry_base_ms.saturating_mul(factor).min(DELAY_MS_MAX)
    }
}

/// Events buffered for slow stream readers before they miss some (they are told).
pub const STREAM_BUFFER_EVENTS: usize = 1024;

/// What the service shares about webhooks and events.
#[derive(Debug)]
pub struct Webhooks {
    pub config: Config,
    /// Wakes the delivery worker (new deliveries queued, an endpoint changed).
    pub wake: tokio::sync::Notify,
    /// New events, for `GET /v1/events/stream`.
    pub stream: tokio::sync::broadcast::Sender<Arc<Event>>,
    /// The events follower's state.
    pub follower: FollowerHealth,
    /// Set when the service stops: event streams end, so connections can drain.
    closing: tokio::sync::watch::Sender<bool>,
}

impl Webhooks {
    pub fn new(config: Config) -> Webhooks {
        Webhooks {
            config,
            wake: tokio::sync::Notify::new(),
            stream: tokio::sync::broadcast::channel(STREAM_BUFFER_EVENTS).0,
            follower: FollowerHealth::default(),
            closing: tokio::sync::watch::channel(false).0,
        }
    }

    /// Tells the event streams to end (the service is stopping).
    pub fn close_streams(&self) {
        self.closing.send_replace(true);
    }

    /// Watches for [`Webhooks::close_streams`].
    pub fn closing(&self) -> tokio::sync::watch::Receiver<bool> {
        self.closing.subscribe()
    }

    /// Announces events just committed: to the delivery worker and the streams.
    pub fn published(&self, events: impl IntoIterator<Item = Event>) {
        for event in events {
            // No receiver is no error: nobody is watching.
            let _ = self.stream.send(Arc::new(event));
        }
        self.wake.notify_one();
    }
}

impl Default for Webhooks {
    fn default() -> Webhooks {
        Webhooks::new(Config::default())
    }
}

/// The events follower's health, for `/metrics` (and the logs): a feed error or a
/// panic is counted here, and the follower retries.
#[derive(Debug, Default)]
pub struct FollowerHealth {
    /// The next ledger seq the follower will read (its persisted position).
    pub position: AtomicU64,
    /// Errors (and panics) since the start.
    pub errors: AtomicU64,
    /// Whether it is following now (false after an error, until it runs again).
    pub running: AtomicBool,
}

impl FollowerHealth {
    // Relaxed throughout: independent gauges read by a scrape, ordering nothing else.
    pub fn set_position(&self, next_seq: u64) {
        self.position.store(next_seq, Ordering::Relaxed);
    }

    pub fn position(&self) -> u64 {
        self.position.load(Ordering::Relaxed)
    }

    pub fn failed(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        self.running.store(false, Ordering::Relaxed);
    }

    pub fn set_running(&self, running: bool) {
        self.running.store(running, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_a_bound() {
        let config = Config::default();
        assert_eq!(config.backoff_ms(1), 30_000);
        assert_eq!(config.backoff_ms(2), 60_000);
        let total: u64 = (1..config.attempts_max).map(|a| config.backoff_ms(a)).sum();
        assert!((3_600_000..4_000_000).contains(&total), "about an hour: {total}");
        assert_eq!(config.backoff_ms(200), 24 * 3600 * 1000);
    }

    #[test]
    fn secrets_are_fresh_and_shaped() {
        let a = new_secret();
        assert!(a.starts_with(SECRET_PREFIX) && a.len() == SECRET_PREFIX.len() + 2 * SECRET_BYTES);
        assert_ne!(a, new_secret());
    }
}
