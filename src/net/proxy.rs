//! The PROXY protocol (HAProxy's, v1 text and v2 binary) on the mail
//! listeners: a load balancer listed in `[listen] proxy_from` starts each
//! connection with a header naming the real client, and that address is
//! then used for everything (limits, relay permission, auth-failure
//! accounting, logs, Received headers).
//!
//! Rules (Postfix's `smtpd_upstream_proxy_protocol`, Dovecot's
//! `haproxy_trusted_networks`): a listed peer must send a valid header
//! first, within the handshake timeout, or it is cut; an unlisted peer that
//! sends one is cut (it would otherwise be believed by nobody but could
//! confuse logs). Parsing is `ppp`'s; [`parse`] is pure and bounded.

use crate::net::conn::Conn;
use ppp::v1::Addresses as V1;
use ppp::v2::{Addresses as V2, Command};
use ppp::{HeaderResult, PartialResult};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// The v2 signature (the first 12 bytes of every v2 header).
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";

/// Longest header accepted: v1 is at most 107 bytes; v2 is 16 bytes plus
/// addresses (216 for unix sockets) plus TLVs, which HAProxy keeps small.
pub const MAX_HEADER: usize = 1024;

/// What the first bytes of a connection from a listed proxy say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// Not a whole header yet.
    Incomplete,
    /// A header of `len` bytes; `client` is the real client, or None when
    /// the header names none (v1 `UNKNOWN`, v2 `LOCAL` health checks, unix
    /// or unspecified families): the proxy's own address stands.
    Header { len: usize, client: Option<SocketAddr> },
    /// Not a PROXY header, or a broken one.
    Invalid(String),
}

/// Parse a header at the start of `bytes` (pure, never panics).
pub fn parse(bytes: &[u8]) -> Parsed {
    let bytes = &bytes[..bytes.len().min(MAX_HEADER)];
    let result = HeaderResult::parse(bytes);
    if result.is_incomplete() {
        return match bytes.len() {
            MAX_HEADER => Parsed::Invalid(format!("header longer than {MAX_HEADER} bytes")),
            _ => Parsed::Incomplete,
        };
    }
    match result {
        HeaderResult::V1(Ok(h)) => {
            let client = match h.addresses {
                V1::Tcp4(a) => Some(SocketAddr::new(IpAddr::V4(a.source_address), a.source_port)),
                V1::Tcp6(a) => Some(SocketAddr::new(IpAddr::V6(a.source_address), a.source_port)),
                V1::Unknown => None,
            };
            Parsed::Header { len: h.header.len(), client }
        }
        HeaderResult::V2(Ok(h)) => {
            let client = match (h.command, h.addresses) {
                (Command::Local, _) => None,
                (Command::Proxy, V2::IPv4(a)) => Some(SocketAddr::new(IpAddr::V4(a.source_address), a.source_port)),
                (Command::Proxy, V2::IPv6(a)) => Some(SocketAddr::new(IpAddr::V6(a.source_address), a.source_port)),
                (Command::Proxy, V2::Unix(_) | V2::Unspecified) => None,
            };
            Parsed::Header { len: h.header.len(), client }
        }
        HeaderResult::V1(Err(e)) => Parsed::Invalid(format!("PROXY v1: {e}")),
        HeaderResult::V2(Err(e)) => Parsed::Invalid(format!("PROXY v2: {e}")),
    }
}

/// Whether `bytes` (what a client sent first) start like a PROXY header.
pub fn looks_like_header(bytes: &[u8]) -> bool {
    let n = bytes.len().min(V2_SIGNATURE.len());
    (n >= 6 && bytes[..n] == V2_SIGNATURE[..n]) || bytes.starts_with(b"PROXY ")
}

