//! The sink's SMTP server session as a sans-I/O state machine: commands in,
//! replies out, and an [`Action`] when the driver must decide or do
//! something (reply to a completed message, start TLS, close).
//!
//! It accepts everything a load test sends (EHLO with PIPELINING, 8BITMIME,
//! SIZE, CHUNKING (BDAT, RFC 3030) unless turned off; STARTTLS and AUTH
//! PLAIN when configured) and never decides a
//! message's fate itself: the driver picks the reply (`--reply` mix,
//! `--delay`). It does not read sockets or clocks.

use super::dotdata::DotReader;
use base64::Engine;

/// Longest command line accepted.
const MAX_LINE: usize = 4096;
/// Most recipients per message.
const MAX_RCPTS: usize = 1000;
/// How much of the content start is kept to find the Message-ID.
const HEAD_CAP: usize = 16 * 1024;

/// Fixed settings shared by all sessions of a sink.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Name in the greeting and EHLO.
    pub hostname: String,
    /// Offer STARTTLS (the driver has a certificate).
    pub starttls: bool,
    /// Require AUTH PLAIN with these credentials before MAIL.
    pub auth: Option<(String, String)>,
    /// Announced SIZE; bigger messages get 552 (the driver applies it).
    pub max_size: u64,
    /// Keep the whole content for `--save` (otherwise only the head).
    pub keep_content: bool,
    /// Offer CHUNKING and take BDAT (real MX hosts mostly do).
    pub chunking: bool,
}

/// A message whose DATA is complete; the driver must answer it with
/// [`ServerSession::reply_to_message`] before feeding more input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub mail_from: String,
    pub rcpts: Vec<String>,
    /// The Message-ID header value, if present.
    pub message_id: Option<String>,
    /// A DKIM-Signature field is in the header (within the first
    /// `HEAD_CAP` bytes), so a benchmark of a signing relay can tell that
    /// every message it measured was really signed.
    pub dkim_signed: bool,
    /// Unstuffed content size in bytes.
    pub size: u64,
    /// Larger than the announced SIZE.
    pub oversize: bool,
    /// The unstuffed content, when `keep_content` is set.
    pub content: Option<Vec<u8>>,
}

/// What the driver must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Flush output (the 220), run the TLS server handshake, then call
    /// `tls_established`.
    StartTls,
    /// DATA is complete: decide and call `reply_to_message`.
    Message(Box<Received>),
    /// Flush output and close the connection.
    Close,
}

#[derive(Debug)]
enum State {
    Command,
    /// `AUTH PLAIN` without initial response: waiting for the `334` answer.
    AuthResponse,
    Data {
        reader: DotReader,
        head: Vec<u8>,
        content: Option<Vec<u8>>,
    },
    /// Inside a BDAT chunk: `left` bytes of it still to come. `refusal`
    /// is the reply owed once they are read when the chunk is not wanted
    /// (no MAIL, no recipient, DATA mixed in); RFC 3030 §2 says to read
    /// it all the same.
    Chunk {
        left: u64,
        last: bool,
        refusal: Option<&'static str>,
    },
    /// A message or STARTTLS is being handled by the driver.
    Waiting,
    Closed,
}

/// One server session.
#[derive(Debug)]
pub struct ServerSession {
    cfg: std::rc::Rc<ServerConfig>,
    state: State,
    out: Vec<u8>,
    greeted: bool,
    tls_active: bool,
    authed: bool,
    mail_from: Option<String>,
    rcpts: Vec<String>,
    /// The BDAT chunks of the current message so far.
    chunks: Option<Chunks>,
    /// Set by the driver while the sink throttles (`--throttle-after`):
    /// MAIL gets this reply and the session closes.
    refuse_mail: Option<&'static str>,
    /// This session was closed by `refuse_mail`.
    refused: bool,
}

/// What the BDAT chunks of one message have brought so far.
#[derive(Debug, Default)]
struct Chunks {
    head: Vec<u8>,
    content: Option<Vec<u8>>,
    size: u64,
}

impl ServerSession {
    /// A new session; the greeting is already in the output.
    pub fn new(cfg: std::rc::Rc<ServerConfig>, tls_active: bool) -> Self {
        let mut s = ServerSession {
            cfg,
            state: State::Command,
            out: Vec::with_capacity(1024),
            greeted: false,
            tls_active,
            authed: false,
            mail_from: None,
            rcpts: Vec::new(),
            chunks: None,
            refuse_mail: None,
            refused: false,
        };
        let greeting = format!("220 {} ESMTP ringmail-loadgen sink", s.cfg.hostname);
        s.reply(&greeting);
        s
    }

