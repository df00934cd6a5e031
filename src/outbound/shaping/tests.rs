use super::*;

const FALLBACK: Fallback = Fallback { max_connections: 20, max_deliveries_per_connection: 100 };

fn parse(text: &str) -> Shaping {
    Shaping::parse(text, "shaping.toml").unwrap_or_else(|e| panic!("{e}"))
}

fn hosts(list: &[&str]) -> Vec<String> {
    list.iter().map(|h| h.to_string()).collect()
}

/// The limits for `domain` whose MX hosts are `mx` (primary first).
fn via_mx(s: &Shaping, domain: &str, mx: &[&str]) -> SiteLimits {
    s.resolve(domain, Destination::Mx(&hosts(mx)), FALLBACK)
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

#[test]
fn rates_parse_in_every_unit_and_print_canonically() {
    let cases = [
        ("500/min", 500, 60, "500/min"),
        ("20/s", 20, 1, "20/s"),
        ("10000/h", 10000, 3600, "10000/h"),
        ("7/m", 7, 60, "7/min"),
        ("1/sec", 1, 1, "1/s"),
        ("2/hour", 2, 3600, "2/h"),
        ("3/d", 3, 86400, "3/d"),
        ("4/day", 4, 86400, "4/d"),
        (" 5 / MIN ", 5, 60, "5/min"),
    ];
    for (text, count, per, shown) in cases {
        let rate = Rate::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(rate, Rate { count, per: secs(per) }, "{text}");
        assert_eq!(rate.to_string(), shown, "{text}");
        assert_eq!(Rate::parse(shown), Ok(rate), "the canonical form reads back");
    }
    assert_eq!(Rate::parse("500/min").unwrap().per_second(), 500.0 / 60.0);
    assert_eq!(Rate::parse("20/s").unwrap().per_second(), 20.0);
}

#[test]
fn malformed_rates_are_refused_saying_what_was_expected() {
    for text in ["5 per minute", "500", "/min", "abc/min", "-1/s", "1.5/s", "5/fortnight", "5/", "99999999999/s", ""] {
        let e = Rate::parse(text).unwrap_err();
        assert!(e.contains("expected COUNT/UNIT like \"500/min\""), "{text}: {e}");
    }
    let e = Rate::parse("0/min").unwrap_err();
    assert!(e.contains("at least 1"), "{e}");
}

#[test]
fn the_longest_match_wins_between_a_domain_rule_and_an_mx_suffix_rule() {
    let s = parse(
        "[site.\"google.com\"]\nmax_connections = 1\n\
         [site.\"corp.example\"]\nmax_connections = 2\n\
         [site.\"workspace\"]\nmx_suffix = [\"aspmx.l.google.com\"]\nmax_connections = 3\n",
    );
    // The domain's own rule (12 bytes) beats the MX host's "google.com" (10).
    let l = via_mx(&s, "corp.example", &["alt1.aspmx.l.google.com"]);
    assert_eq!(l.rule.as_deref(), Some("workspace"), "but \"aspmx.l.google.com\" (18) beats both");
    let l = via_mx(&s, "corp.example", &["smtp.google.com"]);
    assert_eq!((l.rule.as_deref(), l.max_connections), (Some("corp.example"), 2));
    let l = via_mx(&s, "mail.corp.example", &["smtp.google.com"]);
    assert_eq!(l.rule.as_deref(), Some("corp.example"), "a subdomain matches its parent's rule");
    let l = via_mx(&s, "other.test", &["smtp.google.com"]);
    assert_eq!((l.rule.as_deref(), l.site.as_str(), l.max_connections), (Some("google.com"), "google.com", 1));
}

#[test]
fn equally_long_matches_go_to_the_name_that_sorts_first() {
    let s = parse(
        "[site.\"zeta.test\"]\nmx_suffix = [\"mx.shared\"]\nmax_connections = 9\n\
         [site.\"alpha.test\"]\nmx_suffix = [\"mx.shared\"]\nmax_connections = 1\n",
    );
    let l = via_mx(&s, "x.example", &["a.mx.shared"]);
    assert_eq!((l.rule.as_deref(), l.max_connections), (Some("alpha.test"), 1));
    // A domain match and an MX match of the same length: again by NAME.
    let s = parse("[site.\"bb.test\"]\n[site.\"aa.test\"]\nmx_suffix = [\"mx.aa.x\"]\n");
    assert_eq!(via_mx(&s, "bb.test", &["h.mx.aa.x"]).rule.as_deref(), Some("aa.test"));
}

#[test]
fn mx_suffix_gathers_domains_hosted_by_one_provider_into_one_site() {
    let s = parse("[site.\"yahoo.com\"]\nmx_suffix = [\"YahooDNS.net.\"]\nmax_message_rate = \"100/min\"\n");
    assert_eq!(s.rule("yahoo.com").unwrap().mx_suffix, ["yahoodns.net"], "lower-cased, no trailing dot");
    for (domain, mx) in [("aol.com", "mx-aol.mail.gm0.yahoodns.net"), ("ymail.com", "mta5.am0.yahoodns.net")] {
        let l = via_mx(&s, domain, &[mx, "backup.elsewhere.test"]);
        assert_eq!((l.site.as_str(), l.rule.as_deref()), ("yahoo.com", Some("yahoo.com")), "{domain}");
        assert_eq!(l.max_message_rate, Some(Rate { count: 100, per: secs(60) }));
    }
    // Only the primary MX host counts.
    let l = via_mx(&s, "z.test", &["mx.z.test", "mta5.am0.yahoodns.net"]);
    assert_eq!(l.rule, None);
}

#[test]
fn names_and_suffixes_match_only_at_a_label_boundary() {
    let s = parse("[site.\"google.com\"]\nmax_connections = 1\n");
    assert_eq!(via_mx(&s, "notgoogle.com", &["mx.notgoogle.com"]).rule, None);
    assert_eq!(via_mx(&s, "x.test", &["mx.notgoogle.com"]).rule, None);
    assert_eq!(via_mx(&s, "x.google.com", &["mx.x.test"]).rule.as_deref(), Some("google.com"));
    assert_eq!(via_mx(&s, "google.com", &["mx.x.test"]).rule.as_deref(), Some("google.com"));
    assert_eq!(via_mx(&s, "x.test", &["google.com"]).rule.as_deref(), Some("google.com"), "the whole host");
    assert_eq!(via_mx(&s, "x.test", &["aspmx.l.GOOGLE.com."]).rule.as_deref(), Some("google.com"));
    assert_eq!(via_mx(&s, "GOOGLE.COM.", &["mx.x.test"]).rule.as_deref(), Some("google.com"));
    let s = parse("[site.\"example.org\"]\nmx_suffix = [\"mx.example\"]\n");
    assert_eq!(via_mx(&s, "a.test", &["smx.example"]).rule, None);
    assert_eq!(via_mx(&s, "a.test", &["a.mx.example"]).rule.as_deref(), Some("example.org"));
}

#[test]
fn unset_keys_come_from_the_default_rule_then_the_relay_fallback() {
    let s = parse(
        "[site.default]\nmax_connections = 5\nretry = [\"1m\", \"10m\"]\nconnection_rate = \"10/s\"\n\
         [[site.default.backoff]]\nmatch = \"default-pattern\"\naction = \"defer\"\n\
         [site.\"big.test\"]\nmax_message_rate = \"500/min\"\nconnection_rate = \"60/min\"\n\
         [[site.\"big.test\".backoff]]\nmatch = \"rule-pattern\"\naction = \"halve-rate\"\n",
    );
    let l = via_mx(&s, "big.test", &["mx.big.test"]);
    assert_eq!(l.rule.as_deref(), Some("big.test"));
    assert_eq!(l.max_message_rate, Some(Rate { count: 500, per: secs(60) }), "the rule's own");
    assert_eq!(l.connection_rate, Some(Rate { count: 60, per: secs(60) }), "the rule over the default");
    assert_eq!(l.max_connections, 5, "from the default");
    assert_eq!(l.retry, Some(vec![secs(60), secs(600)]), "from the default");
    assert_eq!(l.max_deliveries_per_connection, 100, "from the fallback: neither sets it");
    let order: Vec<_> = l.backoff.iter().map(|b| (b.source.as_str(), b.action)).collect();
    assert_eq!(order, [("rule-pattern", BackoffAction::HalveRate), ("default-pattern", BackoffAction::Defer)]);

    let l = via_mx(&s, "small.test", &["mx.small.test"]);
    assert_eq!((l.rule, l.max_connections, l.max_message_rate), (None, 5, None), "only the default applies");
    assert_eq!(l.backoff.len(), 1);
    assert_eq!(s.len(), 2);
}

#[test]
fn without_a_file_everything_comes_from_the_fallback() {
    let s = Shaping::default();
    let l = via_mx(&s, "a.test", &["mx.a.test"]);
    assert_eq!(l.rule, None);
    assert_eq!(l.max_connections, FALLBACK.max_connections);
    assert_eq!(l.max_deliveries_per_connection, FALLBACK.max_deliveries_per_connection);
    assert_eq!((l.max_message_rate, l.connection_rate, l.retry.clone()), (None, None, None));
    assert!(l.backoff.is_empty());
    assert!(l.backoff_for("421 4.7.0 rate limited").is_none());
    assert_eq!((s.len(), s.is_empty()), (0, true));
    // A rule that sets nothing still falls back too.
    let l = via_mx(&parse("[site.\"a.test\"]\n"), "a.test", &["mx.a.test"]);
    assert_eq!((l.rule.as_deref(), l.max_connections), (Some("a.test"), 20));
}

#[test]
fn a_route_is_its_own_site_and_matches_by_domain_only() {
    let s = parse("[site.\"routed.test\"]\nmax_connections = 3\n[site.\"127.0.0.1\"]\nmax_connections = 4\n");
    let l = s.resolve("other.test", Destination::Route("127.0.0.1:2600"), FALLBACK);
    assert_eq!((l.site.as_str(), l.rule), ("127.0.0.1:2600", None), "no MX host to match the target against");
    let l = s.resolve("x.routed.test", Destination::Route("127.0.0.1:2600"), FALLBACK);
    assert_eq!((l.site.as_str(), l.rule.as_deref(), l.max_connections), ("routed.test", Some("routed.test"), 3));
}

#[test]
fn an_unmatched_site_is_named_by_its_sorted_mx_set() {
    let s = parse("[site.\"elsewhere.test\"]\n");
    let a = via_mx(&s, "one.test", &["mx2.host.test", "mx1.host.test"]);
    let b = via_mx(&s, "two.test", &["mx1.host.test", "MX2.host.test.", "mx1.host.test"]);
    assert_eq!(a.site, "mx1.host.test,mx2.host.test");
    assert_eq!(b.site, a.site, "same hosts, other order and a duplicate: the same site");
    let implicit = via_mx(&s, "bare.test", &["bare.test"]);
    assert_eq!(implicit.site, "bare.test", "the implicit MX is the domain itself");
    assert_eq!(s.resolve("empty.test", Destination::Mx(&[]), FALLBACK).site, "empty.test");
}

#[test]
fn backoff_matches_the_joined_reply_case_insensitively_in_file_order() {
    let s = parse(
        "[site.\"g.test\"]\n\
         [[site.\"g.test\".backoff]]\nmatch = \"4\\\\.7\\\\.0|rate limit|try again later\"\naction = \"suspend\"\nduration = \"15m\"\n\
         [[site.\"g.test\".backoff]]\nmatch = \"^421 \"\naction = \"halve-rate\"\n\
         [[site.default.backoff]]\nmatch = \"ip reputation\"\naction = \"bounce\"\n",
    );
    let l = via_mx(&s, "g.test", &["mx.g.test"]);
    let hit = l.backoff_for("451 4.3.0 Our system has detected an unusual RATE LIMIT of unsolicited mail").unwrap();
    assert_eq!(
        (hit.action, hit.duration, hit.source.as_str()),
        (BackoffAction::Suspend, secs(900), "4\\.7\\.0|rate limit|try again later")
    );
    let joined = "421 4.7.28 Gmail has detected an unusual rate of mail. Please Try Again Later.";
    assert_eq!(l.backoff_for(joined).unwrap().action, BackoffAction::Suspend, "the first entry that matches");
    assert_eq!(l.backoff_for("421 4.4.2 closing").unwrap().action, BackoffAction::HalveRate);
    let hit = l.backoff_for("550 5.7.1 Service unavailable; Client host blocked: IP Reputation").unwrap();
    assert_eq!((hit.action, hit.duration), (BackoffAction::Bounce, Duration::ZERO), "then the default's");
    assert!(l.backoff_for("250 2.0.0 OK").is_none());
    assert!(l.backoff_for("451 4.7.1 rate-limited").is_none(), "a regex, not a word search");
}

#[test]
fn every_bad_value_is_an_error_naming_the_file_line_key_and_reason() {
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "[site.\"google.com\"]\nmax_connections = 1\n\nmax_message_rate = \"5 per minute\"\n",
            "shaping.toml:4: ",
            &["site.\"google.com\".max_message_rate = \"5 per minute\"", "expected COUNT/UNIT like \"500/min\""],
        ),
        (
            "[site.default]\nconnection_rate = \"0/s\"\n",
            "shaping.toml:2: ",
            &["site.\"default\".connection_rate", "at least 1"],
        ),
        (
            "[site.\"a.test\"]\n\nmax_connections = 0\n",
            "shaping.toml:3: ",
            &["site.\"a.test\".max_connections = 0", "at least 1"],
        ),
        (
            "[site.\"a.test\"]\nmax_deliveries_per_connection = -2\n",
            "shaping.toml:2: ",
            &["max_deliveries_per_connection = -2"],
        ),
        ("[site.\"a.test\"]\nretry = []\n", "shaping.toml:2: ", &["site.\"a.test\".retry", "at least one duration"]),
        (
            "[site.\"a.test\"]\nretry = [\"5m\",\n \"soon\"]\n",
            "shaping.toml:3: ",
            &["site.\"a.test\".retry[1] = \"soon\"", "invalid duration"],
        ),
        ("[site.\"a.test\"]\nretry = [\"0s\"]\n", "shaping.toml:2: ", &["retry[0] = \"0s\"", "longer than zero"]),
        (
            "[site.\"a.test\"]\n[[site.\"a.test\".backoff]]\nmatch = \"(unclosed\"\naction = \"defer\"\n",
            "shaping.toml:3: ",
            &["site.\"a.test\".backoff[0].match = \"(unclosed\"", "not a valid regex: unclosed group (at character 1)"],
        ),
        (
            "[[site.\"a.test\".backoff]]\nmatch = \"x\"\naction = \"pause\"\n",
            "shaping.toml:3: ",
            &["backoff[0].action = \"pause\"", "\"suspend\", \"halve-rate\", \"bounce\" or \"defer\""],
        ),
        (
            "[[site.\"a.test\".backoff]]\nmatch = \"x\"\naction = \"suspend\"\nduration = \"fortnight\"\n",
            "shaping.toml:4: ",
            &["backoff[0].duration = \"fortnight\"", "invalid duration"],
        ),
        (
            "[site.x]\n[[site.x.backoff]]\nmatch = \"x\"\naction = \"suspend\"\n",
            "shaping.toml:2",
            &["site.\"x\".backoff[0]", "needs a duration"],
        ),
        (
            "[site.\"a.test\"]\nmx_suffix = [\"ok.test\", \"bad host\"]\n",
            "shaping.toml:2: ",
            &["mx_suffix[1] = \"bad host\""],
        ),
        ("\n[site.\"a.test\"]\nmax_conections = 3\n", "shaping.toml:3:1: ", &["unknown field `max_conections`"]),
        (
            "[[site.\"a.test\".backoff]]\nmatch = \"x\"\naction = \"defer\"\nfor = \"1m\"\n",
            "shaping.toml:4:1: ",
            &["unknown field `for`"],
        ),
        ("[sites.\"a.test\"]\nmax_connections = 3\n", "shaping.toml:1:", &["unknown field `sites`"]),
        ("[site.\"a.test\"]\nmax_connections = \"many\"\n", "shaping.toml:2:", &["invalid type"]),
        ("[site.\"a.test\"]\nmax_connections = \n", "shaping.toml:2:", &[]),
        ("[site.\"A.test\"]\n[site.\"a.test.\"]\n", "shaping.toml:", &["same NAME"]),
        ("[site.\"a test\"]\n", "shaping.toml:1: ", &["site.\"a test\"", "domain name"]),
    ];
    for (text, at, fragments) in cases {
        let e = Shaping::parse(text, "shaping.toml").map(|_| ()).unwrap_err();
        assert!(!e.contains('\n'), "one line: {e}");
        assert!(e.starts_with(at), "{text:?}: wanted {at:?} at the start of:\n{e}");
        for f in *fragments {
            assert!(e.contains(f), "{text:?}: wanted {f:?} in:\n{e}");
        }
    }
}

