//! Request extractors that answer malformed input with the API's error body.

use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// A JSON object body; a missing one is read as `{}`, a malformed one, an array or a
/// scalar where the object is expected, or text with control characters is a 400 with
/// the error body, never axum's plain-text rejection. (That the body is declared as
/// JSON is checked before, for every route: `api::guard`, 415.)
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match axum::body::Bytes::from_request(req, state).await {
            Ok(bytes) => json_object(&bytes).map(ApiJson),
            Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(ApiError {
                status: StatusCode::PAYLOAD_TOO_LARGE,
                kind: "invalid_request_error",
                code: "body_too_large",
                message: format!("the request body exceeds {} bytes", crate::app::BODY_BYTES_MAX),
                param: None,
                retry_after_secs: None,
            }),
            Err(rejection) => Err(ApiError::invalid("invalid_request", rejection.body_text())),
        }
    }
}

/// Parses `body` as a JSON object into `T` (an empty body as `{}`). serde reads a
/// struct from a JSON array too (`["x"]` as `{"name": "x"}`), so the value is checked
/// to be an object first; every string in it must be [`clean_text`]. A field that does
/// not fit names itself in `param`.
pub fn json_object<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let value: serde_json::Value = if body.is_empty() {
        serde_json::Value::Object(serde_json::Map::new())
    } else {
        serde_json::from_slice(body).map_err(|e| ApiError::invalid("invalid_json", e.to_string()))?
    };
    if !value.is_object() {
        return Err(ApiError::invalid("invalid_json", "the body must be a JSON object"));
    }
    check_strings(&value, &mut String::new())?;
    let value = integral_numbers(value);
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let error = ApiError::invalid("invalid_json", e.inner().to_string());
        if path == "." { error } else { error.with_param(path) }
    })
}

/// The body with its top-level numbers that have a zero fraction (`11478.0`) as the
/// integers they equal: JSON Schema counts them as integers, so a schema-valid id in
/// that form was refused as "expected i64" (found by Schemathesis). Nested values (a
/// group's configuration) are kept as sent.
fn integral_numbers(mut value: serde_json::Value) -> serde_json::Value {
    for field in value.as_object_mut().into_iter().flat_map(|o| o.values_mut()) {
        let whole = field.as_f64().filter(|f| !field.is_i64() && !field.is_u64() && f.fract() == 0.0);
        // Within i64's range (2^63 as f64 is the first value past it).
        if let Some(f) = whole.filter(|f| (-9.223_372_036_854_776e18..9.223_372_036_854_776e18).contains(f)) {
            #[expect(clippy::cast_possible_truncation, reason = "a whole number within i64's range")]
            let integer = f as i64;
            *field = serde_json::Value::from(integer);
        }
    }
    value
}

