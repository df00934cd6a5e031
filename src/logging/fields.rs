//! Text-format log fields by logfmt rules, so that no value can forge a
//! field or a line.
//!
//! Log lines are read by machines (fail2ban bans the address after
//! `client=`), and many values come from the network or from a message: a
//! user name in AUTH, an EHLO name, an address, a Message-ID, a remote
//! reply. tracing-subscriber's default text format writes such values as
//! they are, so a user name `x client=192.0.2.77` or one with a line feed
//! in it put a forged `client=` (or a whole forged line) in the log.
//!
//! Here a value is written bare only when it is made of characters that
//! cannot end a field: anything with a space, `=`, `"`, `\`, a control
//! character or a Unicode line/format control is written in double quotes
//! with `"` and `\` escaped and control characters as `\n`, `\r`, `\t`,
//! `\xNN` or `\u{NNNN}`. So a field never holds a raw ` key=` and a line
//! never holds a raw line break. String fields (`proto = "smtp"`, a
//! `String` passed as is) are always quoted, as they were before; values
//! given with `%`/`?` (addresses, ids, replies) are quoted when they need
//! it; numbers and booleans are bare. The event's message (fixed text in
//! the code, or rarely a formatted reason) is written unquoted with control
//! characters escaped the same way.
//!
//! JSON output is untouched: serde escapes it.

use std::cell::Cell;
use std::fmt::{self, Write};
use tracing::field::{Field, Visit};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::FormatFields;

/// The field formatter of the text log format (see the module doc).
#[derive(Debug, Clone, Copy, Default)]
pub struct Logfmt;

impl<'w> FormatFields<'w> for Logfmt {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'w>, fields: R) -> fmt::Result {
        // The scratch of the thread's last event, taken out while in use.
        let scratch = SCRATCH.try_with(|s| s.take()).unwrap_or_default();
        let mut v = Visitor { writer, first: true, scratch, result: Ok(()) };
        fields.record(&mut v);
        if v.scratch.capacity() <= MAX_KEPT_SCRATCH {
            let _ = SCRATCH.try_with(|s| s.set(v.scratch));
        }
        v.result
    }
}

thread_local! {
    /// The `Visitor`'s scratch, kept between events: a line's values are
    /// formatted into it without allocating anew each time.
    static SCRATCH: Cell<String> = const { Cell::new(String::new()) };
}

/// A scratch that grew larger (a huge value) is not kept.
const MAX_KEPT_SCRATCH: usize = 4096;

struct Visitor<'w> {
    writer: Writer<'w>,
    /// Nothing written yet: no space before the first field.
    first: bool,
    /// A `Debug`/`Display` value is formatted here first, then escaped.
    scratch: String,
    result: fmt::Result,
}

impl Visitor<'_> {
    fn key(&mut self, field: &Field) -> fmt::Result {
        if !self.first {
            self.writer.write_char(' ')?;
        }
        self.first = false;
        if field.name() != "message" {
            self.writer.write_str(field.name())?;
            self.writer.write_char('=')?;
        }
        Ok(())
    }

    fn text(&mut self, field: &Field, value: &str, always_quote: bool) {
        if self.result.is_err() {
            return;
        }
        self.result = self.key(field).and_then(|()| match field.name() {
            "message" => write_escaped(&mut self.writer, value),
            _ if always_quote => write_quoted(&mut self.writer, value),
            _ => write_value(&mut self.writer, value),
        });
    }

    fn bare(&mut self, field: &Field, value: &dyn fmt::Display) {
        if self.result.is_err() {
            return;
        }
        self.result = self.key(field).and_then(|()| write!(self.writer, "{value}"));
    }
}

impl Visit for Visitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.text(field, value, true);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        // Writing into a String cannot fail.
        let _ = write!(scratch, "{value:?}");
        self.text(field, &scratch, false);
        self.scratch = scratch;
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.bare(field, &value);
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.bare(field, &value);
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.bare(field, &value);
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.bare(field, &value);
    }
}

/// A character that cannot stand in a bare value.
fn needs_quotes(c: char) -> bool {
    c.is_whitespace() || matches!(c, '=' | '"' | '\\') || needs_escape(c)
}

