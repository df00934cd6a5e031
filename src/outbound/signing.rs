//! DKIM signatures made on the executor's blocking thread, in batches.
//!
//! An RSA-2048 signature costs a few hundred µs to over a millisecond of
//! CPU: made inline it would stall every session and delivery of the core
//! meanwhile, so it runs on the executor's blocking thread (glommio pins it
//! to the executor's CPU: the signing stays on the core that relays the
//! message). Handing each signature over on its own cost the executor a
//! sleep and a wake-up per message, the wake-up coming from the blocking
//! thread (about 80 µs of CPU per message on the development VM, mostly
//! system time: README, DKIM section). Here a delivery that wants a
//! signature while a batch is being signed joins the next batch, and one
//! hand-off carries a whole batch: under load the executor is woken once
//! per batch instead of once per message, while a lone message still goes
//! at once. The signatures are the same bytes (`Signers::sign` of the same
//! message and time); only the hand-off changes. The jobs of messages next
//! in line are queued ahead of their connections (`sign_ahead`); a job
//! whose answer was dropped before its batch left is not signed.
//!
//! It must not be shared between cores (it is the executor's own queue),
//! and it never holds a borrow across an `.await`.

use crate::sender_auth::{NotSigned, Signed, Signers};
use futures_channel::oneshot;
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;

/// The most signatures one hand-off carries: bounds how long the first of
/// a batch waits for the last (32 RSA-2048 signatures: 8–40 ms, depending
/// on the CPU). Under load a batch takes every delivery that waits: with
/// the default 20 connections per site, each with one message behind
/// another, up to 40. Measured in a queue drain (README, DKIM section):
/// batches of up to 32 instead of 16 cut the executor's wake-ups and CPU
/// per message by ~10 % (fewer, fuller hand-offs) for ~10 ms more latency
/// per message, which mail does not notice.
pub const MAX_BATCH: usize = 32;

/// What one signature needs, owned (it crosses to the blocking thread).
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

/// Sign every job of `batch`, in order (what the blocking thread runs).
pub fn sign_batch(batch: &[Job]) -> Vec<Result<Signed, NotSigned>> {
    batch.iter().map(Job::sign).collect()
}

/// Where the signatures of one job go back to.
type Reply = oneshot::Sender<Result<Signed, NotSigned>>;

/// The signatures of one submitted job, when they are made.
pub struct Answer(oneshot::Receiver<Result<Signed, NotSigned>>);

impl std::future::Future for Answer {
    type Output = Result<Signed, NotSigned>;

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0)
            .poll(cx)
            .map(|r| r.unwrap_or_else(|_| Err(NotSigned::Failed("the signing batch was dropped".to_string()))))
    }
}

/// One core's queue of signatures waiting for the blocking thread.
#[derive(Default)]
pub struct BatchSigner {
    /// Jobs not yet handed over, each with where its answer goes.
    pending: RefCell<Vec<(Job, Reply)>>,
    /// A batch is with the blocking thread (its task hands over the next).
    busy: Cell<bool>,
    /// Time the blocking thread spent signing since it was last taken
    /// ([`BatchSigner::take_busy`]).
    ran: Cell<std::time::Duration>,
}

impl BatchSigner {
    /// Queue `job` for the blocking thread, with whatever other jobs are
    /// waiting, and return at once; its signatures come when awaited
    /// (dropping the answer before its batch is handed over withdraws the
    /// job: nothing is signed for it).
    pub fn submit(self: &Rc<Self>, job: Job) -> Answer {
        let (reply, answer) = oneshot::channel();
        self.pending.borrow_mut().push((job, reply));
        if !self.busy.replace(true) {
            glommio::spawn_local(Rc::clone(self).hand_over()).detach();
        }
        Answer(answer)
    }

    /// The time the blocking thread spent signing since the last call (how
    /// busy signing keeps it: see `outbound::lend`).
    pub fn take_busy(&self) -> std::time::Duration {
        self.ran.take()
    }

