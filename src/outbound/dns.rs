//! A small DNS stub resolver for one core: MX, A, AAAA, TXT and TLSA
//! lookups against one recursive server, over the core's own UDP sockets
//! (TCP when an answer is truncated), with a per-core cache that honours TTLs and
//! caches negative answers (RFC 2308).
//!
//! DNSSEC: this resolver validates nothing itself. Every query carries the
//! AD bit and an EDNS0 OPT record with DO set (RFC 6840 §5.7, RFC 3225), and
//! each answer remembers whether the server set AD in its reply ("secure").
//! That is only worth something when `dns_server` is a validating resolver
//! the host trusts (Unbound on loopback): the convention Postfix and Exim
//! follow for DANE, and the README says so.
//!
//! It owns the wire exchange (hickory-proto for the format only) and the
//! cache. It does not decide routing; that is [`crate::outbound::mx`].
//!
//! Two glommio 0.9 traps shape the transport (DESIGN.md, platform facts):
//! `glommio::net::UdpSocket::bind` sets SO_REUSEPORT, so concurrent lookups
//! on sockets bound that way receive each other's replies; and a `recv`
//! cancelled by dropping its future loses the next datagram. So every try
//! binds its own `std::net::UdpSocket` (no SO_REUSEPORT, ephemeral port),
//! connects it to the server so the kernel drops datagrams from anyone
//! else, hands it to glommio, and waits with the socket's read timeout
//! (a kernel-side timeout, not a cancelled future); the socket is dropped
//! after the try. Replies must also match the query's id and question.
//!
//! The pure parts (the [`Cache`], reading a reply into a [`Lookup`], the
//! resolv.conf parser) take `now` or text as arguments; only the driver
//! reads the clock. No `RefCell` borrow is held across an `.await`.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{FromRawFd, IntoRawFd};
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};

use crate::outbound::dane::TlsaRecord;
use crate::outbound::mx::{normalize, MxAnswer, MxHost};

/// The DNS port.
pub const DNS_PORT: u16 = 53;
/// UDP tries per query, each on a fresh socket, each waiting `timeout`.
pub const ATTEMPTS: u32 = 3;
/// Positive answers are cached at most this long, whatever their TTL.
pub const MAX_TTL: Duration = Duration::from_secs(86_400);
/// Negative answers without an SOA are cached this long (RFC 2308 §5
/// would not cache them at all; a minute spares the server a retry storm).
pub const DEFAULT_NEGATIVE_TTL: Duration = Duration::from_secs(60);
/// Negative answers are cached at most this long (RFC 2308 §5: 1–3 hours).
pub const MAX_NEGATIVE_TTL: Duration = Duration::from_secs(3 * 3600);
/// Entries one core's cache holds before it evicts.
pub const CACHE_CAPACITY: usize = 16_384;
/// The UDP payload size our EDNS0 OPT record offers: the DNS flag day 2020
/// value, which avoids IP fragmentation; larger answers come over TCP.
pub const EDNS_PAYLOAD: u16 = 1232;

/// The record types this resolver asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Qtype {
    /// Mail exchangers.
    Mx,
    /// IPv4 addresses.
    A,
    /// IPv6 addresses.
    Aaaa,
    /// Text records (`_smtp._tls`, `_mta-sts`).
    Txt,
    /// DANE TLSA records (RFC 6698), at `_25._tcp.<mx host>`.
    Tlsa,
    /// The start of authority: what the start-up DNSSEC probe asks for.
    Soa,
    /// Reverse DNS: the names of an address (client screening, FCrDNS).
    Ptr,
}

impl Qtype {
    fn record_type(self) -> RecordType {
        match self {
            Qtype::Mx => RecordType::MX,
            Qtype::A => RecordType::A,
            Qtype::Aaaa => RecordType::AAAA,
            Qtype::Txt => RecordType::TXT,
            Qtype::Tlsa => RecordType::TLSA,
            Qtype::Soa => RecordType::SOA,
            Qtype::Ptr => RecordType::PTR,
        }
    }
}

impl std::fmt::Display for Qtype {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Qtype::Mx => "MX",
            Qtype::A => "A",
            Qtype::Aaaa => "AAAA",
            Qtype::Txt => "TXT",
            Qtype::Tlsa => "TLSA",
            Qtype::Soa => "SOA",
            Qtype::Ptr => "PTR",
        })
    }
}

/// A lookup that failed, with what was asked of whom. None of these says
/// the name does not exist (that is an answer, not an error): all are
/// temporary, retry later, except [`Failure::InvalidName`]
/// ([`DnsError::is_permanent`]).
#[derive(Debug, thiserror::Error)]
#[error("DNS {qtype} lookup of {name} via {server}: {failure}")]
pub struct DnsError {
    /// The server asked.
    pub server: SocketAddr,
    /// The name looked up, as given.
    pub name: String,
    /// The record type asked for.
    pub qtype: Qtype,
    /// What went wrong.
    pub failure: Failure,
}

impl DnsError {
    /// True when asking again can never help (the name is not a DNS name).
    pub fn is_permanent(&self) -> bool {
        match self.failure {
            Failure::InvalidName(_) => true,
            Failure::Timeout(_) | Failure::ServerFailure(_) | Failure::Malformed(_) | Failure::Io(..) => false,
        }
    }
}