    /// Moves pending reply bytes to the end of `buf`.
    pub fn take_output(&mut self, buf: &mut Vec<u8>) {
        buf.append(&mut self.out);
    }

    /// True when replies are waiting to be written.
    pub fn has_output(&self) -> bool {
        !self.out.is_empty()
    }

    /// Feeds input; returns bytes used and, possibly, an action. Call again
    /// with the unused rest until it uses nothing and returns no action.
    pub fn handle_input(&mut self, input: &[u8]) -> (usize, Option<Action>) {
        match &mut self.state {
            State::Waiting | State::Closed => (0, None),
            State::Chunk { left, last, refusal } => {
                let take = (*left).min(input.len() as u64) as usize;
                *left -= take as u64;
                let (done, last, refusal) = (*left == 0, *last, *refusal);
                if refusal.is_none() {
                    let chunks = self.chunks.get_or_insert_with(Chunks::default);
                    keep(&mut chunks.head, &mut chunks.content, &input[..take]);
                    chunks.size += take as u64;
                }
                if !done {
                    return (take, None);
                }
                self.state = State::Command;
                if let Some(reply) = refusal {
                    self.reply(reply);
                    return (take, None);
                }
                if !last {
                    let size = self.chunks.as_ref().map_or(0, |c| c.size);
                    self.reply(&format!("250 2.0.0 {size} octets received"));
                    return (take, None);
                }
                let Chunks { head, content, size } = self.chunks.take().unwrap_or_default();
                (take, Some(self.received(&head, content, size)))
            }
            State::Data { reader, head, content } => {
                let fed = reader.feed(input, |b| keep(head, content, b));
                if !fed.done {
                    return (fed.consumed, None);
                }
                let size = reader.content_len();
                let head = std::mem::take(head);
                let content = content.take();
                (fed.consumed, Some(self.received(&head, content, size)))
            }
            State::Command | State::AuthResponse => {
                let Some(nl) = memchr::memchr(b'\n', input) else {
                    if input.len() > MAX_LINE {
                        self.reply("500 5.5.2 Line too long");
                        self.state = State::Closed;
                        return (input.len(), Some(Action::Close));
                    }
                    return (0, None);
                };
                let mut line = &input[..nl];
                if let Some(l) = line.strip_suffix(b"\r") {
                    line = l;
                }
                let line = String::from_utf8_lossy(line).into_owned();
                let action = if matches!(self.state, State::AuthResponse) {
                    self.state = State::Command;
                    self.check_auth(&line);
                    None
                } else {
                    self.command(&line)
                };
                (nl + 1, action)
            }
        }
    }

    /// The message is complete: hand it to the driver and wait for its
    /// reply.
    fn received(&mut self, head: &[u8], content: Option<Vec<u8>>, size: u64) -> Action {
        self.state = State::Waiting;
        let received = Received {
            mail_from: self.mail_from.take().unwrap_or_default(),
            rcpts: std::mem::take(&mut self.rcpts),
            message_id: find_message_id(head),
            dkim_signed: has_field(head, b"dkim-signature:"),
            size,
            oversize: self.cfg.max_size > 0 && size > self.cfg.max_size,
            content,
        };
        Action::Message(Box::new(received))
    }

    /// Answers the message returned in [`Action::Message`].
    pub fn reply_to_message(&mut self, code: u16, text: &str) {
        let class = code / 100;
        self.reply(&format!("{code} {class}.0.0 {text}"));
        self.state = State::Command;
    }

    /// From now on, answer MAIL with `reply` (a whole reply line, e.g.
    /// `421 4.7.0 rate limited`) and close, as a provider that rate-limits
    /// the client does; `None` accepts MAIL again. A transaction already
    /// past MAIL is not affected.
    pub fn refuse_mail(&mut self, reply: Option<&'static str>) {
        self.refuse_mail = reply;
    }

    /// True once a MAIL was refused by [`ServerSession::refuse_mail`].
    pub fn refused(&self) -> bool {
        self.refused
    }

    /// TLS is up after STARTTLS: forget the EHLO (RFC 3207 §4.2).
    pub fn tls_established(&mut self) {
        self.tls_active = true;
        self.greeted = false;
        self.reset();
        self.state = State::Command;
    }

