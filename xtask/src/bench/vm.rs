//! `cargo xtask bench --vm 6.12` (or `6.1`): part 1 of the bench (the cost to other processes)
//! inside the qemu guest of the kernel matrix, where fentry programs load. The host builds a
//! static xtask and mnsensor, boots the guest with them (and auditd, auditctl and bpftool with
//! their libraries); the guest runs `xtask bench guest`, which is the host bench's own code
//! (overhead.rs, workload.rs, sensor.rs, audit.rs), and prints its samples on the console as
//! `BENCHVM-JSON` lines. The host parses them and computes the ratios and the table with the
//! same code as the host bench. Emulation slows everything, so only same-guest ratios are
//! shown, never times (docs/performance.md).
use std::{
    collections::BTreeMap,
    fmt::Write as _,
    fs,
    io::Write as _,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail, ensure};
use serde_json::{Value, json};

use super::{
    Args, Ctx, audit, enforce, fixture, host, interrupt, overhead,
    overhead::{Config, Overhead, WORKLOADS},
    report::overhead_table,
    sensor::{self, Sensor},
    stats::Spread,
};
use crate::{
    apt,
    cmd::{output, run as run_cmd, step, target_dir},
    setup, vm,
};

const INIT: &str = include_str!("vm_init.sh");
/// Host-side limit for the guest; a full run takes about 10-15 min.
const TIMEOUT: Duration = Duration::from_secs(40 * 60);
/// auditd and the library of it that a Debian 12 host does not have already (auditctl needs
/// only libaudit1, which `login` brings). The others are copied from the host.
const AUDIT_PACKAGES: &[&str] = &["auditd", "libauparse0"];
const CHUNK: usize = 1000;
/// The guest's clock counts instructions (2 ns each) instead of following the host's: under
/// TCG the guest's CPU time is otherwise the host's wall time of the qemu thread, which the
/// load of the host stretches by any factor. Idle time still passes at the host's pace.
const QEMU_ICOUNT: &[&str] = &["-icount", "shift=1"];

/// Rounds and operations in the guest: TCG runs syscalls some 10-30 times slower, and with
/// instruction counting the rounds agree to a few per mille, so few small ones are enough.
fn plan(args: &Args) -> (usize, f64) {
    (args.rounds.unwrap_or(if args.quick { 3 } else { 5 }), if args.quick { 0.05 } else { 0.1 })
}

/// The host side.
pub fn run(args: &Args, kernel: &str) -> Result<()> {
    setup::setup(true)?;
    let kernel = vm::kernels::fetch(kernel)?;
    let sensor_bin = match &args.sensor {
        Some(path) => path.clone(),
        None => vm::artifacts::sensor()?,
    };
    let xtask = vm::artifacts::xtask()?;
    let (rounds, scale) = plan(args);
    let dir = target_dir().join("vm-bench").join(&kernel.name);
    let overlay = stage(&dir, &xtask, rounds, scale)?;
    let contents = vm::initramfs::Contents {
        busybox: &setup::busybox(),
        sensor: &sensor_bin,
        tests: &[],
        filter: None,
        init: INIT,
        overlay: Some(&overlay),
    };
    let initrd = vm::initramfs::build(&dir, &contents)?;
    let log = dir.join(format!("console-{}.log", kernel.name));
    step(format!("bench --vm {}: {rounds} rounds, scale {scale}; console in {}", kernel.name, log.display()));
    // Under KVM the guest's clock is the real one, and qemu has no instruction counting.
    let kvm = vm::qemu::kvm();
    let started = Instant::now();
    let (code, wall) = vm::qemu::boot_for(
        &kernel.vmlinuz,
        &initrd,
        &log,
        TIMEOUT,
        if kvm { &[] } else { QEMU_ICOUNT },
        false,
    )?;
    let text = fs::read(&log).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
    let guest = parse_console(&text).with_context(|| {
        format!(
            "the guest printed no result (qemu exit {code:?}, {:.0} s); see {}",
            wall.as_secs_f64(),
            log.display()
        )
    })?;
    if let Some(error) = guest["error"].as_str() {
        bail!("the guest bench failed: {error} (console: {})", log.display());
    }
    let overhead = Overhead::from_json(&guest["overhead"])?;
    let mut machine = host::describe();
    machine["sensor"] = host::binary(&sensor_bin)?;
    let result = json!({
        "machine": machine,
        "kernel": {"name": kernel.name, "package": kernel.package},
        "guest": guest["machine"],
        "plan": {"rounds": rounds, "scale": scale, "emulation": if kvm { "qemu KVM, 1 vCPU" } else { "qemu TCG -icount shift=1, 1 vCPU" }},
        "backends": guest["backends"],
        "auditd": guest["auditd"],
        "elapsed_s": started.elapsed().as_secs_f64(),
        "overhead": overhead.json(),
        "bpf_stats": guest["bpf_stats"],
        "enforcement": guest["enforcement"],
    });
    println!("{}", table(&result, &overhead));
    let path =
        args.json.clone().unwrap_or_else(|| target_dir().join(format!("bench/vm-{}.json", kernel.name)));
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)?;
    }
    fs::write(&path, serde_json::to_string_pretty(&result)? + "\n")
        .with_context(|| format!("writing {}", path.display()))?;
    step(format!("bench --vm: guest ran {:.0} s; wrote {}", wall.as_secs_f64(), path.display()));
    Ok(())
}

