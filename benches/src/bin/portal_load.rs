//! Load generator for `POST /v1/transactions` of the portal service: requests per
//! second and latency (p50/p90/p99/p99.9/max) of durable payments over keep-alive
//! HTTP/1.1 connections, end to end through the real `portal-svc` binary (API-key
//! authentication in SQLite, JSON, the engine's durable commit, the metadata write).
//! At the end it checks that `GET /v1/balance` reports as captured exactly the sum of
//! the amounts that were answered 201.
//!
//! ```sh
//! cargo build --release -p portal-svc
//! cargo run --release -p ledger-benches --bin portal_load -- --connections 64 --seconds 10
//! cargo run --release -p ledger-benches --bin portal_load -- --idempotency-keys
//! cargo run --release -p ledger-benches --bin portal_load -- --rate 10000   # open loop
//! cargo run --release -p ledger-benches --bin portal_load -- --webhooks       # deliveries/s
//! cargo run --release -p ledger-benches --bin portal_load -- --webhooks --webhook-delay-ms 1000
//! ```
//!
//! `--webhooks` starts a local receiver, subscribes it to the run's client's
//! `payment.created` events (the service is started with `--allow-private-webhooks`),
//! and reports the deliveries per second it received and how long after the load the
//! last event came (waiting up to `--webhook-wait-secs` for every payment's event);
//! with `--webhook-delay-ms` the receiver answers that much later, to see whether a
//! slow receiver slows payments (compare the rate with a run without webhooks).
//!
//! By default it starts `target/release/portal-svc` (next to this binary, or
//! `--portal-bin PATH`) on a temporary data directory and stops it with SIGTERM at the
//! end; `--url http://HOST:PORT --admin-email E --admin-password P` targets a running
//! service instead. Each run signs in as the admin and creates a client of its own
//! with one application whose API key sends every request.
//!
//! Closed loop (default): each of `--connections` sends its next request as soon as
//! the previous answer is in. Open loop (`--rate R`): R requests per second in total,
//! each connection on a fixed schedule, latency counted from the scheduled time when
//! the connection was still busy then (no coordinated omission). Requests sent during
//! `--warmup` are checked but not measured. Any answer other than 201 is an error and
//! fails the run (exit status 1), as does a balance mismatch; setup failures exit 2.
//! The generator shares the machine with the service; at 2.7 k req/s it used about
//! 0.06 of a core on the project's 2-core machine.

// A binary's root file resolves modules beside it; these live in portal_load/.
#[path = "portal_load/http.rs"]
mod http;
#[path = "portal_load/load.rs"]
mod load;
#[path = "portal_load/service.rs"]
mod service;
#[path = "portal_load/webhooks.rs"]
mod webhooks;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use ledger_core::Currency;
use ledger_core::money::format_minor;
use serde_json::{Value, json};

use crate::load::{Clock, Config, Stats};
use crate::service::Service;

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Admin of a service this tool starts itself (a throwaway data directory).
const SPAWNED_ADMIN_EMAIL: &str = "load@portal.invalid";
const SPAWNED_ADMIN_PASSWORD: &str = "portal-load throwaway password";
/// Time from opening the connections to the first send, so every task is waiting.
const START_DELAY_MS: u64 = 100;

