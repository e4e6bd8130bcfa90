//! A client's own configuration: its time zone (an IANA name such as `Europe/Paris`,
//! with its daylight saving rules, or a fixed UTC offset: the days its reports and
//! dashboard group by and its settlement cut-over follow it), a daily settlement
//! cut-over time that closes its open batches by itself, the currencies it accepts,
//! and whether its users must use MFA. Read on the hot path (allowed currencies), so
//! kept in [`SettingsCache`], which the only writer (`PATCH /v1/clients/{id}`) updates.

use std::collections::HashMap;
use std::sync::RwLock;

use crate::db::{Connection, OptionalExtension};
use ledger_core::Currency;
use serde_json::{Value, json};

use crate::error::ApiError;

/// Largest UTC offset accepted, in minutes (UTC+14:00, Kiribati).
pub const OFFSET_MINUTES_MAX: i32 = 14 * 60;
/// How often the cut-over task looks for clients past their cut-over.
pub const CUTOVER_TICK_MS: u64 = 2_000;
/// Longest IANA time zone name accepted (the longest in the database has 32 bytes).
pub const ZONE_NAME_BYTES_MAX: usize = 64;

/// A client's time zone: where its days begin and end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Zone {
    /// Minutes east of UTC, the same all year (settings from before named zones, or
    /// chosen so).
    Offset(i32),
    /// A zone of the IANA database bundled in the binary (`jiff`'s copy, so every host
    /// computes the same days), with its daylight saving and historical changes.
    Named(jiff::tz::TimeZone),
}

impl Default for Zone {
    fn default() -> Zone {
        Zone::Offset(0)
    }
}

impl Zone {
    /// Parses an IANA name (`Europe/Paris`, `America/New_York`, `UTC`) or a fixed
    /// offset (`+HH:MM`, `-HH:MM`, `Z`); anything else is 400 `invalid_time_zone`.
    pub fn parse(text: &str) -> Result<Zone, ApiError> {
        let text = text.trim();
        if text.starts_with(['+', '-']) || text == "Z" {
            return parse_offset(text).map(Zone::Offset);
        }
        // `utc` in any case, as offsets always took it; any other name exactly as the
        // database spells it (what the OpenAPI pattern lists).
        let name = if text.eq_ignore_ascii_case("utc") { "UTC" } else { text };
        let plausible = !name.is_empty() && name.len() <= ZONE_NAME_BYTES_MAX;
        match plausible.then(|| jiff::tz::db().get(name).ok()).flatten() {
            Some(tz) if tz.iana_name() == Some(name) => Ok(Zone::Named(tz)),
            _ => Err(ApiError::invalid(
                "invalid_time_zone",
                "time_zone is an IANA time zone name (Europe/Paris, America/New_York, UTC) or a UTC offset (+HH:MM, -HH:MM)",
            )
            .with_param("time_zone")),
        }
    }

    /// The zone as the client object shows it: the IANA name, or the offset `+HH:MM`.
    pub fn name(&self) -> String {
        match self {
            Zone::Offset(minutes) => {
                let sign = if *minutes < 0 { '-' } else { '+' };
                let abs = minutes.unsigned_abs();
                format!("{sign}{:02}:{:02}", abs / 60, abs % 60)
            }
            Zone::Named(tz) => tz.iana_name().unwrap_or("UTC").to_string(),
        }
    }

    /// Seconds east of UTC at the instant `secs` (Unix seconds).
    pub fn offset_secs_at(&self, secs: i64) -> i64 {
        match self {
            Zone::Offset(minutes) => i64::from(*minutes) * 60,
            Zone::Named(tz) => jiff::Timestamp::from_second(secs).map_or(0, |t| i64::from(tz.to_offset(t).seconds())),
        }
    }

