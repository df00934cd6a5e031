//! The two texts of RFC 8461, read: the `_mta-sts` TXT record (§3.1) and
//! the policy file (§3.2); and the MX host patterns of a policy (§4.1).
//!
//! Pure: text in, values or a named error out. No I/O, no clock, no log:
//! the caller logs a bad policy with the domain it came from.

use std::fmt;

/// The most seconds a policy may be cached (RFC 8461 §3.2: one year).
pub const MAX_MAX_AGE: u64 = 31_557_600;

/// The largest policy body taken (RFC 8461 §3.3 suggests 64 KiB).
pub const MAX_POLICY_BYTES: usize = 64 * 1024;

/// What a policy asks of senders (RFC 8461 §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Deliver only to listed MX hosts over PKIX-verified TLS.
    Enforce,
    /// Report what enforce would refuse, deliver as usual.
    Testing,
    /// The domain has no (more) policy.
    None,
}

impl Mode {
    /// The word the policy and the logs use.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Testing => "testing",
            Mode::None => "none",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One `mx:` value: a host name, or `*.` and a domain (any host exactly
/// one label below it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MxPattern {
    /// This host (lower case, no trailing dot).
    Exact(String),
    /// Any host one label below this domain (lower case, no dots around).
    Wildcard(String),
}

impl MxPattern {
    /// Whether MX host `host` (any case, with or without the root dot)
    /// matches (RFC 8461 §4.1: a wildcard stands for exactly the leftmost
    /// label).
    pub fn matches(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        match self {
            MxPattern::Exact(name) => host == *name,
            MxPattern::Wildcard(parent) => match host.split_once('.') {
                Some((label, rest)) => !label.is_empty() && rest == parent,
                None => false,
            },
        }
    }
}

impl fmt::Display for MxPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MxPattern::Exact(name) => f.write_str(name),
            MxPattern::Wildcard(parent) => write!(f, "*.{parent}"),
        }
    }
}

/// A policy as the domain's web server published it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub mode: Mode,
    /// The MX hosts mail may go to (empty only under mode `none`).
    pub mx: Vec<MxPattern>,
    /// How long the policy may be cached, in seconds (at most
    /// [`MAX_MAX_AGE`]: a larger value is taken as that).
    pub max_age: u64,
}

impl Policy {
    /// Whether MX host `host` is one the policy lists.
    pub fn allows(&self, host: &str) -> bool {
        self.mx.iter().any(|p| p.matches(host))
    }
}

/// Why a policy text was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("policy is {0} bytes, more than 64 KiB")]
    TooLarge(usize),
    #[error("policy is not UTF-8")]
    NotText,
    #[error("policy has no \"version: STSv1\"")]
    Version,
    #[error("policy mode {0:?} is not enforce, testing or none")]
    Mode(String),
    #[error("policy has no mode")]
    NoMode,
    #[error("policy max_age {0:?} is not a number of seconds")]
    MaxAge(String),
    #[error("policy has no max_age")]
    NoMaxAge,
    #[error("policy mx {0:?} is not a host name or *.domain")]
    Mx(String),
    #[error("policy in mode {0} lists no mx")]
    NoMx(Mode),
}

/// Read a policy file (RFC 8461 §3.2): `key: value` lines ended by CRLF or
/// LF; `version: STSv1`, `mode`, `max_age` and (unless mode is `none`) at
/// least one `mx` are required. Unknown keys are ignored; of a repeated
/// key other than `mx` the first value counts.
pub fn parse_policy(body: &[u8]) -> Result<Policy, PolicyError> {
    if body.len() > MAX_POLICY_BYTES {
        return Err(PolicyError::TooLarge(body.len()));
    }
    let text = std::str::from_utf8(body).map_err(|_| PolicyError::NotText)?;
    let (mut version, mut mode, mut max_age) = (None, None, None);
    let mut mx = Vec::new();
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        let Some((key, value)) = line.split_once(':') else { continue };
        let value = value.trim_matches([' ', '\t']);
        match key {
            "version" => {
                version.get_or_insert(value);
            }
            "mode" => {
                mode.get_or_insert(value);
            }
            "max_age" => {
                max_age.get_or_insert(value);
            }
            "mx" => mx.push(parse_mx(value)?),
            _ => {}
        }
    }
    if version != Some("STSv1") {
        return Err(PolicyError::Version);
    }
    let mode = match mode.ok_or(PolicyError::NoMode)? {
        "enforce" => Mode::Enforce,
        "testing" => Mode::Testing,
        "none" => Mode::None,
        other => return Err(PolicyError::Mode(other.to_string())),
    };
    let max_age = max_age.ok_or(PolicyError::NoMaxAge)?;
    // 1*10DIGIT: ten digits cannot overflow a u64.
    if max_age.is_empty() || max_age.len() > 10 || !max_age.bytes().all(|b| b.is_ascii_digit()) {
        return Err(PolicyError::MaxAge(max_age.to_string()));
    }
    let max_age = max_age.parse::<u64>().map_err(|_| PolicyError::MaxAge(max_age.to_string()))?.min(MAX_MAX_AGE);
    if mx.is_empty() && mode != Mode::None {
        return Err(PolicyError::NoMx(mode));
    }
    Ok(Policy { mode, mx, max_age })
}

