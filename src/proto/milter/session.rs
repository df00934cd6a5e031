//! One milter conversation about one message, sans-I/O: the MTA side of
//! the protocol. The driver writes what [`Session::take_output`] gives,
//! feeds what the milter sends to [`Session::handle_input`], and stops
//! when [`Session::verdict`] is there (then writes the QUIT that is in
//! the output, best effort).
//!
//! The whole SMTP conversation is replayed at once (Postfix's behaviour
//! for non-smtpd milters): negotiation, connect, HELO, MAIL, each RCPT,
//! DATA, the header fields, end of headers, the body in chunks, end of
//! message. Steps the milter declined (`SMFIP_NO*`) are not sent; steps
//! it will not answer (`SMFIP_NR_*`) are not waited for.

use super::frame::{self, action, protocol, Command, FrameError, Reply, MAX_BODY_CHUNK};
use super::headers;
use std::net::IpAddr;

/// Most modifications taken from one milter for one message: a bound on
/// memory, far above what real filters send (a few headers).
pub const MAX_MODIFICATIONS: usize = 4096;

/// What the milter is told about the session and the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conversation {
    /// Our hostname (macro `j`).
    pub hostname: String,
    pub client_addr: IpAddr,
    pub client_port: u16,
    /// The client's name; `[address]` when it has none (as Postfix says).
    pub client_name: String,
    pub helo: String,
    /// The envelope sender without angle brackets; empty for `<>`.
    pub sender: String,
    /// The envelope recipients without angle brackets, in RCPT order.
    pub recipients: Vec<String>,
    /// The SMTP AUTH user, if any (macro `{auth_authen}`).
    pub auth_user: Option<String>,
    /// The message (header section, empty line, body) with CRLF lines.
    pub message: Vec<u8>,
}

/// A change the milter asked for, in the order it sent them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Modification {
    AddHeader {
        name: String,
        value: String,
    },
    ChgHeader {
        index: u32,
        name: String,
        value: String,
    },
    InsHeader {
        index: u32,
        name: String,
        value: String,
    },
    AddRcpt(String),
    DelRcpt(String),
    /// One chunk of the new body; the chunks together replace it.
    ReplBody(Vec<u8>),
    ChgFrom(String),
    Quarantine(String),
}

/// How the milter decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Go on with the message, changed as listed (empty when the milter
    /// accepted before the end of the message).
    Accept(Vec<Modification>),
    /// Refuse it permanently (SMTP 550 5.7.1).
    Reject,
    /// Refuse it for now (SMTP 451 4.7.1).
    Tempfail,
    /// Refuse it with the milter's own reply.
    ReplyCode { code: u16, text: String },
    /// Say 250 and throw it away.
    Discard,
}

impl Verdict {
    /// The action's name in logs and metrics.
    pub fn action(&self) -> &'static str {
        match self {
            Verdict::Accept(mods) if mods.iter().any(|m| matches!(m, Modification::Quarantine(_))) => "quarantine",
            Verdict::Accept(_) => "accept",
            Verdict::Reject => "reject",
            Verdict::Tempfail => "tempfail",
            Verdict::ReplyCode { code, .. } if *code >= 500 => "reject",
            Verdict::ReplyCode { .. } => "tempfail",
            Verdict::Discard => "discard",
        }
    }
}

/// Why a conversation failed (the filter's `on_error` decides what then).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error("milter speaks protocol version {0}, need 2 to 6")]
    Version(u32),
    #[error("unexpected milter reply {reply} at {step}")]
    Unexpected { reply: String, step: &'static str },
    #[error("milter sent a {0} it did not negotiate")]
    NotNegotiated(&'static str),
    #[error("milter sent more than {0} modifications or body bytes")]
    TooMuch(usize),
    #[error("milter closed the connection before deciding")]
    Closed,
}

/// A step of the replay; `Rcpt`, `Header` and `Body` carry how far they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Connect,
    Helo,
    Mail,
    Rcpt(usize),
    Data,
    Header(usize),
    Eoh,
    /// The offset in the message of the next chunk.
    Body(usize),
    Eob,
}

