//! Reports: transactions over a period (rows, and totals by day, kind, status and
//! device), as JSON or CSV, streamed so that a range of millions of transactions never
//! sits in memory; and user activity from the audit log.
//!
//! Periods: `from` and `to` are a date (`2026-11-26`, UTC), an RFC 3339 time, or Unix
//! seconds. `from` is inclusive; `to` is exclusive, except that a date `to` includes
//! that whole day. Defaults: the 30 days up to now.

use std::collections::BTreeMap;
use std::convert::Infallible;

use crate::params;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{Method, header};
use axum::response::{IntoResponse, Response};
use axum::routing;
use ledger_core::money::format_minor;
use ledger_core::{Currency, HistoryQuery, Kind, Tx, TxRecord};
use serde::Deserialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;

use crate::api::{Access, Endpoint};
use crate::app::AppState;
use crate::auth::{Principal, Role};
use crate::db::now_secs;
use crate::error::{ApiError, ApiResult};
use crate::routes::transactions::{Transaction, kind_name, state_name, tx_id_string};
use crate::settings::Zone;

const DAY_SECS: i64 = 86_400;
/// Records read from the ledger per step of the scan.
const SCAN_PAGE: usize = 2048;
/// Audit rows in one activity report.
const ACTIVITY_ROWS_MAX: usize = 100_000;

/// A moment: a date (its midnight, UTC, or the next one when `end`), an RFC 3339 time,
/// or Unix seconds.
pub(crate) fn parse_moment(text: &str, end: bool, param: &'static str) -> Result<i64, ApiError> {
    let text = text.trim();
    if let Ok(secs) = text.parse::<i64>() {
        return Ok(secs);
    }
    if let Ok(date) = time::Date::parse(text, format_description!("[year]-[month]-[day]")) {
        let midnight = date.midnight().assume_utc().unix_timestamp();
        return Ok(if end { midnight + DAY_SECS } else { midnight });
    }
    if let Ok(t) = OffsetDateTime::parse(text, &Rfc3339) {
        return Ok(t.unix_timestamp());
    }
    Err(ApiError::invalid("invalid_time", format!("{param} is a date (YYYY-MM-DD), an RFC 3339 time or Unix seconds"))
        .with_param(param))
}

/// The period `[from, to)` of a query, in Unix seconds.
fn period(from: Option<&str>, to: Option<&str>) -> Result<(i64, i64), ApiError> {
    period_in(from, to, &Zone::Offset(0))
}

/// [`period`] where a date is a day in `zone` (the client's time zone): from its local
/// start to the next day's (23, 24 or 25 hours across a daylight saving change).
fn period_in(from: Option<&str>, to: Option<&str>, zone: &Zone) -> Result<(i64, i64), ApiError> {
    let local = |text: &str, end: bool, param: &'static str| -> Result<i64, ApiError> {
        let secs = parse_moment(text, end, param)?;
        match time::Date::parse(text.trim(), format_description!("[year]-[month]-[day]")) {
            Ok(date) if end => Ok(date.next_day().map_or(secs, |next| zone.start_of_day(next))),
            Ok(date) => Ok(zone.start_of_day(date)),
            Err(_) => Ok(secs),
        }
    };
    let to = to.map(|t| local(t, true, "to")).transpose()?.unwrap_or_else(|| now_secs() + 1);
    let from = from.map(|f| local(f, false, "from")).transpose()?.unwrap_or(to - 30 * DAY_SECS);
    if from >= to {
        return Err(ApiError::invalid("invalid_period", "from must be before to").with_param("from"));
    }
    Ok((from, to))
}

fn rfc3339(secs: i64) -> String {
    OffsetDateTime::from_unix_timestamp(secs).ok().and_then(|t| t.format(&Rfc3339).ok()).unwrap_or_default()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Csv,
}

