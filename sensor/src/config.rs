//! The daemon's configuration: a YAML file (`--config`) or the embedded default, then the
//! command-line flags on top.
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::policy::yaml::Pos;

pub mod cli;
pub mod schema;

/// The embedded default configuration, documented key by key.
pub const DEFAULT_YAML: &str = include_str!("../config/default.yaml");

/// The configuration file of an installed sensor (`mnsensor config check` without FILE).
pub const DEFAULT_CONFIG_PATH: &str = "/etc/mnsensor/config.yaml";

/// Where the running daemon answers `mnsensor status`.
pub const DEFAULT_STATUS_SOCKET: &str = "/run/mnsensor/status.sock";

/// Largest configuration file accepted.
const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// Configuration file contents. Unknown keys are errors.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Protected files and directories (`file.open` is reported for opens inside them).
    pub protect: Vec<PathBuf>,
    /// Output specs: `stdout` or `jsonl:PATH`.
    pub outputs: Vec<String>,
    /// Ring buffer size in bytes (power of two, ≥ 4096).
    pub ring_buffer_bytes: u32,
    /// Drain period when the kernel did not wake the daemon, in milliseconds.
    pub drain_interval_ms: u64,
    /// State directory (created 0700): the ledger, its signing key, output cursors.
    pub state_dir: PathBuf,
    /// The ledger every output reads from (docs/ledger.md).
    pub ledger: Ledger,
    /// `jsonl:` file outputs: rotation.
    pub jsonl: crate::deliver::jsonl::Settings,
    /// Policy files or directories; empty: /etc/mnsensor/policies.d when it exists, else
    /// the embedded default (which protects nothing).
    pub policies: Vec<PathBuf>,
    /// How `enforce`-mode policies are enforced.
    pub enforcement: Enforcement,
    /// Capacity of the kernel's protected-inode map: protected paths plus the files found
    /// below protected directories at start plus files created in them while running.
    pub max_protected_inodes: u32,
    /// The unix socket `mnsensor status` asks (created 0600 in a 0700 directory).
    pub status_socket: PathBuf,
    /// `--output otlp…` settings (docs/operations.md); unset keys come from the
    /// `OTEL_EXPORTER_OTLP_*` variables.
    pub otlp: crate::deliver::otlp::OtlpConfig,
    /// `--output syslog+…` settings.
    pub syslog: crate::deliver::syslog::SyslogConfig,
    /// The `sensor.heartbeat` record.
    pub heartbeat: crate::health::HeartbeatConfig,
    /// The Prometheus endpoint (off unless `metrics.listen` is set).
    pub metrics: crate::health::metrics::MetricsConfig,
    /// cgroup v2 directory the egress programs attach to when a policy has an `egress`
    /// section (default `/sys/fs/cgroup`, every process).
    pub egress_cgroup: PathBuf,
    /// Seconds between self-inventories (are the sensor's programs loaded and its links
    /// attached; docs/operations.md); 0: none.
    pub inventory_interval_s: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            protect: Vec::new(),
            outputs: vec!["stdout".to_owned()],
            ring_buffer_bytes: 4 << 20,
            drain_interval_ms: 20,
            state_dir: PathBuf::from("/var/lib/mnsensor"),
            ledger: Ledger::default(),
            jsonl: crate::deliver::jsonl::Settings::default(),
            max_protected_inodes: 65_536,
            policies: Vec::new(),
            enforcement: Enforcement::default(),
            status_socket: PathBuf::from(DEFAULT_STATUS_SOCKET),
            egress_cgroup: PathBuf::from("/sys/fs/cgroup"),
            inventory_interval_s: 30,
            otlp: Default::default(),
            syslog: Default::default(),
            heartbeat: Default::default(),
            metrics: Default::default(),
        }
    }
}

/// `ledger:` settings.
#[derive(Clone, Debug, Deserialize, serde::Serialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct Ledger {
    /// A new segment file starts once the current one reaches this size.
    pub segment_bytes: u64,
    /// Most bytes the ledger may take; then fully delivered segments are removed first, then
    /// the oldest undelivered ones (with a `sensor.alert` naming their sequence numbers).
    pub max_bytes: u64,
    /// Group commit: written records are fsynced this often (a power loss can cost the
    /// records of one interval).
    pub fsync_interval_ms: u64,
    /// A signed checkpoint after this many records...
    pub checkpoint_records: u64,
    /// ...or this many milliseconds after the previous one.
    pub checkpoint_interval_ms: u64,
}

impl Default for Ledger {
    fn default() -> Self {
        Self {
            segment_bytes: 16 << 20,
            max_bytes: 1 << 30,
            fsync_interval_ms: 1000,
            checkpoint_records: 10_000,
            checkpoint_interval_ms: 10_000,
        }
    }
}

