use super::*;
use crate::outbound::shaping::Backoff;

fn limits(max_connections: usize, rate: Option<(u32, u64)>, backoff: Vec<(&str, BackoffAction, u64)>) -> SiteLimits {
    SiteLimits {
        site: "example.net".into(),
        rule: None,
        max_connections,
        max_message_rate: rate.map(|(count, secs)| Rate { count, per: Duration::from_secs(secs) }),
        max_deliveries_per_connection: 100,
        connection_rate: None,
        retry: None,
        backoff: backoff
            .into_iter()
            .map(|(m, action, secs)| Backoff {
                pattern: regex::RegexBuilder::new(m).case_insensitive(true).build().unwrap(),
                source: m.into(),
                action,
                duration: Duration::from_secs(secs),
            })
            .collect(),
    }
}

fn site() -> Arc<str> {
    Arc::from("example.net")
}

const ONE: &[(Option<IpAddr>, u32)] = &[(None, 1)];

#[test]
fn connections_are_capped_per_source_and_freed_by_drop() {
    let sites = Arc::new(Sites::default());
    let l = limits(2, None, vec![]);
    let a = sites.connect(&l, &site(), ONE, 0.0, 0).unwrap();
    let _b = sites.connect(&l, &site(), ONE, 0.0, 0).unwrap();
    assert_eq!(sites.connect(&l, &site(), ONE, 0.0, 0).err(), Some(Refused::Busy));
    drop(a);
    assert!(sites.connect(&l, &site(), ONE, 0.0, 0).is_ok());
}

#[test]
fn a_full_source_hands_over_to_the_next_and_weights_pick_the_first() {
    let sites = Arc::new(Sites::default());
    let l = limits(1, None, vec![]);
    let two: &[(Option<IpAddr>, u32)] = &[(Some([127, 0, 0, 2].into()), 1), (Some([127, 0, 0, 3].into()), 3)];
    // 0.3 of a total weight of 4 falls in the second source's share.
    let first = sites.connect(&l, &site(), two, 0.3, 0).unwrap();
    assert_eq!(first.source_index, 1);
    let second = sites.connect(&l, &site(), two, 0.3, 0).unwrap();
    assert_eq!(second.source_index, 0, "the full source passes its turn on");
    assert_eq!(sites.connect(&l, &site(), two, 0.3, 0).err(), Some(Refused::Busy));
}

#[test]
fn the_message_rate_spaces_messages_evenly() {
    let sites = Arc::new(Sites::default());
    let l = limits(5, Some((10, 1)), vec![]);
    let p = sites.connect(&l, &site(), ONE, 0.0, 1_000).unwrap();
    assert!(p.take_message(&l, 1_000).is_ok());
    assert_eq!(p.take_message(&l, 1_050), Err(Refused::Paced { until_ms: 1_100 }));
    assert!(p.take_message(&l, 1_100).is_ok());
    assert!(!p.suspended(1_100), "pacing is not a suspension");
    // Over any window no more than the rate goes: 10 per second.
    let mut sent = 0;
    for ms in 2_000..3_000 {
        if p.take_message(&l, ms).is_ok() {
            sent += 1;
        }
    }
    assert!(sent <= 10, "{sent} messages in one second at 10/s");
}

#[test]
fn a_suspend_rule_stops_connections_and_messages_until_it_ends() {
    let sites = Arc::new(Sites::default());
    let l = limits(5, None, vec![("4\\.7\\.0|rate limit", BackoffAction::Suspend, 60)]);
    let p = sites.connect(&l, &site(), ONE, 0.0, 0).unwrap();
    assert_eq!(p.replied(&l, "250 2.0.0 ok", Some(Sent::Delivered), 10), None);
    let got = p.replied(&l, "421 4.7.0 Rate LIMITED, try later", Some(Sent::Deferred), 1_000);
    assert_eq!(got, Some((BackoffAction::Suspend, Duration::from_secs(60))));
    assert_eq!(p.take_message(&l, 2_000), Err(Refused::Suspended { until_ms: 61_000 }));
    assert_eq!(sites.connect(&l, &site(), ONE, 0.0, 2_000).err(), Some(Refused::Suspended { until_ms: 61_000 }));
    assert!(sites.connect(&l, &site(), ONE, 0.0, 61_000).is_ok());
    let rows = sites.rows(2_000);
    assert_eq!(rows[0].suspended_until_ms, 61_000);
    assert_eq!(rows[0].last_reply, "421 4.7.0 Rate LIMITED, try later");
    assert_eq!((rows[0].delivered, rows[0].deferred), (1, 1));
}

#[test]
fn halving_the_rate_recovers_a_step_per_clean_minute() {
    let sites = Arc::new(Sites::default());
    let l = limits(5, Some((600, 60)), vec![("451 4.7.650", BackoffAction::HalveRate, 0)]);
    let p = sites.connect(&l, &site(), ONE, 0.0, 0).unwrap();
    p.replied(&l, "451 4.7.650 IP reputation", Some(Sent::Deferred), 0);
    let rate = |now| sites.rows(now)[0].rate.unwrap();
    assert!((rate(0) - 5.0).abs() < 1e-9, "10/s halved is 5/s, got {}", rate(0));
    // Half a minute later: still halved. One clean minute: +1/s (a tenth of 10/s).
    assert!(p.take_message(&l, 30_000).is_ok());
    assert!((rate(30_000) - 5.0).abs() < 1e-9);
    assert!(p.take_message(&l, 60_000).is_ok());
    assert!((rate(60_000) - 6.0).abs() < 1e-9, "got {}", rate(60_000));
    // Five more clean minutes: back at the configured rate.
    assert!(p.take_message(&l, 360_000).is_ok());
    assert!((rate(360_000) - 10.0).abs() < 1e-9, "got {}", rate(360_000));
}

#[test]
fn halving_without_a_configured_rate_starts_from_the_measured_one() {
    let sites = Arc::new(Sites::default());
    let l = limits(5, None, vec![("rate", BackoffAction::HalveRate, 0)]);
    let p = sites.connect(&l, &site(), ONE, 0.0, 0).unwrap();
    for ms in 0..120 {
        p.replied(&l, "250 ok", Some(Sent::Delivered), ms * 500);
    }
    p.replied(&l, "421 rate", Some(Sent::Deferred), 60_000);
    let r = sites.rows(60_000)[0].rate.expect("limited after halving");
    assert!(r > 0.5 && r < 2.0, "about half of 2/s measured, got {r}");
}
