//! The POP3 client session (RFC 1939, STLS from RFC 2595) as a sans-I/O
//! state machine: greeting, optional STLS, USER/PASS, LIST, RETR of every
//! message, optional DELE, QUIT; or, in logins mode, USER/PASS, STAT, QUIT.
//!
//! Lock-step up to LIST; then up to `pipeline` RETR/DELE commands are
//! outstanding at once (RFC 2449 PIPELINING; 1 is lock-step). Bytes in via
//! [`Pop3Client::handle_input`], commands out via
//! [`Pop3Client::take_output`]; no sockets, no clock.

use super::dotdata::DotReader;
use std::collections::VecDeque;
use std::fmt;

const MAX_LINE: usize = 4096;

/// A command (or the greeting) whose response we wait for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Pop3Step {
    Greeting,
    Stls,
    User,
    Pass,
    List,
    Stat,
    Retr,
    Dele,
    Quit,
}

impl Pop3Step {
    /// Lower-case name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            Pop3Step::Greeting => "greeting",
            Pop3Step::Stls => "stls",
            Pop3Step::User => "user",
            Pop3Step::Pass => "pass",
            Pop3Step::List => "list",
            Pop3Step::Stat => "stat",
            Pop3Step::Retr => "retr",
            Pop3Step::Dele => "dele",
            Pop3Step::Quit => "quit",
        }
    }
}

/// What happened, for the driver's timing and counting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pop3Progress {
    /// The command whose response completed.
    pub step: Pop3Step,
    /// `+OK` (for RETR: the whole message arrived).
    pub ok: bool,
    /// For RETR: unstuffed message bytes.
    pub bytes: u64,
    /// What the driver must do now.
    pub next: Pop3Next,
}

/// The driver's next move.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pop3Next {
    /// Write output (if any) and keep reading.
    Wait,
    /// STLS accepted: handshake, then `tls_established`.
    StartTls,
    /// QUIT answered; the session is over.
    Closed,
}

/// Why the session cannot go on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pop3Error {
    /// `-ERR` to the greeting, STLS, USER, PASS, LIST or STAT.
    Refused { step: Pop3Step, line: String },
    /// A response that is neither `+OK` nor `-ERR`, or an overlong line.
    Malformed(String),
}

impl fmt::Display for Pop3Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pop3Error::Refused { step, line } => write!(f, "{} refused: {line}", step.name()),
            Pop3Error::Malformed(l) => write!(f, "malformed POP3 response {l:?}"),
        }
    }
}

#[derive(Debug)]
enum State {
    /// Waiting for the status line of `step`.
    Status(Pop3Step),
    /// Reading LIST's scan lines.
    ListBody,
    /// Reading a RETR body.
    RetrBody(DotReader),
    Closed,
}

/// Fixed session settings.
#[derive(Debug, Clone)]
pub struct Pop3Settings {
    pub user: String,
    pub pass: String,
    pub starttls: bool,
    pub delete: bool,
    /// RETR/DELE commands outstanding at once (at least 1).
    pub pipeline: usize,
    /// Log in, STAT, QUIT: no LIST, no RETR.
    pub logins_only: bool,
}

/// One POP3 client session.
#[derive(Debug)]
pub struct Pop3Client {
    settings: Pop3Settings,
    state: State,
    out: Vec<u8>,
    tls_active: bool,
    /// Message numbers from LIST, in order.
    listing: Vec<u32>,
    /// The next RETR/DELE to send, counting both (see [`Pop3Client::nth`]).
    next_command: usize,
    /// RETR/DELE sent and not yet answered, oldest first (the state waits
    /// for the front one).
    outstanding: VecDeque<Pop3Step>,
}

impl Pop3Client {
    /// A session waiting for the greeting.
    pub fn new(settings: Pop3Settings, tls_active: bool) -> Self {
        Pop3Client {
            settings,
            state: State::Status(Pop3Step::Greeting),
            out: Vec::with_capacity(128),
            tls_active,
            listing: Vec::new(),
            next_command: 0,
            outstanding: VecDeque::new(),
        }
    }

    /// Moves pending command bytes to the end of `buf`.
    pub fn take_output(&mut self, buf: &mut Vec<u8>) {
        buf.append(&mut self.out);
    }

    /// The step whose response is due (for error messages).
    pub fn awaiting(&self) -> Option<Pop3Step> {
        match self.state {
            State::Status(s) => Some(s),
            State::ListBody => Some(Pop3Step::List),
            State::RetrBody(_) => Some(Pop3Step::Retr),
            State::Closed => None,
        }
    }

    /// TLS is up after STLS: log in.
    pub fn tls_established(&mut self) {
        self.tls_active = true;
        self.user();
    }

