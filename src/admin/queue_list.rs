//! `ringmail queue list`: what is queued, one entry per message share
//! (a message's recipients at one destination domain), with the filters
//! `--domain`, `--state`, `--older-than` and `--limit`.
//!
//! The filters run on the cores, each over its own queue shard, and each
//! core sends at most `limit` entries (its oldest), so the reply stays
//! bounded however large the queue is; the core serving the control
//! socket merges them and keeps the `limit` oldest overall.

use super::report::{sender_text, Report};
use crate::config::Span;
use serde::Serialize;
use std::fmt::Write;

/// A queued share's state, as `--state` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum QueueState {
    /// Waiting in its destination's ready list or being sent now.
    Active,
    /// Waiting for its next attempt after a temporary failure.
    Deferred,
    /// Kept back by the operator (`queue hold`) until released.
    Held,
}

impl std::str::FromStr for QueueState {
    type Err = ListParseError;
    fn from_str(s: &str) -> Result<QueueState, ListParseError> {
        match s.to_ascii_lowercase().as_str() {
            "active" => Ok(QueueState::Active),
            "deferred" => Ok(QueueState::Deferred),
            "held" => Ok(QueueState::Held),
            _ => Err(ListParseError::State(s.to_string())),
        }
    }
}

impl std::fmt::Display for QueueState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            QueueState::Active => "active",
            QueueState::Deferred => "deferred",
            QueueState::Held => "held",
        })
    }
}

/// A `queue list` argument the server (or the CLI) refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ListParseError {
    #[error("unknown state {0:?} (active, deferred or held)")]
    State(String),
    #[error("{0}")]
    Duration(String),
    #[error("bad limit {0:?}: expected a whole number of messages, at least 1")]
    Limit(String),
    #[error("unknown queue list argument {0:?}")]
    Unknown(String),
}

/// Which shares `queue list` shows. The default shows all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListFilter {
    /// Only shares for this recipient domain (lowercase).
    pub domain: Option<String>,
    pub state: Option<QueueState>,
    /// Only shares that arrived at least this long ago.
    pub older_than_ms: Option<u64>,
    /// At most this many entries, the oldest first.
    pub limit: Option<usize>,
}

impl ListFilter {
    /// Parse the control-socket form: `domain=D state=S older_than=DURATION
    /// limit=N`, each optional, in any order.
    pub fn parse<'a>(words: impl Iterator<Item = &'a str>) -> Result<ListFilter, ListParseError> {
        let mut f = ListFilter::default();
        for word in words {
            match word.split_once('=') {
                Some(("domain", d)) => f.domain = Some(d.trim_end_matches('.').to_ascii_lowercase()),
                Some(("state", s)) => f.state = Some(s.parse()?),
                Some(("older_than", d)) => f.older_than_ms = Some(parse_age(d)?),
                Some(("limit", n)) => f.limit = Some(parse_limit(n)?),
                _ => return Err(ListParseError::Unknown(word.to_string())),
            }
        }
        Ok(f)
    }

    /// The control-socket form of this filter (what [`ListFilter::parse`]
    /// reads back), after `queue list`.
    pub fn to_words(&self) -> String {
        let mut out = String::new();
        if let Some(d) = &self.domain {
            let _ = write!(out, " domain={d}");
        }
        if let Some(s) = self.state {
            let _ = write!(out, " state={s}");
        }
        if let Some(ms) = self.older_than_ms {
            let _ = write!(out, " older_than={ms}ms");
        }
        if let Some(n) = self.limit {
            let _ = write!(out, " limit={n}");
        }
        out
    }

    /// Does a share with these values pass?
    pub fn admits(&self, domain: &str, state: QueueState, arrived_ms: u64, now_ms: u64) -> bool {
        self.domain.as_deref().is_none_or(|d| d.eq_ignore_ascii_case(domain))
            && self.state.is_none_or(|s| s == state)
            && self.older_than_ms.is_none_or(|age| now_ms.saturating_sub(arrived_ms) >= age)
    }
}

/// `--older-than`: a duration in the config's syntax ("90s", "4h", "2d").
pub fn parse_age(text: &str) -> Result<u64, ListParseError> {
    let span: Span = text.parse().map_err(ListParseError::Duration)?;
    Ok(u64::try_from(span.get().as_millis()).unwrap_or(u64::MAX))
}

/// `--limit`: at least 1.
pub fn parse_limit(text: &str) -> Result<usize, ListParseError> {
    match text.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(ListParseError::Limit(text.to_string())),
    }
}

/// One recipient of a queued share.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueuedRecipient {
    pub address: String,
    /// Recipients of one share travel in one transaction, so they share its
    /// state; recipients already delivered or bounced have left the queue
    /// (`ringmail trace` has their history).
    pub state: QueueState,
}

/// One queued message share.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueueEntry {
    /// The message's queue id (16 hex digits); several shares (one per
    /// domain) may have the same id.
    pub queue_id: String,
    /// The envelope sender; "" for the null sender (bounces).
    pub sender: String,
    pub domain: String,
    /// The egress pool its sender selects; null when no pools are set.
    pub pool: Option<String>,
    /// The destination site (MX host set); null until its first MX lookup
    /// since start.
    pub site: Option<String>,
    pub state: QueueState,
    pub arrived_ms: u64,
    pub age_s: u64,
    pub attempts: u32,
    /// When deferred: the next attempt.
    pub next_attempt_ms: Option<u64>,
    /// The last temporary failure (the remote reply or a local error).
    pub last_reply: Option<String>,
    pub recipients: Vec<QueuedRecipient>,
}

