//! Payment terminals of a client: registration, groups that share a configuration,
//! heartbeats (status, firmware, a bounded diagnostics history) and firmware rollouts
//! whose per-device progress the heartbeats drive.
//!
//! Every query is scoped to the caller's client; the tables without a client column
//! (`device_heartbeats`, `rollout_devices`) are reached through one that has it. Every
//! change is written with its audit record in one SQLite transaction (heartbeats are
//! not audited: they are the terminals' own reports, not someone's decision).

use crate::db::{Connection, OptionalExtension, Row};
use crate::params;
use axum::Json;
use axum::extract::State;
use axum::http::{Method, StatusCode};
use axum::routing;
use serde::Deserialize;
use serde_json::Value;

use crate::api::{Access, Endpoint};
use crate::app::AppState;
use crate::audit;
use crate::auth::{Principal, Role};
use crate::db::{now_secs, write_tx};
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath, fetch_limit, page, page_limit};

/// A device is online when its last heartbeat is at most this many seconds old.
pub const ONLINE_SECS: i64 = 300;
// Migration 11 (db.rs) takes devices silent for 300 s as announced offline already.
const _: () = assert!(ONLINE_SECS == 300, "update migration 11's offline devices with ONLINE_SECS");
/// Heartbeats kept per device; each new one deletes those beyond the newest this many.
pub const HEARTBEATS_PER_DEVICE_MAX: i64 = 1000;
/// Largest diagnostics object of one heartbeat, serialized.
pub const DIAGNOSTICS_BYTES_MAX: usize = 16 << 10;
/// Largest configuration of a device group, serialized.
pub const CONFIG_BYTES_MAX: usize = 16 << 10;
const SERIAL_CHARS_MAX: usize = 64;
const MODEL_CHARS_MAX: usize = 100;
const GROUP_NAME_CHARS_MAX: usize = 100;
const VERSION_CHARS_MAX: usize = 64;

// A stored heartbeat (its diagnostics plus a little framing) fits in a request body.
const _: () = assert!(DIAGNOSTICS_BYTES_MAX < crate::app::BODY_BYTES_MAX);
const _: () = assert!(CONFIG_BYTES_MAX < crate::app::BODY_BYTES_MAX);

/// Whether a device last seen at `last_seen` is online at `now`.
pub fn is_online(last_seen: Option<i64>, now: i64) -> bool {
    last_seen.is_some_and(|seen| seen >= now.saturating_sub(ONLINE_SECS))
}

/// How often [`offline_task`] looks for devices that went offline.
pub const OFFLINE_SWEEP_SECS: u64 = 10;
/// Devices announced offline per sweep at most (the next sweep takes the rest).
const OFFLINE_SWEEP_MAX: i64 = 1000;

/// Announces devices that went offline: a device whose last heartbeat is older than
/// [`ONLINE_SECS`] gets one `device.offline` event for that heartbeat (the event and
/// the mark that it was announced commit together), every [`OFFLINE_SWEEP_SECS`].
pub async fn offline_task(state: AppState) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(OFFLINE_SWEEP_SECS));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match state.db.call(announce_offline).await {
            Ok(events) if !events.is_empty() => state.webhooks.published(events),
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e.message, "announcing offline devices failed; retried next sweep"),
        }
    }
}

fn announce_offline(conn: &mut Connection) -> Result<Vec<crate::events::Event>, ApiError> {
    let now = now_secs();
    let tx = crate::db::write_tx(conn)?;
    let gone: Vec<(i64, i64, i64)> = {
        let mut stmt = tx.prepare_cached(
            "SELECT id, client_id, last_seen FROM devices
             WHERE last_seen IS NOT NULL AND last_seen < ?1
               AND (offline_announced IS NULL OR offline_announced <> last_seen)
             ORDER BY last_seen LIMIT ?2",
        )?;
        stmt.query_map(params![now.saturating_sub(ONLINE_SECS), OFFLINE_SWEEP_MAX], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
        })?
        .collect::<Result<_, _>>()?
    };
    let mut events = Vec::new();
    for (id, client_id, last_seen) in gone {
        let object = serde_json::to_value(load_device(&tx, client_id, id)?).map_err(ApiError::internal)?;
        events.extend(crate::events::insert(&tx, &crate::events::of_change(client_id, "device.offline", object))?);
        tx.execute("UPDATE devices SET offline_announced = ?1 WHERE id = ?2", params![last_seen, id])?;
    }
    tx.commit()?;
    Ok(events)
}

/// Trimmed text of 1 to `max` characters without control characters.
fn text_arg(text: &str, param: &'static str, max: usize) -> Result<String, ApiError> {
    let text = text.trim();
    if text.is_empty() || text.chars().count() > max || text.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            "invalid_text",
            format!("{param} must be 1 to {max} characters without control characters"),
        )
        .with_param(param));
    }
    Ok(text.to_string())
}

/// A JSON object of at most `max` bytes serialized, as the text stored for it.
fn object_arg(value: &Value, code: &'static str, param: &'static str, max: usize) -> Result<String, ApiError> {
    if !value.is_object() {
        return Err(ApiError::invalid(code, format!("{param} must be a JSON object")).with_param(param));
    }
    let text = value.to_string();
    if text.len() > max {
        return Err(ApiError::invalid(code, format!("{param} exceeds {max} bytes serialized")).with_param(param));
    }
    Ok(text)
}

/// Whether `e` is a UNIQUE constraint violation (a serial or group name taken).
fn is_unique_violation(e: &crate::db::Error) -> bool {
    e.is_unique_violation()
}

/// Stored JSON text back as JSON (it was serialized by this module).
fn stored_json(row: &Row<'_>, index: usize) -> crate::db::Result<Value> {
    let text: String = row.get(index)?;
    serde_json::from_str(&text).map_err(|e| crate::db::Error::conversion(index, e))
}

fn not_found_device() -> ApiError {
    ApiError::not_found("no such device")
}

fn not_found_group() -> ApiError {
    ApiError::not_found("no such device group")
}

// ---------------------------------------------------------------------------------------
// The objects answered: every answer that shows one is serialized from these types.

/// Whether a device sent a heartbeat within the last [`ONLINE_SECS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeviceStatus {
    Online,
    Offline,
}

