//! Whether DANE is on for this process (`relay.dane`, decided once at
//! start-up), and what DANE finds for one target.
//!
//! `"auto"` asks `dns_server` for the SOA of `relay.dnssec_probe` (with the
//! AD and DO bits) from a thread of its own, so neither start-up nor any
//! executor waits on it; DANE is on if and only if the answer carries AD.
//! Until the probe has answered (at most [`PROBE_WAIT`]), a delivery that
//! needs to know waits for it, polling; nothing else does. `true` is on at
//! once (the probe only warns); `false` never probes. The decision is
//! logged once: `dane=on|off reason=...`.
//!
//! The TLSA base domain is the MX host name as the MX record gives it: a
//! CNAME at the MX host's *address* is not expanded first (RFC 7672
//! §2.2.2 would try the expanded name, then this one), so a server that
//! publishes TLSA records only at the CNAME target is treated as having
//! none (opportunistic TLS). A CNAME at the TLSA name itself is followed
//! by the recursive resolver.

use super::dns::{self, Resolver, TlsaAnswer};
use super::mx::Target;
use super::tls_policy::{self, DaneStatus};
use super::Outbound;
use crate::config::{DaneSetting, Relay};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How long each probe try waits for its answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// A bound on how long the probe can take ([`dns::ATTEMPTS`] tries).
pub const PROBE_WAIT: Duration = Duration::from_secs(2 * dns::ATTEMPTS as u64);
/// How often a delivery waiting for the probe looks again.
const POLL: Duration = Duration::from_millis(20);

const PENDING: u8 = 0;
const ON: u8 = 1;
const OFF: u8 = 2;

/// DANE on or off, for every core of the process. Shared (`Arc`); written
/// once, by the probe thread or at creation.
#[derive(Debug)]
pub struct DaneSwitch {
    state: AtomicU8,
}

impl DaneSwitch {
    /// A switch in the state `relay.dane` says, with the probe started on
    /// a thread of its own when the setting needs or wants it. Logs the
    /// decision (from that thread, for "auto").
    pub fn start(setting: DaneSetting, probe_name: &str, server: SocketAddr) -> Arc<DaneSwitch> {
        let initial = match setting {
            DaneSetting::Auto => PENDING,
            DaneSetting::On => ON,
            DaneSetting::Off => OFF,
        };
        let switch = Arc::new(DaneSwitch { state: AtomicU8::new(initial) });
        match setting {
            DaneSetting::Off => {
                tracing::info!(dane = %"off", reason = %"relay.dane = false", "DANE is off");
                return switch;
            }
            DaneSetting::On => tracing::info!(dane = %"on", reason = %"relay.dane = true", "DANE is on"),
            DaneSetting::Auto => {}
        }
        let (name, probe) = (probe_name.to_string(), switch.clone());
        let spawned = std::thread::Builder::new()
            .name("ringmail-dnssec-probe".to_string())
            .spawn(move || probe.settle(setting, &name, dns::probe_ad(server, &name, PROBE_TIMEOUT)));
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start the DNSSEC probe thread");
            switch.settle(setting, probe_name, Err(e.to_string()));
        }
        switch
    }

    /// Records (and logs) what the probe found.
    fn settle<E: std::fmt::Display>(&self, setting: DaneSetting, name: &str, probe: Result<bool, E>) {
        let why = match &probe {
            Ok(true) => format!("dns_server sets AD on {name}"),
            Ok(false) => format!("dns_server does not set AD on {name}: not a validating resolver"),
            Err(e) => format!("DNSSEC probe of {name} failed: {e}"),
        };
        match (setting, probe) {
            (DaneSetting::Auto, Ok(true)) => {
                self.state.store(ON, Ordering::Release);
                tracing::info!(dane = %"on", reason = %why, "DANE is on (relay.dane = \"auto\")");
            }
            (DaneSetting::Auto, _) => {
                self.state.store(OFF, Ordering::Release);
                tracing::info!(dane = %"off", reason = %why, "DANE is off (relay.dane = \"auto\")");
            }
            (DaneSetting::On, Ok(true)) => {}
            (DaneSetting::On, _) => {
                tracing::warn!(dane = %"on", reason = %why, "relay.dane = true, but the resolver does not validate: MX hosts will all look insecure and DANE will never apply (see README, DANE)");
            }
            (DaneSetting::Off, _) => {}
        }
    }

    /// Whether DANE is on; waits (polling, at most about [`PROBE_WAIT`])
    /// while the start-up probe has not answered yet.
    pub async fn is_on(&self) -> bool {
        let mut waited = Duration::ZERO;
        loop {
            match self.state.load(Ordering::Acquire) {
                ON => return true,
                OFF => return false,
                _ if waited > PROBE_WAIT + PROBE_TIMEOUT => return false,
                _ => {
                    glommio::timer::sleep(POLL).await;
                    waited += POLL;
                }
            }
        }
    }
}

