//! Per-user access policies (docs/policy.md).
pub mod yaml;
pub mod calendar;
