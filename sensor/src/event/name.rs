//! Every `event.name` the sensor writes, and the per-kind loss keys derived from them.
//! docs/events.md documents each one.
use sensor_common::event::Kind;

macro_rules! names {
    ($($(#[$doc:meta])* $variant:ident = $name:literal,)*) => {
        /// An `event.name`.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Name {
            $($(#[$doc])* $variant,)*
        }

        impl Name {
            /// Every name.
            pub const ALL: &[Self] = &[$(Self::$variant,)*];

            /// The `event.name` value.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $name,)*
                }
            }

            /// `mnsensor.loss.<event.name>`: the `sensor.event_loss` key counting lost records
            /// of this name.
            pub const fn loss_key(self) -> &'static str {
                match self {
                    $(Self::$variant => concat!("mnsensor.loss.", $name),)*
                }
            }
        }
    };
}

names! {
    ProcessExec = "process.exec",
    ProcessFork = "process.fork",
    ProcessExit = "process.exit",
    FileOpen = "file.open",
    FileClose = "file.close",
    FileAccess = "file.access",
    FileDelete = "file.delete",
    FileRename = "file.rename",
    FileLink = "file.link",
    FileTruncate = "file.truncate",
    FileChmod = "file.chmod",
    FileChown = "file.chown",
    /// Names only the losses of kernel change records (the records are named by operation).
    FileChange = "file.change",
    NetworkConnect = "network.connect",
    NetworkAccept = "network.accept",
    NetworkClose = "network.close",
    PolicyDecision = "policy.decision",
    SensorStart = "sensor.start",
    SensorStop = "sensor.stop",
    SensorEventLoss = "sensor.event_loss",
    SensorPolicyReloaded = "sensor.policy_reloaded",
    SensorPolicyError = "sensor.policy_error",
    SensorAlert = "sensor.alert",
    SensorConfigReloaded = "sensor.config_reloaded",
    SensorHeartbeat = "sensor.heartbeat",
    SensorGap = "sensor.gap",
    SensorTamper = "sensor.tamper",
    DetectionExfiltration = "detection.exfiltration",
    DetectionBulkRead = "detection.bulk_read",
    DetectionStaging = "detection.staging",
    DetectionDnsTunnel = "detection.dns_tunnel",
    DetectionRemovableMedia = "detection.removable_media",
    DetectionSlowDrip = "detection.slow_drip",
    DetectionPrint = "detection.print",
    EgressRawSocket = "egress.raw_socket",
}

impl Name {
    /// The name of a kernel record kind (and of its losses).
    pub const fn of_kind(kind: Kind) -> Self {
        match kind {
            Kind::Exec => Self::ProcessExec,
            Kind::Fork => Self::ProcessFork,
            Kind::Exit => Self::ProcessExit,
            Kind::FileOpen => Self::FileOpen,
            Kind::NetConnect => Self::NetworkConnect,
            Kind::NetAccept => Self::NetworkAccept,
            Kind::NetClose => Self::NetworkClose,
            Kind::FileClose => Self::FileClose,
            Kind::PolicyDecision => Self::PolicyDecision,
            Kind::FileChange => Self::FileChange,
            Kind::Tamper => Self::SensorTamper,
        }
    }
}

#[cfg(test)]
mod tests {
    use sensor_common::event::Kind;

    use super::Name;

    #[test]
    fn names_and_loss_keys_are_documented() {
        let doc = include_str!("../../../docs/events.md");
        for name in Name::ALL.iter().filter(|n| **n != Name::FileChange) {
            assert!(
                doc.contains(&format!("`{}`", name.as_str())),
                "{} is not in docs/events.md",
                name.as_str()
            );
        }
        for kind in Kind::ALL {
            let key = Name::of_kind(kind).loss_key();
            assert!(doc.contains(&format!("| `{key}`")), "{key} is not in docs/events.md");
        }
        assert_eq!(Name::FileOpen.loss_key(), "mnsensor.loss.file.open");
    }
}
