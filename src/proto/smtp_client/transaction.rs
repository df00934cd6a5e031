//! One MAIL transaction: MAIL FROM, the RCPTs, DATA and the end of data,
//! pipelined (RFC 2920) or in lock-step, and the per-recipient outcome.
//!
//! When the server offers both PIPELINING and CHUNKING (RFC 3030), the
//! body goes as one `BDAT n LAST` chunk in the same write as MAIL and the
//! RCPTs: one round trip per message instead of two (DATA's 354 is the
//! other), and no dot-stuffing. Exim does the same by default. The chunk
//! is sent even when every RCPT is refused (the replies are not back yet);
//! the server then refuses the BDAT too, and nobody is delivered.
//!
//! Over LMTP (RFC 2033, [`Dialect::Lmtp`]) the end of data is answered
//! once per accepted recipient, in RCPT order (§4.2), and each of those
//! replies decides its own recipient: some may be delivered while others
//! are deferred or bounced. The body always goes with DATA there (no BDAT).
//!
//! This file decides which command comes next and what each reply means
//! for each recipient. It does not frame replies (`reply`), does not handle
//! what ends a connection (421, timeouts: `client` calls [`Transaction::resolve`]
//! with the reply to defer with), and never writes the body itself.
//!
//! The decision for a recipient is taken from the first reply that is not
//! 2xx among MAIL, its RCPT and the end of the DATA exchange (the DATA
//! refusal or the reply after the body); a reply still missing means the
//! conversation ended first, and the recipient is deferred. An address
//! refused locally (never sent) is bounced whatever the server said.
//!
//! A transaction pipelined behind one that then failed at its end (see
//! `flight`) is *distrusted*: the server may have refused its commands
//! because of what was left of the failed one, so none of its refusals
//! bounces anybody; they defer (4xx, the server's text kept), and an RSET
//! follows it whatever its end.

use std::collections::VecDeque;

use super::capabilities::Capabilities;
use super::command;
use super::event::Phase;
use super::message::{MessageOutcome, OutgoingMessage, RecipientOutcome};
use super::reply::Reply;

/// Which protocol the transaction speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// RFC 5321: one reply after the body decides every accepted recipient.
    Smtp,
    /// RFC 2033: one reply after the body per accepted recipient.
    Lmtp,
}

/// A reply the transaction is owed, in the order the commands were sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Mail,
    /// The RCPT for `recipients[i]`.
    Rcpt(usize),
    Data,
    /// The final reply after the body.
    EndOfData,
    /// The reply to the lone dot sent after a 354 with nobody accepted.
    LoneDot,
    /// The reply to `BDAT n LAST` and its chunk.
    Bdat,
    /// LMTP: the reply after the body for `recipients[i]`.
    RcptEnd(usize),
}

/// What the client does after a reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Write the commands added to `out` (if any) and wait for replies.
    Wait,
    /// Have the driver write the body.
    Body,
    /// The transaction is over: report [`Transaction::resolve`]; `reset`
    /// says the server may hold transaction state (RSET before the next).
    Done { reset: bool },
    /// The reply makes no sense here: end the connection.
    Violation(Reply),
}

/// Where one recipient stands.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Rcpt {
    /// Refused by this client before sending (bad address): final.
    Refused(Reply),
    /// RCPT not sent yet, or sent and not answered.
    Awaiting,
    /// The server's reply to its RCPT.
    Replied(Reply),
    /// LMTP: accepted at RCPT, then this reply after the body decided it.
    Ended(Reply),
}

impl Rcpt {
    /// A 2xx to its RCPT (and, over LMTP, no verdict after the body yet).
    fn accepted(&self) -> bool {
        matches!(self, Rcpt::Replied(reply) if reply.is_positive())
    }

    /// LMTP: the reply after the body refused it.
    fn ended_badly(&self) -> bool {
        matches!(self, Rcpt::Ended(reply) if !reply.is_positive())
    }
}

