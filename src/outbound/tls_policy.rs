//! Which TLS a delivery to one host requires, and why; and what a session
//! that met it is called in the logs (`tls=`).
//!
//! The decision is per target (an MX host's address), made before the
//! connection is opened, in this order (the first that applies wins; README
//! "Outbound TLS policy" documents it for operators):
//! 1. a `[relay.tls_policy]` entry for the destination domain;
//! 2. DANE (RFC 7672): TLSA records of a DNSSEC-secure MX host;
//! 3. MTA-STS (RFC 8461): the domain's policy in `enforce` mode: only MX
//!    hosts it lists, each PKIX-verified for its name (others are skipped;
//!    `testing` mode changes nothing here, see [`sts_testing_refusal`]);
//! 4. `relay.tls`, the default (opportunistic = may, required = encrypt,
//!    verify = verify).
//!
//! REQUIRETLS (RFC 8689) is per message, not per host: a message that asks
//! for it goes only over a session whose certificate was verified (DANE or
//! PKIX) to a server that offers REQUIRETLS (see `dispatch`), whatever
//! the connection's policy.
//!
//! DANE in step 2 (RFC 7672 §2.2): with DANE on, for an MX host whose MX
//! and address answers were secure ([`Origin::Mx`] `{ secure: true }`),
//! a secure TLSA RRset with a usable record makes TLS mandatory and the
//! certificate must match ([`Check::Dane`]); a secure RRset with none
//! usable, an insecure answer or a secure denial go on to step 3, which is
//! opportunistic TLS under the default `relay.tls`; a failed TLSA lookup
//! (SERVFAIL, what a validating resolver answers for bogus data) means the
//! host is not used at all ([`Skip`]), never plain text instead.
//!
//! Pure: [`decide`] takes what the lookups found ([`DaneStatus`]); the
//! lookups themselves are the resolver's and the policy caches'.

use super::dane::{DaneCheck, TlsaParams, TlsaRecord};
use super::mta_sts::policy::Mode as StsMode;
use super::mta_sts::StsPolicy;
use super::mx::{normalize, Endpoint, Origin, Target};
use super::tls::RelayTls;
use crate::config::{Relay, TlsLevel};
use crate::proto::smtp_client::TlsPolicy;
use rustls::ClientConfig;
use std::fmt;
use std::sync::{Arc, OnceLock};

/// How the server's certificate is checked once STARTTLS is done.
#[derive(Clone)]
pub enum Check {
    /// Not at all (opportunistic and `encrypt`): a session that refused
    /// a bad certificate would fall back to plain text or wait, and gain
    /// nothing against an attacker who can strip STARTTLS.
    Any,
    /// A PKIX chain to a trusted root that names the MX host.
    Pkix,
    /// The chain must match one of the host's DNSSEC-validated TLSA
    /// records (see `dane`).
    Dane(DaneCheck),
}

/// What DANE found for one target, the input of [`decide`]'s step 2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DaneStatus {
    /// Not looked up: DANE off, not an MX host, the MX or address answer
    /// insecure, or a policy entry that makes DANE moot.
    NotApplicable,
    /// A secure TLSA RRset with at least one usable record (all the
    /// records, usable or not).
    Usable(Vec<TlsaRecord>),
    /// A secure TLSA RRset without a usable record (RFC 7672 §3.1.3), an
    /// insecure TLSA answer, or a secure denial: as if there were none.
    NoUsable,
    /// The TLSA lookup failed (SERVFAIL, timeout): the host must not be
    /// used (RFC 7672 §2.2), why.
    Failed(String),
}

/// Why a target's TLS requirement is what it is (the log's `tls_basis=`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Basis {
    /// A `[relay.tls_policy]` entry for the domain.
    Entry(TlsLevel),
    /// `relay.tls`.
    Default(TlsLevel),
    /// A route, fallback relay or LMTP store: the operator's own hop,
    /// under `relay.tls` (DANE and MTA-STS name MX hosts only).
    Configured(TlsLevel),
    /// The domain's MTA-STS policy, by its TXT id and mode.
    Sts { id: String, mode: StsMode },
    /// DNSSEC-validated TLSA records (by DANE, or by a `dane-only` entry).
    Dane(DaneBasis),
}

/// The TLSA records a DANE session is checked against: `dane:3 1 1`, the
/// record that matched once the handshake is done, else the usable ones.
#[derive(Debug, Clone)]
pub struct DaneBasis {
    usable: Vec<TlsaParams>,
    matched: Arc<OnceLock<TlsaParams>>,
}

