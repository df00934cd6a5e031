//! A CLI command whose reader went away (`ringmail mailbox list … | head
//! -1`) exits at once, quietly, with status 0, as Unix filters do, instead
//! of panicking in `println!` with "Broken pipe".
//!
//! Owns: the SIGPIPE disposition of CLI commands (never of `serve`, whose
//! sockets must see EPIPE as an error). Rust starts programs with SIGPIPE
//! ignored, so a write to a closed pipe fails with EPIPE and `println!`
//! panics. Here SIGPIPE gets a handler instead: when the broken pipe is
//! stdout, the process `_exit`s with 0; any other (a control socket the
//! server closed) returns from the handler, and the write fails with EPIPE
//! as before, so that error is still reported.

/// Install the handler. Call once, early, in CLI commands only.
pub fn install() {
    // SAFETY: sigaction(2) with a handler that only calls the
    // async-signal-safe poll(2) and _exit(2).
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_sigpipe as *const () as libc::sighandler_t;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(libc::SIGPIPE, &action, std::ptr::null_mut());
    }
}

extern "C" fn on_sigpipe(_: libc::c_int) {
    if stdout_reader_gone() {
        // Nothing buffered matters: nobody is reading it.
        // SAFETY: _exit(2) is async-signal-safe and ends the process.
        unsafe { libc::_exit(0) };
    }
}

/// Is stdout a pipe or socket whose reading end is closed? (poll(2)
/// reports POLLERR on the write end of a pipe without readers.)
fn stdout_reader_gone() -> bool {
    let mut fd = libc::pollfd { fd: libc::STDOUT_FILENO, events: libc::POLLOUT, revents: 0 };
    // SAFETY: one pollfd on our stack, no wait.
    let n = unsafe { libc::poll(&mut fd, 1, 0) };
    n == 1 && fd.revents & (libc::POLLERR | libc::POLLHUP) != 0
}
