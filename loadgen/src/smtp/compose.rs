//! Builds each message: picks a size from the mix, chooses recipients, and
//! formats the headers with a unique Message-ID. One per core; the bodies of
//! each size class are generated once and shared by reference.

use super::plan::{Plan, Recipients};
use crate::proto::client::Envelope;
use crate::proto::message;
use rand::rngs::SmallRng;
use rand::SeedableRng;
use std::rc::Rc;

/// One message ready to send.
pub struct Composed {
    pub envelope: Envelope,
    /// Header block, ends with the empty line.
    pub headers: String,
    /// Dot-stuffed body including the final `.\r\n`.
    pub body: Rc<Vec<u8>>,
}

impl Composed {
    /// Bytes on the wire for the content (headers + stuffed body + terminator).
    pub fn wire_len(&self) -> usize {
        self.headers.len() + self.body.len()
    }
}

/// A core's message factory.
pub struct Composer {
    /// (nominal size, wire body) per size class.
    bodies: Vec<(usize, Rc<Vec<u8>>)>,
    rng: SmallRng,
}

impl Composer {
    /// Generates the bodies for every size in the plan's mix.
    pub fn new(plan: &Plan, core: usize) -> Self {
        let bodies = plan.sizes.entries().iter().map(|(size, _)| (*size, Rc::new(message::wire_body(*size)))).collect();
        Composer { bodies, rng: SmallRng::seed_from_u64(plan.seed.wrapping_add(core as u64)) }
    }

    /// Message `seq` of worker `worker`.
    pub fn compose(&mut self, plan: &Plan, worker: u64, seq: u64) -> Composed {
        let size = plan.sizes.pick(&mut self.rng);
        let body = self
            .bodies
            .iter()
            .find(|(s, _)| *s == size)
            .map(|(_, b)| Rc::clone(b))
            .unwrap_or_else(|| Rc::new(message::wire_body(size)));
        let k = plan.recipients_per_message as u64;
        let rcpts =
            (0..k).map(|j| recipient(&plan.recipients, worker.wrapping_mul(7919).wrapping_add(seq * k + j))).collect();
        let id = message::message_id(&plan.run_id, worker, seq);
        let headers = message::headers(&id, &plan.from, &plan.date, &format!("w{worker} #{seq}"));
        let size = headers.len() + body.len();
        Composed { envelope: Envelope { from: plan.from.clone(), rcpts, size }, headers, body }
    }
}

/// The `i`-th recipient in round-robin order.
pub fn recipient(spec: &Recipients, i: u64) -> String {
    match spec {
        Recipients::Domains { domains, users_per_domain } => {
            let d = domains.len() as u64;
            let domain = &domains[(i % d) as usize];
            format!("user{}@{domain}", (i / d) % users_per_domain)
        }
        Recipients::Fixed(list) => list[(i % list.len() as u64) as usize].clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipients_rotate_over_domains_then_users() {
        let spec = Recipients::Domains { domains: vec!["a.test".into(), "b.test".into()], users_per_domain: 2 };
        let got: Vec<String> = (0..5).map(|i| recipient(&spec, i)).collect();
        assert_eq!(got, ["user0@a.test", "user0@b.test", "user1@a.test", "user1@b.test", "user0@a.test"]);
    }

    #[test]
    fn fixed_recipients_rotate() {
        let spec = Recipients::Fixed(vec!["x@l.test".into(), "y@l.test".into()]);
        assert_eq!(recipient(&spec, 3), "y@l.test");
    }
}