    /// The next batch to hand over, taken out of `pending`. A job whose
    /// answer nobody awaits any more (its signature was asked ahead, then
    /// its message left the window) is dropped unsigned.
    fn next_batch(&self) -> (Vec<Job>, Vec<Reply>) {
        let mut pending = self.pending.borrow_mut();
        pending.retain(|(_, reply)| !reply.is_canceled());
        let n = pending.len().min(MAX_BATCH);
        pending.drain(..n).unzip()
    }

    /// Hand over batches until no job waits.
    async fn hand_over(self: Rc<Self>) {
        loop {
            let (jobs, replies) = self.next_batch();
            if jobs.is_empty() {
                self.busy.set(false);
                return;
            }
            // Timed on the blocking thread: the executor may wake to the
            // answer late, and that is not signing's time.
            let (results, ran) = glommio::executor()
                .spawn_blocking(move || {
                    let started = std::time::Instant::now();
                    let results = sign_batch(&jobs);
                    (results, started.elapsed())
                })
                .await;
            self.ran.set(self.ran.get() + ran);
            for (reply, result) in replies.into_iter().zip(results) {
                // The delivery may have given up meanwhile: nothing to tell.
                let _ = reply.send(result);
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
    fn batched_signatures_are_those_of_signing_alone() {
        let dir = tempfile::tempdir().unwrap();
        let s = signers(dir.path());
        let alone: Vec<Vec<u8>> = (0..40).map(|i| s.sign(&message(i), 1_800_000_000).unwrap().fields).collect();
        let s2 = s.clone();
        let executor = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound).io_memory(1 << 20);
        let batched = executor.make().unwrap().run(async move {
            let signer = Rc::new(BatchSigner::default());
            // All 40 ask at once: the first goes alone, the others wait for
            // it and follow in batches.
            let tasks: Vec<_> = (0..40)
                .map(|i| {
                    let (signer, signers) = (signer.clone(), s2.clone());
                    glommio::spawn_local(async move {
                        let job = Job { signers, message: message(i), arrival_secs: 1_800_000_000 };
                        signer.submit(job).await.unwrap().fields
                    })
                })
                .collect();
            let mut out = Vec::new();
            for t in tasks {
                out.push(t.await);
            }
            assert!(!signer.busy.get(), "the hand-over task ends when no job waits");
            out
        });
        assert_eq!(batched, alone);
    }

    #[test]
    fn a_withdrawn_job_is_not_signed() {
        let dir = tempfile::tempdir().unwrap();
        let s = signers(dir.path());
        let executor = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound).io_memory(1 << 20);
        let batch = executor.make().unwrap().run(async move {
            let signer = Rc::new(BatchSigner::default());
            let job = |i| Job { signers: s.clone(), message: message(i), arrival_secs: 1 };
            // As if a batch were with the blocking thread: all three wait.
            signer.busy.set(true);
            let _first = signer.submit(job(1));
            drop(signer.submit(job(2)));
            let _third = signer.submit(job(3));
            let (jobs, _replies) = signer.next_batch();
            jobs.into_iter().map(|j| j.message).collect::<Vec<_>>()
        });
        assert_eq!(batch, vec![message(1), message(3)]);
    }

    #[test]
    fn a_batch_keeps_each_jobs_own_result() {
        let dir = tempfile::tempdir().unwrap();
        let s = signers(dir.path());
        let jobs = vec![
            Job { signers: s.clone(), message: message(1), arrival_secs: 1 },
            Job { signers: s.clone(), message: b"Subject: no from\r\n\r\nx\r\n".to_vec(), arrival_secs: 1 },
            Job { signers: s.clone(), message: b"From: a@other.example\r\n\r\nx\r\n".to_vec(), arrival_secs: 1 },
        ];
        let r = sign_batch(&jobs);
        assert!(r[0].is_ok());
        assert!(matches!(r[1], Err(NotSigned::From(_))));
        assert!(matches!(r[2], Err(NotSigned::NoKey(_))));
    }
}
