//! The site table for people and for Prometheus: `ringmail queue sites`
//! and the `ringmail_site_*` metrics.
//!
//! Metrics keep their label cardinality bounded: the [`METRIC_SITES`]
//! sites with the most messages get a series of their own, and the rest
//! are summed under `site="other"`.

use super::SiteRow;
use crate::admin::report::Report;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;

/// Sites with their own metric series; the rest are `other`.
pub const METRIC_SITES: usize = 20;

/// `ringmail queue sites`, as data: every site with a row (sorted by
/// name), then the sites only queued for (not tried since start).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SitesReport {
    pub sites: Vec<SiteSummary>,
}

/// One destination site: what is queued for it on every core and what it
/// did since start, with one entry per source address.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SiteSummary {
    pub site: String,
    /// Message shares queued for it, summed over the cores.
    pub queued: usize,
    pub delivered: u64,
    pub deferred: u64,
    pub bounced: u64,
    /// Empty for a site not tried since start.
    pub sources: Vec<SourceSummary>,
}

/// One source address's dealings with a site.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SourceSummary {
    /// The source IP address, or "default" (the system's choice).
    pub source: String,
    pub in_flight: usize,
    pub connections: usize,
    pub max_connections: usize,
    /// Messages per second allowed now; null: unlimited.
    pub rate_per_second: Option<f64>,
    /// The configured maximum ("500/min"); null: none.
    pub max_rate: Option<String>,
    pub max_rate_per_second: Option<f64>,
    /// Suspended by a backoff rule until then; null: not suspended.
    pub suspended_until_ms: Option<u64>,
    pub last_reply: String,
}

/// Build the report from the site rows and what is queued by site name
/// (summed over the cores).
pub fn report(rows: &[SiteRow], queued: &HashMap<String, usize>) -> SitesReport {
    let mut by_site: BTreeMap<&str, Vec<&SiteRow>> = BTreeMap::new();
    for r in rows {
        by_site.entry(r.site.as_str()).or_default().push(r);
    }
    let mut sites = Vec::new();
    for (site, rows) in &by_site {
        let (d, f, b) = rows.iter().fold((0, 0, 0), |t, r| (t.0 + r.delivered, t.1 + r.deferred, t.2 + r.bounced));
        sites.push(SiteSummary {
            site: site.to_string(),
            queued: queued.get(*site).copied().unwrap_or(0),
            delivered: d,
            deferred: f,
            bounced: b,
            sources: rows
                .iter()
                .map(|r| SourceSummary {
                    source: r.source.map_or_else(|| "default".to_string(), |ip| ip.to_string()),
                    in_flight: r.in_flight,
                    connections: r.connections,
                    max_connections: r.max_connections,
                    rate_per_second: r.rate,
                    max_rate: r.max_rate.map(|m| m.to_string()),
                    max_rate_per_second: r.max_rate.map(|m| m.per_second()),
                    suspended_until_ms: (r.suspended_until_ms > 0).then_some(r.suspended_until_ms),
                    last_reply: r.last_reply.clone(),
                })
                .collect(),
        });
    }
    // Mail whose destinations have not been tried yet has no site row.
    let mut untried: Vec<_> = queued.iter().filter(|(s, _)| !by_site.contains_key(s.as_str())).collect();
    untried.sort();
    for (site, q) in untried {
        sites.push(SiteSummary {
            site: site.clone(),
            queued: *q,
            delivered: 0,
            deferred: 0,
            bounced: 0,
            sources: Vec::new(),
        });
    }
    SitesReport { sites }
}

impl Report for SitesReport {
    /// One line per site (queued, totals), then one per source address (in
    /// flight, connections, rate, suspension, last reply).
    fn text(&self) -> String {
        let now_ms = crate::clock::now_ms();
        let mut out = String::new();
        let mut tried = 0;
        for s in &self.sites {
            if s.sources.is_empty() {
                continue;
            }
            tried += 1;
            let _ = writeln!(
                out,
                "site {}  queued={}  delivered={}  deferred={}  bounced={}",
                s.site, s.queued, s.delivered, s.deferred, s.bounced
            );
            for r in &s.sources {
                let rate = match (r.rate_per_second, &r.max_rate, r.max_rate_per_second) {
                    (None, _, _) => "unlimited".to_string(),
                    (Some(now), Some(max), Some(per_s)) if (now - per_s).abs() < 1e-9 => max.clone(),
                    (Some(now), Some(max), _) => format!("{}/min (max {max})", per_minute(now)),
                    (Some(now), None, _) => format!("{}/min (recovering)", per_minute(now)),
                };
                let suspended = match r.suspended_until_ms {
                    Some(until) => format!(
                        "{} (in {}s)",
                        crate::outbound::dsn::format_date(until),
                        until.saturating_sub(now_ms).div_ceil(1000)
                    ),
                    None => "no".to_string(),
                };
                let _ = writeln!(
                    out,
                    "  source={}  in_flight={}  connections={}/{}  rate={rate}  suspended_until={suspended}  last_reply={:?}",
                    r.source, r.in_flight, r.connections, r.max_connections, r.last_reply
                );
            }
        }
        for s in self.sites.iter().filter(|s| s.sources.is_empty()) {
            let _ = writeln!(out, "site {}  queued={}", s.site, s.queued);
        }
        let _ = writeln!(out, "-- {tried} site(s)");
        out
    }
}

fn per_minute(per_second: f64) -> String {
    let m = per_second * 60.0;
    if m >= 10.0 {
        format!("{m:.0}")
    } else {
        format!("{m:.2}")
    }
}

