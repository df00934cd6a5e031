//! The SMTP server session: bytes in, replies and actions out.
//!
//! [`Server`] owns one connection's protocol state. It frames command lines
//! (`line`), parses them (`command`), checks the sequence, asks the
//! [`RecipientPolicy`], scans DATA (`data`) and writes replies (`reply`).
//! Messages come by DATA or in BDAT chunks (RFC 3030, `chunk`): a BDAT's
//! octets are read as message bytes whatever they contain, also when the
//! BDAT itself is refused (503, 552), so the session stays in step with a
//! pipelining client. Whatever needs the outside world, it asks for as an [`Action`] and waits:
//! storing a message (the 250 goes out only after the driver reports the
//! spool write durable), the TLS handshake, and checking a password (AUTH,
//! RFC 4954; the exchange itself is `sasl`'s).
//!
//! It must not do I/O, read a clock or know about other sessions. Timeouts
//! are the driver's clock; it calls [`Server::handle_timeout`].
//!
//! Errors: every 4xx/5xx reply caused by what the client sent (unknown
//! command, syntax, sequence, unsupported parameter, rejected recipient)
//! counts toward `max_errors`, and so do failed or aborted AUTH exchanges
//! and [`AuthOutcome::Locked`]; size refusals, the recipient limit, storage
//! failures and [`AuthOutcome::TempFailure`] do not. Reaching `max_errors` sends 421 and closes. A
//! stored message resets the count (Postfix: errors "without delivering
//! mail").

use std::rc::Rc;

use super::address::{Address, ForwardPath, ReversePath};
use super::chunk::ChunkBody;
use super::command::{parse_command, BodyType, Command, MailFrom, RcptTo, Verb};
use super::data::{DataProgress, DataScanner};
use super::envelope::{
    AcceptedRecipient, Envelope, RcptDecision, RecipientPolicy, ScreenDecision, ScreenRequest, SenderDecision,
};
use super::interface::{Action, AuthMode, AuthOutcome, FilterRefusal, FilterStep, ServerConfig, StoreOutcome};
use super::line::{next_line, LineStatus};
use super::reply::{self, EhloOffer, Reply};
use super::sasl::{self, Exchange, Mechanism, Step};
use crate::spool::DsnRet;

/// What HELO/EHLO established; kept across transactions.
#[derive(Debug, Clone)]
struct Greeting {
    helo: String,
    esmtp: bool,
}

/// One MAIL transaction in progress.
#[derive(Debug)]
struct Transaction {
    sender: ReversePath,
    recipients: Vec<AcceptedRecipient>,
    /// `BODY=8BITMIME` was declared.
    body_8bit: bool,
    /// DSN `RET=` and `ENVID=` of MAIL.
    ret: Option<DsnRet>,
    envid: Option<String>,
    /// `BODY=BINARYMIME` was declared: BDAT only, stored as sent.
    binarymime: bool,
    /// `SMTPUTF8` was given: UTF-8 recipients are accepted.
    smtputf8: bool,
    /// `REQUIRETLS` was given (RFC 8689).
    requiretls: bool,
    /// `SIZE=` of MAIL (RFC 1870), at most `max_message_size` (a larger
    /// one is refused at MAIL): DATA reserves the body buffer at this size,
    /// so a large body is not copied again each time its buffer doubles.
    /// Only address space until bytes arrive.
    declared_size: Option<u64>,
    /// The body so far, once a BDAT was accepted; from then on RCPT and
    /// DATA are refused (RFC 3030 §2).
    chunks: Option<ChunkBody>,
    /// Some RCPT was refused by policy: DATA without recipients then says
    /// "no valid recipients" rather than "need RCPT".
    rejected: bool,
}

/// Where the session is. Data lives in the state it is valid in.
#[derive(Debug)]
enum State {
    /// After the greeting or the TLS handshake: EHLO/HELO needed.
    Fresh,
    /// Greeted, no transaction.
    Greeted(Greeting),
    /// MAIL accepted, collecting recipients.
    Mail(Greeting, Transaction),
    /// Receiving the message.
    Data { greeting: Greeting, txn: Transaction, scanner: DataScanner, body: Vec<u8> },
    /// Reading the octets of an accepted BDAT into `txn.chunks`.
    Bdat { greeting: Greeting, txn: Transaction, remaining: u64, size: u64, last: bool },
    /// The message is complete; waiting for [`Server::store_done`].
    Storing(Greeting),
    /// A command was accepted here; its reply waits for the live content
    /// filters ([`Action::Filter`], [`Server::filter_done`]).
    Filtering(Pending),
    /// AUTH sent a 334 challenge; the next line is the client's response.
    Auth(Greeting, Exchange),
    /// The exchange gave credentials for `user`; waiting for
    /// [`Server::auth_done`].
    Authenticating(Greeting, String),
    /// 220 Ready sent; waiting for [`Server::starttls_done`].
    StartingTls,
    /// Done; the driver flushes the output and closes.
    Closed,
}

