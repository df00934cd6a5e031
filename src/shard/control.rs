//! The control threads beside the cores: SIGHUP reloads (config, DKIM
//! keys, shaping rules, certificate, users file, HTTP API tokens), SIGTERM
//! and SIGINT start a graceful stop, and the users file is watched for
//! changes. Each sends what it loaded to every core over its feed; a file
//! that does not load keeps the old one in force, and the log says why.

use super::boot::Lifecycle;
use crate::auth::UserDb;
use crate::config::Config;
use crate::http::Tokens;
use crate::outbound::shaping::Shaping;
use crate::outbound::sites::Sites;
use crate::sender_auth::Signers;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// The sending ends the control threads (SIGHUP, the users watcher) hold
/// for each core.
#[derive(Clone)]
pub(super) struct Feeds {
    pub(super) users: Vec<crossbeam_channel::Sender<Arc<UserDb>>>,
    pub(super) tls: Vec<crossbeam_channel::Sender<Arc<rustls::ServerConfig>>>,
    pub(super) config: Vec<crossbeam_channel::Sender<Arc<Config>>>,
    pub(super) dkim: Vec<crossbeam_channel::Sender<Arc<Signers>>>,
    pub(super) tokens: Vec<crossbeam_channel::Sender<Arc<Tokens>>>,
}

/// Reload the users file when it changes (checked every second) and send
/// the new database to every core. A broken file keeps the old one.
pub(super) fn spawn_users_watcher(
    path: PathBuf,
    loaded: Option<FileStamp>,
    cores: Vec<crossbeam_channel::Sender<Arc<UserDb>>>,
) {
    std::thread::Builder::new()
        .name("ringmail-users".into())
        .spawn(move || {
            let mut last = loaded;
            loop {
                std::thread::sleep(Duration::from_secs(1));
                let now = file_stamp(&path);
                if now == last {
                    continue;
                }
                last = now;
                match UserDb::load(&path) {
                    Ok(db) => {
                        let (users, db) = (db.len(), Arc::new(db));
                        send_all(&cores, &db);
                        // Logged once every core can see it: a login after
                        // this line meets the new file (tests wait for it).
                        tracing::info!(users, file = %path.display(), "users file reloaded");
                    }
                    Err(e) => tracing::error!(error = %e, "users file not reloaded; keeping the previous one"),
                }
            }
        })
        .expect("spawning a thread at start-up");
}

/// The shaping rules `relay.shaping` names (none: every site on the
/// `[relay]` defaults).
pub(super) fn load_shaping(config: &Config) -> Result<Shaping, String> {
    match &config.relay.shaping {
        Some(path) => Shaping::load(path),
        None => Ok(Shaping::default()),
    }
}

/// What SIGHUP re-reads.
pub(super) struct Reload {
    /// The config now in force (what a reload is compared with).
    pub(super) config: Arc<Config>,
    /// None: the embedded default, nothing to re-read.
    pub(super) path: Option<PathBuf>,
    pub(super) tls: crate::net::tls::TlsFiles,
    /// Where the shaping rules (`relay.shaping`) are replaced.
    pub(super) sites: Arc<Sites>,
}

impl Reload {
    /// Re-read the config, the certificate and the users file and hand
    /// each to every core; sessions keep what they started with. A broken
    /// file keeps the old one and the log says why.
    fn run(&mut self, feeds: &Feeds) {
        if let Some(path) = &self.path {
            match Config::load(Some(path)) {
                Ok(new) => {
                    for what in self.config.needs_restart(&new) {
                        tracing::warn!(
                            setting = what,
                            "SIGHUP: this setting changes only at restart; keeping the running value"
                        );
                    }
                    match Signers::load(&new.dkim) {
                        Ok(signers) => {
                            let signers = Arc::new(signers);
                            send_all(&feeds.dkim, &signers);
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "SIGHUP: DKIM keys not reloaded; keeping the previous ones")
                        }
                    }
                    // The path is read at start only (a new one is reported as
                    // needing a restart above); the file itself is re-read.
                    match load_shaping(&self.config) {
                        Ok(rules) => {
                            tracing::info!(rules = rules.len(), "SIGHUP: shaping rules loaded");
                            self.sites.set_rules(rules);
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "SIGHUP: shaping rules not reloaded; keeping the previous ones")
                        }
                    }
                    let new = Arc::new(self.config.with_reloadable(new));
                    send_all(&feeds.config, &new);
                    self.config = new;
                    tracing::info!(file = %path.display(), "SIGHUP: config reloaded");
                }
                Err(e) => tracing::error!(error = %e, "SIGHUP: config not reloaded; keeping the previous one"),
            }
        }
        match self.tls.load() {
            Ok(cfg) => {
                tracing::info!(cert = %self.tls.cert.display(), "SIGHUP: certificate reloaded");
                send_all(&feeds.tls, &cfg);
            }
            Err(e) => tracing::error!(error = %e, "SIGHUP: certificate not reloaded; keeping the previous one"),
        }
        let users = self.config.users_path();
        match UserDb::load(users) {
            Ok(db) => {
                let db = Arc::new(db);
                send_all(&feeds.users, &db);
            }
            Err(e) => tracing::error!(error = %e, "SIGHUP: users file not reloaded; keeping the previous one"),
        }
        let path = self.config.http_tokens_path();
        match Tokens::load(path) {
            Ok(tokens) => {
                let tokens = Arc::new(tokens);
                send_all(&feeds.tokens, &tokens);
                // Logged once every core can see them (tests wait for it).
                tracing::info!(tokens = tokens.len(), file = %path.display(), "SIGHUP: HTTP API tokens reloaded");
            }
            Err(e) => tracing::error!(error = %e, "SIGHUP: HTTP API tokens not reloaded; keeping the previous ones"),
        }
    }
}

/// SIGHUP reloads; SIGTERM or SIGINT starts a graceful stop (a second one
/// exits at once).
pub(super) fn spawn_signal_handler(mut reload: Reload, feeds: Feeds, lifecycle: Lifecycle) {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = match signal_hook::iterator::Signals::new([SIGHUP, SIGTERM, SIGINT]) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot handle signals; reloads need a restart and SIGTERM stops without draining");
            return;
        }
    };
    std::thread::Builder::new()
        .name("ringmail-signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                if signal == SIGHUP {
                    crate::startup::notify::reloading();
                    reload.run(&feeds);
                    crate::startup::notify::reloaded();
                } else if lifecycle.stopping.swap(true, Ordering::AcqRel) {
                    tracing::warn!(signal, "second stop signal: exiting without waiting for sessions");
                    std::process::exit(1);
                } else {
                    let drain = reload.config.runtime.drain_timeout;
                    tracing::info!(signal, drain_timeout = ?drain, "stopping: no new connections; draining sessions");
                    crate::startup::notify::stopping();
                }
            }
        })
        .expect("spawning a thread at start-up");
}

/// What tells us a file changed: modification time, size, inode (an
/// atomic rename gives a new inode even within one mtime tick).
pub(super) type FileStamp = (SystemTime, u64, u64);

pub(super) fn file_stamp(p: &std::path::Path) -> Option<FileStamp> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(p).ok()?;
    Some((m.modified().ok()?, m.len(), m.ino()))
}

/// Hands `value` to every core (a core that has stopped is not waiting
/// for it any more).
fn send_all<T>(cores: &[crossbeam_channel::Sender<Arc<T>>], value: &Arc<T>) {
    for tx in cores {
        let _ = tx.send(value.clone());
    }
}
