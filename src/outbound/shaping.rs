//! TEMPORARY STUB (replaced by the shaping-rules branch at merge).
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub count: u32,
    pub per: Duration,
}
impl Rate {
    pub fn parse(_text: &str) -> Result<Rate, String> {
        Err("stub".into())
    }
    pub fn per_second(&self) -> f64 {
        self.count as f64 / self.per.as_secs_f64()
    }
}
impl std::fmt::Display for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}s", self.count, self.per.as_secs())
    }
}
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackoffAction {
    Suspend,
    HalveRate,
    Bounce,
    Defer,
}
#[derive(Debug, Clone)]
pub struct Backoff {
    pub pattern: regex::Regex,
    pub source: String,
    pub action: BackoffAction,
    pub duration: Duration,
}
#[derive(Debug, Clone)]
pub struct SiteLimits {
    pub site: String,
    pub rule: Option<String>,
    pub max_connections: usize,
    pub max_message_rate: Option<Rate>,
    pub max_deliveries_per_connection: usize,
    pub connection_rate: Option<Rate>,
    pub retry: Option<Vec<Duration>>,
    pub backoff: Vec<Backoff>,
}
impl SiteLimits {
    pub fn backoff_for(&self, reply_line: &str) -> Option<&Backoff> {
        self.backoff.iter().find(|b| b.pattern.is_match(reply_line))
    }
}
#[derive(Debug, Clone, Default)]
pub struct Shaping {}
#[derive(Debug, Clone, Copy)]
pub struct Fallback {
    pub max_connections: usize,
    pub max_deliveries_per_connection: usize,
}
pub enum Destination<'a> {
    Mx(&'a [String]),
    Route(&'a str),
}
impl Shaping {
    pub fn load(_path: &std::path::Path) -> Result<Shaping, String> {
        Ok(Shaping {})
    }
    pub fn resolve(&self, _domain: &str, dest: Destination<'_>, fallback: Fallback) -> SiteLimits {
        let site = match dest {
            Destination::Mx(h) => {
                let mut h = h.to_vec();
                h.sort();
                h.join(",")
            }
            Destination::Route(r) => r.to_string(),
        };
        SiteLimits {
            site,
            rule: None,
            max_connections: fallback.max_connections,
            max_message_rate: None,
            max_deliveries_per_connection: fallback.max_deliveries_per_connection,
            connection_rate: None,
            retry: None,
            backoff: vec![],
        }
    }
    pub fn len(&self) -> usize {
        0
    }
}
