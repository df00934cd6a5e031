//! A tiny authoritative DNS server for tests, on loopback only.
//!
//! It serves a [`Zone`] built in code over UDP and TCP on the same port of
//! 127.0.0.1, from two plain std threads (no glommio, so it can serve a
//! resolver running in an executor on the test's thread), and stops when
//! the [`TestDns`] is dropped. It can misbehave on purpose: SERVFAIL,
//! truncated UDP answers (the full answer only over TCP), silence, and a
//! decoy reply with the wrong id before the real one. It counts the
//! queries it receives, so tests can prove a cache hit sent none. It can
//! also play a validating resolver: answers about names marked
//! [`Zone::signed`] carry the AD bit (nothing is actually signed), and it
//! serves TLSA records for DANE.
//!
//! It is test tooling: setup failures panic, and it must never listen
//! beyond loopback.
//!
//! ```no_run
//! use ringmail::outbound::testdns::{TestDns, Zone};
//! let dns = TestDns::start(
//!     Zone::new()
//!         .mx("example.test", 10, "mx1.example.test")
//!         .a("mx1.example.test", "127.0.0.2")
//!         .null_mx("null.test")
//!         .nxdomain("nx.test"),
//! );
//! let server = dns.addr(); // give this to the Resolver / relay.dns_server
//! ```

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::rdata::tlsa::{CertUsage, Matching, Selector};
use hickory_proto::rr::rdata::{A, AAAA, MX, PTR, SOA, TLSA, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};

/// How often the server threads look at the stop flag.
const POLL: Duration = Duration::from_millis(20);

/// How a name misbehaves, if it does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Mode {
    #[default]
    Normal,
    NxDomain,
    ServFail,
    Silent,
}

#[derive(Debug, Clone, Default)]
struct Entry {
    mode: Mode,
    /// Over UDP, answer with TC set and no records.
    truncate: bool,
    /// Over UDP, first send a reply with the wrong id and no records.
    decoy: bool,
    mx: Vec<(u16, Name)>,
    a: Vec<Ipv4Addr>,
    aaaa: Vec<Ipv6Addr>,
    /// TXT records, each one value (split into 255-byte strings on the wire).
    txt: Vec<String>,
    /// TLSA records: usage, selector, matching type, data.
    tlsa: Vec<(u8, u8, u8, Vec<u8>)>,
    /// Answers about this name (negative ones included) carry AD.
    signed: bool,
    /// PTR records (reverse DNS).
    ptr: Vec<Name>,
}

/// The names a [`TestDns`] serves. Names are case-insensitive and may be
/// written with or without the trailing dot. A name not mentioned at all
/// is NXDOMAIN; a name mentioned with no records of the asked type is
/// NODATA. Negative answers carry an SOA whose minimum is the negative TTL.
#[derive(Debug, Clone)]
pub struct Zone {
    names: BTreeMap<String, Entry>,
    ttl: u32,
    negative_ttl: u32,
}

impl Default for Zone {
    fn default() -> Zone {
        Zone::new()
    }
}

impl Zone {
    /// An empty zone: TTL 300 s for records, 60 s for negative answers.
    pub fn new() -> Zone {
        Zone { names: BTreeMap::new(), ttl: 300, negative_ttl: 60 }
    }

    fn entry(&mut self, name: &str) -> &mut Entry {
        self.names.entry(key(name)).or_default()
    }

    /// An MX record for `domain`. Panics if `exchange` is not a DNS name.
    pub fn mx(mut self, domain: &str, pref: u16, exchange: &str) -> Zone {
        let exchange = Name::from_ascii(exchange).expect("Zone::mx wants a valid exchange name");
        self.entry(domain).mx.push((pref, exchange));
        self
    }

    /// An A record. Panics if `ip` is not an IPv4 address.
    pub fn a(mut self, host: &str, ip: &str) -> Zone {
        let ip = ip.parse().expect("Zone::a wants an IPv4 address");
        self.entry(host).a.push(ip);
        self
    }

    /// An AAAA record. Panics if `ip` is not an IPv6 address.
    pub fn aaaa(mut self, host: &str, ip: &str) -> Zone {
        let ip = ip.parse().expect("Zone::aaaa wants an IPv6 address");
        self.entry(host).aaaa.push(ip);
        self
    }

