//! What the admin commands answer, as data: each answer is a struct that
//! serialises to JSON (`--json`) and renders the text an operator reads,
//! so both outputs come from the same values and a new field is one line.
//!
//! Field names are snake_case and stable (README, "JSON output"): times are
//! `*_ms` (milliseconds since the Unix epoch), durations say their unit
//! (`age_s`), and a value that may be absent is `null`, never left out.

use serde::Serialize;

/// How an answer is written for the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// Lines for people (what the CLI printed before `--json`).
    #[default]
    Text,
    /// One JSON document.
    Json,
}

/// An answer with a text rendering; its JSON is its `Serialize`.
pub trait Report: Serialize {
    /// The text form, every line ending in `\n`.
    fn text(&self) -> String;
}

/// `report` in `format`. JSON ends with a newline, like the text.
pub fn emit<R: Report>(report: &R, format: Format) -> String {
    match format {
        Format::Text => report.text(),
        Format::Json => {
            // Serialising these plain structs (strings, numbers, vectors)
            // cannot fail; an error would be a bug, reported as one.
            let mut out = serde_json::to_string_pretty(report)
                .unwrap_or_else(|e| format!("{{\"error\": \"serialising the answer: {e}\"}}"));
            out.push('\n');
            out
        }
    }
}

/// A sender as the text shows it: `<>` for the null sender.
pub fn sender_text(sender: &str) -> &str {
    if sender.is_empty() {
        "<>"
    } else {
        sender
    }
}