/// A payment terminal.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Device {
    pub id: i64,
    /// Always `device`.
    pub object: String,
    pub serial: String,
    pub model: String,
    pub group_id: Option<i64>,
    pub status: DeviceStatus,
    /// Unix seconds of the last heartbeat; `null` before the first.
    pub last_seen: Option<i64>,
    /// The firmware the last heartbeat reported.
    pub firmware_version: Option<String>,
    /// Unix seconds.
    pub created_at: i64,
    /// The version a pending rollout asks the device to install.
    pub target_firmware: Option<String>,
}

/// A page of devices.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct DeviceList {
    pub data: Vec<Device>,
    pub has_more: bool,
}

/// What a heartbeat answers: the device as now recorded and what it should apply.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct HeartbeatReply {
    pub device: Device,
    /// The group's configuration (a JSON object); `null` outside a group.
    #[schema(value_type = Option<Object>)]
    pub config: Value,
    /// The version a pending rollout asks the device to install.
    pub target_firmware: Option<String>,
}

/// One heartbeat as recorded.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct HeartbeatRecord {
    pub id: i64,
    /// Always `heartbeat`.
    pub object: String,
    pub device_id: i64,
    pub firmware_version: String,
    /// The diagnostics object the device sent.
    #[schema(value_type = Object)]
    pub diagnostics: Value,
    /// Unix seconds.
    pub received_at: i64,
}

/// A page of a device's heartbeats, newest first.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct HeartbeatList {
    pub data: Vec<HeartbeatRecord>,
    pub has_more: bool,
}

/// A device group with its configuration, device count and latest rollout.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct DeviceGroup {
    pub id: i64,
    /// Always `device_group`.
    pub object: String,
    pub name: String,
    /// The configuration handed to the group's terminals (a JSON object).
    #[schema(value_type = Object)]
    pub config: Value,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub updated_at: i64,
    pub device_count: i64,
    /// The group's newest rollout; `null` before the first.
    pub latest_rollout: Option<Rollout>,
}

/// A page of device groups.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct DeviceGroupList {
    pub data: Vec<DeviceGroup>,
    pub has_more: bool,
}

/// Where a rollout stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RolloutStatus {
    InProgress,
    Completed,
    Cancelled,
}

/// Where one device of a rollout stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RolloutDeviceStatus {
    Pending,
    Installed,
    Failed,
}

/// A firmware rollout with its progress and per-device entries.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Rollout {
    pub id: i64,
    /// Always `rollout`.
    pub object: String,
    pub group_id: i64,
    /// The firmware version the group's devices should install.
    pub version: String,
    pub status: RolloutStatus,
    /// Who scheduled it.
    pub created_by: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub updated_at: i64,
    pub progress: RolloutProgress,
    pub devices: Vec<RolloutDevice>,
}

/// A rollout's devices counted by where they stand.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct RolloutProgress {
    pub pending: usize,
    pub installed: usize,
    pub failed: usize,
    pub total: usize,
}

/// One device of a rollout.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct RolloutDevice {
    pub device_id: i64,
    pub status: RolloutDeviceStatus,
    /// Unix seconds.
    pub updated_at: i64,
}

/// A page of a group's rollouts, newest first.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct RolloutList {
    pub data: Vec<Rollout>,
    pub has_more: bool,
}

/// A stored status text as its enum (the module writes only these).
fn stored_status<T>(row: &Row<'_>, index: usize, parse: fn(&str) -> Option<T>) -> crate::db::Result<T> {
    let text: String = row.get(index)?;
    parse(&text).ok_or_else(|| crate::db::Error::conversion(index, format!("status {text:?}")))
}

fn rollout_status(text: &str) -> Option<RolloutStatus> {
    Some(match text {
        "in_progress" => RolloutStatus::InProgress,
        "completed" => RolloutStatus::Completed,
        "cancelled" => RolloutStatus::Cancelled,
        _ => return None,
    })
}

fn rollout_device_status(text: &str) -> Option<RolloutDeviceStatus> {
    Some(match text {
        "pending" => RolloutDeviceStatus::Pending,
        "installed" => RolloutDeviceStatus::Installed,
        "failed" => RolloutDeviceStatus::Failed,
        _ => return None,
    })
}

// ---------------------------------------------------------------------------------------
// Devices

/// The device columns, `d` being `devices`; the last is the target firmware: the
/// version of an in-progress rollout still pending for the device.
const DEVICE_COLUMNS: &str = "d.id, d.serial, d.model, d.group_id, d.last_seen, d.firmware_version, d.created_at,
    (SELECT r.version FROM rollout_devices rd JOIN rollouts r ON r.id = rd.rollout_id
     WHERE rd.device_id = d.id AND r.client_id = d.client_id AND rd.status = 'pending' AND r.status = 'in_progress'
     ORDER BY r.id DESC LIMIT 1)";

fn device_json(row: &Row<'_>, now: i64) -> crate::db::Result<Device> {
    let last_seen: Option<i64> = row.get(4)?;
    Ok(Device {
        id: row.get(0)?,
        object: "device".to_string(),
        serial: row.get(1)?,
        model: row.get(2)?,
        group_id: row.get(3)?,
        status: if is_online(last_seen, now) { DeviceStatus::Online } else { DeviceStatus::Offline },
        last_seen,
        firmware_version: row.get(5)?,
        created_at: row.get(6)?,
        target_firmware: row.get(7)?,
    })
}

fn load_device(conn: &Connection, client_id: i64, id: i64) -> Result<Device, ApiError> {
    let now = now_secs();
    conn.query_row(
        &format!("SELECT {DEVICE_COLUMNS} FROM devices d WHERE d.id = ?1 AND d.client_id = ?2"),
        params![id, client_id],
        |row| device_json(row, now),
    )
    .optional()?
    .ok_or_else(not_found_device)
}