impl PartialEq for DaneBasis {
    fn eq(&self, other: &DaneBasis) -> bool {
        self.usable == other.usable && self.matched.get() == other.matched.get()
    }
}

impl Eq for DaneBasis {}

impl fmt::Display for Basis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Basis::Entry(level) => write!(f, "tls_policy:{}", level.as_str()),
            Basis::Default(level) => write!(f, "relay.tls:{}", level.as_str()),
            Basis::Configured(level) => write!(f, "route:{}", level.as_str()),
            Basis::Sts { id, mode } => write!(f, "mta-sts:{mode} id={id}"),
            Basis::Dane(DaneBasis { usable, matched }) => match matched.get() {
                Some(params) => write!(f, "dane:{params}"),
                None => {
                    let all: Vec<String> = usable.iter().map(ToString::to_string).collect();
                    write!(f, "dane:{}", all.join(","))
                }
            },
        }
    }
}

/// What one delivery's session must be.
#[derive(Clone)]
pub struct TargetTls {
    /// What the SMTP client does about STARTTLS.
    pub starttls: TlsPolicy,
    /// How the certificate is checked.
    pub check: Check,
    /// Why.
    pub basis: Basis,
}

/// What a session turned out to be, as logs and metrics name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TlsResult {
    /// The certificate matched a DNSSEC-validated TLSA record.
    DaneVerified,
    /// PKIX-verified, to an MX host an MTA-STS policy in `enforce` mode
    /// lists.
    StsEnforced,
    /// PKIX-verified because a policy (`verify`) said so.
    Verified,
    /// TLS was required, the certificate was not checked (`encrypt`).
    Encrypted,
    /// TLS because the server offered it; the certificate not checked.
    Opportunistic,
    /// Plain text.
    None,
}

impl TlsResult {
    /// Every result, in the order metrics list them.
    pub const ALL: [TlsResult; 6] = [
        TlsResult::DaneVerified,
        TlsResult::StsEnforced,
        TlsResult::Verified,
        TlsResult::Encrypted,
        TlsResult::Opportunistic,
        TlsResult::None,
    ];

    /// The `tls=` word.
    pub fn as_str(self) -> &'static str {
        match self {
            TlsResult::DaneVerified => "dane-verified",
            TlsResult::StsEnforced => "sts-enforced",
            TlsResult::Verified => "verified",
            TlsResult::Encrypted => "encrypted",
            TlsResult::Opportunistic => "opportunistic",
            TlsResult::None => "none",
        }
    }

    /// Whether the server's certificate was verified (DANE or PKIX): what
    /// REQUIRETLS asks of every hop.
    pub fn is_verified(self) -> bool {
        matches!(self, TlsResult::DaneVerified | TlsResult::StsEnforced | TlsResult::Verified)
    }
}

impl fmt::Display for TlsResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A target that must not be used under the policy that applies (for
/// example `dane-only` without usable TLSA records): tried no further,
/// and when no target is left the mail is deferred with 4.7.5.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct Skip {
    pub reason: String,
}

impl TargetTls {
    /// The requirement of a policy level.
    pub fn from_level(level: TlsLevel, basis: Basis) -> Result<TargetTls, Skip> {
        let (starttls, check) = match level {
            TlsLevel::None => (TlsPolicy::Disabled, Check::Any),
            TlsLevel::May => (TlsPolicy::Opportunistic, Check::Any),
            TlsLevel::Encrypt => (TlsPolicy::Required, Check::Any),
            TlsLevel::Verify => (TlsPolicy::Verify, Check::Pkix),
            TlsLevel::DaneOnly => {
                return Err(Skip { reason: format!("{basis} and no usable DNSSEC-validated TLSA records") })
            }
        };
        Ok(TargetTls { starttls, check, basis })
    }

    /// DANE: STARTTLS mandatory (the state machine's `Verify`), the chain
    /// checked against `records` (at least one of them usable).
    pub fn dane(records: &[TlsaRecord]) -> TargetTls {
        let check = DaneCheck::new(records);
        let basis = Basis::Dane(DaneBasis { usable: check.verifier.params(), matched: check.verifier.matched() });
        TargetTls { starttls: TlsPolicy::Verify, check: Check::Dane(check), basis }
    }

    /// The rustls config that checks the certificate as required.
    pub fn client_config(&self, tls: &RelayTls) -> Arc<ClientConfig> {
        match &self.check {
            Check::Any => tls.any.clone(),
            Check::Pkix => tls.verified.clone(),
            Check::Dane(check) => check.config.clone(),
        }
    }

