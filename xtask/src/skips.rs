//! Skip markers (`MNSENSOR-SKIP <test> -- <reason>`, written by tests/src/skip.rs and
//! sensor/src/test_skip.rs): counted per stage, and checked against the short allowlist of
//! each environment (docs/testing.md). A skip that is not allowed fails the stage.
use anyhow::{Result, bail};

use crate::cmd::step;

const MARKER: &str = "MNSENSOR-SKIP ";

/// Where a stage runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Env {
    /// `cargo xtask test` on the machine itself (root, BTF, fanotify; no BPF LSM needed).
    Host,
    /// A kernel of `cargo xtask vm-test` (busybox guest, BPF LSM active).
    Vm,
}

/// The allowlist: environment, test (as the marker names it), why it may skip there. Keep it
/// short and in step with docs/testing.md.
pub const ALLOWED: &[(Env, &str, &str)] = &[
    (
        Env::Vm,
        "protected_io::aio_direct_read",
        "the guest's /tmp is a tmpfs, which has O_DIRECT only from Linux 6.6 (the 6.1 guest)",
    ),
    (
        Env::Vm,
        "exfil::pipe_and_staging_copy_are_detected_and_untainted_is_not",
        "the busybox guest's `ip` cannot make the test's network namespace (runs on the host)",
    ),
    (
        Env::Vm,
        "exfil::deny_refuses_a_tainted_connect_with_eperm_but_not_to_an_allowed_destination",
        "the busybox guest's `ip` cannot make the test's network namespace (runs on the host)",
    ),
    (
        Env::Vm,
        "exfil::relays_run_by_another_user_are_attributed_to_the_originating_user",
        "the busybox guest's `ip` cannot make the test's network namespace (runs on the host)",
    ),
    (
        Env::Vm,
        "exfil::io_uring_connect_and_send_are_detected_with_their_bytes",
        "the busybox guest's `ip` cannot make the test's network namespace (runs on the host)",
    ),
    (
        Env::Vm,
        "exfil::dns_queries_of_a_tainted_process_signal_long_high_entropy_labels",
        "the busybox guest's `ip` cannot make the test's network namespace (runs on the host)",
    ),
    (
        Env::Vm,
        "exfil::slow_drip_adds_up_split_connections_once",
        "the busybox guest's `ip` cannot make the test's network namespace (runs on the host)",
    ),
    (
        Env::Vm,
        "exfil::dns_thresholds_come_from_the_policy",
        "the busybox guest's `ip` cannot make the test's network namespace (runs on the host)",
    ),
    (
        Env::Vm,
        "exfil::a_received_descriptor_taints_the_receiver_that_reads_it",
        "the busybox guest's `ip` cannot make the test's network namespace (runs on the host)",
    ),
];

/// One marker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skip {
    pub test: String,
    pub reason: String,
}

/// Every marker in `text` (anywhere in a line: console lines can start with escape codes).
pub fn parse(text: &str) -> Vec<Skip> {
    text.lines()
        .filter_map(|line| {
            let rest = &line[line.find(MARKER)? + MARKER.len()..];
            let (test, reason) = rest.trim_end_matches('\r').split_once(" -- ")?;
            Some(Skip { test: test.trim().to_owned(), reason: reason.trim().to_owned() })
        })
        .collect()
}

/// Whether `test` may skip in `env`.
pub fn allowed(env: Env, test: &str) -> bool {
    ALLOWED.iter().any(|(e, t, _)| *e == env && *t == test)
}

/// Prints the skips of `stage` and fails on those not on the allowlist of `env`.
pub fn check(stage: &str, env: Env, skips: &[Skip]) -> Result<()> {
    step(format!("{stage}: {} skip(s)", skips.len()));
    for s in skips {
        let tag = if allowed(env, &s.test) { "allowed" } else { "NOT ALLOWED" };
        step(format!("  skip ({tag}) {}: {}", s.test, s.reason));
    }
    let bad: Vec<&str> = skips.iter().filter(|s| !allowed(env, &s.test)).map(|s| s.test.as_str()).collect();
    if !bad.is_empty() {
        bail!("{stage}: skips not on the {env:?} allowlist (docs/testing.md): {}", bad.join(", "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_markers_and_checks_the_allowlist() {
        let text = "running 3 tests\n\x1b[0m\nMNSENSOR-SKIP protected_io::aio_direct_read -- no O_DIRECT on tmpfs\r\n\
            test x ... ok\nMNSENSOR-SKIP network::ipv6_loopback_connection -- no IPv6\n";
        let skips = parse(text);
        assert_eq!(skips.len(), 2);
        assert_eq!(
            skips[1],
            Skip { test: "network::ipv6_loopback_connection".into(), reason: "no IPv6".into() }
        );
        assert!(check("vm", Env::Vm, &skips[..1]).is_ok());
        assert!(check("host", Env::Host, &skips[..1]).is_err());
        assert!(check("vm", Env::Vm, &skips).is_err());
    }
}
