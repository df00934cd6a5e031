//! Log lines for journald: when stderr is a journal stream, each line
//! starts with its syslog priority (`<3>` error, `<4>` warning, `<6>` info,
//! `<7>` debug and trace, sd-daemon(3)), which journald takes off and keeps
//! as the entry's priority. Without it every line was "info" and
//! `journalctl -p warning` showed nothing.

use std::fmt;
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// True when systemd connected stderr to the journal (it sets
/// `JOURNAL_STREAM`, see systemd.exec(5)).
pub fn under_journald() -> bool {
    std::env::var_os("JOURNAL_STREAM").is_some()
}

/// The priority prefix of a level.
pub fn priority(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        _ => 7,
    }
}

/// An event format with the syslog priority before each line.
#[derive(Debug, Clone)]
pub struct SyslogPriority<F>(pub F);

impl<S, N, F> FormatEvent<S, N> for SyslogPriority<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'w> FormatFields<'w> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        write!(writer, "<{}>", priority(event.metadata().level()))?;
        self.0.format_event(ctx, writer, event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_map_to_syslog_priorities() {
        assert_eq!(
            [Level::ERROR, Level::WARN, Level::INFO, Level::DEBUG, Level::TRACE].map(|l| priority(&l)),
            [3, 4, 6, 7, 7]
        );
    }
}
