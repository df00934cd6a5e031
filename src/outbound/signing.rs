//! RSA DKIM signatures made on the executor by a task of their own.
//!
//! An RSA-2048 signature costs a few hundred µs to over a millisecond of
//! CPU. Made inline by the delivery that wants it, a burst of them would
//! hold the executor (no I/O polled, no session served) for as long as the
//! burst lasts. Made on the executor's blocking thread (pinned to the same
//! CPU), as before, it cost a hand-off: the executor slept and was woken
//! per batch, the two threads took turns on one CPU, and a batch's
//! signatures came back all at once, so that the signer then idled while
//! its deliveries sent (a queue drain used ~60–85 % of its CPU, at 337 µs
//! per message against 247 µs for the signature and 35 µs for relaying:
//! README, DKIM section).
//!
//! Here one task per core signs the waiting jobs one at a time, on the
//! executor, and after each `SLICE` of signing sleeps until the reactor's
//! next pass: I/O and timers are polled and the tasks that became ready
//! (the deliveries just answered, sessions) run before it signs on. Each
//! job's answer goes back as soon as it is signed. No thread, no hand-off,
//! no wake-up per batch: while jobs wait, the executor never sleeps. The
//! signatures are the same bytes (`Signers::sign` of the same message and
//! time).
//!
//! It must not be shared between cores (it is the executor's own queue),
//! and it never holds a borrow across an `.await`.

use crate::sender_auth::{NotSigned, Signed, Signers};
use futures_channel::oneshot;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long the signing task signs before it lets the reactor poll I/O
/// and the other tasks run (it may overrun by one signature).
pub const SLICE: Duration = Duration::from_millis(1);

/// What one signature needs, owned (it waits in the queue).
pub struct Job {
    pub signers: Arc<Signers>,
    pub message: Vec<u8>,
    pub arrival_secs: u64,
}

impl Job {
    fn sign(&self) -> Result<Signed, NotSigned> {
        self.signers.sign(&self.message, self.arrival_secs)
    }
}

/// Where the signatures of one job go back to.
type Reply = oneshot::Sender<Result<Signed, NotSigned>>;

/// One core's RSA signatures: jobs waiting for the signing task.
#[derive(Default)]
pub struct Signer {
    /// Jobs not yet signed, oldest first, each with where its answer goes.
    pending: RefCell<VecDeque<(Job, Reply)>>,
    /// The signing task runs (it signs until no job waits).
    busy: Cell<bool>,
}

impl Signer {
    /// The signatures of `job`, made by this core's signing task.
    pub async fn sign(self: &Rc<Self>, job: Job) -> Result<Signed, NotSigned> {
        let (reply, answer) = oneshot::channel();
        self.pending.borrow_mut().push_back((job, reply));
        if !self.busy.replace(true) {
            glommio::spawn_local(Rc::clone(self).work()).detach();
        }
        answer.await.unwrap_or_else(|_| Err(NotSigned::Failed("the signing task was dropped".to_string())))
    }

    /// Sign until no job waits, letting the reactor and the other tasks
    /// run after each `SLICE`.
    async fn work(self: Rc<Self>) {
        let mut slice = Instant::now();
        loop {
            let next = self.pending.borrow_mut().pop_front();
            let Some((job, reply)) = next else {
                self.busy.set(false);
                return;
            };
            // The delivery may have given up meanwhile: nothing to sign.
            if !reply.is_canceled() {
                let _ = reply.send(job.sign());
            }
            if slice.elapsed() >= SLICE {
                // A timer is only fired by the reactor's pass, which comes
                // once the tasks ready to run have run.
                glommio::timer::sleep(Duration::from_micros(1)).await;
                slice = Instant::now();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Dkim, DkimSign};
    use crate::sender_auth::keys::{generate, Algorithm};

    fn signers(dir: &std::path::Path) -> Arc<Signers> {
        let key = dir.join("k.pem");
        std::fs::write(&key, generate(Algorithm::Rsa2048).unwrap().pem).unwrap();
        let mut cfg = Dkim::default();
        cfg.sign.push(DkimSign {
            domain: "example.org".into(),
            subdomains: false,
            selector: "s".into(),
            key,
            headers: None,
            over_sign: None,
            expire: None,
            canonicalization: None,
        });
        Arc::new(Signers::load(&cfg).unwrap())
    }

    fn message(i: usize) -> Vec<u8> {
        format!("From: a@example.org\r\nSubject: {i}\r\n\r\nbody {i}\r\n").into_bytes()
    }

    #[test]
    fn signatures_made_by_the_task_are_those_of_signing_alone() {
        let dir = tempfile::tempdir().unwrap();
        let s = signers(dir.path());
        let alone: Vec<Vec<u8>> = (0..40).map(|i| s.sign(&message(i), 1_800_000_000).unwrap().fields).collect();
        let s2 = s.clone();
        let executor = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound).io_memory(1 << 20);
        let signed = executor.make().unwrap().run(async move {
            let signer = Rc::new(Signer::default());
            // All 40 ask at once: the task signs them in turn.
            let tasks: Vec<_> = (0..40)
                .map(|i| {
                    let (signer, signers) = (signer.clone(), s2.clone());
                    glommio::spawn_local(async move {
                        let job = Job { signers, message: message(i), arrival_secs: 1_800_000_000 };
                        signer.sign(job).await.unwrap().fields
                    })
                })
                .collect();
            let mut out = Vec::new();
            for t in tasks {
                out.push(t.await);
            }
            assert!(!signer.busy.get(), "the signing task ends when no job waits");
            out
        });
        assert_eq!(signed, alone);
    }

    #[test]
    fn the_executor_polls_its_timers_while_signatures_wait() {
        let dir = tempfile::tempdir().unwrap();
        let s = signers(dir.path());
        let executor = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound).io_memory(1 << 20);
        let (signed_when_timer_fired, total) = executor.make().unwrap().run(async move {
            let signer = Rc::new(Signer::default());
            let done = Rc::new(Cell::new(0usize));
            // 100 RSA-2048 signatures: 10 ms or more of CPU on any machine.
            let tasks: Vec<_> = (0..100)
                .map(|i| {
                    let (signer, signers, done) = (signer.clone(), s.clone(), done.clone());
                    glommio::spawn_local(async move {
                        let job = Job { signers, message: message(i), arrival_secs: 1 };
                        signer.sign(job).await.unwrap();
                        done.set(done.get() + 1);
                    })
                })
                .collect();
            // A timer set now fires (the reactor is polled) before the
            // signing task is through with the 100.
            glommio::timer::sleep(SLICE).await;
            let at_timer = done.get();
            for t in tasks {
                t.await;
            }
            (at_timer, done.get())
        });
        assert_eq!(total, 100);
        assert!(signed_when_timer_fired < 100, "the timer waited for all {signed_when_timer_fired} signatures");
    }

    #[test]
    fn each_job_gets_its_own_result() {
        let dir = tempfile::tempdir().unwrap();
        let s = signers(dir.path());
        let jobs = [
            Job { signers: s.clone(), message: message(1), arrival_secs: 1 },
            Job { signers: s.clone(), message: b"Subject: no from\r\n\r\nx\r\n".to_vec(), arrival_secs: 1 },
            Job { signers: s.clone(), message: b"From: a@other.example\r\n\r\nx\r\n".to_vec(), arrival_secs: 1 },
        ];
        let r: Vec<_> = jobs.iter().map(Job::sign).collect();
        assert!(r[0].is_ok());
        assert!(matches!(r[1], Err(NotSigned::From(_))));
        assert!(matches!(r[2], Err(NotSigned::NoKey(_))));
    }
}
