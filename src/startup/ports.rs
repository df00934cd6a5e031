//! Is a listener address free? Asked before any executor starts, because
//! glommio binds with SO_REUSEPORT: a second process on the same port would
//! bind happily and the kernel would spread clients over both.
//!
//! The answer comes from a plain bind without SO_REUSEPORT, and when that
//! says "in use", from the kernel's socket tables (/proc/net/tcp{,6}): a
//! port held only by connections of a predecessor that are still closing
//! (FIN-WAIT, TIME-WAIT) is free to use, a port with a listener is not. The
//! port is never connected to: a probe connection would show up as a
//! session in the running server's log and metrics.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

/// Why a listener address cannot be used. Each variant says the cause
/// once, with the config key and the address.
#[derive(Debug, thiserror::Error)]
pub enum PortError {
    #[error("cannot listen on {addr} (listen.{key}): the port is in use by {holder}")]
    InUse { key: &'static str, addr: SocketAddr, holder: String },
    #[error(
        "cannot listen on {addr} (listen.{key}): permission denied: ports below {first} need root or CAP_NET_BIND_SERVICE (start as root with run_as, or see tuning/README.md)"
    )]
    Privileged { key: &'static str, addr: SocketAddr, first: u16 },
    #[error("cannot listen on {addr} (listen.{key}): {error}")]
    Other { key: &'static str, addr: SocketAddr, error: std::io::Error },
}

/// How long a listener that no process holds may take to go away: a
/// process that has just exited still holds its listening sockets until
/// the kernel has torn its io_uring rings down.
const ORPHAN_GRACE: Duration = Duration::from_secs(2);

/// Ok when `addr` can be bound by this process and no other listener has
/// it. `key` is the `[listen]` key, for the message.
pub fn check_free(key: &'static str, addr: SocketAddr) -> Result<(), PortError> {
    let deadline = Instant::now() + ORPHAN_GRACE;
    loop {
        match probe_bind(addr) {
            Ok(()) => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EACCES) => {
                return Err(PortError::Privileged { key, addr, first: unprivileged_port_start() })
            }
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {}
            Err(error) => return Err(PortError::Other { key, addr, error }),
        }
        let Some(listening) = listeners_on(addr) else {
            return Err(PortError::InUse { key, addr, holder: "another socket (/proc/net/tcp is unreadable)".into() });
        };
        if listening.is_empty() {
            // Only connections of a predecessor, still closing: they take no
            // new connections, and glommio's bind shares the port with them.
            return Ok(());
        }
        let inodes: Vec<u64> = listening.iter().map(|l| l.inode).collect();
        if let Some((pid, name)) = holder_of(&inodes) {
            return Err(PortError::InUse { key, addr, holder: format!("process {pid} ({name})") });
        }
        // SAFETY: geteuid has no preconditions.
        let euid = unsafe { libc::geteuid() };
        let all_visible = euid == 0 || listening.iter().all(|l| l.uid == euid);
        if !all_visible {
            return Err(PortError::InUse { key, addr, holder: "a process of another user".into() });
        }
        if Instant::now() >= deadline {
            return Err(PortError::InUse { key, addr, holder: "a listener no running process holds".into() });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Bind (SO_REUSEADDR, no SO_REUSEPORT, no listen) and close at once.
fn probe_bind(addr: SocketAddr) -> std::io::Result<()> {
    let family = if addr.is_ipv4() { libc::AF_INET } else { libc::AF_INET6 };
    // SAFETY: plain socket calls on a descriptor we own and close below.
    let fd = unsafe { libc::socket(family, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let one: libc::c_int = 1;
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_REUSEADDR,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    let rc = if rc == 0 { bind(fd, addr) } else { rc };
    let result = if rc == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) };
    unsafe { libc::close(fd) };
    result
}

fn bind(fd: libc::c_int, addr: SocketAddr) -> libc::c_int {
    match addr {
        SocketAddr::V4(a) => {
            let sa = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes(a.ip().octets()) },
                sin_zero: [0; 8],
            };
            // SAFETY: sa is a valid sockaddr_in of the length given.
            unsafe {
                libc::bind(fd, (&sa as *const libc::sockaddr_in).cast(), std::mem::size_of_val(&sa) as libc::socklen_t)
            }
        }
        SocketAddr::V6(a) => {
            let sa = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr { s6_addr: a.ip().octets() },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: sa is a valid sockaddr_in6 of the length given.
            unsafe {
                libc::bind(fd, (&sa as *const libc::sockaddr_in6).cast(), std::mem::size_of_val(&sa) as libc::socklen_t)
            }
        }
    }
}

/// First port an unprivileged process may bind (1024 unless changed).
fn unprivileged_port_start() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(1024)
}