fn format_arg(format: Option<&str>) -> Result<Format, ApiError> {
    match format.unwrap_or("json") {
        "json" => Ok(Format::Json),
        "csv" => Ok(Format::Csv),
        _ => Err(ApiError::invalid("invalid_format", "format is json or csv").with_param("format")),
    }
}

/// `minor` units of `currency` as a decimal string, for sums past the `i64` range
/// (`format_minor` takes an `i64`): a report over many transactions must not stop at
/// the int64 maximum, nor wrap.
pub(crate) fn format_minor_wide(minor: i128, currency: Currency) -> String {
    if let Ok(small) = i64::try_from(minor) {
        return format_minor(small, currency);
    }
    let digits = currency.exponent();
    let scale = 10u128.pow(digits);
    let (sign, abs) = if minor < 0 { ("-", minor.unsigned_abs()) } else { ("", minor.unsigned_abs()) };
    if digits == 0 {
        return format!("{sign}{abs}");
    }
    format!("{sign}{}.{:0width$}", abs / scale, abs % scale, width = digits as usize)
}

/// Money per group, in the balance's terms, so a report reconciles with
/// `GET /v1/balance`: `captured` is what payments took in (sales, and captures of
/// authorizations; an authorization or a void takes nothing, and a payment is not
/// counted again with its capture), `refunded` what refunds gave back (positive),
/// `adjusted` the adjustments (signed), `net` = captured - refunded + adjusted.
/// `amount` is `captured`, the volume. Summed in `i128`: no total saturates.
#[derive(Debug, Default, Clone, Copy)]
struct Sums {
    count: u64,
    captured: i128,
    refunded: i128,
    adjusted: i128,
}

impl Sums {
    fn add(&mut self, r: &TxRecord) {
        self.count += 1;
        let amount = i128::from(r.tx.amount);
        match Kind::from_code(r.tx.kind) {
            Some(Kind::Payment) if r.tx.flags & Tx::AUTH_ONLY == 0 => self.captured += amount,
            Some(Kind::Capture) => self.captured += amount,
            Some(Kind::Refund) => self.refunded += amount,
            Some(Kind::Adjustment) => self.adjusted += amount,
            _ => {}
        }
    }

    fn net(&self) -> i128 {
        self.captured - self.refunded + self.adjusted
    }
}

