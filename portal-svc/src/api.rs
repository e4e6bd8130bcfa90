//! The route table: every endpoint of the service is declared once, with its method,
//! path, who may call it and what it takes. The router, the access check that runs
//! before any handler, the per-route metrics and `GET /openapi.json` are all built from
//! this one list, so they cannot drift apart.

use std::borrow::Cow;
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;
use serde_json::json;
use utoipa::openapi::extensions::ExtensionsBuilder;
use utoipa::openapi::link::LinkBuilder;
use utoipa::openapi::path::{HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::schema::{ComponentsBuilder, ObjectBuilder, Type};
use utoipa::openapi::security::{
    ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
};
use utoipa::openapi::{
    ContentBuilder, InfoBuilder, OpenApi, OpenApiBuilder, PathsBuilder, Ref, RefOr, Required, ResponseBuilder, Schema,
};

use crate::app::AppState;
use crate::auth::{Actor, Principal, Role};
use crate::error::ApiError;

/// Who may call an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone, without credentials.
    Public,
    /// A signed-in user with at least `role`; or (when `keys`) a client application's
    /// API key, which acts as an operator. Platform admins, who belong to no client,
    /// only when `admins`: client-scoped routes act within the caller's own client.
    Member { role: Role, keys: bool, admins: bool },
    /// A client application's API key only (device heartbeats).
    KeyOnly,
}

impl Access {
    /// A client-scoped route: users of a client with at least `role`, and API keys
    /// when `role` is at most operator.
    pub const fn member(role: Role) -> Access {
        Access::Member { role, keys: matches!(role, Role::Viewer | Role::Operator), admins: false }
    }

    /// A client-scoped route for users with at least `role`; API keys never.
    pub const fn users(role: Role) -> Access {
        Access::Member { role, keys: false, admins: false }
    }

    /// A route platform admins use too (clients, users, applications, the audit log):
    /// users with at least `role`, admins included; API keys never.
    pub const fn platform(role: Role) -> Access {
        Access::Member { role, keys: false, admins: true }
    }

    /// Whether `principal` may call; `Err` is the 403 to answer.
    pub fn check(self, principal: &Principal) -> Result<(), ApiError> {
        let is_key = matches!(principal.actor, Actor::Application { .. });
        match self {
            Access::Public => Ok(()),
            Access::KeyOnly if is_key => Ok(()),
            Access::KeyOnly => Err(ApiError::forbidden("only a client application's API key can do this")),
            Access::Member { keys: false, .. } if is_key => {
                Err(ApiError::forbidden("API keys cannot do this; sign in as a user"))
            }
            Access::Member { admins: false, .. } if principal.role == Role::Admin => {
                Err(ApiError::forbidden("platform admins act through a client's user or API key"))
            }
            Access::Member { role, .. } => principal.require(role),
        }
    }

    /// Who may call, for the OpenAPI document (`x-access`).
    fn describe(self) -> serde_json::Value {
        match self {
            Access::Public => json!({ "public": true, "roles": [], "api_key": false }),
            Access::KeyOnly => json!({ "public": false, "roles": [], "api_key": true }),
            Access::Member { role, keys, admins } => json!({
                "public": false,
                "roles": Role::ALL
                    .iter()
                    .filter(|r| **r >= role && (admins || **r != Role::Admin))
                    .map(|r| r.as_str())
                    .collect::<Vec<_>>(),
                "api_key": keys,
            }),
        }
    }
}

/// How an endpoint's request body is described: a name and a schema.
type BodySchema = (Cow<'static, str>, RefOr<Schema>, Vec<(String, RefOr<Schema>)>);

/// One endpoint.
pub struct Endpoint {
    pub method: Method,
    pub path: &'static str,
    pub summary: &'static str,
    pub access: Access,
    pub tag: &'static str,
    route: MethodRouter<AppState>,
    body: Option<BodySchema>,
    /// Whether a request without a body is complete (a capture of everything).
    body_optional: bool,
    query: &'static [&'static str],
    /// Query parameters without which the route answers 400.
    required_query: &'static [&'static str],
    /// Takes `Idempotency-Key`.
    idempotent: bool,
    /// The success body's types (named components), by media type.
    returns: Vec<(&'static str, BodySchema)>,
    ok: u16,
    /// Error codes the route itself can answer, beyond those the table derives from
    /// its access, parameters and body (see [`Endpoint::error_codes`]).
    errors: Vec<(u16, &'static str)>,
    /// OpenAPI links from the success answer to other operations.
    links: Vec<Link>,
}

/// An OpenAPI link: from a success answer to the operation `operation` (its id, `get
/// /v1/transactions/{id}`), its parameters taken from the answer (`$response.body#/id`).
#[derive(Debug, Clone, Copy)]
pub struct Link {
    pub name: &'static str,
    pub operation: &'static str,
    pub parameters: &'static [(&'static str, &'static str)],
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint").field("method", &self.method).field("path", &self.path).finish_non_exhaustive()
    }
}

