//! SMTPUTF8 and CHUNKING against a real peer: a private Postfix instance
//! (Debian's postfix, its own config and queue directories, loopback only)
//! relaying into ringmail, and ringmail relaying into it. Needs root (as
//! `tests/run.sh` runs) and postfix; skipped with a note otherwise.
//!
//! Postfix's own SMTP client never sends BDAT (only its smtpd takes it),
//! so the Postfix -> ringmail direction exercises SMTPUTF8 only; BDAT is
//! exercised by ringmail -> Postfix.

mod common;
#[path = "common/sink.rs"]
mod sink;

use common::*;
use sink::{Script, Sink};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const UTF8_USER: &str = "\u{7528}\u{6237}@example.test";

/// A private Postfix: smtpd on `port`, everything relayed to `relayhost`.
/// Stopped on drop.
struct Postfix {
    dir: tempfile::TempDir,
    port: u16,
}

impl Postfix {
    /// None (with a note) where Postfix cannot run: not root, or no postfix.
    fn start(relayhost: std::net::SocketAddr) -> Option<Postfix> {
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        let installed = Path::new("/usr/sbin/postfix").exists();
        if !root || !installed {
            eprintln!("skipped: needs root and Debian's postfix (root={root}, installed={installed})");
            return None;
        }
        let dir = tempfile::Builder::new().prefix("postfix-utf8").tempdir_in(test_tmp()).unwrap();
        let d = dir.path();
        for sub in ["etc", "queue", "data"] {
            std::fs::create_dir_all(d.join(sub)).unwrap();
        }
        // The parent must be traversable by the postfix user.
        for p in [d, d.parent().unwrap()] {
            Command::new("chmod").arg("755").arg(p).status().unwrap();
        }
        Command::new("chown").args(["postfix", &d.join("data").display().to_string()]).status().unwrap();
        let port = free_port();
        let d_str = d.display();
        std::fs::write(
            d.join("etc/main.cf"),
            format!(
                "compatibility_level = 3.6\nqueue_directory = {d_str}/queue\ndata_directory = {d_str}/data\n\
                 mail_owner = postfix\nsetgid_group = postdrop\nsyslog_name = postfix-utf8\n\
                 maillog_file = {d_str}/maillog\nmaillog_file_prefixes = {d_str}\n\
                 myhostname = pf.postfix.test\nmydomain = postfix.test\ninet_interfaces = 127.0.0.1\n\
                 inet_protocols = ipv4\nmydestination =\nmynetworks = 127.0.0.0/8\n\
                 smtpd_relay_restrictions = permit_mynetworks, reject\nalias_maps =\nalias_database =\n\
                 smtputf8_enable = yes\nsmtp_tls_security_level = may\nsmtpd_tls_security_level = none\n\
                 relayhost = [{}]:{}\nbiff = no\n",
                relayhost.ip(),
                relayhost.port()
            ),
        )
        .unwrap();
        std::fs::write(
            d.join("etc/master.cf"),
            format!(
                "127.0.0.1:{port} inet n - n - - smtpd\n\
                 pickup unix n - n 60 1 pickup\ncleanup unix n - n - 0 cleanup\nqmgr unix n - n 300 1 qmgr\n\
                 rewrite unix - - n - - trivial-rewrite\nbounce unix - - n - 0 bounce\n\
                 defer unix - - n - 0 bounce\ntrace unix - - n - 0 bounce\nverify unix - - n - 1 verify\n\
                 flush unix n - n 1000? 0 flush\nproxymap unix - - n - - proxymap\n\
                 proxywrite unix - - n - 1 proxymap\nsmtp unix - - n - - smtp\nrelay unix - - n - - smtp\n\
                 showq unix n - n - - showq\nerror unix - - n - - error\nretry unix - - n - - error\n\
                 discard unix - - n - - discard\nlocal unix - n n - - local\nanvil unix - - n - 1 anvil\n\
                 scache unix - - n - 1 scache\npostlog unix-dgram n - n - 1 postlogd\n"
            ),
        )
        .unwrap();
        let pf = Postfix { dir, port };
        let out = Command::new("postfix").arg("-c").arg(pf.etc()).arg("start").output().unwrap();
        assert!(out.status.success(), "postfix start: {}{}", String::from_utf8_lossy(&out.stderr), pf.log());
        eventually(Duration::from_secs(20), || std::net::TcpStream::connect(("127.0.0.1", port)).ok().map(|_| ()));
        Some(pf)
    }

