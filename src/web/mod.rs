//! The web status page (`GET /` on the `[listen] http` listener): its
//! static assets, embedded in the binary so the page works offline, and
//! the dashboard document it polls ([`dashboard`]).
//!
//! Owns nothing but presentation: the figures come from the cores'
//! metrics (`metrics::history`, `metrics::recent`) and `ringmail status`'s
//! [`Status`](crate::metrics::Status). Must not parse HTTP itself: routing
//! and authentication belong to `crate::http`.

pub mod dashboard;
mod handler;
pub mod session;

pub use handler::serve;

/// The page.
const INDEX_HTML: &str = include_str!("index.html");
const APP_JS: &str = include_str!("app.js");
const STYLE_CSS: &str = include_str!("style.css");

/// The embedded file at `path` (as requested: `/`, `/web/app.js`, …) with
/// its content type; None for anything else.
pub fn asset(path: &str) -> Option<(&'static str, &'static [u8])> {
    match path {
        "/" | "/index.html" => Some(("text/html; charset=utf-8", INDEX_HTML.as_bytes())),
        "/web/app.js" => Some(("text/javascript; charset=utf-8", APP_JS.as_bytes())),
        "/web/style.css" => Some(("text/css; charset=utf-8", STYLE_CSS.as_bytes())),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assets_are_embedded_and_self_contained() {
        let (ty, page) = asset("/").unwrap();
        assert!(ty.starts_with("text/html"));
        let page = std::str::from_utf8(page).unwrap();
        for path in ["/web/app.js", "/web/style.css"] {
            assert!(page.contains(path), "the page loads {path}");
            assert!(asset(path).is_some(), "{path} is served");
        }
        // Offline: nothing is fetched from elsewhere.
        for (_, body) in ["/", "/web/app.js", "/web/style.css"].iter().filter_map(|p| asset(p)) {
            let text = std::str::from_utf8(body).unwrap();
            assert!(!text.contains("https://") && !text.contains("//cdn"), "no external resource");
        }
        assert!(asset("/web/../secret").is_none());
        assert!(asset("/web/").is_none());
    }
}
