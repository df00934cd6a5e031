//! One milter connection that follows an SMTP session as it happens
//! (`stage = "connect"`, Postfix's `smtpd_milters`), sans-I/O: option
//! negotiation, then connect, HELO, MAIL and each RCPT one at a time,
//! each answered before the SMTP reply to that command goes out. The
//! message itself (DATA to end of message) is a [`Session::for_message`]
//! on the same connection. Between transactions the milter is told ABORT
//! (as Postfix does), at the end QUIT.
//!
//! The driver asks for a step ([`Live::connect`], [`Live::helo`],
//! [`Live::mail`], [`Live::rcpt`]), writes [`Live::take_output`], and feeds
//! what the milter sends to [`Live::handle_input`] until it returns the
//! step's [`StepReply`]. A step the milter declined (`SMFIP_NO*`) or will
//! not answer (`SMFIP_NR_*`) is answered at once.

use super::frame::{self, action, protocol, Command, Reply};
use super::session::{Conversation, Negotiated, Session, SessionError};
use std::net::IpAddr;

/// The milter's word on one live step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepReply {
    /// Go on.
    Continue,
    /// Accept without further filtering: the rest of the connection (at
    /// connect or HELO) or of this message (at MAIL or RCPT).
    Accept,
    /// Refuse this command permanently.
    Reject,
    /// Refuse this command for now.
    Tempfail,
    /// Refuse this command with the milter's own reply.
    ReplyCode { code: u16, text: String },
    /// Take the message, then throw it away (decided at end of data).
    Discard,
}

/// Where the connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wait {
    /// The option negotiation is outstanding.
    Negotiation,
    /// The reply to this step is outstanding.
    Step(&'static str),
    /// Nothing outstanding: a step may be asked for.
    Idle,
}

/// The MTA side of a milter connection kept for one SMTP session.
#[derive(Debug)]
pub struct Live {
    out: Vec<u8>,
    wait: Wait,
    negotiated: Negotiated,
    /// MAIL was sent and the message has not ended at end of data: the
    /// milter must hear ABORT before the next MAIL.
    in_message: bool,
}

impl Default for Live {
    fn default() -> Live {
        Live::new()
    }
}

impl Live {
    /// A new connection; the option negotiation is in the output, and
    /// [`Live::handle_input`] answers `Continue` once the milter agreed.
    pub fn new() -> Live {
        let mut out = Vec::with_capacity(64);
        Command::OptNeg { version: frame::VERSION, actions: action::OFFERED, protocol: protocol::OFFERED }
            .encode(&mut out);
        Live { out, wait: Wait::Negotiation, negotiated: Negotiated { actions: 0, protocol: 0 }, in_message: false }
    }

