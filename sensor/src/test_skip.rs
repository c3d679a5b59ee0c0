//! Loud skips for the unit tests that need root or the kernel's BTF: the same uncaptured
//! `MNSENSOR-SKIP <test> -- <reason>` marker as the integration tests (tests/src/skip.rs),
//! counted by `cargo xtask test`; under `CI=true` such a test fails instead (docs/testing.md).
use std::io::Write as _;

/// Whether the test may go on: `false` after writing the marker; panics under `CI=true`.
pub fn allowed(ok: bool, reason: &str) -> bool {
    if ok {
        return true;
    }
    let test = std::thread::current().name().unwrap_or("<unknown test>").to_owned();
    assert!(std::env::var("CI").as_deref() != Ok("true"), "{test}: {reason}; CI=true runs must not skip it");
    let line = format!("MNSENSOR-SKIP sensor::{test} -- {reason}\n");
    let _ = std::io::stderr().write_all(format!("\n{line}").as_bytes());
    if let Some(path) = std::env::var_os("MNSENSOR_SKIP_FILE") {
        let _ = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut f| f.write_all(line.as_bytes()));
    }
    false
}
