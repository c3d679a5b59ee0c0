//! mnsensor: an eBPF host sensor for Linux file servers that hold My Number data.
//!
//! Architecture: docs/architecture.md. Event schema: docs/events.md.
pub mod bpf;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod deliver;
pub mod enforce;
pub mod event;
pub mod fanotify;
pub mod health;
pub mod kernel;
pub mod policy;
pub mod proctable;
pub mod protect;
pub mod scan;
pub mod seal;
pub mod users;
pub mod watch;
