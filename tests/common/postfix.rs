//! A private Postfix instance (Debian's `postfix`) as a real SMTP peer:
//! its smtpd on a loopback port, and its smtp client sending each listed
//! domain to a given address (transport_maps). Everything lives in a
//! temporary directory; `postfix -c DIR stop` on drop stops only this
//! instance (the master it started), never a system Postfix.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

pub struct Postfix {
    pub dir: tempfile::TempDir,
    /// Where its smtpd listens.
    pub smtp: SocketAddr,
}

impl Postfix {
    /// Starts an instance listening on `127.0.0.1:port` that relays mail
    /// for each `(domain, address)` to that address; `extra` lines go into
    /// main.cf. Returns once smtpd accepts connections.
    pub fn start(port: u16, routes: &[(&str, SocketAddr)], extra: &str) -> Postfix {
        let dir = tempfile::Builder::new().prefix("postfix").tempdir_in(crate::common::test_tmp()).unwrap();
        let d = dir.path();
        for sub in ["etc", "queue", "data"] {
            std::fs::create_dir_all(d.join(sub)).unwrap();
        }
        // The postfix user must be able to reach its directories.
        for p in [d, d.parent().unwrap()] {
            Command::new("chmod").arg("755").arg(p).status().unwrap();
        }
        let status = Command::new("chown").arg("postfix").arg(d.join("data")).status().unwrap();
        assert!(status.success(), "chown postfix");
        let transport: String =
            routes.iter().map(|(domain, addr)| format!("{domain} smtp:[{}]:{}\n", addr.ip(), addr.port())).collect();
        std::fs::write(d.join("etc/transport"), transport).unwrap();
        let relay_domains: Vec<&str> = routes.iter().map(|(domain, _)| *domain).collect();
        let p = |s: &str| d.join(s).display().to_string();
        let main_cf = format!(
            "compatibility_level = 3.6
queue_directory = {queue}
data_directory = {data}
mail_owner = postfix
setgid_group = postdrop
syslog_name = postfix-test
maillog_file = {log}
maillog_file_prefixes = {prefix}
myhostname = peer.postfix.test
mydomain = postfix.test
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mydestination =
relay_domains = {relay_domains}
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
transport_maps = texthash:{transport}
alias_maps =
alias_database =
smtputf8_enable = yes
smtp_tls_security_level = may
smtpd_tls_security_level = none
smtp_connection_cache_on_demand = no
biff = no
{extra}
",
            queue = p("queue"),
            data = p("data"),
            log = p("maillog"),
            prefix = d.display(),
            relay_domains = relay_domains.join(", "),
            transport = p("etc/transport"),
        );
        std::fs::write(d.join("etc/main.cf"), main_cf).unwrap();
        let master_cf = format!(
            "127.0.0.1:{port} inet n - n - - smtpd
pickup    unix  n - n 60 1 pickup
cleanup   unix  n - n - 0 cleanup
qmgr      unix  n - n 300 1 qmgr
rewrite   unix  - - n - - trivial-rewrite
bounce    unix  - - n - 0 bounce
defer     unix  - - n - 0 bounce
trace     unix  - - n - 0 bounce
verify    unix  - - n - 1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n - - proxymap
proxywrite unix - - n - 1 proxymap
smtp      unix  - - n - - smtp
relay     unix  - - n - - smtp
showq     unix  n - n - - showq
error     unix  - - n - - error
retry     unix  - - n - - error
discard   unix  - - n - - discard
anvil     unix  - - n - 1 anvil
scache    unix  - - n - 1 scache
postlog   unix-dgram n - n - 1 postlogd
"
        );
        std::fs::write(d.join("etc/master.cf"), master_cf).unwrap();
        let out = Command::new("postfix").arg("-c").arg(d.join("etc")).arg("start").output().unwrap();
        let smtp: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let pf = Postfix { dir, smtp };
        assert!(
            out.status.success(),
            "postfix start: {}{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            pf.log()
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(smtp).is_err() {
            assert!(Instant::now() < deadline, "Postfix does not listen on {smtp}: {}", pf.log());
            std::thread::sleep(Duration::from_millis(50));
        }
        pf
    }

    /// Its mail log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("maillog")
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        let _ = Command::new("postfix").arg("-c").arg(self.dir.path().join("etc")).arg("stop").output();
    }
}

/// Postfix's smtp-sink (it offers PIPELINING) on `127.0.0.1:port`, keeping
/// one file per message under `dump`, which is made writable for it: it
/// refuses to keep root privileges, hence `-u nobody` as root. Returns
/// once it accepts connections; kill the child when done.
pub fn smtp_sink(port: u16, dump: &std::path::Path) -> std::process::Child {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dump, std::fs::Permissions::from_mode(0o777)).unwrap();
    let mut cmd = Command::new("/usr/sbin/smtp-sink");
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        cmd.args(["-u", "nobody"]);
    }
    let sink = cmd
        .arg("-d")
        .arg(format!("{}/%H%M%S.", dump.display()))
        .arg(format!("127.0.0.1:{port}"))
        .arg("10")
        .spawn()
        .expect("/usr/sbin/smtp-sink (install postfix; tests/run.sh does)");
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "smtp-sink does not listen on {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
    sink
}
