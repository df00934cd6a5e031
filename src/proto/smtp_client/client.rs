//! The client session: greeting, EHLO/HELO, STARTTLS, transactions, RSET
//! and QUIT, as one state machine over one connection. The same machine
//! speaks LMTP (RFC 2033, [`Client::lmtp`]): LHLO instead of EHLO, no HELO
//! fallback, no STARTTLS, DATA rather than BDAT, and one reply per
//! accepted recipient after the body (see `transaction`).
//!
//! [`Client`] decides every byte the driver writes and reads every reply;
//! the driver owns the socket, the TLS and the clock. It must not do I/O,
//! read a clock or know about other connections or the queue: retry policy
//! is the queue's, connection reuse limits are the dispatcher's.
//!
//! Driver loop: feed what was read to [`Client::handle_input`] (keeping the
//! unconsumed tail), write everything [`Client::poll_transmit`] yields,
//! act on every [`Client::poll_event`], and call [`Client::handle_timeout`]
//! when the timer for [`Client::phase`] expires or
//! [`Client::connection_lost`] when the connection ends.
//!
//! With a server offering PIPELINING, [`Event::ReadyBehind`] says the next
//! message may be given before the one in flight is answered (see
//! `flight`); outcomes still come one per message, in order.

use std::collections::VecDeque;
use std::mem;

use super::capabilities::Capabilities;
use super::command;
use super::config::{ClientConfig, ConfigError, TlsPolicy};
use super::event::{ConnectionFailure, Event, FailureCause, Phase, SendError, Sent, Transmit};
use super::flight::{Entry, Flight};
use super::message::OutgoingMessage;
use super::reply::{Assembled, Class, Reply, ReplyReader};
use super::transaction::{Dialect, Next, Transaction};

/// Where the session is. Data lives in the state it is valid in.
#[derive(Debug)]
enum State {
    /// Waiting for the greeting.
    Greeting,
    /// EHLO (`ehlo`; LHLO over LMTP) or HELO sent.
    Hello { ehlo: bool },
    /// STARTTLS sent.
    StartTls,
    /// STARTTLS accepted; the driver is handshaking.
    Handshake,
    /// Idle; may take a message.
    Ready,
    /// One message in flight, or two with pipelining.
    Transaction(Flight),
    /// RSET sent after a failed transaction.
    Reset,
    /// QUIT sent.
    Quit,
    /// Closed or failed; input is ignored.
    Done,
}

/// One SMTP client session, sans-I/O (see the module doc for the loop).
#[derive(Debug)]
pub struct Client {
    config: ClientConfig,
    state: State,
    /// From the last EHLO; empty after HELO and until EHLO.
    caps: Capabilities,
    /// TLS is up (implicit, or after the handshake).
    tls_active: bool,
    /// Assembles replies across reads.
    reader: ReplyReader,
    /// Not yet taken by the driver, in order.
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    /// `quit` was called while busy: QUIT instead of the next Ready.
    quit_requested: bool,
    /// SMTP or LMTP, for the session's whole life.
    dialect: Dialect,
}

impl Client {
    /// A session on a fresh connection; it sends nothing before the
    /// server's greeting.
    pub fn new(config: ClientConfig) -> Result<Client, ConfigError> {
        Client::with_dialect(config, Dialect::Smtp)
    }

    /// An LMTP (RFC 2033) session on a fresh connection: LHLO, and after
    /// the body one reply per accepted recipient, each deciding its own
    /// recipient in [`Event::Outcome`]. The TLS settings of `config` are
    /// not used: LMTP goes to a local store and never sends STARTTLS.
    pub fn lmtp(config: ClientConfig) -> Result<Client, ConfigError> {
        Client::with_dialect(config, Dialect::Lmtp)
    }