fn parse_mx(value: &str) -> Result<MxPattern, PolicyError> {
    let bad = || PolicyError::Mx(value.to_string());
    let name = value.trim_end_matches('.').to_ascii_lowercase();
    let (wildcard, host) = match name.strip_prefix("*.") {
        Some(rest) => (true, rest.to_string()),
        None => (false, name),
    };
    let label_ok = |l: &str| {
        !l.is_empty() && l.len() <= 63 && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if host.len() > 253 || !host.split('.').all(label_ok) {
        return Err(bad());
    }
    Ok(if wildcard { MxPattern::Wildcard(host) } else { MxPattern::Exact(host) })
}

/// Why the `_mta-sts` TXT records give no policy id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TxtError {
    #[error("no v=STSv1 record")]
    None,
    #[error("{0} v=STSv1 records (exactly one is needed)")]
    Several(usize),
    #[error("the v=STSv1 record has no valid id")]
    BadId,
}

/// The policy id of a domain from its `_mta-sts` TXT records (each given
/// with its strings joined): records that do not start with `v=STSv1;`
/// are not MTA-STS records and are dropped; exactly one must be left, with
/// an `id` of 1 to 32 letters and digits (RFC 8461 §3.1).
pub fn parse_txt(records: &[String]) -> Result<String, TxtError> {
    let sts: Vec<&String> = records.iter().filter(|r| is_sts_record(r)).collect();
    let record = match sts.as_slice() {
        [] => return Err(TxtError::None),
        [one] => *one,
        many => return Err(TxtError::Several(many.len())),
    };
    let id = record.split(';').skip(1).find_map(|field| {
        let (key, value) = field.trim_matches([' ', '\t']).split_once('=')?;
        (key == "id").then_some(value)
    });
    match id {
        Some(id) if (1..=32).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric()) => Ok(id.to_string()),
        _ => Err(TxtError::BadId),
    }
}

