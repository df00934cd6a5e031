//! Thread-per-core: one pinned glommio executor per core, each running the
//! same future with its own core index, results collected when all finish.
//!
//! This is the only place that builds executors, so a change of runtime
//! stays here.

use crate::live::Live;
use anyhow::{anyhow, Result};
use glommio::{LocalExecutorBuilder, Placement};
use std::future::Future;
use std::sync::Arc;
use std::thread::JoinHandle;

/// io_uring buffer memory per executor: 1 MiB is plenty for sockets and
/// makes executors start much faster than the 10 MiB default.
const IO_MEMORY: usize = 1 << 20;

/// Running executors; join with [`Cores::join`].
pub struct Cores<T> {
    handles: Vec<JoinHandle<Result<T>>>,
}

/// The number of CPUs this process may run on.
pub fn available_cores() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// Reports "finished" when dropped, even on a panic or an executor that
/// could not be built, so that the monitor never waits forever.
struct Done(Arc<Live>);

impl Drop for Done {
    fn drop(&mut self) {
        self.0.core_finished();
    }
}

/// Starts `n` executors; executor `i` runs `f(i)`. With `pin`, executor `i`
/// is bound to CPU `i % cpus`. Each executor tells `live` when it is done.
pub fn spawn<T, F, Fut>(n: usize, pin: bool, live: &Arc<Live>, f: F) -> Result<Cores<T>>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut + Send + Clone + 'static,
    Fut: Future<Output = T> + 'static,
{
    let cpus = available_cores();
    let mut handles = Vec::with_capacity(n);
    for i in 0..n {
        let placement = if pin { Placement::Fixed(i % cpus) } else { Placement::Unbound };
        let f = f.clone();
        let done = Done(Arc::clone(live));
        let h = std::thread::Builder::new().name(format!("loadgen-{i}")).spawn(move || {
            let _done = done;
            let ex = LocalExecutorBuilder::new(placement).io_memory(IO_MEMORY).make().map_err(|e| {
                anyhow!(
                    "cannot start executor {i}: {e} (glommio needs io_uring, which \
                             seccomp may block, and enough locked memory: raise LimitMEMLOCK)"
                )
            })?;
            Ok(ex.run(f(i)))
        })?;
        handles.push(h);
    }
    Ok(Cores { handles })
}

impl<T> Cores<T> {
    /// Waits for every executor and returns their results in core order.
    pub fn join(self) -> Result<Vec<T>> {
        self.handles
            .into_iter()
            .enumerate()
            .map(|(i, h)| h.join().map_err(|_| anyhow!("executor {i} panicked"))?)
            .collect()
    }
}