/// A character written as an escape even inside quotes: control
/// characters, and the Unicode line separators and bidi controls that a
/// terminal or a log viewer could render as a line break or reorder.
fn needs_escape(c: char) -> bool {
    c.is_control() || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// One value: bare when that is unambiguous, else quoted and escaped.
pub fn write_value(w: &mut impl Write, value: &str) -> fmt::Result {
    let quote = match value.is_ascii() {
        // The ASCII characters `needs_quotes` names, without decoding.
        true => value.bytes().any(|b| b <= b' ' || b == 0x7f || matches!(b, b'=' | b'"' | b'\\')),
        false => value.chars().any(needs_quotes),
    };
    if !value.is_empty() && !quote {
        return w.write_str(value);
    }
    write_quoted(w, value)
}

/// One value in double quotes, escaped.
pub fn write_quoted(w: &mut impl Write, value: &str) -> fmt::Result {
    w.write_char('"')?;
    write_runs(w, value, |c| matches!(c, '"' | '\\') || needs_escape(c))?;
    w.write_char('"')
}

/// Text with its control characters escaped, otherwise as it is.
fn write_escaped(w: &mut impl Write, text: &str) -> fmt::Result {
    write_runs(w, text, needs_escape)
}

/// `text` with each character `special` says escaped (`"` and `\` with a
/// backslash, the others as [`write_char_escaped`] does) and the runs
/// between written whole: a log line is written a run at a time, not a
/// character at a time.
fn write_runs(w: &mut impl Write, text: &str, special: impl Fn(char) -> bool) -> fmt::Result {
    let mut run = 0;
    for (i, c) in text.char_indices().filter(|&(_, c)| special(c)) {
        w.write_str(&text[run..i])?;
        match c {
            '"' => w.write_str("\\\"")?,
            '\\' => w.write_str("\\\\")?,
            c => write_char_escaped(w, c)?,
        }
        run = i + c.len_utf8();
    }
    w.write_str(&text[run..])
}

fn write_char_escaped(w: &mut impl Write, c: char) -> fmt::Result {
    match c {
        '\n' => w.write_str("\\n"),
        '\r' => w.write_str("\\r"),
        '\t' => w.write_str("\\t"),
        c if (c as u32) < 0x80 && needs_escape(c) => write!(w, "\\x{:02x}", c as u32),
        c if needs_escape(c) => write!(w, "\\u{{{:04x}}}", c as u32),
        c => w.write_char(c),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(s: &str) -> String {
        let mut out = String::new();
        write_value(&mut out, s).unwrap();
        out
    }

    #[test]
    fn plain_values_stay_bare() {
        assert_eq!(value("alice@example.net"), "alice@example.net");
        assert_eq!(value("203.0.113.9"), "203.0.113.9");
        assert_eq!(value("mx.remote.test[127.0.0.3:25]"), "mx.remote.test[127.0.0.3:25]");
        assert_eq!(value("<m1@example.org>"), "<m1@example.org>");
    }

    #[test]
    fn a_value_cannot_forge_a_field() {
        assert_eq!(value("victim client=192.0.2.77 x"), r#""victim client=192.0.2.77 x""#);
        assert_eq!(value("a=b"), r#""a=b""#);
        assert_eq!(value(""), r#""""#);
        assert_eq!(value(r#"say "hi" \ bye"#), r#""say \"hi\" \\ bye""#);
    }

    #[test]
    fn a_value_cannot_forge_a_line() {
        let v = value("x\nWARN authentication failed core=0 client=198.51.100.99");
        assert!(!v.contains('\n'));
        assert_eq!(v, r#""x\nWARN authentication failed core=0 client=198.51.100.99""#);
        assert_eq!(value("a\rb\0c\x1bd\x7f"), r#""a\rb\x00c\x1bd\x7f""#);
        assert_eq!(value("a\u{2028}b\u{85}c\u{202e}"), r#""a\u{2028}b\u{0085}c\u{202e}""#);
    }

    #[test]
    fn printable_utf8_is_kept() {
        assert_eq!(value("jürgen@exämple.de"), "jürgen@exämple.de");
        assert_eq!(value("\u{fffd}\u{fffd}"), "\u{fffd}\u{fffd}");
    }

    #[test]
    fn quoted_values_are_escaped() {
        let mut out = String::new();
        write_quoted(&mut out, "smtp").unwrap();
        assert_eq!(out, r#""smtp""#);
        out.clear();
        write_quoted(&mut out, "a\"b\nc").unwrap();
        assert_eq!(out, r#""a\"b\nc""#);
    }

    /// The character-at-a-time writer this module had before it wrote
    /// runs: the output must not change by a byte.
    fn quoted_by_chars(value: &str) -> String {
        let mut out = String::from('"');
        for c in value.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                c => write_char_escaped(&mut out, c).unwrap(),
            }
        }
        out.push('"');
        out
    }

    #[test]
    fn runs_are_written_as_characters_were() {
        let cases = [
            "",
            "plain",
            "250 2.0.0 Ok: queued as 1234",
            r#""at both ends""#,
            r#"\"#,
            "a\nb\r\n\t\0\x7f end",
            "x\u{2028}y\u{85}z\u{202e}\u{2066}",
            "jürgen \"q\" \\ ünïcödé\n",
            "\u{fffd}\u{fffd}",
        ];
        for case in cases {
            let mut out = String::new();
            write_quoted(&mut out, case).unwrap();
            assert_eq!(out, quoted_by_chars(case), "{case:?}");
            let mut message = String::new();
            write_escaped(&mut message, case).unwrap();
            let by_chars: String = case
                .chars()
                .map(|c| {
                    let mut one = String::new();
                    write_char_escaped(&mut one, c).unwrap();
                    one
                })
                .collect();
            assert_eq!(message, by_chars, "{case:?}");
        }
    }

    #[test]
    fn ascii_values_are_quoted_as_by_characters() {
        for b in 0u8..=0x7f {
            let v = format!("a{}b", char::from(b));
            let by_chars = v.chars().any(needs_quotes);
            assert_eq!(value(&v).starts_with('"'), by_chars, "{b:#x}");
        }
    }

    #[test]
    fn messages_are_unquoted_but_escaped() {
        let mut out = String::new();
        write_escaped(&mut out, "no route for x\ny").unwrap();
        assert_eq!(out, r"no route for x\ny");
    }
}