impl Endpoint {
    /// An endpoint: `route` is e.g. `post(handler)` for `method`.
    pub fn new(
        method: Method,
        path: &'static str,
        access: Access,
        summary: &'static str,
        route: MethodRouter<AppState>,
    ) -> Endpoint {
        let tag = path.trim_start_matches("/v1/").split('/').next().unwrap_or("service");
        let ok = if method == Method::POST { 201 } else { 200 };
        Endpoint {
            method,
            path,
            summary,
            access,
            tag,
            route,
            body: None,
            body_optional: false,
            query: &[],
            required_query: &[],
            idempotent: false,
            returns: Vec::new(),
            ok,
            errors: Vec::new(),
            links: Vec::new(),
        }
    }

    /// [`Endpoint::body`], which may also be left out (an empty body is `{}`).
    pub fn optional_body<T: utoipa::ToSchema>(mut self) -> Endpoint {
        self = self.body::<T>();
        self.body_optional = true;
        self
    }

    /// Declares the success body's type: the handler answers it serialized from this
    /// type, so the document names what the answer is.
    pub fn returns<T: utoipa::ToSchema>(self) -> Endpoint {
        self.returns_as::<T>("application/json")
    }

    /// Declares a success body of another media type (or one more: a report as CSV).
    pub fn returns_as<T: utoipa::ToSchema>(mut self, media_type: &'static str) -> Endpoint {
        let mut nested = Vec::new();
        T::schemas(&mut nested);
        self.returns.push((media_type, (T::name(), T::schema(), nested)));
        self
    }

    /// Declares error codes the handler itself answers (`status`, `code`), beyond
    /// those of its access, parameters and body.
    pub fn errors(mut self, errors: &[(u16, &'static str)]) -> Endpoint {
        self.errors.extend_from_slice(errors);
        self
    }

    /// Declares an OpenAPI link from the success answer to another operation.
    pub fn link(
        mut self,
        name: &'static str,
        operation: &'static str,
        parameters: &'static [(&'static str, &'static str)],
    ) -> Endpoint {
        self.links.push(Link { name, operation, parameters });
        self
    }

    /// The error codes the route can answer, by status: those of its access (401
    /// without or with bad credentials, 403 for a role, API key or restriction it does
    /// not admit), its path (404 for an id naming nothing of the caller's), its query
    /// and body (400, 413, 415), `Idempotency-Key` (409), and its own.
    pub fn error_codes(&self) -> std::collections::BTreeMap<u16, Vec<&'static str>> {
        let mut codes: std::collections::BTreeMap<u16, Vec<&'static str>> = std::collections::BTreeMap::new();
        let mut add = |status: u16, code: &'static str| {
            let list = codes.entry(status).or_default();
            if !list.contains(&code) {
                list.push(code);
            }
        };
        if self.access != Access::Public {
            for code in ["missing_credentials", "invalid_token", "invalid_api_key"] {
                add(401, code);
            }
            add(403, "forbidden");
            if !matches!(self.access, Access::KeyOnly) {
                for code in ["csrf_failed", "password_change_required", "mfa_enrollment_required"] {
                    if code != "csrf_failed" || self.method != Method::GET {
                        add(403, code);
                    }
                }
            }
        }
        let has_path = path_params(self.path).next().is_some();
        if has_path {
            add(404, "not_found");
            add(400, "invalid_path");
        }
        if self.path.starts_with("/v1/") {
            add(400, "unknown_parameter");
        }
        if !self.query.is_empty() {
            add(400, "invalid_query");
            if self.query.contains(&"limit") {
                add(400, "invalid_limit");
            }
            if self.query.contains(&"starting_after") {
                add(404, "not_found");
            }
        }
        if self.body.is_some() {
            for code in ["invalid_json", "invalid_text"] {
                add(400, code);
            }
            add(415, "unsupported_media_type");
        }
        if self.method == Method::GET {
            // The freshness headers of a read (`reads.rs`): malformed, or (cluster
            // mode) not to be made that fresh.
            add(400, "invalid_header");
            add(503, "no_leader");
            add(503, "node_behind");
        }
        if self.method != Method::GET {
            add(413, "body_too_large");
            add(408, "body_timeout");
            // Cluster mode: no leader of the replicated ledger can be reached.
            add(503, "no_leader");
        }
        if self.idempotent {
            add(400, "invalid_idempotency_key");
            add(409, "idempotency_conflict");
        }
        for (status, code) in &self.errors {
            add(*status, code);
        }
        codes
    }