    /// The local date (`YYYY-MM-DD`) and minute of the day at `secs` (Unix seconds).
    pub fn local(&self, secs: i64) -> (String, i64) {
        let local = secs + self.offset_secs_at(secs);
        let day = time::OffsetDateTime::from_unix_timestamp(local)
            .ok()
            .and_then(|t| t.format(time::macros::format_description!("[year]-[month]-[day]")).ok())
            .unwrap_or_default();
        (day, local.rem_euclid(86_400) / 60)
    }

    /// The local date (`YYYY-MM-DD`) at `secs`: the day a report or the dashboard puts
    /// it in.
    pub fn day_of(&self, secs: i64) -> String {
        self.local(secs).0
    }

    /// The first instant (Unix seconds) of the local day `date`: its midnight, or where
    /// the day begins when its midnight is skipped by a daylight saving change, or the
    /// first of two midnights when the clock goes back over it.
    pub fn start_of_day(&self, date: time::Date) -> i64 {
        use jiff::tz::AmbiguousOffset;
        let midnight = date.midnight().assume_utc().unix_timestamp();
        let Zone::Named(tz) = self else {
            return midnight - self.offset_secs_at(midnight);
        };
        let civil = i16::try_from(date.year()).ok().and_then(|year| {
            jiff::civil::DateTime::new(
                year,
                i8::try_from(u8::from(date.month())).ok()?,
                i8::try_from(date.day()).ok()?,
                0,
                0,
                0,
                0,
            )
            .ok()
        });
        let Some(civil) = civil else {
            return midnight - self.offset_secs_at(midnight);
        };
        match tz.to_ambiguous_timestamp(civil).offset() {
            AmbiguousOffset::Unambiguous { offset } => midnight - i64::from(offset.seconds()),
            AmbiguousOffset::Fold { before, .. } => midnight - i64::from(before.seconds()),
            // Midnight is skipped: the day begins at the change, which lies after the
            // instant `midnight - after` and at or before `midnight - before`.
            AmbiguousOffset::Gap { before, after } => {
                let latest = midnight - i64::from(before.seconds());
                jiff::Timestamp::from_second(midnight - i64::from(after.seconds()))
                    .ok()
                    .and_then(|t| tz.following(t).next())
                    .map_or(latest, |change| change.timestamp().as_second().min(latest))
            }
        }
    }
}

/// A client's settings as its object shows them (`GET /v1/clients/{id}`).
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct SettingsView {
    /// Every user of the client must enrol in MFA before doing anything else.
    pub mfa_required: bool,
    /// The client's time zone: an IANA name (`Europe/Paris`), or a fixed UTC offset
    /// `+HH:MM` (`-HH:MM`).
    #[schema(pattern = "^([+-][0-9]{2}:[0-9]{2}|[A-Za-z0-9/_+-]{1,64})$")]
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
    /// Where the client's days begin and end.
    pub zone: Zone,
    /// `(hour, minute)` local time at which open batches close each day.
    pub cutover: Option<(u8, u8)>,
    /// `None`: every currency.
    pub allowed_currencies: Option<Vec<Currency>>,
}

