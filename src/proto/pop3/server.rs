//! The POP3 session state machine: AUTHORIZATION, TRANSACTION, UPDATE
//! (RFC 1939 §3), plus the waits for the driver in between.
//!
//! Owns: which command is allowed when, the login-failure count, whether
//! passwords may be sent yet, and the order of replies and actions. The
//! AUTH PLAIN exchange itself is `smtp::sasl`'s, shared with SMTP. Must
//! not: check passwords, lock maildrops, read message bodies or apply
//! deletions. Those are [`Action`]s, and the session waits (consumes no
//! input) until the driver reports back.

use std::fmt;
use std::mem;
use std::rc::Rc;

use super::command::{self, Command};
use super::line::{self, Line};
use super::maildrop::{Maildrop, MessageInfo};
use super::policy::Policy;
use super::reply;
use super::transaction::{self, Step};
use crate::proto::smtp::sasl::{self, Exchange, Mechanism, SaslError};

/// Output buffer kept between replies; a larger one (a message went out) is
/// freed once written.
const KEEP_OUTPUT_CAPACITY: usize = 4 * 1024;

/// Settings shared by every session of one listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pop3Config {
    /// Named in the greeting and in QUIT's goodbye.
    pub hostname: String,
    /// Offer STLS (RFC 2595) before login: advertised in CAPA and accepted
    /// as a command. Leave it off on an implicit-TLS listener (port 995).
    pub stls: bool,
    /// Longest command line accepted, in octets including CRLF; RFC 2449 §4
    /// sets 255. A longer line gets `-ERR line too long` and the session
    /// closes. Must leave room for the longest command, `TOP n m`.
    pub max_line_len: usize,
    /// Failed logins allowed on one connection: the failure that reaches
    /// this count is answered `-ERR [AUTH] too many failures` and closes the
    /// session. `0` acts as `1`. Wrong passwords count, by USER/PASS or
    /// AUTH, and so do unusable AUTH credentials (empty, malformed);
    /// IN-USE and SYS/TEMP outcomes, bad base64 and a cancelled AUTH do not.
    pub max_auth_failures: u32,
    /// Passwords may be sent on this connection as it starts: it is TLS
    /// (port 995), or plain from loopback with
    /// `[auth] plaintext_on_loopback`. Until it holds, CAPA lists neither
    /// USER nor SASL, and USER, PASS and AUTH get
    /// `-ERR [AUTH] Plaintext authentication disallowed ...`; STLS still
    /// works, and [`Server::stls_done`] makes it hold for the rest of the
    /// session.
    pub plaintext_auth_ok: bool,
    /// The site's EXPIRE and LOGIN-DELAY, for CAPA before login (after it,
    /// the user's: [`Server::set_user_policy`]).
    pub policy: Policy,
}

/// Work the driver must do before the session can go on. At most one is
/// outstanding; until its `*_done` call the session consumes no input.
#[derive(Clone, PartialEq, Eq)]
pub enum Action {
    /// USER+PASS complete. The driver checks the password (slowly, off the
    /// core), and on success locks the mailbox and takes a snapshot; then
    /// calls [`Server::auth_done`].
    Authenticate { user: String, password: String },
    /// RETR/TOP accepted: the `+OK ...` status line is already in output.
    /// The driver hands the stored message to [`Server::message_body`],
    /// which puts its wire form right behind the status line, so that both
    /// (and the replies to commands pipelined after it) leave in one write.
    SendMessage {
        /// 0-based index into the login snapshot.
        index: usize,
        /// `None` for RETR, `Some(n)` for `TOP _ n`.
        top_lines: Option<u32>,
    },
    /// QUIT in TRANSACTION with messages marked deleted: the driver makes
    /// the deletions durable, then calls [`Server::commit_done`]. Indices
    /// are 0-based, ascending and distinct; never empty.
    Commit { deleted: Vec<usize> },
    /// STLS accepted (`+OK Begin TLS negotiation` is in output). Bytes the
    /// client pipelined after the STLS line were discarded. The driver does
    /// the handshake, then calls [`Server::stls_done`].
    StartTls,
}

// Hand-written so that a password never reaches a log through `{:?}`.
impl fmt::Debug for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Authenticate { user, .. } => {
                f.debug_struct("Authenticate").field("user", user).field("password", &"<redacted>").finish()
            }
            Action::SendMessage { index, top_lines } => {
                f.debug_struct("SendMessage").field("index", index).field("top_lines", top_lines).finish()
            }
            Action::Commit { deleted } => f.debug_struct("Commit").field("deleted", deleted).finish(),
            Action::StartTls => f.write_str("StartTls"),
        }
    }
}