/// A command waiting for the live content filters, and what either
/// answer leads to.
#[derive(Debug)]
enum Pending {
    /// HELO/EHLO: greeted as `greeting` if they agree, else back to `before`.
    Helo { before: Box<State>, greeting: Greeting },
    /// MAIL: this transaction if they agree.
    Mail { greeting: Greeting, txn: Transaction },
    /// RCPT: `recipient` joins `txn` if they agree.
    Rcpt { greeting: Greeting, txn: Transaction, recipient: AcceptedRecipient },
}

/// One SMTP server session, sans-I/O.
pub struct Server {
    /// Shared settings of the listener.
    config: Rc<ServerConfig>,
    /// Decides each MAIL sender and each RCPT.
    policy: Box<dyn RecipientPolicy>,
    state: State,
    /// Replies not yet written by the driver, in order.
    output: Vec<u8>,
    /// The action waiting for [`Server::poll_action`].
    action: Option<Action>,
    /// Octets of a refused BDAT still to be read and thrown away before
    /// anything else (RFC 3030 §2: the chunk is read even when refused).
    discard: u64,
    /// Counted errors since the last stored message.
    errors: u32,
    /// Command lines seen (for `max_commands`).
    commands: u32,
    /// Messages stored in this session (for `max_messages`).
    messages: u32,
    /// TLS is up: STARTTLS is neither advertised nor accepted again.
    tls_active: bool,
    /// Passwords may be sent now: `config.plaintext_auth_ok`, or TLS is up.
    plaintext_auth_ok: bool,
    /// The user a successful AUTH established; kept across transactions,
    /// forgotten only by STARTTLS (RFC 3207 §4.2).
    authenticated: Option<String>,
    /// Accepted HELO, MAIL and RCPT commands go to the live content
    /// filters before their reply ([`Server::filter_commands`]).
    filter_commands: bool,
}

impl Server {
    /// A new session; the 220 greeting is already in [`Server::output`].
    pub fn new(config: Rc<ServerConfig>, policy: Box<dyn RecipientPolicy>) -> Server {
        let mut output = Vec::new();
        reply::GREETING.write_with(&mut output, &config.hostname);
        let plaintext_auth_ok = config.plaintext_auth_ok;
        let tls_active = config.tls_at_start;
        Server {
            config,
            policy,
            state: State::Fresh,
            output,
            action: None,
            discard: 0,
            errors: 0,
            commands: 0,
            messages: 0,
            tls_active,
            plaintext_auth_ok,
            authenticated: None,
            filter_commands: false,
        }
    }

    /// From now on, each HELO/EHLO, MAIL and RCPT the session accepts is
    /// handed to the driver as [`Action::Filter`] before its reply.
    pub fn filter_commands(&mut self) {
        self.filter_commands = true;
    }

    /// A live content filter refused the connection: the greeting (if
    /// not yet written) is replaced by the refusal, and the session is
    /// closed.
    pub fn refuse_connection(&mut self, refusal: FilterRefusal) {
        self.output.clear();
        let config = Rc::clone(&self.config);
        match refusal {
            FilterRefusal::Rejected => reply::FILTER_CONNECT_REJECTED.write_with(&mut self.output, &config.hostname),
            FilterRefusal::TempFailed | FilterRefusal::Unavailable => {
                reply::FILTER_CONNECT_TEMPFAIL.write_with(&mut self.output, &config.hostname)
            }
            FilterRefusal::Reply { code, text } => reply::write_filter_reply(&mut self.output, code, &text),
        }
        self.state = State::Closed;
        self.action = None;
    }

    /// Reports the live content filters' word on the command of
    /// [`Action::Filter`]: `None` lets it through (its usual reply),
    /// `Some` refuses it with that reply (a permanent one counts as an
    /// error). Ignored unless such a command is outstanding.
    pub fn filter_done(&mut self, refusal: Option<FilterRefusal>) {
        let pending = match self.take_state() {
            State::Filtering(pending) => pending,
            other => {
                self.state = other;
                return;
            }
        };
        self.action = None;
        match (pending, refusal) {
            (Pending::Helo { greeting, .. }, None) => self.greet(greeting),
            (Pending::Helo { before, .. }, Some(r)) => {
                self.state = *before;
                self.filter_refused(r);
            }
            (Pending::Mail { greeting, txn }, None) => {
                reply::SENDER_OK.write(&mut self.output);
                self.state = State::Mail(greeting, txn);
            }
            (Pending::Mail { greeting, .. }, Some(r)) => {
                self.state = State::Greeted(greeting);
                self.filter_refused(r);
            }
            (Pending::Rcpt { greeting, mut txn, recipient }, None) => {
                txn.recipients.push(recipient);
                reply::RECIPIENT_OK.write(&mut self.output);
                self.state = State::Mail(greeting, txn);
            }
            (Pending::Rcpt { greeting, mut txn, .. }, Some(r)) => {
                txn.rejected = true;
                self.state = State::Mail(greeting, txn);
                self.filter_refused(r);
            }
        }
    }

