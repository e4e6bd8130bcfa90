//! Over real HTTP: the browser's side of the service. The cookie session (HttpOnly,
//! SameSite=Strict, never in a body), the CSRF token every cookie request that changes
//! something must carry, signing out, bearer clients unaffected; and the web portal's
//! files, served with their types, caching and a strict Content-Security-Policy.
#![allow(clippy::unwrap_used)]

mod common;

use common::{ADMIN_EMAIL, ADMIN_PASSWORD, Service, error_code};
use serde_json::{Value, json};

/// A reply: status, headers (lower-case names, every value) and body (JSON when it parses).
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    text: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or(Value::Null)
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    fn all(&self, name: &str) -> Vec<&str> {
        self.headers.iter().filter(|(n, _)| n == name).map(|(_, v)| v.as_str()).collect()
    }
}

/// Sends a request with exactly `headers` (no cookie jar: the test is the browser).
fn send(svc: &Service, method: &str, path: &str, headers: &[(&str, &str)], body: Option<&Value>) -> Reply {
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let url = format!("{}{path}", svc.base);
    let mut request = ureq::http::Request::builder().method(method).uri(&url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = match body {
        Some(body) => {
            let request = request.header("Content-Type", "application/json").body(body.to_string()).unwrap();
            agent.run(request)
        }
        None => agent.run(request.body(()).unwrap()),
    };
    let mut response = response.unwrap();
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(n, v)| (n.as_str().to_ascii_lowercase(), v.to_str().unwrap_or_default().to_string()))
        .collect();
    let text = response.body_mut().read_to_string().unwrap_or_default();
    Reply { status, headers, text }
}

/// Signs in as a browser does; returns the `Cookie` header value and the CSRF token.
fn browser_sign_in(svc: &Service, email: &str, password: &str) -> (String, String, Reply) {
    let reply = send(svc, "POST", "/v1/auth/session", &[], Some(&json!({ "email": email, "password": password })));
    assert_eq!(reply.status, 200, "{}", reply.text);
    let set_cookie = reply.header("set-cookie").expect("a session cookie").to_string();
    let cookie = set_cookie.split(';').next().unwrap().trim().to_string();
    let csrf = reply.json()["csrf_token"].as_str().unwrap().to_string();
    (cookie, csrf, reply)
}

