//! `relay.routes` values: where mail for a domain goes instead of its MX
//! hosts. One `"host:port"`, or a list of them tried in order (failover: the
//! next one is used when a host refuses, times out or answers 4xx at the
//! greeting). IPv6 hosts in brackets (`"[::1]:25"`). Checked at start-up
//! (`Config::problems`), so the outbound stage reads only valid values.

use serde::Deserialize;

/// One `relay.routes` value (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteTargets(Vec<String>);

impl RouteTargets {
    /// A route to the `targets`, in order.
    pub fn new(targets: Vec<String>) -> RouteTargets {
        RouteTargets(targets)
    }

    /// The targets as written, in the order they are tried.
    pub fn targets(&self) -> &[String] {
        &self.0
    }

    /// The first target: the one the route's site is named after.
    pub fn primary(&self) -> Option<&str> {
        self.0.first().map(String::as_str)
    }
}

impl std::fmt::Display for RouteTargets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.join(", "))
    }
}

impl From<&str> for RouteTargets {
    fn from(target: &str) -> RouteTargets {
        RouteTargets(vec![target.to_string()])
    }
}

impl<'de> Deserialize<'de> for RouteTargets {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Value {
            One(String),
            Many(Vec<String>),
        }
        Ok(match Value::deserialize(d)? {
            Value::One(target) => RouteTargets(vec![target]),
            Value::Many(targets) => RouteTargets(targets),
        })
    }
}
