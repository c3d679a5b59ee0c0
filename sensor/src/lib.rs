//! mnsensor: an eBPF host sensor for Linux file servers that hold My Number data.
//!
//! Architecture: docs/architecture.md. Event schema: docs/events.md.
pub mod analyze;
pub mod bpf;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod decode;
pub mod deliver;
#[cfg(test)]
mod docs_contract;
pub mod egress;
pub mod enforce;
pub mod enrich;
pub mod event;
pub mod fanotify;
pub mod generate;
pub mod health;
pub mod inventory;
pub mod kernel;
pub mod logging;
pub mod policy;
pub mod proctable;
pub mod protect;
pub mod scan;
pub mod seal;
pub mod selfwatch;
pub mod service;
#[cfg(test)]
mod test_rng;
#[cfg(test)]
mod test_skip;
pub mod users;
pub mod watch;
