//! The request fields' schemas where a Rust type says less than the handler checks:
//! the text rule every body is held to ([`crate::extract::clean_char`]), trimmed text
//! that must not be empty, emails, passwords, ISO 4217 codes, amounts, time zones and
//! times. Named by `#[schema(schema_with = ...)]` on the request types, so that what
//! the document allows is what the service accepts (Schemathesis checks both ways).

use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Type};
use utoipa::openapi::{Object, Schema};

/// What [`crate::extract::clean_char`] refuses in any text: control characters but tab,
/// line feed and carriage return; bidirectional marks, embeddings, overrides, isolates.
const TEXT_EXCLUDED: &str = r"\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069";
/// The same and tab, line feed and carriage return: one line (serials, versions, names
/// of devices and groups).
const LINE_EXCLUDED: &str = r"\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069";

/// Any text the body rule admits.
pub fn text_pattern() -> String {
    format!("^[^{TEXT_EXCLUDED}]*$")
}

/// Text with something besides white space (the handler trims it and refuses it empty).
pub fn name_pattern() -> String {
    format!("^[^{TEXT_EXCLUDED}]*[^\\s{LINE_EXCLUDED}][^{TEXT_EXCLUDED}]*$")
}

/// One line with something besides white space, without any control character.
pub fn line_pattern() -> String {
    format!("^[^{LINE_EXCLUDED}]*[^\\s{LINE_EXCLUDED}][^{LINE_EXCLUDED}]*$")
}

fn string(pattern: String, max: usize) -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::String).pattern(Some(pattern)).max_length(Some(max))
}

/// Optional free text of at most 1000 characters (a transaction's description).
pub fn description() -> Object {
    string(text_pattern(), 1000)
        .schema_type(utoipa::openapi::schema::SchemaType::from_iter([Type::String, Type::Null]))
        .build()
}

/// A client's or an application's name.
pub fn name_200() -> Object {
    string(name_pattern(), 200).min_length(Some(1)).build()
}

/// A ticket's body.
pub fn name_20000() -> Object {
    string(name_pattern(), 20_000).min_length(Some(1)).build()
}

/// A note's body.
pub fn name_10000() -> Object {
    string(name_pattern(), 10_000).min_length(Some(1)).build()
}

/// A device's serial, a firmware version.
pub fn line_64() -> Object {
    string(line_pattern(), 64).min_length(Some(1)).build()
}

/// A device's model, a group's name.
pub fn line_100() -> Object {
    string(line_pattern(), 100).min_length(Some(1)).build()
}

/// [`line_100`], or absent / `null` for no change.
pub fn optional_line_100() -> Object {
    string(line_pattern(), 100)
        .min_length(Some(1))
        .schema_type(utoipa::openapi::schema::SchemaType::from_iter([Type::String, Type::Null]))
        .build()
}

/// A JSON object (a group's configuration, a heartbeat's diagnostics); its strings and
/// keys follow the text rule too.
pub fn json_object() -> Object {
    ObjectBuilder::new().schema_type(Type::Object).build()
}

/// Any text the body rule admits (a one-time code: a wrong one is 401).
pub fn text() -> Object {
    string(text_pattern(), 1000).build()
}

/// Optional text (sign-in's one-time code: a wrong one is 401).
pub fn optional_text() -> Object {
    string(text_pattern(), 1000)
        .schema_type(utoipa::openapi::schema::SchemaType::from_iter([Type::String, Type::Null]))
        .build()
}

/// Non-empty text (sign-in's email and password: a wrong one is 401).
pub fn required_text() -> Object {
    string(text_pattern(), 1000).min_length(Some(1)).build()
}

/// A new password: [`crate::password::PASSWORD_CHARS_MIN`] to
/// [`crate::password::PASSWORD_CHARS_MAX`] characters.
pub fn password() -> Object {
    string(text_pattern(), crate::password::PASSWORD_CHARS_MAX)
        .min_length(Some(crate::password::PASSWORD_CHARS_MIN))
        .build()
}

