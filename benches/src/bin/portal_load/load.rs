//! The load: one task per connection sending `POST /v1/transactions` back to back
//! (closed loop) or on a fixed schedule (open loop), each keeping its own latency
//! histogram, status counts and the money it got 201 for; merged at the end.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST, HeaderName, HeaderValue};
use hyper::{Method, Request, StatusCode, Uri};
use ledger_core::Currency;
use ledger_core::money::format_minor;

use crate::BoxError;
use crate::http::Conn;

/// Non-201 answers kept (with their bodies) per connection, and in the report.
pub(crate) const ERROR_SAMPLES_MAX: usize = 5;
/// Open loop: how long after the end sends scheduled before it may still go out (a
/// connection whose last answer came in late); later ones count as missed.
const OPEN_LOOP_DRAIN_MS_MAX: u64 = 1_000;
/// Largest latency the histograms resize to before saturating: one minute.
const LATENCY_US_MAX: u64 = 60_000_000;

/// The currencies sent, with their share of requests (out of 100) and the largest
/// amount in minor units: most payments in USD, some in EUR, JPY (no minor digits)
/// and KWD (three).
const MIX: [(&str, u64, u64); 4] = [("USD", 60, 99_999), ("EUR", 25, 99_999), ("JPY", 10, 99_999), ("KWD", 5, 999_999)];
const _: () = assert!(MIX[0].1 + MIX[1].1 + MIX[2].1 + MIX[3].1 == 100);

/// What every connection's task shares.
#[derive(Debug)]
pub(crate) struct Config {
    pub(crate) authority: String,
    pub(crate) connections: usize,
    /// Per connection, the time between scheduled sends; `None` for a closed loop.
    pub(crate) interval: Option<Duration>,
    pub(crate) idempotency_keys: bool,
    pub(crate) seed: u64,
    /// Makes idempotency keys unique across runs against one service.
    run_id: u64,
    host: HeaderValue,
    bearer: HeaderValue,
    currencies: Vec<Currency>,
}

impl Config {
    pub(crate) fn new(
        authority: String,
        api_key: &str,
        connections: usize,
        rate: Option<f64>,
        idempotency_keys: bool,
        seed: u64,
        run_id: u64,
    ) -> Result<Config, BoxError> {
        let host = crate::http::host_header(&authority)?;
        let bearer = HeaderValue::from_str(&format!("Bearer {api_key}"))?;
        let currencies = MIX
            .iter()
            .map(|(code, _, _)| Currency::from_code(code).ok_or_else(|| format!("{code} is not a currency")))
            .collect::<Result<Vec<_>, _>>()?;
        let interval = match rate {
            None => None,
            Some(r) if r.is_finite() && r > 0.0 => Some(Duration::from_secs_f64(connections as f64 / r)),
            Some(r) => return Err(format!("--rate must be a positive number of requests per second, not {r}").into()),
        };
        Ok(Config { authority, connections, interval, idempotency_keys, seed, run_id, host, bearer, currencies })
    }

    /// The currency codes of [`MIX`], in its order.
    pub(crate) fn currency_codes(&self) -> impl Iterator<Item = &str> {
        self.currencies.iter().map(Currency::code)
    }

    /// Request number `seq` of connection `conn`.
    fn request(&self, conn: usize, seq: u64, amount: u64, currency: usize) -> Result<Request<Full<Bytes>>, BoxError> {
        let c = self.currencies[currency];
        let minor = i64::try_from(amount)?;
        let body = format!(r#"{{"kind":"payment","amount":"{}","currency":"{}"}}"#, format_minor(minor, c), c.code());
        let mut request = Request::new(Full::new(Bytes::from(body)));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = Uri::from_static("/v1/transactions");
        let headers = request.headers_mut();
        headers.insert(HOST, self.host.clone());
        headers.insert(AUTHORIZATION, self.bearer.clone());
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if self.idempotency_keys {
            let key = format!("portal-load-{}-{}-{conn}-{seq}", self.run_id, self.seed);
            headers.insert(HeaderName::from_static("idempotency-key"), HeaderValue::try_from(key)?);
        }
        Ok(request)
    }
}

/// When the run starts, when measuring starts (after the warmup) and when it ends.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    pub(crate) start: Instant,
    pub(crate) measure_from: Instant,
    pub(crate) end: Instant,
}

/// What one connection (or, merged, all of them) saw.
#[derive(Debug)]
pub(crate) struct Stats {
    /// Latency of the 201s sent within the measured window, microseconds.
    pub(crate) latency_us: Histogram<u64>,
    /// 201s sent within the measured window (the latency samples).
    pub(crate) measured: u64,
    /// 201s answered within the measured window: the throughput, in both loops.
    pub(crate) completed: u64,
    /// All 201s, warmup included.
    pub(crate) created: u64,
    /// Answers by status, warmup included.
    pub(crate) statuses: BTreeMap<u16, u64>,
    /// Requests that got no answer (connection errors).
    pub(crate) transport_errors: u64,
    pub(crate) error_samples: Vec<String>,
    /// Per currency of [`MIX`], the minor units of every 201'd payment.
    pub(crate) created_minor: Vec<i64>,
    /// Open loop: sends scheduled within the measured window that never went out
    /// because the connection was still behind when the run ended.
    pub(crate) missed: u64,
}