    /// Bytes to send to the milter now (possibly none).
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }

    /// What the milter agreed to (meaningful once negotiated).
    pub fn negotiated(&self) -> Negotiated {
        self.negotiated
    }

    /// Waiting for the milter (a step's reply is outstanding).
    pub fn waiting(&self) -> bool {
        self.wait != Wait::Idle
    }

    /// Tell the milter about the client. `None` when it is not waited for.
    pub fn connect(&mut self, c: &Conversation) -> Option<StepReply> {
        let macros = [
            ("j", c.hostname.clone()),
            ("{daemon_name}", "ringmail".to_string()),
            ("{client_addr}", c.client_addr.to_string()),
            ("{client_name}", c.client_name.clone()),
        ];
        let (no, nr) = (protocol::NOCONNECT, protocol::NR_CONN);
        self.step("connect", no, nr, |out| {
            Command::Macro { for_cmd: b'C', macros: &macros }.encode(out);
            Command::Connect { hostname: &c.client_name, addr: c.client_addr, port: c.client_port }.encode(out);
        })
    }

    /// Tell the milter the HELO/EHLO argument.
    pub fn helo(&mut self, helo: &str) -> Option<StepReply> {
        self.step("helo", protocol::NOHELO, protocol::NR_HELO, |out| Command::Helo(helo).encode(out))
    }

    /// Tell the milter a MAIL's sender (without angle brackets, empty for
    /// `<>`); an unfinished message before it is aborted first.
    pub fn mail(&mut self, sender: &str, auth_user: Option<&str>) -> Option<StepReply> {
        self.abort();
        self.in_message = true;
        let mut macros = vec![("{mail_addr}", sender.to_string())];
        if let Some(user) = auth_user {
            macros.push(("{auth_authen}", user.to_string()));
        }
        self.step("mail", protocol::NOMAIL, protocol::NR_MAIL, |out| {
            Command::Macro { for_cmd: b'M', macros: &macros }.encode(out);
            Command::Mail(&[format!("<{sender}>")]).encode(out);
        })
    }

    /// Tell the milter one RCPT's address (without angle brackets).
    pub fn rcpt(&mut self, rcpt: &str) -> Option<StepReply> {
        let macros = [("{rcpt_addr}", rcpt.to_string())];
        self.step("rcpt", protocol::NORCPT, protocol::NR_RCPT, |out| {
            Command::Macro { for_cmd: b'R', macros: &macros }.encode(out);
            Command::Rcpt(&[format!("<{rcpt}>")]).encode(out);
        })
    }

    /// The message part of the transaction, on this connection (see
    /// [`Session::for_message`]); the transaction is over for the milter
    /// once that session has its verdict.
    pub fn message<'a>(&mut self, conv: &'a Conversation, max_body: usize) -> Session<'a> {
        self.in_message = false;
        Session::for_message(conv, max_body, self.negotiated)
    }

    /// Forget an unfinished message (RSET, a refused MAIL, a transaction
    /// that ended without data): ABORT goes out, which has no reply.
    pub fn abort(&mut self) {
        if std::mem::take(&mut self.in_message) {
            Command::Abort.encode(&mut self.out);
        }
    }

    /// End the connection: QUIT goes out.
    pub fn quit(&mut self) {
        Command::Quit.encode(&mut self.out);
    }

    /// Take replies from the front of `buf`: the bytes used, and the
    /// outstanding step's reply once it is there (the rest of `buf` is an
    /// incomplete frame: keep it and read more).
    pub fn handle_input(&mut self, buf: &[u8]) -> Result<(usize, Option<StepReply>), SessionError> {
        let mut used = 0;
        while self.wait != Wait::Idle {
            let Some((reply, n)) = frame::decode(&buf[used..])? else { break };
            used += n;
            if let Some(answer) = self.handle_reply(reply)? {
                self.wait = Wait::Idle;
                return Ok((used, Some(answer)));
            }
        }
        Ok((used, None))
    }

    fn handle_reply(&mut self, reply: Reply) -> Result<Option<StepReply>, SessionError> {
        let step = match self.wait {
            Wait::Negotiation => {
                let Reply::OptNeg { version, actions, protocol } = reply else {
                    return Err(SessionError::Unexpected { reply: format!("{reply:?}"), step: "negotiation" });
                };
                if !(2..=6).contains(&version) {
                    return Err(SessionError::Version(version));
                }
                // Only what we offered counts (see Session::negotiated).
                self.negotiated =
                    Negotiated { actions: actions & action::OFFERED, protocol: protocol & protocol::OFFERED };
                return Ok(Some(StepReply::Continue));
            }
            Wait::Step(step) => step,
            Wait::Idle => return Ok(None),
        };
        Ok(Some(match reply {
            Reply::Progress => return Ok(None),
            // Skip means "no more of this kind": for one command, go on.
            Reply::Continue | Reply::Skip => StepReply::Continue,
            Reply::Accept => StepReply::Accept,
            Reply::Reject => StepReply::Reject,
            Reply::Tempfail => StepReply::Tempfail,
            Reply::Discard => StepReply::Discard,
            Reply::ReplyCode { code, text } => StepReply::ReplyCode { code, text },
            other => return Err(SessionError::Unexpected { reply: format!("{other:?}"), step }),
        }))
    }

    /// Send a step unless declined; wait for its reply unless the milter
    /// will not answer it. `Some` is the answer when none is waited for.
    fn step(&mut self, name: &'static str, no: u32, nr: u32, encode: impl FnOnce(&mut Vec<u8>)) -> Option<StepReply> {
        debug_assert_eq!(self.wait, Wait::Idle, "a live milter step asked while one is outstanding");
        let has = |flag: u32| self.negotiated.protocol & flag != 0;
        if has(no) {
            return Some(StepReply::Continue);
        }
        encode(&mut self.out);
        if has(nr) {
            return Some(StepReply::Continue);
        }
        self.wait = Wait::Step(name);
        None
    }
}