    /// Why the server's certificate matched none of the TLSA records,
    /// after a session under DANE failed for that reason.
    pub fn dane_mismatch(&self) -> Option<&str> {
        match &self.check {
            Check::Dane(check) => check.verifier.mismatch(),
            Check::Any | Check::Pkix => None,
        }
    }

    /// What a session under this requirement is, given whether it is
    /// encrypted.
    pub fn result(&self, encrypted: bool) -> TlsResult {
        match (encrypted, &self.check, self.starttls) {
            (false, _, _) => TlsResult::None,
            (true, Check::Pkix, _) if matches!(self.basis, Basis::Sts { mode: StsMode::Enforce, .. }) => {
                TlsResult::StsEnforced
            }
            (true, Check::Dane(_), _) => TlsResult::DaneVerified,
            (true, Check::Pkix, _) => TlsResult::Verified,
            (true, Check::Any, TlsPolicy::Required | TlsPolicy::Verify) => TlsResult::Encrypted,
            (true, Check::Any, TlsPolicy::Opportunistic | TlsPolicy::Disabled) => TlsResult::Opportunistic,
        }
    }
}

/// Whether [`decide`] could use TLSA records for `target` (so whether to
/// look them up, when DANE is on): an SMTP MX host from secure answers,
/// for a domain without a `[relay.tls_policy]` entry or with `dane-only`.
pub fn wants_tlsa(relay: &Relay, domain: &str, target: &Target) -> bool {
    let secure_mx = matches!(target.addr, Endpoint::Smtp(_)) && target.origin == Origin::Mx { secure: true };
    secure_mx && matches!(relay.tls_policy.get(&normalize(domain)), None | Some(TlsLevel::DaneOnly))
}

/// The TLS requirement for delivering mail for `domain` to `target`, in
/// the module's order of precedence: `dane` is what the TLSA lookup found
/// ([`DaneStatus::NotApplicable`] when [`wants_tlsa`] said not to look),
/// `sts` the domain's MTA-STS policy in force, if any.
pub fn decide(
    relay: &Relay,
    domain: &str,
    target: &Target,
    dane: &DaneStatus,
    sts: Option<&StsPolicy>,
) -> Result<TargetTls, Skip> {
    let default = TlsLevel::from(relay.tls);
    if let Endpoint::LmtpTcp(_) | Endpoint::LmtpUnix(_) = target.addr {
        // LMTP goes to the operator's own store and never uses TLS.
        return TargetTls::from_level(TlsLevel::None, Basis::Configured(TlsLevel::None));
    }
    if let Some(level) = relay.tls_policy.get(&normalize(domain)) {
        return match (level, dane) {
            (TlsLevel::DaneOnly, DaneStatus::Usable(records)) => Ok(TargetTls::dane(records)),
            _ => TargetTls::from_level(*level, Basis::Entry(*level)),
        };
    }
    match (target.origin, dane) {
        (Origin::Configured, _) => TargetTls::from_level(default, Basis::Configured(default)),
        (Origin::Mx { .. }, DaneStatus::Usable(records)) => Ok(TargetTls::dane(records)),
        (Origin::Mx { .. }, DaneStatus::Failed(reason)) => Err(Skip { reason: format!("DANE: {reason}") }),
        (Origin::Mx { .. }, DaneStatus::NotApplicable | DaneStatus::NoUsable) => {
            if let Some(p) = sts.filter(|p| p.policy.mode == StsMode::Enforce) {
                let basis = Basis::Sts { id: p.id.clone(), mode: StsMode::Enforce };
                if !p.policy.allows(&target.host) {
                    return Err(Skip { reason: format!("{basis}: MX host {} is not in the policy", target.host) });
                }
                return Ok(TargetTls { starttls: TlsPolicy::Verify, check: Check::Pkix, basis });
            }
            TargetTls::from_level(default, Basis::Default(default))
        }
    }
}

/// What a policy in `testing` mode would have refused had it been in
/// `enforce` mode, for a target whose requirement came from `relay.tls`
/// (`basis`): the log line's text, or `None`. RFC 8461 §5: testing mode
/// reports, and delivers as if there were no policy.
pub fn sts_testing_refusal(sts: Option<&StsPolicy>, target: &Target, basis: &Basis) -> Option<String> {
    let p = sts.filter(|p| p.policy.mode == StsMode::Testing)?;
    let (Origin::Mx { .. }, Basis::Default(_)) = (target.origin, basis) else { return None };
    (!p.policy.allows(&target.host))
        .then(|| format!("mta-sts testing: would refuse {}: not in the policy id={}", target.host, p.id))
}

