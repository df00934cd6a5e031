//! LMTP out (RFC 2033) into a real Dovecot (Debian `dovecot-lmtpd`): a
//! domain routed with `relay.routes."example.org" = "lmtp:unix:PATH"` or
//! `"lmtp:127.0.0.1:PORT"` is a final destination. Mail for it is accepted
//! from any client and lands in Dovecot's Maildir; a recipient Dovecot
//! does not know bounces alone, and the queue ends empty; one deferred
//! after the body (a scripted server) stays queued alone.

mod common;

use common::*;
use std::net::TcpStream;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A Dovecot serving LMTP only, from its own directory: users
/// alice@example.org and bob@example.org (passwd-file), Maildirs under
/// `mail/`, a Unix listener and a TCP one on loopback. Stopped (SIGTERM to
/// its master, our child) on drop.
struct Dovecot {
    dir: tempfile::TempDir,
    child: Child,
    socket: PathBuf,
    port: u16,
}

impl Dovecot {
    fn start() -> Dovecot {
        let dir = tempfile::Builder::new().prefix("dovecot").tempdir_in(test_tmp()).unwrap();
        let root = dir.path();
        let mail = root.join("mail");
        std::fs::create_dir_all(root.join("run")).unwrap();
        std::fs::create_dir_all(&mail).unwrap();
        // Dovecot will not store mail as root: as root, the users are
        // nobody's and their home directory is everybody's; otherwise they
        // are the user running the test.
        let me = std::fs::metadata(root).unwrap();
        let (uid, gid, internal) = match me.uid() {
            0 => (65534, 65534, "root".to_string()),
            uid => (uid, me.gid(), std::env::var("USER").unwrap_or_else(|_| uid.to_string())),
        };
        std::fs::set_permissions(&mail, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
        let users: String = ["alice", "bob"]
            .iter()
            .map(|u| format!("{u}@example.org:{{PLAIN}}secret:{uid}:{gid}::{}::\n", mail.join(u).display()))
            .collect();
        std::fs::write(root.join("passwd"), users).unwrap();
        let port = free_port();
        let conf = root.join("dovecot.conf");
        std::fs::write(
            &conf,
            format!(
                r#"base_dir = {root}/run
state_dir = {root}/run/state
log_path = {root}/dovecot.log
protocols = lmtp
listen = 127.0.0.1
ssl = no
default_internal_user = {internal}
default_internal_group = {internal_group}
default_login_user = {internal}
first_valid_uid = 0
mail_location = maildir:~/Maildir
passdb {{
  driver = passwd-file
  args = {root}/passwd
}}
userdb {{
  driver = passwd-file
  args = {root}/passwd
}}
service lmtp {{
  unix_listener lmtp {{
    mode = 0666
  }}
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {port}
  }}
}}
"#,
                root = root.display(),
                internal_group = if me.uid() == 0 { "root".to_string() } else { internal.clone() },
            ),
        )
        .unwrap();
        let child = Command::new(if Path::new("/usr/sbin/dovecot").exists() { "/usr/sbin/dovecot" } else { "dovecot" })
            .arg("-F")
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("dovecot (Debian packages dovecot-core and dovecot-lmtpd; tests/run.sh installs them)");
        let d = Dovecot { socket: root.join("run/lmtp"), dir, child, port };
        let deadline = Instant::now() + Duration::from_secs(15);
        while !d.socket.exists() || TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "dovecot did not listen: {}", d.log());
            std::thread::sleep(Duration::from_millis(20));
        }
        d
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dovecot.log")).unwrap_or_default()
    }

    /// The messages in `user`'s Maildir `new/`, waiting (bounded) for
    /// `count` of them.
    fn wait_for_mail(&self, user: &str, count: usize) -> Vec<String> {
        let new = self.dir.path().join("mail").join(user).join("Maildir/new");
        let mut found = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while found.len() < count {
            assert!(
                Instant::now() < deadline,
                "{count} message(s) for {user} not in {}: {}",
                new.display(),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
            found = std::fs::read_dir(&new)
                .map(|dir| dir.flatten().filter_map(|e| std::fs::read_to_string(e.path()).ok()).collect())
                .unwrap_or_default();
        }
        found
    }

    fn mail_count(&self, user: &str) -> usize {
        let new = self.dir.path().join("mail").join(user).join("Maildir/new");
        std::fs::read_dir(new).map(|d| d.count()).unwrap_or(0)
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child's PID; the master stops its
        // processes on SIGTERM.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

/// A ringmail that routes example.org to `route` and permits relaying to
/// nobody (so anything it accepts, it accepts as a final destination); a
/// second domain goes to an SMTP smarthost that is never reached.
fn server_routing(route: &str) -> Server {
    Server::start_with(Options {
        permit_relay_from: "[]",
        relay: format!(
            "routes = {{ \"example.org\" = \"{route}\", \"smtp-routed.test\" = \"127.0.0.1:{}\" }}\nretry = [\"1h\"]\nconnection_idle = \"30s\"\n",
            free_port()
        ),
        ..Options::default()
    })
}

fn send(server: &Server, from: &str, to: &[&str], subject: &str) {
    let mut c = server.smtp();
    c.expect("EHLO client.test", "250");
    let body = format!("Subject: {subject}\r\nFrom: <{from}>\r\n\r\nvia LMTP\r\n");
    let reply = c.send_mail(from, to, body.as_bytes());
    assert!(reply.starts_with("250"), "{reply}");
}

fn sent_line(server: &Server, to: &str) -> String {
    let needle = format!("to={to}");
    let log = server.log_containing(&["status=\"sent\"", &needle]);
    log.lines().find(|l| l.contains("status=\"sent\"") && l.contains(&needle)).unwrap_or_default().to_string()
}

#[test]
fn mail_for_an_lmtp_domain_reaches_the_maildir_over_a_unix_socket_and_reuses_the_connection() {
    let dovecot = Dovecot::start();
    let server = server_routing(&format!("lmtp:unix:{}", dovecot.socket.display()));
    send(&server, "sender@elsewhere.test", &["alice@example.org"], "first over unix");
    let mail = dovecot.wait_for_mail("alice", 1);
    assert!(mail[0].contains("Subject: first over unix"), "{}", mail[0]);
    let line = sent_line(&server, "alice@example.org");
    assert!(line.contains(&format!("relay=\"lmtp:unix:{}\"", dovecot.socket.display())), "{line}");

    // The connection idles (connection_idle = 30s) and takes the next one.
    send(&server, "sender@elsewhere.test", &["alice@example.org"], "second over unix");
    dovecot.wait_for_mail("alice", 2);
    assert_eq!(dovecot.log().matches("Connect from local").count(), 1, "{}", dovecot.log());
}

#[test]
fn an_lmtp_route_does_not_open_smtp_routes_or_other_domains_to_relaying() {
    let dovecot = Dovecot::start();
    let server = server_routing(&format!("lmtp:unix:{}", dovecot.socket.display()));
    let mut c = server.smtp();
    c.expect("EHLO client.test", "250");
    c.expect("MAIL FROM:<sender@elsewhere.test>", "250");
    c.expect("RCPT TO:<alice@example.org>", "250");
    c.expect("RCPT TO:<anyone@smtp-routed.test>", "554");
    c.expect("RCPT TO:<anyone@not-routed.test>", "554");
    c.expect("RCPT TO:<alice@sub.example.org>", "554");
}

#[test]
fn mail_for_an_lmtp_domain_reaches_the_maildir_over_tcp() {
    let dovecot = Dovecot::start();
    let server = server_routing(&format!("lmtp:127.0.0.1:{}", dovecot.port));
    send(&server, "sender@elsewhere.test", &["bob@example.org"], "over tcp");
    let mail = dovecot.wait_for_mail("bob", 1);
    assert!(mail[0].contains("Subject: over tcp"), "{}", mail[0]);
    let line = sent_line(&server, "bob@example.org");
    let port = dovecot.port;
    assert!(line.contains(&format!("relay=\"lmtp:127.0.0.1:{port}[127.0.0.1:{port}]\"")), "{line}");
}

#[test]
fn an_unknown_recipient_bounces_alone_and_the_queue_ends_empty() {
    let dovecot = Dovecot::start();
    let server = server_routing(&format!("lmtp:unix:{}", dovecot.socket.display()));
    send(&server, "bob@localhost", &["alice@example.org", "nobody@example.org"], "one known, one not");
    dovecot.wait_for_mail("alice", 1);
    let bounce = eventually(Duration::from_secs(20), || {
        let all = fetch_all(&server, "bob@localhost");
        all.into_iter().next().map(|m| String::from_utf8_lossy(&m).into_owned())
    });
    assert!(bounce.contains("Final-Recipient: rfc822; nobody@example.org"), "{bounce}");
    assert!(bounce.contains("Status: 5.1.1"), "{bounce}");
    assert!(!bounce.contains("Final-Recipient: rfc822; alice@example.org"), "{bounce}");
    assert!(bounce.contains("User doesn't exist"), "Dovecot's own reply is quoted: {bounce}");
    // A Unix socket has no DNS name to give as Remote-MTA.
    assert!(!bounce.contains("Remote-MTA:"), "{bounce}");
    assert_eq!(dovecot.mail_count("alice"), 1);
    assert_eq!(dovecot.mail_count("nobody"), 0);
    eventually(Duration::from_secs(10), || {
        let list = String::from_utf8_lossy(&server.cli(&["queue", "list"]).stdout).into_owned();
        list.contains("-- 0 queued").then_some(())
    });
}

/// A scripted LMTP server on a Unix socket (for what Dovecot will not do
/// on demand): after the body it answers `452 4.2.2` for a recipient whose
/// address starts with `full`, `250` for the others; the messages it took.
fn scripted_lmtp(path: &Path) -> std::sync::mpsc::Receiver<String> {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::os::unix::net::UnixListener::bind(path).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut out = stream.try_clone().unwrap();
            let mut lines = BufReader::new(stream);
            let _ = out.write_all(b"220 scripted LMTP\r\n");
            let mut rcpts = Vec::new();
            let mut line = String::new();
            while lines.read_line(&mut line).is_ok_and(|n| n > 0) {
                let verb = line.get(..4).unwrap_or("").to_ascii_uppercase();
                let reply = match verb.as_str() {
                    "LHLO" => "250-scripted\r\n250-PIPELINING\r\n250 ENHANCEDSTATUSCODES\r\n".to_string(),
                    "MAIL" => "250 2.1.0 OK\r\n".to_string(),
                    "RCPT" => {
                        rcpts.push(line.trim_end().trim_start_matches("RCPT TO:").to_string());
                        "250 2.1.5 OK\r\n".to_string()
                    }
                    "DATA" => {
                        let _ = out.write_all(b"354 OK\r\n");
                        let mut body = String::new();
                        let mut l = String::new();
                        while lines.read_line(&mut l).is_ok_and(|n| n > 0) && l != ".\r\n" {
                            body.push_str(&l);
                            l.clear();
                        }
                        let _ = tx.send(body);
                        std::mem::take(&mut rcpts)
                            .iter()
                            .map(|r| match r.starts_with("<full") {
                                true => format!("452 4.2.2 {r} Quota exceeded\r\n"),
                                false => format!("250 2.0.0 {r} Saved\r\n"),
                            })
                            .collect()
                    }
                    "QUIT" => {
                        let _ = out.write_all(b"221 2.0.0 Bye\r\n");
                        break;
                    }
                    _ => "250 2.0.0 OK\r\n".to_string(),
                };
                let _ = out.write_all(reply.as_bytes());
                line.clear();
            }
        }
    });
    rx
}