    fn etc(&self) -> PathBuf {
        self.dir.path().join("etc")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("maillog")).unwrap_or_default()
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        let _ = Command::new("postfix").arg("-c").arg(self.etc()).arg("stop").output();
    }
}

/// Python's smtplib sends `msg` with SMTPUTF8 to `port`.
fn smtplib_send(port: u16, from: &str, to: &str) {
    let script = r#"
import smtplib, sys
port, sender, rcpt = int(sys.argv[1]), sys.argv[2], sys.argv[3]
msg = ("From: " + sender + "\r\nTo: " + rcpt + "\r\nSubject: caf\u00e9\r\n\r\nhello " + rcpt + "\r\n").encode("utf-8")
with smtplib.SMTP("127.0.0.1", port) as s:
    s.ehlo("client.test")
    assert s.has_extn("smtputf8"), s.esmtp_features
    assert s.sendmail(sender, [rcpt], msg, mail_options=["SMTPUTF8"]) == {}
"#;
    let out = Command::new("python3").args(["-c", script, &port.to_string(), from, to]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn postfix_relays_smtputf8_mail_into_ringmail_for_a_utf8_user() {
    let mut server = Server::configure(Options::default());
    add_user(&server.config, UTF8_USER, PASSWORD);
    server.spawn();
    let Some(postfix) = Postfix::start(server.smtp) else { return };
    smtplib_send(postfix.port, "sender@postfix.test", UTF8_USER);
    let msgs = eventually(Duration::from_secs(30), || {
        let msgs = fetch_all(&server, UTF8_USER);
        (!msgs.is_empty()).then_some(msgs)
    });
    let text = String::from_utf8_lossy(&msgs[0]).into_owned();
    assert!(text.contains(&format!("hello {UTF8_USER}")), "{text}");
    assert!(text.contains("Subject: caf\u{e9}"), "{text}");
    assert!(postfix.log().contains("status=sent"), "{}", postfix.log());
}

#[test]
fn ringmail_relays_smtputf8_mail_by_bdat_into_postfix_which_passes_it_on() {
    let sink = Sink::start("127.0.0.1", 0, Script { extensions: &["SMTPUTF8"], ..Script::default() });
    let Some(postfix) = Postfix::start(sink.addr) else { return };
    let server = Server::start_with(Options {
        relay: format!("routes = {{ \"remote.test\" = \"127.0.0.1:{}\" }}\nretry = [\"1s\"]\n", postfix.port),
        ..Options::default()
    });
    let to = "j\u{e4}ne@remote.test";
    smtplib_send(server.smtp.port(), "bob@localhost", to);
    let got = eventually(Duration::from_secs(30), || sink.received().pop());
    assert_eq!(got.to, [to]);
    // Postfix passes SMTPUTF8 on only for mail that came to it with it.
    assert!(got.mail_line.ends_with(" SMTPUTF8"), "{}", got.mail_line);
    // Postfix's smtpd words its reply to BDAT LAST "Ok: N bytes queued as"
    // (after DATA: "Ok: queued as"); its per-session `bdat=1` count is
    // logged only at disconnect, and ringmail keeps the connection open.
    let log = server.log_containing(&["delivered", "bytes queued as"]);
    assert!(log.lines().any(|l| l.contains("delivered") && l.contains("bytes queued as")), "{log}");
    assert!(postfix.log().contains("status=sent"), "{}", postfix.log());
}

#[test]
fn binarymime_mail_for_postfix_bounces_5_6_3_as_postfix_does_not_offer_binarymime() {
    let sink = Sink::start("127.0.0.1", 0, Script::default());
    let Some(postfix) = Postfix::start(sink.addr) else { return };
    let server = Server::start_with(Options {
        relay: format!("routes = {{ \"remote.test\" = \"127.0.0.1:{}\" }}\nretry = [\"1s\"]\n", postfix.port),
        ..Options::default()
    });
    let mut c = server.smtp();
    c.expect("EHLO client.test", "250");
    c.expect("MAIL FROM:<bob@localhost> BODY=BINARYMIME", "250");
    c.expect("RCPT TO:<x@remote.test>", "250");
    c.send(b"BDAT 12 LAST\r\nSubject: b\r\n\r\n");
    assert!(c.reply().starts_with("250 2.0.0 Ok: queued"));
    eventually(Duration::from_secs(30), || (mailbox_count(&server, "bob@localhost") == 1).then_some(()));
    let dsn = String::from_utf8_lossy(&fetch_all(&server, "bob@localhost").remove(0)).into_owned();
    assert!(dsn.contains("5.6.3"), "{dsn}");
    assert_eq!(sink.received().len(), 0);
}