/// Totals of a report, grouped four ways, each per currency.
#[derive(Debug, Default)]
struct Totals {
    /// The client's time zone: days are its days.
    zone: Zone,
    by_currency: BTreeMap<((), String), Sums>,
    by_day: BTreeMap<(String, String), Sums>,
    by_kind: BTreeMap<(&'static str, String), Sums>,
    by_status: BTreeMap<(&'static str, String), Sums>,
    by_device: BTreeMap<(u64, String), Sums>,
}

impl Totals {
    fn add(&mut self, r: &TxRecord) {
        let currency = r.tx.currency().map_or_else(|| "???".to_string(), |c| c.code().to_string());
        let secs = i64::try_from(r.timestamp_ns / 1_000_000_000).unwrap_or(i64::MAX);
        self.by_currency.entry(((), currency.clone())).or_default().add(r);
        self.by_day.entry((self.zone.day_of(secs), currency.clone())).or_default().add(r);
        self.by_kind.entry((kind_name(r.tx.kind), currency.clone())).or_default().add(r);
        self.by_status.entry((state_name(r.state), currency.clone())).or_default().add(r);
        self.by_device.entry((r.tx.device_id, currency)).or_default().add(r);
    }

    /// Each group's key and sums, in key then currency order.
    fn group<K: Clone>(map: &BTreeMap<(K, String), Sums>) -> Vec<(K, ReportSums)> {
        map.iter()
            .map(|((k, currency), s)| {
                let money =
                    |v: i128| Currency::from_code(currency).map_or_else(|| v.to_string(), |c| format_minor_wide(v, c));
                let sums = ReportSums {
                    currency: currency.clone(),
                    count: s.count,
                    amount: money(s.captured),
                    captured: money(s.captured),
                    refunded: money(s.refunded),
                    adjusted: money(s.adjusted),
                    net: money(s.net()),
                };
                (k.clone(), sums)
            })
            .collect()
    }

    fn report(&self) -> ReportTotals {
        let device = |d: u64| (d != 0).then_some(d);
        ReportTotals {
            by_currency: Totals::group(&self.by_currency).into_iter().map(|((), sums)| sums).collect(),
            by_day: Totals::group(&self.by_day).into_iter().map(|(day, sums)| DayTotals { sums, day }).collect(),
            by_kind: Totals::group(&self.by_kind)
                .into_iter()
                .map(|(kind, sums)| KindTotals { sums, kind: kind.to_string() })
                .collect(),
            by_status: Totals::group(&self.by_status)
                .into_iter()
                .map(|(status, sums)| StatusTotals { sums, status: status.to_string() })
                .collect(),
            by_device: Totals::group(&self.by_device)
                .into_iter()
                .map(|(d, sums)| DeviceTotals { sums, device_id: device(d) })
                .collect(),
        }
    }

    /// The groups of one grouping as CSV keys (a transaction without a device: empty).
    fn groups(&self, by: Grouping) -> Vec<(String, ReportSums)> {
        match by {
            Grouping::Day => Totals::group(&self.by_day),
            Grouping::Kind => Totals::group(&self.by_kind).into_iter().map(|(k, s)| (k.to_string(), s)).collect(),
            Grouping::Status => Totals::group(&self.by_status).into_iter().map(|(k, s)| (k.to_string(), s)).collect(),
            Grouping::Device => Totals::group(&self.by_device)
                .into_iter()
                .map(|(d, s)| (if d == 0 { String::new() } else { d.to_string() }, s))
                .collect(),
        }
    }
}

/// A group of a report's transactions in one currency: `amount` and `captured` are
/// what payments took in, `refunded` what refunds gave back, `adjusted` the adjustments,
/// `net` = captured - refunded + adjusted (decimals in major units).
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct ReportSums {
    /// ISO 4217 code.
    pub currency: String,
    pub count: u64,
    pub amount: String,
    pub captured: String,
    pub refunded: String,
    pub adjusted: String,
    pub net: String,
}

/// The sums of one day (the client's time zone) in one currency.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct DayTotals {
    #[serde(flatten)]
    pub sums: ReportSums,
    /// `YYYY-MM-DD`.
    pub day: String,
}

/// The sums of one kind of transaction in one currency.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct KindTotals {
    #[serde(flatten)]
    pub sums: ReportSums,
    /// `payment`, `capture`, `void`, `refund` or `adjustment`.
    pub kind: String,
}

/// The sums of one status in one currency.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct StatusTotals {
    #[serde(flatten)]
    pub sums: ReportSums,
    /// A transaction status.
    pub status: String,
}

/// The sums of one device (`null`: transactions without one) in one currency.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct DeviceTotals {
    #[serde(flatten)]
    pub sums: ReportSums,
    pub device_id: Option<u64>,
}

/// A report's totals, grouped five ways, each per currency.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ReportTotals {
    pub by_currency: Vec<ReportSums>,
    pub by_day: Vec<DayTotals>,
    pub by_kind: Vec<KindTotals>,
    pub by_status: Vec<StatusTotals>,
    pub by_device: Vec<DeviceTotals>,
}

/// `GET /v1/reports/transactions` as JSON. Streamed field by field (a period may hold
/// millions of rows), each row serialized as a [`Transaction`] and the totals as
/// [`ReportTotals`]; `tests/openapi_document.rs` checks an answer against this type.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct TransactionReport {
    /// Always `report`.
    pub object: String,
    /// Unix seconds, inclusive.
    pub from: i64,
    /// Unix seconds, exclusive.
    pub to: i64,
    /// The client's time zone (an IANA name or a UTC offset), which the days follow.
    pub time_zone: String,
    /// The transactions, oldest first; `null` with `rows=false`.
    pub rows: Option<Vec<Transaction>>,
    pub count: u64,
    pub totals: ReportTotals,
}

