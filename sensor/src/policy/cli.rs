//! `mnsensor policy check|explain|test`: tools for the people who write policies.
//! Exit status: 0 success, 1 a problem was reported, 2 usage error (clap).
use std::{
    collections::BTreeMap,
    fmt::Write as _,
    fs::File,
    io::{BufRead as _, BufReader, Write as _},
    path::{Path, PathBuf},
    process::ExitCode,
};

use clap::{Args, Subcommand, ValueEnum};
use jiff::{Timestamp, civil::DateTime};

use super::{
    AccessRequest, DEFAULT_POLICY_DIR, Decision, Directory as _, Executable, LoadOptions, Nss, Op, OpSet,
    PolicyErrors, PolicySet, ResponsibleSource, When,
};

/// `mnsensor policy`.
#[derive(Debug, Args)]
pub struct PolicyArgs {
    #[command(subcommand)]
    pub command: PolicyCommand,
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Check policy files and directories; every error with file:line:column.
    Check(CheckArgs),
    /// Show which allow entry decides an access, and why.
    Explain(ExplainArgs),
    /// Replay recorded `file.open` events (JSON lines) and print each one's decision.
    Test(TestArgs),
}

/// `mnsensor policy check PATH…`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Policy files or directories (`*.yaml`, `*.yml` inside).
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// Skip the checks that need the target host (file owner and mode, NSS users and
    /// groups, existence of paths and programs): for CI on another machine.
    #[arg(long)]
    pub no_host_checks: bool,
}

/// `mnsensor policy explain`.
#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// The user acting on the file (filesystem user): a name or a uid.
    #[arg(long, value_name = "USER")]
    pub user: String,
    /// The login user (auid) if it differs, e.g. who ran `sudo`; name or uid.
    #[arg(long, value_name = "USER")]
    pub login_user: Option<String>,
    /// Executable of the acting process (symlinks are resolved as the kernel does).
    #[arg(long, value_name = "PATH")]
    pub program: PathBuf,
    /// The file accessed.
    #[arg(long, value_name = "PATH")]
    pub path: PathBuf,
    /// Operations: read, write, create, delete, rename, chmod, exec (repeat or comma-separate).
    #[arg(long, value_name = "OP", required = true, value_delimiter = ',', value_parser = parse_op)]
    pub op: Vec<Op>,
    /// When: RFC 3339 (`2026-04-01T10:00:00+09:00`) or `YYYY-MM-DD HH:MM` read in each
    /// schedule's time zone; default now.
    #[arg(long, value_name = "TIME", value_parser = parse_when)]
    pub at: Option<When>,
    /// Policy files or directories [default: /etc/mnsensor/policies.d].
    #[arg(long, value_name = "PATH")]
    pub policy: Vec<PathBuf>,
}