#[test]
fn a_recipient_deferred_after_the_body_stays_queued_alone() {
    let dir = tempfile::Builder::new().prefix("lmtp").tempdir_in(test_tmp()).unwrap();
    let socket = dir.path().join("lmtp");
    let taken = scripted_lmtp(&socket);
    let server = server_routing(&format!("lmtp:unix:{}", socket.display()));
    send(&server, "sender@elsewhere.test", &["ok@example.org", "full@example.org"], "one saved, one over quota");
    let body = taken.recv_timeout(Duration::from_secs(20)).expect("the LMTP server got the message");
    assert!(body.contains("Subject: one saved, one over quota"), "{body}");
    let log = server.log_containing(&["status=\"sent\"", "status=\"deferred\""]);
    assert!(log.lines().any(|l| l.contains("status=\"sent\"") && l.contains("to=ok@example.org")), "{log}");
    assert!(log.lines().any(|l| l.contains("status=\"deferred\"") && l.contains("to=full@example.org")), "{log}");
    let list = String::from_utf8_lossy(&server.cli(&["queue", "list"]).stdout).into_owned();
    assert!(list.contains("-- 1 queued") && list.contains("full@example.org"), "{list}");
    assert!(!list.contains("ok@example.org"), "the delivered recipient is not kept: {list}");
}