/// The merged answer of `queue list`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct QueueList {
    /// Entries shown (at most the limit).
    pub count: usize,
    /// Entries that passed the filter, shown or not.
    pub matched: usize,
    /// Oldest first.
    pub messages: Vec<QueueEntry>,
}

impl QueueList {
    /// Merge what each core sent: `(entries, matched on that core)`.
    pub fn merge(parts: Vec<(Vec<QueueEntry>, usize)>, limit: Option<usize>) -> QueueList {
        let mut messages = Vec::new();
        let mut matched = 0;
        for (entries, n) in parts {
            messages.extend(entries);
            matched += n;
        }
        sort_oldest_first(&mut messages);
        if let Some(limit) = limit {
            messages.truncate(limit);
        }
        QueueList { count: messages.len(), matched, messages }
    }
}

/// Oldest first; ties by queue id, then domain, so the order is stable.
pub fn sort_oldest_first(entries: &mut [QueueEntry]) {
    entries.sort_by(|a, b| (a.arrived_ms, &a.queue_id, &a.domain).cmp(&(b.arrived_ms, &b.queue_id, &b.domain)));
}

impl Report for QueueList {
    fn text(&self) -> String {
        let mut text = String::new();
        for m in &self.messages {
            let state = match (m.state, m.next_attempt_ms) {
                (QueueState::Deferred, Some(t)) => {
                    let now = m.arrived_ms + m.age_s * 1000;
                    format!("deferred, next attempt in {}s", t.saturating_sub(now) / 1000)
                }
                (state, _) => state.to_string(),
            };
            let _ = write!(
                text,
                "{}  from={}  domain={}  age={}s  attempts={}  {state}",
                m.queue_id,
                sender_text(&m.sender),
                m.domain,
                m.age_s,
                m.attempts
            );
            if let Some(site) = &m.site {
                let _ = write!(text, "  site={site}");
            }
            if let Some(pool) = &m.pool {
                let _ = write!(text, "  pool={pool}");
            }
            text.push('\n');
            for r in &m.recipients {
                let _ = writeln!(text, "    to={}", r.address);
            }
            if let Some(e) = &m.last_reply {
                let _ = writeln!(text, "    last error: {e}");
            }
        }
        if self.matched > self.count {
            let _ = writeln!(text, "-- {} queued message share(s) shown of {} matching", self.count, self.matched);
        } else {
            let _ = writeln!(text, "-- {} queued message share(s)", self.count);
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, arrived_ms: u64) -> QueueEntry {
        QueueEntry {
            queue_id: id.into(),
            sender: String::new(),
            domain: "remote.test".into(),
            pool: None,
            site: None,
            state: QueueState::Active,
            arrived_ms,
            age_s: 0,
            attempts: 0,
            next_attempt_ms: None,
            last_reply: None,
            recipients: vec![],
        }
    }

    #[test]
    fn the_filter_reads_back_what_it_writes() {
        let f = ListFilter {
            domain: Some("remote.test".into()),
            state: Some(QueueState::Deferred),
            older_than_ms: Some(90_000),
            limit: Some(3),
        };
        let words = f.to_words();
        assert_eq!(ListFilter::parse(words.split_whitespace()), Ok(f));
        assert_eq!(ListFilter::parse("".split_whitespace()), Ok(ListFilter::default()));
    }

    #[test]
    fn bad_filter_words_are_named() {
        let err = |s: &str| ListFilter::parse(s.split_whitespace()).unwrap_err().to_string();
        assert!(err("state=stuck").contains("\"stuck\""));
        assert!(err("older_than=90").contains("unit"));
        assert!(err("limit=0").contains("at least 1"));
        assert!(err("colour=red").contains("colour=red"));
    }

    #[test]
    fn the_filter_admits_by_domain_state_and_age() {
        let f = ListFilter { domain: Some("a.test".into()), older_than_ms: Some(1000), ..Default::default() };
        assert!(f.admits("A.test", QueueState::Held, 0, 1000));
        assert!(!f.admits("b.test", QueueState::Held, 0, 1000));
        assert!(!f.admits("a.test", QueueState::Held, 1, 1000), "999 ms old");
        let held = ListFilter { state: Some(QueueState::Held), ..Default::default() };
        assert!(!held.admits("a.test", QueueState::Deferred, 0, 0));
    }

    #[test]
    fn merging_keeps_the_oldest_up_to_the_limit_and_counts_all_matches() {
        let parts = vec![(vec![entry("b", 20), entry("d", 40)], 5), (vec![entry("a", 10), entry("c", 30)], 2)];
        let list = QueueList::merge(parts, Some(3));
        let ids: Vec<&str> = list.messages.iter().map(|m| m.queue_id.as_str()).collect();
        assert_eq!(ids, ["a", "b", "c"]);
        assert_eq!((list.count, list.matched), (3, 7));
        assert!(list.text().contains("-- 3 queued message share(s) shown of 7 matching"));
    }
}