/// The tree copied over the initramfs: xtask, bpftool and auditd with their libraries,
/// auditd's configuration (logs on the guest's tmpfs) and the guest's arguments.
fn stage(dir: &Path, xtask: &Path, rounds: usize, scale: f64) -> Result<PathBuf> {
    let overlay = dir.join("overlay");
    if overlay.exists() {
        fs::remove_dir_all(&overlay).with_context(|| format!("removing {}", overlay.display()))?;
    }
    let put = |from: &Path, to: &str| -> Result<()> {
        let dest = overlay.join(to);
        fs::create_dir_all(dest.parent().expect("a file in a directory"))?;
        fs::copy(from, &dest).with_context(|| format!("copying {} to {}", from.display(), dest.display()))?;
        Ok(())
    };
    put(xtask, "bin/xtask")?;
    let audit = audit_root()?;
    let mut bins = vec![
        (audit_bin(&audit, "auditd")?, "usr/sbin/auditd"),
        (audit_bin(&audit, "auditctl")?, "usr/sbin/auditctl"),
    ];
    // For bpf_stats, the foreign-program check and the wait for a stopped sensor's programs to
    // go (`setup --vm` installs it).
    bins.push((PathBuf::from("/usr/sbin/bpftool"), "usr/sbin/bpftool"));
    let search = [audit.join("usr/lib/x86_64-linux-gnu"), audit.join("lib/x86_64-linux-gnu")];
    let mut libs = BTreeMap::new();
    for (bin, name) in &bins {
        ensure!(bin.is_file(), "{} is missing", bin.display());
        put(bin, name)?;
        let mut ldd = Command::new("ldd");
        ldd.arg(bin).env("LD_LIBRARY_PATH", std::env::join_paths(&search)?);
        libs.extend(
            ldd_paths(&output(&mut ldd)?).with_context(|| format!("libraries of {}", bin.display()))?,
        );
    }
    for (dest, src) in &libs {
        put(src, dest)?;
    }
    let conf =
        fs::read_to_string(audit.join("etc/audit/auditd.conf")).context("auditd.conf of the package")?;
    let conf: String = conf
        .lines()
        .map(|l| match l.split(" = ").next() {
            // The guest's tmpfs; the guest has no `adm` group.
            Some("log_file") => "log_file = /tmp/audit/audit.log",
            Some("log_group") => "log_group = root",
            _ => l,
        })
        .map(|l| format!("{l}\n"))
        .collect();
    for plugin in fs::read_dir(audit.join("etc/audit/plugins.d"))? {
        let plugin = plugin?;
        put(&plugin.path(), &format!("etc/audit/plugins.d/{}", plugin.file_name().to_string_lossy()))?;
    }
    fs::write(overlay.join("etc/audit/auditd.conf"), conf)?;
    fs::write(overlay.join("etc/vmbench-args"), format!("--rounds {rounds} --scale {scale}\n"))?;
    Ok(overlay)
}