    /// Declares that the route takes `Idempotency-Key`.
    pub fn idempotent(mut self) -> Endpoint {
        self.idempotent = true;
        self
    }

    /// Declares which of its query parameters are required.
    pub fn required_query(mut self, names: &'static [&'static str]) -> Endpoint {
        self.required_query = names;
        self
    }

    /// Declares the JSON request body's type (its schema goes into the OpenAPI document).
    pub fn body<T: utoipa::ToSchema>(mut self) -> Endpoint {
        let mut nested = Vec::new();
        T::schemas(&mut nested);
        self.body = Some((T::name(), T::schema(), nested));
        self
    }

    /// Declares the success status when it is not the default (201 for POST, else 200).
    pub fn answers(mut self, status: u16) -> Endpoint {
        self.ok = status;
        self
    }

    /// Declares the query parameters it reads.
    pub fn query(mut self, names: &'static [&'static str]) -> Endpoint {
        self.query = names;
        self
    }
}

/// Counters and latencies per endpoint, exposed by `GET /metrics`.
#[derive(Debug)]
pub struct Metrics {
    pub registry: prometheus_client::registry::Registry,
    requests: prometheus_client::metrics::family::Family<RequestLabels, prometheus_client::metrics::counter::Counter>,
    latency: prometheus_client::metrics::family::Family<RouteLabels, prometheus_client::metrics::histogram::Histogram>,
    /// Webhook delivery attempts by outcome (`success`, `http_error`, `timeout`,
    /// `network_error`, `refused`).
    webhook_attempts:
        prometheus_client::metrics::family::Family<OutcomeLabels, prometheus_client::metrics::counter::Counter>,
    /// How long each webhook delivery attempt took.
    webhook_latency: prometheus_client::metrics::histogram::Histogram,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

impl Metrics {
    /// Counts a webhook delivery attempt that ended with `outcome` after `seconds`.
    pub fn webhook_attempt(&self, outcome: &'static str, seconds: f64) {
        self.webhook_attempts.get_or_create(&OutcomeLabels { outcome }).inc();
        self.webhook_latency.observe(seconds);
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct RouteLabels {
    method: String,
    route: String,
}

impl Default for Metrics {
    fn default() -> Metrics {
        let mut registry = prometheus_client::registry::Registry::with_prefix("portal");
        let requests = prometheus_client::metrics::family::Family::default();
        let latency = prometheus_client::metrics::family::Family::<RouteLabels, _>::new_with_constructor(|| {
            // 50 us to ~3.3 s.
            prometheus_client::metrics::histogram::Histogram::new(
                prometheus_client::metrics::histogram::exponential_buckets(0.000_05, 2.0, 17),
            )
        });
        registry.register("http_requests", "HTTP requests answered, by route and status", requests.clone());
        registry.register("http_request_duration_seconds", "Time to answer, by route", latency.clone());
        let webhook_attempts = prometheus_client::metrics::family::Family::default();
        registry.register(
            "webhook_delivery_attempts",
            "Webhook delivery attempts, by outcome",
            webhook_attempts.clone(),
        );
        // 1 ms to ~16 s (past the 10 s timeout).
        let webhook_latency = prometheus_client::metrics::histogram::Histogram::new(
            prometheus_client::metrics::histogram::exponential_buckets(0.001, 2.0, 15),
        );
        registry.register(
            "webhook_delivery_duration_seconds",
            "How long each webhook delivery attempt took",
            webhook_latency.clone(),
        );
        Metrics { registry, requests, latency, webhook_attempts, webhook_latency }
    }
}

/// The method as a metrics label: one of the standard methods, or `other`. The method
/// is the client's to choose (any token is valid HTTP), so using it verbatim let anyone,
/// without credentials, add label sets without end (found by `tests/security.rs`,
/// `metrics_labels_are_bounded_whatever_the_method`).
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Records the request's outcome under its route template (bounded label values).
async fn observe(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = method_label(request.method()).to_string();
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let response = next.run(request).await;
    let status = response.status().as_u16();
    state.metrics.requests.get_or_create(&RequestLabels { method: method.clone(), route: route.clone(), status }).inc();
    state.metrics.latency.get_or_create(&RouteLabels { method, route }).observe(started.elapsed().as_secs_f64());
    response
}

/// Authenticates and checks `access` before the handler (and its body parsing) runs,
/// so a caller without the right gets 401/403 whatever it sent. The principal is left
/// in the request's extensions for the handler.
///
/// Then, for every route, what the route table knows about the request's form: a
/// body must be declared JSON (415 otherwise: `text/plain` no longer creates a
/// payment), and a query parameter the route does not read is refused (400
/// `unknown_parameter`) rather than silently ignored (a misspelt filter would
/// otherwise answer everything).
async fn guard(
    access: Access,
    route: &'static str,
    query: &'static [&'static str],
    state: AppState,
    request: Request,
    next: Next,
) -> Response {
    if access == Access::Public {
        return match checked_form(request, query).await {
            Ok(request) => next.run(request).await,
            Err(e) => e.into_response(),
        };
    }
    let (mut parts, body) = request.into_parts();
    let (principal, session) = match crate::auth::authenticate_session(&parts, &state).await {
        Ok(p) => p,
        Err(e) => return refuse(e, body).await,
    };
    if let Err(e) = access.check(&principal) {
        return refuse(e, body).await;
    }
    // A temporary password to change, or MFA the client requires: nothing else first.
    if let Some(restriction) = session.as_ref().and_then(|s| s.restriction)
        && let Err(e) = restriction.check(&parts.method, route)
    {
        return refuse(e, body).await;
    }
    parts.extensions.insert(principal);
    if let Some(session) = session {
        parts.extensions.insert(session);
    }
    match checked_form(Request::from_parts(parts, body), query).await {
        Ok(request) => next.run(request).await,
        Err(e) => e.into_response(),
    }
}

/// The request with its body read (up to the size limit), once its form is checked:
/// a body with any bytes must be declared JSON, and the query's parameter names must
/// be the route's.
async fn checked_form(request: Request, query: &[&str]) -> Result<Request, ApiError> {
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, crate::app::BODY_BYTES_MAX).await.map_err(|_| ApiError {
        status: axum::http::StatusCode::PAYLOAD_TOO_LARGE,
        kind: "invalid_request_error",
        code: "body_too_large",
        message: format!("the request body exceeds {} bytes", crate::app::BODY_BYTES_MAX),
        param: None,
        retry_after_secs: None,
    })?;
    if !bytes.is_empty() && !crate::extract::is_json(&parts.headers) {
        return Err(ApiError::unsupported_media_type());
    }
    let request = Request::from_parts(parts, axum::body::Body::from(bytes));
    check_query(&request, query)?;
    Ok(request)
}

/// The query's parameter names against the route's.
fn check_query(request: &Request, query: &[&str]) -> Result<(), ApiError> {
    // The API's routes; not the web portal's pages and files, whose links a browser
    // may decorate.
    if !request.uri().path().starts_with("/v1/") {
        return Ok(());
    }
    let pairs = form_urlencoded::parse(request.uri().query().unwrap_or("").as_bytes());
    for (name, value) in pairs {
        // Row ids are 1 to i64::MAX, as the document says (a device id past it, or 0,
        // was taken as a filter that matches nothing: found by Schemathesis).
        let row_id = matches!(name.as_ref(), "device_id" | "group_id" | "client_id" | "actor_id")
            || (name == "starting_after" && !matches!(request.uri().path(), "/v1/transactions" | "/v1/events"));
        if row_id && query.contains(&name.as_ref()) && !value.parse::<i64>().is_ok_and(|id| id >= 1) {
            return Err(ApiError::invalid(
                "invalid_query",
                format!("{name} is an id: an integer from 1 to {}", i64::MAX),
            )
            .with_param(name.into_owned()));
        }
        if !query.contains(&name.as_ref()) {
            let known = if query.is_empty() { "none".to_string() } else { query.join(", ") };
            return Err(ApiError::invalid(
                "unknown_parameter",
                format!("unknown query parameter {name:?}; this route reads: {known}"),
            )
            .with_param(name.into_owned()));
        }
    }
    Ok(())
}

/// Answers `error` after reading the request's body (up to the size limit), so the
/// connection stays usable for the client's next request on it.
async fn refuse(error: ApiError, body: axum::body::Body) -> Response {
    let _ = axum::body::to_bytes(body, crate::app::BODY_BYTES_MAX).await;
    error.into_response()
}

/// The router for `endpoints`, each behind its access check.
pub fn router(endpoints: Vec<Endpoint>, state: &AppState) -> axum::Router<AppState> {
    let mut router = axum::Router::new();
    for endpoint in endpoints {
        let (access, route, query) = (endpoint.access, endpoint.path, endpoint.query);
        let layer = from_fn_with_state(state.clone(), move |State(state): State<AppState>, request, next| {
            guard(access, route, query, state, request, next)
        });
        router = router.route(endpoint.path, endpoint.route.route_layer(layer));
    }
    router.route_layer(from_fn_with_state(state.clone(), observe))
}

fn http_method(method: &Method) -> HttpMethod {
    match *method {
        Method::POST => HttpMethod::Post,
        Method::PUT => HttpMethod::Put,
        Method::PATCH => HttpMethod::Patch,
        Method::DELETE => HttpMethod::Delete,
        _ => HttpMethod::Get,
    }
}

/// The OpenAPI 3 document of `endpoints`.
pub fn openapi(endpoints: &[Endpoint]) -> OpenApi {
    let error_schema = ObjectBuilder::new()
        .property(
            "error",
            ObjectBuilder::new()
                .property("type", ObjectBuilder::new().schema_type(Type::String))
                .property("code", ObjectBuilder::new().schema_type(Type::String))
                .property("message", ObjectBuilder::new().schema_type(Type::String))
                .property("param", ObjectBuilder::new().schema_type(Type::String))
                .required("type")
                .required("code")
                .required("message"),
        )
        .required("error")
        .build();
    let mut components = ComponentsBuilder::new()
        .schema("Error", error_schema)
        .security_scheme("bearer", SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()))
        .security_scheme(
            "session_cookie",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                crate::auth::SESSION_COOKIE,
                "The browser's session (POST /v1/auth/session); a request that changes something also sends \
                 X-CSRF-Token",
            ))),
        );
    let mut paths = PathsBuilder::new().build();
    for e in endpoints {
        let mut op = OperationBuilder::new()
            .summary(Some(e.summary))
            .tag(e.tag)
            .operation_id(Some(format!("{} {}", e.method.as_str().to_lowercase(), e.path)))
            .extensions(Some(ExtensionsBuilder::new().add("x-access", e.access.describe()).build()));
        if e.access != Access::Public {
            op = op.security(SecurityRequirement::new("bearer", Vec::<String>::new()));
            if !matches!(e.access, Access::KeyOnly) {
                op = op.security(SecurityRequirement::new("session_cookie", Vec::<String>::new()));
            }
        }
        for name in path_params(e.path) {
            op = op.parameter(
                ParameterBuilder::new()
                    .name(name)
                    .parameter_in(ParameterIn::Path)
                    .required(Required::True)
                    .schema(Some(path_param_schema(e.path, name))),
            );
        }
        for name in e.query {
            let required = if e.required_query.contains(name) { Required::True } else { Required::False };
            op = op.parameter(
                ParameterBuilder::new()
                    .name(*name)
                    .parameter_in(ParameterIn::Query)
                    .required(required)
                    .schema(Some(query_param_schema(e.path, name))),
            );
        }
        if e.idempotent {
            op = op.parameter(
                ParameterBuilder::new()
                    .name("Idempotency-Key")
                    .parameter_in(ParameterIn::Header)
                    .required(Required::False)
                    .description(Some(
                        "Makes the request idempotent for the client: the same key with the same body replays the \
                         first answer (header Idempotent-Replayed: true), with another body is 409 \
                         idempotency_conflict",
                    ))
                    .schema(Some(
                        ObjectBuilder::new()
                            .schema_type(Type::String)
                            .min_length(Some(1))
                            .max_length(Some(crate::idempotency::KEY_CHARS_MAX))
                            .pattern(Some("^[\\x20-\\x7e]+$")),
                    )),
            );
        }
        if e.method != Method::GET && !matches!(e.access, Access::Public | Access::KeyOnly) {
            op = op.parameter(
                ParameterBuilder::new()
                    .name("X-CSRF-Token")
                    .parameter_in(ParameterIn::Header)
                    .required(Required::False)
                    .description(Some(
                        "Required with the session cookie (the browser's session); not with Authorization: Bearer",
                    ))
                    .schema(Some(ObjectBuilder::new().schema_type(Type::String))),
            );
        }
        if let Some((name, schema, nested)) = &e.body {
            components = components.schema(name.to_string(), schema.clone());
            for (n, s) in nested {
                components = components.schema(n.clone(), s.clone());
            }
            op = op.request_body(Some(
                RequestBodyBuilder::new()
                    .content(
                        "application/json",
                        ContentBuilder::new().schema(Some(Ref::from_schema_name(name.clone()))).build(),
                    )
                    .required(Some(if e.body_optional { Required::False } else { Required::True }))
                    .build(),
            ));
        }
        let error = |description: String| {
            ResponseBuilder::new()
                .description(description)
                .content("application/json", ContentBuilder::new().schema(Some(Ref::from_schema_name("Error"))).build())
                .build()
        };
        let mut success = ResponseBuilder::new().description(e.summary);
        for (media_type, (name, schema, nested)) in &e.returns {
            components = components.schema(name.to_string(), schema.clone());
            for (n, s) in nested {
                components = components.schema(n.clone(), s.clone());
            }
            success = success
                .content(*media_type, ContentBuilder::new().schema(Some(Ref::from_schema_name(name.clone()))).build());
        }
        for link in &e.links {
            let mut builder = LinkBuilder::new().operation_id(link.operation);
            for (name, expression) in link.parameters {
                builder = builder.parameter(*name, *expression);
            }
            success = success.link(link.name, builder.build());
        }
        op = op.response(e.ok.to_string(), success.build());
        for (status, codes) in e.error_codes() {
            op = op.response(
                status.to_string(),
                error(format!("{}: error code {}", status_text(status), codes.join(", "))),
            );
        }
        op = op.response("default", error("another error (500 internal_error, 503 ledger_unavailable)".to_string()));
        paths.add_path_operation(e.path, vec![http_method(&e.method)], op.build());
    }
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("portal-svc")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some("The payment portal's HTTP API over the ledger engine. Money is a decimal string in major units; every error is {\"error\": {type, code, message, param?}}. x-access on each operation says which roles and whether API keys may call it. In cluster mode every answer carries Ledger-Applied-Seq (the seq the answering node had applied), and a GET may ask for a fresher read than the node's own with a header (400 invalid_header if malformed; a single node is always as fresh as asked): Ledger-Min-Seq: S (read-your-writes: answered once the node applied seq S, else 503 node_behind after 5 s), Ledger-Read-Consistency: linearizable (reflects every write acknowledged before the request; 503 no_leader if no leader confirms its commit index), Ledger-Max-Staleness-Ms: M (reflects every write acknowledged before a moment at most M ms earlier, M <= 86400000).")),
        )
        .paths(paths)
        .components(Some(components.build()))
        .build()
}