#[derive(Debug, Parser)]
#[command(about = "Load generator for POST /v1/transactions of portal-svc")]
struct Args {
    /// Persistent HTTP/1.1 connections, one task each.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Measured seconds (after the warmup).
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Seconds of load before measuring starts.
    #[arg(long, default_value_t = 2)]
    warmup: u64,
    /// Open loop: total offered requests per second, spread over the connections.
    #[arg(long)]
    rate: Option<f64>,
    /// Send a unique Idempotency-Key with every request.
    #[arg(long)]
    idempotency_keys: bool,
    /// Worker threads of the generator's runtime.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Seed of the amounts and currencies.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// Target a running service (`http://HOST:PORT`) instead of starting one.
    #[arg(long, requires_all = ["admin_email", "admin_password"], conflicts_with = "portal_bin")]
    url: Option<String>,
    /// The platform admin of the service given by `--url`.
    #[arg(long, requires = "url")]
    admin_email: Option<String>,
    #[arg(long, requires = "url")]
    admin_password: Option<String>,
    /// The `portal-svc` binary to start (default: next to this one).
    #[arg(long)]
    portal_bin: Option<PathBuf>,
    /// Subscribe a local receiver to the payments' webhooks and measure deliveries.
    #[arg(long)]
    webhooks: bool,
    /// The receiver answers each delivery this many milliseconds late.
    #[arg(long, default_value_t = 0, requires = "webhooks")]
    webhook_delay_ms: u64,
    /// How long to wait after the load for every payment's event to be delivered.
    #[arg(long, default_value_t = 120, requires = "webhooks")]
    webhook_wait_secs: u64,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.connections == 0 || args.threads == 0 || args.seconds == 0 {
        eprintln!("portal_load: --connections, --threads and --seconds must be at least 1");
        return ExitCode::from(2);
    }
    // The guard stops the service on every way out of main, unwinding included.
    let (service, authority, email, password) = match (&args.url, &args.admin_email, &args.admin_password) {
        (Some(url), Some(email), Some(password)) => match authority_of(url) {
            Ok(a) => (None, a, email.clone(), password.clone()),
            Err(e) => return fail_setup(&e),
        },
        _ => match start_service(&args) {
            Ok(s) => {
                let authority = s.authority.clone();
                (Some(s), authority, SPAWNED_ADMIN_EMAIL.to_string(), SPAWNED_ADMIN_PASSWORD.to_string())
            }
            Err(e) => return fail_setup(&e),
        },
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(args.threads).enable_all().build() {
        Ok(r) => r,
        Err(e) => return fail_setup(&e.into()),
    };
    // Ctrl-C ends the run early but still through the guard (SIGTERM to the service).
    let outcome = runtime.block_on(async {
        tokio::select! {
            outcome = run(&args, authority, &email, &password) => outcome,
            _ = tokio::signal::ctrl_c() => Err("interrupted".into()),
        }
    });
    drop(runtime);
    let log_tail = service.as_ref().map(Service::log_tail);
    let stopped = service.map(|s| {
        s.stop().map_err(|e| e.to_string()).and_then(|status| {
            if status.success() { Ok(()) } else { Err(format!("portal-svc exited with {status} after SIGTERM")) }
        })
    });
    let mut report = match outcome {
        Ok(r) => r,
        Err(e) => {
            if let Some(log) = log_tail.filter(|l| !l.is_empty()) {
                eprintln!("portal-svc's log ends with:\n{log}");
            }
            return fail_setup(&e);
        }
    };
    report.service_stop = stopped;
    report.print(args.json);
    if report.passed() { ExitCode::SUCCESS } else { ExitCode::from(1) }
}

fn fail_setup(e: &BoxError) -> ExitCode {
    eprintln!("portal_load: {e}");
    ExitCode::from(2)
}

/// `HOST:PORT` of `http://HOST:PORT[/]`.
fn authority_of(url: &str) -> Result<String, BoxError> {
    let rest = url.strip_prefix("http://").ok_or("--url must start with http:// (no TLS)")?;
    let authority = rest.trim_end_matches('/');
    if authority.is_empty() || authority.contains('/') {
        return Err(format!("--url must be http://HOST:PORT, not {url}").into());
    }
    Ok(authority.to_string())
}

fn start_service(args: &Args) -> Result<Service, BoxError> {
    let binary = match &args.portal_bin {
        Some(path) => path.clone(),
        None => service::default_binary()?,
    };
    if !binary.is_file() {
        return Err(format!(
            "{} not found: build it with `cargo build --release -p portal-svc` (or pass --portal-bin PATH)",
            binary.display()
        )
        .into());
    }
    let extra: &[&str] = if args.webhooks { &["--allow-private-webhooks"] } else { &[] };
    let service = Service::spawn(&binary, SPAWNED_ADMIN_EMAIL, SPAWNED_ADMIN_PASSWORD, extra)?;
    eprintln!("portal_load: started {} (pid {}) on http://{}", binary.display(), service.pid(), service.authority);
    Ok(service)
}

async fn run(args: &Args, authority: String, email: &str, password: &str) -> Result<Report, BoxError> {
    let load_at_start = load_average();
    // Names this run's client and makes its idempotency keys unique across runs.
    let run_id = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let provisioned = http::provision(&authority, email, password, &format!("portal-load {run_id}")).await?;
    let api_key = provisioned.api_key.clone();
    let receiver = if args.webhooks {
        let receiver = webhooks::start(Duration::from_millis(args.webhook_delay_ms)).await?;
        webhooks::subscribe(&authority, &provisioned.admin_token, provisioned.client_id, &receiver.url).await?;
        Some(receiver)
    } else {
        None
    };
    let config = Arc::new(Config::new(
        authority,
        &api_key,
        args.connections,
        args.rate,
        args.idempotency_keys,
        args.seed,
        run_id,
    )?);
    let mut conns = Vec::with_capacity(args.connections);
    for _ in 0..args.connections {
        conns.push(http::Conn::open(&config.authority).await?);
    }
    let start = Instant::now() + Duration::from_millis(START_DELAY_MS);
    let measure_from = start + Duration::from_secs(args.warmup);
    let clock = Clock { start, measure_from, end: measure_from + Duration::from_secs(args.seconds) };
    let mut tasks = Vec::with_capacity(args.connections);
    for (index, conn) in conns.into_iter().enumerate() {
        let stats = Stats::new()?;
        tasks.push(tokio::spawn(load::connection(index, Arc::clone(&config), conn, clock, stats)));
    }
    let mut total = Stats::new()?;
    for task in tasks {
        total.merge(task.await.map_err(|e| format!("a connection's task failed: {e}"))?)?;
    }
    let load_ended = Instant::now();
    let hooks = match &receiver {
        Some(r) => {
            // Every payment answered 201, warmup included, has an event.
            let want = total.created;
            let all = webhooks::drained(&r.seen, want, Duration::from_secs(args.webhook_wait_secs)).await;
            Some(HookReport::of(&r.seen, want, all, load_ended, args.webhook_delay_ms))
        }
        None => None,
    };
    let load_at_end = load_average();
    let captured = http::captured_totals(&config.authority, &api_key).await?;
    let mut balance = Vec::new();
    let sent: BTreeMap<String, i64> =
        config.currency_codes().map(str::to_string).zip(total.created_minor.iter().copied()).collect();
    for code in sent.keys().chain(captured.keys().filter(|c| !sent.contains_key(*c))) {
        let expected = sent.get(code).copied().unwrap_or(0);
        let reported = captured.get(code).copied().unwrap_or(0);
        balance.push(BalanceCheck { currency: code.clone(), expected, captured: reported });
    }
    Ok(Report {
        connections: args.connections,
        threads: args.threads,
        seconds: args.seconds,
        warmup: args.warmup,
        rate: args.rate,
        idempotency_keys: args.idempotency_keys,
        stats: total,
        balance,
        load_at_start,
        load_at_end,
        service_stop: None,
        hooks,
    })
}

/// What the webhook receiver got.
#[derive(Debug)]
struct HookReport {
    delay_ms: u64,
    /// Events owed: payments answered 201.
    expected: u64,
    events: u64,
    deliveries: u64,
    signed: u64,
    all_arrived: bool,
    /// Deliveries per second from the first to the last.
    per_second: f64,
    /// From the end of the load to the last delivery.
    drain_secs: f64,
}

impl HookReport {
    fn of(seen: &webhooks::Seen, expected: u64, all_arrived: bool, load_ended: Instant, delay_ms: u64) -> HookReport {
        use std::sync::atomic::Ordering;
        let deliveries = seen.deliveries.load(Ordering::Relaxed);
        let (per_second, drain_secs) = match seen.span() {
            Some((first, last)) => {
                let span = (last - first).as_secs_f64();
                let rate = if span > 0.0 { deliveries as f64 / span } else { 0.0 };
                (rate, last.saturating_duration_since(load_ended).as_secs_f64())
            }
            None => (0.0, 0.0),
        };
        HookReport {
            delay_ms,
            expected,
            events: seen.events(),
            deliveries,
            signed: seen.signed.load(Ordering::Relaxed),
            all_arrived,
            per_second,
            drain_secs,
        }
    }