/// `target/vm/auditd/`: the packages of [`AUDIT_PACKAGES`] unpacked (once).
fn audit_root() -> Result<PathBuf> {
    let root = target_dir().join("vm/auditd");
    if audit_bin(&root, "auditd").is_ok() {
        return Ok(root);
    }
    let tmp = root.with_extension("tmp");
    apt::with_fresh_lists("downloading auditd for the guest", || {
        if tmp.exists() {
            fs::remove_dir_all(&tmp)?;
        }
        for package in AUDIT_PACKAGES {
            let deb = apt::download(package, &target_dir().join("vm/debs").join(package))?;
            run_cmd(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&tmp))?;
        }
        Ok(())
    })?;
    if root.exists() {
        fs::remove_dir_all(&root)?;
    }
    fs::rename(&tmp, &root)?;
    Ok(root)
}

/// `sbin/NAME` of the unpacked packages (Debian 12), or `usr/sbin/NAME` (merged /usr).
fn audit_bin(root: &Path, name: &str) -> Result<PathBuf> {
    ["sbin", "usr/sbin"]
        .iter()
        .map(|d| root.join(d).join(name))
        .find(|p| p.is_file())
        .with_context(|| format!("no {name} in {}", root.display()))
}

/// The libraries `ldd` lists, as (path in the guest, file here). A library not found fails.
fn ldd_paths(text: &str) -> Result<BTreeMap<String, PathBuf>> {
    let mut out = BTreeMap::new();
    for line in text.lines().map(str::trim) {
        let (name, path) = match line.split_once(" => ") {
            Some((_, "not found")) => bail!("`ldd` found no {line}"),
            Some((name, rest)) => (name, rest.split(" (").next().unwrap_or(rest)),
            None if line.starts_with('/') => {
                let path = line.split(" (").next().unwrap_or(line);
                (path.trim_start_matches('/'), path)
            }
            None => continue,
        };
        let dest = if name.contains('/') { name.to_owned() } else { format!("lib/x86_64-linux-gnu/{name}") };
        out.insert(dest, PathBuf::from(path));
    }
    Ok(out)
}

/// The guest side (`xtask bench guest`): always prints a result, `{"error": …}` on failure.
pub fn guest(rounds: usize, scale: f64) -> Result<()> {
    interrupt::install();
    let result = measure(rounds, scale).unwrap_or_else(|e| json!({ "error": format!("{e:#}") }));
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(emit(&serde_json::to_string(&result)?).as_bytes())?;
    stdout.flush()?;
    Ok(())
}

fn measure(rounds: usize, scale: f64) -> Result<Value> {
    let ctx = Ctx {
        exe: std::env::current_exe().context("locating the xtask binary")?,
        sensor_bin: PathBuf::from("/bin/mnsensor"),
        fixture: fixture::Fixture::create(0)?,
    };
    let (backends, bpf_stats) = probe_sensor(&ctx, scale)?;
    ensure!(
        backends["mnsensor.backend.file"] == "fentry",
        "the sensor does not use the fentry backend for opens in this guest: {backends}"
    );
    let (mut audit, auditd) = if audit::installed() {
        match audit::Audit::start(&ctx.fixture.protected) {
            Ok(audit) => (Some(audit), json!({"used": true})),
            Err(e) => (None, json!({"used": false, "why": format!("{e:#}")})),
        }
    } else {
        (None, json!({"used": false, "why": "auditctl does not run in the guest"}))
    };
    step(format!("bench guest: {rounds} rounds, scale {scale}, auditd {auditd}"));
    let overhead = overhead::run(&ctx, rounds, scale, audit.as_mut())?;
    drop(audit);
    let enforcement =
        enforce::deny_vs_audit(&ctx, rounds, scale).unwrap_or_else(|e| json!({ "error": format!("{e:#}") }));
    Ok(json!({
        "enforcement": enforcement,
        "machine": host::describe(),
        "backends": backends,
        "auditd": auditd,
        "overhead": overhead.json(),
        "bpf_stats": bpf_stats,
    }))
}

/// One sensor before the rounds: its backends (from `sensor.start`), and with
/// `kernel.bpf_stats_enabled` on, the run count and time of its programs during one run of
/// every workload. The stats are switched off again before the rounds (they cost every run).
fn probe_sensor(ctx: &Ctx, scale: f64) -> Result<(Value, Value)> {
    let jsonl = ctx.fixture.log("probe.jsonl");
    let sensor =
        Sensor::start(&ctx.sensor_bin, &ctx.fixture.protected, &jsonl, &ctx.fixture.log("probe.log"))?;
    let start = fs::read_to_string(&jsonl)?;
    let start = start.lines().next().unwrap_or_default();
    let mut backends = serde_json::Map::new();
    for key in ["file", "file_change", "file_observer", "process", "network"] {
        let key = format!("mnsensor.backend.{key}");
        backends.insert(key.clone(), sensor::field(start, &key).unwrap_or("?").into());
    }
    let stats = bpf_stats(ctx, scale).unwrap_or_else(|e| json!({ "error": format!("{e:#}") }));
    let _ = fs::write("/proc/sys/kernel/bpf_stats_enabled", "0");
    sensor.stop()?;
    fs::remove_file(&jsonl)?;
    Ok((Value::Object(backends), stats))
}

