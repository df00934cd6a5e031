//! One DNS list entry in Postfix postscreen's syntax
//! (`postscreen_dnsbl_sites`): `domain[=filter][*weight]`, and the query
//! name for a client.
//!
//! The filter is an IPv4 address pattern an answer must match, each octet
//! a number, a range `[a..b]` or a list `[a;b;c]` whose items may be
//! ranges too (`127.0.0.[2..11]`, `127.0.[0..255].[1;3;5]`); without one
//! any answer counts. The weight (default 1) may be negative. Pure: no
//! DNS here.

use std::net::{IpAddr, Ipv4Addr};

/// Why an entry does not parse; the message names the bad part.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SiteError {
    #[error("no list domain before '=' or '*'")]
    NoDomain,
    #[error("list domain {0:?} is not a DNS name")]
    BadDomain(String),
    #[error("weight {0:?} is not a whole number (e.g. *3 or *-2)")]
    BadWeight(String),
    #[error("filter {0:?} is not four octets (e.g. 127.0.0.[2..11])")]
    BadFilter(String),
    #[error("octet {0:?}: expected a number 0-255, [a..b] or [a;b;c]")]
    BadOctet(String),
}

/// One list entry, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Site {
    /// The list's zone, lowercase, no trailing dot.
    pub domain: String,
    /// What an answer must be to count; `None`: any answer.
    pub filter: Option<Filter>,
    /// Added to the client's score when the list has it.
    pub weight: i32,
}

/// An answer pattern: per octet, the inclusive ranges it may be in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    octets: [Vec<(u8, u8)>; 4],
}

impl Site {
    /// Parse `domain[=filter][*weight]`.
    pub fn parse(entry: &str) -> Result<Site, SiteError> {
        let entry = entry.trim();
        // The filter has no '*', so the last one starts the weight.
        let (rest, weight) = match entry.rsplit_once('*') {
            Some((rest, w)) => (rest, w.trim().parse::<i32>().map_err(|_| SiteError::BadWeight(w.to_string()))?),
            None => (entry, 1),
        };
        let (domain, filter) = match rest.split_once('=') {
            Some((d, f)) => (d, Some(Filter::parse(f)?)),
            None => (rest, None),
        };
        let domain = domain.trim().trim_end_matches('.').to_ascii_lowercase();
        if domain.is_empty() {
            return Err(SiteError::NoDomain);
        }
        let label_ok = |l: &str| {
            !l.is_empty() && l.len() <= 63 && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        if domain.len() > 200 || !domain.split('.').all(label_ok) {
            return Err(SiteError::BadDomain(domain));
        }
        Ok(Site { domain, filter, weight })
    }

    /// Whether `answer` counts as a listing by this entry.
    pub fn matches(&self, answer: Ipv4Addr) -> bool {
        self.filter.as_ref().is_none_or(|f| f.matches(answer))
    }

    /// The name to ask for `client`'s A records on this list.
    pub fn query_name(&self, client: IpAddr) -> String {
        format!("{}.{}", reversed(client), self.domain)
    }
}

impl Filter {
    fn parse(text: &str) -> Result<Filter, SiteError> {
        let text = text.trim();
        // Octets are split on the dots outside brackets ("[2..11]" has two).
        let mut parts = Vec::new();
        let (mut depth, mut start) = (0i32, 0);
        for (i, c) in text.char_indices() {
            match c {
                '[' => depth += 1,
                ']' => depth -= 1,
                '.' if depth == 0 => {
                    parts.push(&text[start..i]);
                    start = i + 1;
                }
                _ => {}
            }
        }
        parts.push(&text[start..]);
        let [a, b, c, d] = parts.as_slice() else {
            return Err(SiteError::BadFilter(text.to_string()));
        };
        Ok(Filter { octets: [octet(a)?, octet(b)?, octet(c)?, octet(d)?] })
    }

    /// Whether every octet of `answer` is in its set.
    pub fn matches(&self, answer: Ipv4Addr) -> bool {
        answer.octets().iter().zip(&self.octets).all(|(v, set)| set.iter().any(|(lo, hi)| lo <= v && v <= hi))
    }
}

/// `n`, `[a..b]` or `[x;y..z;...]`.
fn octet(text: &str) -> Result<Vec<(u8, u8)>, SiteError> {
    let bad = || SiteError::BadOctet(text.to_string());
    let number = |s: &str| s.trim().parse::<u8>().map_err(|_| bad());
    let item = |s: &str| match s.split_once("..") {
        Some((lo, hi)) => {
            let (lo, hi) = (number(lo)?, number(hi)?);
            if lo > hi {
                return Err(bad());
            }
            Ok((lo, hi))
        }
        None => number(s).map(|n| (n, n)),
    };
    match text.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
        Some(inner) => inner.split(';').map(item).collect(),
        None if !text.contains("..") => item(text).map(|r| vec![r]),
        None => Err(bad()),
    }
}

