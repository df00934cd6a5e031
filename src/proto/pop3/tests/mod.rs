//! Session tests: whole transcripts through [`Server`], with a scripted
//! driver that answers actions the way `net/pop3_driver` would.
//!
//! Files: `authorization` (before login, USER/PASS, STLS), `sasl` (AUTH
//! PLAIN and when passwords may be sent), `transaction` (after login),
//! `closed` (after close, late driver calls), `chunking` (the chunk-size
//! sweep).

mod authorization;
mod chunking;
mod closed;
mod sasl;
mod transaction;

use std::rc::Rc;

use super::{Action, AuthOutcome, CommitOutcome, MessageInfo, Policy, Pop3Config, Server};

/// The one account the scripted driver knows.
const USER: &str = "alice";
const PASSWORD: &str = "correct horse battery";

/// alice's maildrop: (uid, stored body).
const MESSAGES: &[(&str, &[u8])] = &[
    ("uid-1", b"Subject: one\r\n\r\nfirst body\r\n"),
    ("uid-2", b"Subject: two\r\n\r\n.dotted\r\nline two\r\n.\r\nafter\r\n"),
    ("uid-3", b"Subject: three\r\n\r\nno final crlf"),
];

fn config() -> Pop3Config {
    Pop3Config {
        hostname: "pop.example.test".into(),
        stls: true,
        max_line_len: 255,
        max_auth_failures: 3,
        plaintext_auth_ok: true,
        policy: Policy::default(),
    }
}

fn listing() -> Vec<MessageInfo> {
    MESSAGES.iter().map(|(uid, body)| MessageInfo { uid: (*uid).into(), size: body.len() as u64 }).collect()
}

/// A session driven the way the real driver does it: feed bytes, resolve
/// every action at once, feed the unconsumed rest again.
struct Session {
    server: Server,
    /// Everything the client received, replies and bodies, in order.
    transcript: Vec<u8>,
    /// How much of `transcript` `send` has already returned.
    seen: usize,
    /// Every action the server asked for, in order.
    actions: Vec<Action>,
    /// Bytes fed but not yet consumed.
    pending: Vec<u8>,
    /// What Authenticate gets; `None`: check against USER/PASSWORD.
    auth: Option<AuthOutcome>,
    /// What Commit gets.
    commit: CommitOutcome,
}

impl Session {
    fn new() -> Session {
        Session::with_config(config())
    }

    fn with_config(config: Pop3Config) -> Session {
        let mut session = Session {
            server: Server::new(Rc::new(config)),
            transcript: Vec::new(),
            seen: 0,
            actions: Vec::new(),
            pending: Vec::new(),
            auth: None,
            commit: CommitOutcome::Done,
        };
        session.flush();
        session
    }

    /// Feeds raw bytes and runs the driver loop until it needs more.
    fn feed(&mut self, bytes: &[u8]) {
        self.pending.extend_from_slice(bytes);
        loop {
            let consumed = self.server.handle_input(&self.pending);
            assert!(consumed <= self.pending.len());
            self.pending.drain(..consumed);
            self.flush();
            if !self.run_actions() {
                break;
            }
        }
    }

    fn run_actions(&mut self) -> bool {
        let mut any = false;
        while let Some(action) = self.server.poll_action() {
            any = true;
            self.actions.push(action.clone());
            match action {
                Action::Authenticate { user, password } => {
                    let outcome = self.auth.clone().unwrap_or_else(|| {
                        if user == USER && password == PASSWORD {
                            AuthOutcome::LoggedIn(listing())
                        } else {
                            AuthOutcome::BadCredentials
                        }
                    });
                    self.server.auth_done(outcome);
                }
                Action::SendMessage { index, .. } => self.server.message_body(MESSAGES[index].1),
                Action::Commit { .. } => self.server.commit_done(self.commit),
                Action::StartTls => self.server.stls_done(),
            }
            self.flush();
        }
        any
    }

    fn flush(&mut self) {
        self.transcript.extend_from_slice(self.server.output());
        self.server.clear_output();
    }

    /// What the client received since the last call.
    fn received(&mut self) -> String {
        let text = String::from_utf8_lossy(&self.transcript[self.seen..]).into_owned();
        self.seen = self.transcript.len();
        text
    }

    /// Sends one command line (CRLF added) and returns what came back.
    fn send(&mut self, line: &str) -> String {
        self.feed(format!("{line}\r\n").as_bytes());
        self.received()
    }

    /// Sends one command line and checks the whole reply.
    fn expect(&mut self, line: &str, reply: &str) {
        assert_eq!(self.send(line), reply, "reply to {line:?}");
    }

    /// USER+PASS as alice, checked.
    fn login(&mut self) {
        self.expect(&format!("USER {USER}"), "+OK send PASS\r\n");
        self.expect(&format!("PASS {PASSWORD}"), "+OK Logged in.\r\n");
        assert_eq!(self.server.logged_in_user(), Some(USER));
    }

    fn logged_in() -> Session {
        let mut session = Session::new();
        session.received();
        session.login();
        session
    }
}
