//! The answers the HTTP server sends: JSON documents and errors, each
//! with its Content-Length (HEAD gets the headers of GET).

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Response, StatusCode};

pub type Body = Full<Bytes>;

/// The Prometheus text exposition format's content type.
pub const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
pub const JSON: &str = "application/json";
pub const TEXT: &str = "text/plain; charset=utf-8";

/// `body` as the answer, with its type and length.
pub fn with(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Response<Body> {
    let body: Bytes = body.into();
    let mut r = Response::new(Full::new(body.clone()));
    *r.status_mut() = status;
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r.headers_mut().insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
    r
}

/// A JSON document (already serialised).
pub fn json(status: StatusCode, document: String) -> Response<Body> {
    with(status, JSON, document)
}

/// `{"error": "..."}` with `status`.
pub fn error(status: StatusCode, message: &str) -> Response<Body> {
    let mut text = serde_json::json!({ "error": message }).to_string();
    text.push('\n');
    json(status, text)
}

/// `value` serialised as JSON (these plain structs cannot fail to
/// serialise; an error would be a bug, answered as one).
pub fn serialized<T: serde::Serialize>(status: StatusCode, value: &T) -> Response<Body> {
    match serde_json::to_string_pretty(value) {
        Ok(mut text) => {
            text.push('\n');
            json(status, text)
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &format!("serialising the answer: {e}")),
    }
}

/// The bytes the server writes itself when it cuts a request that did not
/// arrive in time (hyper's connection is gone by then).
pub fn request_timeout_bytes(limit: std::time::Duration) -> Vec<u8> {
    let body = format!("request not received whole within {} s\n", limit.as_secs());
    format!(
        "HTTP/1.1 408 Request Timeout\r\nContent-Type: {TEXT}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}