impl Ledger {
    /// The writer's settings.
    pub fn settings(&self) -> crate::seal::ledger::Settings {
        crate::seal::ledger::Settings {
            segment_bytes: self.segment_bytes,
            max_bytes: self.max_bytes,
            fsync_interval: std::time::Duration::from_millis(self.fsync_interval_ms),
            checkpoint_records: self.checkpoint_records,
            checkpoint_interval: std::time::Duration::from_millis(self.checkpoint_interval_ms),
        }
    }
}

/// `enforcement:` settings.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct Enforcement {
    /// Longest a process waits for a decision, in milliseconds; then `fail_mode` applies
    /// and an alert is written.
    pub deadline_ms: u64,
    /// `open` (allow when late: the file server keeps serving) or `closed` (deny when late).
    pub fail_mode: FailMode,
    /// How long the fanotify responder reuses a decision for the same subject, program,
    /// file and operations, in milliseconds (0: never). A reload drops every cached decision
    /// at once, whatever this says; schedules change at minute boundaries.
    pub decision_cache_ms: u64,
}

impl Default for Enforcement {
    fn default() -> Self {
        Self { deadline_ms: 200, fail_mode: FailMode::Open, decision_cache_ms: 1000 }
    }
}

/// What a late decision becomes.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum FailMode {
    Open,
    Closed,
}

/// One problem of a configuration: where (none for the command line) and what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub pos: Option<Pos>,
    pub message: String,
}

/// A configuration that could not be read or is invalid.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read configuration {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    /// The file is larger than [`MAX_CONFIG_BYTES`].
    #[error("configuration {path} is {size} bytes, more than the {max}-byte limit")]
    TooLarge { path: PathBuf, size: u64, max: u64 },
    /// Every problem found (YAML syntax, unknown or duplicate keys, wrong types, ranges),
    /// each with its line and column; nothing of the configuration was used.
    #[error("{}", show_problems(source_name, problems))]
    Invalid { source_name: String, problems: Vec<Problem> },
}

fn show_problems(source_name: &str, problems: &[Problem]) -> String {
    let n = problems.len();
    let mut out = format!("invalid configuration {source_name}: {n} error{}", if n == 1 { "" } else { "s" });
    for p in problems {
        match p.pos {
            Some(pos) => out.push_str(&format!("\n  {source_name}:{pos}: {}", p.message)),
            None => out.push_str(&format!("\n  {source_name}: {}", p.message)),
        }
    }
    out
}

impl Config {
    /// Parses YAML text; `source_name` names it in errors. Every problem of the text is
    /// reported at once (see [`schema`]).
    pub fn parse(text: &str, source_name: &str) -> Result<Self, ConfigError> {
        schema::parse(text)
            .map_err(|problems| ConfigError::Invalid { source_name: source_name.to_owned(), problems })
    }