/// `mnsensor policy test PATH… --events FILE`.
#[derive(Debug, Args)]
pub struct TestArgs {
    /// Policy files or directories.
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// Recorded events, one JSON object per line (docs/events.md).
    #[arg(long, value_name = "FILE")]
    pub events: PathBuf,
    /// Output: `text` (key=value per event) or `json` (one object per event).
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

fn parse_op(s: &str) -> Result<Op, String> {
    Op::from_name(s).ok_or_else(|| format!("`{s}` is not one of: {}", Op::NAMES.join(", ")))
}

/// RFC 3339, or a wall-clock `YYYY-MM-DD HH:MM[:SS]` (also with `T`).
pub fn parse_when(s: &str) -> Result<When, String> {
    if let Ok(ts) = s.parse::<Timestamp>() {
        return Ok(When::Instant(ts));
    }
    let civil = s.trim().replacen(' ', "T", 1);
    match civil.parse::<DateTime>() {
        Ok(dt) if civil.len() >= 16 => Ok(When::Local(dt)),
        _ => Err(format!("`{s}` is neither RFC 3339 (2026-04-01T10:00:00+09:00) nor YYYY-MM-DD HH:MM")),
    }
}

/// Runs a `policy` subcommand; returns the process exit status.
pub fn run(args: PolicyArgs) -> ExitCode {
    let ok = match args.command {
        PolicyCommand::Check(a) => check(&a),
        PolicyCommand::Explain(a) => explain(&a),
        PolicyCommand::Test(a) => test(&a),
    };
    let _ = std::io::stdout().flush();
    if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

fn print_errors(e: &PolicyErrors) {
    let mut err = std::io::stderr().lock();
    for e in &e.errors {
        let _ = writeln!(err, "{}:{}:{}: error: {}", e.file.display(), e.pos.line, e.pos.column, e.problem);
    }
    let n = e.errors.len();
    let _ = writeln!(
        err,
        "mnsensor: {n} error{} in the policy set; nothing was loaded",
        if n == 1 { "" } else { "s" }
    );
}

/// Loads a set, printing its warnings, or every error; `None` on errors.
pub fn load(paths: &[PathBuf], options: &LoadOptions) -> Option<PolicySet> {
    match PolicySet::load_with(paths, options) {
        Ok(set) => {
            for w in set.warnings() {
                eprintln!("{}:{}:{}: warning: {}", w.file.display(), w.pos.line, w.pos.column, w.problem);
            }
            Some(set)
        }
        Err(e) => {
            print_errors(&e);
            None
        }
    }
}

fn check(a: &CheckArgs) -> bool {
    let options = LoadOptions { host_checks: !a.no_host_checks, ..LoadOptions::default() };
    let Some(set) = load(&a.paths, &options) else {
        return false;
    };
    let policies = set.policies();
    let protected: usize = policies.iter().map(|p| p.protect.len()).sum();
    let entries: usize = policies.iter().map(|p| p.allow.len()).sum();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "policy set OK: {} file{}, {} polic{}, {protected} protected path{}/glob{}, {entries} allow entr{}",
        set.files().len(),
        plural(set.files().len()),
        policies.len(),
        if policies.len() == 1 { "y" } else { "ies" },
        plural(protected),
        plural(protected),
        if entries == 1 { "y" } else { "ies" },
    );
    let _ = writeln!(out, "policy set sha256: {}", set.hash());
    if a.no_host_checks {
        let _ = writeln!(out, "host checks skipped (--no-host-checks): check again on the file server");
    }
    for p in policies {
        let _ = writeln!(
            out,
            "  {} [{} mode, default {}/{}]: {} protected, {} allow entries ({}:{})",
            p.name,
            p.mode,
            p.default.action,
            p.default.severity,
            p.protect.len(),
            p.allow.len(),
            p.file.display(),
            p.pos
        );
    }
    print!("{out}");
    true
}

/// A uid from a name or a number.
fn uid_of(s: &str) -> Result<u32, String> {
    if let Ok(uid) = s.parse::<u32>() {
        return Ok(uid);
    }
    Nss.user_by_name(s).map(|u| u.uid).ok_or_else(|| format!("unknown user `{s}`"))
}

/// `path` with the symlinks of its existing part resolved (the file itself may not exist).
fn resolve_best_effort(path: &Path) -> PathBuf {
    if let Ok(c) = std::fs::canonicalize(path) {
        return c;
    }
    let mut tail = Vec::new();
    let mut cur = path;
    while let Some(parent) = cur.parent() {
        if let Some(name) = cur.file_name() {
            tail.push(name.to_owned());
        }
        if let Ok(c) = std::fs::canonicalize(parent) {
            let mut out = c;
            for t in tail.iter().rev() {
                out.push(t);
            }
            return out;
        }
        cur = parent;
    }
    path.to_owned()
}

fn explain(a: &ExplainArgs) -> bool {
    let (uid, auid) = match (uid_of(&a.user), a.login_user.as_deref().map(uid_of).transpose()) {
        (Ok(u), Ok(l)) => (u, l),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("mnsensor: {e}");
            return false;
        }
    };
    let set = if a.policy.is_empty() {
        if Path::new(DEFAULT_POLICY_DIR).exists() {
            load(&[PathBuf::from(DEFAULT_POLICY_DIR)], &LoadOptions::default())
        } else {
            eprintln!("note: {DEFAULT_POLICY_DIR} does not exist; using the embedded default policy set");
            PolicySet::embedded().map_err(|e| print_errors(&e)).ok()
        }
    } else {
        load(&a.policy, &LoadOptions::default())
    };
    let Some(set) = set else {
        return false;
    };
    let program = resolve_best_effort(&a.program);
    // A path given as text is read as a display form (docs/events.md): `\xNN` is a byte.
    let given =
        a.path.to_str().map_or_else(|| a.path.clone(), |s| crate::event::path::to_path(s).into_owned());
    let path = resolve_best_effort(&given);
    let ops: OpSet = a.op.iter().copied().collect();
    let time = a.at.unwrap_or_else(|| When::Instant(Timestamp::now()));
    let req = AccessRequest {
        path: &path,
        ops,
        uid,
        auid,
        program: Executable { path: &program, sha256: None },
        time,
    };
    let mut out = String::new();
    let _ = writeln!(out, "access:           {ops} {}", crate::event::path::of_os(&path));
    if path != given {
        let _ = writeln!(out, "                  (given as {})", a.path.display());
    }
    let _ = writeln!(out, "program:          {}", program.display());
    if program != a.program {
        let _ = writeln!(
            out,
            "                  (given as {}; the kernel reports the resolved path)",
            a.program.display()
        );
    }
    let _ = writeln!(out, "time:             {time}");
    let _ = writeln!(out, "policy set:       {} file(s), sha256 {}", set.files().len(), set.hash());
    let _ = writeln!(out, "{}", set.explain(&req));
    print!("{out}");
    true
}