/// The ways a lookup fails; see [`DnsError`].
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// The name cannot be put in a query (empty, a label over 63 bytes...).
    #[error("not a valid DNS name: {0}")]
    InvalidName(String),
    /// No matching reply within the timeout, this many times.
    #[error("no reply in time (tries: {0})")]
    Timeout(u32),
    /// An error code other than NXDOMAIN (SERVFAIL, REFUSED...), as text.
    #[error("server answered {0}")]
    ServerFailure(String),
    /// A reply that could not be decoded or, over TCP, did not match.
    #[error("malformed reply: {0}")]
    Malformed(String),
    /// A socket operation failed (ICMP port unreachable, connection
    /// refused...), over "UDP" or "TCP".
    #[error("{0} error: {1}")]
    Io(&'static str, #[source] std::io::Error),
}

/// Why no DNS server address could be worked out at start-up.
#[derive(Debug, thiserror::Error)]
pub enum ServerConfigError {
    /// `relay.dns_server` is neither an IP address nor ip:port.
    #[error("relay.dns_server = {value:?}: expected an IP address or ip:port")]
    BadAddress {
        /// The configured value.
        value: String,
    },
    /// resolv.conf could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// resolv.conf names no usable nameserver.
    #[error("{path} has no usable nameserver line; set relay.dns_server")]
    NoNameserver {
        /// The file.
        path: String,
    },
}

/// `"ip"` or `"ip:port"` (IPv6 with port as `"[::1]:5353"`); port 53 when
/// none is given.
pub fn parse_server(value: &str) -> Option<SocketAddr> {
    let value = value.trim();
    value.parse::<SocketAddr>().ok().or_else(|| value.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, DNS_PORT)))
}

/// The first `nameserver` line of a resolv.conf(5) text whose address
/// parses. Comments (`#`, `;`) are ignored; an IPv6 address with a zone
/// (`fe80::1%eth0`) is skipped, since it cannot be used without it.
pub fn parse_resolv_conf(text: &str) -> Option<IpAddr> {
    text.lines()
        .map(|line| line.split(['#', ';']).next().unwrap_or(""))
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            match (words.next(), words.next()) {
                (Some("nameserver"), Some(addr)) => addr.parse::<IpAddr>().ok(),
                _ => None,
            }
        })
        .next()
}

/// The server to use: `relay.dns_server` when set, else the first
/// nameserver in /etc/resolv.conf, on port 53. Reads a file: call it at
/// start-up, not on a core's hot path.
pub fn server_from_config(dns_server: Option<&str>) -> Result<SocketAddr, ServerConfigError> {
    const PATH: &str = "/etc/resolv.conf";
    if let Some(value) = dns_server {
        return parse_server(value).ok_or_else(|| ServerConfigError::BadAddress { value: value.to_string() });
    }
    let text =
        std::fs::read_to_string(PATH).map_err(|source| ServerConfigError::Read { path: PATH.to_string(), source })?;
    parse_resolv_conf(&text)
        .map(|ip| SocketAddr::new(ip, DNS_PORT))
        .ok_or_else(|| ServerConfigError::NoNameserver { path: PATH.to_string() })
}

/// A definitive answer for one (name, type): records, or their absence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup<T> {
    /// The records of the asked type (never empty).
    Found(T),
    /// NOERROR with no records of that type (RFC 2308 NODATA).
    NoData,
    /// The name does not exist.
    NxDomain,
}

/// A definitive answer and whether it was DNSSEC-validated: the server
/// set AD in its reply (see the module doc for what that is worth).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer<T> {
    /// What DNS said.
    pub lookup: Lookup<T>,
    /// AD was set: secure in RFC 4035's sense, as far as the resolver says.
    pub secure: bool,
}

/// A per-core cache of definitive answers (`V`, e.g. an [`Answer`]) with
/// their expiry. Pure: `now` is always passed in. Bounded: when an insert
/// finds it full, expired entries are dropped, and if that frees less than
/// an eighth of it, arbitrary live ones go too, so the full scan is paid
/// once per `capacity / 8` inserts, not on each.
#[derive(Debug)]
pub struct Cache<V> {
    entries: HashMap<(String, Qtype), (V, Instant)>,
    capacity: usize,
}

impl<V: Clone> Cache<V> {
    /// An empty cache holding at most `capacity` entries (at least one).
    pub fn new(capacity: usize) -> Cache<V> {
        Cache { entries: HashMap::new(), capacity: capacity.max(1) }
    }

    /// The cached answer for `name` (case and trailing dot ignored), if it
    /// has not expired at `now`. An expired entry is removed.
    pub fn get(&mut self, name: &str, qtype: Qtype, now: Instant) -> Option<V> {
        let key = (normalize(name), qtype);
        match self.entries.get(&key) {
            Some((answer, expires)) if now < *expires => Some(answer.clone()),
            Some(_) => {
                self.entries.remove(&key);
                None
            }
            None => None,
        }
    }

    /// Remembers `answer` for `ttl` from `now`. A zero TTL is not cached
    /// (RFC 1035 §3.2.1: use for this transaction only).
    pub fn insert(&mut self, name: &str, qtype: Qtype, answer: V, ttl: Duration, now: Instant) {
        if ttl.is_zero() {
            return;
        }
        let key = (normalize(name), qtype);
        if self.entries.len() >= self.capacity && !self.entries.contains_key(&key) {
            self.entries.retain(|_, (_, expires)| now < *expires);
            let low_water = self.capacity - (self.capacity / 8).max(1);
            let excess = self.entries.len().saturating_sub(low_water);
            let victims: Vec<_> = self.entries.keys().take(excess).cloned().collect();
            for victim in victims {
                self.entries.remove(&victim);
            }
        }
        self.entries.insert(key, (answer, now + ttl));
    }

