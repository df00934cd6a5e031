//! The checks `serve` runs before it binds anything, which `check-config`
//! runs too, so that a config `check-config` passes does not fail at start:
//! the certificate and key readable and matching, the users file readable
//! and well-formed, the HTTP API tokens file private and well-formed, the data dir creatable and writable, the config file
//! readable (it is re-read at SIGHUP), the DKIM keys loadable, the shaping
//! rules file (`relay.shaping`) valid, and with `run_as` all of that as
//! that user; and every egress pool source address one of this machine's.
//!
//! Creates nothing that stays: a writability probe is removed at once, and
//! a source address is tried with a UDP socket closed at once.

use super::run_as::{self, Identity};
use crate::config::Config;
use std::path::{Path, PathBuf};

/// Every problem found, each naming the file or directory (and the user,
/// with `run_as`). Empty: `serve` can start.
pub fn problems(cfg: &Config, config_path: Option<&Path>) -> Vec<String> {
    let id = match run_as::resolve(cfg.run_as.as_deref()) {
        Ok(id) => id,
        Err(e) => return vec![e.to_string()],
    };
    let mut out = match &id {
        Some(id) => match run_as::with_files_as(id, || file_problems(cfg, config_path, Some(id))) {
            Ok(p) => p,
            Err(e) => vec![format!("run_as = {:?}: cannot take the user's file permissions to check: {e}", id.name)],
        },
        None => file_problems(cfg, config_path, None),
    };
    out.extend(pool_problems(cfg));
    out
}

/// Every `[[relay.pool]]` source must be an address of this machine:
/// outbound sockets bind to it, and a bind to an address the machine does
/// not have fails (EADDRNOTAVAIL) on every connection, not once at start.
fn pool_problems(cfg: &Config) -> Vec<String> {
    let mut out = Vec::new();
    for pool in &cfg.relay.pool {
        for source in &pool.sources {
            // Port 0 and UDP: no port is taken, nothing is sent.
            match std::net::UdpSocket::bind((source.ip, 0)) {
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::EADDRNOTAVAIL) => out.push(format!(
                    "relay.pool {:?}: source {} is not an address of this machine",
                    pool.name, source.ip
                )),
                Err(e) => out.push(format!("relay.pool {:?}: source {} cannot be bound: {e}", pool.name, source.ip)),
            }
        }
    }
    out
}

fn file_problems(cfg: &Config, config_path: Option<&Path>, id: Option<&Identity>) -> Vec<String> {
    let who = |p: String| match id {
        Some(id) => format!("{p} (for run_as user {:?})", id.name),
        None => p,
    };
    let mut out = Vec::new();
    if let Some(path) = config_path {
        if let Err(e) = std::fs::File::open(path) {
            out.push(who(format!("{}: cannot read the config file (needed at SIGHUP): {e}", path.display())));
        }
    }
    out.extend(dir_problems(&cfg.data_dir, "data_dir").into_iter().map(who));
    if let Err(e) = crate::auth::UserDb::load(cfg.users_path()) {
        out.push(who(e.to_string()));
    }
    if let Err(e) = crate::http::Tokens::load(cfg.http_tokens_path()) {
        out.push(who(e.to_string()));
    }
    if let Err(e) = crate::sender_auth::Signers::load(&cfg.dkim) {
        out.push(who(e.to_string()));
    }
    if let Some(rules) = &cfg.relay.shaping {
        if let Err(e) = crate::outbound::shaping::Shaping::load(rules) {
            out.push(who(format!("relay.shaping: {e}")));
        }
    }
    if let Err(e) = crate::outbound::tls::load_roots(cfg.relay.ca_file.as_deref()) {
        out.push(who(e.to_string()));
    }
    let tls = match &cfg.tls {
        Some(t) => Some(crate::net::tls::TlsFiles { cert: t.cert.clone(), key: t.key.clone() }),
        // The self-signed pair is made at the first start; once it exists
        // it must be readable.
        None => {
            let dir = cfg.data_dir.join("tls");
            let files = crate::net::tls::TlsFiles {
                cert: dir.join("self-signed-cert.pem"),
                key: dir.join("self-signed-key.pem"),
            };
            (files.cert.exists() || files.key.exists()).then_some(files)
        }
    };
    if let Some(files) = tls {
        if let Err(e) = files.load() {
            out.push(who(e.to_string()));
        }
    }
    out
}

/// `data_dir` (or the directory it will be created in) must be a writable
/// directory, and so must every directory the spool already has, whose
/// segment files must be writable too.
fn dir_problems(dir: &Path, key: &str) -> Vec<String> {
    if !dir.exists() {
        let Some(parent) = dir.ancestors().skip(1).find(|a| a.exists()) else {
            return vec![format!("{key} = {}: no existing parent directory", dir.display())];
        };
        return match probe_dir(parent, true) {
            Ok(()) => Vec::new(),
            Err(e) => vec![format!("{key} = {}: cannot be created in {}: {e}", dir.display(), parent.display())],
        };
    }
    let mut out = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    dirs.extend(subdirs(&dir.join("spool")));
    dirs.push(dir.join("tls"));
    for d in dirs.iter().filter(|d| d.exists()) {
        if let Err(e) = probe_dir(d, false) {
            out.push(format!("{key}: {} is not writable: {e}", d.display()));
        }
    }
    for d in dirs.iter().filter(|d| d.parent().is_some_and(|p| p.ends_with("spool"))) {
        for f in files_in(d) {
            if let Err(e) = std::fs::OpenOptions::new().read(true).write(true).open(&f) {
                out.push(format!("{key}: {} is not writable: {e}", f.display()));
            }
        }
    }
    out
}

/// Create and remove a probe entry in `dir` (a directory when `mkdir`).
fn probe_dir(dir: &Path, mkdir: bool) -> std::io::Result<()> {
    if !dir.is_dir() {
        return Err(std::io::Error::new(std::io::ErrorKind::NotADirectory, "not a directory"));
    }
    let probe = dir.join(format!(".ringmail-check-{}", std::process::id()));
    if mkdir {
        std::fs::create_dir(&probe)?;
        std::fs::remove_dir(&probe)
    } else {
        std::fs::OpenOptions::new().write(true).create_new(true).open(&probe)?;
        std::fs::remove_file(&probe)
    }
}

/// `spool` itself and its directories (`core-N`).
fn subdirs(spool: &Path) -> Vec<PathBuf> {
    let mut out = vec![spool.to_path_buf()];
    if let Ok(rd) = std::fs::read_dir(spool) {
        out.extend(rd.flatten().map(|e| e.path()).filter(|p| p.is_dir()));
    }
    out
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|rd| rd.flatten().map(|e| e.path()).filter(|p| p.is_file()).collect())
        .unwrap_or_default()
}