/// CSV text with a header line (`format=csv`).
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct CsvText(pub String);

/// One audit entry in the activity report.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ActivityRow {
    pub id: i64,
    pub client_id: Option<i64>,
    pub actor: String,
    pub action: String,
    pub resource: Option<String>,
    /// Unix seconds.
    pub at: i64,
}

/// How many entries one actor made.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ActorCount {
    pub actor: String,
    pub count: u64,
}

/// How many entries of one action.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ActionCount {
    pub action: String,
    pub count: u64,
}

/// `GET /v1/reports/activity` as JSON.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ActivityReport {
    /// Always `activity_report`.
    pub object: String,
    /// Unix seconds, inclusive.
    pub from: i64,
    /// Unix seconds, exclusive.
    pub to: i64,
    pub count: usize,
    /// Whether the period held more entries than one report shows.
    pub truncated: bool,
    pub by_actor: Vec<ActorCount>,
    pub by_action: Vec<ActionCount>,
    pub rows: Vec<ActivityRow>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Grouping {
    Day,
    Kind,
    Status,
    Device,
}

impl Grouping {
    fn parse(s: &str) -> Result<Grouping, ApiError> {
        Ok(match s {
            "day" => Grouping::Day,
            "kind" => Grouping::Kind,
            "status" => Grouping::Status,
            "device" => Grouping::Device,
            _ => {
                return Err(ApiError::invalid("invalid_group_by", "group_by is day, kind, status or device")
                    .with_param("group_by"));
            }
        })
    }

    fn key(self) -> &'static str {
        match self {
            Grouping::Day => "day",
            Grouping::Kind => "kind",
            Grouping::Status => "status",
            Grouping::Device => "device_id",
        }
    }
}

const CSV_HEADER: &str = "id,created_at,kind,status,amount,currency,captured,refunded,ref_id,device_id,batch_id,seq\n";

fn csv_row(r: &TxRecord, out: &mut String) {
    let currency = r.tx.currency();
    let money = |v: i64| currency.map_or_else(|| v.to_string(), |c| format_minor(v, c));
    let secs = i64::try_from(r.timestamp_ns / 1_000_000_000).unwrap_or(i64::MAX);
    let ref_id = if r.tx.ref_id.is_none() { String::new() } else { tx_id_string(r.tx.ref_id) };
    let device = if r.tx.device_id == 0 { String::new() } else { r.tx.device_id.to_string() };
    let batch = if r.batch_id == 0 { String::new() } else { r.batch_id.to_string() };
    // No field can hold a comma, quote or newline: ids, enums, decimals, ISO codes.
    out.push_str(&format!(
        "{},{},{},{},{},{},{},{},{},{},{},{}\n",
        tx_id_string(r.tx.id),
        rfc3339(secs),
        kind_name(r.tx.kind),
        state_name(r.state),
        money(r.tx.amount),
        currency.map(|c| c.code().to_string()).unwrap_or_default(),
        money(r.captured),
        money(r.refunded),
        ref_id,
        device,
        batch,
        r.seq
    ));
}

#[derive(Debug, Deserialize)]
pub struct ReportQuery {
    from: Option<String>,
    to: Option<String>,
    format: Option<String>,
    /// `false` leaves the rows out of a JSON report (totals only).
    rows: Option<bool>,
    /// With `format=csv`, exports the totals grouped this way instead of the rows.
    group_by: Option<String>,
    kind: Option<String>,
    currency: Option<String>,
    device_id: Option<u64>,
}