    fn filter_refused(&mut self, refusal: FilterRefusal) {
        match refusal {
            FilterRefusal::Rejected => self.reject(&reply::FILTER_COMMAND_REJECTED),
            FilterRefusal::TempFailed => reply::FILTER_COMMAND_TEMPFAIL.write(&mut self.output),
            FilterRefusal::Unavailable => reply::FILTER_UNAVAILABLE.write(&mut self.output),
            FilterRefusal::Reply { code, text } => {
                reply::write_filter_reply(&mut self.output, code, &text);
                if code >= 500 {
                    self.count_error();
                }
            }
        }
    }

    /// Feeds bytes from the client; returns how many were consumed.
    ///
    /// Consumes every complete command line, and all DATA bytes (the DATA
    /// scanner is resumable, so a message may arrive in any chunks). Leaves
    /// unconsumed: an incomplete command line shorter than `max_line_len`
    /// (or, for the response to an AUTH challenge, shorter than
    /// [`sasl::MAX_RESPONSE_LINE`]; keep it and append more), and
    /// everything after a command that started an action. While an action
    /// is pending nothing is consumed; after reporting its result, call
    /// this again with the rest: that is how pipelined commands after "."
    /// wait for the 250, and commands after AUTH wait for the 235.
    ///
    /// Consumes and discards everything once closed, and everything after
    /// an accepted STARTTLS (bytes pipelined before the handshake are an
    /// injection attempt, CVE-2011-0411). A line that reaches its limit
    /// without a terminator closes the session, so the driver never needs
    /// to buffer more than [`sasl::MAX_RESPONSE_LINE`] bytes.
    pub fn handle_input(&mut self, input: &[u8]) -> usize {
        let mut pos = 0;
        while pos < input.len() {
            if self.discard > 0 && !self.is_closed() {
                let take = chunk_len(self.discard, input.len() - pos);
                self.discard -= take as u64;
                pos += take;
                continue;
            }
            match &mut self.state {
                State::Closed | State::StartingTls => return input.len(),
                State::Storing(_) | State::Authenticating(..) | State::Filtering(_) => break,
                State::Bdat { txn, remaining, .. } => {
                    let take = chunk_len(*remaining, input.len() - pos);
                    if let Some(chunks) = txn.chunks.as_mut() {
                        chunks.feed(&input[pos..pos + take]);
                    }
                    *remaining -= take as u64;
                    pos += take;
                    if *remaining == 0 {
                        self.end_of_chunk();
                    }
                }
                State::Data { scanner, body, .. } => match scanner.feed(&input[pos..], body) {
                    DataProgress::NeedMore => return input.len(),
                    DataProgress::Ended { consumed } => {
                        pos += consumed;
                        self.end_of_data();
                    }
                },
                State::Auth(..) => {
                    match next_line(&input[pos..], sasl::MAX_RESPONSE_LINE.max(self.config.max_line_len)) {
                        LineStatus::Incomplete => break,
                        LineStatus::TooLong => {
                            self.close_with(&reply::AUTH_LINE_TOO_LONG, "");
                            return input.len();
                        }
                        LineStatus::Complete { line, consumed } => {
                            pos += consumed;
                            self.auth_response(line);
                        }
                    }
                }
                _ => match next_line(&input[pos..], self.config.max_line_len) {
                    LineStatus::Incomplete => break,
                    LineStatus::TooLong => {
                        self.close_with(&reply::LINE_TOO_LONG, "");
                        return input.len();
                    }
                    LineStatus::Complete { line, consumed } => {
                        pos += consumed;
                        self.handle_line(line);
                    }
                },
            }
        }
        pos
    }