/// Dovecot's LMTP does not offer DSN, and it is the mailbox itself: a
/// recipient that asked for NOTIFY=SUCCESS gets a `delivered` notice from
/// ringmail (not `relayed`, which would mean more hops follow).
#[test]
fn notify_success_over_lmtp_gets_a_delivered_notice() {
    let dovecot = Dovecot::start();
    let server = server_routing(&format!("lmtp:unix:{}", dovecot.socket.display()));
    let mut c = server.smtp();
    c.expect("EHLO client.test", "250");
    c.expect("MAIL FROM:<bob@localhost> ENVID=lmtp-1", "250");
    c.expect("RCPT TO:<alice@example.org> NOTIFY=SUCCESS", "250");
    c.expect("DATA", "354");
    let reply = c.cmd("Subject: success please\r\n\r\nbody\r\n.");
    assert!(reply.starts_with("250"), "{reply}");
    dovecot.wait_for_mail("alice", 1);
    let notice = eventually(Duration::from_secs(20), || {
        let all = fetch_all(&server, "bob@localhost");
        all.into_iter().next().map(|m| String::from_utf8_lossy(&m).into_owned())
    });
    assert!(notice.contains("Action: delivered"), "{notice}");
    assert!(notice.contains("Original-Envelope-Id: lmtp-1"), "{notice}");
    assert!(!dovecot.log().contains("NOTIFY"), "no DSN parameters to a server without DSN");
}