/// A conversation's fixed part for the connect step: the client as the
/// milter is told it (`client_name` `[address]` when it has none).
pub fn client(hostname: &str, addr: IpAddr, port: u16) -> Conversation {
    Conversation {
        hostname: hostname.to_string(),
        client_addr: addr,
        client_port: port,
        client_name: format!("[{addr}]"),
        helo: String::new(),
        sender: String::new(),
        recipients: Vec::new(),
        auth_user: None,
        message: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::session_tests::{codes, optneg, reply};
    use super::*;
    use std::net::Ipv4Addr;

    /// Feed `input` one byte at a time; the step reply when it came.
    fn feed(live: &mut Live, input: &[u8]) -> Option<StepReply> {
        let mut buf = Vec::new();
        for b in input {
            buf.push(*b);
            let (n, answer) = live.handle_input(&buf).unwrap();
            buf.drain(..n);
            if answer.is_some() {
                assert!(buf.is_empty());
                return answer;
            }
        }
        None
    }

    fn negotiated(proto: u32) -> Live {
        let mut live = Live::new();
        assert_eq!(codes(&live.take_output()), "O");
        assert_eq!(feed(&mut live, &optneg(action::OFFERED, proto)), Some(StepReply::Continue));
        live
    }

    #[test]
    fn each_step_waits_for_its_reply_and_a_new_mail_aborts_the_last() {
        let mut live = negotiated(0);
        let c = client("mx.test", IpAddr::V4(Ipv4Addr::LOCALHOST), 4000);
        assert_eq!(live.connect(&c), None);
        assert_eq!(codes(&live.take_output()), "DC");
        assert_eq!(feed(&mut live, &reply(b'c', b"")), Some(StepReply::Continue));
        assert_eq!(live.helo("client.test"), None);
        assert_eq!(codes(&live.take_output()), "H");
        assert_eq!(feed(&mut live, &[reply(b'p', b""), reply(b'c', b"")].concat()), Some(StepReply::Continue));
        assert_eq!(live.mail("a@b.test", None), None);
        assert_eq!(codes(&live.take_output()), "DM");
        assert_eq!(feed(&mut live, &reply(b'c', b"")), Some(StepReply::Continue));
        assert_eq!(live.rcpt("u@mx.test"), None);
        assert_eq!(
            feed(&mut live, &reply(b'y', b"550 5.7.1 no\0")),
            Some(StepReply::ReplyCode { code: 550, text: "5.7.1 no".into() })
        );
        live.take_output();
        // The transaction never reached data: ABORT, then the new MAIL.
        assert_eq!(live.mail("", None), None);
        assert_eq!(codes(&live.take_output()), "ADM");
        assert_eq!(feed(&mut live, &reply(b'r', b"")), Some(StepReply::Reject));
    }

    #[test]
    fn declined_and_unanswered_steps_are_answered_at_once() {
        let mut live = negotiated(protocol::NOHELO | protocol::NR_RCPT);
        assert_eq!(live.helo("x"), Some(StepReply::Continue));
        assert!(live.take_output().is_empty());
        assert_eq!(live.mail("a@b.test", None), None);
        assert_eq!(feed(&mut live, &reply(b'c', b"")), Some(StepReply::Continue));
        live.take_output();
        assert_eq!(live.rcpt("u@mx.test"), Some(StepReply::Continue));
        assert_eq!(codes(&live.take_output()), "DR");
        assert!(!live.waiting());
    }

    #[test]
    fn the_message_follows_on_the_same_connection_without_quit() {
        let mut live = negotiated(0);
        assert_eq!(live.mail("a@b.test", None), None);
        feed(&mut live, &reply(b'c', b""));
        live.take_output();
        let mut conv = client("mx.test", IpAddr::V4(Ipv4Addr::LOCALHOST), 1);
        conv.message = b"Subject: hi\r\n\r\nbody\r\n".to_vec();
        let mut s = live.message(&conv, 1000);
        assert_eq!(codes(&s.take_output()), "T");
        for (r, want) in [(b'c', "L"), (b'c', "N"), (b'c', "B"), (b'c', "E")] {
            assert_eq!(s.handle_input(&reply(r, b"")).unwrap(), 5);
            assert_eq!(codes(&s.take_output()), want);
        }
        s.handle_input(&reply(b'c', b"")).unwrap();
        assert!(s.verdict().is_some());
        assert!(s.take_output().is_empty(), "no QUIT after a live message");
        // The message ended: the next MAIL is not preceded by ABORT.
        assert_eq!(live.mail("a@b.test", None), None);
        assert_eq!(codes(&live.take_output()), "DM");
    }

    #[test]
    fn a_modification_outside_end_of_message_is_a_protocol_error() {
        let mut live = negotiated(0);
        live.helo("x");
        assert!(live.handle_input(&reply(b'h', b"X-A\0v\0")).is_err());
    }
}