/// The OpenAPI document of `endpoints` as JSON, as `GET /openapi.json` serves it.
///
/// utoipa 5.5 serializes a Link object's fields in snake case (`operation_id`), which
/// no OpenAPI reader knows, so the links would be ignored: they are renamed here to the
/// specification's `operationId`, `operationRef` and `requestBody`.
pub fn openapi_json(endpoints: &[Endpoint]) -> serde_json::Value {
    let mut document = serde_json::to_value(openapi(endpoints)).unwrap_or_default();
    let operations = document["paths"].as_object_mut().into_iter().flat_map(|paths| paths.values_mut());
    for operation in operations.flat_map(|item| item.as_object_mut().into_iter().flat_map(|ops| ops.values_mut())) {
        let responses = operation["responses"].as_object_mut().into_iter().flat_map(|r| r.values_mut());
        for links in responses.filter_map(|r| r.get_mut("links")).filter_map(serde_json::Value::as_object_mut) {
            for link in links.values_mut().filter_map(serde_json::Value::as_object_mut) {
                for (from, to) in [
                    ("operation_id", "operationId"),
                    ("operation_ref", "operationRef"),
                    ("request_body", "requestBody"),
                ] {
                    if let Some(value) = link.remove(from) {
                        link.insert(to.to_string(), value);
                    }
                }
            }
        }
    }
    document
}