/// Which transactions a report keeps, besides the period.
#[derive(Debug, Clone, Copy)]
struct Filter {
    kind: Option<u32>,
    currency: Option<Currency>,
    device_id: Option<u64>,
}

impl Filter {
    fn keeps(&self, r: &TxRecord) -> bool {
        self.kind.is_none_or(|k| r.tx.kind == k)
            && self.currency.is_none_or(|c| r.tx.currency() == Some(c))
            && self.device_id.is_none_or(|d| r.tx.device_id == d)
    }
}

/// Streams the caller's transactions in `[from, to)` through `emit`, oldest first. The
/// engine pages the period itself (`Ledger::history` by commit time), so a report
/// reads only its period, never the client's history before it. Runs on a blocking
/// thread; `emit` returning false (the client went away) stops it.
fn scan(state: &AppState, client_id: u64, from: i64, to: i64, filter: Filter, mut emit: impl FnMut(&TxRecord) -> bool) {
    let from_ns = u64::try_from(from.max(0)).unwrap_or(0).saturating_mul(1_000_000_000);
    let to_ns = u64::try_from(to.max(0)).unwrap_or(0).saturating_mul(1_000_000_000);
    let mut next_seq = 1;
    loop {
        let query =
            HistoryQuery { seqs: next_seq..u64::MAX, times: from_ns..to_ns, newest_first: false, limit: SCAN_PAGE };
        let page = state.ledger.history(client_id, &query);
        let Some(last) = page.last() else { return };
        next_seq = last.seq + 1;
        for r in &page {
            if filter.keeps(r) && !emit(r) {
                return;
            }
        }
    }
}

/// `GET /v1/reports/transactions` (viewer+).
async fn transactions_report(
    State(state): State<AppState>,
    principal: Principal,
    crate::extract::ApiQuery(query): crate::extract::ApiQuery<ReportQuery>,
) -> ApiResult<Response> {
    let client_id = principal.ledger_client()?;
    let settings = crate::settings::of(&state, i64::try_from(client_id).map_err(ApiError::internal)?).await?;
    let zone = settings.zone.clone();
    let (from, to) = period_in(query.from.as_deref(), query.to.as_deref(), &zone)?;
    let format = format_arg(query.format.as_deref())?;
    let grouping = query.group_by.as_deref().map(Grouping::parse).transpose()?;
    let kind = match query.kind.as_deref() {
        None => None,
        Some(k) => Some(
            [Kind::Payment, Kind::Capture, Kind::Void, Kind::Refund, Kind::Adjustment]
                .into_iter()
                .find(|kind| kind_name(*kind as u32) == k)
                .ok_or_else(|| {
                    ApiError::invalid("invalid_kind", "kind is payment, capture, void, refund or adjustment")
                        .with_param("kind")
                })? as u32,
        ),
    };
    let currency = query
        .currency
        .as_deref()
        .map(|c| {
            Currency::from_code(c)
                .ok_or_else(|| ApiError::invalid("invalid_currency", "unknown currency").with_param("currency"))
        })
        .transpose()?;
    let filter = Filter { kind, currency, device_id: query.device_id };
    let with_rows = query.rows.unwrap_or(true);

    // A bounded channel: the scan runs ahead of the network by a few chunks at most.
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(8);
    let scan_state = state.clone();
    tokio::task::spawn_blocking(move || {
        let mut totals = Totals { zone: settings.zone.clone(), ..Totals::default() };
        let mut chunk = String::with_capacity(64 << 10);
        let send = |chunk: &mut String| tx.blocking_send(Bytes::from(std::mem::take(chunk))).is_ok();
        let mut count: u64 = 0;
        match (format, grouping) {
            (Format::Csv, None) => chunk.push_str(CSV_HEADER),
            (Format::Json, _) => {
                chunk.push_str(&format!(
                    r#"{{"object":"report","from":{from},"to":{to},"time_zone":{},"rows":{}"#,
                    serde_json::Value::from(settings.time_zone()),
                    if with_rows { "[" } else { "null" }
                ));
            }
            (Format::Csv, Some(_)) => {}
        }
        scan(&scan_state, client_id, from, to, filter, |r| {
            totals.add(r);
            match (format, grouping) {
                (Format::Csv, None) => csv_row(r, &mut chunk),
                (Format::Json, _) if with_rows => {
                    if count > 0 {
                        chunk.push(',');
                    }
                    chunk.push_str(&crate::routes::transactions::tx_json(r, None).to_string());
                }
                _ => {}
            }
            count += 1;
            chunk.len() < (60 << 10) || send(&mut chunk)
        });
        match (format, grouping) {
            (Format::Json, _) => {
                let totals = serde_json::to_string(&totals.report()).unwrap_or_else(|_| "null".to_string());
                chunk.push_str(&format!(r#"{},"count":{count},"totals":{totals}}}"#, if with_rows { "]" } else { "" }));
            }
            (Format::Csv, Some(by)) => {
                chunk.push_str(&format!("{},currency,count,amount,captured,refunded,adjusted,net\n", by.key()));
                for (key, g) in totals.groups(by) {
                    chunk.push_str(&format!(
                        "{key},{},{},{},{},{},{},{}\n",
                        g.currency, g.count, g.amount, g.captured, g.refunded, g.adjusted, g.net
                    ));
                }
            }
            (Format::Csv, None) => {}
        }
        send(&mut chunk);
    });
    let body = Body::from_stream(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (Ok::<_, Infallible>(chunk), rx))
    }));
    let (content_type, disposition) = match format {
        Format::Json => ("application/json", None),
        Format::Csv => (
            "text/csv; charset=utf-8",
            Some(format!("attachment; filename=\"transactions-{}-{}.csv\"", zone.day_of(from), zone.day_of(to - 1))),
        ),
    };
    let mut response = ([(header::CONTENT_TYPE, content_type)], body).into_response();
    if let Some(d) = disposition.and_then(|d| header::HeaderValue::from_str(&d).ok()) {
        response.headers_mut().insert(header::CONTENT_DISPOSITION, d);
    }
    Ok(response)
}

