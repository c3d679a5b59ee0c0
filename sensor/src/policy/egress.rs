//! The `egress` section of an AccessPolicy: where tainted data may go, and what happens
//! otherwise (docs/policy.md, docs/detections.md). Parsed by `parse/egress.rs`, applied by
//! `sensor/src/egress/` (kernel allow list and action) and `sensor/src/analyze/exfil.rs`.
use super::model::Network;
use crate::analyze::exfil::{Allowed, Settings};

/// What happens to a tainted process's connect or send to a destination not allowed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum EgressAction {
    /// Report it (`detection.exfiltration`).
    #[default]
    Alert,
    /// Refuse it in the kernel with EPERM, and report it.
    Deny,
}

impl EgressAction {
    pub const NAMES: &'static [&'static str] = &["alert", "deny"];

    pub fn from_name(s: &str) -> Option<Self> {
        match s {
            "alert" => Some(Self::Alert),
            "deny" => Some(Self::Deny),
            _ => None,
        }
    }
}

/// One allowed destination.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllowedDestination {
    pub network: Network,
    /// Empty: every port. At most eight (the kernel table's width).
    pub ports: Vec<u16>,
}

/// The section, with its defaults filled in.
#[derive(Clone, Debug, PartialEq)]
pub struct EgressPolicy {
    /// Default `alert`.
    pub action: EgressAction,
    pub allow: Vec<AllowedDestination>,
    /// Users allowed to send tainted data to allowed destinations (empty: everyone).
    pub allowed_uids: Vec<u32>,
    /// Tainted bytes to one destination that make an exfiltration (default 1).
    pub min_bytes: u64,
    /// Bulk read thresholds per user and window (defaults 100 MiB, 100 files).
    pub bulk_bytes: u64,
    pub bulk_files: u64,
    /// Episode window in seconds (default 600).
    pub window_seconds: u64,
    /// `slow_drip`: budget per user and destination over a long window (defaults 10 MiB,
    /// 24 h).
    pub slow_drip: crate::analyze::drip::DripSettings,
    /// `print.spool`: CUPS spool directories (default `/var/spool/cups`).
    pub print_spool: Vec<std::path::PathBuf>,
    /// `dns_tunnel`: label, name and query-count thresholds of `detection.dns_tunnel`.
    pub dns_tunnel: crate::analyze::dns::Settings,
}

impl Default for EgressPolicy {
    fn default() -> Self {
        let s = Settings::default();
        Self {
            action: EgressAction::Alert,
            allow: Vec::new(),
            allowed_uids: Vec::new(),
            min_bytes: s.min_bytes,
            bulk_bytes: s.bulk_bytes,
            bulk_files: s.bulk_files,
            window_seconds: (s.window_ns / 1_000_000_000) as u64,
            slow_drip: Default::default(),
            print_spool: vec![crate::analyze::print::DEFAULT_SPOOL.into()],
            dns_tunnel: Default::default(),
        }
    }
}

impl EgressPolicy {
    /// The detector's settings.
    pub fn settings(&self) -> Settings {
        Settings {
            allowed: self
                .allow
                .iter()
                .map(|a| Allowed { network: a.network, ports: a.ports.clone() })
                .collect(),
            allowed_uids: self.allowed_uids.clone(),
            min_bytes: self.min_bytes,
            bulk_bytes: self.bulk_bytes,
            bulk_files: self.bulk_files,
            window_ns: i128::from(self.window_seconds) * 1_000_000_000,
        }
    }
}

/// The one `egress` section of a set; a second one is an error (one allow list for the
/// whole host).
pub(super) fn section(
    sources: &[super::compile::SourceFile],
    diag: &mut super::error::Diagnostics,
) -> Option<EgressPolicy> {
    let mut found: Option<EgressPolicy> = None;
    for src in sources {
        for doc in &src.docs {
            let super::model::Body::Policy(def) = &doc.body else { continue };
            let Some(e) = &def.egress else { continue };
            if found.is_some() {
                diag.error(
                    &src.path,
                    e.pos,
                    super::error::Problem::Invalid(
                        "a second `egress` section; a policy set has one (the host's egress rules)"
                            .to_owned(),
                    ),
                );
            } else {
                found = Some((*e.value).clone());
            }
        }
    }
    found
}