/// One message in flight.
#[derive(Debug)]
pub struct Transaction {
    msg: OutgoingMessage,
    /// MAIL's reply, once it came.
    mail: Option<Reply>,
    /// Each recipient, same order as `msg.recipients`.
    rcpts: Vec<Rcpt>,
    /// The DATA refusal, or the reply after the body (or to BDAT).
    end: Option<Reply>,
    /// Replies owed, oldest first.
    expect: VecDeque<Step>,
    pipelined: bool,
    dialect: Dialect,
    /// The body goes as a BDAT chunk (see the module doc).
    chunked: bool,
    /// Lock-step: index of the next recipient to consider for RCPT.
    next_rcpt: usize,
    /// The driver wrote the body (phase DataTermination, not DataBlock).
    body_sent: bool,
    /// The server offers DSN: RCPTs carry NOTIFY and ORCPT.
    dsn: bool,
    /// Pipelined behind a transaction that failed (see the module doc).
    distrusted: bool,
}

impl Transaction {
    /// Starts a transaction, appending its first command(s) to `out`. A
    /// message decided without talking to the server (over the advertised
    /// SIZE, or no valid address) comes back as `Err` with its outcome.
    pub fn start(
        msg: OutgoingMessage,
        caps: &Capabilities,
        dialect: Dialect,
        out: &mut Vec<u8>,
    ) -> Result<Transaction, MessageOutcome> {
        let all = |reply: Reply| MessageOutcome {
            per_recipient: vec![RecipientOutcome::Bounced { reply }; msg.recipients.len()],
        };
        if msg.binarymime && !(caps.binarymime && caps.chunking && caps.pipelining) {
            let text = "conversion required but not supported: BINARYMIME not offered by the next hop";
            return Err(all(Reply::local(554, (5, 6, 3), text)));
        }
        if msg.smtputf8 && !caps.smtputf8 {
            // RFC 6531 §3.2: no downgrade.
            let text = "SMTPUTF8 is required, but was not offered by the next hop";
            return Err(all(Reply::local(553, (5, 6, 7), text)));
        }
        if msg.requiretls && !caps.requiretls {
            // RFC 8689 §4.2.1: a REQUIRETLS message goes only to a server
            // that promises to keep requiring TLS.
            let text = "REQUIRETLS support required, but not offered by the next hop";
            return Err(all(Reply::local(550, (5, 7, 10), text)));
        }
        let utf8 = msg.smtputf8;
        if !command::valid_address(&msg.sender, true, utf8) {
            return Err(all(Reply::local(553, (5, 1, 7), "invalid sender address syntax")));
        }
        if let Some(max) = caps.size_limit().filter(|&max| msg.size > max) {
            let text = format!("message size {} exceeds size limit {max} of server", msg.size);
            return Err(all(Reply::local(552, (5, 3, 4), text)));
        }
        let rcpts: Vec<Rcpt> = msg
            .recipients
            .iter()
            .map(|r| match command::valid_address(r, false, utf8) {
                true => Rcpt::Awaiting,
                false => Rcpt::Refused(Reply::local(553, (5, 1, 3), "invalid recipient address syntax")),
            })
            .collect();
        if !rcpts.contains(&Rcpt::Awaiting) {
            let per_recipient = rcpts.into_iter().filter_map(|r| match r {
                Rcpt::Refused(reply) | Rcpt::Replied(reply) | Rcpt::Ended(reply) => Some(reply),
                Rcpt::Awaiting => None,
            });
            return Err(MessageOutcome { per_recipient: per_recipient.map(RecipientOutcome::from_reply).collect() });
        }
        let size = caps.size.map(|_| msg.size);
        let eight_bit = msg.body_8bit && caps.eight_bit_mime;
        // DSN parameters only to a server that offers DSN (RFC 3461 §5.2:
        // otherwise they are dropped here, and a NOTIFY=SUCCESS recipient
        // gets a `relayed` notice from our side).
        let mut extra = if caps.dsn { msg.dsn.mail_params() } else { String::new() };
        if msg.requiretls {
            extra.push_str(" REQUIRETLS");
        }
        command::mail_from(out, &msg.sender, size, eight_bit, msg.binarymime, msg.smtputf8, &extra);
        let mut txn = Transaction {
            msg,
            mail: None,
            rcpts,
            end: None,
            expect: VecDeque::from([Step::Mail]),
            pipelined: caps.pipelining,
            dialect,
            // LMTP keeps DATA: per-recipient replies after a BDAT chunk
            // are allowed (RFC 2033 §4.3) but buy nothing on a local hop.
            chunked: caps.pipelining && caps.chunking && dialect == Dialect::Smtp,
            dsn: caps.dsn,
            next_rcpt: 0,
            body_sent: false,
            distrusted: false,
        };
        if txn.chunked {
            // RFC 3030 §4.2: MAIL, every RCPT and BDAT, then the chunk.
            while txn.send_next_rcpt(out) {}
            command::bdat_last(out, txn.msg.size);
            txn.expect.push_back(Step::Bdat);
        } else if txn.pipelined {
            // RFC 2920: MAIL, every RCPT and DATA in one go; DATA last.
            while txn.send_next_rcpt(out) {}
            out.extend_from_slice(command::DATA);
            txn.expect.push_back(Step::Data);
        }
        Ok(txn)
    }

