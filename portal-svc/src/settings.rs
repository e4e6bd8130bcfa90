//! A client's own configuration: its time zone (a fixed UTC offset: the day its
//! reports group by and its settlement cut-over follow it), a daily settlement
//! cut-over time that closes its open batches by itself, the currencies it accepts,
//! and whether its users must use MFA. Read on the hot path (allowed currencies), so
//! kept in [`SettingsCache`], which the only writer (`PATCH /v1/clients/{id}`) updates.

use std::collections::HashMap;
use std::sync::RwLock;

use ledger_core::Currency;
use rusqlite::{Connection, OptionalExtension};
use serde_json::{Value, json};

use crate::error::ApiError;

/// Largest UTC offset accepted, in minutes (UTC+14:00, Kiribati).
pub const OFFSET_MINUTES_MAX: i32 = 14 * 60;
/// How often the cut-over task looks for clients past their cut-over.
pub const CUTOVER_TICK_MS: u64 = 2_000;

/// A client's settings as its object shows them (`GET /v1/clients/{id}`).
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct SettingsView {
    /// Every user of the client must enrol in MFA before doing anything else.
    pub mfa_required: bool,
    /// The client's UTC offset, `+HH:MM`.
    #[schema(pattern = "^[+-][0-9]{2}:[0-9]{2}$")]
    pub time_zone: String,
    /// `HH:MM` local time at which open batches close by themselves; `null`: never.
    #[schema(pattern = "^[0-9]{2}:[0-9]{2}$")]
    pub settlement_cutover: Option<String>,
    /// ISO 4217 codes payments may use; `null`: all.
    pub allowed_currencies: Option<Vec<String>>,
}

/// One client's settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    pub mfa_required: bool,
    /// Minutes east of UTC.
    pub utc_offset_minutes: i32,
    /// `(hour, minute)` local time at which open batches close each day.
    pub cutover: Option<(u8, u8)>,
    /// `None`: every currency.
    pub allowed_currencies: Option<Vec<Currency>>,
}

impl Settings {
    /// The offset as `+HH:MM`.
    pub fn time_zone(&self) -> String {
        let sign = if self.utc_offset_minutes < 0 { '-' } else { '+' };
        let abs = self.utc_offset_minutes.unsigned_abs();
        format!("{sign}{:02}:{:02}", abs / 60, abs % 60)
    }

    /// The settings as the client object shows them.
    pub fn view(&self) -> SettingsView {
        SettingsView {
            mfa_required: self.mfa_required,
            time_zone: self.time_zone(),
            settlement_cutover: self.cutover.map(|(h, m)| format!("{h:02}:{m:02}")),
            allowed_currencies: self
                .allowed_currencies
                .as_ref()
                .map(|c| c.iter().map(|c| c.code().to_string()).collect::<Vec<_>>()),
        }
    }

    /// [`Settings::view`] as JSON (the audit entry's detail).
    pub fn json(&self) -> Value {
        serde_json::to_value(self.view()).unwrap_or(Value::Null)
    }

    /// Refuses a currency the client does not accept (400 `currency_not_allowed`).
    pub fn check_currency(&self, currency: Currency) -> Result<(), ApiError> {
        match &self.allowed_currencies {
            Some(allowed) if !allowed.contains(&currency) => Err(ApiError::invalid(
                "currency_not_allowed",
                format!("this client accepts {} only", allowed.iter().map(|c| c.code()).collect::<Vec<_>>().join(", ")),
            )
            .with_param("currency")),
            _ => Ok(()),
        }
    }
}

/// Parses `UTC`, `Z`, `+HH:MM` or `-HH:MM` into minutes east of UTC.
pub fn parse_offset(text: &str) -> Result<i32, ApiError> {
    let bad = || {
        ApiError::invalid("invalid_time_zone", "time_zone is a UTC offset: UTC, +HH:MM or -HH:MM")
            .with_param("time_zone")
    };
    let text = text.trim();
    if text.eq_ignore_ascii_case("utc") || text == "Z" {
        return Ok(0);
    }
    let (sign, rest) = match text.split_at_checked(1) {
        Some(("+", rest)) => (1, rest),
        Some(("-", rest)) => (-1, rest),
        _ => return Err(bad()),
    };
    let (h, m) = rest.split_once(':').ok_or_else(bad)?;
    if h.len() != 2 || m.len() != 2 {
        return Err(bad());
    }
    let (h, m): (i32, i32) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    let minutes = sign * (h * 60 + m);
    if m >= 60 || minutes.abs() > OFFSET_MINUTES_MAX {
        return Err(bad());
    }
    Ok(minutes)
}