    fn command(&mut self, line: &str) -> Option<Action> {
        let (verb, arg) = match line.split_once(' ') {
            Some((v, a)) => (v.to_ascii_uppercase(), a.trim()),
            None => (line.to_ascii_uppercase(), ""),
        };
        match verb.as_str() {
            "EHLO" => {
                self.greeted = true;
                self.reset();
                let mut lines = vec![
                    format!("250-{}", self.cfg.hostname),
                    "250-PIPELINING".to_string(),
                    "250-8BITMIME".to_string(),
                    format!("250-SIZE {}", self.cfg.max_size),
                ];
                if self.cfg.chunking {
                    lines.push("250-CHUNKING".to_string());
                }
                if self.cfg.starttls && !self.tls_active {
                    lines.push("250-STARTTLS".to_string());
                }
                if self.cfg.auth.is_some() {
                    lines.push("250-AUTH PLAIN".to_string());
                }
                lines.push("250 ENHANCEDSTATUSCODES".to_string());
                for l in lines {
                    self.reply(&l);
                }
            }
            "HELO" => {
                self.greeted = true;
                self.reset();
                let r = format!("250 {}", self.cfg.hostname);
                self.reply(&r);
            }
            "MAIL" => return self.mail(arg),
            "RCPT" => self.rcpt(arg),
            "BDAT" => return self.bdat(arg),
            "DATA" => {
                if self.chunks.is_some() {
                    self.reply("503 5.5.1 DATA after BDAT");
                } else if self.mail_from.is_none() {
                    self.reply("503 5.5.1 MAIL first");
                } else if self.rcpts.is_empty() {
                    self.reply("554 5.5.1 No valid recipients");
                } else {
                    self.reply("354 End data with <CR><LF>.<CR><LF>");
                    self.state = State::Data {
                        reader: DotReader::new(),
                        head: Vec::new(),
                        content: self.cfg.keep_content.then(Vec::new),
                    };
                }
            }
            "RSET" => {
                self.reset();
                self.reply("250 2.0.0 Ok");
            }
            "NOOP" => self.reply("250 2.0.0 Ok"),
            "VRFY" => self.reply("252 2.0.0 Cannot verify"),
            "QUIT" => {
                self.reply("221 2.0.0 Bye");
                self.state = State::Closed;
                return Some(Action::Close);
            }
            "STARTTLS" => {
                if !self.cfg.starttls || self.tls_active {
                    self.reply("502 5.5.1 STARTTLS not available");
                } else {
                    self.reply("220 2.0.0 Ready to start TLS");
                    self.state = State::Waiting;
                    return Some(Action::StartTls);
                }
            }
            "AUTH" => self.auth(arg),
            _ => self.reply("502 5.5.2 Command not recognized"),
        }
        None
    }

    /// `BDAT size [LAST]` (RFC 3030 §2): the chunk follows at once.
    fn bdat(&mut self, arg: &str) -> Option<Action> {
        let mut words = arg.split_ascii_whitespace();
        let size = words.next().and_then(|n| n.parse::<u64>().ok());
        let last = match words.next() {
            None => Some(false),
            Some(w) if w.eq_ignore_ascii_case("LAST") => Some(true),
            Some(_) => None,
        };
        let (Some(size), Some(last), None) = (size, last, words.next()) else {
            // Without a size the chunk cannot be skipped: the rest of the
            // input would be read as commands.
            self.reply("501 5.5.4 Syntax: BDAT size [LAST]");
            self.state = State::Closed;
            return Some(Action::Close);
        };
        let refusal = if !self.cfg.chunking {
            Some("502 5.5.1 CHUNKING not offered")
        } else if self.mail_from.is_none() {
            Some("503 5.5.1 MAIL first")
        } else if self.rcpts.is_empty() {
            Some("554 5.5.1 No valid recipients")
        } else {
            None
        };
        if refusal.is_none() && self.chunks.is_none() {
            self.chunks = Some(Chunks { content: self.cfg.keep_content.then(Vec::new), ..Chunks::default() });
        }
        if refusal.is_some() {
            // RFC 3030 §2: a refused chunk ends the transaction.
            self.reset();
        }
        self.state = State::Chunk { left: size, last, refusal };
        if size == 0 {
            // Nothing to read: finish the chunk now.
            return self.handle_input(&[]).1;
        }
        None
    }