    /// The body goes as the BDAT chunk right after the first commands
    /// (`Transmit::Chunk`), not after a 354.
    pub fn chunked(&self) -> bool {
        self.chunked
    }

    /// Takes the reply to the oldest outstanding command.
    pub fn on_reply(&mut self, reply: Reply, out: &mut Vec<u8>) -> Next {
        let Some(step) = self.expect.pop_front() else {
            return Next::Violation(reply);
        };
        match step {
            Step::Mail => {
                let accepted = reply.is_positive();
                self.mail = Some(reply);
                match (self.pipelined, accepted) {
                    (true, _) => Next::Wait,
                    (false, true) => self.lock_step_next(out),
                    (false, false) => Next::Done { reset: true },
                }
            }
            Step::Rcpt(i) => {
                if let Some(slot) = self.rcpts.get_mut(i) {
                    *slot = Rcpt::Replied(reply);
                }
                match self.pipelined {
                    true => Next::Wait,
                    false => self.lock_step_next(out),
                }
            }
            Step::Data => match reply.code {
                300..=399 if self.anyone_accepted() => {
                    match self.dialect {
                        Dialect::Smtp => self.expect.push_back(Step::EndOfData),
                        Dialect::Lmtp => {
                            let accepted = self.rcpts.iter().enumerate().filter(|(_, r)| r.accepted());
                            self.expect.extend(accepted.map(|(i, _)| Step::RcptEnd(i)).collect::<Vec<_>>());
                        }
                    }
                    Next::Body
                }
                // RFC 2033 §4.2: DATA must be refused when nobody was
                // accepted; a lone dot would then owe zero replies, and a
                // server that sent one anyway would desynchronise us.
                300..=399 if self.dialect == Dialect::Lmtp => Next::Violation(reply),
                // RFC 2920 §3.1: DATA accepted though nobody is: end it empty.
                300..=399 => {
                    out.extend_from_slice(command::LONE_DOT);
                    self.expect.push_back(Step::LoneDot);
                    Next::Wait
                }
                400..=599 => {
                    self.end = Some(reply);
                    Next::Done { reset: true }
                }
                0..=299 | 600..=u16::MAX => Next::Violation(reply),
            },
            Step::EndOfData | Step::Bdat => {
                let reset = !reply.is_positive();
                self.end = Some(reply);
                Next::Done { reset }
            }
            Step::LoneDot => Next::Done { reset: true },
            Step::RcptEnd(i) => {
                if let Some(slot) = self.rcpts.get_mut(i) {
                    *slot = Rcpt::Ended(reply);
                }
                match self.expect.is_empty() {
                    false => Next::Wait,
                    // RSET after a refusal, as after SMTP's end of data.
                    true => Next::Done { reset: self.rcpts.iter().any(Rcpt::ended_badly) },
                }
            }
        }
    }

    /// Lock-step after a 2xx to MAIL or any RCPT reply: the next RCPT,
    /// else DATA if someone was accepted, else the end.
    fn lock_step_next(&mut self, out: &mut Vec<u8>) -> Next {
        if self.send_next_rcpt(out) {
            return Next::Wait;
        }
        match self.anyone_accepted() {
            true => {
                out.extend_from_slice(command::DATA);
                self.expect.push_back(Step::Data);
                Next::Wait
            }
            false => Next::Done { reset: true },
        }
    }