#[derive(Debug, Deserialize)]
pub struct ActivityQuery {
    from: Option<String>,
    to: Option<String>,
    format: Option<String>,
    /// Platform admins: one client's activity (default: all).
    client_id: Option<i64>,
}

/// `GET /v1/reports/activity` (client_admin+ users): who did what, from the audit log,
/// with counts by actor and by action.
async fn activity_report(
    State(state): State<AppState>,
    principal: Principal,
    crate::extract::ApiQuery(query): crate::extract::ApiQuery<ActivityQuery>,
) -> ApiResult<Response> {
    let (from, to) = period(query.from.as_deref(), query.to.as_deref())?;
    let format = format_arg(query.format.as_deref())?;
    let scope = match principal.client_id {
        Some(own) => Some(own),
        None => query.client_id,
    };
    state.db.settle().await?;
    let rows = state
        .db
        .call(move |conn| {
            let mut stmt = conn.prepare(
                "SELECT id, client_id, actor, action, resource, at FROM audit_log
                 WHERE at >= ?1 AND at < ?2 AND (client_id = ?3 OR ?3 IS NULL) ORDER BY id LIMIT ?4",
            )?;
            let rows = stmt.query_map(
                params![from, to, scope, i64::try_from(ACTIVITY_ROWS_MAX).unwrap_or(i64::MAX)],
                |row| {
                    Ok((
                        row.get::<_, i64>(0)?,
                        row.get::<_, Option<i64>>(1)?,
                        row.get::<_, String>(2)?,
                        row.get::<_, String>(3)?,
                        row.get::<_, Option<String>>(4)?,
                        row.get::<_, i64>(5)?,
                    ))
                },
            )?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await?;
    match format {
        Format::Csv => {
            let mut out = String::from("id,at,client_id,actor,action,resource\n");
            for (id, client, actor, action, resource, at) in &rows {
                out.push_str(&format!(
                    "{id},{},{},{},{},{}\n",
                    rfc3339(*at),
                    client.map(|c| c.to_string()).unwrap_or_default(),
                    csv_field(actor),
                    csv_field(action),
                    csv_field(resource.as_deref().unwrap_or(""))
                ));
            }
            Ok(([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], out).into_response())
        }
        Format::Json => {
            let mut by_actor: BTreeMap<&str, u64> = BTreeMap::new();
            let mut by_action: BTreeMap<&str, u64> = BTreeMap::new();
            for (_, _, actor, action, _, _) in &rows {
                *by_actor.entry(actor).or_default() += 1;
                *by_action.entry(action).or_default() += 1;
            }
            let by_actor = by_actor.iter().map(|(k, v)| ActorCount { actor: (*k).to_string(), count: *v }).collect();
            let by_action =
                by_action.iter().map(|(k, v)| ActionCount { action: (*k).to_string(), count: *v }).collect();
            let data: Vec<ActivityRow> = rows
                .into_iter()
                .map(|(id, client_id, actor, action, resource, at)| ActivityRow {
                    id,
                    client_id,
                    actor,
                    action,
                    resource,
                    at,
                })
                .collect();
            Ok(axum::Json(ActivityReport {
                object: "activity_report".to_string(),
                from,
                to,
                count: data.len(),
                truncated: data.len() >= ACTIVITY_ROWS_MAX,
                by_actor,
                by_action,
                rows: data,
            })
            .into_response())
        }
    }
}

/// A CSV field, quoted when it holds a separator, a quote or a line break; a leading
/// `=`, `+`, `-` or `@` is prefixed with `'` so spreadsheets don't run it as a formula.
pub(crate) fn csv_field(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@']) { format!("'{s}") } else { s.to_string() };
    if s.contains([',', '"', '\n', '\r']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s }
}

/// The endpoints of this module.
pub fn endpoints() -> Vec<Endpoint> {
    vec![
        Endpoint::new(
            Method::GET,
            "/v1/reports/transactions",
            Access::member(Role::Viewer),
            "Transactions over a period: rows and totals by day, kind, status and device (JSON or CSV, streamed)",
            routing::get(transactions_report),
        )
        .query(&["from", "to", "format", "rows", "group_by", "kind", "currency", "device_id"])
        .returns::<TransactionReport>()
        .returns_as::<CsvText>("text/csv")
        .errors(&[
            (400, "invalid_period"),
            (400, "invalid_time"),
            (400, "invalid_format"),
            (400, "invalid_group_by"),
            (400, "invalid_kind"),
            (400, "invalid_currency"),
        ]),
        Endpoint::new(
            Method::GET,
            "/v1/reports/activity",
            Access::platform(Role::ClientAdmin),
            "User activity from the audit log, with counts by actor and action (JSON or CSV)",
            routing::get(activity_report),
        )
        .query(&["from", "to", "format", "client_id"])
        .returns::<ActivityReport>()
        .returns_as::<CsvText>("text/csv")
        .errors(&[(400, "invalid_period"), (400, "invalid_time"), (400, "invalid_format")]),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wide_sums_keep_their_decimals_past_the_i64_range() {
        let usd = Currency::from_code("USD").expect("USD");
        let jpy = Currency::from_code("JPY").expect("JPY");
        assert_eq!(format_minor_wide(1234, usd), "12.34");
        assert_eq!(format_minor_wide(i128::from(i64::MAX) + 1, usd), "92233720368547758.08");
        assert_eq!(format_minor_wide(-(i128::from(i64::MAX) + 2), usd), "-92233720368547758.09");
        assert_eq!(format_minor_wide(i128::from(i64::MAX) * 2, jpy), "18446744073709551614");
    }
}