/// Parses `HH:MM` (24-hour).
pub fn parse_cutover(text: &str) -> Result<(u8, u8), ApiError> {
    let bad = || {
        ApiError::invalid("invalid_cutover", "settlement_cutover is HH:MM (24-hour)").with_param("settlement_cutover")
    };
    let (h, m) = text.trim().split_once(':').ok_or_else(bad)?;
    if h.len() != 2 || m.len() != 2 {
        return Err(bad());
    }
    let (h, m): (u8, u8) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if h > 23 || m > 59 {
        return Err(bad());
    }
    Ok((h, m))
}

/// Parses a list of ISO 4217 codes (at least one, no repeats).
pub fn parse_currencies(codes: &[String]) -> Result<Vec<Currency>, ApiError> {
    let bad = |why: &str| ApiError::invalid("invalid_currency", why.to_string()).with_param("allowed_currencies");
    if codes.is_empty() {
        return Err(bad("allowed_currencies needs at least one currency (null allows all)"));
    }
    let mut out = Vec::with_capacity(codes.len());
    for code in codes {
        let currency = Currency::from_code(code).ok_or_else(|| bad("an allowed currency is not an ISO 4217 code"))?;
        if !out.contains(&currency) {
            out.push(currency);
        }
    }
    Ok(out)
}

/// Reads a client's settings from the database (`None`: no such client).
pub fn load(conn: &Connection, client_id: i64) -> rusqlite::Result<Option<Settings>> {
    conn.prepare_cached(
        "SELECT mfa_required, utc_offset_minutes, settlement_cutover, allowed_currencies FROM clients WHERE id = ?1",
    )?
    .query_row([client_id], |row| {
        let cutover: Option<String> = row.get(2)?;
        let allowed: Option<String> = row.get(3)?;
        Ok(Settings {
            mfa_required: row.get::<_, i64>(0)? != 0,
            utc_offset_minutes: row.get(1)?,
            cutover: cutover.and_then(|c| parse_cutover(&c).ok()),
            allowed_currencies: allowed.map(|a| a.split(',').filter_map(Currency::from_code).collect()),
        })
    })
    .optional()
}

/// Settings already read, by client. The service is the only writer of its database,
/// so [`SettingsCache::put`] after each change keeps it exact.
#[derive(Debug, Default)]
pub struct SettingsCache {
    clients: RwLock<HashMap<i64, Settings>>,
}

impl SettingsCache {
    /// Entries kept at most; past it the cache starts over (a memory bound).
    const ENTRIES_MAX: usize = 100_000;

    pub fn get(&self, client_id: i64) -> Option<Settings> {
        self.clients.read().ok()?.get(&client_id).cloned()
    }

    pub fn put(&self, client_id: i64, settings: Settings) {
        if let Ok(mut clients) = self.clients.write() {
            if clients.len() >= SettingsCache::ENTRIES_MAX {
                clients.clear();
            }
            clients.insert(client_id, settings);
        }
    }
}

/// The client's settings, from the cache or the database.
pub async fn of(state: &crate::app::AppState, client_id: i64) -> Result<Settings, ApiError> {
    if let Some(settings) = state.settings.get(client_id) {
        return Ok(settings);
    }
    let settings = state.db.call(move |conn| Ok(load(conn, client_id)?.unwrap_or_default())).await?;
    state.settings.put(client_id, settings.clone());
    Ok(settings)
}

/// The local date (`YYYY-MM-DD`) and minute of the day at `now` (Unix seconds) in a
/// zone `offset` minutes east of UTC.
pub fn local(now: i64, offset_minutes: i32) -> (String, i64) {
    let local = now + i64::from(offset_minutes) * 60;
    let day = time::OffsetDateTime::from_unix_timestamp(local)
        .ok()
        .and_then(|t| t.format(time::macros::format_description!("[year]-[month]-[day]")).ok())
        .unwrap_or_default();
    (day, local.rem_euclid(86_400) / 60)
}

