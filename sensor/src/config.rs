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
    /// Runtime state directory.
    pub state_dir: PathBuf,
    /// Policy files or directories; empty: /etc/mnsensor/policies.d when it exists, else
    /// the embedded default (which protects nothing).
    pub policies: Vec<PathBuf>,
    /// How `enforce`-mode policies are enforced.
    pub enforcement: Enforcement,
    /// Capacity of the kernel's protected-inode map: protected paths plus the files found
    /// below protected directories at start plus files created in them while running.
    pub max_protected_inodes: u32,
    /// cgroup v2 directory the egress programs attach to when a policy has an `egress`
    /// section (default `/sys/fs/cgroup`, every process).
    pub egress_cgroup: PathBuf,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            protect: Vec::new(),
            outputs: vec!["stdout".to_owned()],
            ring_buffer_bytes: 8 << 20,
            drain_interval_ms: 20,
            state_dir: PathBuf::from("/run/mnsensor"),
            max_protected_inodes: 65_536,
            policies: Vec::new(),
            enforcement: Enforcement::default(),
            egress_cgroup: PathBuf::from("/sys/fs/cgroup"),
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