impl Step {
    fn name(self) -> &'static str {
        match self {
            Step::Connect => "connect",
            Step::Helo => "helo",
            Step::Mail => "mail",
            Step::Rcpt(_) => "rcpt",
            Step::Data => "data",
            Step::Header(_) => "header",
            Step::Eoh => "end of headers",
            Step::Body(_) => "body",
            Step::Eob => "end of message",
        }
    }
}

#[derive(Debug)]
enum State {
    Negotiating,
    Waiting(Step),
    Done(Verdict),
}

/// The MTA side of one milter conversation.
#[derive(Debug)]
pub struct Session<'a> {
    conv: &'a Conversation,
    /// Limit on the replacement body's total size (the message limit).
    max_body: usize,
    state: State,
    out: Vec<u8>,
    /// Negotiated: what the milter may change, and its protocol flags.
    actions: u32,
    protocol: u32,
    fields: Vec<headers::Field<'a>>,
    body_start: usize,
    mods: Vec<Modification>,
    replaced_body: usize,
    /// Say QUIT with the verdict (a replay's own connection ends there;
    /// a live one carries on to the next message).
    quit: bool,
}

/// What a milter agreed to at option negotiation: the actions it may
/// take and the protocol flags it asked for (both within what we offer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated {
    pub actions: u32,
    pub protocol: u32,
}