    /// Number of entries, expired ones included until they are noticed.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Reads a reply into a [`Lookup`] and how long it may be cached.
/// `extract` picks the asked type's data out of a record. Positive answers
/// live for the smallest TTL in the answer section (CNAMEs included),
/// capped at [`MAX_TTL`]; negative ones for min(SOA TTL, SOA minimum) from
/// the authority section (RFC 2308 §5), else [`DEFAULT_NEGATIVE_TTL`],
/// capped at [`MAX_NEGATIVE_TTL`]. Error codes other than NXDOMAIN are
/// `Err(rcode)`.
fn interpret<T>(reply: &Message, extract: fn(&RData) -> Option<T>) -> Result<(Lookup<Vec<T>>, Duration), ResponseCode> {
    let negative_ttl = || {
        reply
            .name_servers()
            .iter()
            .find_map(|r| match r.data() {
                Some(RData::SOA(soa)) => Some(Duration::from_secs(u64::from(r.ttl().min(soa.minimum())))),
                _ => None,
            })
            .unwrap_or(DEFAULT_NEGATIVE_TTL)
            .min(MAX_NEGATIVE_TTL)
    };
    match reply.response_code() {
        ResponseCode::NoError => {
            let found: Vec<T> = reply.answers().iter().filter_map(|r| r.data().and_then(extract)).collect();
            if found.is_empty() {
                return Ok((Lookup::NoData, negative_ttl()));
            }
            let ttl = reply.answers().iter().map(|r| r.ttl()).min().unwrap_or(0);
            Ok((Lookup::Found(found), Duration::from_secs(u64::from(ttl)).min(MAX_TTL)))
        }
        ResponseCode::NXDomain => Ok((Lookup::NxDomain, negative_ttl())),
        other => Err(other),
    }
}

fn extract_mx(data: &RData) -> Option<MxHost> {
    match data {
        RData::MX(mx) => Some(MxHost { name: normalize(&mx.exchange().to_ascii()), pref: mx.preference() }),
        _ => None,
    }
}

fn extract_a(data: &RData) -> Option<IpAddr> {
    match data {
        RData::A(a) => Some(IpAddr::V4(a.0)),
        _ => None,
    }
}

fn extract_ptr(data: &RData) -> Option<String> {
    match data {
        RData::PTR(name) => Some(normalize(&name.0.to_ascii())),
        _ => None,
    }
}

fn extract_aaaa(data: &RData) -> Option<IpAddr> {
    match data {
        RData::AAAA(aaaa) => Some(IpAddr::V6(aaaa.0)),
        _ => None,
    }
}

/// A TXT record's character-strings joined into one value (RFC 7208
/// §3.3 and RFC 8461 §3.1 read them so); bytes that are not UTF-8 are
/// replaced, which no record these lookups want can contain.
fn extract_txt(data: &RData) -> Option<String> {
    match data {
        RData::TXT(txt) => Some(txt.txt_data().iter().map(|s| String::from_utf8_lossy(s)).collect()),
        _ => None,
    }
}

fn extract_tlsa(data: &RData) -> Option<TlsaRecord> {
    match data {
        RData::TLSA(tlsa) => Some(TlsaRecord {
            usage: tlsa.cert_usage().into(),
            selector: tlsa.selector().into(),
            mtype: tlsa.matching().into(),
            data: tlsa.cert_data().to_vec(),
        }),
        _ => None,
    }
}

/// What a TLSA lookup found (RFC 7672 §2.2). A failure to get an answer
/// (SERVFAIL, which a validating resolver gives for bogus data, or a
/// timeout) is the `Err` of [`Resolver::tlsa`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsaAnswer {
    /// A validated (AD) RRset of these records (never empty; usable or not).
    Secure(Vec<TlsaRecord>),
    /// An answer without AD, positive or negative: DANE does not apply.
    Insecure,
    /// A validated denial (NXDOMAIN or NODATA): the host publishes none.
    NoRecords,
}

impl TlsaAnswer {
    fn from_answer(answer: Answer<Vec<TlsaRecord>>) -> TlsaAnswer {
        match answer {
            Answer { secure: false, .. } => TlsaAnswer::Insecure,
            Answer { lookup: Lookup::Found(records), secure: true } => TlsaAnswer::Secure(records),
            Answer { lookup: Lookup::NoData | Lookup::NxDomain, secure: true } => TlsaAnswer::NoRecords,
        }
    }
}

/// The TLSA owner name of an SMTP server (RFC 7672 §2.2.3):
/// `_25._tcp.<host>`, `port` being the one connected to.
pub fn tlsa_name(host: &str, port: u16) -> String {
    format!("_{port}._tcp.{}", normalize(host))
}

/// A query for (`qname`, `qtype`) with id `id`: recursion desired, AD set
/// and an EDNS0 OPT record with DO (see the module doc).
fn query_message(qname: &Name, qtype: Qtype, id: u16) -> Message {
    let mut edns = Edns::new();
    edns.set_dnssec_ok(true).set_max_payload(EDNS_PAYLOAD);
    let mut msg = Message::new();
    msg.set_id(id)
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(true)
        .set_authentic_data(true)
        .add_query(Query::query(qname.clone(), qtype.record_type()))
        .set_edns(edns);
    msg
}