    /// Sends RCPT for the next recipient not refused locally; false when
    /// there is none left.
    fn send_next_rcpt(&mut self, out: &mut Vec<u8>) -> bool {
        while let Some(slot) = self.rcpts.get(self.next_rcpt) {
            let i = self.next_rcpt;
            self.next_rcpt += 1;
            if *slot == Rcpt::Awaiting {
                let params = if self.dsn { self.msg.dsn.rcpt_params(i) } else { String::new() };
                command::rcpt_to(out, &self.msg.recipients[i], &params);
                self.expect.push_back(Step::Rcpt(i));
                return true;
            }
        }
        false
    }

    /// MAIL and at least one RCPT got a 2xx.
    fn anyone_accepted(&self) -> bool {
        self.mail.as_ref().is_some_and(Reply::is_positive) && self.rcpts.iter().any(Rcpt::accepted)
    }

    /// The driver wrote the body.
    pub fn body_sent(&mut self) {
        self.body_sent = true;
    }

    /// The driver wrote the body (or chunk) of this transaction.
    pub fn body_written(&self) -> bool {
        self.body_sent
    }

    /// The body was asked for ([`Next::Body`], or the chunk at the start)
    /// and is not written yet: the driver's next body write is this one's.
    pub fn awaits_body(&self) -> bool {
        !self.body_sent && self.expect.iter().any(|s| matches!(s, Step::EndOfData | Step::Bdat | Step::RcptEnd(_)))
    }

    /// Its commands went out behind a transaction that then failed: its
    /// refusals defer, and RSET follows it (see the module doc).
    pub fn distrust(&mut self) {
        self.distrusted = true;
    }

    /// See [`Transaction::distrust`].
    pub fn distrusted(&self) -> bool {
        self.distrusted
    }

    /// Which reply the transaction waits for.
    pub fn phase(&self) -> Phase {
        match self.expect.front() {
            Some(Step::Mail) => Phase::Mail,
            Some(Step::Rcpt(_)) => Phase::Rcpt,
            Some(Step::Data) => Phase::DataInit,
            Some(Step::EndOfData | Step::Bdat | Step::RcptEnd(_)) if !self.body_sent => Phase::DataBlock,
            Some(Step::EndOfData | Step::LoneDot | Step::Bdat | Step::RcptEnd(_)) => Phase::DataTermination,
            // A live transaction always awaits a reply; after Done it is
            // resolved at once and never asked.
            None => Phase::DataTermination,
        }
    }

    /// Every recipient's outcome (see the module doc). `missing` is the
    /// reply a recipient is deferred with when its deciding reply never
    /// came; it must be a 4xx.
    pub fn resolve(&self, missing: &Reply) -> MessageOutcome {
        let mail = self.mail.as_ref();
        let end = self.end.as_ref();
        let per_recipient = self
            .rcpts
            .iter()
            .map(|rcpt| {
                let deciding = match (rcpt, mail) {
                    (Rcpt::Refused(local), _) => Some(local),
                    (Rcpt::Awaiting | Rcpt::Replied(_) | Rcpt::Ended(_), None) => None,
                    (Rcpt::Awaiting | Rcpt::Replied(_) | Rcpt::Ended(_), Some(mail)) if !mail.is_positive() => {
                        Some(mail)
                    }
                    (Rcpt::Awaiting, Some(_)) => None,
                    (Rcpt::Replied(rcpt), Some(_)) if !rcpt.is_positive() => Some(rcpt),
                    // LMTP: this recipient's own reply after the body; a
                    // recipient still owed one is deferred (`missing`).
                    (Rcpt::Ended(end), Some(_)) => Some(end),
                    (Rcpt::Replied(_), Some(_)) => end,
                };
                let reply = deciding.unwrap_or(missing);
                match (self.distrusted, rcpt) {
                    (true, Rcpt::Awaiting | Rcpt::Replied(_) | Rcpt::Ended(_)) if reply.code >= 500 => {
                        RecipientOutcome::Deferred { reply: distrusted(reply) }
                    }
                    (_, _) => RecipientOutcome::from_reply(reply.clone()),
                }
            })
            .collect();
        MessageOutcome { per_recipient }
    }
}

/// A refusal in a distrusted transaction, as the deferral it becomes: the
/// server's words, with a 4xx code and why it is not final.
fn distrusted(reply: &Reply) -> Reply {
    let text = format!("{reply} (refused right after a failed pipelined transaction; will retry)");
    Reply::local(451, (4, 5, 0), text)
}
