//! The rules file as TOML: the raw shape (unknown keys refused by serde),
//! then each value checked with its position kept, so that every error
//! says `FILE:LINE: KEY = VALUE: why`.

use super::{Backoff, BackoffAction, Rate, SiteRule};
use crate::config::Span;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;
use toml::Spanned;

/// The key of the default rule.
const DEFAULT: &str = "default";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    site: BTreeMap<Spanned<String>, RawRule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    max_connections: Option<Spanned<i64>>,
    max_message_rate: Option<Spanned<String>>,
    max_deliveries_per_connection: Option<Spanned<i64>>,
    connection_rate: Option<Spanned<String>>,
    retry: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    backoff: Vec<Spanned<RawBackoff>>,
    #[serde(default)]
    mx_suffix: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBackoff {
    #[serde(rename = "match")]
    pattern: Spanned<String>,
    action: Spanned<String>,
    duration: Option<Spanned<String>>,
}

/// Builds errors that name the file and the line of a byte offset.
struct Errors<'a> {
    text: &'a str,
    origin: &'a str,
}

impl Errors<'_> {
    fn line(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text.as_bytes()[..end].iter().filter(|&&b| b == b'\n').count() + 1
    }

    /// `FILE:LINE: KEY = VALUE: why`, the line being that of `at`.
    fn value<T: std::fmt::Debug>(&self, key: &str, at: &Spanned<T>, why: &str) -> String {
        format!("{}:{}: {key} = {:?}: {why}", self.origin, self.line(at.span().start), at.get_ref())
    }

    /// `FILE:LINE: KEY: why`.
    fn key(&self, key: &str, offset: usize, why: &str) -> String {
        format!("{}:{}: {key}: {why}", self.origin, self.line(offset))
    }

    /// toml's own errors (syntax, unknown keys, wrong types): line and
    /// column when it gives a position.
    fn toml(&self, e: &toml::de::Error) -> String {
        // Syntax errors put "expected ..." on a line of its own.
        let message = e.message().lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join("; ");
        match e.span() {
            Some(span) => {
                let start = span.start.min(self.text.len());
                let line_start = self.text[..start].rfind('\n').map_or(0, |i| i + 1);
                let column = self.text[line_start..start].chars().count() + 1;
                format!("{}:{}:{column}: {message}", self.origin, self.line(start))
            }
            None => format!("{}: {message}", self.origin),
        }
    }
}

/// The named rules (by lower-cased NAME, without a trailing dot) and
/// `[site.default]`, every value checked.
pub(super) fn rules(text: &str, origin: &str) -> Result<(BTreeMap<String, SiteRule>, Option<SiteRule>), String> {
    let errors = Errors { text, origin };
    let raw: RawFile = toml::from_str(text).map_err(|e| errors.toml(&e))?;
    let mut named = BTreeMap::new();
    let mut default = None;
    for (name, raw_rule) in raw.site {
        let key = format!("site.{:?}", name.get_ref());
        let normal = name.get_ref().trim_end_matches('.').to_ascii_lowercase();
        let rule = rule(&errors, &key, raw_rule)?;
        if normal == DEFAULT {
            if default.replace(rule).is_some() {
                return Err(errors.key(
                    &key,
                    name.span().start,
                    "a second default rule (NAMEs are compared lower-case)",
                ));
            }
            continue;
        }
        if !is_domain(&normal) {
            return Err(errors.key(
                &key,
                name.span().start,
                "NAME must be a domain name or suffix like \"google.com\"",
            ));
        }
        if named.insert(normal, rule).is_some() {
            return Err(errors.key(
                &key,
                name.span().start,
                "another rule has the same NAME (NAMEs are compared lower-case, without a trailing dot)",
            ));
        }
    }
    Ok((named, default))
}