/// Append the `ringmail_site_*` families to a Prometheus text page.
pub fn render_metrics(rows: &[SiteRow], out: &mut String) {
    #[derive(Default)]
    struct Sum {
        connections: usize,
        in_flight: usize,
        suspended: usize,
        delivered: u64,
        deferred: u64,
        bounced: u64,
    }
    impl Sum {
        fn add(&mut self, o: &Sum) {
            self.connections += o.connections;
            self.in_flight += o.in_flight;
            self.suspended += o.suspended;
            self.delivered += o.delivered;
            self.deferred += o.deferred;
            self.bounced += o.bounced;
        }
    }
    let mut sites: HashMap<&str, Sum> = HashMap::new();
    for r in rows {
        sites.entry(r.site.as_str()).or_default().add(&Sum {
            connections: r.connections,
            in_flight: r.in_flight,
            suspended: usize::from(r.suspended_until_ms > 0),
            delivered: r.delivered,
            deferred: r.deferred,
            bounced: r.bounced,
        });
    }
    let mut ranked: Vec<(&str, Sum)> = sites.into_iter().collect();
    ranked.sort_by(|a, b| {
        let volume = |s: &Sum| s.delivered + s.deferred + s.bounced;
        volume(&b.1).cmp(&volume(&a.1)).then(a.0.cmp(b.0))
    });
    let mut shown: Vec<(String, Sum)> = Vec::new();
    let mut other = Sum::default();
    let mut others = 0;
    for (i, (name, s)) in ranked.into_iter().enumerate() {
        if i < METRIC_SITES {
            shown.push((escape(name), s));
        } else {
            others += 1;
            other.add(&s);
        }
    }
    if others > 0 {
        shown.push(("other".to_string(), other));
    }
    let gauge = |out: &mut String, name: &str, help: &str, value: &dyn Fn(&Sum) -> usize| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for (site, s) in &shown {
            let _ = writeln!(out, "{name}{{site=\"{site}\"}} {}", value(s));
        }
    };
    gauge(out, "ringmail_site_connections", "Relay connections open to the site (all sources).", &|s| s.connections);
    gauge(out, "ringmail_site_in_flight", "Messages being sent to the site now.", &|s| s.in_flight);
    gauge(out, "ringmail_site_suspended", "Source addresses the site is suspended for by a backoff rule.", &|s| {
        s.suspended
    });
    let name = "ringmail_site_messages_total";
    let _ = writeln!(out, "# HELP {name} Message attempts to the site by result.\n# TYPE {name} counter");
    for (site, s) in &shown {
        for (result, n) in [("delivered", s.delivered), ("deferred", s.deferred), ("bounced", s.bounced)] {
            let _ = writeln!(out, "{name}{{site=\"{site}\",result=\"{result}\"}} {n}");
        }
    }
    let name = "ringmail_site_rate_limit";
    let _ = writeln!(
        out,
        "# HELP {name} Messages per second a source may send to the site now (limited sources only).\n# TYPE {name} gauge"
    );
    let named: std::collections::HashSet<&str> = shown.iter().map(|(s, _)| s.as_str()).collect();
    for r in rows {
        if let Some(rate) = r.rate {
            let site = escape(&r.site);
            if named.contains(site.as_str()) {
                let source = r.source.map_or_else(|| "default".to_string(), |ip| ip.to_string());
                let _ = writeln!(out, "{name}{{site=\"{site}\",source=\"{source}\"}} {rate}");
            }
        }
    }
}

/// A Prometheus label value: backslash, quote and newline escaped.
fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(site: &str, delivered: u64) -> SiteRow {
        SiteRow {
            site: site.into(),
            source: None,
            connections: 1,
            in_flight: 0,
            rate: None,
            max_rate: None,
            max_connections: 20,
            suspended_until_ms: 0,
            last_reply: String::new(),
            delivered,
            deferred: 0,
            bounced: 0,
        }
    }

    #[test]
    fn metrics_name_the_busiest_sites_and_sum_the_rest() {
        let rows: Vec<SiteRow> = (0..25).map(|i| row(&format!("s{i:02}"), i)).collect();
        let mut out = String::new();
        render_metrics(&rows, &mut out);
        let series: Vec<&str> = out.lines().filter(|l| l.starts_with("ringmail_site_connections{")).collect();
        assert_eq!(series.len(), METRIC_SITES + 1);
        // s05..s24 are the 20 busiest; s00..s04 (5 connections) are "other".
        assert!(out.contains("ringmail_site_connections{site=\"s24\"} 1"));
        assert!(!out.contains("site=\"s04\""));
        assert!(out.contains("ringmail_site_connections{site=\"other\"} 5"));
        assert!(out.contains("ringmail_site_messages_total{site=\"other\",result=\"delivered\"} 10"));
    }

    #[test]
    fn few_sites_have_no_other_and_names_are_escaped() {
        let mut out = String::new();
        render_metrics(&[row("a\"b", 1)], &mut out);
        assert!(out.contains("ringmail_site_connections{site=\"a\\\"b\"} 1"), "{out}");
        assert!(!out.contains("other"));
    }

    #[test]
    fn the_report_shows_queued_and_suspension() {
        let mut r = row("mx.example", 3);
        r.last_reply = "421 4.7.0 rate limited".into();
        let queued = HashMap::from([("mx.example".to_string(), 7), ("(not tried yet)".to_string(), 2)]);
        r.suspended_until_ms = crate::clock::now_ms() + 60_000;
        let text = report(&[r], &queued).text();
        assert!(text.contains("site mx.example  queued=7  delivered=3"), "{text}");
        assert!(text.contains("(in 60s)"), "{text}");
        assert!(text.contains("last_reply=\"421 4.7.0 rate limited\""), "{text}");
        assert!(text.contains("site (not tried yet)  queued=2"), "{text}");
    }
}
