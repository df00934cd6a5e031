//! Test helpers: a sender and recipient policy, a simulated driver, and a
//! transcript DSL in the style `session.rcpt_to("jane@example.test", "250")`.
//!
//! The driver does what a real one must: keep unconsumed bytes, perform
//! each action and report it at once, then feed the rest again.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use super::address::{Address, ReversePath};
use super::data::dot_stuff;
use super::envelope::{Envelope, RcptDecision, RecipientPolicy, ScreenDecision, ScreenRequest, SenderDecision};
use super::interface::{Action, AuthMode, AuthOutcome, FilterRefusal, FilterStep, ServerConfig, StoreOutcome};
use super::sasl::Mechanism;
use super::server::Server;
use crate::address_map::Target;

/// The one password the simulated driver accepts, for any user.
pub const PASSWORD: &str = "secret";

/// Local users jane, john and postmaster at example.test and
/// mx.example.test (`loop@` has broken aliases, `list@` is an alias of
/// jane and x@relay.test); relaying to relay.test, and anywhere for an
/// authenticated user; everything else denied. An authenticated user may
/// send as `<user>@example.test` or `<>`. Records every address it is
/// asked about.
pub struct TestPolicy {
    pub checked: Rc<RefCell<Vec<Address>>>,
}

impl RecipientPolicy for TestPolicy {
    fn check(&self, rcpt: &Address, auth: Option<&str>) -> RcptDecision {
        self.checked.borrow_mut().push(rcpt.clone());
        match rcpt.domain.as_str() {
            "example.test" | "mx.example.test" => match rcpt.local.as_str() {
                "jane" | "john" | "postmaster" | "grey" | "blocked" | "nordns" | "rdnsfail" => {
                    RcptDecision::Local { user: rcpt.local.clone() }
                }
                "full" => RcptDecision::MailboxFull,
                "loop" => RcptDecision::AliasFailed { reason: "alias loop: a -> b -> a".into() },
                "list" => RcptDecision::Expanded {
                    targets: vec![
                        Target::Local { address: "jane@example.test".into(), user: "jane".into() },
                        Target::Remote { address: "x@relay.test".into(), domain: "relay.test".into() },
                    ],
                },
                _ => RcptDecision::UnknownUser,
            },
            "relay.test" if rcpt.local == "bounced" => {
                RcptDecision::Suppressed { since: "2026-01-02T03:04:05Z".into() }
            }
            "relay.test" => RcptDecision::Remote { domain: rcpt.domain.clone() },
            _ if auth.is_some() => RcptDecision::Remote { domain: rcpt.domain.clone() },
            _ => RcptDecision::RelayDenied,
        }
    }

    /// By recipient: `grey@` greylisted, `blocked@` on two lists,
    /// `nordns@` / `rdnsfail@` failing reverse DNS for now / for good;
    /// a HELO of `192.0.2.1` is refused; everyone else passes.
    fn screen(&self, request: &ScreenRequest<'_>) -> ScreenDecision {
        let client = "192.0.2.9".to_string();
        match request.rcpt.local.as_str() {
            _ if request.helo == "192.0.2.1" => ScreenDecision::HeloRejected { why: "bare IP address" },
            "grey" => ScreenDecision::Greylisted { seconds: 120 },
            "blocked" => ScreenDecision::Blocklisted { client, lists: "zen.test, bl.test".into() },
            "nordns" => ScreenDecision::ReverseDnsUnavailable { client },
            "rdnsfail" => ScreenDecision::ReverseDnsFailed { client },
            _ => ScreenDecision::Pass,
        }
    }

    fn check_sender(&self, sender: &ReversePath, auth: Option<&str>) -> SenderDecision {
        match (sender, auth) {
            (ReversePath::Mailbox(address), _) if address.local == "flooder" => SenderDecision::RateLimited,
            (ReversePath::Mailbox(address), Some(user))
                if address.local != user || address.domain != "example.test" =>
            {
                SenderDecision::NotOwned
            }
            _ => SenderDecision::Ok,
        }
    }
}

pub fn config() -> ServerConfig {
    ServerConfig {
        hostname: "mx.example.test".into(),
        max_message_size: 1000,
        max_recipients: 3,
        max_line_len: 512,
        max_errors: 5,
        starttls: true,
        tls_at_start: false,
        auth: AuthMode::Off,
        max_commands: 10_000,
        max_messages: 1_000,
        plaintext_auth_ok: false,
    }
}

/// [`config`] with AUTH in `mode`, passwords allowed from the start (as on
/// loopback or implicit TLS).
pub fn auth_config(mode: AuthMode) -> ServerConfig {
    ServerConfig { auth: mode, plaintext_auth_ok: true, ..config() }
}

/// A greeted session on a listener that offers AUTH, passwords allowed.
pub fn offered() -> Session {
    let mut s = Session::with(auth_config(AuthMode::Offered));
    s.ehlo("client.test", "250 ");
    s
}

pub fn b64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

/// `AUTH PLAIN` with the initial response for `user` and `password`.
pub fn plain_initial(user: &str, password: &str) -> String {
    format!("AUTH PLAIN {}", b64(format!("\0{user}\0{password}").as_bytes()))
}

/// A server driven like a real driver would, recording what it asks for.
pub struct Session {
    pub server: Server,
    /// Every message the server asked to store.
    pub stored: Vec<(Envelope, Vec<u8>)>,
    /// Every address the policy was asked about.
    pub checked: Rc<RefCell<Vec<Address>>>,
    /// Outcomes to report for the next stores; `Stored` when empty.
    pub outcomes: VecDeque<StoreOutcome>,
    /// How many TLS handshakes were "performed".
    pub handshakes: usize,
    /// Every password check the server asked for: (mechanism, user,
    /// password).
    pub auths: Vec<(Mechanism, String, String)>,
    /// Outcomes to report for the next checks; when empty, `Success` for
    /// [`PASSWORD`] and `Failure` otherwise.
    pub auth_outcomes: VecDeque<AuthOutcome>,
    /// Bytes the server has not consumed yet.
    pub buffer: Vec<u8>,
    /// Every command the live filters were asked about.
    pub filtered: Vec<FilterStep>,
    /// Their answers for the next ones; `None` (let through) when empty.
    pub filter_answers: VecDeque<Option<FilterRefusal>>,
}

