//! What each request gets: the one routing table ([`route`]), the scope
//! each API path needs, and the handlers. New pages plug in as a line in
//! [`route`]'s `match` and a handler function.
//!
//! The JSON documents are the CLI's `--json` ones, made by the same code
//! (`admin::report::emit`, `Shard::queue_admin`, `admin::trace`), so the
//! field names are the same (README, "JSON output").

use super::auth::Scope;
use super::io::RequestClock;
use super::reply::{self, Body};
use super::server::{HttpState, Listener};
use crate::admin::queue_list::ListFilter;
use crate::admin::report::{emit, Format};
use crate::metrics::Status;
use crate::shard::admin::{AdminError, QueueOp};
use crate::shard::Shard;
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, AUTHORIZATION, CONTENT_LENGTH, WWW_AUTHENTICATE};
use hyper::{Method, Request, Response, StatusCode};
use std::net::SocketAddr;
use std::rc::Rc;

/// What a handler knows about the connection its request came on.
pub struct Ctx {
    pub shard: Rc<Shard>,
    pub listener: Listener,
    /// The client.
    pub peer: SocketAddr,
    /// The connection is HTTPS.
    pub tls: bool,
    pub state: Rc<HttpState>,
}

/// The answer to `req`. The single routing table: `/metrics` on both
/// listeners, everything else on the API listener only (the metrics
/// listener answers 404 to all else, as it always did).
pub async fn route(ctx: &Ctx, clock: &RequestClock, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_string();
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let method = req.method().clone();
    let get = method == Method::GET || method == Method::HEAD;
    let post = method == Method::POST;
    if !(post && segments.as_slice() == ["api", "v1", "inject"]) {
        // Only inject reads a body (and says when it has it); any other
        // request is whole once hyper hands it over.
        clock.received();
    }
    match (ctx.listener, segments.as_slice()) {
        // Prometheus scrapers carry no token: /metrics needs none on either
        // listener (README, "HTTP API").
        (_, ["metrics"]) if get => metrics(ctx).await,
        (Listener::Metrics, _) => {
            reply::with(StatusCode::NOT_FOUND, reply::TEXT, "not found; metrics are at GET /metrics\n")
        }
        (Listener::Api, ["api", "v1", "status"]) if get => match authorize(ctx, &req, Scope::Read) {
            Ok(()) => status(ctx).await,
            Err(r) => r,
        },
        (Listener::Api, ["api", "v1", "queue"]) if get => match authorize(ctx, &req, Scope::Read) {
            Ok(()) => queue_list(ctx, req.uri().query().unwrap_or("")).await,
            Err(r) => r,
        },
        (Listener::Api, ["api", "v1", "queue", "flush"]) if post => match authorize(ctx, &req, Scope::Admin) {
            Ok(()) => queue_action(ctx, "flush", None).await,
            Err(r) => r,
        },
        (Listener::Api, ["api", "v1", "queue", id, action @ ("hold" | "release" | "delete")]) if post => {
            match authorize(ctx, &req, Scope::Admin) {
                Ok(()) => queue_action(ctx, action, Some(id)).await,
                Err(r) => r,
            }
        }
        (Listener::Api, ["api", "v1", "trace", id]) if get => match authorize(ctx, &req, Scope::Read) {
            Ok(()) => trace(ctx, id).await,
            Err(r) => r,
        },
        (Listener::Api, ["api", "v1", "inject"]) if post => match authorize(ctx, &req, Scope::Inject) {
            Ok(()) => inject(ctx, clock, req).await,
            Err(r) => r,
        },
        // The web status page and the document it polls (crate::web).
        (Listener::Api, [] | ["index.html"] | ["web", ..] | ["api", "v1", "dashboard"]) if get => {
            crate::web::serve(ctx, &req).await
        }
        (Listener::Api, ["metrics" | "api", ..]) if allowed(&segments).is_some() => {
            let mut r = reply::error(StatusCode::METHOD_NOT_ALLOWED, &format!("{method} is not allowed on {path}"));
            if let Some(allow) = allowed(&segments) {
                r.headers_mut().insert(ALLOW, HeaderValue::from_static(allow));
            }
            r
        }
        (Listener::Api, _) => reply::error(StatusCode::NOT_FOUND, &format!("no such resource: {path}")),
    }
}

