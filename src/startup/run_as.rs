//! `run_as`: the user ringmail becomes once its privileged work is done.
//!
//! Started as root (for ports below 1024 and locked io_uring memory),
//! ringmail works in two steps:
//! 1. [`assume_files`] on the main thread before any other thread exists:
//!    the filesystem identity (fsuid, fsgid, groups) becomes the user's, so
//!    every file and directory created at start-up (spool dirs, segments,
//!    the control socket, a self-signed certificate) belongs to the user and
//!    every file read at start-up is read with the user's permissions, as it
//!    will be at a SIGHUP reload. Threads inherit it when created.
//! 2. [`drop_to`] once every executor has its io_uring rings and bound
//!    listeners and before any client is served: groups, gid and uid for
//!    every thread (glibc forwards set*id calls to all threads), which also
//!    clears every capability. It then reads each thread's status back and
//!    refuses to go on if any thread kept an id of root or a capability.
//!
//! Must not be used for anything else; a process that is not root cannot
//! switch users and only checks that it already is the user.

use std::ffi::CString;
use std::path::Path;

/// Why `run_as` could not be honoured.
#[derive(Debug, thiserror::Error)]
pub enum RunAsError {
    #[error("run_as = {0:?}: no such user")]
    UnknownUser(String),
    #[error("run_as = {name:?}: looking the user up failed: {error}")]
    Lookup { name: String, error: std::io::Error },
    #[error("run_as = {name:?}: ringmail runs as uid {uid}, not as {name}; start it as root (it switches after binding) or as {name}")]
    NotRoot { name: String, uid: u32 },
    #[error("dropping privileges to {name:?} failed at {step}: {error}")]
    Drop { name: String, step: &'static str, error: std::io::Error },
    #[error("dropping privileges to {name:?}: {task} still has {what}")]
    StillPrivileged { name: String, task: String, what: String },
}

/// A user from the password database, with the groups it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub name: String,
    pub uid: u32,
    /// The primary group.
    pub gid: u32,
    /// Every group of the user (the primary one included).
    pub groups: Vec<u32>,
}

/// The effective uid of this process.
pub fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() }
}

/// Look `name` up in the password and group databases.
pub fn lookup(name: &str) -> Result<Identity, RunAsError> {
    let c_name = CString::new(name).map_err(|_| RunAsError::UnknownUser(name.to_string()))?;
    // SAFETY: a zeroed passwd is a valid out-parameter for getpwnam_r.
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buf = vec![0u8; 16 * 1024];
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the length given.
    let rc = unsafe { libc::getpwnam_r(c_name.as_ptr(), &mut pwd, buf.as_mut_ptr().cast(), buf.len(), &mut result) };
    if rc != 0 {
        return Err(RunAsError::Lookup { name: name.to_string(), error: std::io::Error::from_raw_os_error(rc) });
    }
    if result.is_null() {
        return Err(RunAsError::UnknownUser(name.to_string()));
    }
    let (uid, gid) = (pwd.pw_uid, pwd.pw_gid);
    let mut groups = vec![0 as libc::gid_t; 64];
    loop {
        let mut n = groups.len() as libc::c_int;
        // SAFETY: groups has room for n entries; n comes back as the count.
        let rc = unsafe { libc::getgrouplist(c_name.as_ptr(), gid, groups.as_mut_ptr(), &mut n) };
        if rc >= 0 {
            groups.truncate(n.max(0) as usize);
            break;
        }
        groups.resize((n.max(0) as usize).max(groups.len() * 2), 0);
    }
    Ok(Identity { name: name.to_string(), uid, gid, groups })
}

/// The identity `run_as` asks for, checked against who we are: None when
/// no switch is needed (no `run_as`, or already running as that user).
pub fn resolve(run_as: Option<&str>) -> Result<Option<Identity>, RunAsError> {
    let Some(name) = run_as else { return Ok(None) };
    let id = lookup(name)?;
    match euid() {
        // `run_as = "root"` asks for nothing to change.
        0 if id.uid == 0 => Ok(None),
        0 => Ok(Some(id)),
        uid if uid == id.uid => Ok(None),
        uid => Err(RunAsError::NotRoot { name: name.to_string(), uid }),
    }
}

/// Take `id`'s filesystem identity on the calling thread only (fsuid,
/// fsgid, supplementary groups); threads created afterwards inherit it.
/// Needs root. See the module doc for why.
pub fn assume_files(id: &Identity) -> std::io::Result<()> {
    set_thread_groups(&id.groups)?;
    // SAFETY: setfsgid/setfsuid change only this thread's credentials; a
    // second call with -1 reads the value back (they return the old one).
    unsafe {
        libc::setfsgid(id.gid);
        libc::setfsuid(id.uid);
        if libc::setfsgid(u32::MAX) as u32 != id.gid || libc::setfsuid(u32::MAX) as u32 != id.uid {
            return Err(std::io::Error::new(std::io::ErrorKind::PermissionDenied, "setfsuid/setfsgid were refused"));
        }
    }
    Ok(())
}

/// Run `f` with `id`'s filesystem identity on this thread, then return to
/// root's. For `check-config` (single-threaded): what would the user see?
pub fn with_files_as<T>(id: &Identity, f: impl FnOnce() -> T) -> std::io::Result<T> {
    // SAFETY: getgroups(0, null) only counts; the second call fills `saved`.
    let n = unsafe { libc::getgroups(0, std::ptr::null_mut()) };
    let mut saved = vec![0 as libc::gid_t; n.max(0) as usize];
    let n = unsafe { libc::getgroups(saved.len() as libc::c_int, saved.as_mut_ptr()) };
    saved.truncate(n.max(0) as usize);
    assume_files(id)?;
    let out = f();
    // SAFETY: back to root's fs identity on this thread (we are root: the
    // switch above needed it).
    unsafe {
        libc::setfsuid(0);
        libc::setfsgid(0);
    }
    set_thread_groups(&saved)?;
    Ok(out)
}