/// A path parameter's schema: a transaction's id (`tx_` and 32 hex digits), a web
/// file's name, or else a row id (a positive integer).
fn path_param_schema(path: &str, name: &str) -> ObjectBuilder {
    match name {
        "id" if path.starts_with("/v1/transactions/") => tx_id_schema(),
        "name" => ObjectBuilder::new().schema_type(Type::String),
        "session_id" => ObjectBuilder::new().schema_type(Type::String).pattern(Some("^[0-9a-f]{16}$")),
        _ => ObjectBuilder::new().schema_type(Type::Integer).format(Some(int64())).minimum(Some(1)),
    }
}

fn int64() -> utoipa::openapi::SchemaFormat {
    utoipa::openapi::SchemaFormat::KnownFormat(utoipa::openapi::KnownFormat::Int64)
}

fn tx_id_schema() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::String).pattern(Some("^tx_[0-9a-f]{32}$"))
}

fn one_of(values: &[&str]) -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::String).enum_values(Some(values.iter().copied()))
}

/// A query parameter's schema, from its name and route: what the handler parses it as.
fn query_param_schema(path: &str, name: &str) -> ObjectBuilder {
    let moment = || {
        ObjectBuilder::new().schema_type(Type::String).description(Some(
            "A date (YYYY-MM-DD; as `to`, the whole day is included), an RFC 3339 time or Unix seconds",
        ))
    };
    match (path, name) {
        (_, "limit") => ObjectBuilder::new()
            .schema_type(Type::Integer)
            .minimum(Some(1))
            .maximum(Some(crate::extract::PAGE_MAX as f64))
            .default(Some(json!(crate::extract::PAGE_DEFAULT))),
        ("/v1/transactions", "starting_after") => tx_id_schema(),
        ("/v1/events", "starting_after") => {
            ObjectBuilder::new().schema_type(Type::String).pattern(Some("^evt_[0-9a-f]{24}$"))
        }
        ("/v1/events", "type") => one_of(&crate::events::TYPES),
        ("/v1/audit", "from" | "to") => {
            ObjectBuilder::new().schema_type(Type::Integer).format(Some(int64())).description(Some("Unix seconds"))
        }
        (_, "from" | "to") => moment(),
        (_, "starting_after" | "device_id" | "group_id" | "client_id" | "actor_id") => {
            ObjectBuilder::new().schema_type(Type::Integer).format(Some(int64())).minimum(Some(1))
        }
        ("/v1/transactions", "status") => {
            one_of(&["authorized", "captured", "partially_refunded", "refunded", "voided", "applied"])
        }
        ("/v1/batches", "status") => one_of(&["open", "closed"]),
        ("/v1/devices", "status") => one_of(&["online", "offline"]),
        ("/v1/webhook-endpoints/{id}/deliveries", "status") => one_of(&["pending", "succeeded", "failed"]),
        ("/v1/tickets", "status") => one_of(&crate::routes::tickets::STATUSES),
        (_, "kind") => one_of(&["payment", "capture", "void", "refund", "adjustment"]),
        (_, "order") => one_of(&["newest", "oldest"]),
        (_, "format") => one_of(&["json", "csv"]),
        (_, "outcome") => one_of(&["ok", "refused", "failed"]),
        (_, "actor_type") => one_of(&["user", "api_key", "system"]),
        ("/v1/notes", "resource_type") => one_of(&["transaction", "device", "ticket"]),
        (_, "group_by") => one_of(&["day", "kind", "status", "device"]),
        (_, "rows") => ObjectBuilder::new().schema_type(Type::Boolean),
        (_, "currency") => crate::schema::currency().into(),
        (_, "amount_min" | "amount_max") => ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some("^[0-9]+(\\.[0-9]+)?$"))
            .description(Some("A decimal amount in major units of `currency`")),
        _ => ObjectBuilder::new().schema_type(Type::String),
    }
}

/// A status's reason phrase, for the error responses' descriptions.
fn status_text(status: u16) -> &'static str {
    axum::http::StatusCode::from_u16(status).ok().and_then(|s| s.canonical_reason()).unwrap_or("error")
}

fn path_params(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
}