    /// The next action to perform, if any. Each is returned once.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.action.take()
    }

    /// Reports how [`Action::Store`] went. Writes the reply; the transaction
    /// is over (the session stays greeted). Ignored unless a store is
    /// outstanding (e.g. after [`Server::handle_eof`]).
    pub fn store_done(&mut self, outcome: StoreOutcome) {
        let greeting = match self.take_state() {
            State::Storing(greeting) => greeting,
            other => {
                self.state = other;
                return;
            }
        };
        match outcome {
            StoreOutcome::Stored { queue_id } => {
                reply::QUEUED.write_with(&mut self.output, &queue_id);
                self.errors = 0;
                self.messages = self.messages.saturating_add(1);
            }
            StoreOutcome::TempFailure => reply::QUEUE_WRITE_ERROR.write(&mut self.output),
            StoreOutcome::SpoolFull => reply::INSUFFICIENT_STORAGE.write(&mut self.output),
            StoreOutcome::PolicyRejected { text } => {
                let text: String = text.chars().filter(|c| !c.is_control()).collect();
                reply::POLICY_REJECTED.write_with(&mut self.output, &text);
            }
            StoreOutcome::Filtered(refusal) => match refusal {
                FilterRefusal::Rejected => reply::FILTER_REJECTED.write(&mut self.output),
                FilterRefusal::TempFailed => reply::FILTER_TEMPFAIL.write(&mut self.output),
                FilterRefusal::Unavailable => reply::FILTER_UNAVAILABLE.write(&mut self.output),
                FilterRefusal::Reply { code, text } => reply::write_filter_reply(&mut self.output, code, &text),
            },
        }
        self.action = None;
        self.state = State::Greeted(greeting);
    }

    /// Reports how [`Action::Authenticate`] went. Writes the reply; the
    /// session is greeted again, authenticated on success. Ignored unless
    /// an authentication is outstanding (e.g. after
    /// [`Server::handle_eof`]).
    pub fn auth_done(&mut self, outcome: AuthOutcome) {
        let (greeting, user) = match self.take_state() {
            State::Authenticating(greeting, user) => (greeting, user),
            other => {
                self.state = other;
                return;
            }
        };
        self.action = None;
        self.state = State::Greeted(greeting);
        match outcome {
            AuthOutcome::Success => {
                reply::AUTH_SUCCESSFUL.write(&mut self.output);
                self.authenticated = Some(user);
            }
            AuthOutcome::Failure => self.reject(&reply::AUTH_FAILED),
            AuthOutcome::TempFailure => reply::AUTH_TEMP_FAILURE.write(&mut self.output),
            AuthOutcome::Locked => self.reject(&reply::AUTH_LOCKED),
        }
    }

    /// The user this session authenticated as: the `user` of the
    /// [`Action::Authenticate`] the driver answered with
    /// [`AuthOutcome::Success`]. `None` before, and again after STARTTLS.
    pub fn authenticated_user(&self) -> Option<&str> {
        self.authenticated.as_deref()
    }

    /// Reports the TLS handshake done: the session starts afresh (the client
    /// must EHLO again, RFC 3207 §4.2), unauthenticated, STARTTLS is no
    /// longer offered, and passwords may be sent from now on (the channel
    /// is secure: no separate call is needed to allow AUTH). No greeting is
    /// sent. Ignored unless STARTTLS is outstanding.
    pub fn starttls_done(&mut self) {
        if let State::StartingTls = self.state {
            self.state = State::Fresh;
            self.tls_active = true;
            self.plaintext_auth_ok = true;
            self.authenticated = None;
            self.action = None;
        }
    }

    /// Replies waiting to be written, oldest first.
    pub fn output(&self) -> &[u8] {
        &self.output
    }

    /// The driver wrote all of [`Server::output`].
    pub fn clear_output(&mut self) {
        self.output.clear();
    }

    /// True after QUIT, a 421, or an over-long line: flush the output, then
    /// close the connection.
    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed)
    }

    /// The client was idle too long: 421 4.4.2 and closed. Any transaction
    /// is discarded.
    pub fn handle_timeout(&mut self) {
        if !self.is_closed() {
            let config = Rc::clone(&self.config);
            self.close_with(&reply::TIMEOUT, &config.hostname);
        }
    }

    /// Between commands: nothing received, stored, checked or negotiated
    /// is under way (a transaction may be open; nothing of it is accepted).
    pub fn is_idle(&self) -> bool {
        self.action.is_none()
            && self.discard == 0
            && matches!(self.state, State::Fresh | State::Greeted(_) | State::Mail(..) | State::Auth(..))
    }

    /// Receiving a message's body (after 354, before its end), or the
    /// octets of a BDAT chunk (accepted or being thrown away).
    pub fn in_data(&self) -> bool {
        self.discard > 0 || matches!(self.state, State::Data { .. } | State::Bdat { .. })
    }

    /// The server is stopping: an idle session gets 421 4.3.2 and is
    /// closed; one inside DATA, a store or a login check finishes that
    /// first. Returns whether it closed.
    pub fn shutdown(&mut self) -> bool {
        if self.is_idle() {
            let config = Rc::clone(&self.config);
            self.close_with(&reply::SHUTTING_DOWN, &config.hostname);
        }
        self.is_closed()
    }

    /// The client went away: any transaction (even a complete message whose
    /// store was not polled yet) is discarded; closed, no reply.
    pub fn handle_eof(&mut self) {
        self.state = State::Closed;
        self.action = None;
    }

    fn handle_line(&mut self, line: &[u8]) {
        self.commands = self.commands.saturating_add(1);
        if self.commands > self.config.max_commands {
            let config = Rc::clone(&self.config);
            return self.close_with(&reply::TOO_MANY_COMMANDS, &config.hostname);
        }
        let parsed = parse_command(line);
        match &parsed {
            // Where a malformed BDAT's octets end cannot be known: nothing
            // after it can be trusted to be a command.
            Err(error) if error.verb() == Some(Verb::Bdat) => return self.close_with(&reply::SYNTAX_BDAT, ""),
            Ok(Command::Bdat { size, .. }) => {
                if let Some(sequence_error) = self.sequence_error(Verb::Bdat) {
                    self.discard = *size;
                    return self.reject(sequence_error);
                }
            }
            _ => {}
        }
        let verb = match &parsed {
            Ok(command) => command.verb(),
            Err(error) => error.verb(),
        };
        if let Some(sequence_error) = verb.and_then(|v| self.sequence_error(v)) {
            return self.reject(sequence_error);
        }
        match parsed {
            Ok(command) => self.command(command),
            Err(error) => self.reject(reply::for_command_error(&error)),
        }
    }

    /// The 503-style reply if `verb` is not allowed now, checked before the
    /// arguments (as Postfix does).
    fn sequence_error(&self, verb: Verb) -> Option<&'static Reply> {
        match (verb, &self.state) {
            (Verb::Mail, State::Fresh) => Some(&reply::NEED_HELO),
            (Verb::Mail, State::Mail(..)) => Some(&reply::NESTED_MAIL),
            (Verb::Mail, _) if self.config.auth == AuthMode::Required && self.authenticated.is_none() => {
                Some(&reply::AUTH_REQUIRED)
            }
            (Verb::Rcpt | Verb::Data, State::Fresh | State::Greeted(_)) => Some(&reply::NEED_MAIL),
            (Verb::Bdat, State::Fresh | State::Greeted(_)) => Some(&reply::NEED_MAIL),
            (Verb::Data | Verb::Bdat, State::Mail(_, txn)) if txn.recipients.is_empty() => {
                Some(if txn.rejected { &reply::NO_VALID_RECIPIENTS } else { &reply::NEED_RCPT })
            }
            (Verb::Rcpt | Verb::Data, State::Mail(_, txn)) if txn.chunks.is_some() => Some(&reply::BDAT_IN_PROGRESS),
            (Verb::Data, State::Mail(_, txn)) if txn.binarymime => Some(&reply::BINARYMIME_NEEDS_BDAT),
            (Verb::StartTls, _) if !self.config.starttls => Some(&reply::TLS_NOT_AVAILABLE),
            (Verb::StartTls, _) if self.tls_active => Some(&reply::TLS_ALREADY_ACTIVE),
            (Verb::StartTls, State::Mail(..)) => Some(&reply::TRANSACTION_IN_PROGRESS),
            (Verb::Auth, _) if self.config.auth == AuthMode::Off => Some(&reply::AUTH_NOT_ENABLED),
            (Verb::Auth, State::Fresh) => Some(&reply::NEED_HELO),
            (Verb::Auth, State::Mail(..)) => Some(&reply::TRANSACTION_IN_PROGRESS),
            (Verb::Auth, _) if self.authenticated.is_some() => Some(&reply::ALREADY_AUTHENTICATED),
            // Every mechanism offered sends the password as is.
            (Verb::Auth, _) if !self.plaintext_auth_ok => Some(&reply::AUTH_ENCRYPTION_REQUIRED),
            _ => None,
        }
    }

    fn command(&mut self, command: Command) {
        match command {
            Command::Ehlo { domain } => self.hello(Greeting { helo: domain, esmtp: true }),
            Command::Helo { domain } => self.hello(Greeting { helo: domain, esmtp: false }),
            Command::Mail(from) => self.mail(from),
            Command::Rcpt(to) => self.rcpt(to),
            Command::Data => self.data(),
            Command::Rset => {
                self.state = match self.take_state() {
                    State::Mail(greeting, _) => State::Greeted(greeting),
                    other => other,
                };
                reply::OK.write(&mut self.output);
            }
            Command::Noop => reply::OK.write(&mut self.output),
            Command::Help => reply::HELP.write(&mut self.output),
            Command::Vrfy => reply::CANNOT_VRFY.write(&mut self.output),
            Command::Quit => self.close_with(&reply::BYE, ""),
            Command::StartTls => {
                reply::READY_TO_START_TLS.write(&mut self.output);
                self.action = Some(Action::StartTls);
                self.state = State::StartingTls;
            }
            Command::Auth { mechanism, initial_response } => {
                let Some(mechanism) = Mechanism::from_name(&mechanism) else {
                    return self.reject(&reply::AUTH_UNKNOWN_MECHANISM);
                };
                match self.take_state() {
                    State::Greeted(greeting) => {
                        self.auth_step(greeting, Exchange::start(mechanism, initial_response.as_ref()), mechanism);
                    }
                    other => self.state = other, // excluded by sequence_error
                }
            }
            Command::Bdat { size, last } => self.bdat(size, last),
            Command::Unknown(_) => self.reject(&reply::UNKNOWN_COMMAND),
        }
    }

    /// HELO/EHLO: greeted now, or once the live filters agree.
    fn hello(&mut self, greeting: Greeting) {
        if self.filter_commands {
            self.action = Some(Action::Filter(FilterStep::Helo(greeting.helo.clone())));
            let before = Box::new(self.take_state());
            self.state = State::Filtering(Pending::Helo { before, greeting });
        } else {
            self.greet(greeting);
        }
    }

    /// Greeted: the EHLO or HELO reply.
    fn greet(&mut self, greeting: Greeting) {
        if greeting.esmtp {
            let offer = EhloOffer {
                starttls: self.config.starttls && !self.tls_active,
                auth: self.config.auth != AuthMode::Off && self.plaintext_auth_ok,
                requiretls: self.tls_active,
            };
            let config = &self.config;
            reply::write_ehlo(&mut self.output, &config.hostname, config.max_message_size, offer);
        } else {
            reply::HELO.write_with(&mut self.output, &self.config.hostname);
        }
        self.state = State::Greeted(greeting);
    }

    /// A line while an AUTH challenge is outstanding.
    fn auth_response(&mut self, line: &[u8]) {
        match self.take_state() {
            State::Auth(greeting, exchange) => {
                let mechanism = exchange.mechanism();
                self.auth_step(greeting, exchange.respond(line), mechanism);
            }
            other => self.state = other, // only called in the Auth state
        }
    }

    /// Acts on where an AUTH exchange is: challenge again, ask the driver,
    /// or refuse and be greeted again.
    fn auth_step(&mut self, greeting: Greeting, step: Step, mechanism: Mechanism) {
        let error = match step {
            Step::Continue(exchange) => {
                reply::for_challenge(exchange.challenge()).write(&mut self.output);
                self.state = State::Auth(greeting, exchange);
                return;
            }
            Step::Done(sasl::Credentials { user, password }) => {
                self.action = Some(Action::Authenticate { mechanism, user: user.clone(), password });
                self.state = State::Authenticating(greeting, user);
                return;
            }
            Step::Failed(error) => error,
        };
        self.state = State::Greeted(greeting);
        self.reject(reply::for_sasl_error(error));
    }

    fn mail(&mut self, from: MailFrom) {
        let max = u64::try_from(self.config.max_message_size).unwrap_or(u64::MAX);
        if from.size.is_some_and(|declared| declared > max) {
            // RFC 1870 §6.1: refused up front; not a client error.
            return reply::MESSAGE_TOO_BIG.write(&mut self.output);
        }
        if from.requiretls && !self.tls_active {
            // Not advertised in plain text (RFC 8689 §4.1), so unknown here.
            return self.reject(&reply::UNSUPPORTED_PARAMETER);
        }
        if self.messages >= self.config.max_messages {
            let config = Rc::clone(&self.config);
            return self.close_with(&reply::TOO_MANY_MESSAGES, &config.hostname);
        }
        let auth = self.authenticated.as_deref();
        match self.policy.check_sender(&from.sender, auth) {
            SenderDecision::Ok => {}
            SenderDecision::NotOwned => {
                let user = auth.unwrap_or("(unauthenticated)").to_owned();
                return self.reject_with(&reply::SENDER_NOT_OWNED, &user);
            }
            SenderDecision::RateLimited => return reply::TOO_MUCH_MAIL.write(&mut self.output),
            SenderDecision::SpoolFull => return reply::INSUFFICIENT_STORAGE.write(&mut self.output),
        }
        self.state = match self.take_state() {
            State::Greeted(greeting) => {
                let txn = Transaction {
                    sender: from.sender,
                    recipients: Vec::new(),
                    body_8bit: from.body == Some(BodyType::EightBitMime),
                    ret: from.ret,
                    envid: from.envid,
                    binarymime: from.body == Some(BodyType::BinaryMime),
                    smtputf8: from.smtputf8,
                    requiretls: from.requiretls,
                    declared_size: from.size,
                    chunks: None,
                    rejected: false,
                };
                if self.filter_commands {
                    self.action = Some(Action::Filter(FilterStep::Mail(txn.sender.clone())));
                    State::Filtering(Pending::Mail { greeting, txn })
                } else {
                    reply::SENDER_OK.write(&mut self.output);
                    State::Mail(greeting, txn)
                }
            }
            other => other, // excluded by sequence_error
        };
    }

    fn rcpt(&mut self, to: RcptTo) {
        let utf8 = to.utf8;
        let address = match to.recipient {
            ForwardPath::Mailbox(address) => address,
            ForwardPath::Postmaster => {
                Address { local: "postmaster".into(), domain: self.config.hostname.to_ascii_lowercase() }
            }
        };
        let State::Mail(greeting, txn) = &mut self.state else {
            return; // excluded by sequence_error
        };
        if !txn.smtputf8 && utf8 {
            // RFC 6531 §3.5: UTF-8 only in a transaction that declared it.
            return self.reject(&reply::NON_ASCII_ADDRESS);
        }
        if txn.recipients.iter().any(|r| r.address == address) {
            // Already accepted: say yes again, deliver once.
            return reply::RECIPIENT_OK.write(&mut self.output);
        }
        if txn.recipients.len() >= self.config.max_recipients {
            return reply::TOO_MANY_RECIPIENTS.write(&mut self.output);
        }
        let auth = self.authenticated.as_deref();
        let refusal = match self.policy.check(&address, auth) {
            decision @ (RcptDecision::Local { .. } | RcptDecision::Remote { .. } | RcptDecision::Expanded { .. }) => {
                let request = ScreenRequest { helo: &greeting.helo, sender: &txn.sender, rcpt: &address, auth };
                let (reply, arg) = match self.policy.screen(&request) {
                    ScreenDecision::Pass => {
                        let recipient = AcceptedRecipient { address, decision, dsn: to.dsn };
                        if self.filter_commands {
                            return self.filter_rcpt(recipient);
                        }
                        txn.recipients.push(recipient);
                        return reply::RECIPIENT_OK.write(&mut self.output);
                    }
                    // Temporary refusals are not the client's error: a
                    // greylisted bulk sender must not be cut off for them.
                    ScreenDecision::Greylisted { seconds } => {
                        txn.rejected = true;
                        return reply::GREYLISTED.write_with(&mut self.output, &seconds.to_string());
                    }
                    ScreenDecision::ReverseDnsUnavailable { client } => {
                        txn.rejected = true;
                        return reply::REVERSE_DNS_UNAVAILABLE.write_with(&mut self.output, &client);
                    }
                    ScreenDecision::Blocklisted { client, lists } => {
                        (&reply::BLOCKLISTED, format!("client host [{client}] blocked using {lists}"))
                    }
                    ScreenDecision::ReverseDnsFailed { client } => (&reply::REVERSE_DNS_FAILED, client),
                    ScreenDecision::HeloRejected { why } => (&reply::HELO_REJECTED, why.to_string()),
                };
                txn.rejected = true;
                return self.reject_with(reply, &arg);
            }
            RcptDecision::UnknownUser => &reply::UNKNOWN_USER,
            // The operator's mistake, not the client's: temporary, so the
            // mail comes back once the aliases are fixed; not counted.
            RcptDecision::AliasFailed { reason } => {
                txn.rejected = true;
                return reply::ALIAS_FAILED.write_with(&mut self.output, &format!("<{address}>: {reason}"));
            }
            RcptDecision::RelayDenied => &reply::RELAY_DENIED,
            // Not counted as a bad command either: the address was good
            // when the sender's list was made, and a bulk sender meeting
            // a few suppressed addresses must not be cut off for it.
            RcptDecision::Suppressed { since } => {
                txn.rejected = true;
                return reply::RECIPIENT_SUPPRESSED.write_with(&mut self.output, &since);
            }
            // Temporary and the client's fault only in a full mailbox: not
            // counted as a bad command.
            RcptDecision::MailboxFull => return reply::MAILBOX_FULL.write_with(&mut self.output, &address.to_string()),
        };
        txn.rejected = true;
        self.reject_with(refusal, &address.to_string());
    }

    /// RCPT accepted here: its reply waits for the live filters.
    fn filter_rcpt(&mut self, recipient: AcceptedRecipient) {
        self.state = match self.take_state() {
            State::Mail(greeting, txn) => {
                self.action = Some(Action::Filter(FilterStep::Rcpt(recipient.address.clone())));
                State::Filtering(Pending::Rcpt { greeting, txn, recipient })
            }
            other => other, // only called in the Mail state
        };
    }

    fn data(&mut self) {
        self.state = match self.take_state() {
            State::Mail(greeting, txn) => {
                reply::START_DATA.write(&mut self.output);
                let max = self.config.max_message_size;
                let reserve = txn.declared_size.map_or(0, |n| usize::try_from(n).unwrap_or(max).min(max));
                State::Data { greeting, txn, scanner: DataScanner::new(max), body: Vec::with_capacity(reserve) }
            }
            other => other, // excluded by sequence_error
        };
    }

    /// The final "." arrived: refuse an oversized message or ask for a store.
    fn end_of_data(&mut self) {
        self.state = match self.take_state() {
            State::Data { greeting, scanner, .. } if scanner.is_oversized() => {
                // Not a client error: the transaction is over, the session goes on.
                reply::MESSAGE_TOO_BIG.write(&mut self.output);
                State::Greeted(greeting)
            }
            State::Data { greeting, txn, scanner, body } => {
                let eight_bit = scanner.saw_8bit();
                self.store(greeting, txn, body, eight_bit)
            }
            other => other, // only called from the Data state
        };
    }

    /// BDAT in a transaction with recipients (sequence_error checked):
    /// refuse at once if the total would pass the limit, else read the
    /// chunk. `BDAT 0` ends here and now.
    fn bdat(&mut self, size: u64, last: bool) {
        self.state = match self.take_state() {
            State::Mail(greeting, mut txn) => {
                let max = self.config.max_message_size;
                let chunks = txn.chunks.get_or_insert_with(|| ChunkBody::new(max, txn.binarymime));
                if !chunks.announce(size) {
                    // Not a client error; the transaction is over (RFC 3030
                    // §2: later chunks get 503), its octets are read.
                    reply::MESSAGE_TOO_BIG.write(&mut self.output);
                    self.discard = size;
                    self.state = State::Greeted(greeting);
                    return;
                }
                State::Bdat { greeting, txn, remaining: size, size, last }
            }
            other => other, // excluded by sequence_error
        };
        if size == 0 {
            self.end_of_chunk();
        }
    }

    /// A BDAT's octets are all in: 250 for a chunk, a store for the last,
    /// or 552 if normalising took the body past the limit.
    fn end_of_chunk(&mut self) {
        self.state = match self.take_state() {
            State::Bdat { greeting, txn, .. } if txn.chunks.as_ref().is_some_and(ChunkBody::is_oversized) => {
                reply::MESSAGE_TOO_BIG.write(&mut self.output);
                State::Greeted(greeting)
            }
            State::Bdat { greeting, txn, size, last: false, .. } => {
                reply::CHUNK_RECEIVED.write_with(&mut self.output, &size.to_string());
                State::Mail(greeting, txn)
            }
            State::Bdat { greeting, mut txn, last: true, .. } => {
                let chunks = txn.chunks.take().unwrap_or_else(|| ChunkBody::new(0, true));
                let eight_bit = chunks.saw_8bit();
                match chunks.finish() {
                    Some(body) => self.store(greeting, txn, body, eight_bit),
                    None => {
                        reply::MESSAGE_TOO_BIG.write(&mut self.output);
                        State::Greeted(greeting)
                    }
                }
            }
            other => other, // only called from the Bdat state
        };
    }

    /// A complete message: ask the driver to store it (DATA and BDAT alike).
    fn store(&mut self, greeting: Greeting, txn: Transaction, body: Vec<u8>, saw_8bit: bool) -> State {
        let envelope = Envelope {
            helo: greeting.helo.clone(),
            esmtp: greeting.esmtp,
            sender: txn.sender,
            recipients: txn.recipients,
            body_8bit: txn.body_8bit || saw_8bit,
            binarymime: txn.binarymime,
            smtputf8: txn.smtputf8,
            requiretls: txn.requiretls,
            auth_user: self.authenticated.clone(),
            ret: txn.ret,
            envid: txn.envid,
        };
        self.action = Some(Action::Store { envelope, body });
        State::Storing(greeting)
    }

    fn take_state(&mut self) -> State {
        std::mem::replace(&mut self.state, State::Closed)
    }

    /// Writes a reply to a client error and counts it; at `max_errors`
    /// adds 421 and closes.
    fn reject(&mut self, reply: &Reply) {
        self.reject_with(reply, "");
    }

    fn reject_with(&mut self, reply: &Reply, arg: &str) {
        debug_assert!(reply.is_failure());
        reply.write_with(&mut self.output, arg);
        self.count_error();
    }

    /// Counts a client error; at `max_errors` adds 421 and closes.
    fn count_error(&mut self) {
        self.errors = self.errors.saturating_add(1);
        if self.errors >= self.config.max_errors {
            let config = Rc::clone(&self.config);
            self.close_with(&reply::TOO_MANY_ERRORS, &config.hostname);
        }
    }

    /// Writes a last reply and closes; a pending action is dropped.
    fn close_with(&mut self, reply: &Reply, arg: &str) {
        reply.write_with(&mut self.output, arg);
        self.state = State::Closed;
        self.action = None;
    }
}

/// How many of `available` input bytes belong to a chunk with `remaining`
/// octets left.
fn chunk_len(remaining: u64, available: usize) -> usize {
    usize::try_from(remaining).map_or(available, |r| r.min(available))
}
