//! Why a connection or a message failed, as a value: a short kind for the
//! error tally, and one readable line for the "every connection failed"
//! exit. Rejections inside a transaction are outcomes, not failures.

use crate::proto::client::{SessionError, Step};
use std::io;
use std::time::Duration;

/// A failure of a connection (its set-up or a transaction on it).
#[derive(Debug)]
pub enum Failure {
    /// TCP connect failed.
    Connect(io::Error),
    /// The TLS handshake failed (bad certificate, protocol mismatch...).
    Tls(io::Error),
    /// No reply in time; the step we waited for.
    Timeout(Option<Step>),
    /// The server closed the connection while we waited for this step.
    Closed(Option<Step>),
    /// Another socket error.
    Io(Option<Step>, io::Error),
    /// Bytes that are not SMTP.
    Protocol(String),
    /// The session could not go on (greeting/EHLO/AUTH refused, ...).
    Session(SessionError),
}

fn step_name(s: Option<Step>) -> &'static str {
    s.map_or("reply", Step::name)
}

impl Failure {
    /// Classifies a read or write error while waiting for `step`.
    pub fn io(step: Option<Step>, e: io::Error) -> Failure {
        match e.kind() {
            io::ErrorKind::TimedOut => Failure::Timeout(step),
            io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe => {
                Failure::Closed(step)
            }
            _ => Failure::Io(step, e),
        }
    }

    /// The key under which this failure is counted.
    pub fn kind(&self) -> String {
        match self {
            Failure::Connect(e) => match e.kind() {
                io::ErrorKind::ConnectionRefused => "connect refused".into(),
                io::ErrorKind::TimedOut => "connect timeout".into(),
                _ => format!("connect error: {e}"),
            },
            Failure::Tls(_) => "tls handshake failed".into(),
            Failure::Timeout(s) => format!("timeout waiting for {}", step_name(*s)),
            Failure::Closed(s) => format!("closed by server during {}", step_name(*s)),
            Failure::Io(s, e) => format!("io error ({}) during {}", e.kind(), step_name(*s)),
            Failure::Protocol(_) => "protocol error".into(),
            Failure::Session(SessionError::Refused { step, reply }) => {
                format!("{} refused {}", step.name(), reply.get(..3).unwrap_or(reply))
            }
            Failure::Session(SessionError::StartTlsNotOffered) => "starttls not offered".into(),
            Failure::Session(SessionError::AuthNotOffered) => "auth not offered".into(),
            Failure::Session(_) => "protocol error".into(),
        }
    }

    /// One line for a human, naming the target.
    pub fn describe(&self, target: &str, timeout: Duration) -> String {
        let t = humanize(timeout);
        match self {
            Failure::Connect(e) if e.kind() == io::ErrorKind::TimedOut => {
                format!("cannot connect to {target}: no answer within {t}")
            }
            Failure::Connect(e) => format!("cannot connect to {target}: {e}"),
            Failure::Tls(e) => format!("TLS handshake with {target} failed: {e}"),
            Failure::Timeout(Some(Step::Greeting)) => {
                format!("{target} accepted the connection but sent no greeting within {t}")
            }
            Failure::Timeout(s) => format!("{target} did not answer {} within {t}", step_name(*s)),
            Failure::Closed(s) => {
                format!("{target} closed the connection while we waited for the {} reply", step_name(*s))
            }
            Failure::Io(s, e) => format!("connection to {target} failed during {}: {e}", step_name(*s)),
            Failure::Protocol(p) => format!("{target} does not speak SMTP as expected: {p}"),
            Failure::Session(SessionError::Refused { step: Step::Auth, reply }) => {
                format!("{target} rejected our credentials: {reply}")
            }
            Failure::Session(e) => format!("{target}: {e}"),
        }
    }
}

/// `30s`, `1.5s`, `250ms`.
pub fn humanize(d: Duration) -> String {
    if d.as_millis() < 1000 {
        format!("{}ms", d.as_millis())
    } else if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_name_the_fact() {
        let refused = Failure::Connect(io::Error::from(io::ErrorKind::ConnectionRefused));
        assert_eq!(refused.kind(), "connect refused");
        assert_eq!(Failure::Timeout(Some(Step::Greeting)).kind(), "timeout waiting for greeting");
        let auth = Failure::Session(SessionError::Refused { step: Step::Auth, reply: "535 no".into() });
        assert_eq!(auth.kind(), "auth refused 535");
        assert!(auth.describe("127.0.0.1:25", Duration::from_secs(1)).contains("rejected our credentials"));
    }

    #[test]
    fn eof_counts_as_closed() {
        let f = Failure::io(Some(Step::Mail), io::Error::from(io::ErrorKind::UnexpectedEof));
        assert_eq!(f.kind(), "closed by server during mail");
    }

    #[test]
    fn greeting_timeout_is_explained() {
        let line = Failure::Timeout(Some(Step::Greeting)).describe("127.0.0.1:2525", Duration::from_millis(1500));
        assert_eq!(line, "127.0.0.1:2525 accepted the connection but sent no greeting within 1.5s");
    }
}