/// Whether `server` sets AD on its answer for `name`'s SOA: the start-up
/// DNSSEC probe (`relay.dnssec_probe`). Blocking (std sockets, each of
/// [`ATTEMPTS`] tries waiting `timeout`): call it from a thread of its
/// own, never from an executor. Any answer counts, even a truncated one or
/// NXDOMAIN (an authenticated denial carries AD too); SERVFAIL is an error.
pub fn probe_ad(server: SocketAddr, name: &str, timeout: Duration) -> Result<bool, DnsError> {
    let fail = |failure| DnsError { server, name: name.to_string(), qtype: Qtype::Soa, failure };
    let mut qname = Name::from_utf8(name).map_err(|e| fail(Failure::InvalidName(e.to_string())))?;
    qname.set_fqdn(true);
    let mut last = fail(Failure::Timeout(ATTEMPTS));
    for _ in 0..ATTEMPTS {
        let id: u16 = rand::random();
        let wire =
            query_message(&qname, Qtype::Soa, id).to_vec().map_err(|e| fail(Failure::Malformed(e.to_string())))?;
        let io = |e| fail(Failure::Io("UDP", e));
        let local: SocketAddr = match server {
            SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
            SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        let socket = std::net::UdpSocket::bind(local).map_err(io)?;
        socket.connect(server).map_err(io)?;
        socket.set_read_timeout(Some(timeout)).map_err(io)?;
        socket.send(&wire).map_err(io)?;
        let deadline = Instant::now() + timeout;
        let mut buf = vec![0u8; 4096];
        while Instant::now() < deadline {
            let n = match socket.recv(&mut buf) {
                Ok(n) => n,
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => break,
                Err(e) => {
                    last = io(e);
                    break;
                }
            };
            let Ok(reply) = Message::from_vec(&buf[..n]) else { continue };
            if !answers_query(&reply, id, &qname, Qtype::Soa) {
                continue;
            }
            return match reply.response_code() {
                ResponseCode::NoError | ResponseCode::NXDomain => Ok(reply.authentic_data()),
                other => Err(fail(Failure::ServerFailure(other.to_string()))),
            };
        }
    }
    Err(last)
}

/// A reply belongs to our query when it is a response with our id and
/// exactly our question (names compared case-insensitively).
fn answers_query(reply: &Message, id: u16, name: &Name, qtype: Qtype) -> bool {
    reply.id() == id
        && reply.message_type() == MessageType::Response
        && matches!(reply.queries(), [q] if q.name() == name && q.query_type() == qtype.record_type())
}

/// One core's resolver. Cheap to clone: clones share the server, timeout
/// and cache, so each task on the core can hold one. Not `Send`: each core
/// builds its own. Lookups must run inside a glommio executor.
#[derive(Clone)]
pub struct Resolver {
    server: SocketAddr,
    timeout: Duration,
    mx_cache: Rc<RefCell<Cache<Answer<Vec<MxHost>>>>>,
    ip_cache: Rc<RefCell<Cache<Answer<Vec<IpAddr>>>>>,
    txt_cache: Rc<RefCell<Cache<Answer<Vec<String>>>>>,
    tlsa_cache: Rc<RefCell<Cache<Answer<Vec<TlsaRecord>>>>>,
    ptr_cache: Rc<RefCell<Cache<Answer<Vec<String>>>>>,
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not the caches: they can hold thousands of entries.
        f.debug_struct("Resolver").field("server", &self.server).field("timeout", &self.timeout).finish_non_exhaustive()
    }
}

impl Resolver {
    /// A resolver asking `server`. `timeout` bounds each of the
    /// [`ATTEMPTS`] UDP tries and the TCP fallback as a whole, so one
    /// query gives up after about `ATTEMPTS × timeout` (plus one `timeout`
    /// if it fell back to TCP). Creates no socket until the first lookup.
    pub fn new(server: SocketAddr, timeout: Duration) -> Resolver {
        Resolver {
            server,
            timeout: timeout.max(Duration::from_millis(1)),
            mx_cache: Rc::new(RefCell::new(Cache::new(CACHE_CAPACITY))),
            ip_cache: Rc::new(RefCell::new(Cache::new(CACHE_CAPACITY))),
            txt_cache: Rc::new(RefCell::new(Cache::new(CACHE_CAPACITY))),
            tlsa_cache: Rc::new(RefCell::new(Cache::new(CACHE_CAPACITY))),
            ptr_cache: Rc::new(RefCell::new(Cache::new(CACHE_CAPACITY))),
        }
    }

    /// The server this resolver asks.
    pub fn server(&self) -> SocketAddr {
        self.server
    }

    /// The MX records of `domain` (cached, negative answers included).
    /// NODATA is [`MxAnswer::NoRecords`], NXDOMAIN [`MxAnswer::NxDomain`];
    /// records come as published, unsorted. Errors are failures to get an
    /// answer; see [`DnsError::is_permanent`].
    pub async fn mx(&self, domain: &str) -> Result<MxAnswer, DnsError> {
        Ok(self.secure_mx(domain).await?.0)
    }

    /// [`Resolver::mx`], and whether the answer was secure (AD), which DANE
    /// requires of the MX RRset (RFC 7672 §2.2.1).
    pub async fn secure_mx(&self, domain: &str) -> Result<(MxAnswer, bool), DnsError> {
        let found = self.lookup(&self.mx_cache, domain, Qtype::Mx, extract_mx).await?;
        let answer = match found.lookup {
            Lookup::Found(records) => MxAnswer::Records(records),
            Lookup::NoData => MxAnswer::NoRecords,
            Lookup::NxDomain => MxAnswer::NxDomain,
        };
        Ok((answer, found.secure))
    }

    /// The TLSA records of the SMTP server `host` on `port`
    /// ([`tlsa_name`]), cached by TTL like the other types. A CNAME at the
    /// TLSA name is followed by the recursive server; the answer's records
    /// of type TLSA are taken and AD covers the whole chain. Errors are
    /// failures to get an answer (SERVFAIL included: a validating resolver
    /// gives it for bogus data).
    pub async fn tlsa(&self, host: &str, port: u16) -> Result<TlsaAnswer, DnsError> {
        let name = tlsa_name(host, port);
        let found = self.lookup(&self.tlsa_cache, &name, Qtype::Tlsa, extract_tlsa).await?;
        Ok(TlsaAnswer::from_answer(found))
    }