#[test]
fn the_cookie_session_signs_in_and_the_csrf_token_guards_every_change() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::start(dir.path(), true);

    let (cookie, csrf, reply) = browser_sign_in(&svc, ADMIN_EMAIL, ADMIN_PASSWORD);
    // The cookie: the session token, out of reach of scripts and other sites.
    let set_cookie = reply.header("set-cookie").unwrap();
    let attributes: Vec<&str> = set_cookie.split(';').map(str::trim).collect();
    let token = cookie.strip_prefix("portal_session=").expect("named portal_session");
    assert!(token.len() == 64 && token.bytes().all(|b| b.is_ascii_hexdigit()), "{set_cookie}");
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(attributes.contains(&attribute), "{set_cookie} lacks {attribute}");
    }
    let max_age = format!("Max-Age={}", portal_svc::auth::SESSION_SECS);
    assert!(attributes.contains(&max_age.as_str()), "{set_cookie}: the cookie ends with the session");
    // The body: the CSRF token and the end, never the session token.
    let body = reply.json();
    let mut keys: Vec<&str> = body.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["csrf_token", "expires_at", "restriction"], "{body}");
    assert!(!reply.text.contains(token), "the session token is in the body");
    assert_ne!(csrf, token);
    assert_eq!(reply.header("cache-control"), Some("no-store"));

    // Reading needs only the cookie.
    let me = send(&svc, "GET", "/v1/users/me", &[("Cookie", &cookie)], None);
    assert_eq!((me.status, me.json()["email"].as_str()), (200, Some(ADMIN_EMAIL)), "{}", me.text);
    assert_eq!(me.json()["mfa_enabled"], json!(false));
    let session = send(&svc, "GET", "/v1/auth/session", &[("Cookie", &cookie)], None);
    assert_eq!(session.status, 200, "{}", session.text);
    assert_eq!(session.json()["csrf_token"].as_str(), Some(csrf.as_str()), "a reloaded page gets the same token");
    assert_eq!(session.json()["user"]["role"].as_str(), Some("admin"));
    assert_eq!(session.json()["via_cookie"], json!(true));

    // A change with the cookie alone, or with a wrong token, is refused and does nothing.
    let new_client = json!({ "name": "Corner Cafe" });
    let other_session = svc.token(ADMIN_EMAIL, ADMIN_PASSWORD);
    let other_csrf = portal_svc::auth::csrf_token(&other_session);
    for headers in [
        vec![("Cookie", cookie.as_str())],
        vec![("Cookie", cookie.as_str()), ("X-CSRF-Token", "")],
        vec![("Cookie", cookie.as_str()), ("X-CSRF-Token", other_csrf.as_str())],
        vec![("Cookie", cookie.as_str()), ("X-CSRF-Token", &csrf[..63])],
    ] {
        let refused = send(&svc, "POST", "/v1/clients", &headers, Some(&new_client));
        assert_eq!((refused.status, error_code(&refused.json()).as_str()), (403, "csrf_failed"), "{headers:?}");
        assert_eq!(refused.json()["error"]["type"].as_str(), Some("permission_error"));
    }
    let clients = send(&svc, "GET", "/v1/clients", &[("Cookie", &cookie)], None);
    assert_eq!(clients.json()["data"], json!([]), "a refused request changed nothing");
    let created = send(&svc, "POST", "/v1/clients", &[("Cookie", &cookie), ("X-CSRF-Token", &csrf)], Some(&new_client));
    assert_eq!(created.status, 201, "{}", created.text);
    let client_id = created.json()["id"].as_i64().unwrap();

    // Every state-changing method is guarded, not only POST.
    let app = send(
        &svc,
        "POST",
        &format!("/v1/clients/{client_id}/applications"),
        &[("Cookie", &cookie), ("X-CSRF-Token", &csrf)],
        Some(&json!({ "name": "till" })),
    );
    assert_eq!(app.status, 201, "{}", app.text);
    let (app_id, key) = (app.json()["id"].as_i64().unwrap(), app.json()["api_key"].as_str().unwrap().to_string());
    let revoke = format!("/v1/clients/{client_id}/applications/{app_id}");
    let refused = send(&svc, "DELETE", &revoke, &[("Cookie", &cookie)], None);
    assert_eq!((refused.status, error_code(&refused.json()).as_str()), (403, "csrf_failed"));
    assert_eq!(svc.request("GET", "/v1/balance", Some(&key), None).0, 200, "the key still works");
    let revoked = send(&svc, "DELETE", &revoke, &[("Cookie", &cookie), ("X-CSRF-Token", &csrf)], None);
    assert_eq!(revoked.status, 200, "{}", revoked.text);
    assert_eq!(svc.request("GET", "/v1/balance", Some(&key), None).0, 401);

    // Bearer clients never need the token; an Authorization header wins over the cookie.
    let (status, body) = svc.post("/v1/clients", &other_session, json!({ "name": "Bearer Bakery" }));
    assert_eq!(status, 201, "{body}");
    let wrong_bearer =
        send(&svc, "GET", "/v1/users/me", &[("Cookie", &cookie), ("Authorization", "Bearer nonsense")], None);
    assert_eq!((wrong_bearer.status, error_code(&wrong_bearer.json()).as_str()), (401, "invalid_token"));
    let key_in_cookie = send(&svc, "GET", "/v1/balance", &[("Cookie", &format!("portal_session={key}"))], None);
    assert_eq!(key_in_cookie.status, 401, "the cookie carries sessions only");

    // POST /v1/auth/login keeps its contract: the token in the body, no cookie.
    let (status, login) = svc.login(ADMIN_EMAIL, ADMIN_PASSWORD);
    assert_eq!(status, 200);
    let mut keys: Vec<&str> = login.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["expires_at", "restriction", "token"]);

    // Signing out: the cookie needs the CSRF token here too; then the cookie is dead.
    let refused = send(&svc, "POST", "/v1/auth/logout", &[("Cookie", &cookie)], None);
    assert_eq!((refused.status, error_code(&refused.json()).as_str()), (403, "csrf_failed"));
    assert_eq!(send(&svc, "GET", "/v1/users/me", &[("Cookie", &cookie)], None).status, 200, "still signed in");
    let out = send(&svc, "POST", "/v1/auth/logout", &[("Cookie", &cookie), ("X-CSRF-Token", &csrf)], None);
    assert_eq!(out.status, 200, "{}", out.text);
    let cleared = out.header("set-cookie").unwrap();
    assert!(cleared.starts_with("portal_session=;") && cleared.contains("Max-Age=0"), "{cleared}");
    let after = send(&svc, "GET", "/v1/users/me", &[("Cookie", &cookie)], None);
    assert_eq!((after.status, error_code(&after.json()).as_str()), (401, "invalid_token"));
    let again = send(&svc, "POST", "/v1/auth/logout", &[("Cookie", &cookie), ("X-CSRF-Token", &csrf)], None);
    assert_eq!(again.status, 200, "signing out twice is fine");
    assert_eq!(send(&svc, "POST", "/v1/auth/logout", &[], None).status, 200);

    // A bearer session signs out the same way; an API key has no session.
    let out = send(&svc, "POST", "/v1/auth/logout", &[("Authorization", &format!("Bearer {other_session}"))], None);
    assert_eq!(out.status, 200);
    assert_eq!(svc.request("GET", "/v1/users/me", Some(&other_session), None).0, 401);
    let (_, second) = svc.post("/v1/clients", &svc.token(ADMIN_EMAIL, ADMIN_PASSWORD), json!({ "name": "B" }));
    let admin = svc.token(ADMIN_EMAIL, ADMIN_PASSWORD);
    let (_, app) = svc.post(&format!("/v1/clients/{}/applications", second["id"]), &admin, json!({ "name": "k" }));
    let key = app["api_key"].as_str().unwrap();
    let out = send(&svc, "POST", "/v1/auth/logout", &[("Authorization", &format!("Bearer {key}"))], None);
    assert_eq!((out.status, error_code(&out.json()).as_str()), (400, "not_a_session"));
}

