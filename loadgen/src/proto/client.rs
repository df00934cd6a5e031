//! The SMTP client session as a sans-I/O state machine: greeting, EHLO (with
//! HELO fallback), STARTTLS, AUTH PLAIN, then transactions (MAIL, RCPT...,
//! DATA, content, end of data), optionally pipelined (RFC 2920), and QUIT.
//!
//! It owns the order of commands and the meaning of replies; it does not own
//! sockets, clocks or message content. The driver feeds it parsed replies
//! ([`SmtpClient::handle_reply`]), writes whatever [`SmtpClient::take_output`]
//! yields, and acts on [`Next`]: upgrade to TLS, write the message content,
//! or start the next message.

use super::reply::Reply;
use base64::Engine;
use std::collections::VecDeque;
use std::fmt;

/// A command (or the greeting) whose reply we wait for. Also the name under
/// which its latency and reply codes are reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Step {
    Greeting,
    Ehlo,
    StartTls,
    Auth,
    Rset,
    Mail,
    Rcpt,
    Data,
    EndOfData,
    Quit,
}

impl Step {
    /// Lower-case name used in reports and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Step::Greeting => "greeting",
            Step::Ehlo => "ehlo",
            Step::StartTls => "starttls",
            Step::Auth => "auth",
            Step::Rset => "rset",
            Step::Mail => "mail",
            Step::Rcpt => "rcpt",
            Step::Data => "data",
            Step::EndOfData => "end_of_data",
            Step::Quit => "quit",
        }
    }
}

/// What the server offered in its EHLO reply (only what we use).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Caps {
    pub pipelining: bool,
    pub starttls: bool,
    pub auth_plain: bool,
    pub eight_bit_mime: bool,
    /// The SIZE limit, if announced (0 means no limit).
    pub size: Option<u64>,
}

impl Caps {
    /// Reads the extension lines (every line after the first).
    pub fn from_ehlo(reply: &Reply) -> Caps {
        let mut caps = Caps::default();
        for line in reply.lines.iter().skip(1) {
            let upper = line.to_ascii_uppercase();
            let mut words = upper.split([' ', '=']);
            match words.next() {
                Some("PIPELINING") => caps.pipelining = true,
                Some("STARTTLS") => caps.starttls = true,
                Some("8BITMIME") => caps.eight_bit_mime = true,
                Some("AUTH") => caps.auth_plain |= words.any(|w| w == "PLAIN"),
                Some("SIZE") => caps.size = Some(words.next().and_then(|n| n.parse().ok()).unwrap_or(0)),
                _ => {}
            }
        }
        caps
    }
}

/// How the session is set up; fixed for the life of a client.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Name sent in EHLO/HELO.
    pub helo_name: String,
    /// Pipeline MAIL/RCPT/DATA when the server offers PIPELINING.
    pub pipelining: bool,
    /// Issue STARTTLS after the first EHLO (fails if not offered).
    pub starttls: bool,
    /// AUTH PLAIN with these credentials before the first transaction.
    pub auth: Option<(String, String)>,
}

/// The envelope of one message.
#[derive(Debug, Clone)]
pub struct Envelope {
    pub from: String,
    pub rcpts: Vec<String>,
    /// Announced with SIZE= when the server supports it.
    pub size: usize,
}

/// How a transaction ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// 2xx after the end of data.
    Accepted,
    /// The reply that decided the message's fate was not positive.
    Rejected { step: Step, code: u16 },
}

/// What the driver must do after a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Write pending output (if any) and wait for more replies.
    Wait,
    /// STARTTLS accepted: run the TLS handshake, then call `tls_established`.
    StartTls,
    /// Session set up and idle: start a message or quit.
    Ready,
    /// 354: write the message content (dot-stuffed, with the final
    /// `.\r\n`), then call `data_sent`.
    SendData,
    /// The transaction is over; the client is idle again.
    Done(Outcome),
    /// QUIT was answered.
    Closed,
}

/// The result of one reply: which command it answered and what to do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub step: Step,
    pub code: u16,
    pub next: Next,
}