    /// A TXT record (SPF, DKIM key, DMARC policy); a value longer than 255
    /// bytes goes as several character-strings of one record, as DNS needs.
    pub fn txt(mut self, name: &str, value: &str) -> Zone {
        self.entry(name).txt.push(value.to_string());
        self
    }

    /// A TLSA record (`_25._tcp.mx.example.test`, usage, selector,
    /// matching type, association data).
    pub fn tlsa(mut self, name: &str, usage: u8, selector: u8, mtype: u8, data: &[u8]) -> Zone {
        self.entry(name).tlsa.push((usage, selector, mtype, data.to_vec()));
        self
    }

    /// Answers about `name` carry the AD bit, as a validating resolver's
    /// do for data that validated (also NODATA for a type it lacks).
    pub fn signed(mut self, name: &str) -> Zone {
        self.entry(name).signed = true;
        self
    }

    /// A PTR record for `ip` (its `in-addr.arpa` / `ip6.arpa` name) naming
    /// `host`. Panics if `ip` is not an address or `host` not a DNS name.
    pub fn ptr(mut self, ip: &str, host: &str) -> Zone {
        let ip: std::net::IpAddr = ip.parse().expect("Zone::ptr wants an IP address");
        let host = Name::from_ascii(host).expect("Zone::ptr wants a valid host name");
        self.entry(&crate::screen::site::reverse_zone_name(ip)).ptr.push(host);
        self
    }

    /// The RFC 7505 null MX: one MX record, preference 0, exchange ".".
    pub fn null_mx(self, domain: &str) -> Zone {
        self.mx(domain, 0, ".")
    }

    /// NXDOMAIN for `name` (also what any unmentioned name gets).
    pub fn nxdomain(mut self, name: &str) -> Zone {
        self.entry(name).mode = Mode::NxDomain;
        self
    }

    /// SERVFAIL for every question about `name`.
    pub fn servfail(mut self, name: &str) -> Zone {
        self.entry(name).mode = Mode::ServFail;
        self
    }

    /// Over UDP, questions about `name` get an empty answer with TC set;
    /// the records come only over TCP.
    pub fn truncate(mut self, name: &str) -> Zone {
        self.entry(name).truncate = true;
        self
    }

    /// Questions about `name` are counted but never answered.
    pub fn silent(mut self, name: &str) -> Zone {
        self.entry(name).mode = Mode::Silent;
        self
    }

    /// Over UDP, each answer about `name` is preceded by a decoy reply with
    /// a different id and a wrong address (192.0.2.66), which a correct
    /// client ignores.
    pub fn decoy(mut self, name: &str) -> Zone {
        self.entry(name).decoy = true;
        self
    }

    /// The TTL of every record served (default 300 s).
    pub fn ttl(mut self, secs: u32) -> Zone {
        self.ttl = secs;
        self
    }

    /// The SOA minimum and TTL on negative answers (default 60 s).
    pub fn negative_ttl(mut self, secs: u32) -> Zone {
        self.negative_ttl = secs;
        self
    }

