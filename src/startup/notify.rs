//! Telling systemd what the server is doing (`Type=notify`, sd_notify(3)):
//! `READY=1` once every listener is up, privileges are dropped and signals
//! are handled; `RELOADING=1` (with `MONOTONIC_USEC`, which systemd 253 and
//! later require with it) then `READY=1` around a SIGHUP reload; and
//! `STOPPING=1` when a stop begins.
//!
//! Without `NOTIFY_SOCKET` in the environment (not started by systemd, or
//! `Type=simple`) every call does nothing. A failed send is logged and
//! otherwise ignored: the server serves either way, and systemd reports a
//! missing READY itself (the start times out).

use sd_notify::NotifyState;

/// Start-up is finished: the listeners accept, and SIGHUP/SIGTERM are
/// handled (a signal before that would have ended the process).
pub fn ready() {
    send("ready", &[NotifyState::Ready, NotifyState::Status("serving")]);
}

/// A SIGHUP reload begins; [`reloaded`] must follow.
pub fn reloading() {
    // systemd >= 253 rejects RELOADING=1 without the time it started, and
    // older ones ignore the extra field.
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send("reloading", &[NotifyState::Reloading, now, NotifyState::Status("reloading")]),
        Err(e) => tracing::warn!(error = %e, "systemd notification not sent: no monotonic clock"),
    }
}

/// The SIGHUP reload is done (whether or not every file could be loaded:
/// what failed keeps its previous version and the log says so).
pub fn reloaded() {
    send("reloaded", &[NotifyState::Ready, NotifyState::Status("serving")]);
}

/// A graceful stop begins (sessions are draining).
pub fn stopping() {
    send("stopping", &[NotifyState::Stopping, NotifyState::Status("stopping: draining sessions")]);
}

fn send(what: &str, states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, notification = what, "systemd notification not sent (NOTIFY_SOCKET)");
    }
}
