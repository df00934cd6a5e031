//! The status page's routes, called from `http::routes::route` for GET and
//! HEAD on the API listener: `/` (the page, read scope), `/web/*` (its
//! script and style sheet, public: they hold no data), and
//! `/api/v1/dashboard` (the document the page polls, read scope by bearer
//! token or the page's cookie).

use super::{asset, dashboard, session};
use crate::http::routes::Ctx;
use crate::http::Scope;
use crate::shard::Request as ShardRequest;
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, AUTHORIZATION, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, LOCATION, SET_COOKIE};
use hyper::{Request, Response, StatusCode};
use std::collections::HashMap;

type Body = Full<Bytes>;

/// The page's content security policy: everything from this server, nothing
/// inline, nothing from elsewhere.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// Answers a status-page request (GET or HEAD; the caller checked).
pub async fn serve<B>(ctx: &Ctx, req: &Request<B>) -> Response<Body> {
    let path = req.uri().path();
    if path.starts_with("/web/") {
        return match asset(path) {
            Some((ty, body)) => page_reply(StatusCode::OK, ty, Bytes::from_static(body)),
            None => page_reply(StatusCode::NOT_FOUND, "text/plain; charset=utf-8", "not found\n".into()),
        };
    }
    if path == "/api/v1/dashboard" {
        return match allowed(ctx, req) {
            Ok(()) => dashboard_reply(ctx).await,
            Err(status) => json_error(status),
        };
    }
    // The page: a token in the query becomes a cookie and leaves the URL.
    if let Some(token) = session::query_token(req.uri().query()) {
        return match check(ctx, req, Some(&session::as_bearer(&token))) {
            Ok(()) => match session::set_cookie(&token, ctx.tls) {
                Some(cookie) => {
                    let mut r = page_reply(StatusCode::SEE_OTHER, "text/plain; charset=utf-8", "signed in\n".into());
                    r.headers_mut().insert(LOCATION, HeaderValue::from_static("/"));
                    if let Ok(v) = HeaderValue::from_str(&cookie) {
                        r.headers_mut().insert(SET_COOKIE, v);
                    }
                    r
                }
                None => sign_in_page(StatusCode::BAD_REQUEST, "This token cannot be kept in a cookie."),
            },
            Err(status) => sign_in_page(status, "That token does not grant read access."),
        };
    }
    match allowed(ctx, req) {
        Ok(()) => match asset("/") {
            Some((ty, body)) => page_reply(StatusCode::OK, ty, Bytes::from_static(body)),
            None => sign_in_page(StatusCode::NOT_FOUND, "The page is missing from this build."),
        },
        Err(status) => sign_in_page(status, "Open this page with ?token=READ_TOKEN once; a cookie keeps it."),
    }
}

/// Read scope from the `Authorization` header or else the page's cookie.
fn allowed<B>(ctx: &Ctx, req: &Request<B>) -> Result<(), StatusCode> {
    let bearer = match req.headers().get(AUTHORIZATION) {
        Some(h) => Some(h.as_bytes().to_vec()),
        None => session::cookie_token(req.headers()).map(|t| session::as_bearer(&t)),
    };
    check(ctx, req, bearer.as_deref())
}

/// Checks a bearer value for read scope; a refusal is logged with the
/// client and the reason, never the token (as the API does).
fn check<B>(ctx: &Ctx, req: &Request<B>, bearer: Option<&[u8]>) -> Result<(), StatusCode> {
    use crate::http::auth::Refusal;
    match ctx.state.tokens().check(bearer, Scope::Read) {
        Ok(_) => Ok(()),
        Err(refusal) => {
            tracing::warn!(core = ctx.shard.id, client = %ctx.peer.ip(), proto = "http", path = %req.uri().path(), reason = refusal.reason(), "refused");
            Err(match refusal {
                Refusal::Missing | Refusal::Unknown => StatusCode::UNAUTHORIZED,
                Refusal::Scope => StatusCode::FORBIDDEN,
            })
        }
    }
}

async fn dashboard_reply(ctx: &Ctx) -> Response<Body> {
    let shard = &ctx.shard;
    let views = shard.gather_views().await;
    let mut queued: HashMap<String, usize> = HashMap::new();
    for core in 0..shard.cores {
        match shard.ask(core, |answer| ShardRequest::SiteQueues { answer }).await {
            Ok(sites) => {
                for (site, n) in sites {
                    *queued.entry(site).or_default() += n;
                }
            }
            Err(e) => tracing::warn!(core, error = %e, "site queue request failed"),
        }
    }
    let now = crate::clock::now_ms();
    let sites = crate::outbound::sites::report(&shard.outbound.sites.rows(now), &queued).sites;
    let doc = dashboard::build(&views, sites, now);
    match serde_json::to_string(&doc) {
        Ok(text) => {
            let mut r = with(StatusCode::OK, "application/json", text.into());
            r.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
            r
        }
        Err(e) => with(StatusCode::INTERNAL_SERVER_ERROR, "text/plain; charset=utf-8", format!("{e}\n").into()),
    }
}

fn with(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Body> {
    let len = body.len();
    let mut r = Response::new(Full::new(body));
    *r.status_mut() = status;
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r.headers_mut().insert(CONTENT_LENGTH, HeaderValue::from(len));
    r
}

/// A page or asset, with the headers that keep it to itself.
fn page_reply(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Body> {
    let mut r = with(status, content_type, body);
    let h = r.headers_mut();
    h.insert("content-security-policy", HeaderValue::from_static(CSP));
    h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    // The first load's URL carries the token: never send it on.
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn json_error(status: StatusCode) -> Response<Body> {
    let message = if status == StatusCode::FORBIDDEN {
        "this needs a token with read scope"
    } else {
        "a valid bearer token (or the status page's cookie) is needed"
    };
    let mut r = with(status, "application/json", format!("{}\n", serde_json::json!({ "error": message })).into());
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert("www-authenticate", HeaderValue::from_static("Bearer realm=\"ringmail\""));
    }
    r
}

/// A small page saying how to sign in (no data, no script).
fn sign_in_page(status: StatusCode, why: &str) -> Response<Body> {
    let body = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>ringmail status: sign in</title>\
         <link rel=\"stylesheet\" href=\"/web/style.css\"></head><body><header><h1>ringmail</h1></header>\
         <main><section class=\"card wide\"><h2>Sign in</h2><p id=\"sign-in\">{why}</p>\
         <p>A token with <b>read</b> (or admin) scope from <code>[http] tokens_file</code>.</p></section></main></body></html>\n"
    );
    page_reply(status, "text/html; charset=utf-8", body.into())
}