/// The methods a known API path takes (for 405's Allow).
fn allowed(segments: &[&str]) -> Option<&'static str> {
    match segments {
        ["metrics"] => Some("GET, HEAD"),
        ["api", "v1", "status" | "queue"] | ["api", "v1", "trace", _] => Some("GET, HEAD"),
        ["api", "v1", "queue", "flush"] | ["api", "v1", "inject"] => Some("POST"),
        ["api", "v1", "queue", _, "hold" | "release" | "delete"] => Some("POST"),
        _ => None,
    }
}

/// Let the request through if its bearer token has a scope allowing
/// `needed`; else the 401 or 403 to answer. A refusal is logged with the
/// client and the reason only, never the token.
pub fn authorize<B>(ctx: &Ctx, req: &Request<B>, needed: Scope) -> Result<(), Response<Body>> {
    use super::auth::Refusal;
    let presented = req.headers().get(AUTHORIZATION).map(HeaderValue::as_bytes);
    match ctx.state.tokens().check(presented, needed) {
        Ok(_) => Ok(()),
        Err(refusal) => {
            tracing::warn!(core = ctx.shard.id, client = %ctx.peer.ip(), proto = "http", path = %req.uri().path(), reason = refusal.reason(), "refused");
            Err(match refusal {
                Refusal::Missing | Refusal::Unknown => {
                    let mut r = reply::error(StatusCode::UNAUTHORIZED, "a valid bearer token is needed");
                    r.headers_mut().insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"ringmail\""));
                    r
                }
                Refusal::Scope => {
                    reply::error(StatusCode::FORBIDDEN, &format!("this needs a token with {} scope", needed.name()))
                }
            })
        }
    }
}

async fn metrics(ctx: &Ctx) -> Response<Body> {
    let shard = &ctx.shard;
    let mut page = crate::metrics::render(&shard.gather_metrics().await);
    let process = crate::metrics::process::ProcessStats::read();
    crate::metrics::process::render(&mut page, &process, crate::net::tls::loaded_certificate_expiry());
    crate::outbound::sites::render_metrics(&shard.outbound.sites.rows(crate::clock::now_ms()), &mut page);
    reply::with(StatusCode::OK, reply::PROMETHEUS_TEXT, page)
}

/// `GET /api/v1/status`: `ringmail status --json`.
async fn status(ctx: &Ctx) -> Response<Body> {
    let status = Status::from_snapshots(&ctx.shard.gather_metrics().await);
    reply::json(StatusCode::OK, emit(&status, Format::Json))
}

/// `GET /api/v1/queue?domain=&state=&older_than=&limit=`: `ringmail queue
/// list --json` with the same filters.
async fn queue_list(ctx: &Ctx, query: &str) -> Response<Body> {
    let words: Vec<String> = form_urlencoded::parse(query.as_bytes()).map(|(k, v)| format!("{k}={v}")).collect();
    let filter = match ListFilter::parse(words.iter().map(String::as_str)) {
        Ok(f) => f,
        Err(e) => return reply::error(StatusCode::BAD_REQUEST, &format!("query: {e}")),
    };
    match ctx.shard.queue_admin(QueueOp::List(filter), Format::Json).await {
        Ok(json) => reply::json(StatusCode::OK, json),
        Err(e) => admin_error(&e),
    }
}