/// The driver's answer to [`Action::Authenticate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthOutcome {
    /// Password right, maildrop locked: its listing, message `n` at index
    /// `n - 1`.
    LoggedIn(Vec<MessageInfo>),
    /// Unknown user or wrong password; the client is not told which.
    BadCredentials,
    /// Another session holds the maildrop lock.
    InUse,
    /// The check could not be made (user store or owner core unavailable).
    TempFailure,
    /// The maildrop is still being recovered after a restart.
    Recovering,
}

/// The driver's answer to [`Action::Commit`]. The session closes either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitOutcome {
    /// Every marked message is durably removed.
    Done,
    /// Some or all marked messages are still there.
    Failed,
}

/// Where a session is. Data that is only valid in one state lives in it.
#[derive(Debug)]
enum State {
    /// Before login. `user` is the name from the last USER, waiting for PASS.
    Authorization { user: Option<String>, failures: u32 },
    /// AUTH sent its `+ ` challenge; the next line is the client's response.
    Sasl { exchange: Exchange, failures: u32 },
    /// Waiting for [`Server::auth_done`].
    Authenticating { user: String, failures: u32 },
    /// Waiting for [`Server::stls_done`]; every input byte is discarded.
    StartingTls { failures: u32 },
    /// Logged in, reading commands.
    Transaction { user: String, maildrop: Maildrop },
    /// Logged in, waiting for [`Server::message_body`]; `top_lines` as in
    /// [`Action::SendMessage`].
    Sending { user: String, maildrop: Maildrop, top_lines: Option<u32> },
    /// QUIT seen (UPDATE), waiting for [`Server::commit_done`].
    Committing { user: String },
    /// Nothing more is read or answered. `user` is kept when the session
    /// had logged in, so the driver can release the lock however it ended.
    Closed { user: Option<String> },
}

/// One POP3 session, from greeting to close. Sans-I/O: bytes in through
/// [`Server::handle_input`], bytes out through [`Server::output`], work for
/// the driver through [`Server::poll_action`].
#[derive(Debug)]
pub struct Server {
    /// Shared by every session of the listener; read only.
    config: Rc<Pop3Config>,
    /// Where the session is, with the data valid there.
    state: State,
    /// The action not yet handed out by `poll_action`.
    action: Option<Action>,
    /// Replies not yet taken by the driver, in order.
    output: Vec<u8>,
    /// TLS is on (after STLS): STLS is then neither offered nor accepted.
    tls: bool,
    /// Passwords may be sent now: `config.plaintext_auth_ok`, or TLS is on.
    plaintext_auth_ok: bool,
    /// Messages sent in full (RETR), in order, and whether QUIT deletes
    /// them too (the user's `retention.delete_after_retrieve`).
    retrieved: Vec<usize>,
    delete_retrieved: bool,
    /// What CAPA announces: the site's, then the user's once logged in.
    policy: Policy,
}

impl Server {
    /// A new session; the greeting is already in [`Server::output`].
    pub fn new(config: Rc<Pop3Config>) -> Server {
        let mut output = Vec::new();
        reply::greeting(&mut output, &config.hostname);
        let (plaintext_auth_ok, policy) = (config.plaintext_auth_ok, config.policy);
        let state = State::Authorization { user: None, failures: 0 };
        Server {
            config,
            state,
            action: None,
            output,
            tls: false,
            plaintext_auth_ok,
            retrieved: Vec::new(),
            delete_retrieved: false,
            policy,
        }
    }

    /// The logged-in user's EXPIRE and LOGIN-DELAY, for CAPA from now on
    /// (set by the driver with the login; `USER` suffixes are dropped).
    pub fn set_user_policy(&mut self, policy: Policy) {
        self.policy = policy.for_user();
    }

    /// UPDATE (QUIT) also deletes every message retrieved in full with
    /// RETR, marked or not (a site policy, set by the driver after login).
    pub fn delete_retrieved_at_quit(&mut self, on: bool) {
        self.delete_retrieved = on;
    }