/// setgroups(2) for the calling thread only: the raw system call, not
/// glibc's wrapper, which would apply it to every thread.
fn set_thread_groups(groups: &[u32]) -> std::io::Result<()> {
    // SAFETY: groups is valid for groups.len() entries.
    let rc = unsafe { libc::syscall(libc::SYS_setgroups, groups.len(), groups.as_ptr()) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Let the process lock up to `bytes` of memory (io_uring rings and
/// buffers) while it still may raise the limit: after the drop the
/// executors' rings stay accounted to root, but anything glommio locks
/// later is charged against this limit. Without CAP_SYS_RESOURCE only the
/// soft limit can rise (to the hard one). Returns the limit now in force.
pub fn raise_memlock(bytes: u64) -> std::io::Result<u64> {
    let mut cur = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit with a valid rlimit struct.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut cur) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    if cur.rlim_cur >= bytes {
        return Ok(cur.rlim_cur);
    }
    let wanted = libc::rlimit { rlim_cur: bytes, rlim_max: cur.rlim_max.max(bytes) };
    let capped = libc::rlimit { rlim_cur: cur.rlim_max.min(bytes), rlim_max: cur.rlim_max };
    for new in [wanted, capped] {
        if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &new) } == 0 {
            return Ok(new.rlim_cur);
        }
    }
    Err(std::io::Error::last_os_error())
}

/// Become `id` for good, in every thread: groups, then gid, then uid
/// (which clears all capabilities), then verify each thread.
pub fn drop_to(id: &Identity) -> Result<(), RunAsError> {
    let fail = |step| RunAsError::Drop { name: id.name.clone(), step, error: std::io::Error::last_os_error() };
    // SAFETY: glibc's setgroups/setresgid/setresuid apply the change to
    // every thread of the process (its setxid broadcast) and report failure.
    unsafe {
        if libc::setgroups(id.groups.len(), id.groups.as_ptr()) != 0 {
            return Err(fail("setgroups"));
        }
        if libc::setresgid(id.gid, id.gid, id.gid) != 0 {
            return Err(fail("setresgid"));
        }
        if libc::setresuid(id.uid, id.uid, id.uid) != 0 {
            return Err(fail("setresuid"));
        }
        // There must be no way back.
        if id.uid != 0 && libc::setuid(0) == 0 {
            return Err(RunAsError::StillPrivileged {
                name: id.name.clone(),
                task: "the process".into(),
                what: "the power to become root again".into(),
            });
        }
    }
    verify_tasks(Path::new("/proc/self/task"), id)
}

/// Every thread's ids are the user's and its effective capabilities empty.
fn verify_tasks(tasks: &Path, id: &Identity) -> Result<(), RunAsError> {
    let entries = std::fs::read_dir(tasks).map_err(|error| RunAsError::Drop {
        name: id.name.clone(),
        step: "reading /proc/self/task",
        error,
    })?;
    for task in entries.flatten() {
        let Ok(status) = std::fs::read_to_string(task.path().join("status")) else { continue };
        if let Some(what) = privileged_in(&status, id) {
            let task = format!("thread {}", task.file_name().to_string_lossy());
            return Err(RunAsError::StillPrivileged { name: id.name.clone(), task, what });
        }
    }
    Ok(())
}

/// What in a /proc status text is not `id`'s, if anything.
fn privileged_in(status: &str, id: &Identity) -> Option<String> {
    let field = |name: &str| status.lines().find_map(|l| l.strip_prefix(name)).map(str::trim);
    let all_are = |name: &str, want: u32| {
        field(name).is_some_and(|v| v.split_whitespace().all(|x| x.parse::<u32>().ok() == Some(want)))
    };
    if !all_are("Uid:", id.uid) {
        return Some(format!("Uid: {}", field("Uid:").unwrap_or("?")));
    }
    if !all_are("Gid:", id.gid) {
        return Some(format!("Gid: {}", field("Gid:").unwrap_or("?")));
    }
    match field("CapEff:") {
        Some(c) if c.trim_start_matches('0').is_empty() => None,
        other => Some(format!("CapEff: {}", other.unwrap_or("?"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nobody() -> Identity {
        Identity { name: "nobody".into(), uid: 65534, gid: 65534, groups: vec![65534] }
    }

    #[test]
    fn a_status_with_the_users_ids_and_no_capabilities_passes() {
        let ok = "Name:\tringmail\nUid:\t65534\t65534\t65534\t65534\nGid:\t65534\t65534\t65534\t65534\nCapEff:\t0000000000000000\n";
        assert_eq!(privileged_in(ok, &nobody()), None);
    }

    #[test]
    fn a_saved_root_uid_or_a_capability_is_reported() {
        let saved = "Uid:\t65534\t65534\t0\t65534\nGid:\t65534\t65534\t65534\t65534\nCapEff:\t0000000000000000\n";
        assert!(privileged_in(saved, &nobody()).unwrap().starts_with("Uid:"));
        let cap = "Uid:\t65534\t65534\t65534\t65534\nGid:\t65534\t65534\t65534\t65534\nCapEff:\t0000000000000400\n";
        assert!(privileged_in(cap, &nobody()).unwrap().starts_with("CapEff:"));
    }

    #[test]
    fn an_unknown_user_is_an_error_naming_it() {
        let e = lookup("no-such-ringmail-user").unwrap_err();
        assert!(e.to_string().contains("no-such-ringmail-user"), "{e}");
    }
}
