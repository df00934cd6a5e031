//! Start-up hardening: what `check-config` refuses (and that it refuses
//! what `serve` would), which config a subcommand uses without `--config`,
//! busy and privileged ports told at once without touching the running
//! server, and the `run_as` privilege drop.

mod common;

use common::*;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const NOBODY: u32 = 65534;

fn ringmail(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ringmail")).args(args).env_remove("RINGMAIL_LOG").output().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A temp dir with `r.toml` holding `text`; returns (dir, config path).
fn config(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir_in(test_tmp()).unwrap();
    let path = dir.path().join("r.toml");
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

fn check(path: &Path) -> Output {
    ringmail(&["check-config", "--config", path.to_str().unwrap()])
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn allowed_cpus() -> usize {
    // SAFETY: a zeroed cpu_set_t is valid; sched_getaffinity fills it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) }, 0);
    (0..libc::CPU_SETSIZE as usize).filter(|&c| unsafe { libc::CPU_ISSET(c, &set) }).count()
}

fn chown(path: &Path, uid: u32) {
    std::os::unix::fs::chown(path, Some(uid), Some(uid)).unwrap();
}

fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn check_config_takes_dash_dash_config_and_still_the_positional_file() {
    let port = free_port();
    let (dir, path) = config(&format!("data_dir = \"d\"\n[listen]\nsmtp = \"127.0.0.1:{port}\"\n"));
    let out = check(&path);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("r.toml: OK"));
    let out = ringmail(&["check-config", path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!dir.path().join("d").exists(), "checking creates nothing");
}

#[test]
fn two_listeners_on_one_address_are_refused_naming_both_keys_and_the_address() {
    let p = free_port();
    let cases = [
        (format!("smtp = \"127.0.0.1:{p}\"\npop3 = \"127.0.0.1:{p}\""), "listen.smtp and listen.pop3"),
        (format!("smtp = \"0.0.0.0:{p}\"\nsubmission = \"127.0.0.1:{p}\""), "listen.smtp and listen.submission"),
        (format!("pop3 = \"127.0.0.1:{p}\"\npop3s = \"[::]:{p}\""), "listen.pop3 and listen.pop3s"),
        (format!("smtp = \"127.0.0.1:{p}\"\nmetrics = \"0.0.0.0:{p}\""), "listen.smtp and listen.metrics"),
    ];
    for (listen, keys) in cases {
        let (_dir, path) = config(&format!("data_dir = \"d\"\n[listen]\n{listen}\n"));
        let out = check(&path);
        assert!(!out.status.success(), "{listen}");
        let err = stderr(&out);
        assert!(err.contains(keys) && err.contains(&format!(":{p}")), "{listen}:\n{err}");
        let out = ringmail(&["serve", "--config", path.to_str().unwrap()]);
        assert!(!out.status.success() && stderr(&out).contains(keys), "serve refuses it too: {}", stderr(&out));
    }
    // Different addresses on one port, or IPv6 loopback beside an IPv4
    // wildcard, are fine.
    let (_dir, path) =
        config(&format!("data_dir = \"d\"\n[listen]\nsmtp = \"127.0.0.1:{p}\"\npop3 = \"127.0.0.2:{p}\"\n"));
    assert!(check(&path).status.success(), "{}", stderr(&check(&path)));
}

#[test]
fn more_cores_than_the_affinity_mask_allows_are_refused_saying_how_many() {
    let n = allowed_cpus();
    let (_dir, path) = config(&format!("cores = {}\n[listen]\nsmtp = \"127.0.0.1:{}\"\n", n + 1, free_port()));
    let out = check(&path);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains(&format!("cores = {}", n + 1)) && err.contains(&format!("may use {n} CPU")), "{err}");
    let (_dir, path) =
        config(&format!("cores = {n}\ndata_dir = \"d\"\n[listen]\nsmtp = \"127.0.0.1:{}\"\n", free_port()));
    assert!(check(&path).status.success());
}

#[test]
fn zero_counts_and_zero_timeouts_are_refused_where_zero_means_nothing() {
    let (_dir, path) = config(&format!(
        "[listen]\nsmtp = \"127.0.0.1:{}\"\n[limits]\nmax_commands = 0\nmax_errors = 0\nsmtp_idle_timeout = \"0s\"\n\
         [relay]\nretry = [\"1m\", \"0s\"]\n[relay.timeouts]\nconnect = \"0s\"\n[auth]\nmax_failures_per_connection = 0\n",
        free_port()
    ));
    let out = check(&path);
    assert!(!out.status.success());
    let err = stderr(&out);
    for key in [
        "limits.max_commands = 0",
        "limits.max_errors = 0",
        "limits.smtp_idle_timeout = \"0s\"",
        "relay.retry[1] = \"0s\"",
        "relay.timeouts.connect = \"0s\"",
        "auth.max_failures_per_connection = 0",
    ] {
        assert!(err.contains(key), "{key} missing:\n{err}");
    }
    // Zero where it is documented to mean "never" or "off".
    let (_dir, path) = config(&format!(
        "data_dir = \"d\"\n[listen]\nsmtp = \"127.0.0.1:{}\"\n[limits]\nmax_messages_per_minute_per_ip = 0\n\
         [relay]\ndelay_warning = \"0s\"\nconnection_idle = \"0s\"\n[spool]\ncompact_below = 0\n[auth]\nfailure_delay = \"0s\"\n",
        free_port()
    ));
    let out = check(&path);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn check_config_fails_where_serve_would_and_says_each_os_error_once() {
    let port = free_port();
    let (dir, path) = config(&format!(
        "data_dir = \"d\"\n[listen]\nsmtp = \"127.0.0.1:{port}\"\n[tls]\ncert = \"missing-cert.pem\"\nkey = \"missing-key.pem\"\n"
    ));
    let cert = dir.path().join("missing-cert.pem");
    for out in [check(&path), ringmail(&["serve", "--config", path.to_str().unwrap()])] {
        assert!(!out.status.success());
        let err = stderr(&out);
        assert!(err.contains(&cert.display().to_string()), "{err}");
        assert_eq!(err.matches("No such file or directory").count(), 1, "the OS error once:\n{err}");
    }
    let (_dir, path) = config(&format!("data_dir = \"/proc/ringmail-test\"\n[listen]\nsmtp = \"127.0.0.1:{port}\"\n"));
    for out in [check(&path), ringmail(&["serve", "--config", path.to_str().unwrap()])] {
        assert!(!out.status.success());
        let err = stderr(&out);
        assert!(err.contains("data_dir = /proc/ringmail-test"), "{err}");
    }
}

#[test]
fn without_dash_dash_config_the_default_file_is_used_else_a_notice_names_the_embedded_one() {
    let (dir, path) =
        config("data_dir = \"d\"\nlocal_domains = [\"localhost\"]\n[listen]\nsmtp = \"127.0.0.1:2525\"\n");
    let elsewhere = tempfile::tempdir_in(test_tmp()).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ringmail"))
        .args(["user", "add", "dora@localhost"])
        .env("RINGMAIL_DEFAULT_CONFIG", &path)
        .current_dir(elsewhere.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"secret\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let users = std::fs::read_to_string(dir.path().join("d/users")).unwrap();
    assert!(users.contains("dora@localhost"), "{users}");
    assert!(!elsewhere.path().join("ringmail-data").exists(), "nothing under the working directory");

    let missing = elsewhere.path().join("no-such.toml");
    let out = Command::new(env!("CARGO_BIN_EXE_ringmail"))
        .args(["check-config"])
        .env("RINGMAIL_DEFAULT_CONFIG", &missing)
        .current_dir(elsewhere.path())
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "one line:\n{err}");
    assert!(err.contains("embedded default") && err.contains(&missing.display().to_string()), "{err}");
}

/// Lines of a session being opened in a server log.
fn connects(log: &str) -> usize {
    log.lines().filter(|l| l.split_whitespace().any(|w| w == "connect")).count()
}

#[test]
fn a_busy_port_is_reported_at_once_naming_the_holder_without_connecting_to_it() {
    let running = Server::start();
    let before = connects(&running.log());
    let (_dir, path) = config(&format!(
        "data_dir = \"d\"\n[listen]\npop3 = \"127.0.0.1:{}\"\nsmtp = \"{}\"\n[runtime]\nio_memory = 1048576\n",
        free_port(),
        running.smtp
    ));
    let out = ringmail(&["serve", "--config", path.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains(&running.smtp.to_string()) && err.contains("listen.smtp"), "{err}");
    assert!(err.contains(&format!("in use by process {}", running.pid())), "{err}");
    // Our own session is the marker: once it is in the log, anything the
    // failed start did would be too.
    let mut c = running.smtp();
    c.expect("QUIT", "221");
    let log = running.log_containing(&["disconnect"]);
    assert_eq!(connects(&log) - before, 1, "only the marker session reached the running server:\n{log}");
    if is_root() {
        assert!(log.contains("running as root without run_as"), "{log}");
    }
}

#[test]
fn a_privileged_port_without_root_says_permission_denied() {
    let first = std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start").unwrap_or_default();
    if !is_root() || first.trim().parse::<u16>().unwrap_or(0) <= 25 {
        eprintln!("skipped: needs root (to run the server as nobody) and port 25 privileged");
        return;
    }
    let (dir, path) = config("data_dir = \"d\"\n[listen]\nsmtp = \"127.0.0.1:25\"\n[runtime]\nio_memory = 1048576\n");
    chmod(dir.path(), 0o755);
    std::fs::create_dir(dir.path().join("d")).unwrap();
    chown(&dir.path().join("d"), NOBODY);
    let out = Command::new(env!("CARGO_BIN_EXE_ringmail"))
        .args(["serve", "--config", path.to_str().unwrap()])
        .uid(NOBODY)
        .gid(NOBODY)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("127.0.0.1:25") && err.contains("permission denied"), "{err}");
    assert!(err.contains("CAP_NET_BIND_SERVICE") && !err.contains("in use"), "{err}");
}

#[test]
fn check_config_refuses_an_unknown_run_as_user_and_a_data_dir_it_cannot_write() {
    let port = free_port();
    let (_dir, path) = config(&format!("run_as = \"no-such-ringmail-user\"\n[listen]\nsmtp = \"127.0.0.1:{port}\"\n"));
    let out = check(&path);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("run_as = \"no-such-ringmail-user\": no such user"), "{}", stderr(&out));
    if !is_root() {
        eprintln!("skipped the data_dir part: needs root to check as another user");
        return;
    }
    let (dir, path) =
        config(&format!("run_as = \"nobody\"\ndata_dir = \"d\"\n[listen]\nsmtp = \"127.0.0.1:{port}\"\n"));
    chmod(dir.path(), 0o755);
    let data = dir.path().join("d");
    std::fs::create_dir(&data).unwrap(); // root's, 0755
    let out = check(&path);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains(&format!("{} is not writable", data.display())) && err.contains("nobody"), "{err}");
    chown(&data, NOBODY);
    let out = check(&path);
    assert!(out.status.success(), "{}", stderr(&out));
    // Files re-read at SIGHUP must be readable by the user too.
    let users = data.join("users");
    std::fs::write(&users, "# nobody may read this\n").unwrap();
    chmod(&users, 0o600);
    let out = check(&path);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains(&format!("{}: cannot read", users.display())) && err.contains("nobody"), "{err}");
}

