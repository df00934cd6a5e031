//! Client screening on port 25 (issue 18 items 2-4): DNS blocklists and
//! allowlists, forward-confirmed reverse DNS, HELO checks and
//! greylisting, decided at RCPT for clients that are neither
//! authenticated nor in `relay.permit_relay_from`, and never on the
//! submission ports.
//!
//! Owns: the postscreen list syntax ([`site`]), the lookups ([`lookup`],
//! started at connect time), the per-session decisions, log lines,
//! counters and header lines ([`session`]), the HELO check ([`helo`]) and
//! the greylist table and file ([`greylist`]). Must not: speak SMTP (the
//! session asks [`crate::proto::smtp::RecipientPolicy::screen`] and picks
//! the reply) or decide recipients.
//!
//! Order of the checks for one recipient: a DNSWL listing passes it
//! outright; then the DNSBL score, FCrDNS, HELO, greylisting, each
//! refusing (or tagging) as configured.

pub mod greylist;
pub mod helo;
pub mod lookup;
pub mod session;
pub mod site;

use crate::config::{CheckAction, Config};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// What every core shares: the lists disabled after refusing us, and the
/// greylist.
#[derive(Debug, Default)]
pub struct Shared {
    pub disabled: Arc<lookup::Disabled>,
    /// Open when `filter.greylist` was on at start.
    pub greylist: Option<greylist::Store>,
    /// The "turned on by a reload" warning was given.
    pub greylist_warned: AtomicBool,
}

impl Shared {
    /// Open the greylist file (`data_dir/greylist`) if greylisting is on.
    /// Blocking: call at start-up.
    pub fn open(config: &Config) -> Result<Shared, greylist::StoreError> {
        let greylist = match config.filter.greylist {
            true => Some(greylist::Store::open(&config.data_dir.join("greylist"))?),
            false => None,
        };
        Ok(Shared { greylist, ..Shared::default() })
    }
}

/// The lookups the config asks for, or `None` when there is none to make.
pub fn plan(config: &Config) -> Option<lookup::Plan> {
    let f = &config.filter;
    // check-config refused bad entries; one that slips by is left out.
    let sites = |entries: &[String]| entries.iter().filter_map(|e| site::Site::parse(e).ok()).collect::<Vec<_>>();
    let plan = lookup::Plan {
        dnsbl: sites(&f.dnsbl),
        dnswl: sites(&f.dnswl),
        reverse_dns: f.reverse_dns != CheckAction::Ignore,
    };
    (!plan.dnsbl.is_empty() || !plan.dnswl.is_empty() || plan.reverse_dns).then_some(plan)
}

/// Whether a client is screened at all: unauthenticated (decided per
/// recipient), outside `permit_relay_from`, not on a submission port.
pub fn applies(relay_permitted: bool, submission: bool) -> bool {
    !relay_permitted && !submission
}

/// Does `buf` (buffered client input, starting at a line start) hold a
/// MAIL or RCPT command line? The driver awaits the lookups before it
/// feeds such input, so that every RCPT is decided with them. A line not
/// yet complete stays in the buffer and is seen again, whole.
pub fn wants_findings(buf: &[u8]) -> bool {
    let starts = std::iter::once(0).chain(buf.iter().enumerate().filter(|(_, b)| **b == b'\n').map(|(i, _)| i + 1));
    starts.into_iter().any(|i| {
        buf.get(i..i + 4).is_some_and(|verb| verb.eq_ignore_ascii_case(b"MAIL") || verb.eq_ignore_ascii_case(b"RCPT"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mail_or_rcpt_anywhere_at_a_line_start_wants_the_findings() {
        assert!(!wants_findings(b"EHLO x\r\n"));
        assert!(wants_findings(b"EHLO x\r\nmail FROM:<a@b>\r\n"));
        assert!(wants_findings(b"RCPT"));
        assert!(!wants_findings(b"EHLO MAIL\r\nNOOP\r\n"));
        assert!(!wants_findings(b"MAI"), "incomplete: seen again when complete");
    }
}