#[test]
fn a_browser_sign_in_asks_for_the_second_factor_and_sets_no_cookie_until_given() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::start(dir.path(), true);
    let token = svc.token(ADMIN_EMAIL, ADMIN_PASSWORD);
    let (status, enrol) = svc.post("/v1/users/me/mfa", &token, json!({}));
    assert_eq!(status, 200, "{enrol}");
    // The QR code comes with the contract's fields, as an SVG document.
    let svg = enrol["qr_svg"].as_str().unwrap();
    assert!(svg.contains("<svg") && svg.contains("</svg>") && svg.contains("<path"), "{svg}");
    assert!(!svg.contains("<script"), "an image, nothing active");
    for field in ["secret", "otpauth_url", "recovery_codes"] {
        assert!(!enrol[field].is_null(), "{field} missing: {enrol}");
    }
    let secret = enrol["secret"].as_str().unwrap();
    let bytes = totp_rs::Secret::Encoded(secret.to_string()).to_bytes().unwrap();
    let totp = totp_rs::TOTP::new_unchecked(totp_rs::Algorithm::SHA1, 6, 0, 30, bytes, None, String::new());
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let (status, body) = svc.post("/v1/users/me/mfa/verify", &token, json!({ "otp": totp.generate(now) }));
    assert_eq!(status, 200, "{body}");
    let (_, me) = svc.request("GET", "/v1/users/me", Some(&token), None);
    assert_eq!(me["mfa_enabled"], json!(true));

    let credentials = json!({ "email": ADMIN_EMAIL, "password": ADMIN_PASSWORD });
    let reply = send(&svc, "POST", "/v1/auth/session", &[], Some(&credentials));
    assert_eq!((reply.status, error_code(&reply.json()).as_str()), (401, "mfa_required"));
    assert!(reply.all("set-cookie").is_empty(), "no cookie without the second factor");
    let mut with_code = credentials.clone();
    with_code["otp"] = json!(totp.generate(now + 30));
    let reply = send(&svc, "POST", "/v1/auth/session", &[], Some(&with_code));
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert!(reply.header("set-cookie").is_some_and(|c| c.starts_with("portal_session=")));
    let reused = send(&svc, "POST", "/v1/auth/session", &[], Some(&with_code));
    assert_eq!((reused.status, error_code(&reused.json()).as_str()), (401, "invalid_otp"));
    let bad = send(&svc, "POST", "/v1/auth/session", &[], Some(&json!({ "email": ADMIN_EMAIL, "password": "no" })));
    assert_eq!((bad.status, error_code(&bad.json()).as_str()), (401, "invalid_credentials"));
    assert!(bad.all("set-cookie").is_empty());
}