/// Why a listed proxy's connection was cut.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("no PROXY header within {0:?}")]
    Timeout(Duration),
    #[error("connection closed before a whole PROXY header")]
    Closed,
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Read the header from a listed proxy, consuming exactly its bytes (what
/// follows, perhaps a TLS ClientHello, stays in the socket): the real
/// client, or None if the header names none.
pub async fn read_header(conn: &mut Conn, timeout: Duration) -> Result<Option<SocketAddr>, ProxyError> {
    let deadline = Instant::now() + timeout;
    let mut buf = vec![0u8; MAX_HEADER];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ProxyError::Timeout(timeout));
        }
        let peeked = conn.peek_plain(&mut buf, left).await?;
        if peeked == 0 {
            return Err(ProxyError::Closed);
        }
        match parse(&buf[..peeked]) {
            Parsed::Header { len, client } => {
                conn.discard_plain(len).await?;
                return Ok(client);
            }
            Parsed::Invalid(why) => return Err(ProxyError::Invalid(why)),
            // A header split over segments (rare: proxies send it whole).
            // Peeking again returns at once, so wait a little first.
            Parsed::Incomplete => glommio::timer::sleep(Duration::from_millis(5)).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v2(command: u8, family: u8, addresses: &[u8], tlvs: &[u8]) -> Vec<u8> {
        let mut h = V2_SIGNATURE.to_vec();
        h.push(0x20 | command);
        h.push(family);
        h.extend(((addresses.len() + tlvs.len()) as u16).to_be_bytes());
        h.extend(addresses);
        h.extend(tlvs);
        h
    }

    #[test]
    fn v1_names_the_client_and_its_length() {
        let h = b"PROXY TCP4 192.0.2.7 10.0.0.1 51234 25\r\nEHLO x\r\n";
        let client = Some("192.0.2.7:51234".parse().unwrap());
        assert_eq!(parse(h), Parsed::Header { len: 40, client });
        let h6 = b"PROXY TCP6 2001:db8::7 2001:db8::1 4000 25\r\n";
        assert_eq!(parse(h6), Parsed::Header { len: h6.len(), client: Some("[2001:db8::7]:4000".parse().unwrap()) });
        assert_eq!(parse(b"PROXY UNKNOWN\r\n"), Parsed::Header { len: 15, client: None });
    }

    #[test]
    fn v2_names_the_client_and_skips_tlvs() {
        let mut addrs = vec![198, 51, 100, 9, 10, 0, 0, 1];
        addrs.extend(40000u16.to_be_bytes());
        addrs.extend(25u16.to_be_bytes());
        let tlv = [0x04, 0x00, 0x03, b'a', b'b', b'c']; // PP2_TYPE_NOOP
        let h = v2(1, 0x11, &addrs, &tlv);
        let mut wire = h.clone();
        wire.extend_from_slice(b"\x16\x03\x01"); // a ClientHello follows
        assert_eq!(parse(&wire), Parsed::Header { len: h.len(), client: Some("198.51.100.9:40000".parse().unwrap()) });
        assert_eq!(parse(&v2(0, 0x00, &[], &[])), Parsed::Header { len: 16, client: None }, "LOCAL: a health check");
    }

    #[test]
    fn partial_headers_wait_and_garbage_is_refused() {
        assert_eq!(parse(b"PROXY TCP4 192.0.2.7"), Parsed::Incomplete);
        assert_eq!(parse(&V2_SIGNATURE[..8]), Parsed::Incomplete);
        assert!(matches!(parse(b"EHLO client.example\r\n"), Parsed::Invalid(_)));
        assert!(matches!(parse(b"PROXY TCP4 not-an-ip 10.0.0.1 1 2\r\n"), Parsed::Invalid(_)));
        let mut long = b"PROXY TCP4 ".to_vec();
        long.resize(4000, b'1');
        assert!(matches!(parse(&long), Parsed::Invalid(_)), "unbounded v1 line");
    }

    #[test]
    fn any_prefix_of_any_input_parses_without_panicking() {
        let mut addrs = vec![1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2];
        addrs.extend([0x01, 0x00, 0x02, b'h', b'2']);
        let samples: [Vec<u8>; 3] = [
            b"PROXY TCP6 ::1 ::1 1 2\r\n".to_vec(),
            v2(1, 0x11, &addrs, &[]),
            v2(1, 0x21, &[0xff; 7], &[]), // IPv6 family, addresses cut short
        ];
        for s in &samples {
            for n in 0..=s.len() {
                let _ = parse(&s[..n]);
            }
        }
    }

    #[test]
    fn looks_like_header_spots_both_versions() {
        assert!(looks_like_header(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n"));
        assert!(looks_like_header(&V2_SIGNATURE[..]));
        assert!(!looks_like_header(b"EHLO x\r\n"));
        assert!(!looks_like_header(b"\r\n"));
    }
}