fn bpf_stats(ctx: &Ctx, scale: f64) -> Result<Value> {
    fs::write("/proc/sys/kernel/bpf_stats_enabled", "1").context("enabling kernel.bpf_stats_enabled")?;
    let mut out = Vec::new();
    for w in &WORKLOADS {
        let before = programs()?;
        let (n, _, _) = overhead::run_workload(ctx, w, scale)?;
        let after = programs()?;
        let progs: Vec<Value> = after
            .iter()
            .filter_map(|(id, (name, cnt, ns))| {
                let (_, cnt0, ns0) = before.get(id)?;
                (cnt > cnt0).then(|| json!({"name": name, "run_cnt": cnt - cnt0, "run_time_ns": ns - ns0}))
            })
            .collect();
        // The warm-up runs too: n/10 before the n measured.
        out.push(json!({"workload": w.name, "ops": n + n / 10, "programs": progs}));
    }
    Ok(Value::Array(out))
}

/// The sensor's programs: id → (name, run_cnt, run_time_ns), from `bpftool prog show -j`.
fn programs() -> Result<BTreeMap<u64, (String, u64, u64)>> {
    let ours = sensor::our_programs();
    let progs: Vec<Value> =
        serde_json::from_str(&output(Command::new("bpftool").args(["prog", "show", "-j"]))?)?;
    Ok(progs
        .iter()
        .filter_map(|p| {
            let id = p["id"].as_u64()?;
            ours.contains(&(id as u32)).then(|| {
                let name = p["name"].as_str().unwrap_or("?").to_owned();
                (id, (name, p["run_cnt"].as_u64().unwrap_or(0), p["run_time_ns"].as_u64().unwrap_or(0)))
            })
        })
        .collect())
}

/// The console lines carrying `json`: numbered chunks (a kernel message can land between
/// two lines, not inside one of ours unnoticed), then the count and length.
fn emit(json: &str) -> String {
    let mut out = String::from("\n");
    let chunks: Vec<&str> =
        json.as_bytes().chunks(CHUNK).map(|c| std::str::from_utf8(c).unwrap_or("")).collect();
    for (i, chunk) in chunks.iter().enumerate() {
        let _ = writeln!(out, "BENCHVM-JSON {i} {chunk}");
    }
    let _ = writeln!(out, "BENCHVM-END {} {}", chunks.len(), json.len());
    out
}

/// The JSON value of [`emit`]'s lines in a console log.
fn parse_console(log: &str) -> Result<Value> {
    let mut text = String::new();
    let mut chunks = 0;
    for line in log.lines().map(|l| l.trim_end_matches('\r')) {
        if let Some(i) = line.find("BENCHVM-JSON ") {
            let (index, chunk) =
                line[i + "BENCHVM-JSON ".len()..].split_once(' ').context("a bare chunk line")?;
            ensure!(index.parse::<usize>().ok() == Some(chunks), "chunk {index} where {chunks} was due");
            text.push_str(chunk);
            chunks += 1;
        } else if let Some(i) = line.find("BENCHVM-END ") {
            let end: Vec<usize> =
                line[i + "BENCHVM-END ".len()..].split_whitespace().filter_map(|n| n.parse().ok()).collect();
            ensure!(
                end == [chunks, text.len()],
                "the end marker says {end:?}, read {chunks} chunks, {} bytes",
                text.len()
            );
            return serde_json::from_str(&text).context("the guest's result is not JSON");
        }
    }
    bail!("no BENCHVM-END line")
}