    /// Consumes complete command lines from the front of `input`, answering
    /// each, and returns how many bytes it consumed. The rest (a partial
    /// line) must be passed again, with more bytes behind it.
    ///
    /// A line may be up to `max_line_len` long, or up to
    /// [`sasl::MAX_RESPONSE_LINE`] when it answers an AUTH challenge; a
    /// longer one closes the session, so the driver never buffers more.
    ///
    /// It stops after a command that produced an action, and consumes
    /// nothing while one is outstanding: after the `*_done` call, call this
    /// again with the unconsumed bytes even if no new bytes arrived, since
    /// they may hold pipelined commands. Once STLS is accepted, and once the
    /// session is closed, it consumes (discards) all of `input`.
    pub fn handle_input(&mut self, input: &[u8]) -> usize {
        let mut consumed = 0;
        loop {
            match self.state {
                State::Authorization { .. } | State::Transaction { .. } | State::Sasl { .. } => {}
                State::StartingTls { .. } | State::Closed { .. } => return input.len(),
                State::Authenticating { .. } | State::Sending { .. } | State::Committing { .. } => return consumed,
            }
            let max_len = match self.state {
                State::Sasl { .. } => sasl::MAX_RESPONSE_LINE.max(self.config.max_line_len),
                _ => self.config.max_line_len,
            };
            match line::next_line(&input[consumed..], max_len) {
                Line::Incomplete => return consumed,
                Line::TooLong => {
                    self.reply(reply::ERR_LINE_TOO_LONG);
                    self.close();
                    return input.len();
                }
                Line::Complete { consumed: length, content } => {
                    consumed += length;
                    self.handle_line(content);
                }
            }
        }
    }