/// A listening TCP socket from the kernel's table.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Listening {
    addr: SocketAddr,
    uid: u32,
    inode: u64,
}

/// Listening sockets whose address overlaps `addr` (same port, and the
/// same address or a wildcard on either side); None if the tables cannot
/// be read.
fn listeners_on(addr: SocketAddr) -> Option<Vec<Listening>> {
    let mut found = Vec::new();
    let mut readable = false;
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        if let Ok(text) = std::fs::read_to_string(table) {
            readable = true;
            found.extend(parse_listening(&text).into_iter().filter(|l| overlaps(l.addr, addr)));
        }
    }
    readable.then_some(found)
}

fn overlaps(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port() && (a.ip().is_unspecified() || b.ip().is_unspecified() || a.ip() == b.ip())
}

/// The LISTEN rows of /proc/net/tcp or /proc/net/tcp6.
fn parse_listening(text: &str) -> Vec<Listening> {
    const LISTEN: &str = "0A";
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 10 || f[3] != LISTEN {
                return None;
            }
            let (ip, port) = f[1].split_once(':')?;
            let port = u16::from_str_radix(port, 16).ok()?;
            Some(Listening {
                addr: SocketAddr::new(parse_hex_ip(ip)?, port),
                uid: f[7].parse().ok()?,
                inode: f[9].parse().ok()?,
            })
        })
        .collect()
}

/// The kernel prints each 32-bit word of the address in host byte order.
fn parse_hex_ip(hex: &str) -> Option<IpAddr> {
    let word = |s: &str| u32::from_str_radix(s, 16).ok().map(u32::to_ne_bytes);
    match hex.len() {
        8 => Some(IpAddr::V4(Ipv4Addr::from(word(hex)?))),
        32 => {
            let mut bytes = [0u8; 16];
            for (i, chunk) in bytes.chunks_mut(4).enumerate() {
                chunk.copy_from_slice(&word(hex.get(i * 8..i * 8 + 8)?)?);
            }
            Some(IpAddr::V6(Ipv6Addr::from(bytes)))
        }
        _ => None,
    }
}

/// A process holding one of the socket `inodes`, with its name, among the
/// processes whose descriptors we may read.
fn holder_of(inodes: &[u64]) -> Option<(u32, String)> {
    let wanted: Vec<String> = inodes.iter().map(|i| format!("socket:[{i}]")).collect();
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else { continue };
        for fd in fds.flatten() {
            let Ok(target) = std::fs::read_link(fd.path()) else { continue };
            if wanted.iter().any(|w| target.as_os_str() == w.as_str()) {
                let name = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
                return Some((pid, name.trim().to_string()));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listening_rows_are_parsed_from_both_tables() {
        let v4 = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   \
                  0: 0100007F:09DD 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000 100 0 0 10 0\n   \
                  1: 0100007F:09DD 0100007F:D0F2 01 00000000:00000000 00:00000000 00000000  1000        0 4343 1 0000 20 4 30 10 -1\n";
        let rows = parse_listening(v4);
        assert_eq!(rows, vec![Listening { addr: "127.0.0.1:2525".parse().unwrap(), uid: 0, inode: 4242 }]);
        let v6 = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   \
                  0: 00000000000000000000000001000000:0019 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000   65534        0 77 1 0000 100 0 0 10 0\n";
        let rows = parse_listening(v6);
        assert_eq!(rows, vec![Listening { addr: "[::1]:25".parse().unwrap(), uid: 65534, inode: 77 }]);
    }

    #[test]
    fn wildcards_overlap_every_address_on_their_port() {
        let a = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert!(overlaps(a("0.0.0.0:25"), a("127.0.0.1:25")));
        assert!(overlaps(a("[::]:25"), a("127.0.0.1:25")));
        assert!(!overlaps(a("127.0.0.1:25"), a("127.0.0.2:25")));
        assert!(!overlaps(a("0.0.0.0:25"), a("127.0.0.1:26")));
    }

    #[test]
    fn a_port_held_by_a_listener_of_this_process_is_reported_in_use_without_a_connection() {
        let hog = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = hog.local_addr().unwrap();
        let err = check_free("smtp", addr).unwrap_err();
        let me = format!("in use by process {}", std::process::id());
        assert!(matches!(err, PortError::InUse { .. }) && err.to_string().contains(&me), "{err}");
        hog.set_nonblocking(true).unwrap();
        assert!(hog.accept().is_err(), "the check must not connect");
        drop(hog);
        check_free("smtp", addr).unwrap();
    }
}