#[test]
fn the_portal_and_its_files_are_served_with_a_strict_policy_and_revalidated_caching() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::start(dir.path(), true);

    let page = send(&svc, "GET", "/", &[], None);
    assert_eq!(page.status, 200);
    assert_eq!(page.header("content-type"), Some("text/html; charset=utf-8"));
    assert!(page.text.contains(r#"<script type="module" src="/assets/app.js"></script>"#), "{}", page.text);
    let csp = page.header("content-security-policy").expect("a Content-Security-Policy");
    for directive in
        ["default-src 'self'", "script-src 'self'", "style-src 'self'", "frame-ancestors 'none'", "object-src 'none'"]
    {
        assert!(csp.split(';').any(|d| d.trim() == directive), "{csp} lacks {directive}");
    }
    assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval") && !csp.contains("http"), "{csp}");
    assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(page.header("x-frame-options"), Some("DENY"));
    assert_eq!(page.header("cache-control"), Some("no-cache"));

    // Every file the page and its modules name is there, with its type and the policy.
    let mut names: Vec<String> = page
        .text
        .match_indices("/assets/")
        .map(|(at, _)| page.text[at + 8..].chars().take_while(|c| *c != '"').collect())
        .collect();
    let app = send(&svc, "GET", "/assets/app.js", &[], None);
    assert_eq!((app.status, app.header("content-type")), (200, Some("text/javascript; charset=utf-8")));
    for line in app.text.lines().filter(|l| l.starts_with("import ")) {
        names.push(line.split("'./").nth(1).unwrap().split('\'').next().unwrap().to_string());
    }
    assert!(names.len() >= 12, "{names:?}");
    for name in &names {
        let file = send(&svc, "GET", &format!("/assets/{name}"), &[], None);
        assert_eq!(file.status, 200, "/assets/{name}");
        let expected = match name.rsplit('.').next() {
            Some("js") => "text/javascript; charset=utf-8",
            Some("css") => "text/css; charset=utf-8",
            _ => "image/svg+xml",
        };
        assert_eq!(file.header("content-type"), Some(expected), "{name}");
        assert_eq!(file.header("content-security-policy"), Some(csp), "{name}");
        assert!(!file.text.is_empty());
    }

    // Revalidation: the ETag answers 304 with no body; another version is sent whole.
    let etag = app.header("etag").unwrap().to_string();
    assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");
    let again = send(&svc, "GET", "/assets/app.js", &[("If-None-Match", &etag)], None);
    assert_eq!((again.status, again.text.as_str(), again.header("etag")), (304, "", Some(etag.as_str())));
    let stale = send(&svc, "GET", "/assets/app.js", &[("If-None-Match", "\"an-older-version\"")], None);
    assert_eq!((stale.status, stale.text.len()), (200, app.text.len()));
    assert_ne!(send(&svc, "GET", "/assets/ui.js", &[], None).header("etag"), Some(etag.as_str()));

    // Nothing else is served from there, and the error is the API's.
    for path in
        ["/assets/nope.js", "/assets/..%2F..%2FCargo.toml", "/assets/%2e%2e%2fsrc%2fmain.rs", "/index.html", "/assets/"]
    {
        let reply = send(&svc, "GET", path, &[], None);
        assert_eq!((reply.status, error_code(&reply.json()).as_str()), (404, "not_found"), "{path}");
    }
    // The page is public; the session behind it is not.
    let session = send(&svc, "GET", "/v1/auth/session", &[], None);
    assert_eq!((session.status, error_code(&session.json()).as_str()), (401, "missing_credentials"));
}