/// `POST /api/v1/queue/flush` and `/api/v1/queue/{id}/hold|release|delete`:
/// `{"action": ..., "queue_id": ..., "shares": N}`.
async fn queue_action(ctx: &Ctx, action: &str, id: Option<&str>) -> Response<Body> {
    let line = format!("{action} {}", id.unwrap_or_default());
    let op = match QueueOp::parse(&line) {
        Ok(op) => op,
        Err(e) => return reply::error(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    tracing::info!(command = %format!("queue {}", line.trim()), client = %ctx.peer.ip(), "http command");
    match ctx.shard.queue_action(op).await {
        Ok(shares) => {
            let done = serde_json::json!({ "action": action, "queue_id": id, "shares": shares });
            reply::serialized(StatusCode::OK, &done)
        }
        Err(e) => admin_error(&e),
    }
}

fn admin_error(e: &AdminError) -> Response<Body> {
    let status = match e {
        AdminError::NoQueuedMessage(_) => StatusCode::NOT_FOUND,
        AdminError::Parse(_) | AdminError::Usage(_) | AdminError::UnknownCommand(_) | AdminError::NotUser(_) => {
            StatusCode::BAD_REQUEST
        }
        AdminError::NotSuppressed(_) => StatusCode::NOT_FOUND,
        AdminError::PeerGone(_) | AdminError::Shard(_) => StatusCode::SERVICE_UNAVAILABLE,
    };
    reply::error(status, &e.to_string())
}

/// `GET /api/v1/trace/{queue id or Message-ID}`: `ringmail trace --json`.
/// The spool walk runs on the blocking pool, off the core.
async fn trace(ctx: &Ctx, id: &str) -> Response<Body> {
    let id = percent_encoding::percent_decode_str(id).decode_utf8_lossy();
    let needle = crate::admin::trace::Needle::parse(&id);
    let root = ctx.shard.config().spool_root();
    let found = glommio::executor().spawn_blocking(move || crate::admin::trace::trace(&root, &needle)).await;
    match found {
        Ok(trace) => reply::json(StatusCode::OK, emit(&trace, Format::Json)),
        Err(e @ crate::admin::trace::TraceError::NotFound(_)) => reply::error(StatusCode::NOT_FOUND, &e.to_string()),
        Err(e) => reply::error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

/// The largest inject body: the largest message JSON-escaped (a CRLF
/// becomes four bytes) plus room for the envelope.
pub fn max_inject_body(max_message_size: u64) -> usize {
    usize::try_from(max_message_size.saturating_mul(2).saturating_add(64 * 1024)).unwrap_or(usize::MAX)
}

/// Read a request body of at most `limit` bytes: 413 before reading when
/// Content-Length says more, and as soon as more arrive otherwise.
async fn read_body(req: Request<Incoming>, limit: usize, clock: &RequestClock) -> Result<Bytes, Response<Body>> {
    let too_large = || reply::error(StatusCode::PAYLOAD_TOO_LARGE, &format!("the body is larger than {limit} bytes"));
    let declared = req.headers().get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let collected = http_body_util::Limited::new(req.into_body(), limit).collect().await;
    clock.received();
    match collected {
        Ok(body) => Ok(body.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Err(e) => Err(reply::error(StatusCode::BAD_REQUEST, &format!("the body could not be read: {e}"))),
    }
}

/// `POST /api/v1/inject`.
async fn inject(ctx: &Ctx, clock: &RequestClock, req: Request<Incoming>) -> Response<Body> {
    let limit = max_inject_body(ctx.shard.config().max_message_size);
    let body = match read_body(req, limit, clock).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let request: super::inject::InjectRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        // serde's message names the field, line and column.
        Err(e) => return reply::error(StatusCode::BAD_REQUEST, &format!("malformed JSON: {e}")),
    };
    match super::submit::inject(&ctx.shard, ctx.peer, ctx.tls, request).await {
        Ok(done) => {
            let status = if done.success_count > 0 || done.recipients.is_empty() {
                StatusCode::OK
            } else if done.recipients.iter().any(|r| r.temporary) {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::UNPROCESSABLE_ENTITY
            };
            reply::serialized(status, &done)
        }
        Err(super::submit::SubmitError::SpoolFull) => {
            reply::error(StatusCode::SERVICE_UNAVAILABLE, "the spool is full; try again later")
        }
        Err(e @ super::submit::SubmitError::Invalid(_)) => reply::error(StatusCode::BAD_REQUEST, &e.to_string()),
    }
}