    /// The addresses of `host`: its A records, then its AAAA records, both
    /// asked at once and each cached on its own. An empty list means the
    /// host has none (or does not exist). One type failing while the other
    /// has addresses still gives those addresses; an error means no
    /// addresses could be had. An IP address (also `[bracketed]`) is
    /// returned as is, and `localhost` is the loopback (RFC 6761 §6.3),
    /// both without a query.
    pub async fn addresses(&self, host: &str) -> Result<Vec<IpAddr>, DnsError> {
        Ok(self.secure_addresses(host).await?.0)
    }

    /// [`Resolver::addresses`], and whether the answers it got (A, AAAA or
    /// both) were all secure (AD). One type failing while the other had
    /// addresses does not make those insecure: otherwise whoever can make
    /// the AAAA lookup fail could turn DANE off for the host. An address
    /// given as such and `localhost` are never secure.
    pub async fn secure_addresses(&self, host: &str) -> Result<(Vec<IpAddr>, bool), DnsError> {
        let bare = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return Ok((vec![ip], false));
        }
        if normalize(host) == "localhost" {
            return Ok((vec![IpAddr::V4(Ipv4Addr::LOCALHOST), IpAddr::V6(Ipv6Addr::LOCALHOST)], false));
        }
        let (v4, v6) = futures_lite::future::zip(
            self.lookup(&self.ip_cache, host, Qtype::A, extract_a),
            self.lookup(&self.ip_cache, host, Qtype::Aaaa, extract_aaaa),
        )
        .await;
        let found = |r: &Result<Answer<Vec<IpAddr>>, DnsError>| match r {
            Ok(Answer { lookup: Lookup::Found(addrs), .. }) => addrs.clone(),
            _ => Vec::new(),
        };
        let addrs: Vec<IpAddr> = found(&v4).into_iter().chain(found(&v6)).collect();
        match (v4, v6) {
            (Err(e), _) | (_, Err(e)) if addrs.is_empty() => Err(e),
            (v4, v6) => Ok((addrs, [v4, v6].iter().flatten().all(|answer| answer.secure))),
        }
    }

    /// The TXT records of `name` (cached, negative answers included), each
    /// record's strings joined. Errors are failures to get an answer.
    pub async fn txt(&self, name: &str) -> Result<Lookup<Vec<String>>, DnsError> {
        Ok(self.lookup(&self.txt_cache, name, Qtype::Txt, extract_txt).await?.lookup)
    }

    /// The A records of `name` as a definitive answer (cached; NXDOMAIN
    /// and NODATA told apart): what a DNS list query needs.
    pub async fn ipv4(&self, name: &str) -> Result<Lookup<Vec<IpAddr>>, DnsError> {
        Ok(self.lookup(&self.ip_cache, name, Qtype::A, extract_a).await?.lookup)
    }

    /// The PTR names of `ip` (lowercase, no trailing dot; cached), asked
    /// under `in-addr.arpa` or `ip6.arpa`.
    pub async fn ptr(&self, ip: IpAddr) -> Result<Lookup<Vec<String>>, DnsError> {
        let name = crate::screen::site::reverse_zone_name(ip);
        Ok(self.lookup(&self.ptr_cache, &name, Qtype::Ptr, extract_ptr).await?.lookup)
    }

    /// Cache first; on a miss, ask the server and cache the definitive
    /// answer. Failures are not cached.
    async fn lookup<T: Clone>(
        &self,
        cache: &RefCell<Cache<Answer<Vec<T>>>>,
        name: &str,
        qtype: Qtype,
        extract: fn(&RData) -> Option<T>,
    ) -> Result<Answer<Vec<T>>, DnsError> {
        if let Some(hit) = cache.borrow_mut().get(name, qtype, Instant::now()) {
            return Ok(hit);
        }
        let reply = self.query(name, qtype).await?;
        match interpret(&reply, extract) {
            Ok((lookup, ttl)) => {
                let answer = Answer { lookup, secure: reply.authentic_data() };
                cache.borrow_mut().insert(name, qtype, answer.clone(), ttl, Instant::now());
                Ok(answer)
            }
            Err(rcode) => Err(self.error(name, qtype, Failure::ServerFailure(rcode.to_string()))),
        }
    }

    /// One question to the server: UDP tries, then TCP if truncated.
    async fn query(&self, name: &str, qtype: Qtype) -> Result<Message, DnsError> {
        let invalid = |reason: String| self.error(name, qtype, Failure::InvalidName(reason));
        if normalize(name).is_empty() {
            return Err(invalid("empty name".to_string()));
        }
        let mut qname = Name::from_utf8(name).map_err(|e| invalid(e.to_string()))?;
        qname.set_fqdn(true);
        let id: u16 = rand::random();
        let wire = query_message(&qname, qtype, id).to_vec().map_err(|e| invalid(e.to_string()))?;
        let ask = Ask { resolver: self, name, qname: &qname, qtype, id };
        let mut last = None;
        for _ in 0..ATTEMPTS {
            match ask.udp(&wire).await {
                Ok(reply) if reply.truncated() => return ask.tcp(&wire).await,
                Ok(reply) => return Ok(reply),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| ask.fail(Failure::Timeout(ATTEMPTS))))
    }

    fn error(&self, name: &str, qtype: Qtype, failure: Failure) -> DnsError {
        DnsError { server: self.server, name: name.to_string(), qtype, failure }
    }
}