#[test]
fn started_as_root_with_run_as_every_thread_becomes_the_user_and_mail_still_flows() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let mut server = Server::configure(Options::default());
    let text = std::fs::read_to_string(&server.config).unwrap();
    std::fs::write(&server.config, format!("run_as = \"nobody\"\n{text}")).unwrap();
    chmod(server.dir.path(), 0o755);
    std::fs::create_dir_all(server.data_dir()).unwrap();
    chown(&server.data_dir(), NOBODY);
    chown(&server.dir.path().join("users"), NOBODY);
    server.spawn();

    let pid = server.pid();
    let tasks: Vec<_> = std::fs::read_dir(format!("/proc/{pid}/task")).unwrap().flatten().collect();
    assert!(tasks.len() > 2, "executors are threads");
    for task in tasks {
        let status = std::fs::read_to_string(task.path().join("status")).unwrap();
        let field = |name: &str| {
            status.lines().find_map(|l| l.strip_prefix(name)).unwrap().split_whitespace().collect::<Vec<_>>()
        };
        assert_eq!(field("Uid:"), ["65534"; 4], "{status}");
        assert_eq!(field("Gid:"), ["65534"; 4], "{status}");
        assert_eq!(field("CapEff:"), ["0000000000000000"], "{status}");
    }

    let mut c = server.smtp();
    c.expect("EHLO client.test", "250");
    let reply = c.send_mail("bob@localhost", &["alice@localhost"], b"Subject: hi\r\n\r\nafter the drop\r\n");
    assert!(reply.starts_with("250"), "{reply}");
    let mut p = server.pop3();
    assert!(p.login("alice@localhost", PASSWORD).starts_with("+OK"));
    assert_eq!(p.stat().0, 1);
    use std::os::unix::fs::MetadataExt;
    let spool = server.data_dir().join("spool");
    assert_eq!(std::fs::metadata(&spool).unwrap().uid(), NOBODY, "made after the switch of file identity");
}

