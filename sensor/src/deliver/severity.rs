//! How severe a record is, for the receivers that want a level: OTLP `SeverityNumber` and
//! the syslog severity. One mapping, documented in docs/siem.md.

/// A record's level.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Info,
    Warn,
    Error,
}

impl Level {
    /// The level of a record named `event` whose `mnsensor.decision` is `decision`:
    /// * ERROR: `sensor.alert`, `sensor.policy_error`;
    /// * WARN: `sensor.event_loss`, and `policy.decision` records that refused or would
    ///   have refused the access or asked for an alert (`deny`, `kill`, `would_deny`, `alert`);
    /// * INFO: everything else (`policy.decision` with `audit` included).
    pub fn of(event: &str, decision: Option<&str>) -> Self {
        match event {
            "sensor.alert" | "sensor.policy_error" => Self::Error,
            "sensor.event_loss" => Self::Warn,
            "policy.decision" if decision != Some("audit") => Self::Warn,
            _ => Self::Info,
        }
    }

    /// OTLP `SeverityNumber` (INFO 9, WARN 13, ERROR 17) and `SeverityText`.
    pub fn otlp(self) -> (i32, &'static str) {
        match self {
            Self::Info => (9, "INFO"),
            Self::Warn => (13, "WARN"),
            Self::Error => (17, "ERROR"),
        }
    }

    /// RFC 5424 severity: informational (6), warning (4), error (3).
    pub fn syslog(self) -> u8 {
        match self {
            Self::Info => 6,
            Self::Warn => 4,
            Self::Error => 3,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Level;

    #[test]
    fn decisions_that_refuse_are_warnings() {
        assert_eq!(Level::of("policy.decision", Some("deny")), Level::Warn);
        assert_eq!(Level::of("policy.decision", Some("would_deny")), Level::Warn);
        assert_eq!(Level::of("policy.decision", Some("audit")), Level::Info);
        assert_eq!(Level::of("sensor.alert", None).otlp(), (17, "ERROR"));
        assert_eq!(Level::of("file.open", None).syslog(), 6);
    }
}
