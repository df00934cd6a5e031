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
//! over, and each core once it has adopted its part. Not on a hot path: a
//! forced collection walks the thread's heap.

/// Frees what this thread's heap holds unused, and collects the pages of
/// threads that have ended, returning them to the system. Harmless where
/// mimalloc is not the global allocator (unit tests): its heaps are empty.
pub fn give_back() {
    // SAFETY: mi_collect takes no pointer and may be called from any thread
    // at any time.
    unsafe { libmimalloc_sys::mi_collect(true) }
}
