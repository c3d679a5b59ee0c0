//! Types shared by the kernel programs (`sensor-ebpf`) and the daemon (`sensor`).
//!
//! Everything here is `#[repr(C)]` plain data: the kernel writes it into the ring buffer or
//! reads it from maps and globals, and userspace reads the same bytes. Each event family has
//! its own module under [`event`]; the kernel half lives in `sensor-ebpf/src/<family>.rs` and
//! the user half in `sensor/src/event/<family>.rs`. [`time`] (userspace only) is the calendar
//! of the records' `time` attribute, shared by the daemon and the tools that read records.
#![no_std]

pub mod config;
pub mod event;
pub mod offsets;
pub mod path;
#[cfg(not(target_arch = "bpf"))]
pub mod time;