    /// The next action for the driver, handed out once.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.action.take()
    }

    /// Reports the outcome of [`Action::Authenticate`]. Ignored unless that
    /// action is outstanding (e.g. after the session timed out meanwhile).
    pub fn auth_done(&mut self, outcome: AuthOutcome) {
        let (user, failures) = match self.take_state() {
            State::Authenticating { user, failures } => (user, failures),
            other => {
                self.state = other;
                return;
            }
        };
        self.state = match outcome {
            AuthOutcome::LoggedIn(messages) => {
                self.reply(reply::OK_LOGGED_IN);
                State::Transaction { user, maildrop: Maildrop::new(messages) }
            }
            AuthOutcome::BadCredentials => self.login_failed(failures),
            AuthOutcome::InUse => {
                self.reply(reply::ERR_IN_USE);
                State::Authorization { user: None, failures }
            }
            AuthOutcome::TempFailure => {
                self.reply(reply::ERR_AUTH_TEMP_FAILURE);
                State::Authorization { user: None, failures }
            }
            AuthOutcome::Recovering => {
                self.reply(reply::ERR_RECOVERING);
                State::Authorization { user: None, failures }
            }
        };
    }

    /// Reports the stored bytes of the message [`Action::SendMessage`]
    /// asked for. Its wire form ([`super::write_message`]: dot-stuffed, cut
    /// for TOP, ending in `.\r\n`) goes into output behind the status
    /// line. Ignored unless that action is outstanding.
    pub fn message_body(&mut self, stored: &[u8]) {
        self.message_body_under(b"", stored);
    }

    /// As [`Server::message_body`], with `fields` (whole header lines,
    /// each ending in CRLF, none starting with `.`) sent first, as part of
    /// the header; the listed size must count them.
    pub fn message_body_under(&mut self, fields: &[u8], stored: &[u8]) {
        self.state = match self.take_state() {
            State::Sending { user, maildrop, top_lines } => {
                self.output.extend_from_slice(fields);
                super::write_message(stored, top_lines, &mut self.output);
                State::Transaction { user, maildrop }
            }
            other => other,
        };
    }

    /// Reports the outcome of [`Action::Commit`]; the session closes either
    /// way. Ignored unless that action is outstanding.
    pub fn commit_done(&mut self, outcome: CommitOutcome) {
        let user = match self.take_state() {
            State::Committing { user } => user,
            other => {
                self.state = other;
                return;
            }
        };
        match outcome {
            CommitOutcome::Done => reply::signing_off(&mut self.output, &self.config.hostname),
            CommitOutcome::Failed => self.reply(reply::ERR_COMMIT_FAILED),
        }
        self.state = State::Closed { user: Some(user) };
    }

    /// Reports that the TLS handshake after STLS succeeded. The session is
    /// back in AUTHORIZATION with no USER remembered (RFC 2595 §4: nothing
    /// said in plaintext carries over), and passwords may be sent from now
    /// on (the channel is secure; no other call is needed). Ignored unless
    /// STLS is outstanding.
    /// A failed handshake is the driver's to end: it just drops the session.
    pub fn stls_done(&mut self) {
        self.state = match self.take_state() {
            State::StartingTls { failures } => {
                self.tls = true;
                self.plaintext_auth_ok = true;
                State::Authorization { user: None, failures }
            }
            other => other,
        };
    }

    /// Replies not yet written to the client, in order.
    pub fn output(&self) -> &[u8] {
        &self.output
    }

    /// Forgets the output after the driver has written it.
    pub fn clear_output(&mut self) {
        if self.output.capacity() > KEEP_OUTPUT_CAPACITY {
            // After a message went out, give its buffer back: an idle
            // session should hold a few KiB, not the largest reply it sent.
            self.output = Vec::new();
        } else {
            self.output.clear();
        }
    }

    /// Nothing more will be read or answered: flush output, then close.
    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed { .. })
    }

    /// The user whose maildrop this session locked: `Some` from a successful
    /// login on, and still `Some` after the session closed, however it
    /// closed. The lock is the driver's to release, exactly once, when the
    /// session ends; [`Action::Commit`] does not release it.
    pub fn logged_in_user(&self) -> Option<&str> {
        match &self.state {
            State::Transaction { user, .. }
            | State::Sending { user, .. }
            | State::Committing { user }
            | State::Closed { user: Some(user) } => Some(user),
            State::Authorization { .. }
            | State::Sasl { .. }
            | State::Authenticating { .. }
            | State::StartingTls { .. }
            | State::Closed { user: None } => None,
        }
    }

    /// The driver's idle timer fired: `-ERR autologout`, then closed without
    /// UPDATE (marked messages stay). An outstanding action is withdrawn.
    pub fn handle_timeout(&mut self) {
        if !self.is_closed() {
            self.reply(reply::ERR_AUTOLOGOUT);
            self.close();
        }
    }

    /// Waiting for the client's next command (no login check, TLS
    /// handshake, message or commit under way)?
    pub fn is_idle(&self) -> bool {
        self.action.is_none()
            && matches!(self.state, State::Authorization { .. } | State::Sasl { .. } | State::Transaction { .. })
    }

    /// Never: a POP3 client sends only command lines.
    pub fn in_data(&self) -> bool {
        false
    }

    /// The server is stopping: an idle session is told so and closed
    /// without UPDATE (marked messages stay, as when the client vanishes).
    /// Returns whether it closed; a busy session finishes its step first.
    pub fn shutdown(&mut self) -> bool {
        if self.is_idle() {
            self.reply(reply::ERR_SHUTTING_DOWN);
            self.close();
        }
        self.is_closed()
    }

    /// The client went away: closed without UPDATE (RFC 1939 §6: marked
    /// messages stay). An outstanding action is withdrawn.
    pub fn handle_eof(&mut self) {
        self.close();
    }

    fn handle_line(&mut self, line: &[u8]) {
        if let State::Sasl { .. } = self.state {
            // A response to the challenge, not a command.
            self.state = match self.take_state() {
                State::Sasl { exchange, failures } => self.sasl_step(exchange.respond(line), failures),
                other => other,
            };
            return;
        }
        let command = match command::parse(line) {
            Ok(command) => command,
            Err(error) => return self.reply(reply::for_parse_error(&error)),
        };
        self.state = match self.take_state() {
            State::Authorization { user, failures } => self.authorization(command, user, failures),
            State::Transaction { user, mut maildrop } => {
                match transaction::handle(command, &mut maildrop, &self.policy, &mut self.output) {
                    Step::Continue => State::Transaction { user, maildrop },
                    Step::Send { index, top_lines } => {
                        if top_lines.is_none() && !self.retrieved.contains(&index) {
                            self.retrieved.push(index);
                        }
                        self.action = Some(Action::SendMessage { index, top_lines });
                        State::Sending { user, maildrop, top_lines }
                    }
                    Step::Quit => self.quit(user, &maildrop),
                }
            }
            // handle_input reads no line in the other states.
            other => other,
        };
    }

    /// One command in the AUTHORIZATION state; returns the next state.
    fn authorization(&mut self, command: Command, user: Option<String>, failures: u32) -> State {
        let reply = match command {
            Command::User(_) | Command::Pass(_) | Command::Auth { .. } if !self.plaintext_auth_ok => {
                reply::ERR_PLAINTEXT_DISALLOWED
            }
            Command::Auth { mechanism: None, .. } => {
                reply::mechanisms(&mut self.output);
                return State::Authorization { user, failures };
            }
            Command::Auth { mechanism: Some(name), initial_response } => match Mechanism::from_name(&name) {
                Some(Mechanism::Plain) => {
                    return self.sasl_step(Exchange::start(Mechanism::Plain, initial_response.as_ref()), failures);
                }
                Some(Mechanism::Login) | None => reply::ERR_UNSUPPORTED_MECHANISM,
            },
            Command::User(name) => {
                self.reply(reply::OK_USER);
                return State::Authorization { user: Some(name), failures };
            }
            Command::Pass(password) => match user {
                Some(user) => {
                    self.action = Some(Action::Authenticate { user: user.clone(), password });
                    return State::Authenticating { user, failures };
                }
                None => reply::ERR_PASS_WITHOUT_USER,
            },
            Command::Quit => {
                self.reply(reply::OK_BYE);
                return State::Closed { user: None };
            }
            Command::Capa => {
                let stls = self.config.stls && !self.tls;
                reply::capabilities(&mut self.output, stls, self.plaintext_auth_ok, &self.policy);
                return State::Authorization { user, failures };
            }
            // RFC 6856 §2. Nothing changes: user names and passwords are
            // taken as UTF-8 anyway, and messages are sent as stored.
            Command::Utf8 => reply::OK_UTF8,
            Command::Stls if !self.config.stls => reply::ERR_STLS_UNAVAILABLE,
            Command::Stls if self.tls => reply::ERR_TLS_ACTIVE,
            Command::Stls => {
                self.reply(reply::OK_BEGIN_TLS);
                self.action = Some(Action::StartTls);
                return State::StartingTls { failures };
            }
            Command::Stat
            | Command::List(_)
            | Command::Retr(_)
            | Command::Dele(_)
            | Command::Noop
            | Command::Rset
            | Command::Top { .. }
            | Command::Uidl(_) => reply::ERR_NOT_LOGGED_IN,
            Command::Unknown(_) => reply::ERR_UNKNOWN_COMMAND,
        };
        self.reply(reply);
        State::Authorization { user, failures }
    }

    /// Where an AUTH exchange went; returns the next state (a failure
    /// forgets any USER given before).
    fn sasl_step(&mut self, step: sasl::Step, failures: u32) -> State {
        let reply = match step {
            // PLAIN's one challenge is the empty one.
            sasl::Step::Continue(exchange) => {
                self.reply(reply::SASL_CONTINUE);
                return State::Sasl { exchange, failures };
            }
            // The same action as PASS: the driver cannot tell them apart.
            sasl::Step::Done(sasl::Credentials { user, password }) => {
                self.action = Some(Action::Authenticate { user: user.clone(), password });
                return State::Authenticating { user, failures };
            }
            sasl::Step::Failed(SaslError::Aborted) => reply::ERR_AUTH_ABORTED,
            sasl::Step::Failed(SaslError::BadBase64) => reply::ERR_BAD_BASE64,
            sasl::Step::Failed(
                SaslError::MalformedPlain | SaslError::AuthzidMismatch | SaslError::Empty | SaslError::NotText,
            ) => return self.login_failed(failures),
        };
        self.reply(reply);
        State::Authorization { user: None, failures }
    }

    /// A login failed on its credentials: counted; the one that reaches
    /// `max_auth_failures` closes the session.
    fn login_failed(&mut self, failures: u32) -> State {
        let failures = failures.saturating_add(1);
        if failures >= self.config.max_auth_failures.max(1) {
            self.reply(reply::ERR_TOO_MANY_FAILURES);
            State::Closed { user: None }
        } else {
            self.reply(reply::ERR_AUTH_FAILED);
            State::Authorization { user: None, failures }
        }
    }

    /// QUIT in TRANSACTION: UPDATE if anything is marked, else goodbye.
    fn quit(&mut self, user: String, maildrop: &Maildrop) -> State {
        let mut deleted = maildrop.deleted_indices();
        if self.delete_retrieved {
            deleted.extend(self.retrieved.iter().filter(|i| !maildrop.is_deleted(**i)));
            deleted.sort_unstable();
        }
        if deleted.is_empty() {
            reply::signing_off(&mut self.output, &self.config.hostname);
            return State::Closed { user: Some(user) };
        }
        self.action = Some(Action::Commit { deleted });
        State::Committing { user }
    }

    /// Closes the session, keeping the logged-in user, withdrawing any
    /// outstanding action.
    fn close(&mut self) {
        let user = match self.take_state() {
            State::Transaction { user, .. }
            | State::Sending { user, .. }
            | State::Committing { user }
            | State::Closed { user: Some(user) } => Some(user),
            State::Authorization { .. }
            | State::Sasl { .. }
            | State::Authenticating { .. }
            | State::StartingTls { .. }
            | State::Closed { user: None } => None,
        };
        self.state = State::Closed { user };
        self.action = None;
    }

    /// Takes the state out to move its data into the next one. The
    /// placeholder is never observed: every caller puts a state back.
    fn take_state(&mut self) -> State {
        mem::replace(&mut self.state, State::Closed { user: None })
    }

    fn reply(&mut self, line: &str) {
        self.output.extend_from_slice(line.as_bytes());
    }
}