    /// Reads and parses a configuration file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let read_err = |source| ConfigError::Read { path: path.to_owned(), source };
        let size = std::fs::metadata(path).map_err(read_err)?.len();
        if size > MAX_CONFIG_BYTES {
            return Err(ConfigError::TooLarge { path: path.to_owned(), size, max: MAX_CONFIG_BYTES });
        }
        let text = std::fs::read_to_string(path).map_err(read_err)?;
        Self::parse(&text, &path.display().to_string())
    }

    /// The embedded default.
    pub fn embedded() -> Result<Self, ConfigError> {
        Self::parse(DEFAULT_YAML, "embedded default")
    }

    /// The configuration `mnsensor run` uses: the file (or the embedded default), then the
    /// flags on top (lists add, except `--output`, which replaces; values replace).
    pub fn effective(args: &crate::cli::RunArgs) -> Result<Self, ConfigError> {
        let mut config = match &args.config {
            Some(path) => Self::load(path)?,
            None => Self::embedded()?,
        };
        config.protect.extend(args.protect.iter().cloned());
        config.policies.extend(args.policy.iter().cloned());
        if !args.output.is_empty() {
            config.outputs.clone_from(&args.output);
        }
        if let Some(bytes) = args.ring_buffer_bytes {
            config.ring_buffer_bytes = bytes;
        }
        if let Some(path) = &args.status_socket {
            config.status_socket.clone_from(path);
        }
        if let Some(dir) = &args.state_dir {
            config.state_dir.clone_from(dir);
        }
        config.validate("the command line")?;
        Ok(config)
    }

    /// Checks value ranges (after the flags were applied).
    pub fn validate(&self, source_name: &str) -> Result<(), ConfigError> {
        let problems: Vec<Problem> = self
            .range_problems()
            .into_iter()
            .map(|(key, message)| Problem { pos: None, message: format!("`{key}`: {message}") })
            .collect();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid { source_name: source_name.to_owned(), problems })
        }
    }

    /// Every out-of-range value: (dotted key, what is wrong).
    pub fn range_problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        let rb = self.ring_buffer_bytes;
        if rb < 4096 || !rb.is_power_of_two() {
            out.push(("ring_buffer_bytes", format!("must be a power of two ≥ 4096, got {rb}")));
        }
        if !(1..=1000).contains(&self.drain_interval_ms) {
            out.push(("drain_interval_ms", format!("must be 1..=1000, got {}", self.drain_interval_ms)));
        }
        if self.inventory_interval_s > 3600 {
            out.push((
                "inventory_interval_s",
                format!("must be 0..=3600, got {}", self.inventory_interval_s),
            ));
        }
        if !(16..=1 << 22).contains(&self.max_protected_inodes) {
            out.push((
                "max_protected_inodes",
                format!("must be 16..=4194304, got {}", self.max_protected_inodes),
            ));
        }
        if !(10..=10_000).contains(&self.enforcement.deadline_ms) {
            out.push((
                "enforcement.deadline_ms",
                format!("must be 10..=10000, got {}", self.enforcement.deadline_ms),
            ));
        }
        if self.enforcement.decision_cache_ms > 60_000 {
            out.push((
                "enforcement.decision_cache_ms",
                format!("must be 0..=60000, got {}", self.enforcement.decision_cache_ms),
            ));
        }
        let l = &self.ledger;
        if !(4096..=1 << 30).contains(&l.segment_bytes) {
            out.push(("ledger.segment_bytes", format!("must be 4096..=1073741824, got {}", l.segment_bytes)));
        }
        if l.max_bytes < 2 * l.segment_bytes {
            out.push((
                "ledger.max_bytes",
                format!(
                    "must be at least twice ledger.segment_bytes ({}), got {}",
                    l.segment_bytes, l.max_bytes
                ),
            ));
        }
        if !(1..=60_000).contains(&l.fsync_interval_ms) {
            out.push(("ledger.fsync_interval_ms", format!("must be 1..=60000, got {}", l.fsync_interval_ms)));
        }
        if l.checkpoint_records == 0 {
            out.push(("ledger.checkpoint_records", "must be at least 1".to_owned()));
        }
        if !(100..=3_600_000).contains(&l.checkpoint_interval_ms) {
            out.push((
                "ledger.checkpoint_interval_ms",
                format!("must be 100..=3600000, got {}", l.checkpoint_interval_ms),
            ));
        }
        if let Some(addr) = self.metrics.listen.filter(|a| !a.ip().is_loopback()) {
            out.push(("metrics.listen", format!("must be a loopback address, got {addr}")));
        }
        if self.outputs.is_empty() {
            out.push(("outputs", "must name at least one output".to_owned()));
        }
        if !self.status_socket.is_absolute() {
            out.push((
                "status_socket",
                format!("must be an absolute path, got {}", self.status_socket.display()),
            ));
        }
        out
    }

    /// The configuration as YAML (`mnsensor config show`).
    pub fn to_yaml(&self) -> String {
        serde_saphyr::to_string(self).unwrap_or_else(|e| format!("# cannot show the configuration: {e}\n"))
    }
}

/// The top-level keys whose values differ between `old` and `new` (in key order). None of
/// them changes in a running sensor (the policy files themselves are reloaded): each needs
/// a restart. Keys added later are covered without a change here.
pub fn restart_required(old: &Config, new: &Config) -> Vec<String> {
    let (Ok(serde_json::Value::Object(old)), Ok(serde_json::Value::Object(new))) =
        (serde_json::to_value(old), serde_json::to_value(new))
    else {
        return Vec::new();
    };
    old.iter().filter(|(k, v)| new.get(*k) != Some(*v)).map(|(k, _)| k.clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::Config;

    #[test]
    fn restart_required_names_the_changed_keys() {
        let old = Config::default();
        let mut new = old.clone();
        assert!(super::restart_required(&old, &new).is_empty());
        new.drain_interval_ms = 30;
        new.enforcement.deadline_ms = 300;
        assert_eq!(super::restart_required(&old, &new), ["drain_interval_ms", "enforcement"]);
    }

    #[test]
    fn embedded_default_equals_code_default() {
        assert_eq!(Config::embedded().unwrap(), Config::default());
    }

    #[test]
    fn rejects_unknown_keys_and_bad_values_with_location() {
        let err = Config::parse("protect: []\nring_bufer_bytes: 4096\n", "t.yaml").unwrap_err().to_string();
        assert!(err.contains("ring_bufer_bytes") && err.contains("t.yaml"), "{err}");
        assert!(err.contains('2'), "no line number in: {err}");
        let err = Config::parse("ring_buffer_bytes: 5000\n", "t.yaml").unwrap_err().to_string();
        assert!(err.contains("power of two"), "{err}");
        let err = Config::parse("outputs: 3\n", "t.yaml").unwrap_err().to_string();
        assert!(err.contains("outputs"), "{err}");
    }
}