fn rule(errors: &Errors<'_>, key: &str, raw: RawRule) -> Result<SiteRule, String> {
    let count = |name: &str, v: &Option<Spanned<i64>>| -> Result<Option<usize>, String> {
        let Some(v) = v else { return Ok(None) };
        match usize::try_from(*v.get_ref()) {
            Ok(n) if n >= 1 => Ok(Some(n)),
            _ => {
                Err(errors.value(&format!("{key}.{name}"), v, "must be at least 1 (leave the key out for the default)"))
            }
        }
    };
    let rate = |name: &str, v: &Option<Spanned<String>>| -> Result<Option<Rate>, String> {
        let Some(v) = v else { return Ok(None) };
        Rate::parse(v.get_ref()).map(Some).map_err(|why| errors.value(&format!("{key}.{name}"), v, &why))
    };
    let retry = match &raw.retry {
        None => None,
        Some(list) if list.get_ref().is_empty() => {
            return Err(errors.key(&format!("{key}.retry"), list.span().start, "needs at least one duration"));
        }
        Some(list) => Some(
            list.get_ref()
                .iter()
                .enumerate()
                .map(|(i, d)| duration(errors, &format!("{key}.retry[{i}]"), d, true))
                .collect::<Result<Vec<_>, _>>()?,
        ),
    };
    let backoff = raw
        .backoff
        .iter()
        .enumerate()
        .map(|(i, b)| backoff(errors, &format!("{key}.backoff[{i}]"), b))
        .collect::<Result<Vec<_>, _>>()?;
    let mx_suffix = raw
        .mx_suffix
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let normal = s.get_ref().trim_matches('.').to_ascii_lowercase();
            match is_domain(&normal) {
                true => Ok(normal),
                false => Err(errors.value(
                    &format!("{key}.mx_suffix[{i}]"),
                    s,
                    "expected a host name suffix like \"google.com\"",
                )),
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(SiteRule {
        max_connections: count("max_connections", &raw.max_connections)?,
        max_message_rate: rate("max_message_rate", &raw.max_message_rate)?,
        max_deliveries_per_connection: count("max_deliveries_per_connection", &raw.max_deliveries_per_connection)?,
        connection_rate: rate("connection_rate", &raw.connection_rate)?,
        retry,
        backoff,
        mx_suffix,
    })
}

fn backoff(errors: &Errors<'_>, key: &str, raw: &Spanned<RawBackoff>) -> Result<Backoff, String> {
    let b = raw.get_ref();
    let pattern = regex::RegexBuilder::new(b.pattern.get_ref()).case_insensitive(true).build().map_err(|e| {
        errors.value(&format!("{key}.match"), &b.pattern, &format!("not a valid regex: {}", regex_reason(&e)))
    })?;
    let action = BackoffAction::parse(b.action.get_ref())
        .map_err(|why| errors.value(&format!("{key}.action"), &b.action, &why))?;
    let duration = match (&b.duration, action) {
        (Some(d), BackoffAction::Suspend) => duration(errors, &format!("{key}.duration"), d, true)?,
        (Some(d), _) => duration(errors, &format!("{key}.duration"), d, false)?,
        (None, BackoffAction::Suspend) => {
            return Err(errors.key(
                key,
                raw.span().start,
                "action = \"suspend\" needs a duration (e.g. duration = \"15m\")",
            ));
        }
        (None, _) => Duration::ZERO,
    };
    Ok(Backoff { pattern, source: b.pattern.get_ref().clone(), action, duration })
}

/// The regex crate's error on one line: its syntax errors span several
/// (the pattern, a caret under the fault, the reason), and a config
/// problem is one line. The pattern itself is already in the message.
fn regex_reason(e: &regex::Error) -> String {
    let regex::Error::Syntax(text) = e else { return e.to_string() };
    let reason = text.lines().rev().find_map(|l| l.strip_prefix("error: ")).unwrap_or(text.trim());
    // The caret line is indented like the pattern line above it (4 spaces).
    let at =
        text.lines().find(|l| l.trim_start().starts_with('^')).and_then(|l| l.find('^')).map(|i| i.saturating_sub(4));
    match at {
        Some(at) => format!("{reason} (at character {})", at + 1),
        None => reason.to_string(),
    }
}

/// A duration with a unit, as everywhere in the config; longer than zero
/// when `nonzero`.
fn duration(errors: &Errors<'_>, key: &str, v: &Spanned<String>, nonzero: bool) -> Result<Duration, String> {
    let d = v.get_ref().parse::<Span>().map_err(|why| errors.value(key, v, &why))?.get();
    if nonzero && d.is_zero() {
        return Err(errors.value(key, v, "must be longer than zero"));
    }
    Ok(d)
}

/// Labels of letters, digits, `-` and `_`, none empty (a NAME or an
/// mx_suffix is matched against DNS names, which have no other bytes).
fn is_domain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|l| {
            !l.is_empty() && l.len() <= 63 && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}