/// One query in flight: what the transports need to send it and to
/// recognise its reply.
struct Ask<'a> {
    resolver: &'a Resolver,
    name: &'a str,
    qname: &'a Name,
    qtype: Qtype,
    id: u16,
}

impl Ask<'_> {
    /// One UDP try on a socket of its own (see the module doc for why).
    /// Stray, undecodable or non-matching datagrams are skipped until the
    /// deadline.
    async fn udp(&self, wire: &[u8]) -> Result<Message, DnsError> {
        let io = |source| self.fail(Failure::Io("UDP", source));
        let local: SocketAddr = match self.resolver.server {
            SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
            SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        let std_socket = std::net::UdpSocket::bind(local).map_err(io)?;
        std_socket.connect(self.resolver.server).map_err(io)?;
        // SAFETY: the fd comes from `into_raw_fd`, so it is open and owned
        // by nothing else; glommio's socket takes ownership and closes it.
        let socket = unsafe { glommio::net::UdpSocket::from_raw_fd(std_socket.into_raw_fd()) };
        socket.send(wire).await.map_err(|e| io(e.into()))?;
        let deadline = Instant::now() + self.resolver.timeout;
        let mut buf = vec![0u8; 4096];
        let mut undecodable = None;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(undecodable.unwrap_or_else(|| self.fail(Failure::Timeout(ATTEMPTS))));
            }
            socket.set_read_timeout(Some(left)).map_err(|e| io(e.into()))?;
            let n = match socket.recv(&mut buf).await {
                Ok(n) => n,
                Err(e) => {
                    let e = std::io::Error::from(e);
                    return Err(match e.kind() {
                        std::io::ErrorKind::TimedOut => {
                            undecodable.unwrap_or_else(|| self.fail(Failure::Timeout(ATTEMPTS)))
                        }
                        _ => io(e),
                    });
                }
            };
            match Message::from_vec(&buf[..n]) {
                Ok(reply) if answers_query(&reply, self.id, self.qname, self.qtype) => return Ok(reply),
                Ok(_) => {}
                Err(e) => undecodable = Some(self.fail(Failure::Malformed(e.to_string()))),
            }
        }
    }

    /// The TCP fallback (RFC 7766): one connection, one length-prefixed
    /// query and reply, all within `timeout`.
    async fn tcp(&self, wire: &[u8]) -> Result<Message, DnsError> {
        let exchange = async {
            let io = |source| self.fail(Failure::Io("TCP", source));
            let len =
                u16::try_from(wire.len()).map_err(|_| self.fail(Failure::Malformed("query too long".to_string())))?;
            let mut stream = glommio::net::TcpStream::connect_timeout(self.resolver.server, self.resolver.timeout)
                .await
                .map_err(|e| io(e.into()))?;
            let mut framed = Vec::with_capacity(wire.len() + 2);
            framed.extend_from_slice(&len.to_be_bytes());
            framed.extend_from_slice(wire);
            stream.write_all(&framed).await.map_err(io)?;
            let mut len = [0u8; 2];
            stream.read_exact(&mut len).await.map_err(io)?;
            let mut body = vec![0u8; usize::from(u16::from_be_bytes(len))];
            stream.read_exact(&mut body).await.map_err(io)?;
            let reply = Message::from_vec(&body).map_err(|e| self.fail(Failure::Malformed(e.to_string())))?;
            if answers_query(&reply, self.id, self.qname, self.qtype) {
                Ok(reply)
            } else {
                Err(self.fail(Failure::Malformed("TCP reply does not match the query".to_string())))
            }
        };
        let deadline = async {
            glommio::timer::sleep(self.resolver.timeout).await;
            Err(self.fail(Failure::Timeout(1)))
        };
        futures_lite::future::or(exchange, deadline).await
    }

    fn fail(&self, failure: Failure) -> DnsError {
        self.resolver.error(self.name, self.qtype, failure)
    }
}

#[cfg(test)]
mod tests {
    // Tests of the resolver against a live (loopback) server are in
    // `testdns.rs`, beside the server they drive.
    use super::*;
    use hickory_proto::rr::rdata::{A, MX, SOA};
    use hickory_proto::rr::Record;

    #[test]
    fn resolv_conf_first_usable_nameserver_wins() {
        let text = "# generated\nsearch example.test\n; comment\nnameserver fe80::1%eth0\n\
                    nameserver 192.0.2.53 # primary\nnameserver 192.0.2.54\n";
        assert_eq!(parse_resolv_conf(text), Some("192.0.2.53".parse().unwrap()));
    }

    #[test]
    fn resolv_conf_ipv6_and_tabs_are_understood() {
        assert_eq!(parse_resolv_conf("nameserver\t2001:db8::53\n"), Some("2001:db8::53".parse().unwrap()));
    }

    #[test]
    fn resolv_conf_without_nameserver_gives_none() {
        assert_eq!(parse_resolv_conf(""), None);
        assert_eq!(parse_resolv_conf("#nameserver 192.0.2.1\noptions ndots:1\nnameserver\n"), None);
        assert_eq!(parse_resolv_conf("nameservers 192.0.2.1\n"), None);
    }

    #[test]
    fn dns_server_setting_defaults_to_port_53() {
        assert_eq!(parse_server("192.0.2.53"), Some("192.0.2.53:53".parse().unwrap()));
        assert_eq!(parse_server("127.0.0.1:5353"), Some("127.0.0.1:5353".parse().unwrap()));
        assert_eq!(parse_server("::1"), Some("[::1]:53".parse().unwrap()));
        assert_eq!(parse_server("[::1]:5353"), Some("[::1]:5353".parse().unwrap()));
        assert_eq!(parse_server("dns.example"), None);
        let err = server_from_config(Some("nope")).unwrap_err();
        assert!(err.to_string().contains("relay.dns_server"), "{err}");
    }

