//! How a client session is set up: our name, the TLS policy, and whether
//! the connection is already encrypted (implicit TLS).
//!
//! Certificate checking is not here: under [`TlsPolicy::Verify`] the driver
//! configures its TLS handshake to check the chain and the name. To the
//! state machine `Required` and `Verify` are the same: no mail without TLS.

use thiserror::Error;

/// When to use STARTTLS (`relay.tls`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsPolicy {
    /// Never STARTTLS, even when offered (`tls_policy` level `none`).
    Disabled,
    /// Use STARTTLS when the server offers it; otherwise, or when the
    /// server refuses it with a 4xx/5xx, carry on in plain text.
    Opportunistic,
    /// No mail in plain text: no STARTTLS offered or STARTTLS refused is a
    /// temporary connection failure. Any certificate is accepted.
    Required,
    /// Like `Required`, and the driver checks the certificate and name.
    Verify,
}

/// Settings of one client session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// Sent in EHLO/HELO: our hostname (or an address literal). Printable
    /// ASCII without spaces, at most 255 bytes.
    pub helo_name: String,
    /// When to insist on TLS.
    pub tls: TlsPolicy,
    /// The connection is TLS from the start (port 465, RFC 8314): never
    /// send STARTTLS, and the policy is already met.
    pub tls_active_at_start: bool,
}

/// A [`ClientConfig`] that would make the client send something invalid.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ConfigError {
    /// Empty, too long, or with a space or control character (which would
    /// break or inject a command line).
    #[error("helo_name {name:?} is not a hostname or address literal")]
    BadHeloName { name: String },
}

impl ClientConfig {
    /// Checks what would otherwise end up malformed on the wire.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let name = &self.helo_name;
        let ok = !name.is_empty() && name.len() <= 255 && name.bytes().all(|b| b.is_ascii_graphic());
        match ok {
            true => Ok(()),
            false => Err(ConfigError::BadHeloName { name: name.clone() }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_name(name: &str) -> ClientConfig {
        ClientConfig { helo_name: name.into(), tls: TlsPolicy::Opportunistic, tls_active_at_start: false }
    }

    #[test]
    fn hostnames_and_literals_are_valid_helo_names() {
        for name in ["relay.example.test", "[192.0.2.1]", "[IPv6:2001:db8::1]"] {
            assert_eq!(with_name(name).validate(), Ok(()), "{name}");
        }
    }

    #[test]
    fn helo_name_that_would_inject_a_command_is_refused() {
        for name in ["", "a b", "x\r\nRSET", "caf\u{e9}.test", &"a".repeat(256)] {
            assert!(with_name(name).validate().is_err(), "{name:?}");
        }
    }
}
