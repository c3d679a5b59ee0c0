//! Harness for the root integration tests: runs the real `mnsensor` binary (as root, with
//! its kernel programs) against real syscalls made by the tests, and checks its output
//! against the contract in `docs/events.md`.
//!
//! * [`Sensor`] starts one sensor with a private temp dir and a `jsonl:` output, reads and
//!   validates every record it writes, waits for records, stops it and checks that its
//!   kernel programs are gone.
//! * [`cgroup`] has the child cgroup the egress programs attach to.
//! * [`fakehost`] has the fake external host (a network namespace) of the exfiltration tests.
//! * [`event`] has accessors for records and the per-record schema check.
//! * [`docs`] parses `docs/events.md`.
//! * [`policy_hash`] recomputes the policy-set hash from its documented preimage.
//! * [`skip`] has the loud skip marker ([`skip!`]) the runners count.
//! * [`util`] has deadlines, temp dirs, child processes and small syscall helpers.
//!
//! Everything panics with context on failure: tests do not return `Result`.
//!
//! Environment:
//! * `MNSENSOR_BIN`: absolute path of the sensor (default `<workspace>/target/debug/mnsensor`);
//! * `MNSENSOR_TEST_TIMEOUT_SCALE` (float, default 1) multiplies every deadline. They are
//!   deadlines, never performance assertions;
//! * `MNSENSOR_VM=1` inside the minimal busybox VM;
//! * `MNSENSOR_SKIP_FILE`: skip markers are appended there too ([`skip`]);
//! * `MNSENSOR_TEST_KEEP_FAILED`: keep a failed test's sensor dir (events, stderr) for
//!   debugging instead of removing it.

pub mod bpf;
pub mod cgroup;
pub mod docs;
pub mod event;
pub mod fakehost;
pub mod policy_hash;
pub mod receivers;
pub mod sensor;
pub mod skip;
pub mod users;
pub mod util;

pub use event::{get_bool, get_str, get_str_array, get_u64, has, is, mentions, pid_of, show};
pub use sensor::Sensor;
pub use util::{
    ChildGuard, Output, TempDir, canonical, dev_string, find_tool, fork_and_exit, gettid, in_vm,
    kernel_release, loginuid, path_str, run_capture, scaled, sensor_bin, test_pid, waitpid_status,
    workspace_root,
};