    fn to_json(&self) -> Value {
        json!({
            "receiver_delay_ms": self.delay_ms,
            "events_expected": self.expected,
            "events_received": self.events,
            "deliveries": self.deliveries,
            "signed": self.signed,
            "all_arrived": self.all_arrived,
            "deliveries_per_sec": (self.per_second * 10.0).round() / 10.0,
            "last_delivery_after_load_secs": (self.drain_secs * 100.0).round() / 100.0,
        })
    }
}

/// The 1, 5 and 15 minute load averages, when the system says.
fn load_average() -> Option<String> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    Some(text.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
}

/// Captured in one currency: what the service reports and what was answered 201.
#[derive(Debug)]
struct BalanceCheck {
    currency: String,
    expected: i64,
    captured: i64,
}

impl BalanceCheck {
    fn money(&self, minor: i64) -> String {
        Currency::from_code(&self.currency).map_or_else(|| minor.to_string(), |c| format_minor(minor, c))
    }
}

#[derive(Debug)]
struct Report {
    connections: usize,
    threads: usize,
    seconds: u64,
    warmup: u64,
    rate: Option<f64>,
    idempotency_keys: bool,
    stats: Stats,
    balance: Vec<BalanceCheck>,
    load_at_start: Option<String>,
    load_at_end: Option<String>,
    /// `None` when targeting a service this run did not start.
    service_stop: Option<Result<(), String>>,
    hooks: Option<HookReport>,
}

impl Report {
    fn balance_ok(&self) -> bool {
        self.balance.iter().all(|b| b.expected == b.captured)
    }

