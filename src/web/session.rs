//! How a browser carries its read token: once in the query of the first
//! load (`/?token=…`), which the server answers with a redirect to `/`
//! that sets the token as an `HttpOnly`, `SameSite=Strict` cookie, so the
//! token leaves the address bar (and history, and bookmarks) at once and
//! scripts on the page never see it. Pure string handling; the token
//! itself is checked by `http::auth` like a bearer token.

use hyper::header::{HeaderMap, COOKIE};

/// The cookie's name.
pub const COOKIE_NAME: &str = "ringmail_token";

/// The `token` parameter of a query string, if any.
pub fn query_token(query: Option<&str>) -> Option<String> {
    form_urlencoded::parse(query?.as_bytes()).find(|(k, _)| k == "token").map(|(_, v)| v.into_owned())
}

/// The value of our cookie in the request's `Cookie` headers, if any.
pub fn cookie_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE_NAME)
        .map(|(_, value)| value.trim_matches('"').to_string())
}

/// The `Set-Cookie` value that stores `token` for the whole site (`Secure`
/// when the page came over HTTPS); None if the token has characters a
/// cookie value cannot carry (RFC 6265 cookie-octet).
pub fn set_cookie(token: &str, secure: bool) -> Option<String> {
    let ok =
        !token.is_empty() && token.bytes().all(|b| b.is_ascii_graphic() && !matches!(b, b'"' | b',' | b';' | b'\\'));
    ok.then(|| {
        format!("{COOKIE_NAME}={token}; Path=/; HttpOnly; SameSite=Strict{}", if secure { "; Secure" } else { "" })
    })
}

/// An `Authorization` header value carrying `token`, for `Tokens::check`.
pub fn as_bearer(token: &str) -> Vec<u8> {
    format!("Bearer {token}").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    #[test]
    fn token_comes_from_the_query_decoded() {
        assert_eq!(query_token(Some("a=1&token=abc%2Bdef")), Some("abc+def".into()));
        assert_eq!(query_token(Some("tokens=x")), None);
        assert_eq!(query_token(None), None);
    }

    #[test]
    fn cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.append(COOKIE, HeaderValue::from_static("a=b; ringmail_token=secret-1; c=d"));
        assert_eq!(cookie_token(&h), Some("secret-1".into()));
        let mut other = HeaderMap::new();
        other.append(COOKIE, HeaderValue::from_static("ringmail_tokenx=y"));
        assert_eq!(cookie_token(&other), None);
    }

    #[test]
    fn cookie_is_http_only_strict_and_refuses_unsafe_tokens() {
        let c = set_cookie("tok-123", false).unwrap();
        assert_eq!(c, "ringmail_token=tok-123; Path=/; HttpOnly; SameSite=Strict");
        assert!(set_cookie("tok-123", true).unwrap().ends_with("; Secure"));
        assert_eq!(set_cookie("a;b", false), None);
        assert_eq!(set_cookie("a b", false), None);
    }
}