/// `v=STSv1` as the first field (`v=STSv1;` or the whole record).
fn is_sts_record(record: &str) -> bool {
    let first = record.split(';').next().unwrap_or("");
    first.trim_end_matches([' ', '\t']) == "v=STSv1"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_policy_with_crlf_or_lf_lines_is_read() {
        let crlf =
            b"version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\nmax_age: 86400\r\n";
        let p = parse_policy(crlf).unwrap();
        assert_eq!(p.mode, Mode::Enforce);
        assert_eq!(p.max_age, 86400);
        assert_eq!(p.mx, vec![MxPattern::Exact("mail.example.com".into()), MxPattern::Wildcard("example.net".into())]);
        let lf = parse_policy(b"version: STSv1\nmode: testing\nmx: mail.example.com\nmax_age: 600").unwrap();
        assert_eq!(lf.mode, Mode::Testing);
        assert_eq!(lf.max_age, 600);
    }

    #[test]
    fn unknown_keys_are_ignored_and_the_first_value_counts() {
        let p = parse_policy(b"version: STSv1\nfoo: bar\nmode: none\nmode: enforce\nmax_age: 5\n").unwrap();
        assert_eq!(p.mode, Mode::None);
        assert!(p.mx.is_empty(), "mode none needs no mx");
    }

    #[test]
    fn bad_policies_are_refused_with_a_reason() {
        let cases: &[(&[u8], PolicyError)] = &[
            (b"mode: enforce\nmx: a.b\nmax_age: 1\n", PolicyError::Version),
            (b"version: STSv2\nmode: enforce\nmx: a.b\nmax_age: 1\n", PolicyError::Version),
            (b"version: STSv1\nmode: strict\nmx: a.b\nmax_age: 1\n", PolicyError::Mode("strict".into())),
            (b"version: STSv1\nmx: a.b\nmax_age: 1\n", PolicyError::NoMode),
            (b"version: STSv1\nmode: enforce\nmx: a.b\n", PolicyError::NoMaxAge),
            (b"version: STSv1\nmode: enforce\nmx: a.b\nmax_age: -1\n", PolicyError::MaxAge("-1".into())),
            (
                b"version: STSv1\nmode: enforce\nmx: a.b\nmax_age: 12345678901\n",
                PolicyError::MaxAge("12345678901".into()),
            ),
            (b"version: STSv1\nmode: enforce\nmax_age: 1\n", PolicyError::NoMx(Mode::Enforce)),
            (b"version: STSv1\nmode: testing\nmx: a..b\nmax_age: 1\n", PolicyError::Mx("a..b".into())),
            (b"version: STSv1\nmode: testing\nmx: *\nmax_age: 1\n", PolicyError::Mx("*".into())),
            (b"version: STSv1\nmode: testing\nmx: a.*.b\nmax_age: 1\n", PolicyError::Mx("a.*.b".into())),
            (b"version: STSv1\xff\n", PolicyError::NotText),
        ];
        for (text, want) in cases {
            assert_eq!(parse_policy(text).as_ref(), Err(want), "{}", String::from_utf8_lossy(text));
        }
        let big = vec![b'#'; MAX_POLICY_BYTES + 1];
        assert_eq!(parse_policy(&big), Err(PolicyError::TooLarge(MAX_POLICY_BYTES + 1)));
    }

    #[test]
    fn max_age_above_a_year_is_taken_as_a_year() {
        let p = parse_policy(b"version: STSv1\nmode: enforce\nmx: a.b\nmax_age: 9999999999\n").unwrap();
        assert_eq!(p.max_age, MAX_MAX_AGE);
    }

    #[test]
    fn a_wildcard_matches_exactly_one_leftmost_label() {
        let w = MxPattern::Wildcard("example.com".into());
        assert!(w.matches("mx1.example.com"));
        assert!(w.matches("MX1.Example.COM."));
        assert!(!w.matches("example.com"));
        assert!(!w.matches("a.mx1.example.com"));
        assert!(!w.matches("mx1.example.com.evil.test"));
        assert!(!w.matches(".example.com"));
        let e = MxPattern::Exact("mail.example.com".into());
        assert!(e.matches("Mail.Example.com."));
        assert!(!e.matches("mx.mail.example.com"));
    }

    #[test]
    fn the_txt_record_gives_the_id_of_exactly_one_sts_record() {
        let r = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(parse_txt(&r(&["v=STSv1; id=20160831085700Z;"])), Ok("20160831085700Z".into()));
        assert_eq!(parse_txt(&r(&["v=STSv1;id=abc"])), Ok("abc".into()));
        assert_eq!(parse_txt(&r(&["v=spf1 -all", "v=STSv1; ext=1; id=x1;"])), Ok("x1".into()));
        assert_eq!(parse_txt(&r(&["v=spf1 -all"])), Err(TxtError::None));
        assert_eq!(parse_txt(&r(&[])), Err(TxtError::None));
        assert_eq!(parse_txt(&r(&["v=STSv1; id=a;", "v=STSv1; id=b;"])), Err(TxtError::Several(2)));
        assert_eq!(parse_txt(&r(&["v=STSv1;"])), Err(TxtError::BadId));
        assert_eq!(parse_txt(&r(&["v=STSv1; id=has-dash;"])), Err(TxtError::BadId));
        assert_eq!(parse_txt(&r(&[&format!("v=STSv1; id={};", "a".repeat(33))])), Err(TxtError::BadId));
        assert_eq!(parse_txt(&r(&["v=STSv10; id=a;"])), Err(TxtError::None));
    }
}