/// Counts for the replay summary.
#[derive(Default)]
struct Tally {
    lines: usize,
    replayed: usize,
    skipped: usize,
    malformed: usize,
    verdicts: BTreeMap<&'static str, usize>,
}

fn test(a: &TestArgs) -> bool {
    let Some(set) = load(&a.paths, &LoadOptions::default()) else {
        return false;
    };
    let file = match File::open(&a.events) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("mnsensor: cannot open {}: {e}", a.events.display());
            return false;
        }
    };
    let mut tally = Tally::default();
    let mut stdout = std::io::stdout().lock();
    for (i, line) in BufReader::new(file).split(b'\n').enumerate() {
        let n = i + 1;
        let line = match line {
            Ok(l) => l,
            Err(e) => {
                eprintln!("{}:{n}: error: {e}", a.events.display());
                tally.malformed += 1;
                break;
            }
        };
        let text = String::from_utf8_lossy(&line);
        if text.trim().is_empty() {
            continue;
        }
        tally.lines += 1;
        match replay_one(&set, &text) {
            Ok(None) => tally.skipped += 1,
            Ok(Some(r)) => {
                tally.replayed += 1;
                *tally.verdicts.entry(r.decision.verdict.as_str()).or_default() += 1;
                let _ = writeln!(stdout, "{}", r.render(&a.events, n, a.format));
            }
            Err(why) => {
                eprintln!("{}:{n}: malformed event skipped: {why}", a.events.display());
                tally.malformed += 1;
            }
        }
    }
    let verdicts: Vec<String> = tally.verdicts.iter().map(|(v, c)| format!("{v} {c}")).collect();
    let summary = format!(
        "{} event line{}: {} file.open replayed ({}), {} other event{} skipped, {} malformed line{}; policy set sha256 {}",
        tally.lines,
        plural(tally.lines),
        tally.replayed,
        if verdicts.is_empty() { "none".into() } else { verdicts.join(", ") },
        tally.skipped,
        plural(tally.skipped),
        tally.malformed,
        plural(tally.malformed),
        set.hash()
    );
    match a.format {
        Format::Text => {
            let _ = writeln!(stdout, "summary: {summary}");
        }
        Format::Json => eprintln!("summary: {summary}"),
    }
    tally.malformed == 0
}

/// One replayed event.
struct Replayed {
    decision: Decision,
    time: Timestamp,
    uid: u32,
    auid: Option<u32>,
    user: String,
    ops: OpSet,
    program: String,
    path: String,
}