/// Why the session cannot go on. Rejections inside a transaction are not
/// errors (they are [`Outcome::Rejected`]); these are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionError {
    /// The greeting, EHLO, STARTTLS or AUTH was refused.
    Refused { step: Step, reply: String },
    /// `--tls starttls` but the server did not offer STARTTLS.
    StartTlsNotOffered,
    /// `--auth` but the server did not offer AUTH PLAIN.
    AuthNotOffered,
    /// A reply arrived when none was expected, or a code made no sense.
    Unexpected { step: Option<Step>, reply: String },
    /// The caller started a message while the session was not idle.
    NotReady,
}

impl fmt::Display for SessionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SessionError::Refused { step, reply } => write!(f, "{} refused: {reply}", step.name()),
            SessionError::StartTlsNotOffered => f.write_str("server does not offer STARTTLS"),
            SessionError::AuthNotOffered => f.write_str("server does not offer AUTH PLAIN"),
            SessionError::Unexpected { step: Some(s), reply } => {
                write!(f, "unexpected reply to {}: {reply}", s.name())
            }
            SessionError::Unexpected { step: None, reply } => {
                write!(f, "unsolicited reply: {reply}")
            }
            SessionError::NotReady => f.write_str("message started while session busy"),
        }
    }
}

/// Where the session is. Transaction details live in [`Txn`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Setup,
    Ready,
    InTxn,
    Quitting,
    Closed,
}

/// The transaction in progress.
#[derive(Debug, Default)]
struct Txn {
    /// Recipients not yet sent (non-pipelined mode sends one per reply).
    unsent_rcpts: VecDeque<String>,
    /// RCPTs answered positively.
    rcpt_ok: u32,
    /// The first rejection that dooms the message (MAIL, or RCPT if none passes).
    mail_reject: Option<u16>,
    first_rcpt_reject: Option<u16>,
    /// We answered a 354 with an empty body because nothing was accepted.
    aborted: bool,
}

impl Txn {
    /// The reason the message cannot be delivered, if MAIL or every RCPT failed.
    fn doom(&self) -> Option<Outcome> {
        if let Some(code) = self.mail_reject {
            return Some(Outcome::Rejected { step: Step::Mail, code });
        }
        if self.rcpt_ok == 0 && self.unsent_rcpts.is_empty() {
            let code = self.first_rcpt_reject.unwrap_or(554);
            return Some(Outcome::Rejected { step: Step::Rcpt, code });
        }
        None
    }
}

/// One SMTP client session.
#[derive(Debug)]
pub struct SmtpClient {
    settings: Settings,
    phase: Phase,
    /// Commands sent (or the greeting), oldest first, whose replies are due.
    pending: VecDeque<Step>,
    out: Vec<u8>,
    caps: Caps,
    tls_active: bool,
    authed: bool,
    /// The previous transaction ended mid-way; send RSET before the next MAIL.
    need_rset: bool,
    txn: Txn,
}

impl SmtpClient {
    /// A session waiting for the greeting. `tls_active` is true for
    /// implicit TLS (the handshake already happened).
    pub fn new(settings: Settings, tls_active: bool) -> Self {
        SmtpClient {
            settings,
            phase: Phase::Setup,
            pending: VecDeque::from([Step::Greeting]),
            out: Vec::with_capacity(512),
            caps: Caps::default(),
            tls_active,
            authed: false,
            need_rset: false,
            txn: Txn::default(),
        }
    }

    /// Capabilities from the last EHLO.
    pub fn caps(&self) -> &Caps {
        &self.caps
    }

    /// True when MAIL/RCPT/DATA go out in one batch.
    pub fn pipelining(&self) -> bool {
        self.settings.pipelining && self.caps.pipelining
    }

    /// Moves pending command bytes to the end of `buf`.
    pub fn take_output(&mut self, buf: &mut Vec<u8>) {
        buf.append(&mut self.out);
    }

    /// True if there are command bytes to write.
    pub fn has_output(&self) -> bool {
        !self.out.is_empty()
    }

