//! Bounce classification: every final failure of a recipient (a 5xx reply,
//! a permanent routing failure, an expiry) gets one [`BounceClass`], so that
//! logs, `ringmail trace`, DSNs and metrics speak of *why* mail failed, and
//! so that hard bounces (no such user, no such domain) can be suppressed.
//!
//! This file is the whole table, in the manner of KumoMTA's bounce
//! classifier: an ordered list of case-insensitive regexes over the reply as
//! `"{code} {enhanced code} {text}"` (multi-line replies joined by a space),
//! compiled once. The first rule that matches decides. Rules on the enhanced
//! status code come first where the code alone is unambiguous (5.1.1,
//! 5.2.2 ...); generic codes (5.7.1, 5.0.0, none at all) fall through to the
//! rules on the text, and then to a fallback by the code's subject.
//!
//! Pure: no I/O, no clock. Tested against real provider replies in
//! `tests/fixtures/bounces.txt`.

use regex::Regex;
use std::sync::LazyLock;

/// Why a recipient's mail failed for good. The label set is fixed (it is a
/// metric label, `ringmail_bounces_total{class="..."}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BounceClass {
    /// The mailbox does not exist or is disabled (5.1.1, 5.1.10, 5.2.1).
    InvalidRecipient,
    /// The destination domain does not exist or takes no mail (5.1.2,
    /// null MX, 5.4.4).
    BadDomain,
    /// The mailbox is over its quota (5.2.2).
    MailboxFull,
    /// Refused by the receiver's policy: spam verdicts, authentication
    /// (SPF/DKIM/DMARC), "policy reasons".
    PolicyBlock,
    /// Refused because of the sending IP's or domain's reputation: DNS
    /// block lists (Spamhaus ...), provider block lists, banned ranges.
    ReputationBlock,
    /// The message itself: size, malformed, attachments, content filters.
    MessageContent,
    /// An SMTP protocol error (syntax, sequence: 5.5.x).
    Protocol,
    /// Temporary failures until the queue lifetime ran out.
    TransientExpired,
    /// Anything else.
    Other,
}

impl BounceClass {
    /// Every class, in metric label order.
    pub const ALL: [BounceClass; 9] = [
        BounceClass::InvalidRecipient,
        BounceClass::BadDomain,
        BounceClass::MailboxFull,
        BounceClass::PolicyBlock,
        BounceClass::ReputationBlock,
        BounceClass::MessageContent,
        BounceClass::Protocol,
        BounceClass::TransientExpired,
        BounceClass::Other,
    ];

    /// The class's name in logs, DSNs, metrics and the fixture.
    pub fn as_str(self) -> &'static str {
        match self {
            BounceClass::InvalidRecipient => "invalid-recipient",
            BounceClass::BadDomain => "bad-domain",
            BounceClass::MailboxFull => "mailbox-full",
            BounceClass::PolicyBlock => "policy-block",
            BounceClass::ReputationBlock => "reputation-block",
            BounceClass::MessageContent => "message-content",
            BounceClass::Protocol => "protocol",
            BounceClass::TransientExpired => "transient-expired",
            BounceClass::Other => "other",
        }
    }

    /// The class named `s` (as [`as_str`](Self::as_str) writes it).
    pub fn parse(s: &str) -> Option<BounceClass> {
        BounceClass::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// Index into [`ALL`](Self::ALL).
    pub fn index(self) -> usize {
        BounceClass::ALL.iter().position(|&c| c == self).unwrap_or(BounceClass::ALL.len() - 1)
    }

    /// A hard bounce: the address itself is bad, so when a receiving
    /// server says so, later mail to it is suppressed (see
    /// `shard::suppress`; our own DNS verdicts never suppress). Policy and
    /// reputation blocks are about the sender, not the address, and never
    /// suppress it.
    pub fn is_hard(self) -> bool {
        matches!(self, BounceClass::InvalidRecipient | BounceClass::BadDomain)
    }
}