/// Runs forever: every [`CUTOVER_TICK_MS`], closes the open batches of each client
/// whose local cut-over time has passed today and that has not been settled today,
/// and audits each close as the system's.
pub async fn cutover_task(state: crate::app::AppState) {
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(CUTOVER_TICK_MS));
    loop {
        tick.tick().await;
        if let Err(e) = cutover_once(&state).await {
            tracing::error!(error = %e.message, "settlement cut-over failed");
        }
    }
}

/// One pass of [`cutover_task`]; returns how many batches it closed.
pub async fn cutover_once(state: &crate::app::AppState) -> Result<usize, ApiError> {
    let now = crate::db::now_secs();
    let due: Vec<(i64, String)> = state
        .db
        .call(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id, utc_offset_minutes, settlement_cutover, cutover_done_day FROM clients
                 WHERE settlement_cutover IS NOT NULL",
            )?;
            let rows = stmt.query_map([], |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, i32>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, Option<String>>(3)?,
                ))
            })?;
            let mut due = Vec::new();
            for row in rows {
                let (id, offset, cutover, done) = row?;
                let Ok((h, m)) = parse_cutover(&cutover) else { continue };
                let (day, minute) = local(now, offset);
                if minute >= i64::from(h) * 60 + i64::from(m) && done.as_deref() != Some(day.as_str()) {
                    due.push((id, day));
                }
            }
            Ok(due)
        })
        .await?;
    let mut closed = 0;
    for (client, day) in due {
        let ledger_client = u64::try_from(client).map_err(ApiError::internal)?;
        let mut entries = Vec::new();
        for (currency, _) in state.ledger.balances(ledger_client) {
            match state.ledger.close_batch_async(ledger_client, currency).await {
                Ok(summary) => {
                    closed += 1;
                    let body = crate::routes::batches::batch_json(&summary);
                    entries.push(
                        crate::audit::Entry::anonymous("system", None, "system", "batch.close")
                            .on("batch", summary.batch_id)
                            .in_client(Some(client))
                            .detail(json!({ "currency": body["currency"], "net": body["net"], "cutover": day })),
                    );
                }
                Err(ledger_core::CloseBatchError::Empty) => {}
                Err(e) => return Err(ApiError::ledger_unavailable(e)),
            }
        }
        state
            .db
            .call(move |conn| {
                let tx = crate::db::write_tx(conn)?;
                tx.execute("UPDATE clients SET cutover_done_day = ?1 WHERE id = ?2", rusqlite::params![day, client])?;
                if !entries.is_empty() {
                    crate::audit::append(&tx, &entries)?;
                }
                tx.commit()?;
                Ok(())
            })
            .await?;
    }
    Ok(closed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_cutovers_and_currencies_parse_strictly() {
        assert_eq!(parse_offset("UTC").ok(), Some(0));
        assert_eq!(parse_offset("+05:30").ok(), Some(330));
        assert_eq!(parse_offset("-08:00").ok(), Some(-480));
        for bad in ["", "5", "+5:30", "+15:00", "+05:60", "Europe/Paris", "+05:3"] {
            assert!(parse_offset(bad).is_err(), "{bad}");
        }
        assert_eq!(Settings { utc_offset_minutes: -570, ..Settings::default() }.time_zone(), "-09:30");
        assert_eq!(parse_cutover("23:59").ok(), Some((23, 59)));
        for bad in ["24:00", "7:00", "07-00", "07:60", ""] {
            assert!(parse_cutover(bad).is_err(), "{bad}");
        }
        assert!(parse_currencies(&[]).is_err());
        assert!(parse_currencies(&["usd".into()]).is_err());
        assert_eq!(parse_currencies(&["USD".into(), "USD".into(), "EUR".into()]).map(|c| c.len()).ok(), Some(2));
        assert_eq!(local(86_400 + 3_600, 120), ("1970-01-02".to_string(), 180));
        assert_eq!(local(3_600, -120), ("1969-12-31".to_string(), 23 * 60));
    }
}
