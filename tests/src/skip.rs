//! Loud skips: a test that cannot check its claim here says so with [`skip`], which writes
//! one marker line that libtest's output capture does not swallow, and the runner counts.
//!
//! The marker is `MNSENSOR-SKIP <test> -- <reason>` on a line of its own:
//! * written with `write_all` on the process's real stderr (libtest captures only the
//!   `print!`/`eprint!` macros), so it reaches the terminal or the VM console;
//! * appended to the file named by `MNSENSOR_SKIP_FILE` when that is set (`cargo xtask test`
//!   sets it and counts the lines per stage).
//!
//! `cargo xtask test` and `cargo xtask vm-test` fail on a skip that is not on the allowlist
//! of their environment (docs/testing.md). Under `CI=true` nothing may return early
//! without a marker.

use std::{
    env,
    fs::OpenOptions,
    io::{self, Write as _},
};

/// The marker's prefix (parsed by xtask).
pub const MARKER: &str = "MNSENSOR-SKIP ";
/// The file markers are appended to, when set.
pub const FILE_ENV: &str = "MNSENSOR_SKIP_FILE";

/// The current test as `<test binary>::<test>`: libtest names the thread of each test after
/// it; the binary is cargo's target name (`enforce-0123456789abcdef` → `enforce`).
pub fn current_test() -> String {
    let test = std::thread::current().name().filter(|n| *n != "main").unwrap_or("<unknown test>").to_owned();
    format!("{}::{test}", binary_name())
}

fn binary_name() -> String {
    let exe = env::current_exe().ok();
    let name = exe.as_deref().and_then(|p| p.file_name()).and_then(|n| n.to_str()).unwrap_or("?");
    match name.rsplit_once('-') {
        Some((base, hash)) if hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()) => {
            base.to_owned()
        }
        _ => name.to_owned(),
    }
}

/// The marker line for `test` skipped for `reason` (one line, newline-terminated).
pub fn marker(test: &str, reason: &str) -> String {
    let reason = reason.replace(['\n', '\r'], " ");
    format!("{MARKER}{test} -- {reason}\n")
}

/// Records that the current test skips (part of) its claim for `reason`; the caller then
/// returns. Never fails: a marker that cannot be written is reported on stderr too.
pub fn skip(reason: &str) {
    let line = marker(&current_test(), reason);
    // A fresh line first: the console may be in the middle of libtest's own output.
    let _ = io::stderr().write_all(format!("\n{line}").as_bytes());
    if let Some(path) = env::var_os(FILE_ENV) {
        let written = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(line.as_bytes()));
        if let Err(e) = written {
            let _ = io::stderr()
                .write_all(format!("{MARKER}<marker file> -- cannot append to {path:?}: {e}\n").as_bytes());
        }
    }
}

/// Skips with `reason`: `return`s from the calling test after writing the marker.
#[macro_export]
macro_rules! skip {
    ($($fmt:tt)*) => {{
        $crate::skip::skip(&format!($($fmt)*));
        return;
    }};
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marker_is_one_line_naming_test_and_reason() {
        assert_eq!(marker("enforce::x", "no useradd\nhere"), "MNSENSOR-SKIP enforce::x -- no useradd here\n");
    }

    #[test]
    fn the_current_test_is_named_after_its_thread() {
        let name = current_test();
        assert!(name.starts_with("mnsensor_tests"), "{name}");
        assert!(name.ends_with("::skip::tests::the_current_test_is_named_after_its_thread"), "{name}");
    }
}