impl std::fmt::Display for BounceClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The table: first match wins. `E` marks a rule on the enhanced code
/// (which follows the three-digit reply code); the others read the text.
const RULES: &[(BounceClass, &str)] = {
    use BounceClass::*;
    &[
        // --- Unambiguous enhanced codes -------------------------------------
        (TransientExpired, r"^\d{3}[ -][45]\.4\.7\b"),
        (InvalidRecipient, r"^\d{3}[ -]5\.1\.(1|3|6|10)\b"),
        (InvalidRecipient, r"^\d{3}[ -]5\.2\.1\b"),
        (BadDomain, r"^\d{3}[ -]5\.1\.2\b"),
        (BadDomain, r"^\d{3}[ -]5\.4\.4\b"),
        (MailboxFull, r"^\d{3}[ -][45]\.2\.2\b"),
        (MessageContent, r"^\d{3}[ -]5\.(2\.3|3\.4|6\.\d+)\b"),
        // Microsoft: banned sending IP ranges and tenant-wide blocks.
        (ReputationBlock, r"^\d{3}[ -]5\.7\.(6[0-4]\d|70[58])\b"),
        // SPF / DKIM / DMARC and "policy reasons" (Gmail 5.7.26, Yahoo 5.7.9).
        (PolicyBlock, r"^\d{3}[ -]5\.7\.(9|2[3-9]|509|510|703)\b"),
        (Protocol, r"^\d{3}[ -]5\.5\.\d+\b"),
        // --- Text (generic codes like 5.7.1, 5.0.0, or none) ----------------
        (
            ReputationBlock,
            r"spamhaus|spamcop|barracuda|sorbs|blocked using|dnsbl|\brbl\b|black ?list|block ?list|banned sending ip|client host .*blocked|reputation|\[?tss0\d|\bts0\d|traffic not accepted from this ip|unusual rate of unsolicited|tenant has exceeded threshold",
        ),
        (
            BadDomain,
            r"recipient domain|domain (does not exist|not found|name not found)|host (or domain name )?not found|host unknown|unrouteable|null mx|no mx",
        ),
        (
            MailboxFull,
            r"mailbox (is )?full|over ?quota|quota exceeded|exceeded storage|insufficient storage|out of storage",
        ),
        (
            InvalidRecipient,
            r"user unknown|unknown user|addressee unknown|no such (user|mailbox|recipient)|does(n't| not) exist|doesn't have a .*account|recipient ?not ?found|invalid (recipient|mailbox)|recipient address rejected|mailbox (unavailable|not found)|account (is )?disabled",
        ),
        // Spam verdicts before content: "rejected as spam by Content Filtering"
        // is a spam block, not a broken message.
        (PolicyBlock, r"spam|unsolicited|policy|dmarc|\bspf\b|dkim|unauthenticated|authentication"),
        (MessageContent, r"content|attachment|virus|malware|too (large|big)|size limit|malformed|rfc ?5322"),
        (Protocol, r"syntax|protocol|command (not recognized|unrecognized)|bad sequence|pipelin"),
        // --- Fallback by the enhanced code's subject ------------------------
        (InvalidRecipient, r"^\d{3}[ -]5\.1\.\d+"),
        (MailboxFull, r"^\d{3}[ -]5\.2\.\d+"),
        (BadDomain, r"^\d{3}[ -]5\.4\.\d+"),
        (PolicyBlock, r"^\d{3}[ -]5\.7\.\d+"),
    ]
};

static TABLE: LazyLock<Vec<(BounceClass, Regex)>> = LazyLock::new(|| {
    RULES
        .iter()
        .map(|&(class, pattern)| {
            // The patterns are constants, checked by the tests below.
            let re = regex::RegexBuilder::new(pattern).case_insensitive(true).build().expect("valid bounce rule");
            (class, re)
        })
        .collect()
});

/// The class of a failure reply, written `"{code} {enhanced} {text}"` (as a
/// client `Reply` displays; the enhanced code may be missing). Line breaks
/// in a multi-line reply count as spaces.
pub fn classify(reply: &str) -> BounceClass {
    let joined;
    let reply = if reply.contains(['\r', '\n']) {
        joined = reply.split(['\r', '\n']).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ");
        joined.as_str()
    } else {
        reply
    };
    TABLE.iter().find(|(_, re)| re.is_match(reply)).map_or(BounceClass::Other, |(class, _)| *class)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `reply<TAB>class` lines of real replies from providers' public
    /// documentation (sources in the file's comments).
    const FIXTURE: &str = include_str!("../../tests/fixtures/bounces.txt");

    #[test]
    fn every_rule_compiles() {
        assert_eq!(TABLE.len(), RULES.len());
    }

    #[test]
    fn real_provider_replies_are_classified_as_documented() {
        let mut checked = 0;
        let mut wrong = Vec::new();
        for (n, line) in FIXTURE.lines().enumerate() {
            let line = line.trim_end();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (reply, expected) = line.rsplit_once('\t').unwrap_or_else(|| panic!("line {}: no TAB", n + 1));
            let expected = BounceClass::parse(expected.trim())
                .unwrap_or_else(|| panic!("line {}: unknown class {expected:?}", n + 1));
            let got = classify(reply);
            if got != expected {
                wrong.push(format!("line {}: {reply:?}: got {got}, expected {expected}", n + 1));
            }
            checked += 1;
        }
        assert!(checked >= 30, "the fixture holds {checked} replies, want 30+");
        assert!(wrong.is_empty(), "{} of {checked} misclassified:\n{}", wrong.len(), wrong.join("\n"));
    }

    #[test]
    fn enhanced_code_wins_over_text() {
        // The text says "policy", the code says the mailbox does not exist.
        assert_eq!(classify("550 5.1.1 rejected by policy: no such user"), BounceClass::InvalidRecipient);
        assert_eq!(classify("552 5.2.2 Message content rejected"), BounceClass::MailboxFull);
    }

    #[test]
    fn multi_line_replies_are_read_as_one() {
        let reply = "550 5.7.1 Service unavailable, Client host [192.0.2.1]\r\nblocked using Spamhaus.";
        assert_eq!(classify(reply), BounceClass::ReputationBlock);
    }

    #[test]
    fn unknown_replies_are_other() {
        assert_eq!(classify("554 Transaction failed"), BounceClass::Other);
        assert_eq!(classify(""), BounceClass::Other);
    }

    #[test]
    fn only_address_failures_are_hard() {
        let hard: Vec<_> = BounceClass::ALL.into_iter().filter(|c| c.is_hard()).collect();
        assert_eq!(hard, [BounceClass::InvalidRecipient, BounceClass::BadDomain]);
        for c in BounceClass::ALL {
            assert_eq!(BounceClass::parse(c.as_str()), Some(c));
            assert_eq!(BounceClass::ALL[c.index()], c);
        }
    }
}