impl<'a> Session<'a> {
    /// Start a conversation; the option negotiation is in the output.
    /// `max_body` bounds the replacement body a milter may send.
    pub fn new(conv: &'a Conversation, max_body: usize) -> Session<'a> {
        let (fields, body_start) = headers::split(&conv.message);
        let mut out = Vec::with_capacity(64);
        Command::OptNeg { version: frame::VERSION, actions: action::OFFERED, protocol: protocol::OFFERED }
            .encode(&mut out);
        Session {
            conv,
            max_body,
            state: State::Negotiating,
            out,
            actions: 0,
            protocol: 0,
            fields,
            body_start,
            mods: Vec::new(),
            replaced_body: 0,
            quit: true,
        }
    }

    /// The message part of a conversation on a connection that already
    /// negotiated `negotiated` and saw the envelope step by step
    /// ([`super::live`]): DATA, the header fields, end of headers, the
    /// body, end of message; the first of them is in the output. No QUIT
    /// follows the verdict: the connection stays for the next message.
    pub fn for_message(conv: &'a Conversation, max_body: usize, negotiated: Negotiated) -> Session<'a> {
        let (fields, body_start) = headers::split(&conv.message);
        let mut s = Session {
            conv,
            max_body,
            state: State::Negotiating,
            out: Vec::with_capacity(64),
            actions: negotiated.actions & action::OFFERED,
            protocol: negotiated.protocol & protocol::OFFERED,
            fields,
            body_start,
            mods: Vec::new(),
            replaced_body: 0,
            quit: false,
        };
        s.advance(Step::Data);
        s
    }

    /// Bytes to send to the milter now (possibly none).
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }

    /// The milter's decision, once made.
    pub fn verdict(&self) -> Option<&Verdict> {
        match &self.state {
            State::Done(v) => Some(v),
            _ => None,
        }
    }

    /// The milter negotiated `SMFIP_HDR_LEADSPC`: header values it sends
    /// carry their own leading blank.
    pub fn leading_space(&self) -> bool {
        self.has(protocol::HDR_LEADSPC)
    }

    /// The decision, consuming the session.
    pub fn into_verdict(self) -> Option<Verdict> {
        match self.state {
            State::Done(v) => Some(v),
            _ => None,
        }
    }

    /// Take replies from the front of `buf`; returns the bytes used (the
    /// rest is an incomplete frame: keep it and read more). Replies after
    /// the verdict are not read.
    pub fn handle_input(&mut self, buf: &[u8]) -> Result<usize, SessionError> {
        let mut used = 0;
        while !matches!(self.state, State::Done(_)) {
            let Some((reply, n)) = frame::decode(&buf[used..])? else { break };
            used += n;
            self.handle_reply(reply)?;
        }
        Ok(used)
    }

    fn handle_reply(&mut self, reply: Reply) -> Result<(), SessionError> {
        let step = match self.state {
            State::Negotiating => return self.negotiated(reply),
            State::Waiting(step) => step,
            State::Done(_) => return Ok(()),
        };
        let unexpected = |reply: &Reply| SessionError::Unexpected { reply: format!("{reply:?}"), step: step.name() };
        let at_eob = step == Step::Eob;
        match reply {
            Reply::Continue if at_eob => self.accept(),
            Reply::Continue => self.advance(next(step, self)),
            Reply::Accept => self.accept(),
            Reply::Reject => self.finish(Verdict::Reject),
            Reply::Tempfail => self.finish(Verdict::Tempfail),
            Reply::Discard => self.finish(Verdict::Discard),
            Reply::ReplyCode { code, text } => self.finish(Verdict::ReplyCode { code, text }),
            Reply::Progress => {}
            Reply::Skip => match step {
                Step::Body(_) => self.advance(Step::Eob),
                _ if at_eob => return Err(unexpected(&Reply::Skip)),
                _ => self.advance(next(step, self)),
            },
            Reply::OptNeg { .. } | Reply::Other(_) => return Err(unexpected(&reply)),
            modification if at_eob => self.modification(modification)?,
            other => return Err(unexpected(&other)),
        }
        Ok(())
    }

    fn modification(&mut self, reply: Reply) -> Result<(), SessionError> {
        let (needs, m) = match reply {
            Reply::AddHeader { name, value } => (action::ADDHDRS, Modification::AddHeader { name, value }),
            Reply::ChgHeader { index, name, value } => {
                (action::CHGHDRS, Modification::ChgHeader { index, name, value })
            }
            // libmilter sends an insert only with ADDHDRS.
            Reply::InsHeader { index, name, value } => {
                (action::ADDHDRS, Modification::InsHeader { index, name, value })
            }
            Reply::AddRcpt(a) => (action::ADDRCPT | action::ADDRCPT_PAR, Modification::AddRcpt(a)),
            Reply::DelRcpt(a) => (action::DELRCPT, Modification::DelRcpt(a)),
            Reply::ReplBody(chunk) => {
                self.replaced_body += chunk.len();
                if self.replaced_body > self.max_body {
                    return Err(SessionError::TooMuch(self.max_body));
                }
                (action::CHGBODY, Modification::ReplBody(chunk))
            }
            Reply::ChgFrom(a) => (action::CHGFROM, Modification::ChgFrom(a)),
            Reply::Quarantine(r) => (action::QUARANTINE, Modification::Quarantine(r)),
            other => return Err(SessionError::Unexpected { reply: format!("{other:?}"), step: "end of message" }),
        };
        if self.actions & needs == 0 {
            return Err(SessionError::NotNegotiated(modification_name(&m)));
        }
        if self.mods.len() >= MAX_MODIFICATIONS {
            return Err(SessionError::TooMuch(MAX_MODIFICATIONS));
        }
        self.mods.push(m);
        Ok(())
    }

    fn negotiated(&mut self, reply: Reply) -> Result<(), SessionError> {
        let Reply::OptNeg { version, actions, protocol } = reply else {
            return Err(SessionError::Unexpected { reply: format!("{reply:?}"), step: "negotiation" });
        };
        if !(2..=6).contains(&version) {
            return Err(SessionError::Version(version));
        }
        // Only what we offered counts: a milter cannot make us skip or
        // stop waiting on a step in a way we do not know about.
        self.actions = actions & action::OFFERED;
        self.protocol = protocol & protocol::OFFERED;
        self.advance(Step::Connect);
        Ok(())
    }

    fn accept(&mut self) {
        let mods = std::mem::take(&mut self.mods);
        self.finish(Verdict::Accept(mods));
    }

    fn finish(&mut self, verdict: Verdict) {
        if self.quit {
            Command::Quit.encode(&mut self.out);
        }
        self.state = State::Done(verdict);
    }

    fn has(&self, flag: u32) -> bool {
        self.protocol & flag != 0
    }

    /// Send steps from `step` on until one whose reply we wait for.
    fn advance(&mut self, mut step: Step) {
        loop {
            let (skip, no_reply) = self.flags(step);
            if !skip {
                self.send(step);
                if !no_reply {
                    self.state = State::Waiting(step);
                    return;
                }
            }
            step = next(step, self);
        }
    }

    /// (not sent, sent but not answered) for `step`.
    fn flags(&self, step: Step) -> (bool, bool) {
        use protocol::*;
        let n = |no: u32, nr: u32| (self.has(no), self.has(nr));
        match step {
            Step::Connect => n(NOCONNECT, NR_CONN),
            Step::Helo => n(NOHELO, NR_HELO),
            Step::Mail => n(NOMAIL, NR_MAIL),
            Step::Rcpt(i) => (self.has(NORCPT) || i >= self.conv.recipients.len(), self.has(NR_RCPT)),
            Step::Data => n(NODATA, NR_DATA),
            Step::Header(i) => (self.has(NOHDRS) || i >= self.fields.len(), self.has(NR_HDR)),
            Step::Eoh => n(NOEOH, NR_EOH),
            Step::Body(at) => (self.has(NOBODY) || at >= self.conv.message.len(), self.has(NR_BODY)),
            Step::Eob => (false, false),
        }
    }

    fn send(&mut self, step: Step) {
        let c = self.conv;
        let out = &mut self.out;
        match step {
            Step::Connect => {
                let macros = [
                    ("j", c.hostname.clone()),
                    ("{daemon_name}", "ringmail".to_string()),
                    ("{client_addr}", c.client_addr.to_string()),
                    ("{client_name}", c.client_name.clone()),
                ];
                Command::Macro { for_cmd: b'C', macros: &macros }.encode(out);
                Command::Connect { hostname: &c.client_name, addr: c.client_addr, port: c.client_port }.encode(out);
            }
            Step::Helo => Command::Helo(&c.helo).encode(out),
            Step::Mail => {
                let mut macros = vec![("{mail_addr}", c.sender.clone())];
                if let Some(user) = &c.auth_user {
                    macros.push(("{auth_authen}", user.clone()));
                }
                Command::Macro { for_cmd: b'M', macros: &macros }.encode(out);
                Command::Mail(&[format!("<{}>", c.sender)]).encode(out);
            }
            Step::Rcpt(i) => {
                let rcpt = &c.recipients[i];
                Command::Macro { for_cmd: b'R', macros: &[("{rcpt_addr}", rcpt.clone())] }.encode(out);
                Command::Rcpt(&[format!("<{rcpt}>")]).encode(out);
            }
            Step::Data => Command::Data.encode(out),
            Step::Header(i) => {
                let f = &self.fields[i];
                let value = f.value(self.protocol & protocol::HDR_LEADSPC != 0);
                Command::Header { name: f.name, value: &value }.encode(out);
            }
            Step::Eoh => Command::Eoh.encode(out),
            Step::Body(at) => {
                let end = (at + MAX_BODY_CHUNK).min(c.message.len());
                Command::Body(&c.message[at..end]).encode(out);
            }
            Step::Eob => Command::BodyEob.encode(out),
        }
    }
}

/// The step after `step`.
fn next(step: Step, s: &Session<'_>) -> Step {
    match step {
        Step::Connect => Step::Helo,
        Step::Helo => Step::Mail,
        Step::Mail => Step::Rcpt(0),
        Step::Rcpt(i) if i + 1 < s.conv.recipients.len() => Step::Rcpt(i + 1),
        Step::Rcpt(_) => Step::Data,
        Step::Data => Step::Header(0),
        Step::Header(i) if i + 1 < s.fields.len() => Step::Header(i + 1),
        Step::Header(_) => Step::Eoh,
        Step::Eoh => Step::Body(s.body_start),
        Step::Body(at) if at + MAX_BODY_CHUNK < s.conv.message.len() => Step::Body(at + MAX_BODY_CHUNK),
        Step::Body(_) | Step::Eob => Step::Eob,
    }
}

fn modification_name(m: &Modification) -> &'static str {
    match m {
        Modification::AddHeader { .. } => "header addition",
        Modification::ChgHeader { .. } => "header change",
        Modification::InsHeader { .. } => "header insertion",
        Modification::AddRcpt(_) => "recipient addition",
        Modification::DelRcpt(_) => "recipient removal",
        Modification::ReplBody(_) => "body replacement",
        Modification::ChgFrom(_) => "sender change",
        Modification::Quarantine(_) => "quarantine",
    }
}