    #[test]
    fn cache_entry_lives_exactly_its_ttl() {
        let t0 = Instant::now();
        let mut cache: Cache<Lookup<Vec<IpAddr>>> = Cache::new(10);
        let found = Lookup::Found(vec!["192.0.2.1".parse().unwrap()]);
        cache.insert("Host.Test.", Qtype::A, found.clone(), Duration::from_secs(300), t0);
        assert_eq!(cache.get("host.test", Qtype::A, t0 + Duration::from_secs(299)), Some(found));
        assert_eq!(cache.get("host.test", Qtype::Aaaa, t0), None);
        assert_eq!(cache.get("host.test", Qtype::A, t0 + Duration::from_secs(300)), None);
        assert!(cache.is_empty(), "an expired entry is dropped when seen");
    }

    #[test]
    fn cache_keeps_negative_answers_for_their_ttl() {
        let t0 = Instant::now();
        let mut cache: Cache<Lookup<Vec<MxHost>>> = Cache::new(10);
        cache.insert("nx.test", Qtype::Mx, Lookup::NxDomain, Duration::from_secs(60), t0);
        cache.insert("nodata.test", Qtype::Mx, Lookup::NoData, Duration::from_secs(5), t0);
        let later = t0 + Duration::from_secs(30);
        assert_eq!(cache.get("nx.test", Qtype::Mx, later), Some(Lookup::NxDomain));
        assert_eq!(cache.get("nodata.test", Qtype::Mx, later), None);
    }

    #[test]
    fn cache_does_not_keep_zero_ttl_answers() {
        let t0 = Instant::now();
        let mut cache: Cache<Lookup<Vec<IpAddr>>> = Cache::new(10);
        cache.insert("a.test", Qtype::A, Lookup::NoData, Duration::ZERO, t0);
        assert_eq!(cache.get("a.test", Qtype::A, t0), None);
    }

    #[test]
    fn full_cache_drops_expired_entries_before_live_ones() {
        let t0 = Instant::now();
        let secs = Duration::from_secs;
        let mut cache: Cache<Lookup<Vec<IpAddr>>> = Cache::new(16);
        for i in 0..8 {
            cache.insert(&format!("short{i}.test"), Qtype::A, Lookup::NoData, secs(10), t0);
            cache.insert(&format!("long{i}.test"), Qtype::A, Lookup::NoData, secs(1000), t0);
        }
        cache.insert("new.test", Qtype::A, Lookup::NoData, secs(500), t0 + secs(20));
        assert_eq!(cache.len(), 9);
        for i in 0..8 {
            let long = cache.get(&format!("long{i}.test"), Qtype::A, t0 + secs(20));
            assert_eq!(long, Some(Lookup::NoData));
        }
    }

    #[test]
    fn cache_never_grows_past_its_capacity() {
        let t0 = Instant::now();
        let mut cache: Cache<Lookup<Vec<IpAddr>>> = Cache::new(16);
        for i in 0..1000 {
            let name = format!("h{i}.test");
            cache.insert(&name, Qtype::A, Lookup::NoData, Duration::from_secs(60), t0);
            assert!(cache.len() <= 16);
            assert_eq!(cache.get(&name, Qtype::A, t0), Some(Lookup::NoData), "newest is kept");
        }
    }

    fn name(s: &str) -> Name {
        Name::from_ascii(s).unwrap()
    }

    fn reply(rcode: ResponseCode) -> Message {
        let mut m = Message::new();
        m.set_message_type(MessageType::Response).set_response_code(rcode);
        m
    }

    fn with_soa(mut m: Message, ttl: u32, minimum: u32) -> Message {
        let soa = SOA::new(name("ns.test."), name("h.test."), 1, 1, 1, 1, minimum);
        m.add_name_server(Record::from_rdata(name("test."), ttl, RData::SOA(soa)));
        m
    }

    #[test]
    fn positive_answer_lives_for_its_smallest_ttl_capped_at_a_day() {
        let mut m = reply(ResponseCode::NoError);
        m.add_answer(Record::from_rdata(name("d.test."), 600, RData::MX(MX::new(10, name("MX1.d.test.")))));
        m.add_answer(Record::from_rdata(name("d.test."), 120, RData::MX(MX::new(20, name("mx2.d.test.")))));
        let (answer, ttl) = interpret(&m, extract_mx).unwrap();
        let expected =
            vec![MxHost { name: "mx1.d.test".into(), pref: 10 }, MxHost { name: "mx2.d.test".into(), pref: 20 }];
        assert_eq!(answer, Lookup::Found(expected));
        assert_eq!(ttl, Duration::from_secs(120));

        let mut long = reply(ResponseCode::NoError);
        long.add_answer(Record::from_rdata(name("h.test."), 7 * 86_400, RData::A(A::new(192, 0, 2, 1))));
        assert_eq!(interpret(&long, extract_a).unwrap().1, MAX_TTL);
    }

    #[test]
    fn negative_answers_use_the_soa_minimum_or_a_default() {
        let (answer, ttl) = interpret(&with_soa(reply(ResponseCode::NXDomain), 900, 30), extract_a).unwrap();
        assert_eq!((answer, ttl), (Lookup::NxDomain, Duration::from_secs(30)));
        // RFC 2308 §5: the SOA record's own TTL bounds it too.
        let (answer, ttl) = interpret(&with_soa(reply(ResponseCode::NoError), 20, 3600), extract_a).unwrap();
        assert_eq!((answer, ttl), (Lookup::NoData, Duration::from_secs(20)));
        let (_, ttl) = interpret(&reply(ResponseCode::NXDomain), extract_a).unwrap();
        assert_eq!(ttl, DEFAULT_NEGATIVE_TTL);
        let (_, ttl) = interpret(&with_soa(reply(ResponseCode::NXDomain), 999_999, 999_999), extract_a).unwrap();
        assert_eq!(ttl, MAX_NEGATIVE_TTL);
    }