    fn with_dialect(config: ClientConfig, dialect: Dialect) -> Result<Client, ConfigError> {
        config.validate()?;
        Ok(Client {
            dialect,
            tls_active: config.tls_active_at_start,
            config,
            state: State::Greeting,
            caps: Capabilities::default(),
            reader: ReplyReader::default(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            quit_requested: false,
        })
    }

    /// Feeds bytes read from the server; returns how many were consumed.
    /// Whole lines are consumed (the lines of an unfinished multi-line
    /// reply are kept inside); the caller keeps the rest and offers it
    /// again with more. Once the session is over, everything is consumed
    /// and ignored. After [`Event::StartTls`] nothing more may be in the
    /// same input: plaintext there fails the connection.
    pub fn handle_input(&mut self, input: &[u8]) -> usize {
        let mut consumed = 0;
        loop {
            match self.state {
                State::Done => return input.len(),
                State::Handshake if consumed < input.len() => {
                    self.fail(FailureCause::PlaintextAfterStartTls, true, false);
                    return input.len();
                }
                State::Handshake => return consumed,
                State::Greeting
                | State::Hello { .. }
                | State::StartTls
                | State::Ready
                | State::Transaction(_)
                | State::Reset
                | State::Quit => {}
            }
            match self.reader.read(&input[consumed..]) {
                Ok((n, Some(assembled))) => {
                    consumed += n;
                    self.on_reply(assembled);
                }
                Ok((n, None)) => return consumed + n,
                Err(error) => {
                    let phase = self.phase();
                    self.fail(FailureCause::BadReply { phase, error }, true, false);
                    return input.len();
                }
            }
        }
    }

    /// The next thing to write, in order; `None` when there is nothing.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event, in order; `None` when there is nothing.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Whether an [`Event::ReadyBehind`] is among the events not taken
    /// yet (it may follow the outcome of the message before).
    pub fn offers_behind(&self) -> bool {
        self.events.iter().any(|e| matches!(e, Event::ReadyBehind))
    }

    /// The TLS handshake after [`Event::StartTls`] succeeded: everything
    /// learnt before is forgotten and EHLO is sent again (RFC 3207 §4.2).
    /// Ignored in any other phase.
    pub fn tls_established(&mut self) {
        if let State::Handshake = self.state {
            self.tls_active = true;
            self.caps = Capabilities::default();
            self.send_hello(true);
        }
    }

    /// Starts a message: after [`Event::Ready`], or after
    /// [`Event::ReadyBehind`] behind the one message in flight. Its
    /// [`Event::Outcome`] follows, after those of the messages given
    /// before it (at once when idle and decided without the server: SIZE
    /// exceeded, no valid address). A refused message is handed back in
    /// the error.
    pub fn send_message(&mut self, message: OutgoingMessage) -> Result<Sent, SendError> {
        match (&self.state, self.quit_requested) {
            (State::Ready, false) => {}
            (State::Transaction(flight), false) if self.pipelines(flight) => {}
            _ => {
                let phase = self.phase();
                return Err(SendError::NotReady { phase, message });
            }
        }
        if message.recipients.is_empty() {
            return Err(SendError::NoRecipients { message });
        }
        let mut out = Vec::new();
        let entry = match Transaction::start(message, &self.caps, self.dialect, &mut out) {
            Ok(txn) => {
                let chunked = txn.chunked();
                self.push_command(out);
                if chunked {
                    self.transmits.push_back(Transmit::Chunk);
                }
                Entry::Live(Box::new(txn))
            }
            Err(outcome) => Entry::Decided(outcome),
        };
        let sent = match entry {
            Entry::Live(_) => Sent::OnTheWire,
            Entry::Decided(_) => Sent::Decided,
        };
        match (&mut self.state, entry) {
            (State::Transaction(flight), entry) => flight.push(entry),
            (_, Entry::Live(txn)) => self.state = State::Transaction(Flight::new(txn)),
            (_, Entry::Decided(outcome)) => {
                self.events.push_back(Event::Outcome(outcome));
                self.events.push_back(Event::Ready);
            }
        }
        Ok(sent)
    }

    /// Whether [`Client::send_message`] would take a message now.
    pub fn takes_message(&self) -> bool {
        match &self.state {
            State::Ready => !self.quit_requested,
            State::Transaction(flight) => self.pipelines(flight),
            State::Greeting
            | State::Hello { .. }
            | State::StartTls
            | State::Handshake
            | State::Reset
            | State::Quit
            | State::Done => false,
        }
    }

    /// Whether the session will take a message behind the one in flight
    /// as soon as that one's body is written ([`Event::ReadyBehind`]):
    /// an SMTP server offering PIPELINING, one message in flight, and its
    /// body not written yet (DATA waiting for the 354).
    pub fn takes_behind_soon(&self) -> bool {
        match &self.state {
            State::Transaction(flight) => {
                self.dialect == Dialect::Smtp
                    && self.caps.pipelining
                    && !self.quit_requested
                    && flight.takes_one_behind_soon()
            }
            _ => false,
        }
    }

    /// Whether a message may go behind those of `flight` now: an SMTP
    /// server offering PIPELINING, and room behind the one in flight.
    fn pipelines(&self, flight: &Flight) -> bool {
        self.dialect == Dialect::Smtp && self.caps.pipelining && !self.quit_requested && flight.takes_one_behind()
    }

    /// The driver wrote the whole body after [`Transmit::Body`] or
    /// [`Transmit::Chunk`] (bodies are asked for and written in order): the
    /// wait for its final reply (phase DataTermination) begins.
    pub fn body_sent(&mut self) {
        if let State::Transaction(flight) = &mut self.state {
            flight.body_sent();
        }
        self.offer_behind();
    }

    /// [`Event::ReadyBehind`], once per message in flight, when another may
    /// go behind it.
    fn offer_behind(&mut self) {
        let offer = matches!(&self.state, State::Transaction(f) if !f.offered && self.pipelines(f));
        if let (true, State::Transaction(flight)) = (offer, &mut self.state) {
            flight.offered = true;
            self.events.push_back(Event::ReadyBehind);
        }
    }

    /// Ends the session politely: QUIT now when idle, else when the
    /// current setup or message is finished (no further Ready comes).
    pub fn quit(&mut self) {
        match self.state {
            State::Ready => self.send_quit(),
            State::Quit | State::Done => {}
            State::Greeting
            | State::Hello { .. }
            | State::StartTls
            | State::Handshake
            | State::Transaction(_)
            | State::Reset => self.quit_requested = true,
        }
    }

    /// The driver's timer for [`Client::phase`] expired: a message in
    /// flight is deferred and the connection fails (after QUIT: closed).
    pub fn handle_timeout(&mut self) {
        match self.state {
            State::Done => {}
            State::Quit => self.close(),
            State::Greeting
            | State::Hello { .. }
            | State::StartTls
            | State::Handshake
            | State::Ready
            | State::Transaction(_)
            | State::Reset => {
                let phase = self.phase();
                self.fail(FailureCause::Timeout { phase }, true, false);
            }
        }
    }

    /// The connection ended under us (EOF, reset, failed TLS handshake).
    /// Idle or after QUIT that is a clean close; otherwise a message in
    /// flight is deferred and the connection fails.
    pub fn connection_lost(&mut self) {
        match self.state {
            State::Done => {}
            State::Quit | State::Ready => self.close(),
            State::Greeting
            | State::Hello { .. }
            | State::StartTls
            | State::Handshake
            | State::Transaction(_)
            | State::Reset => {
                let phase = self.phase();
                self.fail(FailureCause::ConnectionLost { phase }, true, false);
            }
        }
    }

    /// What the last EHLO advertised (empty before it, and after HELO).
    pub fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    /// TLS is up (implicit or after STARTTLS).
    pub fn tls_active(&self) -> bool {
        self.tls_active
    }

    /// Which reply the session waits for; pick the timeout by it.
    pub fn phase(&self) -> Phase {
        match &self.state {
            State::Greeting => Phase::Greeting,
            State::Hello { ehlo: true } => Phase::Ehlo,
            State::Hello { ehlo: false } => Phase::Helo,
            State::StartTls => Phase::StartTls,
            State::Handshake => Phase::TlsHandshake,
            State::Ready => Phase::Ready,
            State::Transaction(flight) => flight.front().map_or(Phase::DataTermination, Transaction::phase),
            State::Reset => Phase::Rset,
            State::Quit => Phase::Quit,
            State::Done => Phase::Closed,
        }
    }

    fn on_reply(&mut self, assembled: Assembled) {
        let lines = match assembled.more_lines.is_empty() {
            // Only EHLO reads the lines, once per session.
            true if matches!(self.state, State::Hello { .. }) => assembled.lines().to_vec(),
            _ => assembled.more_lines,
        };
        let reply = assembled.reply;
        // 421 may come at any time (RFC 5321 §3.8) and ends everything.
        if reply.code == 421 && !matches!(self.state, State::Quit) {
            self.fail(FailureCause::ServiceClosing(reply), true, false);
            return;
        }
        match self.state {
            State::Greeting => match reply.class() {
                Class::Positive => self.send_hello(true),
                Class::Transient | Class::Permanent => {
                    let temporary = reply.class() == Class::Transient;
                    self.fail(FailureCause::GreetingRefused(reply), temporary, true);
                }
            },
            State::Hello { ehlo } => self.on_hello(ehlo, reply, &lines),
            State::StartTls => match (reply.class(), self.config.tls) {
                (Class::Positive, _) => {
                    self.state = State::Handshake;
                    self.events.push_back(Event::StartTls);
                }
                // RFC 3207 §4.1 leaves it to the client; refusing would
                // only keep mail in the queue that plain text can carry.
                (Class::Transient | Class::Permanent, TlsPolicy::Opportunistic | TlsPolicy::Disabled) => self.ready(),
                (Class::Transient | Class::Permanent, TlsPolicy::Required | TlsPolicy::Verify) => {
                    self.fail(FailureCause::TlsRefused(reply), true, true);
                }
            },
            State::Transaction(_) => self.on_transaction_reply(reply),
            State::Reset => match reply.class() {
                Class::Positive => self.ready(),
                Class::Transient | Class::Permanent => {
                    self.fail(FailureCause::ResetRefused(reply), true, true);
                }
            },
            State::Quit => self.close(),
            State::Ready | State::Handshake => {
                let phase = self.phase();
                self.fail(FailureCause::UnexpectedReply { phase, reply }, true, false);
            }
            State::Done => {}
        }
    }

    fn on_hello(&mut self, ehlo: bool, reply: Reply, lines: &[String]) {
        match (reply.class(), ehlo) {
            (Class::Positive, true) => {
                self.caps = Capabilities::from_ehlo(lines);
                self.after_hello();
            }
            (Class::Positive, false) => {
                self.caps = Capabilities::default();
                self.after_hello();
            }
            // LMTP has no HELO to fall back to (RFC 2033 §4.1).
            (Class::Permanent, true) if self.dialect == Dialect::Lmtp => {
                self.fail(FailureCause::HelloRefused(reply), false, true)
            }
            // 500/502/504/550 to EHLO: an old server; try HELO.
            (Class::Permanent, true) => self.send_hello(false),
            (Class::Transient, _) => self.fail(FailureCause::HelloRefused(reply), true, true),
            (Class::Permanent, false) => self.fail(FailureCause::HelloRefused(reply), false, true),
        }
    }

    /// After a 2xx to EHLO/HELO: STARTTLS, Ready, or no TLS no mail.
    fn after_hello(&mut self) {
        if self.dialect == Dialect::Lmtp {
            return self.ready();
        }
        match (self.tls_active, self.caps.starttls, self.config.tls) {
            (true, _, _) | (false, _, TlsPolicy::Disabled) | (false, false, TlsPolicy::Opportunistic) => self.ready(),
            (false, true, _) => {
                self.push_command(command::STARTTLS.to_vec());
                self.state = State::StartTls;
            }
            (false, false, TlsPolicy::Required | TlsPolicy::Verify) => {
                self.fail(FailureCause::TlsNotOffered, true, true);
            }
        }
    }

    fn on_transaction_reply(&mut self, reply: Reply) {
        let State::Transaction(flight) = &mut self.state else {
            return;
        };
        let Some(txn) = flight.front_mut() else {
            return;
        };
        let mut out = Vec::new();
        let next = txn.on_reply(reply, &mut out);
        self.push_command(out);
        match next {
            Next::Wait => {}
            Next::Body => self.transmits.push_back(Transmit::Body),
            Next::Done { reset } => self.finish_front(reset),
            Next::Violation(reply) => {
                let phase = self.phase();
                self.fail(FailureCause::UnexpectedReply { phase, reply }, true, false);
            }
        }
    }

    /// The oldest message in flight is done: its outcome (and those decided
    /// without the server behind it), then the next one in flight goes on,
    /// or RSET / Ready (see `flight` for why no RSET goes between two
    /// pipelined transactions).
    fn finish_front(&mut self, reset: bool) {
        let State::Transaction(flight) = &mut self.state else {
            return;
        };
        let (done, decided, reset_now) = flight.finish_front(reset);
        let idle = flight.is_empty();
        if let Some(txn) = done {
            let missing = Reply::local(451, (4, 3, 0), "transaction ended without a final reply");
            self.events.push_back(Event::Outcome(txn.resolve(&missing)));
        }
        self.events.extend(decided.into_iter().map(Event::Outcome));
        match (idle, reset_now) {
            (false, _) => self.offer_behind(),
            (true, true) => {
                self.push_command(command::RSET.to_vec());
                self.state = State::Reset;
            }
            (true, false) => self.ready(),
        }
    }

    fn send_hello(&mut self, ehlo: bool) {
        let mut out = Vec::new();
        match (ehlo, self.dialect) {
            (true, Dialect::Smtp) => command::ehlo(&mut out, &self.config.helo_name),
            (true, Dialect::Lmtp) => command::lhlo(&mut out, &self.config.helo_name),
            (false, _) => command::helo(&mut out, &self.config.helo_name),
        }
        self.push_command(out);
        self.state = State::Hello { ehlo };
    }

    /// Idle: Ready for the driver, or QUIT when it asked to end.
    fn ready(&mut self) {
        match self.quit_requested {
            true => self.send_quit(),
            false => {
                self.state = State::Ready;
                self.events.push_back(Event::Ready);
            }
        }
    }

    fn send_quit(&mut self) {
        self.push_command(command::QUIT.to_vec());
        self.state = State::Quit;
    }

    fn close(&mut self) {
        self.state = State::Done;
        self.events.push_back(Event::Closed);
    }

    /// Ends the session: each message in flight (if any) is resolved, in
    /// order, with the cause's deferral reply for what is undecided, then
    /// `Failed`; `quit` leaves a QUIT for the driver to write before it
    /// closes. The oldest transaction is the one the cause came in (a 421
    /// is its reply): an `Outcome`; one behind it had no reply yet:
    /// `Abandoned`.
    fn fail(&mut self, cause: FailureCause, temporary: bool, quit: bool) {
        if let State::Transaction(flight) = mem::replace(&mut self.state, State::Done) {
            let deferral = cause.deferral();
            let mut oldest = true;
            for entry in flight.into_entries() {
                let event = match entry {
                    Entry::Live(txn) if oldest => Event::Outcome(txn.resolve(&deferral)),
                    Entry::Live(txn) => Event::Abandoned(txn.resolve(&deferral)),
                    Entry::Decided(outcome) => Event::Outcome(outcome),
                };
                oldest = false;
                self.events.push_back(event);
            }
        }
        if quit {
            self.push_command(command::QUIT.to_vec());
        }
        let failure = ConnectionFailure { cause, temporary };
        self.events.push_back(Event::Failed(failure));
    }

    /// Queues command bytes, joining them to a command write still queued
    /// so a pipelined group goes out as one write.
    fn push_command(&mut self, bytes: Vec<u8>) {
        if bytes.is_empty() {
            return;
        }
        match self.transmits.back_mut() {
            Some(Transmit::Command(pending)) => pending.extend_from_slice(&bytes),
            Some(Transmit::Body | Transmit::Chunk) | None => self.transmits.push_back(Transmit::Command(bytes)),
        }
    }
}