fn table(result: &Value, o: &Overhead) -> String {
    let mut t = String::new();
    let g = &result["guest"];
    let _ = writeln!(
        t,
        "\nmnsensor bench --vm {}: {}, guest kernel {} under {} on {} ({}), {} rounds, scale {}",
        result["kernel"]["name"].as_str().unwrap_or("?"),
        result["machine"]["date"].as_str().unwrap_or("?"),
        g["kernel"].as_str().unwrap_or("?"),
        result["plan"]["emulation"].as_str().unwrap_or("?"),
        result["machine"]["kernel"].as_str().unwrap_or("?"),
        result["machine"]["cpu_model"].as_str().unwrap_or("?"),
        result["plan"]["rounds"],
        result["plan"]["scale"],
    );
    let b = &result["backends"];
    let _ = writeln!(
        t,
        "sensor backends: file={} file_change={} file_observer={}; auditd: {}",
        b["mnsensor.backend.file"].as_str().unwrap_or("?"),
        b["mnsensor.backend.file_change"].as_str().unwrap_or("?"),
        b["mnsensor.backend.file_observer"].as_str().unwrap_or("?"),
        if result["auditd"]["used"] == true {
            "in the same rounds".to_owned()
        } else {
            format!("left out: {}", result["auditd"]["why"].as_str().unwrap_or("?"))
        }
    );
    let _ = writeln!(t, "emulated guest: only same-guest ratios are shown, never times");
    overhead_table(o, |w| Some(w.fentry_goal), false, &mut t);
    records(o, &mut t);
    let _ = writeln!(t, "\nTargets (fentry kernels, issue #12)");
    let ratios = o.ratios();
    for r in ratios.iter().filter(|r| r.config == Config::Mnsensor) {
        let Some(cpu) = r.cpu else { continue };
        let goal = r.workload.fentry_goal.max;
        let auditd = ratios
            .iter()
            .find(|a| a.config == Config::Auditd && a.workload.name == r.workload.name)
            .and_then(|a| a.cpu)
            .map_or(String::new(), |a| {
                format!(
                    "  (auditd {:.3}: mnsensor {})",
                    a.median,
                    if cpu.median <= a.median { "at or below it" } else { "ABOVE it" }
                )
            });
        let _ = writeln!(
            t,
            "  {:<36} {:>7.3}  ≤ {goal:.2} {}{auditd}",
            r.workload.label,
            cpu.median,
            if cpu.median <= goal { "PASS" } else { "MISS" }
        );
    }
    enforcement_lines(&result["enforcement"], &mut t);
    bpf_table(result, o, &mut t);
    for w in sensor::incidents() {
        let _ = writeln!(t, "warning: {w}");
    }
    t
}

/// Per line: the `file.open` records written against the protected opens made, over the
/// mnsensor rounds, and the loss the sensor reported per round.
fn records(o: &Overhead, t: &mut String) {
    let _ = writeln!(
        t,
        "\nRecords (mnsensor, all rounds): file.open records written / protected opens made, missing"
    );
    for w in WORKLOADS {
        let (mut written, mut made) = (0, 0);
        for s in o.samples.iter().filter(|s| s.config == Config::Mnsensor && s.workload == w.name) {
            written += s.delivered_opens.unwrap_or(0);
            made += s.expected_opens;
        }
        let _ = writeln!(
            t,
            "  {:<36} {written:>9} / {made:<9} missing {}",
            w.label,
            made.saturating_sub(written)
        );
    }
    let lost: Vec<String> = o
        .runs
        .iter()
        .filter(|r| r.config == Config::Mnsensor)
        .map(|r| r.lost.map_or("?".to_owned(), |l| l.to_string()))
        .collect();
    let _ = writeln!(t, "  records the sensor reported lost, per round: {}", lost.join(" "));
}

/// The in-kernel deny path against audit mode (enforce.rs, `deny_vs_audit`).
fn enforcement_lines(e: &Value, t: &mut String) {
    let _ = writeln!(
        t,
        "\nEnforcement: open+close CPU with the policy in enforce mode (backends {}) / audit mode, paired rounds",
        e["policy_backends"]
    );
    if let Some(error) = e["error"].as_str() {
        let _ = writeln!(t, "  not measured: {error}");
    }
    for r in e["ratios"].as_array().into_iter().flatten() {
        let c = &r["cpu_ratio"];
        let median = c["median"].as_f64().unwrap_or(f64::NAN);
        let _ = writeln!(
            t,
            "  {:<36} {median:>7.3} [{:.3}–{:.3}]  ≤ 1.05 {}",
            r["workload"].as_str().unwrap_or("?"),
            c["min"].as_f64().unwrap_or(f64::NAN),
            c["max"].as_f64().unwrap_or(f64::NAN),
            if median <= 1.05 { "PASS" } else { "MISS" }
        );
    }
}