    fn passed(&self) -> bool {
        // With a prompt receiver, every payment's event must have arrived, once.
        let hooks_ok = self.hooks.as_ref().is_none_or(|h| h.delay_ms > 0 || (h.all_arrived && h.events == h.expected));
        self.stats.errors() == 0 && self.balance_ok() && !matches!(self.service_stop, Some(Err(_))) && hooks_ok
    }

    /// Open loop fell behind its schedule: sends never went out.
    fn saturated(&self) -> bool {
        self.rate.is_some() && self.stats.missed > 0
    }

    fn requests_per_sec(&self) -> f64 {
        self.stats.completed as f64 / self.seconds as f64
    }

    /// `(name, ms)` of the latency quantiles and the max.
    fn latencies_ms(&self) -> Vec<(&'static str, f64)> {
        let h = &self.stats.latency_us;
        let ms = |us: u64| us as f64 / 1000.0;
        vec![
            ("p50", ms(h.value_at_quantile(0.5))),
            ("p90", ms(h.value_at_quantile(0.9))),
            ("p99", ms(h.value_at_quantile(0.99))),
            ("p99.9", ms(h.value_at_quantile(0.999))),
            ("max", ms(h.max())),
            ("mean", h.mean() / 1000.0),
        ]
    }

    fn mode(&self) -> String {
        match self.rate {
            Some(r) => format!("open loop at {r} req/s offered"),
            None => "closed loop".to_string(),
        }
    }