    #[test]
    fn records_of_other_types_do_not_count_as_an_answer() {
        let mut m = reply(ResponseCode::NoError);
        m.add_answer(Record::from_rdata(name("h.test."), 60, RData::A(A::new(192, 0, 2, 1))));
        assert_eq!(interpret(&m, extract_aaaa).unwrap().0, Lookup::NoData);
    }

    #[test]
    fn servfail_is_an_error_not_an_answer() {
        assert_eq!(interpret(&reply(ResponseCode::ServFail), extract_a), Err(ResponseCode::ServFail));
        assert_eq!(interpret(&reply(ResponseCode::Refused), extract_a), Err(ResponseCode::Refused));
    }

    #[test]
    fn replies_must_carry_our_id_and_question() {
        let q = name("Host.Test.");
        let mut m = reply(ResponseCode::NoError);
        m.set_id(7).add_query(Query::query(name("host.test."), RecordType::A));
        assert!(answers_query(&m, 7, &q, Qtype::A));
        assert!(!answers_query(&m, 8, &q, Qtype::A));
        assert!(!answers_query(&m, 7, &q, Qtype::Aaaa));
        assert!(!answers_query(&m, 7, &name("other.test."), Qtype::A));
        m.set_message_type(MessageType::Query);
        assert!(!answers_query(&m, 7, &q, Qtype::A), "a query is not a reply");
    }

    #[test]
    fn permanent_only_for_names_that_cannot_exist() {
        let e =
            |failure| DnsError { server: "127.0.0.1:53".parse().unwrap(), name: "x".into(), qtype: Qtype::A, failure };
        assert!(e(Failure::InvalidName("empty".into())).is_permanent());
        assert!(!e(Failure::Timeout(3)).is_permanent());
        assert!(!e(Failure::ServerFailure("SERVFAIL".into())).is_permanent());
    }

    fn tlsa_rdata(usage: u8, data: &[u8]) -> RData {
        use hickory_proto::rr::rdata::tlsa::{Matching, Selector, TLSA};
        RData::TLSA(TLSA::new(usage.into(), Selector::Spki, Matching::Sha256, data.to_vec()))
    }

    #[test]
    fn queries_ask_for_dnssec_with_ad_and_do() {
        let m = query_message(&name("mx.test."), Qtype::Tlsa, 9);
        let wire = Message::from_vec(&m.to_vec().unwrap()).unwrap();
        assert!(wire.authentic_data() && wire.recursion_desired());
        let edns = wire.extensions().as_ref().expect("an OPT record");
        assert!(edns.dnssec_ok());
        assert_eq!(edns.max_payload(), EDNS_PAYLOAD);
        assert_eq!(wire.queries()[0].query_type(), RecordType::TLSA);
    }

    #[test]
    fn tlsa_replies_are_read_with_their_parameters_beside_other_records() {
        let mut m = reply(ResponseCode::NoError);
        let owner = name("_25._tcp.mx.test.");
        m.add_answer(Record::from_rdata(owner.clone(), 300, tlsa_rdata(3, &[0xab; 32])));
        // An RRSIG or a CNAME in the answer is not a TLSA record.
        m.add_answer(Record::from_rdata(owner.clone(), 60, RData::A(A::new(192, 0, 2, 1))));
        m.add_answer(Record::from_rdata(owner, 300, tlsa_rdata(2, &[0xcd; 32])));
        let wire = Message::from_vec(&m.to_vec().unwrap()).unwrap();
        let (answer, ttl) = interpret(&wire, extract_tlsa).unwrap();
        let want = |usage, byte| TlsaRecord { usage, selector: 1, mtype: 1, data: vec![byte; 32] };
        assert_eq!(answer, Lookup::Found(vec![want(3, 0xab), want(2, 0xcd)]));
        assert_eq!(ttl, Duration::from_secs(60));
    }

    #[test]
    fn tlsa_answers_are_secure_insecure_or_a_secure_denial() {
        let records = vec![TlsaRecord { usage: 3, selector: 1, mtype: 1, data: vec![1; 32] }];
        let found = Lookup::Found(records.clone());
        let secure = |lookup, secure| TlsaAnswer::from_answer(Answer { lookup, secure });
        assert_eq!(secure(found.clone(), true), TlsaAnswer::Secure(records));
        assert_eq!(secure(found, false), TlsaAnswer::Insecure);
        assert_eq!(secure(Lookup::NoData, true), TlsaAnswer::NoRecords);
        assert_eq!(secure(Lookup::NxDomain, true), TlsaAnswer::NoRecords);
        assert_eq!(secure(Lookup::NxDomain, false), TlsaAnswer::Insecure);
        assert_eq!(tlsa_name("MX.Example.TEST.", 25), "_25._tcp.mx.example.test");
    }

    #[test]
    fn the_ad_bit_of_a_reply_survives_the_wire() {
        let mut m = reply(ResponseCode::NoError);
        m.set_authentic_data(true);
        assert!(Message::from_vec(&m.to_vec().unwrap()).unwrap().authentic_data());
        m.set_authentic_data(false);
        assert!(!Message::from_vec(&m.to_vec().unwrap()).unwrap().authentic_data());
    }
}