impl Replayed {
    fn render(&self, file: &Path, line: usize, format: Format) -> String {
        let d = &self.decision;
        match format {
            Format::Text => format!(
                "{}:{line}: {} policy={} entry={} severity={} mode={} user={} op={} program={} path={} time={}",
                file.display(),
                d.verdict,
                d.policy.as_deref().unwrap_or("-"),
                d.entry.as_deref().unwrap_or("-"),
                d.severity.map_or("-", |s| s.as_str()),
                d.mode.map_or("-", |m| m.as_str()),
                self.user,
                self.ops,
                self.program,
                self.path,
                self.time
            ),
            Format::Json => serde_json::json!({
                "line": line,
                "verdict": d.verdict.as_str(),
                "policy": d.policy.as_deref(),
                "entry": d.entry.as_deref(),
                "severity": d.severity.map(|s| s.as_str()),
                "mode": d.mode.map(|m| m.as_str()),
                "uid": self.uid,
                "auid": self.auid,
                "operations": self.ops.iter().map(Op::as_str).collect::<Vec<_>>(),
                "program": self.program,
                "path": self.path,
                "time": self.time.to_string(),
            })
            .to_string(),
        }
    }
}

/// Decides one JSON line; `Ok(None)` for records other than `file.open`.
fn replay_one(set: &PolicySet, line: &str) -> Result<Option<Replayed>, String> {
    let v: serde_json::Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
    let obj = v.as_object().ok_or("not a JSON object")?;
    let str_of = |k: &str| obj.get(k).and_then(serde_json::Value::as_str);
    let id_of = |k: &str| -> Result<Option<u32>, String> {
        match obj.get(k) {
            None => Ok(None),
            Some(x) => x
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .map(Some)
                .ok_or_else(|| format!("`{k}` is not a user id")),
        }
    };
    let name = str_of("event.name").ok_or("no `event.name`")?;
    if name != "file.open" {
        return Ok(None);
    }
    let path = str_of("file.path").ok_or("no `file.path`")?;
    let program = str_of("process.executable.path").ok_or("no `process.executable.path`")?;
    let time: Timestamp = str_of("time").ok_or("no `time`")?.parse().map_err(|e| format!("`time`: {e}"))?;
    let mut ops: OpSet = match str_of("mnsensor.file.access").ok_or("no `mnsensor.file.access`")? {
        "read" => Op::Read.into(),
        "write" => Op::Write.into(),
        "read_write" => Op::Read | Op::Write,
        other => return Err(format!("`mnsensor.file.access` is `{other}`, not read, write or read_write")),
    };
    if obj.get("mnsensor.file.created").and_then(serde_json::Value::as_bool) == Some(true) {
        ops.insert(Op::Create);
    }
    let by_name = |k: &str| -> Result<Option<u32>, String> {
        str_of(k)
            .map(|n| Nss.user_by_name(n).map(|u| u.uid).ok_or_else(|| format!("`{k}`: unknown user `{n}`")))
            .transpose()
    };
    let uid = match id_of("process.user.id")? {
        Some(u) => u,
        None => by_name("process.user.name")?.ok_or("no `process.user.id` or `process.user.name`")?,
    };
    let auid = match id_of("mnsensor.login_user.id")? {
        Some(u) => Some(u),
        None => by_name("mnsensor.login_user.name")?,
    };
    let req = AccessRequest {
        path: &crate::event::path::to_path(path),
        ops,
        uid,
        auid,
        program: Executable { path: &crate::event::path::to_path(program), sha256: None },
        time: When::Instant(time),
    };
    let who = req.responsible();
    let name_key = match who.source {
        ResponsibleSource::LoginUser => "mnsensor.login_user.name",
        ResponsibleSource::FilesystemUser => "process.user.name",
    };
    let user = match str_of(name_key) {
        Some(n) => format!("{n}({})", who.uid),
        None => who.uid.to_string(),
    };
    Ok(Some(Replayed {
        decision: set.evaluate(&req),
        time,
        uid,
        auid,
        user,
        ops,
        program: program.to_owned(),
        path: path.to_owned(),
    }))
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

#[cfg(test)]
mod tests {
    use super::{When, parse_when};

    #[test]
    fn times() {
        assert!(matches!(parse_when("2026-04-01T10:00:00+09:00"), Ok(When::Instant(_))));
        assert!(matches!(parse_when("2026-04-01T01:00:00Z"), Ok(When::Instant(_))));
        assert!(matches!(parse_when("2026-04-01 10:00"), Ok(When::Local(_))));
        assert!(matches!(parse_when("2026-04-01 10:00:30"), Ok(When::Local(_))));
        assert!(parse_when("2026-04-01").is_err());
        assert!(parse_when("tomorrow").is_err());
    }
}