    fn mail(&mut self, arg: &str) -> Option<Action> {
        if let Some(reply) = self.refuse_mail {
            self.refused = true;
            self.reply(reply);
            self.state = State::Closed;
            return Some(Action::Close);
        }
        if !self.greeted {
            self.reply("503 5.5.1 EHLO first");
            return None;
        }
        if self.mail_from.is_some() {
            self.reply("503 5.5.1 Nested MAIL");
            return None;
        }
        if self.cfg.auth.is_some() && !self.authed {
            self.reply("530 5.7.0 Authentication required");
            return None;
        }
        let Some(path) = path_arg(arg, "FROM:") else {
            self.reply("501 5.5.4 Syntax: MAIL FROM:<address>");
            return None;
        };
        let declared = arg
            .split_ascii_whitespace()
            .skip(1)
            .find_map(|p| p.to_ascii_uppercase().strip_prefix("SIZE=").and_then(|n| n.parse::<u64>().ok()));
        if let Some(n) = declared {
            if self.cfg.max_size > 0 && n > self.cfg.max_size {
                self.reply("552 5.3.4 Message size exceeds limit");
                return None;
            }
        }
        self.mail_from = Some(path);
        self.reply("250 2.1.0 Ok");
        None
    }

    fn rcpt(&mut self, arg: &str) {
        if self.mail_from.is_none() {
            return self.reply("503 5.5.1 MAIL first");
        }
        let Some(path) = path_arg(arg, "TO:") else {
            return self.reply("501 5.5.4 Syntax: RCPT TO:<address>");
        };
        if self.rcpts.len() >= MAX_RCPTS {
            return self.reply("452 4.5.3 Too many recipients");
        }
        self.rcpts.push(path);
        self.reply("250 2.1.5 Ok");
    }

    fn auth(&mut self, arg: &str) {
        if self.cfg.auth.is_none() {
            return self.reply("502 5.5.1 AUTH not available");
        }
        if self.authed {
            return self.reply("503 5.5.1 Already authenticated");
        }
        let mut words = arg.split_ascii_whitespace();
        if !words.next().is_some_and(|m| m.eq_ignore_ascii_case("PLAIN")) {
            return self.reply("504 5.5.4 Only PLAIN");
        }
        match words.next() {
            Some(token) => self.check_auth(token),
            None => {
                self.reply("334 ");
                self.state = State::AuthResponse;
            }
        }
    }

    fn check_auth(&mut self, token: &str) {
        let decoded = base64::engine::general_purpose::STANDARD.decode(token.trim()).unwrap_or_default();
        let mut parts = decoded.split(|b| *b == 0);
        let _authzid = parts.next();
        let (user, pass) = (parts.next().unwrap_or(b""), parts.next().unwrap_or(b""));
        let ok = self.cfg.auth.as_ref().is_some_and(|(u, p)| u.as_bytes() == user && p.as_bytes() == pass);
        if ok {
            self.authed = true;
            self.reply("235 2.7.0 Authentication successful");
        } else {
            self.reply("535 5.7.8 Authentication credentials invalid");
        }
    }

    fn reset(&mut self) {
        self.mail_from = None;
        self.rcpts.clear();
        self.chunks = None;
    }

    fn reply(&mut self, line: &str) {
        self.out.extend_from_slice(line.as_bytes());
        self.out.extend_from_slice(b"\r\n");
    }
}

/// Keeps the first [`HEAD_CAP`] bytes of a message (for the Message-ID)
/// and, with `--save`, all of it.
fn keep(head: &mut Vec<u8>, content: &mut Option<Vec<u8>>, b: &[u8]) {
    if head.len() < HEAD_CAP {
        let take = (HEAD_CAP - head.len()).min(b.len());
        head.extend_from_slice(&b[..take]);
    }
    if let Some(c) = content.as_mut() {
        c.extend_from_slice(b);
    }
}

/// Extracts the address from `FROM:<a@b> PARAMS` / `TO:<a@b>`.
fn path_arg(arg: &str, prefix: &str) -> Option<String> {
    let head = arg.get(..prefix.len())?;
    if !head.eq_ignore_ascii_case(prefix) {
        return None;
    }
    let rest = arg[prefix.len()..].trim_start();
    let rest = rest.strip_prefix('<')?;
    let end = rest.find('>')?;
    Some(rest[..end].to_string())
}

/// Finds the Message-ID header in the first part of the content.
pub fn find_message_id(head: &[u8]) -> Option<String> {
    for line in head.split(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        if line.len() > 11 && line[..11].eq_ignore_ascii_case(b"message-id:") {
            let v = String::from_utf8_lossy(&line[11..]).trim().to_string();
            return (!v.is_empty()).then_some(v);
        }
    }
    None
}

/// Whether the header in the first part of the content has a field
/// `name` (lowercase, with its colon) at the start of a line.
pub fn has_field(head: &[u8], name: &[u8]) -> bool {
    head.split(|b| *b == b'\n')
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
        .take_while(|line| !line.is_empty())
        .any(|line| line.len() >= name.len() && line[..name.len()].eq_ignore_ascii_case(name))
}

#[cfg(test)]
#[path = "server_tests.rs"]
mod tests;