/// The reversed form of an address as DNS lists and `in-addr.arpa` /
/// `ip6.arpa` want it: IPv4 octets reversed (`2.0.0.127`), IPv6 nibbles
/// reversed (32 labels). An IPv4-mapped IPv6 address is its IPv4 address.
pub fn reversed(ip: IpAddr) -> String {
    match unmapped(ip) {
        IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            format!("{d}.{c}.{b}.{a}")
        }
        IpAddr::V6(v6) => {
            let mut labels = Vec::with_capacity(32);
            for byte in v6.octets().iter().rev() {
                labels.push(format!("{:x}", byte & 0x0f));
                labels.push(format!("{:x}", byte >> 4));
            }
            labels.join(".")
        }
    }
}

/// The PTR query name of `ip`.
pub fn reverse_zone_name(ip: IpAddr) -> String {
    let zone = if unmapped(ip).is_ipv4() { "in-addr.arpa" } else { "ip6.arpa" };
    format!("{}.{zone}", reversed(ip))
}

/// An IPv4 client on a dual-stack socket (`::ffff:a.b.c.d`) as its IPv4
/// address: lists and reverse zones know it by that.
pub fn unmapped(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn range_filter_and_weight_parse_like_postscreen() {
        let s = Site::parse("zen.spamhaus.org=127.0.0.[2..11]*3").unwrap();
        assert_eq!(s.domain, "zen.spamhaus.org");
        assert_eq!(s.weight, 3);
        assert!(s.matches(ip("127.0.0.2")) && s.matches(ip("127.0.0.11")));
        assert!(!s.matches(ip("127.0.0.1")) && !s.matches(ip("127.0.0.12")) && !s.matches(ip("127.0.1.2")));
    }

    #[test]
    fn list_filter_with_ranges_inside() {
        let s = Site::parse("list.dnswl.org=127.0.[0..255].[1;3;5..6]").unwrap();
        assert_eq!(s.weight, 1);
        for yes in ["127.0.9.1", "127.0.255.3", "127.0.0.5", "127.0.0.6"] {
            assert!(s.matches(ip(yes)), "{yes}");
        }
        for no in ["127.0.9.2", "127.0.0.4", "127.0.0.7", "127.1.0.1"] {
            assert!(!s.matches(ip(no)), "{no}");
        }
    }

    #[test]
    fn no_filter_matches_any_answer_and_negative_weights_parse() {
        let s = Site::parse("bl.example*2").unwrap();
        assert_eq!((s.domain.as_str(), s.weight, s.filter.is_none()), ("bl.example", 2, true));
        assert!(s.matches(ip("127.0.0.2")) && s.matches(ip("10.1.2.3")));
        let w = Site::parse("wl.example.=127.0.0.2*-5").unwrap();
        assert_eq!((w.domain.as_str(), w.weight), ("wl.example", -5));
        assert_eq!(Site::parse("BL.Example").unwrap().domain, "bl.example");
    }

    #[test]
    fn bad_entries_say_what_is_wrong() {
        assert_eq!(Site::parse("=127.0.0.2"), Err(SiteError::NoDomain));
        assert_eq!(Site::parse("bl.example*x"), Err(SiteError::BadWeight("x".into())));
        assert_eq!(Site::parse("bl.example=127.0.2"), Err(SiteError::BadFilter("127.0.2".into())));
        assert_eq!(Site::parse("bl.example=127.0.0.[2..1]"), Err(SiteError::BadOctet("[2..1]".into())));
        assert_eq!(Site::parse("bl.example=127.0.0.256"), Err(SiteError::BadOctet("256".into())));
        assert_eq!(Site::parse("bl.example=127.0.0.[2;x]"), Err(SiteError::BadOctet("[2;x]".into())));
        assert_eq!(Site::parse("bl.example=127.0.0.2..3"), Err(SiteError::BadFilter("127.0.0.2..3".into())));
        assert_eq!(Site::parse("bl.example=127.0.0.[2"), Err(SiteError::BadOctet("[2".into())));
        assert!(matches!(Site::parse("bad domain"), Err(SiteError::BadDomain(_))));
    }

    #[test]
    fn ipv4_query_reverses_octets() {
        let s = Site::parse("zen.test").unwrap();
        assert_eq!(s.query_name("127.0.0.2".parse().unwrap()), "2.0.0.127.zen.test");
        assert_eq!(s.query_name("::ffff:192.0.2.1".parse().unwrap()), "1.2.0.192.zen.test");
        assert_eq!(reverse_zone_name("192.0.2.1".parse().unwrap()), "1.2.0.192.in-addr.arpa");
    }

    #[test]
    fn ipv6_query_reverses_nibbles() {
        let s = Site::parse("zen.test").unwrap();
        assert_eq!(
            s.query_name("2001:db8::567:89ab".parse().unwrap()),
            "b.a.9.8.7.6.5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.zen.test"
        );
        assert!(reverse_zone_name("2001:db8::1".parse().unwrap()).ends_with(".8.b.d.0.1.0.0.2.ip6.arpa"));
    }
}