/// The device's group, or `None`; 404 when the device is not the client's.
fn device_group_id(conn: &Connection, client_id: i64, id: i64) -> Result<Option<i64>, ApiError> {
    conn.query_row("SELECT group_id FROM devices WHERE id = ?1 AND client_id = ?2", params![id, client_id], |row| {
        row.get(0)
    })
    .optional()?
    .ok_or_else(not_found_device)
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewDevice {
    /// The terminal's serial number, unique across the platform.
    #[schema(schema_with = crate::schema::line_64)]
    serial: String,
    #[schema(schema_with = crate::schema::line_100)]
    model: String,
}

/// `POST /v1/devices` (client_admin+ users): registers a terminal.
pub async fn register(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(req): ApiJson<NewDevice>,
) -> ApiResult<(StatusCode, Json<Device>)> {
    principal.require_user(Role::ClientAdmin)?;
    let client_id = principal.own_client()?;
    let serial = text_arg(&req.serial, "serial", SERIAL_CHARS_MAX)?;
    let model = text_arg(&req.model, "model", MODEL_CHARS_MAX)?;
    let device = state
        .db
        .call(move |conn| {
            let tx = write_tx(conn)?;
            let inserted = tx.query_row(
                "INSERT INTO devices (client_id, serial, model, created_at) VALUES (?1, ?2, ?3, ?4) RETURNING id",
                params![client_id, serial, model, now_secs()],
                |row| row.get::<_, i64>(0),
            );
            let id = match inserted {
                Err(e) if is_unique_violation(&e) => {
                    return Err(ApiError::conflict(
                        "invalid_request_error",
                        "serial_taken",
                        "a device with this serial is already registered",
                    )
                    .with_param("serial"));
                }
                other => other?,
            };
            audit::record(&tx, &principal, "device.register", &format!("device:{id}"))?;
            let device = load_device(&tx, client_id, id)?;
            tx.commit()?;
            Ok(device)
        })
        .await?;
    Ok((StatusCode::CREATED, Json(device)))
}

#[derive(Debug, Deserialize)]
pub struct DeviceListQuery {
    limit: Option<usize>,
    starting_after: Option<i64>,
    status: Option<String>,
    group_id: Option<i64>,
}

/// `GET /v1/devices?limit=&starting_after=&status=&group_id=` (viewer+): oldest first.
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
    crate::extract::ApiQuery(query): crate::extract::ApiQuery<DeviceListQuery>,
) -> ApiResult<Json<DeviceList>> {
    principal.require(Role::Viewer)?;
    let client_id = principal.own_client()?;
    let limit = page_limit(query.limit)?;
    if let Some(status) = &query.status
        && status != "online"
        && status != "offline"
    {
        return Err(ApiError::invalid("invalid_status", "status is online or offline").with_param("status"));
    }
    let data = state
        .db
        .call(move |conn| {
            if let Some(group_id) = query.group_id {
                group_row(conn, client_id, group_id).map_err(|e| e.with_param("group_id"))?;
            }
            if let Some(after) = query.starting_after {
                crate::extract::cursor_exists(conn, crate::extract::CursorList::Devices, after, Some(client_id))?;
            }
            let now = now_secs();
            let mut stmt = conn.prepare(&format!(
                "SELECT {DEVICE_COLUMNS} FROM devices d
                 WHERE d.client_id = ?1 AND d.id > ?2
                   AND (d.group_id = ?3 OR ?3 IS NULL)
                   AND (((d.last_seen IS NOT NULL AND d.last_seen >= ?5) = (?4 = 'online')) OR ?4 IS NULL)
                 ORDER BY d.id LIMIT ?6"
            ))?;
            let rows = stmt.query_map(
                params![
                    client_id,
                    query.starting_after.unwrap_or(0),
                    query.group_id,
                    query.status,
                    now.saturating_sub(ONLINE_SECS),
                    fetch_limit(limit)
                ],
                |row| device_json(row, now),
            )?;
            Ok(rows.collect::<Result<Vec<Device>, _>>()?)
        })
        .await?;
    let (data, has_more) = page(data, limit);
    Ok(Json(DeviceList { data, has_more }))
}