/// Whether `c` may appear in text the API stores: not a control character (C0, DEL,
/// C1) other than tab, line feed and carriage return, and not a bidirectional
/// embedding, override, isolate or mark, which reorder how the text around them is
/// shown (U+202E makes `txt.exe` of `exe.txt`). Refused rather than neutralised on
/// display, so no reader of the API (the web portal, a CSV in a spreadsheet, a log)
/// has to remember to.
pub fn clean_char(c: char) -> bool {
    !(c.is_control() && !matches!(c, '\t' | '\n' | '\r')
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{061c}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'))
}

/// Checks every string (and key) in `value` with [`clean_char`]; the error names the
/// field by its path (`diagnostics.note`).
fn check_strings(value: &serde_json::Value, path: &mut String) -> Result<(), ApiError> {
    let refuse = |path: &str| {
        let error =
            ApiError::invalid("invalid_text", "text must not contain control or bidirectional-override characters");
        if path.is_empty() { error } else { error.with_param(path.to_string()) }
    };
    match value {
        serde_json::Value::String(s) if !s.chars().all(clean_char) => Err(refuse(path)),
        serde_json::Value::Array(items) => items.iter().try_for_each(|item| check_strings(item, path)),
        serde_json::Value::Object(fields) => {
            for (key, item) in fields {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
                if !key.chars().all(clean_char) {
                    return Err(refuse(path));
                }
                check_strings(item, path)?;
                path.truncate(len);
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Whether a request's `Content-Type` says JSON: `application/json` or
/// `application/*+json`, with any parameters, in any case.
pub fn is_json(headers: &axum::http::HeaderMap) -> bool {
    let Some(value) = headers.get(axum::http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// A query string; a parameter that does not parse (a non-numeric `limit`) is a 400
/// `invalid_query` naming it in `param`. (Parameters a route does not declare were
/// refused before: `api::guard`.)
#[derive(Debug)]
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> axum::extract::FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, _state: &S) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or("");
        let deserializer = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(deserializer).map(ApiQuery).map_err(|e| {
            let path = e.path().to_string();
            let error = ApiError::invalid("invalid_query", format!("{path}: {}", e.inner()));
            if path == "." { error } else { error.with_param(path) }
        })
    }
}

/// A list's `starting_after` that names no object of that list (none such, or another
/// client's): 404 naming the parameter, on every list alike (a bogus batch cursor
/// answered an empty page where a bogus transaction cursor was 404).
pub fn unknown_cursor() -> ApiError {
    ApiError::not_found("starting_after names no object of this list").with_param("starting_after")
}

/// The lists whose cursor is a row id in SQLite.
#[derive(Debug, Clone, Copy)]
pub enum CursorList {
    Tickets,
    Devices,
    DeviceGroups,
    /// A device's heartbeats (its diagnostics history).
    Heartbeats,
    Rollouts,
    Notes,
    Users,
    Audit,
}

/// Whether the row `id` of `list` exists within `scope` (a client; `None`: a platform
/// admin's view of all), else [`unknown_cursor`].
pub fn cursor_exists(conn: &crate::db::Conn, list: CursorList, id: i64, scope: Option<i64>) -> Result<(), ApiError> {
    use crate::db::OptionalExtension;
    let mut stmt = match list {
        CursorList::Tickets => {
            conn.prepare_cached("SELECT 1 FROM tickets WHERE id = ?1 AND (client_id = ?2 OR ?2 IS NULL)")?
        }
        CursorList::Devices => {
            conn.prepare_cached("SELECT 1 FROM devices WHERE id = ?1 AND (client_id = ?2 OR ?2 IS NULL)")?
        }
        CursorList::DeviceGroups => {
            conn.prepare_cached("SELECT 1 FROM device_groups WHERE id = ?1 AND (client_id = ?2 OR ?2 IS NULL)")?
        }
        CursorList::Heartbeats => conn.prepare_cached(
            "SELECT 1 FROM device_heartbeats h JOIN devices d ON d.id = h.device_id
             WHERE h.id = ?1 AND (d.client_id = ?2 OR ?2 IS NULL)",
        )?,
        CursorList::Rollouts => {
            conn.prepare_cached("SELECT 1 FROM rollouts WHERE id = ?1 AND (client_id = ?2 OR ?2 IS NULL)")?
        }
        CursorList::Notes => {
            conn.prepare_cached("SELECT 1 FROM notes WHERE id = ?1 AND (client_id = ?2 OR ?2 IS NULL)")?
        }
        CursorList::Users => {
            conn.prepare_cached("SELECT 1 FROM users WHERE id = ?1 AND (client_id = ?2 OR ?2 IS NULL)")?
        }
        CursorList::Audit => {
            conn.prepare_cached("SELECT 1 FROM audit_log WHERE id = ?1 AND (client_id = ?2 OR ?2 IS NULL)")?
        }
    };
    let found = stmt.query_row(crate::params![id, scope], |_| Ok(())).optional()?;
    found.ok_or_else(unknown_cursor)
}

/// Largest page a list returns.
pub const PAGE_MAX: usize = 100;
/// Page size when the caller names none.
pub const PAGE_DEFAULT: usize = 25;

/// Checks a list's `limit` (default [`PAGE_DEFAULT`], 1 to [`PAGE_MAX`]).
pub fn page_limit(limit: Option<usize>) -> Result<usize, ApiError> {
    match limit.unwrap_or(PAGE_DEFAULT) {
        limit @ 1..=PAGE_MAX => Ok(limit),
        _ => Err(ApiError::invalid("invalid_limit", format!("limit is 1 to {PAGE_MAX}")).with_param("limit")),
    }
}

/// A page's rows (`rows[..limit]`) and `has_more`, from up to `limit + 1` rows.
pub fn page<T>(mut data: Vec<T>, limit: usize) -> (Vec<T>, bool) {
    let has_more = data.len() > limit;
    data.truncate(limit);
    (data, has_more)
}

/// The SQL `LIMIT` that fetches one row beyond a page, to tell whether there is more.
pub fn fetch_limit(limit: usize) -> i64 {
    i64::try_from(limit.saturating_add(1)).unwrap_or(i64::MAX)
}

/// Path parameters; a malformed one (say, a non-numeric id) is a 400 with the error body.
#[derive(Debug)]
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> axum::extract::FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(ApiPath(value)),
            Err(rejection) => Err(ApiError::invalid("invalid_path", rejection.body_text())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::json_object;

    #[derive(Debug, serde::Deserialize, PartialEq)]
    struct Body {
        id: i64,
        config: Option<serde_json::Value>,
    }

    #[test]
    fn whole_numbers_with_a_fraction_are_integers_at_the_top_level_only() {
        let body: Body = json_object(br#"{"id": 11478.0, "config": {"tip": 1.0}}"#).expect("an integer");
        assert_eq!(body, Body { id: 11478, config: Some(serde_json::json!({ "tip": 1.0 })) });
        assert!(json_object::<Body>(br#"{"id": 1.5}"#).is_err());
        assert!(json_object::<Body>(br#"{"id": 1e19}"#).is_err());
        let body: Body = json_object(br#"{"id": -3.0}"#).expect("negative");
        assert_eq!(body.id, -3);
    }
}