    /// Feeds input; returns bytes used and maybe a completed step. Call again
    /// with the rest until it uses nothing.
    pub fn handle_input(&mut self, input: &[u8]) -> Result<(usize, Option<Pop3Progress>), Pop3Error> {
        match &mut self.state {
            State::Closed => Ok((0, None)),
            State::RetrBody(reader) => {
                let fed = reader.feed(input, |_| {});
                if !fed.done {
                    return Ok((fed.consumed, None));
                }
                let bytes = reader.content_len();
                self.answered();
                Ok((fed.consumed, Some(self.progress(Pop3Step::Retr, true, bytes))))
            }
            State::ListBody => {
                let Some((line, used)) = take_line(input)? else {
                    return Ok((0, None));
                };
                if line == "." {
                    self.send_more();
                    return Ok((used, Some(self.progress(Pop3Step::List, true, 0))));
                }
                let n = line.split_ascii_whitespace().next().and_then(|n| n.parse().ok());
                match n {
                    Some(n) => self.listing.push(n),
                    None => return Err(Pop3Error::Malformed(line)),
                }
                Ok((used, None))
            }
            State::Status(step) => {
                let step = *step;
                let Some((line, used)) = take_line(input)? else {
                    return Ok((0, None));
                };
                let ok = if line.starts_with("+OK") {
                    true
                } else if line.starts_with("-ERR") {
                    false
                } else {
                    return Err(Pop3Error::Malformed(line));
                };
                self.status(step, ok, line).map(|p| (used, p))
            }
        }
    }

    fn status(&mut self, step: Pop3Step, ok: bool, line: String) -> Result<Option<Pop3Progress>, Pop3Error> {
        let fatal = matches!(
            step,
            Pop3Step::Greeting | Pop3Step::Stls | Pop3Step::User | Pop3Step::Pass | Pop3Step::List | Pop3Step::Stat
        );
        if !ok && fatal {
            return Err(Pop3Error::Refused { step, line });
        }
        let mut next = Pop3Next::Wait;
        match step {
            Pop3Step::Greeting => {
                if self.settings.starttls && !self.tls_active {
                    self.command(Pop3Step::Stls, "STLS");
                } else {
                    self.user();
                }
            }
            Pop3Step::Stls => {
                self.state = State::Status(Pop3Step::User);
                next = Pop3Next::StartTls;
            }
            Pop3Step::User => {
                let cmd = format!("PASS {}", self.settings.pass);
                self.command(Pop3Step::Pass, &cmd);
            }
            Pop3Step::Pass if self.settings.logins_only => self.command(Pop3Step::Stat, "STAT"),
            Pop3Step::Pass => self.command(Pop3Step::List, "LIST"),
            Pop3Step::Stat => self.command(Pop3Step::Quit, "QUIT"),
            Pop3Step::List => self.state = State::ListBody,
            Pop3Step::Retr if ok => self.state = State::RetrBody(DotReader::new()),
            Pop3Step::Retr => {
                // -ERR to RETR (message gone?): skip it, and its DELE if
                // that is not sent yet.
                if self.settings.delete && self.outstanding.len() == 1 && self.next_command % 2 == 1 {
                    self.next_command += 1;
                }
                self.answered();
            }
            Pop3Step::Dele => self.answered(),
            Pop3Step::Quit => {
                self.state = State::Closed;
                next = Pop3Next::Closed;
            }
        }
        // LIST and RETR are complete only when their bodies are.
        if ok && matches!(step, Pop3Step::List | Pop3Step::Retr) {
            return Ok(None);
        }
        Ok(Some(Pop3Progress { step, ok, bytes: 0, next }))
    }

    /// The `i`th RETR/DELE of the session: each listed message's RETR,
    /// followed by its DELE when deleting.
    fn nth(&self, i: usize) -> Option<(Pop3Step, u32)> {
        let per = if self.settings.delete { 2 } else { 1 };
        let n = *self.listing.get(i / per)?;
        Some((if i % per == 1 { Pop3Step::Dele } else { Pop3Step::Retr }, n))
    }

    /// The front outstanding command was answered: send more, wait for
    /// the next answer, or QUIT once every message is done.
    fn answered(&mut self) {
        self.outstanding.pop_front();
        self.send_more();
    }

    /// Fill the window with RETR/DELE commands; wait for the oldest
    /// outstanding one, or QUIT when none is left.
    fn send_more(&mut self) {
        while self.outstanding.len() < self.settings.pipeline.max(1) {
            let Some((step, n)) = self.nth(self.next_command) else { break };
            let verb = if step == Pop3Step::Dele { "DELE" } else { "RETR" };
            self.out.extend_from_slice(format!("{verb} {n}\r\n").as_bytes());
            self.outstanding.push_back(step);
            self.next_command += 1;
        }
        match self.outstanding.front() {
            Some(&step) => self.state = State::Status(step),
            None => self.command(Pop3Step::Quit, "QUIT"),
        }
    }

    fn user(&mut self) {
        let cmd = format!("USER {}", self.settings.user);
        self.command(Pop3Step::User, &cmd);
    }

    fn progress(&self, step: Pop3Step, ok: bool, bytes: u64) -> Pop3Progress {
        Pop3Progress { step, ok, bytes, next: Pop3Next::Wait }
    }

    fn command(&mut self, step: Pop3Step, line: &str) {
        self.out.extend_from_slice(line.as_bytes());
        self.out.extend_from_slice(b"\r\n");
        self.state = State::Status(step);
    }
}

/// One CRLF (or LF) line from the start of `input`, and bytes used.
fn take_line(input: &[u8]) -> Result<Option<(String, usize)>, Pop3Error> {
    match memchr::memchr(b'\n', input) {
        Some(nl) => {
            let line = &input[..nl];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            Ok(Some((String::from_utf8_lossy(line).into_owned(), nl + 1)))
        }
        None if input.len() > MAX_LINE => Err(Pop3Error::Malformed("line too long".into())),
        None => Ok(None),
    }
}

#[cfg(test)]
#[path = "pop3_tests.rs"]
mod tests;