/// The basis of sessions under `sts` when it is enforced (what a host it
/// rules out is reported under, RFC 8460), else `None`.
pub fn sts_enforcing(sts: Option<&StsPolicy>) -> Option<Basis> {
    let p = sts.filter(|p| p.policy.mode == StsMode::Enforce)?;
    Some(Basis::Sts { id: p.id.clone(), mode: StsMode::Enforce })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RelayTlsPolicy;

    const NA: DaneStatus = DaneStatus::NotApplicable;

    /// A DANE-EE record for some key (which key does not matter here).
    fn tlsa(usage: u8) -> TlsaRecord {
        TlsaRecord { usage, selector: 1, mtype: 1, data: vec![7; 32] }
    }

    fn target(origin: Origin) -> Target {
        Target { host: "mx.example.com".into(), addr: Endpoint::Smtp("127.0.0.1:25".parse().unwrap()), origin }
    }

    fn relay(entries: &[(&str, TlsLevel)]) -> Relay {
        let mut r = Relay { tls: RelayTlsPolicy::Opportunistic, ..Relay::default() };
        r.tls_policy = entries.iter().map(|(d, l)| (d.to_string(), *l)).collect();
        r
    }

    #[test]
    fn an_entry_wins_over_the_default_and_names_itself() {
        let r = relay(&[("example.com", TlsLevel::Verify)]);
        let t = decide(&r, "Example.COM.", &target(Origin::Mx { secure: false }), &NA, None).unwrap();
        assert_eq!(t.starttls, TlsPolicy::Verify);
        assert!(matches!(t.check, Check::Pkix));
        assert_eq!(t.basis.to_string(), "tls_policy:verify");
        let other = decide(&r, "example.net", &target(Origin::Mx { secure: false }), &NA, None).unwrap();
        assert_eq!(other.starttls, TlsPolicy::Opportunistic);
        assert_eq!(other.basis.to_string(), "relay.tls:may");
    }

    #[test]
    fn none_never_starts_tls_and_dane_only_without_records_skips_the_host() {
        let r = relay(&[("plain.test", TlsLevel::None), ("dane.test", TlsLevel::DaneOnly)]);
        let t = decide(&r, "plain.test", &target(Origin::Mx { secure: true }), &NA, None).unwrap();
        assert_eq!(t.starttls, TlsPolicy::Disabled);
        assert!(decide(&r, "dane.test", &target(Origin::Mx { secure: true }), &NA, None).is_err());
    }

    #[test]
    fn results_name_what_the_session_was() {
        let may = TargetTls::from_level(TlsLevel::May, Basis::Default(TlsLevel::May)).unwrap();
        assert_eq!(may.result(true), TlsResult::Opportunistic);
        assert_eq!(may.result(false), TlsResult::None);
        let encrypt = TargetTls::from_level(TlsLevel::Encrypt, Basis::Default(TlsLevel::Encrypt)).unwrap();
        assert_eq!(encrypt.result(true), TlsResult::Encrypted);
        let verify = TargetTls::from_level(TlsLevel::Verify, Basis::Default(TlsLevel::Verify)).unwrap();
        assert_eq!(verify.result(true), TlsResult::Verified);
        assert!(verify.result(true).is_verified());
        assert!(!encrypt.result(true).is_verified());
    }

    fn sts(mode: &str, mx: &str) -> StsPolicy {
        let body = format!("version: STSv1\nmode: {mode}\nmx: {mx}\nmax_age: 86400\n");
        let policy = crate::outbound::mta_sts::policy::parse_policy(body.as_bytes()).unwrap();
        StsPolicy { id: "20260101".into(), fetched_at: 0, policy, body }
    }

    #[test]
    fn sts_enforce_verifies_listed_hosts_and_skips_others() {
        let r = relay(&[]);
        let listed = sts("enforce", "*.example.com");
        let t = decide(&r, "example.com", &target(Origin::Mx { secure: false }), &NA, Some(&listed)).unwrap();
        assert_eq!(t.starttls, TlsPolicy::Verify);
        assert!(matches!(t.check, Check::Pkix));
        assert_eq!(t.basis.to_string(), "mta-sts:enforce id=20260101");
        assert_eq!(t.result(true), TlsResult::StsEnforced);
        assert_eq!(t.result(false), TlsResult::None);
        let other = sts("enforce", "mx.other.test");
        let Err(skip) = decide(&r, "example.com", &target(Origin::Mx { secure: false }), &NA, Some(&other)) else {
            panic!("an MX host the policy does not list is used");
        };
        assert!(skip.reason.contains("mx.example.com") && skip.reason.contains("id=20260101"), "{skip}");
    }

    #[test]
    fn sts_does_not_touch_routes_entries_or_testing_mode() {
        let r = relay(&[("example.com", TlsLevel::May)]);
        let enforce = sts("enforce", "mx.other.test");
        let t = decide(&r, "example.com", &target(Origin::Mx { secure: false }), &NA, Some(&enforce)).unwrap();
        assert_eq!(t.basis.to_string(), "tls_policy:may", "an entry wins");
        let r = relay(&[]);
        let t = decide(&r, "example.com", &target(Origin::Configured), &NA, Some(&enforce)).unwrap();
        assert_eq!(t.basis.to_string(), "route:may", "a route is the operator's own hop");
        let testing = sts("testing", "mx.other.test");
        let mx = target(Origin::Mx { secure: false });
        let t = decide(&r, "example.com", &mx, &NA, Some(&testing)).unwrap();
        assert_eq!((t.starttls, t.basis.to_string()), (TlsPolicy::Opportunistic, "relay.tls:may".to_string()));
        let note = sts_testing_refusal(Some(&testing), &mx, &t.basis).unwrap();
        assert!(note.starts_with("mta-sts testing: would refuse mx.example.com"), "{note}");
        assert_eq!(sts_testing_refusal(Some(&sts("testing", "*.example.com")), &mx, &t.basis), None);
        assert_eq!(sts_testing_refusal(Some(&enforce), &mx, &t.basis), None);
    }

    #[test]
    fn lmtp_targets_never_use_tls() {
        let r = relay(&[]);
        let lmtp = Target {
            host: "lmtp:127.0.0.1:24".into(),
            addr: Endpoint::LmtpTcp("127.0.0.1:24".parse().unwrap()),
            origin: Origin::Configured,
        };
        assert_eq!(decide(&r, "example.com", &lmtp, &NA, None).unwrap().starttls, TlsPolicy::Disabled);
    }

    #[test]
    fn usable_tlsa_records_make_tls_mandatory_and_checked_by_dane() {
        let r = relay(&[]);
        let secure = target(Origin::Mx { secure: true });
        let t = decide(&r, "example.com", &secure, &DaneStatus::Usable(vec![tlsa(0), tlsa(3)]), None).unwrap();
        assert_eq!(t.starttls, TlsPolicy::Verify);
        assert!(matches!(t.check, Check::Dane(_)));
        assert_eq!(t.basis.to_string(), "dane:3 1 1", "only the usable record is named");
        assert_eq!(t.result(true), TlsResult::DaneVerified);
        assert!(t.result(true).is_verified());
        assert_eq!(t.result(false), TlsResult::None);
        assert!(t.dane_mismatch().is_none());
    }

    #[test]
    fn no_usable_records_go_on_to_the_default_and_failed_lookups_skip_the_host() {
        let r = relay(&[]);
        let secure = target(Origin::Mx { secure: true });
        let t = decide(&r, "example.com", &secure, &DaneStatus::NoUsable, None).unwrap();
        assert_eq!((t.starttls, t.basis.to_string()), (TlsPolicy::Opportunistic, "relay.tls:may".to_string()));
        let skip = decide(&r, "example.com", &secure, &DaneStatus::Failed("SERVFAIL".into()), None).err().unwrap();
        assert!(skip.reason.contains("SERVFAIL"), "{skip}");
    }

    #[test]
    fn entries_win_over_dane_except_dane_only_which_uses_it() {
        let r = relay(&[("may.test", TlsLevel::May), ("dane.test", TlsLevel::DaneOnly)]);
        let secure = target(Origin::Mx { secure: true });
        let usable = DaneStatus::Usable(vec![tlsa(3)]);
        let may = decide(&r, "may.test", &secure, &usable, None).unwrap();
        assert_eq!(may.basis.to_string(), "tls_policy:may");
        let dane = decide(&r, "dane.test", &secure, &usable, None).unwrap();
        assert!(matches!(dane.check, Check::Dane(_)));
        assert!(decide(&r, "dane.test", &secure, &DaneStatus::NoUsable, None).is_err());
    }

    #[test]
    fn tlsa_is_wanted_only_for_secure_mx_hosts_without_an_overriding_entry() {
        let r = relay(&[("none.test", TlsLevel::None), ("dane.test", TlsLevel::DaneOnly)]);
        let secure = target(Origin::Mx { secure: true });
        assert!(wants_tlsa(&r, "example.com", &secure));
        assert!(wants_tlsa(&r, "dane.test", &secure));
        assert!(!wants_tlsa(&r, "none.test", &secure));
        assert!(!wants_tlsa(&r, "example.com", &target(Origin::Mx { secure: false })));
        assert!(!wants_tlsa(&r, "example.com", &target(Origin::Configured)));
    }
}