/// An email address as [`crate::routes::clients::is_email`] accepts it.
pub fn email() -> Object {
    let atom = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+";
    let label = "[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?";
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(format!("^{atom}(\\.{atom})*@({label}(\\.{label})+|localhost)$")))
        .max_length(Some(254))
        .build()
}

/// An ISO 4217 code the ledger knows.
pub fn currency() -> Object {
    let mut codes: Vec<String> = ledger_core::Currency::all().map(|c| c.code().to_string()).collect();
    codes.sort();
    ObjectBuilder::new().schema_type(Type::String).enum_values(Some(codes)).build()
}

/// A client's accepted currencies; `null`: all.
pub fn currencies() -> Schema {
    Schema::Array(
        ArrayBuilder::new()
            .schema_type(utoipa::openapi::schema::SchemaType::from_iter([Type::Array, Type::Null]))
            .items(currency())
            .min_items(Some(1))
            .build(),
    )
}

/// An IANA time zone name (`Europe/Paris`, `UTC`; one the bundled database does not
/// know is 400 `invalid_time_zone`, so the pattern lists them) or a UTC offset: `Z`, `+HH:MM` or `-HH:MM`, at most
/// 14 hours; `null` or absent: unchanged.
pub fn time_zone() -> Object {
    ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::SchemaType::from_iter([Type::String, Type::Null]))
        .pattern(Some(time_zone_pattern()))
        .build()
}

/// Exactly what [`crate::settings::Zone::parse`] accepts: an offset, `UTC` in any case,
/// or one of the bundled database's names.
pub fn time_zone_pattern() -> String {
    let mut names: Vec<String> = jiff::tz::db().available().map(|name| name.as_str().replace('+', r"\+")).collect();
    names.sort();
    format!("^(Z|[+-](0[0-9]|1[0-3]):[0-5][0-9]|[+-]14:00|[Uu][Tt][Cc]|{})$", names.join("|"))
}

/// `HH:MM` (24-hour); `null`: never.
pub fn cutover() -> Object {
    ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::SchemaType::from_iter([Type::String, Type::Null]))
        .pattern(Some("^([01][0-9]|2[0-3]):[0-5][0-9]$"))
        .build()
}

/// A decimal amount in major units; how many fractional digits it may have depends on
/// the currency (2 for USD, 0 for JPY), which a schema cannot say.
pub fn amount() -> Object {
    ObjectBuilder::new().schema_type(Type::String).pattern(Some("^-?[0-9]+(\\.[0-9]+)?$")).build()
}

fn one_of(values: &[&str]) -> Object {
    ObjectBuilder::new().schema_type(Type::String).enum_values(Some(values.iter().copied())).build()
}

/// The roles a client's user can be given (a platform admin's does not change).
pub fn client_role() -> Object {
    one_of(&["client_admin", "operator", "viewer"])
}

/// What `POST /v1/transactions` creates.
pub fn new_transaction_kind() -> Object {
    one_of(&["payment", "adjustment"])
}

/// What a note can be attached to.
pub fn note_resource_type() -> Object {
    one_of(&["transaction", "device", "ticket"])
}

/// A webhook endpoint's url: http or https (the SSRF guard checks the rest).
pub fn webhook_url() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some("^https?://[^\\s]+$"))
        .max_length(Some(crate::webhooks::address::URL_CHARS_MAX))
        .build()
}

/// The event types an endpoint subscribes to: at least one, each known.
pub fn event_types() -> Schema {
    Schema::Array(
        ArrayBuilder::new()
            .items(ObjectBuilder::new().schema_type(Type::String).enum_values(Some(crate::events::TYPES)))
            .min_items(Some(1))
            .max_items(Some(crate::events::TYPES.len()))
            .unique_items(true)
            .build(),
    )
}