impl Stats {
    /// Empty, for one connection or for the total.
    pub(crate) fn new() -> Result<Stats, BoxError> {
        Ok(Stats {
            latency_us: Histogram::new_with_bounds(1, LATENCY_US_MAX, 3)?,
            measured: 0,
            completed: 0,
            created: 0,
            statuses: BTreeMap::new(),
            transport_errors: 0,
            error_samples: Vec::new(),
            created_minor: vec![0; MIX.len()],
            missed: 0,
        })
    }

    pub(crate) fn merge(&mut self, other: Stats) -> Result<(), BoxError> {
        self.latency_us.add(&other.latency_us)?;
        self.measured += other.measured;
        self.completed += other.completed;
        self.created += other.created;
        for (status, n) in other.statuses {
            *self.statuses.entry(status).or_default() += n;
        }
        self.transport_errors += other.transport_errors;
        let room = ERROR_SAMPLES_MAX.saturating_sub(self.error_samples.len());
        self.error_samples.extend(other.error_samples.into_iter().take(room));
        for (sum, add) in self.created_minor.iter_mut().zip(other.created_minor) {
            *sum += add;
        }
        self.missed += other.missed;
        Ok(())
    }

    /// Non-201 answers and requests without an answer.
    pub(crate) fn errors(&self) -> u64 {
        let non_created: u64 = self.statuses.iter().filter(|(s, _)| **s != 201).map(|(_, n)| n).sum();
        non_created + self.transport_errors
    }

    fn sample(&mut self, what: String) {
        if self.error_samples.len() < ERROR_SAMPLES_MAX {
            self.error_samples.push(what);
        }
    }
}

/// SplitMix64 (Steele, Lea and Flood, 2014): a seeded, reproducible stream for the
/// amounts and currencies.
#[derive(Debug)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A currency index of [`MIX`] by its shares, and an amount from 1 to its maximum.
    fn payment(&mut self) -> (usize, u64) {
        let mut pick = self.next() % 100;
        let mut index = 0;
        for (i, (_, share, _)) in MIX.iter().enumerate() {
            index = i;
            if pick < *share {
                break;
            }
            pick -= share;
        }
        (index, 1 + self.next() % MIX[index].2)
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// The task of connection `index`: sends until `clock.end`, then returns what it saw.
///
/// Latency: closed loop, from send to the whole response. Open loop, from the scheduled
/// send time when the connection was still busy with an earlier request at that time
/// (the service was behind: the wait counts, no coordinated omission), else from the
/// actual send, so the tokio timer's millisecond granularity is not charged to the
/// service.
pub(crate) async fn connection(
    index: usize,
    config: Arc<Config>,
    mut conn: Conn,
    clock: Clock,
    mut stats: Stats,
) -> Stats {
    let mut rng = SplitMix64(config.seed ^ (index as u64 + 1).wrapping_mul(0xD605_BBB5_8C8A_BBF1));
    // Open loop: connections are staggered over one interval.
    let mut next = match config.interval {
        Some(interval) => clock.start + interval.mul_f64(index as f64 / config.connections as f64),
        None => clock.start,
    };
    tokio::time::sleep_until(clock.start.into()).await;
    let drain_until = clock.end + Duration::from_millis(OPEN_LOOP_DRAIN_MS_MAX);
    let mut seq = 0u64;
    loop {
        let now = Instant::now();
        let origin = match config.interval {
            None if now >= clock.end => break,
            None => now,
            Some(interval) => {
                let scheduled = next;
                if scheduled >= clock.end || now >= drain_until {
                    break;
                }
                next += interval;
                if scheduled > now {
                    tokio::time::sleep_until(scheduled.into()).await;
                    Instant::now()
                } else {
                    scheduled
                }
            }
        };
        seq += 1;
        let (currency, amount) = rng.payment();
        let request = match config.request(index, seq, amount, currency) {
            Ok(r) => r,
            Err(e) => {
                stats.transport_errors += 1;
                stats.sample(format!("could not build a request: {e}"));
                break;
            }
        };
        let result = conn.send(request).await;
        let done = Instant::now();
        match result {
            Ok((status, body)) => {
                *stats.statuses.entry(status.as_u16()).or_default() += 1;
                if status == StatusCode::CREATED {
                    stats.created += 1;
                    // At most 999_999 per request: no i64 overflow at any feasible count.
                    stats.created_minor[currency] += i64::try_from(amount).unwrap_or(i64::MAX);
                    if (clock.measure_from..clock.end).contains(&done) {
                        stats.completed += 1;
                    }
                    if origin >= clock.measure_from {
                        stats.measured += 1;
                        stats.latency_us.saturating_record(micros(done - origin));
                    }
                } else {
                    stats.sample(format!("{status}: {}", String::from_utf8_lossy(&body)));
                }
            }
            Err(e) => {
                stats.transport_errors += 1;
                stats.sample(format!("no answer: {e}"));
                match Conn::open(&config.authority).await {
                    Ok(c) => conn = c,
                    Err(e) => {
                        stats.sample(format!("reconnecting failed, connection {index} stops: {e}"));
                        break;
                    }
                }
            }
        }
    }
    if let Some(interval) = config.interval {
        while next < clock.end {
            if next >= clock.measure_from {
                stats.missed += 1;
            }
            next += interval;
        }
    }
    stats
}