    /// The command whose reply is due next, if any (for timeout messages).
    pub fn awaiting(&self) -> Option<Step> {
        self.pending.front().copied()
    }

    /// Starts a transaction. Only valid when idle ([`Next::Ready`] or [`Next::Done`]).
    pub fn start_message(&mut self, env: &Envelope) -> Result<(), SessionError> {
        if self.phase != Phase::Ready {
            return Err(SessionError::NotReady);
        }
        self.phase = Phase::InTxn;
        self.txn = Txn::default();
        if std::mem::take(&mut self.need_rset) {
            self.command(Step::Rset, "RSET");
        }
        let mut mail = format!("MAIL FROM:<{}>", env.from);
        if self.caps.size.is_some() {
            mail.push_str(&format!(" SIZE={}", env.size));
        }
        self.command(Step::Mail, &mail);
        if self.pipelining() {
            for r in &env.rcpts {
                self.command(Step::Rcpt, &format!("RCPT TO:<{r}>"));
            }
            self.command(Step::Data, "DATA");
        } else {
            self.txn.unsent_rcpts = env.rcpts.iter().cloned().collect();
        }
        Ok(())
    }

    /// The content after 354 has been written; the end-of-data reply is due.
    pub fn data_sent(&mut self) {
        self.pending.push_back(Step::EndOfData);
    }

    /// TLS is up after STARTTLS: EHLO again (RFC 3207 discards old state).
    pub fn tls_established(&mut self) {
        self.tls_active = true;
        self.caps = Caps::default();
        self.ehlo();
    }

    /// Sends QUIT (from the idle state; otherwise the caller just closes).
    pub fn quit(&mut self) {
        self.phase = Phase::Quitting;
        self.command(Step::Quit, "QUIT");
    }

    /// Feeds one reply.
    pub fn handle_reply(&mut self, reply: &Reply) -> Result<Progress, SessionError> {
        let Some(step) = self.pending.pop_front() else {
            return Err(SessionError::Unexpected { step: None, reply: reply.first_line() });
        };
        let code = reply.code;
        let next = match step {
            Step::Greeting | Step::Ehlo | Step::StartTls | Step::Auth => self.setup_reply(step, reply)?,
            Step::Rset | Step::Mail | Step::Rcpt | Step::Data | Step::EndOfData => self.txn_reply(step, reply)?,
            Step::Quit => {
                self.phase = Phase::Closed;
                Next::Closed
            }
        };
        Ok(Progress { step, code, next })
    }

    fn setup_reply(&mut self, step: Step, reply: &Reply) -> Result<Next, SessionError> {
        let refused = || SessionError::Refused { step, reply: reply.first_line() };
        match step {
            Step::Greeting if reply.code == 220 => {
                self.ehlo();
                Ok(Next::Wait)
            }
            Step::Ehlo if reply.is_positive() => {
                self.caps = Caps::from_ehlo(reply);
                self.after_ehlo()
            }
            Step::StartTls if reply.code == 220 => Ok(Next::StartTls),
            Step::Auth if reply.code == 235 => {
                self.authed = true;
                self.after_ehlo()
            }
            _ => Err(refused()),
        }
    }

    /// After EHLO (or AUTH): STARTTLS, then AUTH, then ready.
    fn after_ehlo(&mut self) -> Result<Next, SessionError> {
        if self.settings.starttls && !self.tls_active {
            if !self.caps.starttls {
                return Err(SessionError::StartTlsNotOffered);
            }
            self.command(Step::StartTls, "STARTTLS");
            return Ok(Next::Wait);
        }
        if let Some((user, pass)) = &self.settings.auth {
            if !self.authed {
                if !self.caps.auth_plain {
                    return Err(SessionError::AuthNotOffered);
                }
                let token = base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{pass}"));
                self.command(Step::Auth, &format!("AUTH PLAIN {token}"));
                return Ok(Next::Wait);
            }
        }
        self.phase = Phase::Ready;
        Ok(Next::Ready)
    }