    /// The reply to `request`, or `None` to stay silent. Over UDP a
    /// truncated name gets TC and no records.
    fn answer(&self, request: &Message, udp: bool) -> Option<Message> {
        let query = request.queries().first()?.clone();
        let mut reply = Message::new();
        reply
            .set_id(request.id())
            .set_message_type(MessageType::Response)
            .set_op_code(request.op_code())
            .set_authoritative(true)
            .set_recursion_desired(request.recursion_desired())
            .set_recursion_available(true)
            .add_query(query.clone());
        let name = query.name().clone();
        let Some(entry) = self.names.get(&key(&name.to_ascii())) else {
            return Some(self.negative(reply, &name, ResponseCode::NXDomain));
        };
        reply.set_authentic_data(entry.signed);
        match entry.mode {
            Mode::Silent => return None,
            Mode::ServFail => {
                reply.set_response_code(ResponseCode::ServFail);
                return Some(reply);
            }
            Mode::NxDomain => return Some(self.negative(reply, &name, ResponseCode::NXDomain)),
            Mode::Normal => {}
        }
        if udp && entry.truncate {
            reply.set_truncated(true);
            return Some(reply);
        }
        let data: Vec<RData> = match query.query_type() {
            RecordType::MX => {
                entry.mx.iter().map(|(pref, exchange)| RData::MX(MX::new(*pref, exchange.clone()))).collect()
            }
            RecordType::A => entry.a.iter().map(|ip| RData::A(A(*ip))).collect(),
            RecordType::AAAA => entry.aaaa.iter().map(|ip| RData::AAAA(AAAA(*ip))).collect(),
            RecordType::PTR => entry.ptr.iter().map(|host| RData::PTR(PTR(host.clone()))).collect(),
            RecordType::TXT => entry
                .txt
                .iter()
                .map(|value| {
                    let strings = value.as_bytes().chunks(255).map(|c| String::from_utf8_lossy(c).into_owned());
                    RData::TXT(TXT::new(strings.collect()))
                })
                .collect(),
            RecordType::TLSA => entry
                .tlsa
                .iter()
                .map(|(usage, selector, mtype, data)| {
                    let (u, s, m) = (CertUsage::from(*usage), Selector::from(*selector), Matching::from(*mtype));
                    RData::TLSA(TLSA::new(u, s, m, data.clone()))
                })
                .collect(),
            _ => Vec::new(),
        };
        if data.is_empty() {
            return Some(self.negative(reply, &name, ResponseCode::NoError));
        }
        for rdata in data {
            reply.add_answer(Record::from_rdata(name.clone(), self.ttl, rdata));
        }
        Some(reply)
    }

    /// NXDOMAIN or NODATA with an SOA in the authority section (RFC 2308).
    fn negative(&self, mut reply: Message, name: &Name, rcode: ResponseCode) -> Message {
        let soa = SOA::new(
            Name::from_ascii("ns.test.").expect("static name"),
            Name::from_ascii("hostmaster.test.").expect("static name"),
            1,
            3600,
            600,
            86_400,
            self.negative_ttl,
        );
        reply.set_response_code(rcode).add_name_server(Record::from_rdata(
            name.clone(),
            self.negative_ttl,
            RData::SOA(soa),
        ));
        reply
    }
}

