//! What the filters decided about a traced message (issue 18 item 5):
//! the header fields the checks and milters left in the stored message
//! (the top `Authentication-Results`, `X-Ringmail-Filter`, `X-Spam-*`,
//! `X-Virus-*`), and, given the server's log, its lines naming the
//! message's queue id with a milter decision.
//!
//! Pure functions over bytes and text; `trace` calls them.

use serde::Serialize;

/// One filter decision shown by `ringmail trace`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FilterNote {
    /// "header" (in the stored message) or "log" (a line of `--log`).
    pub source: &'static str,
    /// The field (`Name: value`, unfolded) or the log line's fields.
    pub text: String,
}

/// The longest field or log line shown (a milter may add long headers).
const MAX_TEXT: usize = 1000;

/// The filter fields of the stored message's header section, in order;
/// only the first (top, ours) Authentication-Results.
pub fn from_message(body: &[u8]) -> Vec<FilterNote> {
    let head = crate::message::header_section(body);
    let mut notes = Vec::new();
    let mut seen_ar = false;
    for field in unfolded(head) {
        let Some((name, value)) = field.split_once(':') else { continue };
        let lower = name.to_ascii_lowercase();
        let wanted = match lower.as_str() {
            "authentication-results" => !std::mem::replace(&mut seen_ar, true),
            "x-ringmail-filter" => true,
            l => l.starts_with("x-spam-") || l.starts_with("x-virus-"),
        };
        if wanted {
            notes.push(FilterNote { source: "header", text: clip(format!("{name}: {}", value.trim())) });
        }
    }
    notes
}

/// The lines of `log` about `queue_id` that carry a milter decision
/// (`milter=` and `action=`), from the level word on.
pub fn from_log(log: &str, queue_id: &str) -> Vec<FilterNote> {
    let key = format!("queue_id={queue_id}");
    log.lines()
        .filter(|l| l.split(' ').any(|w| w == key || w == format!("queue_id=\"{queue_id}\"")))
        .filter(|l| l.contains(" milter=") && l.contains(" action="))
        .map(|l| {
            // Drop the timestamp: trace prints its own times.
            let text = match l.find(" INFO ").or_else(|| l.find(" WARN ")) {
                Some(at) => l[at + 1..].to_string(),
                None => l.to_string(),
            };
            FilterNote { source: "log", text: clip(text) }
        })
        .collect()
}

fn clip(mut s: String) -> String {
    if s.len() > MAX_TEXT {
        let mut end = MAX_TEXT;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}

/// The header section's fields, folding undone, as (lossy) text.
fn unfolded(head: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(head);
    let mut fields: Vec<String> = Vec::new();
    for line in text.split('\n') {
        let line = line.trim_end_matches('\r');
        if line.is_empty() {
            continue;
        }
        match (line.starts_with([' ', '\t']), fields.last_mut()) {
            (true, Some(last)) => {
                last.push(' ');
                last.push_str(line.trim_start());
            }
            _ => fields.push(line.to_string()),
        }
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_filters_fields_are_picked_unfolded_and_only_the_top_authentication_results() {
        let msg = b"Authentication-Results: mx.test;\r\n\tiprev=fail policy.iprev=192.0.2.9 (no PTR record)\r\n\
X-Ringmail-Filter: mx.test; dnsbl=listed score=3 (zen.test=127.0.0.2)\r\n\
Authentication-Results: elsewhere; spf=pass\r\nX-Spam-Status: No, score=1.2\r\nSubject: hi\r\n\r\nX-Spam: body\r\n";
        let notes: Vec<String> = from_message(msg).into_iter().map(|n| n.text).collect();
        assert_eq!(
            notes,
            [
                "Authentication-Results: mx.test; iprev=fail policy.iprev=192.0.2.9 (no PTR record)",
                "X-Ringmail-Filter: mx.test; dnsbl=listed score=3 (zen.test=127.0.0.2)",
                "X-Spam-Status: No, score=1.2",
            ]
        );
    }

    #[test]
    fn only_milter_decisions_about_this_queue_id_are_taken_from_the_log() {
        let log = "2026-12-06T18:00:00Z  INFO milter queue_id=00000000000000ab client=127.0.0.1 milter=inet:127.0.0.1:1 action=accept changes=2\n\
2026-12-06T18:00:00Z  INFO message accepted queue_id=00000000000000ab client=127.0.0.1\n\
2026-12-06T18:00:01Z  INFO milter queue_id=00000000000000ac client=127.0.0.1 milter=inet:127.0.0.1:1 action=accept changes=0\n";
        let notes = from_log(log, "00000000000000ab");
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(notes[0].text.starts_with("INFO milter queue_id=00000000000000ab"), "{notes:?}");
        assert!(notes[0].text.contains("action=accept changes=2"));
    }
}