    fn txn_reply(&mut self, step: Step, reply: &Reply) -> Result<Next, SessionError> {
        if self.phase != Phase::InTxn {
            return Err(SessionError::Unexpected { step: Some(step), reply: reply.first_line() });
        }
        let ok = reply.is_positive();
        let pipelined = self.pipelining();
        match step {
            // A failed RSET is odd but harmless: MAIL's reply decides.
            Step::Rset => Ok(Next::Wait),
            Step::Mail => {
                if !ok {
                    self.txn.mail_reject = Some(reply.code);
                    if !pipelined {
                        return Ok(self.finish(Some(Step::Mail), reply.code, true));
                    }
                } else if !pipelined {
                    if self.txn.unsent_rcpts.is_empty() {
                        self.command(Step::Data, "DATA");
                    } else {
                        self.send_next_rcpt();
                    }
                }
                Ok(Next::Wait)
            }
            Step::Rcpt => {
                if ok {
                    self.txn.rcpt_ok += 1;
                } else {
                    self.txn.first_rcpt_reject.get_or_insert(reply.code);
                }
                if !pipelined {
                    if !self.txn.unsent_rcpts.is_empty() {
                        self.send_next_rcpt();
                    } else if let Some(Outcome::Rejected { step, code }) = self.txn.doom() {
                        return Ok(self.finish(Some(step), code, true));
                    } else {
                        self.command(Step::Data, "DATA");
                    }
                }
                Ok(Next::Wait)
            }
            Step::Data if reply.code == 354 => {
                if self.txn.doom().is_some() {
                    // RFC 2920 §3.1: a server must not accept DATA without a
                    // recipient; if one does, send an empty message.
                    self.txn.aborted = true;
                    self.out.extend_from_slice(b".\r\n");
                    self.pending.push_back(Step::EndOfData);
                    Ok(Next::Wait)
                } else {
                    Ok(Next::SendData)
                }
            }
            Step::Data => {
                let doom = self.txn.doom();
                Ok(match doom {
                    Some(Outcome::Rejected { step, code }) => self.finish(Some(step), code, true),
                    _ => self.finish(Some(Step::Data), reply.code, true),
                })
            }
            Step::EndOfData => {
                if self.txn.aborted {
                    let Some(Outcome::Rejected { step, code }) = self.txn.doom() else {
                        unreachable!("aborted implies doomed")
                    };
                    return Ok(self.finish(Some(step), code, false));
                }
                Ok(if ok {
                    self.finish(None, reply.code, false)
                } else {
                    self.finish(Some(Step::EndOfData), reply.code, false)
                })
            }
            Step::Greeting | Step::Ehlo | Step::StartTls | Step::Auth | Step::Quit => {
                Err(SessionError::Unexpected { step: Some(step), reply: reply.first_line() })
            }
        }
    }

    /// Ends the transaction; `rejected_at` None means accepted.
    fn finish(&mut self, rejected_at: Option<Step>, code: u16, need_rset: bool) -> Next {
        // With pipelining, replies to commands after the deciding one may
        // still be due; the transaction ends only when all have arrived.
        if !self.pending.is_empty() {
            return Next::Wait;
        }
        self.phase = Phase::Ready;
        self.need_rset = need_rset;
        Next::Done(match rejected_at {
            None => Outcome::Accepted,
            Some(step) => Outcome::Rejected { step, code },
        })
    }

    fn send_next_rcpt(&mut self) {
        if let Some(r) = self.txn.unsent_rcpts.pop_front() {
            self.command(Step::Rcpt, &format!("RCPT TO:<{r}>"));
        }
    }

    fn ehlo(&mut self) {
        let line = format!("EHLO {}", self.settings.helo_name);
        self.command(Step::Ehlo, &line);
    }

    fn command(&mut self, step: Step, line: &str) {
        self.out.extend_from_slice(line.as_bytes());
        self.out.extend_from_slice(b"\r\n");
        self.pending.push_back(step);
    }
}

#[cfg(test)]
#[path = "client_tests.rs"]
mod tests;