#[test]
fn load_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shaping.toml");
    std::fs::write(&path, "[site.\"a.test\"]\nmax_message_rate = \"fast\"\n").unwrap();
    let e = Shaping::load(&path).unwrap_err();
    assert!(e.starts_with(&format!("{}:2: ", path.display())), "{e}");
    let e = Shaping::load(&dir.path().join("missing.toml")).unwrap_err();
    assert!(e.contains("missing.toml: cannot read"), "{e}");
    std::fs::write(&path, "").unwrap();
    assert!(Shaping::load(&path).unwrap().is_empty(), "an empty file is no rules");
}

/// The rules file example of README.md's "Shaping: sites, rules and egress
/// pools", as printed there (it sits in a list item: two spaces in).
fn readme_example() -> String {
    let readme = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"));
    let start =
        readme.find("  ```toml\n  [site.default]").expect("README has the rules file example") + "  ```toml\n".len();
    let len = readme[start..].find("  ```\n").expect("the example's block ends");
    readme[start..start + len].lines().map(|l| l.strip_prefix("  ").unwrap_or(l).to_string() + "\n").collect()
}

#[test]
fn the_readme_example_parses_and_means_what_it_says() {
    let s = parse(&readme_example());
    let gmail = via_mx(&s, "gmail.com", &["gmail-smtp-in.l.google.com", "alt1.gmail-smtp-in.l.google.com"]);
    assert_eq!((gmail.site.as_str(), gmail.rule.as_deref()), ("google.com", Some("google.com")));
    assert_eq!(gmail.max_message_rate, Some(Rate { count: 500, per: secs(60) }));
    assert_eq!(gmail.connection_rate, Some(Rate { count: 60, per: secs(60) }));
    assert_eq!(gmail.retry, Some(vec![secs(300), secs(900), secs(3600)]));
    assert_eq!((gmail.max_connections, gmail.max_deliveries_per_connection), (20, 100));
    let reputation =
        gmail.backoff_for("421 4.7.28 Our system has detected an unusual rate of unsolicited mail").unwrap();
    assert_eq!(reputation.action, BackoffAction::HalveRate, "the rule's own entry first");
    let limited = gmail.backoff_for("421 4.7.0 Try again later, closing connection.").unwrap();
    assert_eq!((limited.action, limited.duration), (BackoffAction::Suspend, secs(900)), "then the default's");
    let hosted = via_mx(&s, "customer.example", &["aspmx.l.google.com"]);
    assert_eq!(hosted.site, "google.com", "a Google-hosted domain shares the site");
    let legacy = via_mx(&s, "old.example", &["mx.googlemail.com"]);
    assert_eq!(legacy.site, "google.com", "by mx_suffix");
    let other = via_mx(&s, "small.example", &["mx.small.example"]);
    assert_eq!((other.rule, other.max_message_rate, other.backoff.len()), (None, None, 1));
}
