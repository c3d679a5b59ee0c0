//! Checks run before any program is loaded, each failing with one line that says what is
//! missing and how to fix it.
//!
//! Capabilities: loading and attaching the tracing programs needs `CAP_SYS_ADMIN`, or
//! `CAP_BPF` and `CAP_PERFMON` on 5.8+ kernels. `CAP_DAC_READ_SEARCH` is required too: the
//! tracefs format files are root-only on recent kernels, and the daemon reads other users'
//! `/proc/<pid>` files (`CAP_DAC_OVERRIDE` is accepted instead, it implies the same).
//! `CAP_SYS_PTRACE` is only recommended (a warning): without it `/proc/<pid>/{exe,cwd,fd}` of
//! other users' processes cannot be read, so some enrichment is lost. Root has them all.

use std::ffi::CStr;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::tracefs::{self, TraceFs, TraceFsError};

/// Where the running kernel exposes its BTF.
pub const BTF_PATH: &str = "/sys/kernel/btf/vmlinux";
/// Where securityfs is mounted.
const SECURITYFS_PATH: &str = "/sys/kernel/security";
/// `SECURITYFS_MAGIC` from `include/uapi/linux/magic.h`.
const SECURITYFS_MAGIC: i64 = 0x7363_6673;

const CAP_DAC_OVERRIDE: u32 = 1;
const CAP_DAC_READ_SEARCH: u32 = 2;
const CAP_SYS_PTRACE: u32 = 19;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// What the checks found; needed to load the programs.
#[derive(Clone, Debug)]
pub struct Preflight {
    /// `uname -r`.
    pub kernel_release: String,
    /// The kernel's BTF.
    pub btf_path: PathBuf,
    /// The mounted tracefs.
    pub tracefs: TraceFs,
}

/// A preflight failure.
#[derive(Debug, thiserror::Error)]
pub enum PreflightError {
    /// `uname(2)` failed.
    #[error("cannot read the kernel release: uname failed: {0}")]
    Uname(io::Error),
    /// The effective capability set could not be read.
    #[error("cannot read CapEff from /proc/self/status: {0}")]
    CapEff(String),
    /// Capabilities needed to load the programs or read tracefs and /proc are missing.
    #[error(
        "missing capabilities {}: run mnsensor as root, or grant them \
         (systemd: AmbientCapabilities=CAP_BPF CAP_PERFMON CAP_DAC_READ_SEARCH CAP_SYS_PTRACE CAP_SYS_ADMIN; \
         CAP_SYS_ADMIN is needed for fanotify enforcement and observation, see packaging/mnsensor.service)",
        .0.join(", ")
    )]
    Capabilities(Vec<&'static str>),
    /// The kernel exposes no BTF.
    #[error(
        "kernel BTF is missing: {} does not exist; boot a kernel built with CONFIG_DEBUG_INFO_BTF=y",
        .0.display()
    )]
    NoBtf(PathBuf),
    /// tracefs is not available.
    #[error(transparent)]
    TraceFs(#[from] TraceFsError),
    /// RLIMIT_MEMLOCK could not be raised on a kernel that charges BPF maps to it.
    #[error(
        "cannot raise RLIMIT_MEMLOCK to infinity (kernel {release} is older than 5.11 and charges \
         BPF maps to it): {source}; grant CAP_SYS_RESOURCE or set LimitMEMLOCK=infinity"
    )]
    Memlock {
        /// The kernel release.
        release: String,
        /// The `setrlimit` error.
        source: io::Error,
    },
}

/// Runs every check, mounting tracefs if needed and raising RLIMIT_MEMLOCK.
pub fn check() -> Result<Preflight, PreflightError> {
    let kernel_release = kernel_release()?;
    let version = parse_version(&kernel_release);

    let status =
        fs::read_to_string("/proc/self/status").map_err(|e| PreflightError::CapEff(e.to_string()))?;
    let cap_eff =
        parse_cap_eff(&status).ok_or_else(|| PreflightError::CapEff("no CapEff line".to_owned()))?;
    let missing = missing_capabilities(cap_eff, version);
    if !missing.is_empty() {
        return Err(PreflightError::Capabilities(missing));
    }
    if !has(cap_eff, CAP_SYS_PTRACE) {
        tracing::warn!(
            "Without CAP_SYS_PTRACE, /proc/<pid>/exe, cwd and fd of other users' processes cannot be read."
        );
    }

    let btf_path = PathBuf::from(BTF_PATH);
    if !btf_path.is_file() {
        return Err(PreflightError::NoBtf(btf_path));
    }
    let tracefs = TraceFs::locate()?;
    raise_memlock(&kernel_release, version)?;
    tracing::debug!(kernel_release, tracefs = %tracefs.root().display(), "Preflight checks passed.");
    Ok(Preflight { kernel_release, btf_path, tracefs })
}

/// The active LSMs in initialisation order (`/sys/kernel/security/lsm`), mounting securityfs
/// if needed. `None` when securityfs is unavailable.
pub fn lsm_list() -> Option<Vec<String>> {
    let dir = Path::new(SECURITYFS_PATH);
    if tracefs::fs_magic(dir) != Some(SECURITYFS_MAGIC)
        && let Err(err) = tracefs::mount_pseudo_fs(c"securityfs", c"/sys/kernel/security")
    {
        tracing::debug!(%err, "Could not mount securityfs.");
    }
    let text = fs::read_to_string(dir.join("lsm")).ok()?;
    Some(text.trim().split(',').filter(|s| !s.is_empty()).map(str::to_owned).collect())
}