    fn print(&self, as_json: bool) {
        for sample in &self.stats.error_samples {
            eprintln!("portal_load: error: {sample}");
        }
        if as_json {
            println!("{}", self.to_json());
            return;
        }
        println!(
            "POST /v1/transactions, {}, {} connections, {} threads, idempotency keys {}, {} s after {} s warmup",
            self.mode(),
            self.connections,
            self.threads,
            if self.idempotency_keys { "on" } else { "off" },
            self.seconds,
            self.warmup,
        );
        println!(
            "throughput     {} answered 201 in the window = {:.0} req/s",
            self.stats.completed,
            self.requests_per_sec()
        );
        let latencies: Vec<String> = self.latencies_ms().iter().map(|(n, v)| format!("{n} {v:.3}")).collect();
        if self.stats.measured == 0 {
            println!("latency ms     none: no request was sent within the window");
        } else {
            println!("latency ms     {}  ({} requests sent in the window)", latencies.join("  "), self.stats.measured);
        }
        let statuses: Vec<String> = self.stats.statuses.iter().map(|(s, n)| format!("{s}: {n}")).collect();
        println!("statuses       {} (warmup included)", statuses.join(", "));
        println!("errors         {} (transport {})", self.stats.errors(), self.stats.transport_errors);
        if self.rate.is_some() {
            println!(
                "missed sends   {} (scheduled in the window, never sent: the service fell behind)",
                self.stats.missed
            );
            if self.saturated() {
                println!(
                    "saturated      the offered rate exceeds what the service answers: the latencies are lower bounds \
                     that grow with the run's length (queueing)"
                );
            }
        }
        for b in &self.balance {
            println!(
                "balance {}    captured {} vs 201'd {}: {}",
                b.currency,
                b.money(b.captured),
                b.money(b.expected),
                if b.expected == b.captured { "equal" } else { "MISMATCH" }
            );
        }
        if let Some(h) = &self.hooks {
            println!(
                "webhooks       receiver delay {} ms: {} of {} events received ({} deliveries, {} signed), \
                 {:.0} deliveries/s, the last {:.2} s after the load{}",
                h.delay_ms,
                h.events,
                h.expected,
                h.deliveries,
                h.signed,
                h.per_second,
                h.drain_secs,
                if h.all_arrived { "" } else { " (not all arrived within --webhook-wait-secs)" }
            );
        }
        if let Some(stop) = &self.service_stop {
            println!("service stop   {}", stop.as_ref().err().map_or("clean (SIGTERM, exit 0)", String::as_str));
        }
        println!(
            "load average   {} at start, {} at end",
            self.load_at_start.as_deref().unwrap_or("?"),
            self.load_at_end.as_deref().unwrap_or("?")
        );
        println!("result         {}", if self.passed() { "PASS" } else { "FAIL" });
    }

    fn to_json(&self) -> Value {
        let latency: serde_json::Map<String, Value> =
            self.latencies_ms().into_iter().map(|(n, v)| (n.to_string(), json!(v))).collect();
        let statuses: serde_json::Map<String, Value> =
            self.stats.statuses.iter().map(|(s, n)| (s.to_string(), json!(n))).collect();
        let balance: Vec<Value> = self
            .balance
            .iter()
            .map(|b| {
                json!({
                    "currency": b.currency,
                    "captured": b.money(b.captured),
                    "expected": b.money(b.expected),
                    "equal": b.expected == b.captured,
                })
            })
            .collect();
        json!({
            "endpoint": "POST /v1/transactions",
            "mode": if self.rate.is_some() { "open" } else { "closed" },
            "rate_offered": self.rate,
            "connections": self.connections,
            "threads": self.threads,
            "seconds": self.seconds,
            "warmup_seconds": self.warmup,
            "idempotency_keys": self.idempotency_keys,
            "requests": self.stats.completed,
            "requests_per_sec": self.requests_per_sec(),
            "latency_samples": self.stats.measured,
            "latency_ms": if self.stats.measured == 0 { Value::Null } else { Value::Object(latency) },
            "statuses": statuses,
            "created_total": self.stats.created,
            "errors": self.stats.errors(),
            "transport_errors": self.stats.transport_errors,
            "error_samples": self.stats.error_samples,
            "missed": self.rate.map(|_| self.stats.missed),
            "saturated": self.saturated(),
            "balance": balance,
            "balance_ok": self.balance_ok(),
            "service_stop": self.service_stop.as_ref().map(|s| s.as_ref().err().cloned().unwrap_or_else(|| "clean".into())),
            "load_average_start": self.load_at_start,
            "load_average_end": self.load_at_end,
            "webhooks": self.hooks.as_ref().map(HookReport::to_json),
            "passed": self.passed(),
        })
    }
}
