//! Giving memory back to the system after a burst of transient data.
//!
//! The binary's allocator is mimalloc (`main.rs`). It returns a freed page
//! to the system lazily, from the thread that owns it, and a thread that
//! has ended leaves its pages *abandoned* until another thread collects
//! them. Recovery is the case that needs help: its thread decodes every
//! live message's envelope and hands each core full queue entries, which
//! the cores turn into compact ones and free. Without a collection the
//! freed memory stayed resident: 1,433 bytes per queued message after a
//! restart against 145 before it (issue 13 item 3, `bench/backlog`).
//!
//! Where it is called: the recovery thread once it has handed everything
//! over, each core once it has adopted its part, and a core's relay timer
//! when its queue has emptied after a backlog (at most every 5 s). Not on a hot path: a
//! forced collection walks the thread's heap.

/// mimalloc's `purge_delay` option (not among libmimalloc-sys's constants:
/// it is the one after `eager_commit_delay`, 14, in both v2 and v3).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// How long freed memory stays with the allocator before it goes back to
/// the system. mimalloc's default, 10 ms (`options.c`), returned (and the
/// next message then faulted in again, zeroed by the kernel) the buffers of
/// large messages between one message and the next under steady load: the
/// 1 MiB bodies of a mixed load cost ~10 % more CPU per message than with
/// 10 s (measured; README, Large and mixed messages). 1 s keeps buffers
/// across messages as well (they follow each other by milliseconds) while
/// a burst's transient memory still leaves within a second: with 10 s,
/// RssAnon measured just after a 1 M fill (`bench/backlog`) counted up to
/// 10 s of freed intake buffers. A drained backlog gives its memory back at
/// once: the relay timer calls [`give_back`] when a core's queue has
/// emptied after holding many messages.
const PURGE_DELAY_MS: std::ffi::c_long = 1_000;

/// Sets the allocator's options, unless the operator set them in the
/// environment (`MIMALLOC_PURGE_DELAY`, mimalloc's own variable). Call once,
/// first thing in `serve`.
pub fn tune() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: mi_option_set takes no pointer; the option is read at
        // each purge decision, so setting it at any time is allowed.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS) }
    }
}

/// Frees what this thread's heap holds unused, and collects the pages of
/// threads that have ended, returning them to the system. Harmless where
/// mimalloc is not the global allocator (unit tests): its heaps are empty.
pub fn give_back() {
    // SAFETY: mi_collect takes no pointer and may be called from any thread
    // at any time.
    unsafe { libmimalloc_sys::mi_collect(true) }
}