/// `bpf_stats` of the probe run: per workload, the programs that ran, their runs per op, and
/// their run time per op relative to the workload's own CPU per op with no sensor (both
/// emulated in the same guest, so the quotient means something where times do not).
fn bpf_table(result: &Value, o: &Overhead, t: &mut String) {
    let Some(stats) = result["bpf_stats"].as_array() else {
        let _ = writeln!(t, "\nbpf_stats: {}", result["bpf_stats"]);
        return;
    };
    let _ = writeln!(
        t,
        "\nbpf_stats (one run per workload, kernel.bpf_stats_enabled): runs per op, and run time per op as a \
         share of the workload's CPU per op with no sensor (programs under 0.5% left out)"
    );
    for s in stats {
        let name = s["workload"].as_str().unwrap_or("?");
        let ops = s["ops"].as_f64().unwrap_or(f64::NAN);
        let none = o.absolute(Config::None, Config::Mnsensor, name).map_or(f64::NAN, |s: Spread| s.median);
        let mut progs: Vec<(&str, f64, f64)> = s["programs"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| {
                let cnt = p["run_cnt"].as_f64().unwrap_or(0.0);
                let ns = p["run_time_ns"].as_f64().unwrap_or(0.0);
                (p["name"].as_str().unwrap_or("?"), cnt / ops, ns / ops / none)
            })
            .collect();
        progs.sort_by(|a, b| b.2.total_cmp(&a.2));
        let total: f64 = progs.iter().map(|p| p.2).sum();
        progs.retain(|p| p.2 >= 0.005);
        let cells: Vec<String> =
            progs.iter().map(|(n, runs, share)| format!("{n} {runs:.2}×/op {:.1}%", share * 100.0)).collect();
        let _ = writeln!(t, "  {name:<16} total {:.1}%: {}", total * 100.0, cells.join(", "));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn console_chunks_round_trip() {
        let value = json!({"overhead": {"samples": [], "runs": []}, "text": "x ".repeat(1500)});
        let text = serde_json::to_string(&value).expect("serialises");
        let lines = emit(&text);
        assert_eq!(lines.matches("BENCHVM-JSON ").count(), text.len().div_ceil(CHUNK));
        // Escape codes, carriage returns and kernel messages between the lines do not matter.
        let console =
            format!("\x1bc[    1.0] booting\r\n{}[   9.9] audit: x\r\n", lines.replace('\n', "\r\n\x1b[0m"));
        assert_eq!(parse_console(&console).expect("parses"), value);
        // A lost or reordered line is an error, not a wrong result.
        let dropped: String =
            lines.lines().filter(|l| !l.starts_with("BENCHVM-JSON 1 ")).map(|l| format!("{l}\n")).collect();
        assert!(parse_console(&dropped).is_err());
        assert!(parse_console("BENCHVM-JSON 0 {}\n").is_err());
        assert_eq!(parse_console("BENCHVM-JSON 0 {}\nBENCHVM-END 1 2\n").expect("parses"), json!({}));
    }

    #[test]
    fn libraries_from_ldd() {
        let text = "\tlinux-vdso.so.1 (0x00007ffd)\n\tlibelf.so.1 => /lib/x86_64-linux-gnu/libelf.so.1 (0x00007f35)\n\
                    \tlibauparse.so.0 => /t/aud/usr/lib/x86_64-linux-gnu/libauparse.so.0 (0x1)\n\
                    \t/lib64/ld-linux-x86-64.so.2 (0x00007f35b5386000)\n";
        let libs = ldd_paths(text).expect("all found");
        assert_eq!(
            libs.into_iter().collect::<Vec<_>>(),
            [
                (
                    "lib/x86_64-linux-gnu/libauparse.so.0".to_owned(),
                    PathBuf::from("/t/aud/usr/lib/x86_64-linux-gnu/libauparse.so.0")
                ),
                (
                    "lib/x86_64-linux-gnu/libelf.so.1".to_owned(),
                    PathBuf::from("/lib/x86_64-linux-gnu/libelf.so.1")
                ),
                ("lib64/ld-linux-x86-64.so.2".to_owned(), PathBuf::from("/lib64/ld-linux-x86-64.so.2")),
            ]
        );
        assert!(ldd_paths("\tlibwrap.so.0 => not found\n").is_err());
    }
}
