//! The daemon's configuration: a YAML file (`--config`) or the embedded default, then the
//! command-line flags on top.
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The embedded default configuration, documented key by key.
pub const DEFAULT_YAML: &str = include_str!("../config/default.yaml");

/// Largest configuration file accepted.
const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// Configuration file contents. Unknown keys are errors.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
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
    /// `--output otlp…` settings (docs/operations.md); unset keys come from the
    /// `OTEL_EXPORTER_OTLP_*` variables.
    pub otlp: crate::deliver::otlp::OtlpConfig,
    /// `--output syslog+…` settings.
    pub syslog: crate::deliver::syslog::SyslogConfig,
    /// The `sensor.heartbeat` record.
    pub heartbeat: crate::health::HeartbeatConfig,
    /// The Prometheus endpoint (off unless `metrics.listen` is set).
    pub metrics: crate::health::metrics::MetricsConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            protect: Vec::new(),
            outputs: vec!["stdout".to_owned()],
            ring_buffer_bytes: 8 << 20,
            drain_interval_ms: 20,
            state_dir: PathBuf::from("/var/lib/mnsensor"),
            ledger: Ledger::default(),
            jsonl: crate::deliver::jsonl::Settings::default(),
            max_protected_inodes: 65_536,
            policies: Vec::new(),
            enforcement: Enforcement::default(),
            otlp: Default::default(),
            syslog: Default::default(),
            heartbeat: Default::default(),
            metrics: Default::default(),
        }
    }
}

/// `ledger:` settings.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
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
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct Enforcement {
    /// Longest a process waits for a decision, in milliseconds; then `fail_mode` applies
    /// and an alert is written.
    pub deadline_ms: u64,
    /// `open` (allow when late: the file server keeps serving) or `closed` (deny when late).
    pub fail_mode: FailMode,
}

impl Default for Enforcement {
    fn default() -> Self {
        Self { deadline_ms: 200, fail_mode: FailMode::Open }
    }
}

/// What a late decision becomes.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum FailMode {
    Open,
    Closed,
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
    /// YAML syntax or schema error (with line and column).
    #[error("invalid configuration {source_name}: {message}")]
    Parse { source_name: String, message: String },
    /// A value is out of range.
    #[error("invalid configuration {source_name}: {message}")]
    Invalid { source_name: String, message: String },
}

impl Config {
    /// Parses YAML text; `source_name` names it in errors.
    pub fn parse(text: &str, source_name: &str) -> Result<Self, ConfigError> {
        let config: Self = serde_saphyr::from_str(text).map_err(|e| ConfigError::Parse {
            source_name: source_name.to_owned(),
            message: e.to_string(),
        })?;
        config.validate(source_name)?;
        Ok(config)
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

    /// Checks value ranges.
    pub fn validate(&self, source_name: &str) -> Result<(), ConfigError> {
        let invalid = |message: String| ConfigError::Invalid { source_name: source_name.to_owned(), message };
        let rb = self.ring_buffer_bytes;
        if rb < 4096 || !rb.is_power_of_two() {
            return Err(invalid(format!("ring_buffer_bytes must be a power of two ≥ 4096, got {rb}")));
        }
        if !(1..=1000).contains(&self.drain_interval_ms) {
            return Err(invalid(format!(
                "drain_interval_ms must be 1..=1000, got {}",
                self.drain_interval_ms
            )));
        }
        if !(16..=1 << 22).contains(&self.max_protected_inodes) {
            return Err(invalid(format!(
                "max_protected_inodes must be 16..=4194304, got {}",
                self.max_protected_inodes
            )));
        }
        if !(10..=10_000).contains(&self.enforcement.deadline_ms) {
            return Err(invalid(format!(
                "enforcement.deadline_ms must be 10..=10000, got {}",
                self.enforcement.deadline_ms
            )));
        }
        let l = &self.ledger;
        if !(4096..=1 << 30).contains(&l.segment_bytes) || l.max_bytes < 2 * l.segment_bytes {
            return Err(invalid(format!(
                "ledger.segment_bytes must be 4096..=1073741824 and ledger.max_bytes at least twice it, got {} and {}",
                l.segment_bytes, l.max_bytes
            )));
        }
        if !(1..=60_000).contains(&l.fsync_interval_ms)
            || l.checkpoint_records == 0
            || !(100..=3_600_000).contains(&l.checkpoint_interval_ms)
        {
            return Err(invalid(
                "ledger.fsync_interval_ms must be 1..=60000, checkpoint_records ≥ 1, checkpoint_interval_ms 100..=3600000"
                    .to_owned(),
            ));
        }
        if let Some(addr) = self.metrics.listen.filter(|a| !a.ip().is_loopback()) {
            return Err(invalid(format!("metrics.listen must be a loopback address, got {addr}")));
        }
        if self.outputs.is_empty() {
            return Err(invalid("outputs must name at least one output".to_owned()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::Config;

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
