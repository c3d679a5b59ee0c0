//! mnsensor: an eBPF host sensor for Linux file servers that hold My Number data.
//!
//! Architecture: docs/architecture.md. Event schema: docs/events.md.
pub mod analyze;
pub mod bpf;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod decode;
pub mod egress;
pub mod enforce;
pub mod enrich;
pub mod event;
pub mod fanotify;
pub mod kernel;
pub mod output;
pub mod policy;
pub mod proctable;
pub mod protect;
pub mod scan;
pub mod seq;
pub mod users;
pub mod watch;
