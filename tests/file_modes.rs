//! File modes: what ringmail creates in its data dir is the operator's
//! alone (directories 0700, files 0600), whatever the umask it was started
//! with, and a data dir open to others is reported at start.

mod common;

use common::*;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

#[test]
fn a_fresh_data_dir_is_0700_and_its_segments_0600() {
    let mut server = Server::configure(Options::default());
    // A permissive umask in the environment does not loosen anything.
    // SAFETY: umask(2) on this test process; the server inherits it.
    let old = unsafe { libc::umask(0o002) };
    server.spawn();
    unsafe { libc::umask(old) };
    let mut c = server.smtp();
    c.expect("EHLO modes.test", "250");
    let r = c.send_mail("x@localhost", &["alice@localhost"], b"Subject: m\r\n\r\nbody\r\n");
    assert!(r.starts_with("250"), "{r}");
    let data = server.data_dir();
    assert_eq!(mode(&data), 0o700, "{}", data.display());
    let mut segments = 0;
    for core in std::fs::read_dir(data.join("spool")).unwrap() {
        let core = core.unwrap().path();
        assert_eq!(mode(&core), 0o700, "{}", core.display());
        for seg in std::fs::read_dir(&core).unwrap() {
            let seg = seg.unwrap().path();
            assert_eq!(mode(&seg), 0o600, "{}", seg.display());
            segments += 1;
        }
    }
    assert!(segments > 0, "the message went into a segment");
    assert_eq!(mode(&data.join("spool")), 0o700);
    for tls in ["self-signed-cert.pem", "self-signed-key.pem"] {
        assert_eq!(mode(&data.join("tls").join(tls)), 0o600, "{tls}");
    }
    assert!(!server.log().contains("readable by group or others"), "{}", server.log());
}

#[test]
fn a_data_dir_readable_by_others_is_warned_about_at_start() {
    let mut server = Server::configure(Options::default());
    let data = server.data_dir();
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    server.spawn();
    let log = server.log_containing(&["readable by group or others"]);
    let line = log.lines().find(|l| l.contains("readable by group or others")).expect("a warning");
    assert!(line.contains("WARN") && line.contains("0755") && line.contains(data.to_str().unwrap()), "{line}");
    assert_eq!(mode(&data), 0o755, "the operator's choice is reported, not changed");
}