impl Session {
    /// A session with [`config`]; the greeting is taken off the output.
    pub fn new() -> Session {
        Session::with(config())
    }

    pub fn with(config: ServerConfig) -> Session {
        let checked = Rc::new(RefCell::new(Vec::new()));
        let policy = TestPolicy { checked: Rc::clone(&checked) };
        let mut server = Server::new(Rc::new(config), Box::new(policy));
        assert_eq!(server.output(), b"220 mx.example.test ESMTP ringmail\r\n");
        server.clear_output();
        Session {
            server,
            stored: Vec::new(),
            checked,
            outcomes: VecDeque::new(),
            handshakes: 0,
            auths: Vec::new(),
            auth_outcomes: VecDeque::new(),
            buffer: Vec::new(),
            filtered: Vec::new(),
            filter_answers: VecDeque::new(),
        }
    }

    /// Feeds `bytes` like a driver; returns every reply produced.
    pub fn send(&mut self, bytes: &[u8]) -> String {
        self.buffer.extend_from_slice(bytes);
        let mut out = Vec::new();
        loop {
            let consumed = self.server.handle_input(&self.buffer);
            assert!(consumed <= self.buffer.len());
            self.buffer.drain(..consumed);
            let mut acted = false;
            while let Some(action) = self.server.poll_action() {
                acted = true;
                match action {
                    Action::Store { envelope, body } => {
                        self.stored.push((envelope, body));
                        let outcome = self
                            .outcomes
                            .pop_front()
                            .unwrap_or(StoreOutcome::Stored { queue_id: format!("Q{}", self.stored.len()) });
                        self.server.store_done(outcome);
                    }
                    Action::StartTls => {
                        // The 220 must be flushed in the clear before the handshake.
                        assert!(self.server.output().ends_with(b"220 2.0.0 Ready to start TLS\r\n"));
                        self.handshakes += 1;
                        out.extend_from_slice(self.server.output());
                        self.server.clear_output();
                        self.server.starttls_done();
                    }
                    Action::Authenticate { mechanism, user, password } => {
                        let outcome = self.auth_outcomes.pop_front().unwrap_or(if password == PASSWORD {
                            AuthOutcome::Success
                        } else {
                            AuthOutcome::Failure
                        });
                        self.auths.push((mechanism, user, password));
                        self.server.auth_done(outcome);
                    }
                    Action::Filter(step) => {
                        self.filtered.push(step);
                        let answer = self.filter_answers.pop_front().flatten();
                        self.server.filter_done(answer);
                    }
                }
            }
            out.extend_from_slice(self.server.output());
            self.server.clear_output();
            if !acted {
                return String::from_utf8_lossy(&out).into_owned();
            }
        }
    }

    /// Sends `line` + CRLF and asserts the (last) reply starts with `expect`.
    pub fn cmd(&mut self, line: &str, expect: &str) -> String {
        let reply = self.send(format!("{line}\r\n").as_bytes());
        let last = reply.trim_end().rsplit("\r\n").next().unwrap_or("");
        assert!(last.starts_with(expect), "{line:?}: expected {expect:?}, got {reply:?}");
        reply
    }

    pub fn ehlo(&mut self, name: &str, expect: &str) -> String {
        self.cmd(&format!("EHLO {name}"), expect)
    }

    pub fn mail_from(&mut self, path: &str, expect: &str) -> String {
        self.cmd(&format!("MAIL FROM:<{path}>"), expect)
    }

    pub fn rcpt_to(&mut self, path: &str, expect: &str) -> String {
        self.cmd(&format!("RCPT TO:<{path}>"), expect)
    }

    /// DATA (expecting 354), then `body` dot-stuffed; asserts the reply to
    /// the final dot starts with `expect`.
    pub fn data(&mut self, body: &[u8], expect: &str) -> String {
        self.cmd("DATA", "354");
        let mut wire = Vec::new();
        dot_stuff(body, &mut wire);
        self.message(&wire, expect)
    }

    /// Sends raw DATA bytes (already terminated); asserts the reply.
    pub fn message(&mut self, wire: &[u8], expect: &str) -> String {
        let reply = self.send(wire);
        assert!(reply.starts_with(expect), "expected {expect:?}, got {reply:?}");
        reply
    }

    /// EHLO, MAIL FROM and one RCPT, all accepted.
    pub fn transaction(&mut self) {
        self.ehlo("client.test", "250 ");
        self.mail_from("sender@relay.test", "250 2.1.0");
        self.rcpt_to("jane@example.test", "250 2.1.5");
    }

    /// Brings a fresh session into a named state.
    pub fn in_state(state: &str) -> Session {
        let mut s = Session::new();
        match state {
            "fresh" => {}
            "greeted" => {
                s.ehlo("client.test", "250 ");
            }
            "mail" => {
                s.ehlo("client.test", "250 ");
                s.mail_from("sender@relay.test", "250");
            }
            "rcpt" => s.transaction(),
            "tls" => {
                s.cmd("STARTTLS", "220 2.0.0");
            }
            _ => panic!("no state {state}"),
        }
        s
    }

    /// The last address the policy was asked about.
    pub fn last_checked(&self) -> Option<Address> {
        self.checked.borrow().last().cloned()
    }
}