/// `serve` with a config it must refuse at start. A server that starts
/// anyway is killed (it is ours) and the test fails instead of hanging.
fn serve_refused(path: &Path) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ringmail"))
        .args(["serve", "--config", path.to_str().unwrap()])
        .env_remove("RINGMAIL_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Preflight runs before anything is bound: a refusal comes in well
    // under a second; a minute means the server is serving.
    for _ in 0..600 {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    child.kill().unwrap();
    let out = child.wait_with_output().unwrap();
    panic!("serve started instead of refusing the config:\n{}", stderr(&out));
}

#[test]
fn a_pool_source_address_that_is_not_on_this_machine_stops_the_start_naming_it() {
    let port = free_port();
    let pools = "[relay]\ndefault_pool = \"bulk\"\n[[relay.pool]]\nname = \"bulk\"\n\
                 sources = [{ ip = \"127.0.0.2\", ehlo = \"out1.example.net\", weight = 2 }, { ip = \"192.0.2.7\" }]\n";
    let (_dir, path) = config(&format!("data_dir = \"d\"\n[listen]\nsmtp = \"127.0.0.1:{port}\"\n{pools}"));
    for out in [check(&path), serve_refused(&path)] {
        assert!(!out.status.success());
        let err = stderr(&out);
        assert!(err.contains("relay.pool \"bulk\": source 192.0.2.7 is not an address of this machine"), "{err}");
        assert!(!err.contains("127.0.0.2"), "a loopback address is one of ours:\n{err}");
    }
    let (_dir, path) = config(&format!(
        "data_dir = \"d\"\n[listen]\nsmtp = \"127.0.0.1:{port}\"\n{}",
        pools.replace("192.0.2.7", "127.0.0.3")
    ));
    let out = check(&path);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn a_broken_shaping_file_stops_the_start_naming_its_line() {
    let port = free_port();
    let (dir, path) = config(&format!(
        "data_dir = \"d\"\n[listen]\nsmtp = \"127.0.0.1:{port}\"\n[relay]\nshaping = \"shaping.toml\"\n"
    ));
    let rules = dir.path().join("shaping.toml");
    std::fs::write(&rules, "[site.\"google.com\"]\nmax_connections = 20\nmax_message_rate = \"5 per minute\"\n")
        .unwrap();
    let wanted = format!(
        "{}:3: site.\"google.com\".max_message_rate = \"5 per minute\": expected COUNT/UNIT like \"500/min\"",
        rules.display()
    );
    for out in [check(&path), serve_refused(&path)] {
        assert!(!out.status.success());
        let err = stderr(&out);
        assert!(err.contains(&wanted), "{err}");
    }
    std::fs::remove_file(&rules).unwrap();
    let out = check(&path);
    assert!(!out.status.success(), "a missing rules file is refused too");
    assert!(stderr(&out).contains(&format!("{}: cannot read", rules.display())), "{}", stderr(&out));
    std::fs::write(&rules, "[site.\"google.com\"]\nmax_message_rate = \"500/min\"\n").unwrap();
    let out = check(&path);
    assert!(out.status.success(), "{}", stderr(&out));
}
