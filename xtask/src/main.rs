//! `cargo xtask`: build, run, test and lint mnsensor (docs/building.md).
mod apt;
mod bench;
mod build;
mod cmd;
mod lint;
mod package;
mod run;
mod setup;
mod skips;
mod test;
mod vm;

use std::{ffi::OsString, process::ExitCode};

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask", about = "Developer and CI tasks for mnsensor")]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what is missing: Debian's Rust and LLVM 22, bpf-linker, tracefs mount.
    Setup {
        /// Also qemu and a static busybox, for `vm-test`.
        #[arg(long)]
        vm: bool,
    },
    /// Build the daemon (target/{debug,release}/mnsensor) with its kernel programs.
    Build {
        #[arg(long)]
        release: bool,
    },
    /// Build the release daemon and run `mnsensor run ARGS…` in the foreground (as root).
    Run {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
    /// The whole suite, as CI runs it: unit tests, host integration tests, vm-test.
    Test,
    /// Run the integration tests inside Debian kernels under qemu.
    VmTest(vm::Args),
    /// rustfmt and clippy with warnings denied.
    Lint,
    /// Build the Debian package (cargo-deb) into target/package/; `--test` also installs,
    /// upgrades, removes and purges it in a scratch root.
    Package(package::Args),
    /// Measure the sensor's overhead, throughput, memory and latency (docs/performance.md).
    Bench(bench::Args),
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Task::Setup { vm } => setup::setup(vm),
        Task::Build { release } => build::build(release),
        Task::Run { args } => run::run(&args),
        Task::Test => test::test(),
        Task::VmTest(args) => vm::vm_test(&args),
        Task::Lint => lint::lint(),
        Task::Package(args) => package::package(&args),
        Task::Bench(args) => bench::bench(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::{Cli, Task};

    #[test]
    fn run_passes_its_arguments_through() {
        for argv in [&["xtask", "run", "--", "--protect", "/srv"][..], &["xtask", "run", "--protect", "/srv"]]
        {
            let Task::Run { args } = Cli::try_parse_from(argv).expect("parses").command else {
                panic!("not run");
            };
            assert_eq!(args, ["--protect", "/srv"]);
        }
    }
}