/// A running test DNS server; stops (and joins its threads) when dropped.
#[derive(Debug)]
pub struct TestDns {
    addr: SocketAddr,
    queries: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl TestDns {
    /// Starts serving `zone` on 127.0.0.1, UDP and TCP on one free port.
    /// Panics if no such port can be bound.
    pub fn start(zone: Zone) -> TestDns {
        let (udp, tcp) = bind_pair();
        TestDns::serve(udp, tcp, zone)
    }

    /// Starts serving `zone` on `addr` (UDP and TCP), which must be on
    /// loopback: for peers that only ask port 53 of their resolv.conf
    /// (libresolv), e.g. at 127.0.53.1:53. Panics if it cannot be bound.
    pub fn start_at(addr: SocketAddr, zone: Zone) -> TestDns {
        assert!(addr.ip().is_loopback(), "the test DNS listens on loopback only");
        let udp = UdpSocket::bind(addr).expect("bind test DNS UDP socket");
        let tcp = TcpListener::bind(addr).expect("bind test DNS TCP socket");
        TestDns::serve(udp, tcp, zone)
    }

    fn serve(udp: UdpSocket, tcp: TcpListener, zone: Zone) -> TestDns {
        let addr = udp.local_addr().expect("local_addr of a bound socket");
        let zone = Arc::new(zone);
        let queries = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let threads = vec![
            spawn("testdns-udp", {
                let (zone, queries, stop) = (zone.clone(), queries.clone(), stop.clone());
                move || serve_udp(udp, &zone, &queries, &stop)
            }),
            spawn("testdns-tcp", {
                let (zone, queries, stop) = (zone, queries.clone(), stop.clone());
                move || serve_tcp(tcp, &zone, &queries, &stop)
            }),
        ];
        TestDns { addr, queries, stop, threads }
    }

    /// The address to send queries to (UDP and TCP).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// How many queries arrived so far, over UDP and TCP, answered or not.
    pub fn queries(&self) -> usize {
        self.queries.load(Ordering::SeqCst)
    }
}

impl Drop for TestDns {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

fn key(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> JoinHandle<()> {
    std::thread::Builder::new().name(name.to_string()).spawn(f).expect("spawn test DNS thread")
}

/// A UDP socket and a TCP listener on the same loopback port. The UDP port
/// is picked by the kernel; if its TCP twin is taken, try another.
fn bind_pair() -> (UdpSocket, TcpListener) {
    for _ in 0..50 {
        let udp = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind test DNS UDP socket");
        let addr = udp.local_addr().expect("local_addr of a bound socket");
        if let Ok(tcp) = TcpListener::bind(addr) {
            return (udp, tcp);
        }
    }
    panic!("no loopback port free for both UDP and TCP");
}

fn serve_udp(socket: UdpSocket, zone: &Zone, queries: &AtomicUsize, stop: &AtomicBool) {
    socket.set_read_timeout(Some(POLL)).expect("set_read_timeout");
    let mut buf = [0u8; 4096];
    while !stop.load(Ordering::SeqCst) {
        let (n, peer) = match socket.recv_from(&mut buf) {
            Ok(got) => got,
            // Read timeout (time to look at `stop`) or a transient error.
            Err(_) => continue,
        };
        let Ok(request) = Message::from_vec(&buf[..n]) else {
            continue;
        };
        queries.fetch_add(1, Ordering::SeqCst);
        let Some(reply) = zone.answer(&request, true) else {
            continue;
        };
        if decoyed(zone, &request) {
            let mut decoy = Message::new();
            decoy
                .set_id(request.id().wrapping_add(1))
                .set_message_type(MessageType::Response)
                .add_queries(request.queries().to_vec());
            if let Some(q) = request.queries().first() {
                decoy.add_answer(Record::from_rdata(q.name().clone(), 300, RData::A(A::new(192, 0, 2, 66))));
            }
            if let Ok(wire) = decoy.to_vec() {
                let _ = socket.send_to(&wire, peer);
            }
        }
        if let Ok(wire) = reply.to_vec() {
            let _ = socket.send_to(&wire, peer);
        }
    }
}

fn decoyed(zone: &Zone, request: &Message) -> bool {
    request.queries().first().and_then(|q| zone.names.get(&key(&q.name().to_ascii()))).is_some_and(|entry| entry.decoy)
}

fn serve_tcp(listener: TcpListener, zone: &Zone, queries: &AtomicUsize, stop: &AtomicBool) {
    listener.set_nonblocking(true).expect("set_nonblocking");
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => serve_tcp_conn(stream, zone, queries),
            Err(_) => std::thread::sleep(POLL),
        }
    }
}

/// Answers length-prefixed queries on one connection until it closes or
/// goes quiet for a second.
fn serve_tcp_conn(mut stream: TcpStream, zone: &Zone, queries: &AtomicUsize) {
    if stream.set_nonblocking(false).is_err() || stream.set_read_timeout(Some(Duration::from_secs(1))).is_err() {
        return;
    }
    loop {
        let mut len = [0u8; 2];
        if stream.read_exact(&mut len).is_err() {
            return;
        }
        let mut body = vec![0u8; usize::from(u16::from_be_bytes(len))];
        if stream.read_exact(&mut body).is_err() {
            return;
        }
        let Ok(request) = Message::from_vec(&body) else {
            return;
        };
        queries.fetch_add(1, Ordering::SeqCst);
        let Some(reply) = zone.answer(&request, false) else {
            continue;
        };
        let Ok(wire) = reply.to_vec() else { return };
        let Ok(len) = u16::try_from(wire.len()) else {
            return;
        };
        let mut framed = len.to_be_bytes().to_vec();
        framed.extend_from_slice(&wire);
        if stream.write_all(&framed).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    //! The core's resolver ([`crate::outbound::dns`]) against this server,
    //! over real loopback sockets inside a glommio executor.
    use super::*;
    use crate::outbound::dns::{Failure, Resolver};
    use crate::outbound::mx::{MxAnswer, MxHost};
    use std::net::IpAddr;
    use std::time::Instant;

    fn run<T>(f: impl std::future::Future<Output = T>) -> T {
        glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .io_memory(1 << 20)
            .make()
            .expect("glommio executor")
            .run(f)
    }

    fn resolver(dns: &TestDns) -> Resolver {
        Resolver::new(dns.addr(), Duration::from_millis(300))
    }

    fn ips(list: &[&str]) -> Vec<IpAddr> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn mx_lookup_returns_the_published_records() {
        let dns = TestDns::start(Zone::new().mx("example.test", 10, "mx1.example.test").mx(
            "example.test",
            20,
            "MX2.example.test",
        ));
        let got = run(async { resolver(&dns).mx("Example.Test").await.unwrap() });
        let expected = vec![
            MxHost { name: "mx1.example.test".into(), pref: 10 },
            MxHost { name: "mx2.example.test".into(), pref: 20 },
        ];
        assert_eq!(got, MxAnswer::Records(expected));
    }

    #[test]
    fn mx_lookup_tells_nodata_from_nxdomain() {
        let dns = TestDns::start(Zone::new().a("plain.test", "127.0.0.2").nxdomain("nx.test"));
        let r = resolver(&dns);
        let (plain, nx, unknown) = run(async {
            (r.mx("plain.test").await.unwrap(), r.mx("nx.test").await.unwrap(), r.mx("unknown.test").await.unwrap())
        });
        assert_eq!(plain, MxAnswer::NoRecords);
        assert_eq!(nx, MxAnswer::NxDomain);
        assert_eq!(unknown, MxAnswer::NxDomain);
    }

    #[test]
    fn null_mx_comes_back_as_a_root_exchange() {
        let dns = TestDns::start(Zone::new().null_mx("null.test"));
        let got = run(async { resolver(&dns).mx("null.test").await.unwrap() });
        assert_eq!(got, MxAnswer::Records(vec![MxHost { name: String::new(), pref: 0 }]));
    }

    #[test]
    fn addresses_are_a_then_aaaa() {
        let dns = TestDns::start(Zone::new().aaaa("h.test", "::1").a("h.test", "127.0.0.2").a("h.test", "127.0.0.3"));
        let got = run(async { resolver(&dns).addresses("h.test").await.unwrap() });
        assert_eq!(got, ips(&["127.0.0.2", "127.0.0.3", "::1"]));
    }

    #[test]
    fn addresses_of_a_missing_host_are_empty() {
        let dns = TestDns::start(Zone::new().mx("only-mx.test", 10, "x.test"));
        let r = resolver(&dns);
        let (missing, nodata) =
            run(async { (r.addresses("missing.test").await.unwrap(), r.addresses("only-mx.test").await.unwrap()) });
        assert!(missing.is_empty() && nodata.is_empty());
    }

    #[test]
    fn ip_addresses_and_localhost_need_no_query() {
        let dns = TestDns::start(Zone::new());
        let r = resolver(&dns);
        let (ip, bracketed, local) = run(async {
            (
                r.addresses("192.0.2.7").await.unwrap(),
                r.addresses("[::1]").await.unwrap(),
                r.addresses("localhost").await.unwrap(),
            )
        });
        assert_eq!((ip, bracketed, local), (ips(&["192.0.2.7"]), ips(&["::1"]), ips(&["127.0.0.1", "::1"])));
        assert_eq!(dns.queries(), 0);
    }

    #[test]
    fn servfail_is_a_temporary_error() {
        let dns = TestDns::start(Zone::new().servfail("broken.test"));
        let err = run(async { resolver(&dns).mx("broken.test").await.unwrap_err() });
        assert!(matches!(err.failure, Failure::ServerFailure(_)), "{err}");
        assert!(!err.is_permanent());
        assert_eq!(dns.queries(), 1, "SERVFAIL is not retried at once");
    }

    #[test]
    fn silent_server_times_out_after_three_fresh_tries() {
        let dns = TestDns::start(Zone::new().silent("slow.test"));
        let r = Resolver::new(dns.addr(), Duration::from_millis(200));
        let start = Instant::now();
        let err = run(async { r.mx("slow.test").await.unwrap_err() });
        assert!(matches!(err.failure, Failure::Timeout(3)), "{err}");
        assert!(!err.is_permanent());
        assert_eq!(dns.queries(), 3);
        assert!(start.elapsed() < Duration::from_secs(5), "lookup must give up: {:?}", start.elapsed());
    }

    #[test]
    fn unreachable_server_is_a_temporary_error() {
        // A bound UDP socket that never reads: replies never come.
        let hole = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let r = Resolver::new(hole.local_addr().unwrap(), Duration::from_millis(100));
        let err = run(async { r.addresses("any.test").await.unwrap_err() });
        assert!(!err.is_permanent(), "{err}");
    }

    #[test]
    fn closed_port_fails_fast_and_temporarily() {
        // ICMP port unreachable surfaces as ECONNREFUSED on the connected
        // socket: each try ends at once instead of waiting out its timeout.
        let port = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap().local_addr().unwrap();
        let r = Resolver::new(port, Duration::from_secs(2));
        let start = Instant::now();
        let err = run(async { r.mx("any.test").await.unwrap_err() });
        assert!(matches!(err.failure, Failure::Io("UDP", _)), "{err}");
        assert!(!err.is_permanent());
        assert!(start.elapsed() < Duration::from_secs(2), "{:?}", start.elapsed());
    }

    #[test]
    fn truncated_answer_is_fetched_over_tcp() {
        let mut zone = Zone::new().truncate("big.test");
        for i in 1..=40 {
            zone = zone.a("big.test", &format!("127.0.1.{i}"));
        }
        let dns = TestDns::start(zone);
        let got = run(async { resolver(&dns).addresses("big.test").await.unwrap() });
        let expected: Vec<IpAddr> = (1..=40).map(|i| IpAddr::V4(Ipv4Addr::new(127, 0, 1, i))).collect();
        assert_eq!(got, expected);
        assert_eq!(dns.queries(), 4, "A and AAAA each over UDP (truncated), then over TCP");
    }

    #[test]
    fn reply_with_the_wrong_id_is_ignored() {
        let dns = TestDns::start(Zone::new().decoy("h.test").a("h.test", "127.0.0.2"));
        let got = run(async { resolver(&dns).addresses("h.test").await.unwrap() });
        assert_eq!(got, ips(&["127.0.0.2"]));
    }

    #[test]
    fn concurrent_lookups_each_get_their_own_answer() {
        let mut zone = Zone::new();
        for i in 1..=20 {
            zone = zone.a(&format!("h{i}.test"), &format!("127.0.2.{i}"));
        }
        let dns = TestDns::start(zone);
        let r = resolver(&dns);
        let got = run(async move {
            let tasks: Vec<_> = (1..=20)
                .map(|i| {
                    let r = r.clone();
                    glommio::spawn_local(async move { (i, r.addresses(&format!("h{i}.test")).await) })
                })
                .collect();
            let mut out = Vec::new();
            for task in tasks {
                out.push(task.await);
            }
            out
        });
        for (i, result) in got {
            assert_eq!(result.unwrap(), vec![IpAddr::V4(Ipv4Addr::new(127, 0, 2, i))], "h{i}.test");
        }
        assert_eq!(dns.queries(), 40, "one A and one AAAA each");
    }

    #[test]
    fn cache_hit_does_not_query_again() {
        let dns =
            TestDns::start(Zone::new().mx("example.test", 10, "mx.example.test").a("mx.example.test", "127.0.0.2"));
        let r = resolver(&dns);
        run(async {
            for _ in 0..3 {
                r.mx("example.test").await.unwrap();
                r.addresses("mx.example.test").await.unwrap();
            }
        });
        assert_eq!(dns.queries(), 3, "MX, A and AAAA once each");
    }

    #[test]
    fn negative_answers_are_cached_too() {
        let dns = TestDns::start(Zone::new().a("plain.test", "127.0.0.2"));
        let r = resolver(&dns);
        run(async {
            for _ in 0..3 {
                assert_eq!(r.mx("nx.test").await.unwrap(), MxAnswer::NxDomain);
                assert_eq!(r.mx("plain.test").await.unwrap(), MxAnswer::NoRecords);
            }
        });
        assert_eq!(dns.queries(), 2);
    }

    #[test]
    fn zero_ttl_answers_are_asked_again() {
        let dns = TestDns::start(Zone::new().ttl(0).mx("example.test", 10, "mx.example.test"));
        let r = resolver(&dns);
        run(async {
            r.mx("example.test").await.unwrap();
            r.mx("example.test").await.unwrap();
        });
        assert_eq!(dns.queries(), 2);
    }

    #[test]
    fn failures_are_not_cached() {
        let dns = TestDns::start(Zone::new().servfail("broken.test"));
        let r = resolver(&dns);
        run(async {
            assert!(r.mx("broken.test").await.is_err());
            assert!(r.mx("broken.test").await.is_err());
        });
        assert_eq!(dns.queries(), 2);
    }

    #[test]
    fn invalid_names_fail_permanently_without_a_query() {
        let dns = TestDns::start(Zone::new());
        let r = resolver(&dns);
        let long_label = format!("{}.test", "x".repeat(64));
        let (empty, long) = run(async { (r.mx("").await.unwrap_err(), r.mx(&long_label).await.unwrap_err()) });
        assert!(empty.is_permanent() && long.is_permanent(), "{empty} / {long}");
        assert_eq!(dns.queries(), 0);
    }

    #[test]
    fn secure_answers_carry_ad_and_are_remembered_so_in_the_cache() {
        let dns = TestDns::start(
            Zone::new()
                .mx("signed.test", 10, "mx.signed.test")
                .a("mx.signed.test", "127.0.0.2")
                .signed("signed.test")
                .signed("mx.signed.test")
                .mx("plain.test", 10, "mx.plain.test")
                .a("mx.plain.test", "127.0.0.3"),
        );
        let r = resolver(&dns);
        let got = run(async {
            let mut out = Vec::new();
            for _ in 0..2 {
                out.push((
                    r.secure_mx("signed.test").await.unwrap().1,
                    r.secure_addresses("mx.signed.test").await.unwrap().1,
                    r.secure_mx("plain.test").await.unwrap().1,
                    r.secure_addresses("mx.plain.test").await.unwrap().1,
                ));
            }
            out
        });
        assert_eq!(got, [(true, true, false, false), (true, true, false, false)]);
        assert_eq!(dns.queries(), 6, "the second round came from the cache, AD included");
    }

    #[test]
    fn tlsa_lookups_tell_secure_records_insecure_ones_and_secure_denials() {
        use crate::outbound::dane::TlsaRecord;
        use crate::outbound::dns::TlsaAnswer;
        let dns = TestDns::start(
            Zone::new()
                .tlsa("_25._tcp.mx.signed.test", 3, 1, 1, &[0xab; 32])
                .signed("_25._tcp.mx.signed.test")
                .tlsa("_25._tcp.mx.plain.test", 3, 1, 1, &[0xab; 32])
                .a("_25._tcp.mx.none.test", "127.0.0.9")
                .signed("_25._tcp.mx.none.test")
                .servfail("_25._tcp.mx.bogus.test"),
        );
        let r = resolver(&dns);
        let (signed, plain, none, bogus) = run(async {
            (
                r.tlsa("MX.signed.test", 25).await.unwrap(),
                r.tlsa("mx.plain.test", 25).await.unwrap(),
                r.tlsa("mx.none.test", 25).await.unwrap(),
                r.tlsa("mx.bogus.test", 25).await.unwrap_err(),
            )
        });
        let record = TlsaRecord { usage: 3, selector: 1, mtype: 1, data: vec![0xab; 32] };
        assert_eq!(signed, TlsaAnswer::Secure(vec![record]));
        assert_eq!(plain, TlsaAnswer::Insecure);
        assert_eq!(none, TlsaAnswer::NoRecords);
        assert!(matches!(bogus.failure, Failure::ServerFailure(_)), "{bogus}");
    }

    #[test]
    fn the_blocking_probe_sees_whether_ad_is_set() {
        let signed = TestDns::start(Zone::new().signed("."));
        let plain = TestDns::start(Zone::new());
        let broken = TestDns::start(Zone::new().servfail("."));
        let probe = |dns: &TestDns| crate::outbound::dns::probe_ad(dns.addr(), ".", Duration::from_millis(500));
        assert!(probe(&signed).unwrap());
        assert!(!probe(&plain).unwrap(), "an unsigned NXDOMAIN has no AD");
        assert!(probe(&broken).is_err());
    }
}
