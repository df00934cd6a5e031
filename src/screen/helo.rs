//! The HELO/EHLO check: a bare IP address (RFC 5321 §4.1.3 wants an
//! address literal in brackets), or a claim to be us (our hostname, one of
//! our local domains, or one of our listening addresses). Pure.

use std::net::IpAddr;

/// Who "we" are, for the check.
pub struct Ours<'a> {
    /// `hostname`.
    pub hostname: &'a str,
    /// The addresses we listen on.
    pub addrs: &'a [IpAddr],
    /// Whether a (lowercase) domain is one of our local domains.
    pub is_local_domain: &'a dyn Fn(&str) -> bool,
}

/// What is wrong with a HELO name; the text goes into the 550 reply and the
/// header, so it never quotes the client.
pub fn problem(helo: &str, ours: &Ours<'_>) -> Option<&'static str> {
    let name = helo.trim().trim_end_matches('.').to_ascii_lowercase();
    if name.parse::<IpAddr>().is_ok() {
        return Some("bare IP address, not an address literal");
    }
    if let Some(literal) = name.strip_prefix('[').and_then(|n| n.strip_suffix(']')) {
        let literal = literal.strip_prefix("ipv6:").unwrap_or(literal);
        return match literal.parse::<IpAddr>() {
            Ok(ip) if ours.addrs.contains(&ip) => Some("claims to be our address"),
            _ => None,
        };
    }
    if name.eq_ignore_ascii_case(ours.hostname.trim_end_matches('.')) {
        return Some("claims to be our hostname");
    }
    if (ours.is_local_domain)(&name) {
        return Some("claims to be our domain");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADDRS: &[IpAddr] = &[IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 25))];

    fn ours() -> Ours<'static> {
        Ours { hostname: "mx.test", addrs: ADDRS, is_local_domain: &|d| d == "example.test" }
    }

    #[test]
    fn bare_ip_and_claims_to_be_us_are_problems() {
        assert!(problem("192.0.2.9", &ours()).unwrap().contains("bare IP"));
        assert!(problem("2001:db8::1", &ours()).unwrap().contains("bare IP"));
        assert!(problem("MX.test.", &ours()).unwrap().contains("hostname"));
        assert!(problem("example.test", &ours()).unwrap().contains("domain"));
        assert!(problem("[192.0.2.25]", &ours()).unwrap().contains("address"));
    }

    #[test]
    fn names_and_other_literals_pass() {
        assert_eq!(problem("client.example.com", &ours()), None);
        assert_eq!(problem("[192.0.2.9]", &ours()), None);
        assert_eq!(problem("[IPv6:2001:db8::1]", &ours()), None);
    }
}