/// `GET /v1/devices/{id}` (viewer+), with the firmware a pending rollout targets.
pub async fn get(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<Device>> {
    principal.require(Role::Viewer)?;
    let client_id = principal.own_client()?;
    Ok(Json(state.db.call(move |conn| load_device(conn, client_id, id)).await?))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupAssignment {
    /// A group of the same client; `null` takes the device out of its group.
    #[serde(deserialize_with = "nullable")]
    #[schema(required = true)]
    group_id: Option<i64>,
}

/// A field that must be present but may be `null`.
fn nullable<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    Option::<i64>::deserialize(d)
}

/// `PUT /v1/devices/{id}/group` (client_admin+ users). A device leaving a group leaves
/// the group's in-progress rollout too: its pending entry is removed, so the rollout
/// can still complete.
pub async fn set_group(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<i64>,
    ApiJson(req): ApiJson<GroupAssignment>,
) -> ApiResult<Json<Device>> {
    principal.require_user(Role::ClientAdmin)?;
    let client_id = principal.own_client()?;
    let device = state
        .db
        .call(move |conn| {
            let tx = write_tx(conn)?;
            let current = device_group_id(&tx, client_id, id)?;
            if let Some(group_id) = req.group_id {
                group_row(&tx, client_id, group_id).map_err(|e| e.with_param("group_id"))?;
            }
            if current != req.group_id {
                let now = now_secs();
                tx.execute(
                    "UPDATE devices SET group_id = ?1 WHERE id = ?2 AND client_id = ?3",
                    params![req.group_id, id, client_id],
                )?;
                if let Some(old) = current {
                    leave_rollouts(&tx, client_id, old, id, now)?;
                }
                audit::record(&tx, &principal, "device.group", &format!("device:{id}"))?;
            }
            let device = load_device(&tx, client_id, id)?;
            tx.commit()?;
            Ok(device)
        })
        .await?;
    Ok(Json(device))
}

/// Removes `device_id`'s pending entries from the in-progress rollouts of `group_id`
/// and settles those rollouts.
fn leave_rollouts(conn: &Connection, client_id: i64, group_id: i64, device_id: i64, now: i64) -> Result<(), ApiError> {
    let rollouts: Vec<i64> = {
        let mut stmt = conn.prepare(
            "SELECT r.id FROM rollouts r JOIN rollout_devices rd ON rd.rollout_id = r.id
             WHERE r.client_id = ?1 AND r.group_id = ?2 AND r.status = 'in_progress'
               AND rd.device_id = ?3 AND rd.status = 'pending'",
        )?;
        stmt.query_map(params![client_id, group_id, device_id], |row| row.get(0))?.collect::<Result<_, _>>()?
    };
    for rollout_id in rollouts {
        conn.execute(
            "DELETE FROM rollout_devices WHERE rollout_id = ?1 AND device_id = ?2 AND status = 'pending'",
            params![rollout_id, device_id],
        )?;
        settle_rollout(conn, client_id, rollout_id, now)?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Heartbeats

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Heartbeat {
    /// The firmware the terminal runs.
    #[schema(schema_with = crate::schema::line_64)]
    firmware_version: String,
    /// Any JSON object of at most 16 KiB serialized; `"firmware_update": "failed"`
    /// reports a failed installation of the rollout's firmware.
    #[schema(schema_with = crate::schema::json_object)]
    diagnostics: Value,
}

/// `POST /v1/devices/{id}/heartbeat` (API keys): records the terminal's report and
/// answers what it should apply: its group's configuration and the firmware a pending
/// rollout targets.
pub async fn heartbeat(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<i64>,
    ApiJson(req): ApiJson<Heartbeat>,
) -> ApiResult<Json<HeartbeatReply>> {
    Access::KeyOnly.check(&principal)?;
    let client_id = principal.own_client()?;
    let firmware = text_arg(&req.firmware_version, "firmware_version", VERSION_CHARS_MAX)?;
    let diagnostics = object_arg(&req.diagnostics, "invalid_diagnostics", "diagnostics", DIAGNOSTICS_BYTES_MAX)?;
    let update_failed = req.diagnostics.get("firmware_update").and_then(Value::as_str) == Some("failed");
    let reply = state
        .db
        .call(move |conn| {
            let tx = write_tx(conn)?;
            let group_id = device_group_id(&tx, client_id, id)?;
            let now = now_secs();
            tx.execute(
                "UPDATE devices SET last_seen = ?1, firmware_version = ?2 WHERE id = ?3 AND client_id = ?4",
                params![now, firmware, id, client_id],
            )?;
            tx.execute(
                "INSERT INTO device_heartbeats (device_id, firmware_version, diagnostics, received_at)
                 VALUES (?1, ?2, ?3, ?4)",
                params![id, firmware, diagnostics, now],
            )?;
            tx.execute(
                "DELETE FROM device_heartbeats
                 WHERE device_id = ?1 AND device_id IN (SELECT id FROM devices WHERE client_id = ?2)
                   AND id <= (SELECT id FROM device_heartbeats WHERE device_id = ?1
                              ORDER BY id DESC LIMIT 1 OFFSET ?3)",
                params![id, client_id, HEARTBEATS_PER_DEVICE_MAX],
            )?;
            advance_rollouts(&tx, client_id, id, &firmware, update_failed, now)?;
            let config = match group_id {
                None => Value::Null,
                Some(group_id) => tx
                    .query_row(
                        "SELECT config FROM device_groups WHERE id = ?1 AND client_id = ?2",
                        params![group_id, client_id],
                        |row| stored_json(row, 0),
                    )
                    .optional()?
                    .unwrap_or(Value::Null),
            };
            let device = load_device(&tx, client_id, id)?;
            tx.commit()?;
            let target_firmware = device.target_firmware.clone();
            Ok(HeartbeatReply { device, config, target_firmware })
        })
        .await?;
    Ok(Json(reply))
}

/// Moves the device's pending entries in in-progress rollouts to `installed` (it runs
/// the rollout's version) or `failed` (it reported a failed update), and settles the
/// rollouts it touched. A `failed` entry, in a rollout in progress or completed, becomes
/// `installed` when the device later reports the rollout's version (a retry that
/// worked: it used to stay failed, issue 15).
fn advance_rollouts(
    conn: &Connection,
    client_id: i64,
    device_id: i64,
    firmware: &str,
    update_failed: bool,
    now: i64,
) -> Result<(), ApiError> {
    let pending: Vec<(i64, String, String)> = {
        let mut stmt = conn.prepare(
            "SELECT r.id, r.version, rd.status FROM rollouts r JOIN rollout_devices rd ON rd.rollout_id = r.id
             WHERE r.client_id = ?1 AND rd.device_id = ?2
               AND ((r.status = 'in_progress' AND rd.status = 'pending')
                    OR (r.status IN ('in_progress', 'completed') AND rd.status = 'failed' AND r.version = ?3))",
        )?;
        stmt.query_map(params![client_id, device_id, firmware], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?
            .collect::<Result<_, _>>()?
    };
    for (rollout_id, version, was) in pending {
        let was: String = was;
        let outcome = if version == firmware {
            "installed"
        } else if update_failed {
            "failed"
        } else {
            continue;
        };
        conn.execute(
            "UPDATE rollout_devices SET status = ?1, updated_at = ?2
             WHERE rollout_id = ?3 AND device_id = ?4 AND status = ?5",
            params![outcome, now, rollout_id, device_id, was],
        )?;
        settle_rollout(conn, client_id, rollout_id, now)?;
    }
    Ok(())
}

/// An in-progress rollout with nothing pending is over: `completed`, or `cancelled`
/// when no device is left in it at all.
fn settle_rollout(conn: &Connection, client_id: i64, rollout_id: i64, now: i64) -> Result<(), ApiError> {
    let (pending, total): (i64, i64) = conn.query_row(
        "SELECT count(*) FILTER (WHERE rd.status = 'pending'), count(*)
         FROM rollout_devices rd JOIN rollouts r ON r.id = rd.rollout_id
         WHERE rd.rollout_id = ?1 AND r.client_id = ?2",
        params![rollout_id, client_id],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )?;
    if pending == 0 {
        let status = if total == 0 { "cancelled" } else { "completed" };
        let changed = conn.execute(
            "UPDATE rollouts SET status = ?1, updated_at = ?2
             WHERE id = ?3 AND client_id = ?4 AND status = 'in_progress'",
            params![status, now, rollout_id, client_id],
        )?;
        // The event is committed with the change it announces (issue 17); the delivery
        // worker's poll finds its deliveries within a second.
        if changed > 0 && status == "completed" {
            let object =
                serde_json::to_value(load_rollout(conn, client_id, rollout_id)?).map_err(ApiError::internal)?;
            crate::events::insert(conn, &crate::events::of_change(client_id, "rollout.completed", object))?;
        }
    }
    Ok(())
}

#[derive(Debug, Deserialize)]
pub struct PageQuery {
    limit: Option<usize>,
    starting_after: Option<i64>,
}

/// `GET /v1/devices/{id}/diagnostics` (viewer+): the heartbeat history, newest first.
pub async fn diagnostics(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<i64>,
    crate::extract::ApiQuery(query): crate::extract::ApiQuery<PageQuery>,
) -> ApiResult<Json<HeartbeatList>> {
    principal.require(Role::Viewer)?;
    let client_id = principal.own_client()?;
    let limit = page_limit(query.limit)?;
    let data = state
        .db
        .call(move |conn| {
            device_group_id(conn, client_id, id)?;
            if let Some(after) = query.starting_after {
                crate::extract::cursor_exists(conn, crate::extract::CursorList::Heartbeats, after, Some(client_id))?;
            }
            let mut stmt = conn.prepare(
                "SELECT h.id, h.firmware_version, h.diagnostics, h.received_at
                 FROM device_heartbeats h JOIN devices d ON d.id = h.device_id
                 WHERE h.device_id = ?1 AND d.client_id = ?2 AND h.id < ?3
                 ORDER BY h.id DESC LIMIT ?4",
            )?;
            let rows = stmt.query_map(
                params![id, client_id, query.starting_after.unwrap_or(i64::MAX), fetch_limit(limit)],
                |row| {
                    Ok(HeartbeatRecord {
                        id: row.get(0)?,
                        object: "heartbeat".to_string(),
                        device_id: id,
                        firmware_version: row.get(1)?,
                        diagnostics: stored_json(row, 2)?,
                        received_at: row.get(3)?,
                    })
                },
            )?;
            Ok(rows.collect::<Result<Vec<HeartbeatRecord>, _>>()?)
        })
        .await?;
    let (data, has_more) = page(data, limit);
    Ok(Json(HeartbeatList { data, has_more }))
}

// ---------------------------------------------------------------------------------------
// Device groups

const GROUP_COLUMNS: &str = "id, name, config, created_at, updated_at";

fn group_json(row: &Row<'_>) -> crate::db::Result<DeviceGroup> {
    Ok(DeviceGroup {
        id: row.get(0)?,
        object: "device_group".to_string(),
        name: row.get(1)?,
        config: stored_json(row, 2)?,
        created_at: row.get(3)?,
        updated_at: row.get(4)?,
        device_count: 0,
        latest_rollout: None,
    })
}

/// The group without its device count and latest rollout; 404 when it is not the
/// client's.
fn group_row(conn: &Connection, client_id: i64, id: i64) -> Result<DeviceGroup, ApiError> {
    conn.query_row(
        &format!("SELECT {GROUP_COLUMNS} FROM device_groups WHERE id = ?1 AND client_id = ?2"),
        params![id, client_id],
        group_json,
    )
    .optional()?
    .ok_or_else(not_found_group)
}

/// The group with its number of devices and its latest rollout (or `null`).
fn load_group(conn: &Connection, client_id: i64, id: i64) -> Result<DeviceGroup, ApiError> {
    let mut group = group_row(conn, client_id, id)?;
    group.device_count = conn.query_row(
        "SELECT count(*) FROM devices WHERE group_id = ?1 AND client_id = ?2",
        params![id, client_id],
        |row| row.get(0),
    )?;
    let latest: Option<i64> = conn
        .query_row(
            "SELECT id FROM rollouts WHERE group_id = ?1 AND client_id = ?2 ORDER BY id DESC LIMIT 1",
            params![id, client_id],
            |row| row.get(0),
        )
        .optional()?;
    group.latest_rollout = latest.map(|rollout_id| load_rollout(conn, client_id, rollout_id)).transpose()?;
    Ok(group)
}

fn name_taken() -> ApiError {
    ApiError::conflict("invalid_request_error", "group_name_taken", "the client already has a group with this name")
        .with_param("name")
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewGroup {
    /// Unique within the client.
    #[schema(schema_with = crate::schema::line_100)]
    name: String,
    /// Any JSON object of at most 16 KiB serialized, handed to the group's terminals.
    #[schema(schema_with = crate::schema::json_object)]
    config: Value,
}

/// `POST /v1/device-groups` (client_admin+ users).
pub async fn create_group(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(req): ApiJson<NewGroup>,
) -> ApiResult<(StatusCode, Json<DeviceGroup>)> {
    principal.require_user(Role::ClientAdmin)?;
    let client_id = principal.own_client()?;
    let name = text_arg(&req.name, "name", GROUP_NAME_CHARS_MAX)?;
    let config = object_arg(&req.config, "invalid_config", "config", CONFIG_BYTES_MAX)?;
    let group = state
        .db
        .call(move |conn| {
            let tx = write_tx(conn)?;
            let now = now_secs();
            let inserted = tx.query_row(
                "INSERT INTO device_groups (client_id, name, config, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?4) RETURNING id",
                params![client_id, name, config, now],
                |row| row.get::<_, i64>(0),
            );
            let id = match inserted {
                Err(e) if is_unique_violation(&e) => return Err(name_taken()),
                other => other?,
            };
            audit::record(&tx, &principal, "group.create", &format!("device_group:{id}"))?;
            let group = load_group(&tx, client_id, id)?;
            tx.commit()?;
            Ok(group)
        })
        .await?;
    Ok((StatusCode::CREATED, Json(group)))
}

/// `GET /v1/device-groups?limit=&starting_after=` (viewer+): oldest first.
pub async fn list_groups(
    State(state): State<AppState>,
    principal: Principal,
    crate::extract::ApiQuery(query): crate::extract::ApiQuery<PageQuery>,
) -> ApiResult<Json<DeviceGroupList>> {
    principal.require(Role::Viewer)?;
    let client_id = principal.own_client()?;
    let limit = page_limit(query.limit)?;
    let data = state
        .db
        .call(move |conn| {
            if let Some(after) = query.starting_after {
                crate::extract::cursor_exists(conn, crate::extract::CursorList::DeviceGroups, after, Some(client_id))?;
            }
            let mut stmt =
                conn.prepare("SELECT id FROM device_groups WHERE client_id = ?1 AND id > ?2 ORDER BY id LIMIT ?3")?;
            let ids = stmt
                .query_map(params![client_id, query.starting_after.unwrap_or(0), fetch_limit(limit)], |r| r.get(0))?
                .collect::<Result<Vec<i64>, _>>()?;
            // Each with its device count and latest rollout, as GET of one shows it (the
            // Devices page showed "undefined" without them: issue 15).
            ids.into_iter().map(|id| load_group(conn, client_id, id)).collect::<Result<Vec<DeviceGroup>, _>>()
        })
        .await?;
    let (data, has_more) = page(data, limit);
    Ok(Json(DeviceGroupList { data, has_more }))
}

/// `GET /v1/device-groups/{id}` (viewer+), with its device count and latest rollout.
pub async fn get_group(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<DeviceGroup>> {
    principal.require(Role::Viewer)?;
    let client_id = principal.own_client()?;
    Ok(Json(state.db.call(move |conn| load_group(conn, client_id, id)).await?))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupChange {
    #[schema(schema_with = crate::schema::optional_line_100)]
    name: Option<String>,
    /// Replaces the whole configuration (a JSON object; `null` is refused).
    #[serde(default, deserialize_with = "present_value")]
    #[schema(schema_with = crate::schema::json_object)]
    config: Option<Value>,
}

/// Tells an absent field (`None`) from an explicit `null` (`Some(Value::Null)`).
fn present_value<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

/// `PATCH /v1/device-groups/{id}` (client_admin+ users): renames it or replaces its
/// configuration.
pub async fn update_group(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<i64>,
    ApiJson(req): ApiJson<GroupChange>,
) -> ApiResult<Json<DeviceGroup>> {
    principal.require_user(Role::ClientAdmin)?;
    let client_id = principal.own_client()?;
    let name = req.name.as_deref().map(|n| text_arg(n, "name", GROUP_NAME_CHARS_MAX)).transpose()?;
    let config =
        req.config.as_ref().map(|c| object_arg(c, "invalid_config", "config", CONFIG_BYTES_MAX)).transpose()?;
    let group = state
        .db
        .call(move |conn| {
            let tx = write_tx(conn)?;
            group_row(&tx, client_id, id)?;
            let now = now_secs();
            if let Some(name) = &name {
                let renamed = tx.execute(
                    "UPDATE device_groups SET name = ?1, updated_at = ?2 WHERE id = ?3 AND client_id = ?4",
                    params![name, now, id, client_id],
                );
                match renamed {
                    Err(e) if is_unique_violation(&e) => return Err(name_taken()),
                    other => other?,
                };
            }
            if let Some(config) = &config {
                tx.execute(
                    "UPDATE device_groups SET config = ?1, updated_at = ?2 WHERE id = ?3 AND client_id = ?4",
                    params![config, now, id, client_id],
                )?;
            }
            if name.is_some() || config.is_some() {
                audit::record(&tx, &principal, "group.update", &format!("device_group:{id}"))?;
            }
            let group = load_group(&tx, client_id, id)?;
            tx.commit()?;
            Ok(group)
        })
        .await?;
    Ok(Json(group))
}

// ---------------------------------------------------------------------------------------
// Firmware rollouts

const ROLLOUT_COLUMNS: &str = "id, group_id, version, status, created_by, created_at, updated_at";

/// The rollout with its progress and per-device entries; 404 when not the client's.
fn load_rollout(conn: &Connection, client_id: i64, id: i64) -> Result<Rollout, ApiError> {
    let mut rollout = conn
        .query_row(
            &format!("SELECT {ROLLOUT_COLUMNS} FROM rollouts WHERE id = ?1 AND client_id = ?2"),
            params![id, client_id],
            |row| {
                Ok(Rollout {
                    id: row.get(0)?,
                    object: "rollout".to_string(),
                    group_id: row.get(1)?,
                    version: row.get(2)?,
                    status: stored_status(row, 3, rollout_status)?,
                    created_by: row.get(4)?,
                    created_at: row.get(5)?,
                    updated_at: row.get(6)?,
                    progress: RolloutProgress { pending: 0, installed: 0, failed: 0, total: 0 },
                    devices: Vec::new(),
                })
            },
        )
        .optional()?
        .ok_or_else(|| ApiError::not_found("no such rollout"))?;
    let mut stmt = conn.prepare(
        "SELECT rd.device_id, rd.status, rd.updated_at FROM rollout_devices rd JOIN rollouts r ON r.id = rd.rollout_id
         WHERE rd.rollout_id = ?1 AND r.client_id = ?2 ORDER BY rd.device_id",
    )?;
    rollout.devices = stmt
        .query_map(params![id, client_id], |row| {
            Ok(RolloutDevice {
                device_id: row.get(0)?,
                status: stored_status(row, 1, rollout_device_status)?,
                updated_at: row.get(2)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    let count = |status: RolloutDeviceStatus| rollout.devices.iter().filter(|d| d.status == status).count();
    rollout.progress = RolloutProgress {
        pending: count(RolloutDeviceStatus::Pending),
        installed: count(RolloutDeviceStatus::Installed),
        failed: count(RolloutDeviceStatus::Failed),
        total: rollout.devices.len(),
    };
    Ok(rollout)
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRollout {
    /// The firmware version the group's devices should install.
    #[schema(schema_with = crate::schema::line_64)]
    version: String,
}

/// `POST /v1/device-groups/{id}/firmware` (client_admin+ users): schedules a rollout to
/// every device of the group now (those already on the version count as installed),
/// cancelling the group's in-progress one. An empty group is refused (422).
pub async fn schedule_rollout(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(group_id): ApiPath<i64>,
    ApiJson(req): ApiJson<NewRollout>,
) -> ApiResult<(StatusCode, Json<Rollout>)> {
    principal.require_user(Role::ClientAdmin)?;
    let client_id = principal.own_client()?;
    let version = text_arg(&req.version, "version", VERSION_CHARS_MAX)?;
    let rollout = state
        .db
        .call(move |conn| {
            let tx = write_tx(conn)?;
            group_row(&tx, client_id, group_id)?;
            let devices: Vec<(i64, Option<String>)> = {
                let mut stmt = tx.prepare(
                    "SELECT id, firmware_version FROM devices WHERE group_id = ?1 AND client_id = ?2 ORDER BY id",
                )?;
                stmt.query_map(params![group_id, client_id], |row| Ok((row.get(0)?, row.get(1)?)))?
                    .collect::<Result<_, _>>()?
            };
            if devices.is_empty() {
                return Err(ApiError::refused("group_empty", "the group has no device to roll firmware out to"));
            }
            let now = now_secs();
            let cancelled: Vec<i64> = {
                let mut stmt = tx.prepare(
                    "SELECT id FROM rollouts WHERE group_id = ?1 AND client_id = ?2 AND status = 'in_progress'",
                )?;
                stmt.query_map(params![group_id, client_id], |row| row.get(0))?.collect::<Result<_, _>>()?
            };
            for old in &cancelled {
                tx.execute(
                    "UPDATE rollouts SET status = 'cancelled', updated_at = ?1 WHERE id = ?2 AND client_id = ?3",
                    params![now, old, client_id],
                )?;
                audit::record(&tx, &principal, "rollout.cancel", &format!("rollout:{old}"))?;
            }
            let id: i64 = tx.query_row(
                "INSERT INTO rollouts (client_id, group_id, version, status, created_by, created_at, updated_at)
                 VALUES (?1, ?2, ?3, 'in_progress', ?4, ?5, ?5)
                 RETURNING id",
                params![client_id, group_id, version, principal.label(), now],
                |row| row.get(0),
            )?;
            for (device_id, firmware) in &devices {
                let status = if firmware.as_deref() == Some(version.as_str()) { "installed" } else { "pending" };
                tx.execute(
                    "INSERT INTO rollout_devices (rollout_id, device_id, status, updated_at) VALUES (?1, ?2, ?3, ?4)",
                    params![id, device_id, status, now],
                )?;
            }
            settle_rollout(&tx, client_id, id, now)?;
            audit::record(&tx, &principal, "rollout.schedule", &format!("rollout:{id}"))?;
            let rollout = load_rollout(&tx, client_id, id)?;
            tx.commit()?;
            Ok(rollout)
        })
        .await?;
    Ok((StatusCode::CREATED, Json(rollout)))
}

/// `GET /v1/rollouts/{id}` (viewer+): a rollout's progress.
pub async fn get_rollout(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<Rollout>> {
    principal.require(Role::Viewer)?;
    let client_id = principal.own_client()?;
    Ok(Json(state.db.call(move |conn| load_rollout(conn, client_id, id)).await?))
}

/// `GET /v1/device-groups/{id}/rollouts?limit=&starting_after=` (viewer+): newest first.
pub async fn list_rollouts(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(group_id): ApiPath<i64>,
    crate::extract::ApiQuery(query): crate::extract::ApiQuery<PageQuery>,
) -> ApiResult<Json<RolloutList>> {
    principal.require(Role::Viewer)?;
    let client_id = principal.own_client()?;
    let limit = page_limit(query.limit)?;
    let data = state
        .db
        .call(move |conn| {
            if let Some(after) = query.starting_after {
                crate::extract::cursor_exists(conn, crate::extract::CursorList::Rollouts, after, Some(client_id))?;
            }
            group_row(conn, client_id, group_id)?;
            let ids: Vec<i64> = {
                let mut stmt = conn.prepare(
                    "SELECT id FROM rollouts WHERE group_id = ?1 AND client_id = ?2 AND id < ?3
                     ORDER BY id DESC LIMIT ?4",
                )?;
                stmt.query_map(
                    params![group_id, client_id, query.starting_after.unwrap_or(i64::MAX), fetch_limit(limit)],
                    |row| row.get(0),
                )?
                .collect::<Result<_, _>>()?
            };
            ids.into_iter().map(|id| load_rollout(conn, client_id, id)).collect::<Result<Vec<Rollout>, _>>()
        })
        .await?;
    let (data, has_more) = page(data, limit);
    Ok(Json(RolloutList { data, has_more }))
}

/// The endpoints of this module.
pub fn endpoints() -> Vec<Endpoint> {
    vec![
        Endpoint::new(
            Method::POST,
            "/v1/devices",
            Access::users(Role::ClientAdmin),
            "Register a device; a serial already registered is 409 serial_taken",
            routing::post(register),
        )
        .body::<NewDevice>()
        .returns::<Device>()
        .errors(&[(409, "serial_taken")])
        .link("GetDevice", "get /v1/devices/{id}", &[("id", "$response.body#/id")])
        .link("SetDeviceGroup", "put /v1/devices/{id}/group", &[("id", "$response.body#/id")])
        .link("Heartbeat", "post /v1/devices/{id}/heartbeat", &[("id", "$response.body#/id")])
        .link("DeviceDiagnostics", "get /v1/devices/{id}/diagnostics", &[("id", "$response.body#/id")]),
        Endpoint::new(
            Method::GET,
            "/v1/devices",
            Access::member(Role::Viewer),
            "List devices, oldest first, optionally by status (online, offline) or group",
            routing::get(list),
        )
        .query(&["limit", "starting_after", "status", "group_id"])
        .returns::<DeviceList>()
        .errors(&[(400, "invalid_status")]),
        Endpoint::new(
            Method::GET,
            "/v1/devices/{id}",
            Access::member(Role::Viewer),
            "Get a device with its status and the firmware a pending rollout targets",
            routing::get(get),
        )
        .returns::<Device>(),
        Endpoint::new(
            Method::PUT,
            "/v1/devices/{id}/group",
            Access::users(Role::ClientAdmin),
            "Put a device in a group, or take it out with null",
            routing::put(set_group),
        )
        .body::<GroupAssignment>()
        .returns::<Device>(),
        Endpoint::new(
            Method::POST,
            "/v1/devices/{id}/heartbeat",
            Access::KeyOnly,
            "Report a device's firmware and diagnostics; answers its group's config and target firmware",
            routing::post(heartbeat),
        )
        .body::<Heartbeat>()
        .returns::<HeartbeatReply>()
        .errors(&[(400, "invalid_diagnostics")])
        // It updates the device rather than creating anything: 200, as it answers.
        .answers(200),
        Endpoint::new(
            Method::GET,
            "/v1/devices/{id}/diagnostics",
            Access::member(Role::Viewer),
            "A device's heartbeat history, newest first",
            routing::get(diagnostics),
        )
        .query(&["limit", "starting_after"])
        .returns::<HeartbeatList>(),
        Endpoint::new(
            Method::POST,
            "/v1/device-groups",
            Access::users(Role::ClientAdmin),
            "Create a device group with a configuration; a name already used is 409 group_name_taken",
            routing::post(create_group),
        )
        .body::<NewGroup>()
        .returns::<DeviceGroup>()
        .errors(&[(400, "invalid_config"), (409, "group_name_taken")])
        .link("GetDeviceGroup", "get /v1/device-groups/{id}", &[("id", "$response.body#/id")])
        .link("UpdateDeviceGroup", "patch /v1/device-groups/{id}", &[("id", "$response.body#/id")])
        .link("ScheduleRollout", "post /v1/device-groups/{id}/firmware", &[("id", "$response.body#/id")])
        .link("ListRollouts", "get /v1/device-groups/{id}/rollouts", &[("id", "$response.body#/id")]),
        Endpoint::new(
            Method::GET,
            "/v1/device-groups",
            Access::member(Role::Viewer),
            "List device groups, oldest first",
            routing::get(list_groups),
        )
        .query(&["limit", "starting_after"])
        .returns::<DeviceGroupList>(),
        Endpoint::new(
            Method::GET,
            "/v1/device-groups/{id}",
            Access::member(Role::Viewer),
            "Get a device group with its device count and latest rollout",
            routing::get(get_group),
        )
        .returns::<DeviceGroup>(),
        Endpoint::new(
            Method::PATCH,
            "/v1/device-groups/{id}",
            Access::users(Role::ClientAdmin),
            "Rename a device group or replace its configuration",
            routing::patch(update_group),
        )
        .optional_body::<GroupChange>()
        .returns::<DeviceGroup>()
        .errors(&[(400, "invalid_config"), (409, "group_name_taken")]),
        Endpoint::new(
            Method::POST,
            "/v1/device-groups/{id}/firmware",
            Access::users(Role::ClientAdmin),
            "Schedule a firmware rollout to the group's devices, cancelling its in-progress one",
            routing::post(schedule_rollout),
        )
        .body::<NewRollout>()
        .returns::<Rollout>()
        .errors(&[(422, "group_empty")])
        .link("GetRollout", "get /v1/rollouts/{id}", &[("id", "$response.body#/id")]),
        Endpoint::new(
            Method::GET,
            "/v1/device-groups/{id}/rollouts",
            Access::member(Role::Viewer),
            "A device group's rollouts, newest first",
            routing::get(list_rollouts),
        )
        .query(&["limit", "starting_after"])
        .returns::<RolloutList>(),
        Endpoint::new(
            Method::GET,
            "/v1/rollouts/{id}",
            Access::member(Role::Viewer),
            "Get a firmware rollout with its per-device progress",
            routing::get(get_rollout),
        )
        .returns::<Rollout>(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_device_gone_offline_is_announced_once_per_last_heartbeat() {
        let dir = tempfile::tempdir().expect("a directory");
        let db = crate::db::Db::open(&dir.path().join("portal.db")).expect("a database");
        let announce = || db.call_blocking(announce_offline).expect("the lock").expect("announced");
        let old = now_secs() - ONLINE_SECS - 10;
        db.call_blocking(|conn| {
            conn.execute("INSERT INTO clients (id, name, created_at) VALUES (1, 'A', 0)", [])?;
            conn.execute(
                "INSERT INTO devices (id, client_id, serial, model, last_seen, created_at) VALUES (5, 1, 'S', 'M', ?1, 0)",
                [old],
            )?;
            conn.execute("INSERT INTO devices (id, client_id, serial, model, created_at) VALUES (6, 1, 'T', 'M', 0)", [])
        })
        .expect("the lock")
        .expect("rows");
        let first = announce();
        assert_eq!(first.len(), 1, "the device seen long ago; not the one never seen");
        assert_eq!((first[0].kind.as_str(), first[0].client_id), ("device.offline", 1));
        assert_eq!(first[0].data.object["id"], 5);
        assert!(announce().is_empty(), "announced once");
        db.call_blocking(|conn| conn.execute("UPDATE devices SET last_seen = ?1 WHERE id = 5", [old + 1]))
            .expect("the lock")
            .expect("seen again");
        assert_eq!(announce().len(), 1, "seen again, then gone again");
    }

    #[test]
    fn online_means_seen_within_the_window() {
        let now = 1_000_000;
        assert!(!is_online(None, now), "never seen is offline");
        assert!(is_online(Some(now), now));
        assert!(is_online(Some(now - ONLINE_SECS), now), "the boundary is inclusive");
        assert!(!is_online(Some(now - ONLINE_SECS - 1), now));
    }

    #[test]
    fn inputs_are_checked() {
        assert!(text_arg("  T-100 ", "serial", SERIAL_CHARS_MAX).is_ok_and(|s| s == "T-100"));
        assert!(text_arg("", "serial", SERIAL_CHARS_MAX).is_err());
        assert!(text_arg("a\nb", "serial", SERIAL_CHARS_MAX).is_err());
        assert!(text_arg(&"x".repeat(SERIAL_CHARS_MAX + 1), "serial", SERIAL_CHARS_MAX).is_err());
        assert!(object_arg(&json!({ "a": 1 }), "invalid_config", "config", CONFIG_BYTES_MAX).is_ok());
        assert!(object_arg(&json!([1]), "invalid_config", "config", CONFIG_BYTES_MAX).is_err());
        assert!(
            object_arg(&json!({ "a": "x".repeat(CONFIG_BYTES_MAX) }), "invalid_config", "config", CONFIG_BYTES_MAX)
                .is_err()
        );
    }
}
