//! Settings userspace passes to the kernel programs as a read-only global (`CONFIG`).

/// Runtime settings of the kernel programs, frozen at load.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct KernelConfig {
    /// The daemon's own tgid: its own activity is never reported (no feedback loops).
    pub self_tgid: u32,
    /// Non-zero when at least one path is protected; file programs return early otherwise.
    pub file_events: u32,
    /// Non-zero when the BPF LSM program enforces the compiled policies.
    pub lsm_enforce: u32,
    pub _pad: u32,
    /// Wake the consumer only when this many bytes wait in the ring buffer; below it the
    /// daemon drains on its own timer (batched wakeups, see docs/architecture.md).
    pub wakeup_bytes: u64,
}

#[cfg(feature = "user")]
// SAFETY: plain repr(C) data.
unsafe impl aya::Pod for KernelConfig {}
