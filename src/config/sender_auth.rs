//! `[dkim]` and `[verify]`: DKIM signing of relayed mail, and the SPF,
//! DKIM, DMARC and ARC checks of mail arriving for local mailboxes (see
//! [`crate::sender_auth`]).

use super::units::Span;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// `[dkim]`: signing keys.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dkim {
    /// `[[dkim.sign]]`: one entry per (domain, selector, key). Two entries
    /// for one domain sign twice (RSA and Ed25519 side by side, RFC 8463).
    #[serde(default)]
    pub sign: Vec<DkimSign>,
}

/// One `[[dkim.sign]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DkimSign {
    /// The `d=` domain; signs mail whose From domain is this one (and its
    /// subdomains with `subdomains = true`). Lowercased at load.
    pub domain: String,
    #[serde(default)]
    pub subdomains: bool,
    /// The `s=` selector: the key is published at
    /// `SELECTOR._domainkey.DOMAIN`.
    pub selector: String,
    /// PKCS#8 or PKCS#1 PEM, RSA (1024-4096 bits) or Ed25519; relative to
    /// the config file.
    pub key: PathBuf,
    /// Header fields to sign (`h=`); default [`DEFAULT_HEADERS`].
    #[serde(default)]
    pub headers: Option<Vec<String>>,
    /// Header fields signed once more than they occur, so that none can be
    /// added; default `["from"]`.
    #[serde(default)]
    pub over_sign: Option<Vec<String>>,
    /// `x=`: the signature expires this long after `t=`; none by default.
    #[serde(default)]
    pub expire: Option<Span>,
    /// `c=`: "relaxed/relaxed" (default), "simple/simple", "relaxed/simple"
    /// or "simple/relaxed"; one word means header/simple (RFC 6376 §3.5).
    #[serde(default)]
    pub canonicalization: Option<String>,
}

/// The header fields the major signers sign by default.
pub const DEFAULT_HEADERS: &[&str] = &[
    "From",
    "Reply-To",
    "Subject",
    "Date",
    "To",
    "Cc",
    "Message-ID",
    "In-Reply-To",
    "References",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "Feedback-ID",
];

/// `[verify]`: checks of mail arriving for local mailboxes from clients
/// that are neither authenticated nor in `relay.permit_relay_from`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Verify {
    #[serde(default = "yes")]
    pub spf: bool,
    #[serde(default = "yes")]
    pub dkim: bool,
    #[serde(default = "yes")]
    pub dmarc: bool,
    #[serde(default = "yes")]
    pub arc: bool,
    /// What a DMARC fail does: tag it (the header only) or enforce the
    /// domain's policy (`p=reject`: 550 5.7.1, nothing stored).
    #[serde(default)]
    pub dmarc_policy: DmarcPolicy,
    /// The longest the checks of one message may take; what is not done
    /// by then is `temperror`.
    #[serde(default = "default_timeout")]
    pub timeout: Span,
}

impl Default for Verify {
    fn default() -> Verify {
        Verify {
            spf: true,
            dkim: true,
            dmarc: true,
            arc: true,
            dmarc_policy: DmarcPolicy::Tag,
            timeout: default_timeout(),
        }
    }
}

impl Verify {
    /// Any check at all is on.
    pub fn any(&self) -> bool {
        self.spf || self.dkim || self.dmarc || self.arc
    }
}

/// `verify.dmarc_policy`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DmarcPolicy {
    /// Record the result in Authentication-Results only.
    #[default]
    Tag,
    /// Refuse a DMARC fail under `p=reject` at the end of DATA.
    Enforce,
}

fn yes() -> bool {
    true
}

fn default_timeout() -> Span {
    Span::secs(5)
}

impl Dkim {
    /// Make key paths absolute (against the config file's directory) and
    /// domains lowercase.
    pub(super) fn resolve(&mut self, abs: impl Fn(&Path) -> PathBuf) {
        for s in &mut self.sign {
            s.key = abs(&s.key);
            s.domain = s.domain.trim_end_matches('.').to_ascii_lowercase();
        }
    }

    /// Every problem with the entries, naming the key.
    pub(super) fn problems(&self, p: &mut Vec<String>) {
        for (i, s) in self.sign.iter().enumerate() {
            let at = format!("dkim.sign[{i}] (domain {:?})", s.domain);
            if s.domain.is_empty() || !s.domain.contains('.') || s.domain.contains(|c: char| !is_name_char(c)) {
                p.push(format!("{at}: domain is not a domain name"));
            }
            if s.selector.is_empty() || s.selector.contains(|c: char| !is_name_char(c)) {
                p.push(format!("{at}: selector = {:?} is not a DNS label sequence", s.selector));
            }
            if let Some(c) = &s.canonicalization {
                if parse_canonicalization(c).is_none() {
                    p.push(format!(
                        "{at}: canonicalization = {c:?}: expected relaxed/relaxed, simple/simple, relaxed/simple or simple/relaxed"
                    ));
                }
            }
            if s.headers.as_ref().is_some_and(|h| !h.iter().any(|h| h.eq_ignore_ascii_case("from"))) {
                p.push(format!("{at}: headers must include From (RFC 6376 §5.4)"));
            }
            for h in s.headers.iter().flatten().chain(s.over_sign.iter().flatten()) {
                if h.is_empty() || h.contains(|c: char| !c.is_ascii_graphic() || c == ':') {
                    p.push(format!("{at}: {h:?} is not a header field name"));
                }
            }
        }
    }
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_'
}

/// Whether header and body canonicalization are relaxed, from a `c=`
/// style value.
pub fn parse_canonicalization(value: &str) -> Option<(bool, bool)> {
    let word = |w: &str| match w.trim().to_ascii_lowercase().as_str() {
        "relaxed" => Some(true),
        "simple" => Some(false),
        _ => None,
    };
    match value.split_once('/') {
        Some((h, b)) => Some((word(h)?, word(b)?)),
        None => Some((word(value)?, false)),
    }
}