impl Settings {
    /// The time zone as shown: an IANA name or `+HH:MM`.
    pub fn time_zone(&self) -> String {
        self.zone.name()
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

/// Parses `UTC`, `Z`, `+HH:MM` or `-HH:MM` into minutes east of UTC (the fixed offsets
/// of [`Zone::parse`]).
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
pub fn load(conn: &Connection, client_id: i64) -> crate::db::Result<Option<Settings>> {
    conn.prepare_cached(
        "SELECT mfa_required, utc_offset_minutes, settlement_cutover, allowed_currencies, time_zone_name
         FROM clients WHERE id = ?1",
    )?
    .query_row([client_id], |row| {
        let cutover: Option<String> = row.get(2)?;
        let allowed: Option<String> = row.get(3)?;
        Ok(Settings {
            mfa_required: row.get::<_, i64>(0)? != 0,
            zone: stored_zone(row.get(1)?, row.get(4)?),
            cutover: cutover.and_then(|c| parse_cutover(&c).ok()),
            allowed_currencies: allowed.map(|a| a.split(',').filter_map(Currency::from_code).collect()),
        })
    })
    .optional()
}

/// The zone a client's row holds: its IANA name, or (none set, or a name a later build
/// of the database no longer knows) its fixed offset, which is the name's offset when
/// it was set.
pub fn stored_zone(offset_minutes: i32, name: Option<String>) -> Zone {
    name.and_then(|name| Zone::parse(&name).ok()).unwrap_or(Zone::Offset(offset_minutes))
}

/// The local day whose cut-over is due at `now` (Unix seconds), if it has not run yet
/// (`done`: the local day it last ran). Due once the local time of day reaches the
/// cut-over: a cut-over in a skipped hour falls due at the change (the first local
/// time past it), one in a repeated hour at its first occurrence, and only once a day.
pub fn cutover_due(now: i64, zone: &Zone, cutover: (u8, u8), done: Option<&str>) -> Option<String> {
    let (day, minute) = zone.local(now);
    let at = i64::from(cutover.0) * 60 + i64::from(cutover.1);
    (minute >= at && done != Some(day.as_str())).then_some(day)
}

/// Settings already read, by client. The service is the only writer of its SQLite
/// database, so [`SettingsCache::put`] after each change keeps it exact (not used on
/// a shared PostgreSQL database: see [`of`]).
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

/// The client's settings, from the cache or the database. On a database shared with
/// other nodes (PostgreSQL) another node may change them, so they are read each time.
pub async fn of(state: &crate::app::AppState, client_id: i64) -> Result<Settings, ApiError> {
    let shared = state.db.is_postgres();
    if !shared && let Some(settings) = state.settings.get(client_id) {
        return Ok(settings);
    }
    let settings = state.db.call(move |conn| Ok(load(conn, client_id)?.unwrap_or_default())).await?;
    if !shared {
        state.settings.put(client_id, settings.clone());
    }
    Ok(settings)
}

/// Runs forever: every [`CUTOVER_TICK_MS`], closes the open batches of each client
/// whose local cut-over time has passed today and that has not been settled today,
/// and audits each close as the system's. In cluster mode only on the leader; which
/// days are settled is metadata, kept per node until it is shared, so a new leader
/// may close a client's batches a second time on the day of a fail-over.
pub async fn cutover_task(state: crate::app::AppState) {
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(CUTOVER_TICK_MS));
    loop {
        tick.tick().await;
        // Cluster mode: only the leader closes batches (a follower's ledger refuses).
        if state.cluster.as_ref().is_some_and(|c| !c.node().leads_with_quorum()) {
            continue;
        }
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
                "SELECT id, utc_offset_minutes, settlement_cutover, cutover_done_day, time_zone_name FROM clients
                 WHERE settlement_cutover IS NOT NULL",
            )?;
            let rows = stmt.query_map([], |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    stored_zone(row.get(1)?, row.get(4)?),
                    row.get::<_, String>(2)?,
                    row.get::<_, Option<String>>(3)?,
                ))
            })?;
            let mut due = Vec::new();
            for row in rows {
                let (id, zone, cutover, done) = row?;
                let Ok(cutover) = parse_cutover(&cutover) else { continue };
                if let Some(day) = cutover_due(now, &zone, cutover, done.as_deref()) {
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
                tx.execute("UPDATE clients SET cutover_done_day = ?1 WHERE id = ?2", crate::params![day, client])?;
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
        assert_eq!(Settings { zone: Zone::Offset(-570), ..Settings::default() }.time_zone(), "-09:30");
        assert_eq!(parse_cutover("23:59").ok(), Some((23, 59)));
        for bad in ["24:00", "7:00", "07-00", "07:60", ""] {
            assert!(parse_cutover(bad).is_err(), "{bad}");
        }
        assert!(parse_currencies(&[]).is_err());
        assert!(parse_currencies(&["usd".into()]).is_err());
        assert_eq!(parse_currencies(&["USD".into(), "USD".into(), "EUR".into()]).map(|c| c.len()).ok(), Some(2));
        assert_eq!(Zone::Offset(120).local(86_400 + 3_600), ("1970-01-02".to_string(), 180));
        assert_eq!(Zone::Offset(-120).local(3_600), ("1969-12-31".to_string(), 23 * 60));
    }

    fn at(rfc3339: &str) -> i64 {
        time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339)
            .map(|t| t.unix_timestamp())
            .unwrap_or(i64::MIN)
    }

    fn date(text: &str) -> time::Date {
        time::Date::parse(text, time::macros::format_description!("[year]-[month]-[day]")).unwrap_or(time::Date::MIN)
    }

    fn zone(name: &str) -> Zone {
        Zone::parse(name).unwrap_or(Zone::Offset(i32::MIN))
    }

    #[test]
    fn names_and_offsets_parse_and_show_as_given() {
        assert_eq!(zone("Europe/Paris").name(), "Europe/Paris");
        assert_eq!(zone("America/New_York").name(), "America/New_York");
        assert_eq!(zone("utc").name(), "UTC");
        assert_eq!(zone("+05:30"), Zone::Offset(330));
        assert_eq!(zone("-03:30").name(), "-03:30");
        for bad in
            ["Europe/Pariss", "europe/paris", "Mars/Olympus", "", "Europe/Paris\u{0}", "../../etc/passwd", "+15:00"]
        {
            let code = Zone::parse(bad).err().map(|e| e.code);
            assert_eq!(code, Some("invalid_time_zone"), "{bad:?}");
        }
        // A name a later database would not know falls back to the offset kept beside it.
        assert_eq!(stored_zone(60, Some("Nowhere/Gone".into())), Zone::Offset(60));
        assert_eq!(stored_zone(0, Some("Europe/Paris".into())).name(), "Europe/Paris");
        assert_eq!(stored_zone(-300, None), Zone::Offset(-300));
    }

    /// Report and dashboard days across Paris's spring-forward (2026-03-29, 23 hours)
    /// and fall-back (2026-10-25, 25 hours) days.
    #[test]
    fn days_follow_daylight_saving_changes() {
        let paris = zone("Europe/Paris");
        for (day, start, next) in [
            ("2026-03-29", "2026-03-28T23:00:00Z", "2026-03-29T22:00:00Z"),
            ("2026-10-25", "2026-10-24T22:00:00Z", "2026-10-25T23:00:00Z"),
            ("2026-07-14", "2026-07-13T22:00:00Z", "2026-07-14T22:00:00Z"),
        ] {
            let (start, next) = (at(start), at(next));
            assert_eq!(paris.start_of_day(date(day)), start, "{day}");
            assert_eq!(paris.start_of_day(date(day).next_day().unwrap_or(time::Date::MAX)), next, "{day}");
            assert_eq!(paris.day_of(start), day);
            assert_eq!(paris.day_of(next - 1), day);
            assert_ne!(paris.day_of(start - 1), day);
            assert_ne!(paris.day_of(next), day);
        }
        // Either side of the changes, by the hour: the 02:30 that does not exist and the
        // 02:30 that happens twice.
        assert_eq!(paris.local(at("2026-03-29T00:59:59Z")), ("2026-03-29".into(), 119));
        assert_eq!(paris.local(at("2026-03-29T01:00:00Z")), ("2026-03-29".into(), 180));
        assert_eq!(paris.local(at("2026-10-25T00:30:00Z")), ("2026-10-25".into(), 150));
        assert_eq!(paris.local(at("2026-10-25T01:30:00Z")), ("2026-10-25".into(), 150));
        // The same in New York (changes at 02:00 local, 2026-03-08 and 2026-11-01).
        let new_york = zone("America/New_York");
        assert_eq!(new_york.start_of_day(date("2026-03-08")), at("2026-03-08T05:00:00Z"));
        assert_eq!(new_york.start_of_day(date("2026-03-09")), at("2026-03-09T04:00:00Z"));
        assert_eq!(new_york.start_of_day(date("2026-11-01")), at("2026-11-01T04:00:00Z"));
        assert_eq!(new_york.start_of_day(date("2026-11-02")), at("2026-11-02T05:00:00Z"));
        // A fixed offset keeps 24-hour days.
        assert_eq!(Zone::Offset(60).start_of_day(date("2026-03-29")), at("2026-03-28T23:00:00Z"));
    }

    /// Every day of two years begins where the local date changes, in zones whose
    /// changes skip or repeat midnight itself (Santiago, Havana) as well as others.
    #[test]
    fn a_day_begins_where_its_date_does_even_when_midnight_is_skipped() {
        for name in ["America/Santiago", "America/Havana", "Asia/Beirut", "Europe/Paris", "Australia/Lord_Howe", "UTC"]
        {
            let zone = zone(name);
            let mut day = date("2025-01-01");
            while day < date("2027-01-01") {
                let start = zone.start_of_day(day);
                let text = zone.day_of(start);
                assert_eq!(text, day.to_string(), "{name} {day}");
                assert!(zone.day_of(start - 1) < text, "{name} {day}");
                day = day.next_day().unwrap_or(time::Date::MAX);
            }
        }
    }

    /// Runs the cut-over check every 30 s over `from..to` as the task does, and returns
    /// the instants at which it fired.
    fn sweep(zone: &Zone, cutover: (u8, u8), from: &str, to: &str) -> Vec<i64> {
        let mut done: Option<String> = None;
        let mut fired = Vec::new();
        let mut now = at(from);
        while now < at(to) {
            if let Some(day) = cutover_due(now, zone, cutover, done.as_deref()) {
                fired.push(now);
                done = Some(day);
            }
            now += 30;
        }
        fired
    }

    #[test]
    fn cutover_fires_once_a_local_day_across_daylight_saving_changes() {
        let paris = zone("Europe/Paris");
        // Spring forward: 02:30 does not exist on 2026-03-29; it fires at the change
        // (03:00 CEST, the next valid instant).
        assert_eq!(
            sweep(&paris, (2, 30), "2026-03-28T00:00:00Z", "2026-03-31T00:00:00Z"),
            [at("2026-03-28T01:30:00Z"), at("2026-03-29T01:00:00Z"), at("2026-03-30T00:30:00Z")]
        );
        // Fall back: 02:30 happens twice on 2026-10-25; it fires at the first only.
        assert_eq!(
            sweep(&paris, (2, 30), "2026-10-24T00:00:00Z", "2026-10-27T00:00:00Z"),
            [at("2026-10-24T00:30:00Z"), at("2026-10-25T00:30:00Z"), at("2026-10-26T01:30:00Z")]
        );
        // An evening cut-over keeps its local time on both sides of each change.
        assert_eq!(
            sweep(&paris, (22, 0), "2026-03-28T00:00:00Z", "2026-03-30T00:00:00Z"),
            [at("2026-03-28T21:00:00Z"), at("2026-03-29T20:00:00Z")]
        );
        assert_eq!(
            sweep(&paris, (22, 0), "2026-10-24T00:00:00Z", "2026-10-26T00:00:00Z"),
            [at("2026-10-24T20:00:00Z"), at("2026-10-25T21:00:00Z")]
        );
        // New York: 01:30 happens twice on 2026-11-01 (EDT, then EST).
        let new_york = zone("America/New_York");
        assert_eq!(
            sweep(&new_york, (1, 30), "2026-10-31T04:00:00Z", "2026-11-02T04:00:00Z"),
            [at("2026-10-31T05:30:00Z"), at("2026-11-01T05:30:00Z")]
        );
        // A fixed offset ignores the changes.
        assert_eq!(
            sweep(&Zone::Offset(60), (2, 30), "2026-03-28T00:00:00Z", "2026-03-30T00:00:00Z"),
            [at("2026-03-28T01:30:00Z"), at("2026-03-29T01:30:00Z")]
        );
    }
}
