//! Everything that depends on the running kernel's layout: preflight checks, the BTF and
//! tracefs readers, and the table of offsets handed to the programs.

pub mod blockdev;
pub mod bpfobj;
pub mod btf;
pub mod cgroup;
pub mod offsets;
pub mod preflight;
pub mod procfs;
pub mod tracefs;

use std::time::Instant;

pub use offsets::Resolved;
pub use preflight::Preflight;

/// Any failure of the kernel-facing startup steps.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// A preflight check failed.
    #[error(transparent)]
    Preflight(#[from] preflight::PreflightError),
    /// The BTF could not be read or parsed.
    #[error(transparent)]
    Btf(#[from] btf::BtfError),
    /// tracefs could not be found or read.
    #[error(transparent)]
    TraceFs(#[from] tracefs::TraceFsError),
    /// Required offsets could not be resolved.
    #[error(transparent)]
    Offsets(#[from] offsets::OffsetsError),
}

/// Parses the kernel's BTF and resolves every offset the programs need.
pub fn load_offsets(preflight: &Preflight) -> Result<Resolved, KernelError> {
    let start = Instant::now();
    let btf = btf::Btf::from_file(&preflight.btf_path)?;
    let resolved = offsets::resolve(&btf, &preflight.tracefs)?;
    tracing::info!(
        types = btf.type_count(),
        elapsed_ms = start.elapsed().as_millis(),
        missing_optional = ?resolved.missing_optional,
        "Resolved kernel offsets."
    );
    Ok(resolved)
}
