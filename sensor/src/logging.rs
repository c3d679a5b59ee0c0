//! The daemon's own diagnostics on stderr: the filter (`--log-level`, checked as a usage
//! error) and the format (`--log-format`: text, json, journal).
use std::{fmt, io::IsTerminal as _};

use clap::ValueEnum;
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::{
    EnvFilter,
    fmt::{FmtContext, FormatEvent, FormatFields, format::Writer},
    registry::LookupSpan,
};

/// `--log-format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// `journal` when stderr is connected to the journal (`$JOURNAL_STREAM`), else `text`.
    Auto,
    /// Human-readable lines; ANSI colours only when stderr is a terminal and `NO_COLOR` is unset.
    Text,
    /// One JSON object per line.
    Json,
    /// `<N>` syslog-priority prefixes and no time stamp: journald adds both.
    Journal,
}

const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];

/// Checks a `--log-level` value: a level, or `tracing` directives (`target=level`, comma
/// separated). A bare word that is not a level (`warning`, `verbose`) would be read as a
/// target name and hide every diagnostic, so it is refused.
pub fn parse_filter(text: &str) -> Result<String, String> {
    for directive in text.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let bare = !directive.contains('=') && !directive.contains('[');
        if bare && !LEVELS.contains(&directive.to_ascii_lowercase().as_str()) {
            return Err(format!(
                "`{directive}` is not a log level (use one of {}, or TARGET=LEVEL such as sensor::daemon=debug)",
                LEVELS.join(", ")
            ));
        }
    }
    EnvFilter::try_new(text).map(|_| text.to_owned()).map_err(|e| format!("invalid log filter `{text}`: {e}"))
}

/// Installs the global subscriber. `filter` was checked by [`parse_filter`].
pub fn init(filter: &str, format: LogFormat) {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_writer(crate::seal::redact::stderr).with_env_filter(filter);
    match resolve(format) {
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(false).init(),
        LogFormat::Journal => builder.with_ansi(false).event_format(Journal).init(),
        _ => builder.with_ansi(colour()).init(),
    }
}

fn resolve(format: LogFormat) -> LogFormat {
    match format {
        LogFormat::Auto if std::env::var_os("JOURNAL_STREAM").is_some() => LogFormat::Journal,
        LogFormat::Auto => LogFormat::Text,
        f => f,
    }
}

fn colour() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// The journal line format: `<prio>target: message key=value…`.
struct Journal;

impl<S, N> FormatEvent<S, N> for Journal
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        write!(writer, "<{}>{}: ", priority(*meta.level()), meta.target())?;
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

/// syslog(3) priority of a level.
fn priority(level: Level) -> u8 {
    match level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        _ => 7,
    }
}

#[cfg(test)]
mod tests {
    use super::parse_filter;

    #[test]
    fn typos_are_refused_and_filters_accepted() {
        for good in ["info", "WARN", "off", "warn,sensor::daemon=debug", "sensor=trace"] {
            assert_eq!(parse_filter(good).as_deref(), Ok(good));
        }
        for bad in ["warning", "verbose", "info,loud"] {
            let e = parse_filter(bad).unwrap_err();
            assert!(e.contains("not a log level"), "{bad}: {e}");
        }
        assert!(parse_filter("sensor=loud").is_err());
    }
}