fn kernel_release() -> Result<String, PreflightError> {
    // SAFETY: an all-zero utsname is a valid value for this plain C struct.
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: uts is a valid, writable utsname.
    if unsafe { libc::uname(&mut uts) } != 0 {
        return Err(PreflightError::Uname(io::Error::last_os_error()));
    }
    // SAFETY: uname NUL-terminates release, which lives as long as uts.
    let release = unsafe { CStr::from_ptr(uts.release.as_ptr()) };
    Ok(release.to_string_lossy().into_owned())
}

/// `(major, minor)` of a release such as `6.18.44-fc-v669`.
fn parse_version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// The effective capability mask from the text of `/proc/<pid>/status`.
fn parse_cap_eff(status: &str) -> Option<u64> {
    let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
    u64::from_str_radix(hex.trim(), 16).ok()
}

fn has(cap_eff: u64, cap: u32) -> bool {
    cap_eff & (1 << cap) != 0
}

/// The capabilities (or alternatives) missing from `cap_eff`; `version` is the kernel's, if
/// known (CAP_BPF and CAP_PERFMON exist since 5.8).
fn missing_capabilities(cap_eff: u64, version: Option<(u32, u32)>) -> Vec<&'static str> {
    let mut missing = Vec::new();
    let split_caps = version >= Some((5, 8));
    let can_load =
        has(cap_eff, CAP_SYS_ADMIN) || (split_caps && has(cap_eff, CAP_BPF) && has(cap_eff, CAP_PERFMON));
    if !can_load {
        missing.push(match split_caps {
            true => "CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN)",
            false => "CAP_SYS_ADMIN (this kernel predates CAP_BPF)",
        });
    }
    if !has(cap_eff, CAP_DAC_READ_SEARCH) && !has(cap_eff, CAP_DAC_OVERRIDE) {
        missing.push("CAP_DAC_READ_SEARCH");
    }
    missing
}

fn raise_memlock(release: &str, version: Option<(u32, u32)>) -> Result<(), PreflightError> {
    let limit = libc::rlimit { rlim_cur: libc::RLIM_INFINITY, rlim_max: libc::RLIM_INFINITY };
    // SAFETY: limit is a valid rlimit.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &limit) } == 0 {
        return Ok(());
    }
    let source = io::Error::last_os_error();
    if version >= Some((5, 11)) {
        // 5.11+ charges BPF memory to the memory cgroup instead.
        tracing::debug!(%source, "Could not raise RLIMIT_MEMLOCK; not needed on 5.11+.");
        return Ok(());
    }
    Err(PreflightError::Memlock { release: release.to_owned(), source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_versions() {
        assert_eq!(parse_version("6.18.44-fc-v669"), Some((6, 18)));
        assert_eq!(parse_version("5.4.0-150-generic"), Some((5, 4)));
        assert_eq!(parse_version("6.1"), Some((6, 1)));
        assert_eq!(parse_version("garbage"), None);
    }

    #[test]
    fn parses_cap_eff() {
        let status = "Name:\tcat\nCapPrm:\t0000000000000000\nCapEff:\t000001fffeffffff\nCapBnd:\t1\n";
        assert_eq!(parse_cap_eff(status), Some(0x1ff_feff_ffff));
        assert_eq!(parse_cap_eff("Name:\tcat\n"), None);
    }

    #[test]
    fn decides_missing_capabilities() {
        let caps = |list: &[u32]| list.iter().fold(0_u64, |acc, c| acc | 1 << c);
        let new = Some((6, 18));
        assert!(missing_capabilities(0x1ff_feff_ffff, new).is_empty());
        assert!(missing_capabilities(caps(&[CAP_BPF, CAP_PERFMON, CAP_DAC_READ_SEARCH]), new).is_empty());
        assert!(missing_capabilities(caps(&[CAP_SYS_ADMIN, CAP_DAC_OVERRIDE]), new).is_empty());
        assert_eq!(
            missing_capabilities(caps(&[CAP_BPF, CAP_DAC_READ_SEARCH]), new),
            ["CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN)"]
        );
        assert_eq!(missing_capabilities(caps(&[CAP_SYS_ADMIN]), new), ["CAP_DAC_READ_SEARCH"]);
        let old = Some((5, 4));
        assert_eq!(missing_capabilities(caps(&[CAP_BPF, CAP_PERFMON, CAP_DAC_READ_SEARCH]), old).len(), 1);
        assert_eq!(missing_capabilities(0, None).len(), 2);
        let err = PreflightError::Capabilities(missing_capabilities(0, new)).to_string();
        assert!(
            err.starts_with(
                "missing capabilities CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN), CAP_DAC_READ_SEARCH: "
            ),
            "{err}"
        );
    }

    #[test]
    fn passes_on_this_machine_as_root() {
        // SAFETY: geteuid has no preconditions.
        if !crate::test_skip::allowed(unsafe { libc::geteuid() } == 0, "needs root") {
            return;
        }
        let preflight = check().unwrap_or_else(|e| panic!("{e}"));
        let release = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
        assert_eq!(preflight.kernel_release, release.trim());
        assert!(preflight.tracefs.event_exists("syscalls", "sys_exit_openat"));
        if let Some(lsms) = lsm_list() {
            assert!(lsms.iter().any(|l| l == "capability"), "{lsms:?}");
        }
    }
}