/// What a TLSA lookup means for DANE (RFC 7672 §2.2).
pub fn status(host: &str, answer: Result<TlsaAnswer, dns::DnsError>) -> DaneStatus {
    match answer {
        Ok(TlsaAnswer::Secure(records)) if records.iter().any(|r| r.is_usable()) => DaneStatus::Usable(records),
        Ok(TlsaAnswer::Secure(_) | TlsaAnswer::Insecure | TlsaAnswer::NoRecords) => DaneStatus::NoUsable,
        Err(e) => DaneStatus::Failed(format!("TLSA lookup for {host} failed: {}", e.failure)),
    }
}

/// What DANE has to say about `target` for mail to `domain`: nothing
/// unless it is on and the policy could use it ([`tls_policy::wants_tlsa`]),
/// else what the TLSA lookup found.
pub async fn lookup(
    switch: &DaneSwitch,
    resolver: &Resolver,
    relay: &Relay,
    domain: &str,
    target: &Target,
) -> DaneStatus {
    if !tls_policy::wants_tlsa(relay, domain, target) || !switch.is_on().await {
        return DaneStatus::NotApplicable;
    }
    let port = target.addr.socket_addr().map_or(super::mx::SMTP_PORT, |a| a.port());
    status(&target.host, resolver.tlsa(&target.host, port).await)
}

impl Outbound {
    /// [`lookup`] with this core's resolver.
    pub async fn dane_status(&self, relay: &Relay, domain: &str, target: &Target) -> DaneStatus {
        lookup(&self.dane, &self.resolver, relay, domain, target).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbound::dane::TlsaRecord;
    use crate::outbound::dns::{DnsError, Failure, Qtype};

    fn record(usage: u8) -> TlsaRecord {
        TlsaRecord { usage, selector: 1, mtype: 1, data: vec![1; 32] }
    }

    #[test]
    fn secure_usable_records_are_used_and_others_are_as_good_as_none() {
        let usable = vec![record(1), record(3)];
        assert_eq!(status("mx", Ok(TlsaAnswer::Secure(usable.clone()))), DaneStatus::Usable(usable));
        assert_eq!(status("mx", Ok(TlsaAnswer::Secure(vec![record(0), record(1)]))), DaneStatus::NoUsable);
        assert_eq!(status("mx", Ok(TlsaAnswer::Insecure)), DaneStatus::NoUsable);
        assert_eq!(status("mx", Ok(TlsaAnswer::NoRecords)), DaneStatus::NoUsable);
    }

    #[test]
    fn a_failed_lookup_is_a_failure_naming_the_host() {
        let e = DnsError {
            server: "127.0.0.1:53".parse().unwrap(),
            name: "_25._tcp.mx.test".into(),
            qtype: Qtype::Tlsa,
            failure: Failure::ServerFailure("Server Failure".into()),
        };
        let DaneStatus::Failed(why) = status("mx.test", Err(e)) else { panic!("not a failure") };
        assert!(why.contains("mx.test") && why.contains("Server Failure"), "{why}");
    }
}
