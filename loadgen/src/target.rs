//! Where the load goes: resolving `HOST:PORT` once at start-up and refusing
//! anything that is not loopback unless the operator says `--allow-remote`.
//!
//! Like KumoMTA's traffic generator, a load tool must not be one typo away
//! from flooding somebody else's mail server.

use anyhow::{bail, Context, Result};
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

/// A resolved target: the address we connect to and the host name as typed
/// (used as the TLS server name).
#[derive(Debug, Clone)]
pub struct Target {
    /// The first resolved address; all connections go here.
    pub addr: SocketAddr,
    /// The host part as given on the command line, for TLS SNI/verification.
    pub host: String,
}

/// True for 127.0.0.0/8, ::1 and IPv4-mapped loopback.
pub fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
    }
}

/// Resolves `text` (`host:port`, `[v6]:port`) and applies the loopback rule
/// to every address it resolves to.
pub fn resolve(text: &str, allow_remote: bool) -> Result<Target> {
    let (host, _port) = split_host_port(text)?;
    let addrs: Vec<SocketAddr> =
        text.to_socket_addrs().with_context(|| format!("cannot resolve target {text}"))?.collect();
    let Some(first) = addrs.first().copied() else {
        bail!("target {text} resolved to no address");
    };
    if !allow_remote {
        if let Some(bad) = addrs.iter().find(|a| !is_loopback(a.ip())) {
            bail!(
                "refusing to send load to {bad} ({text}): not a loopback address; \
                 pass --allow-remote if you own that server"
            );
        }
    }
    Ok(Target { addr: first, host: host.to_string() })
}

/// Splits `host:port` / `[v6]:port` without resolving.
fn split_host_port(text: &str) -> Result<(&str, u16)> {
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (h, p) = rest.split_once("]:").with_context(|| format!("bad target {text:?}: expected [ADDR]:PORT"))?;
        (h, p)
    } else {
        text.rsplit_once(':').with_context(|| format!("bad target {text:?}: expected HOST:PORT"))?
    };
    let port: u16 = port.parse().with_context(|| format!("bad port in target {text:?}"))?;
    Ok((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_targets_are_allowed() {
        assert!(resolve("127.0.0.1:25", false).is_ok());
        assert!(resolve("127.8.9.10:25", false).is_ok());
        assert!(resolve("[::1]:25", false).is_ok());
        assert_eq!(resolve("127.0.0.1:2525", false).unwrap().host, "127.0.0.1");
    }

    #[test]
    fn non_loopback_target_is_refused_without_allow_remote() {
        let err = resolve("10.1.2.3:25", false).unwrap_err().to_string();
        assert!(err.contains("not a loopback address"), "{err}");
        assert!(err.contains("--allow-remote"), "{err}");
        assert!(resolve("10.1.2.3:25", true).is_ok());
    }

    #[test]
    fn malformed_targets_are_reported() {
        assert!(resolve("127.0.0.1", false).is_err());
        assert!(resolve("127.0.0.1:notaport", false).is_err());
    }

    #[test]
    fn mapped_v4_loopback_counts_as_loopback() {
        assert!(is_loopback("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!is_loopback("::ffff:10.0.0.1".parse().unwrap()));
    }
}
