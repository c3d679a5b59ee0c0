//! `mnsensor policy check|explain|test` through the real binary (no kernel parts needed).
//!
//! Policies live in private temp directories owned by root (mode 0755, files 0644); the
//! users and groups are the ones every Debian system has (root, daemon, bin, nobody).

use std::{
    fs,
    os::unix::fs::{PermissionsExt as _, symlink},
    path::{Path, PathBuf},
    process::Command,
};

use mnsensor_tests::{Output, TempDir, path_str, run_capture, scaled, sensor_bin, util::COMMAND_TIMEOUT};

fn run(args: &[&str]) -> Output {
    run_capture(Command::new(sensor_bin()).arg("policy").args(args), scaled(COMMAND_TIMEOUT))
}

fn describe(o: &Output) -> String {
    format!("status {}\n--- stdout ---\n{}\n--- stderr ---\n{}", o.status, o.stdout, o.stderr)
}

/// A temp dir with `policies/`, a protected tree `data/mynumber/` and a fake office program.
struct Fixture {
    dir: TempDir,
    policies: PathBuf,
    data: PathBuf,
    office: PathBuf,
}

impl Fixture {
    fn new(label: &str) -> Self {
        let dir = TempDir::new(label);
        let policies = dir.mkdir("policies");
        let data = dir.mkdir("data");
        fs::create_dir_all(data.join("mynumber")).expect("mkdir mynumber");
        fs::write(data.join("mynumber/a.xlsx"), b"x").expect("write a.xlsx");
        let office = dir.write("bin/office", b"#!/bin/sh\n");
        fs::set_permissions(&office, fs::Permissions::from_mode(0o755)).expect("chmod office");
        Self { dir, policies, data, office }
    }

    /// Writes `policies/NAME` with mode 0644.
    fn policy(&self, name: &str, text: &str) -> PathBuf {
        let p = self.policies.join(name);
        fs::write(&p, text).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).expect("chmod 0644");
        p
    }

    fn data(&self) -> &str {
        path_str(&self.data)
    }

    fn policies(&self) -> &str {
        path_str(&self.policies)
    }

    /// A small valid policy named `name` protecting `data/`.
    fn minimal(&self, name: &str) -> String {
        format!(
            "apiVersion: mnsensor/v1\nkind: AccessPolicy\nmetadata: {{name: {name}}}\nspec:\n  mode: audit\n  protect: [{{path: {}}}]\n  default: {{action: deny, severity: high}}\n",
            self.data()
        )
    }

    /// The payroll policy of the explain and replay tests.
    fn payroll(&self) -> String {
        format!(
            r#"apiVersion: mnsensor/v1
kind: AccessPolicy
metadata: {{name: payroll, description: "マイナンバー台帳は給与担当のみ"}}
spec:
  mode: enforce
  protect:
    - path: {data}/mynumber/
    - glob: "{data}/**/マイナンバー*.xlsx"
  lists:
    staff: {{users: [daemon], groups: [bin]}}
    apps: {{programs: [{office}]}}
  allow:
    - name: payroll-staff
      subjects: [staff]
      programs: [apps]
      operations: [read, write]
      schedule:
        timezone: Asia/Tokyo
        windows: [{{days: [mon, tue, wed, thu, fri], from: "09:00", to: "19:00"}}]
        except: [jp_holidays, year_end]
    - name: root-reads
      subjects: [{{uid: 0}}]
      operations: [read]
  default: {{action: deny, severity: high}}
"#,
            data = self.data(),
            office = path_str(&self.office)
        )
    }
}

/// `policy check` fails, prints every `(file, line, column, text)` as
/// `FILE:LINE:COLUMN: error: …TEXT…`, and loads nothing.
fn expect_errors(args: &[&str], want: &[(&Path, u64, u64, &str)]) -> Output {
    let mut all = vec!["check"];
    all.extend_from_slice(args);
    let o = run(&all);
    assert_eq!(o.status.code(), Some(1), "exit status: {}", describe(&o));
    assert!(!o.stdout.contains("policy set OK"), "{}", describe(&o));
    assert!(o.stderr.contains("nothing was loaded"), "{}", describe(&o));
    for (file, line, col, text) in want {
        let prefix = format!("{}:{line}:{col}: error: ", file.display());
        assert!(
            o.stderr.lines().any(|l| l.starts_with(&prefix) && l.contains(text)),
            "no `{prefix}…{text}…` in:\n{}",
            describe(&o)
        );
    }
    let errors = o.stderr.lines().filter(|l| l.contains(": error: ")).count();
    assert_eq!(errors, want.len(), "error count: {}", describe(&o));
    o
}

#[test]
fn check_accepts_a_valid_set_and_prints_a_stable_hash() {
    let f = Fixture::new("check-ok");
    f.policy("10-payroll.yaml", &f.payroll());
    let o = run(&["check", f.policies()]);
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    assert!(
        o.stdout.contains("policy set OK: 1 file, 1 policy, 2 protected paths/globs, 2 allow entries"),
        "{}",
        describe(&o)
    );
    let hash = |o: &Output| {
        o.stdout
            .lines()
            .find_map(|l| l.strip_prefix("policy set sha256: "))
            .unwrap_or_else(|| panic!("no hash in {}", describe(o)))
            .to_owned()
    };
    let h = hash(&o);
    assert_eq!(
        h,
        mnsensor_tests::policy_hash::of_dir(&f.policies),
        "the documented preimage (docs/policy.md)"
    );
    assert_eq!(hash(&run(&["check", f.policies()])), h, "same files, same hash");
    // Comments and layout do not change the hash; content does.
    let g = Fixture::new("check-ok2");
    let text =
        g.payroll().replace(path_str(&g.data), f.data()).replace(path_str(&g.office), path_str(&f.office));
    g.policy(
        "x.yaml",
        &format!("# 給与\n{}", text.replace("[read, write]", "\n        - read\n        - write")),
    );
    assert_eq!(hash(&run(&["check", g.policies()])), h, "reformatted copy");
    g.policy("x.yaml", &text.replace("severity: high", "severity: critical"));
    let changed = hash(&run(&["check", g.policies()]));
    assert_ne!(changed, h);
    assert_eq!(changed, mnsensor_tests::policy_hash::of_dir(&g.policies), "the documented preimage");
}

#[test]
fn check_reports_contradictory_policies_and_the_winner() {
    let f = Fixture::new("check-conflict");
    let doc = |name: &str, path: &str, entry: &str| {
        format!(
            "apiVersion: mnsensor/v1\nkind: AccessPolicy\nmetadata: {{name: {name}}}\nspec:\n  mode: enforce\n  protect: [{{path: {path}}}]\n  allow:\n    - {entry}\n  default: {{action: deny, severity: high}}\n"
        )
    };
    let mynumber = format!("{}/mynumber", f.data());
    let a = f.policy(
        "10-dept.yaml",
        &doc(
            "department",
            f.data(),
            "{name: daemon-rw, subjects: [{user: daemon}], operations: [read, write]}",
        ),
    );
    f.policy("20-mynumber.yaml", &doc("mynumber", &mynumber, "{name: bin-read, subjects: [{group: bin}]}"));
    let o = run(&["check", f.policies()]);
    assert_eq!(o.status.code(), Some(0), "a conflict is a warning: {}", describe(&o));
    let want = format!(
        "{}:8:14: warning: policies `department` and `mynumber` contradict each other on {mynumber}: for user daemon (uid 1), read,write: `department` allows it (allow entry `daemon-rw`), `mynumber` has no allow entry for it (its default gives deny); `mynumber` wins (deny): an access is allowed only if every policy covering the path allows it",
        path_str(&a)
    );
    assert!(o.stderr.lines().any(|l| l == want), "expected\n{want}\n{}", describe(&o));
    // The other direction: `mynumber` allows the group bin every operation, `department`
    // allows it nothing.
    assert!(
        o.stderr.contains("policies `mynumber` and `department` contradict each other")
            && o.stderr.contains("`department` wins (deny)"),
        "{}",
        describe(&o)
    );
    // Policies on separate trees do not conflict.
    let g = Fixture::new("check-no-conflict");
    g.policy(
        "10-a.yaml",
        &doc("a", &format!("{}/mynumber", g.data()), "{name: e, subjects: [{user: daemon}]}"),
    );
    fs::create_dir_all(g.data.join("other")).expect("mkdir other");
    g.policy("20-b.yaml", &doc("b", &format!("{}/other", g.data()), "{name: e, subjects: [{user: bin}]}"));
    let o = run(&["check", g.policies()]);
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    assert!(!o.stderr.contains("contradict"), "{}", describe(&o));
}

#[test]
fn shipped_policies_check() {
    // The shipped files are embedded so this also runs in the VM matrix (no workspace there).
    let f = Fixture::new("shipped");
    let default = f.policy("default.yaml", include_str!("../../policies/default.yaml"));
    let o = run(&["check", "--no-host-checks", path_str(&default)]);
    assert_eq!(o.status.code(), Some(0), "policies/default.yaml: {}", describe(&o));
    let example =
        f.policy("payroll-mynumber.yaml", include_str!("../../policies/examples/payroll-mynumber.yaml"));
    let o = run(&["check", "--no-host-checks", path_str(&example)]);
    assert_eq!(o.status.code(), Some(0), "the example: {}", describe(&o));
    assert!(o.stdout.contains("payroll-mynumber [audit mode, default deny/high]"), "{}", describe(&o));
}

#[test]
fn schema_errors_are_located() {
    let f = Fixture::new("schema");
    let min = f.minimal("p");
    let p = f.policy("p.yaml", &format!("{min}  colour: red\n"));
    expect_errors(&[f.policies()], &[(&p, 8, 3, "unknown key `colour`")]);
    let p = f
        .policy("p.yaml", &min.replace("protect: [{", "protect: {").replace("}]\n  default", "}\n  default"));
    expect_errors(&[f.policies()], &[(&p, 6, 12, "protect: expected a list, found a mapping")]);
    let p = f.policy("p.yaml", &min.replace("  mode: audit\n", "  mode: audit\n  mode: enforce\n"));
    expect_errors(&[f.policies()], &[(&p, 6, 3, "duplicate key `mode` (first at line 5)")]);
    let p = f.policy("p.yaml", &min.replace("mode: audit", "mode: enforcing"));
    expect_errors(&[f.policies()], &[(&p, 5, 9, "mode `enforcing` is not one of: audit, enforce")]);
    let p = f.policy("p.yaml", &min.replace("apiVersion: mnsensor/v1", "apiVersion: mnsensor/v9"));
    expect_errors(&[f.policies()], &[(&p, 1, 13, "unsupported apiVersion")]);
    // Shift_JIS (マイ) in a comment.
    fs::write(&p, b"apiVersion: mnsensor/v1\n# \x83\x7d\x83\x43\n").expect("write");
    expect_errors(&[f.policies()], &[(&p, 2, 3, "not valid UTF-8 (save it as UTF-8")]);
    let p = f.policy("p.yaml", "apiVersion: mnsensor/v1\nkind: AccessPolicy\nmetadata: {name: p\n");
    expect_errors(&[f.policies()], &[(&p, 3, 11, "YAML: unclosed bracket '{'")]);
}

#[test]
fn names_must_be_unique_and_lists_must_agree() {
    let f = Fixture::new("names");
    let a = f.policy("a.yaml", &f.minimal("same"));
    let b = f.policy("b.yaml", &f.minimal("same"));
    expect_errors(
        &[f.policies()],
        &[(&b, 3, 18, &format!("duplicate policy name `same` (first defined at {}:3:18)", a.display()))],
    );
    fs::remove_file(&b).expect("rm b");
    // A list defined in a.yaml is used from c.yaml; d.yaml redefines it differently.
    let with_lists =
        f.minimal("same").replace("  default:", "  lists:\n    staff: {users: [root]}\n  default:");
    f.policy("a.yaml", &with_lists);
    let c = f.policy(
        "c.yaml",
        &f.minimal("c").replace(
            "  default:",
            "  allow:\n    - {name: e, subjects: [staff]}\n    - {name: e, subjects: [nolist]}\n  default:",
        ),
    );
    let d = f.policy("d.yaml", "apiVersion: mnsensor/v1\nkind: Lists\nmetadata: {name: d}\nspec:\n  lists:\n    staff: {users: [daemon]}\n");
    expect_errors(
        &[f.policies()],
        &[
            (&c, 9, 14, "duplicate allow entry `e`"),
            (&c, 9, 28, "unknown list `nolist` (defined: staff)"),
            (
                &d,
                6,
                5,
                &format!("list `staff` is already defined with different content at {}:8:5", a.display()),
            ),
        ],
    );
}

#[test]
fn unknown_users_groups_and_missing_paths_are_errors() {
    let f = Fixture::new("host");
    let text = format!(
        "apiVersion: mnsensor/v1\nkind: AccessPolicy\nmetadata: {{name: p}}\nspec:\n  mode: audit\n  protect:\n    - path: {d}/nope\n    - glob: \"{d}/nodir/**/*.xlsx\"\n  allow:\n    - name: e\n      subjects: [{{user: no-such-user-mnsensor}}, {{group: no-such-group-mnsensor}}]\n      programs: [{d}/no-program]\n  default: {{action: deny, severity: high}}\n",
        d = f.data()
    );
    let p = f.policy("p.yaml", &text);
    expect_errors(
        &[f.policies()],
        &[
            (&p, 7, 7, "/nope: does not exist"),
            (&p, 8, 7, "/nodir: does not exist"),
            (&p, 11, 18, "unknown user `no-such-user-mnsensor`"),
            (&p, 11, 49, "unknown group `no-such-group-mnsensor`"),
            (&p, 12, 18, "/no-program: does not exist"),
        ],
    );
}

#[test]
fn more_entries_than_the_kernel_map_holds() {
    let f = Fixture::new("capacity");
    let many = f.dir.mkdir("many");
    let mut halves = [String::new(), String::new()];
    for i in 0..=4096 {
        fs::write(many.join(format!("f{i}")), b"").expect("write");
        halves[i % 2].push_str(&format!("    - path: {}/f{i}\n", path_str(&many)));
    }
    let doc = |name: &str, items: &str| {
        format!(
            "apiVersion: mnsensor/v1\nkind: AccessPolicy\nmetadata: {{name: {name}}}\nspec:\n  mode: audit\n  protect:\n{items}  default: {{action: audit, severity: low}}\n"
        )
    };
    f.policy("a.yaml", &doc("a", &halves[0]));
    let b = f.policy("b.yaml", &doc("b", &halves[1]));
    // a.yaml holds 2049 entries, b.yaml 2048: the 4097th is b.yaml's last (line 7 + 2047).
    expect_errors(&[f.policies()], &[(&b, 7 + 2047, 7, "more than 4096 distinct protected paths")]);
}

#[test]
fn unsafe_files_are_refused() {
    let f = Fixture::new("unsafe");
    let p = f.policy("p.yaml", &f.minimal("p"));
    fs::set_permissions(&p, fs::Permissions::from_mode(0o666)).expect("chmod");
    expect_errors(&[f.policies()], &[(&p, 1, 1, "world-writable (mode 0666)")]);
    fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).expect("chmod");
    std::os::unix::fs::chown(&p, Some(65534), None).expect("chown");
    expect_errors(&[f.policies()], &[(&p, 1, 1, "owned by uid 65534, not root")]);
    fs::remove_file(&p).expect("rm");

    // Symlinks: inside the policy directory fine, leading out of it refused.
    let sub = f.policies.join("available");
    fs::create_dir(&sub).expect("mkdir");
    fs::write(sub.join("p.yaml"), f.minimal("linked")).expect("write");
    symlink("available/p.yaml", f.policies.join("10-linked.yaml")).expect("symlink");
    let o = run(&["check", f.policies()]);
    assert_eq!(o.status.code(), Some(0), "symlink inside: {}", describe(&o));
    let outside = f.dir.write("outside/p.yaml", f.minimal("outside"));
    let link = f.policies.join("20-out.yaml");
    symlink(&outside, &link).expect("symlink");
    expect_errors(&[f.policies()], &[(&link, 1, 1, "outside the policy directory")]);
    fs::remove_file(&link).expect("rm");

    // Not regular files: a FIFO (must not hang the loader) and a directory.
    let fifo = f.policies.join("30-fifo.yaml");
    mnsensor_tests::util::mkfifo(&fifo);
    let dir = f.policies.join("40-dir.yaml");
    fs::create_dir(&dir).expect("mkdir");
    expect_errors(
        &[f.policies()],
        &[
            (&fifo, 1, 1, "not a regular file (it is a FIFO)"),
            (&dir, 1, 1, "not a regular file (it is a directory)"),
        ],
    );
    fs::remove_file(&fifo).expect("rm");
    fs::remove_dir(&dir).expect("rmdir");

    // Too large.
    let big = f.policy("50-big.yaml", &format!("{}{}", f.minimal("big"), "#".repeat(300 * 1024)));
    expect_errors(&[f.policies()], &[(&big, 1, 1, "more than the limit of 262144 bytes")]);
    fs::remove_file(&big).expect("rm");

    // A world-writable policy directory.
    fs::set_permissions(&f.policies, fs::Permissions::from_mode(0o777)).expect("chmod dir");
    expect_errors(&[f.policies()], &[(&f.policies, 1, 1, "the directory is world-writable")]);
    fs::set_permissions(&f.policies, fs::Permissions::from_mode(0o755)).expect("chmod dir");
}

#[test]
fn alias_bombs_are_refused() {
    let f = Fixture::new("bomb");
    let mut text = f.minimal("bomb");
    text.push_str("  x0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for i in 1..9 {
        let p = i - 1;
        text.push_str(&format!(
            "  x{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
        ));
    }
    let p = f.policy("bomb.yaml", &text);
    let o = run(&["check", f.policies()]);
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
    let prefix = format!("{}:", p.display());
    let line =
        o.stderr.lines().find(|l| l.starts_with(&prefix)).unwrap_or_else(|| panic!("{}", describe(&o)));
    assert!(line.contains("error: YAML: alias"), "{line}");
    let pos: Vec<&str> = line[prefix.len()..].splitn(3, ':').collect();
    assert!(pos[0].parse::<u64>().is_ok_and(|l| l >= 8) && pos[1].parse::<u64>().is_ok(), "{line}");
}

#[test]
fn every_error_of_every_file_at_once() {
    let f = Fixture::new("all");
    let a = f.policy(
        "a.yaml",
        &f.minimal("a").replace("mode: audit", "mode: sometimes").replace("severity: high", "severity: 7"),
    );
    let b = f.policy(
        "b.yaml",
        &f.minimal("b").replace("  default:", "  allow: [{name: e, subjects: [{user: no-such-user-mnsensor}], operations: [read, peek]}]\n  default:"),
    );
    let c = f.policy("c.yaml", &f.minimal("c"));
    fs::set_permissions(&c, fs::Permissions::from_mode(0o666)).expect("chmod");
    expect_errors(
        &[f.policies()],
        &[
            (&a, 5, 9, "mode `sometimes`"),
            (&a, 7, 37, "severity: expected one of low, medium, high, critical, found an integer"),
            (&b, 7, 32, "unknown user `no-such-user-mnsensor`"),
            (&b, 7, 83, "operation `peek`"),
            (&c, 1, 1, "world-writable"),
        ],
    );
}

fn explain(f: &Fixture, extra: &[&str]) -> Output {
    let file = format!("{}/mynumber/a.xlsx", f.data());
    let mut args = vec!["explain", "--policy", f.policies(), "--path", &file];
    args.extend_from_slice(extra);
    let o = run(&args);
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    o
}

#[test]
fn explain_names_the_deciding_entry() {
    let f = Fixture::new("explain");
    f.policy("10-payroll.yaml", &f.payroll());
    let office = path_str(&f.office);
    let staff = ["--user", "daemon", "--program", office, "--op", "read"];
    // Wednesday 10:00 in Tokyo: inside the window.
    let o = explain(&f, &[&staff[..], &["--at", "2026-04-01 10:00"]].concat());
    assert!(o.stdout.contains("allow payroll-staff (line 13): MATCH"), "{}", describe(&o));
    assert!(
        o.stdout.contains("Wed 2026-04-01 10:00 Asia/Tokyo is inside mon,tue,wed,thu,fri 09:00–19:00"),
        "{}",
        describe(&o)
    );
    assert!(o.stdout.contains("decision: ALLOW (policy payroll, entry payroll-staff)"), "{}", describe(&o));
    // The same instant in RFC 3339.
    let o = explain(&f, &[&staff[..], &["--at", "2026-04-01T01:00:00Z"]].concat());
    assert!(o.stdout.contains("decision: ALLOW (policy payroll, entry payroll-staff)"), "{}", describe(&o));
    // 20:00: outside; the default applies.
    let o = explain(&f, &[&staff[..], &["--at", "2026-04-01 20:00"]].concat());
    assert!(o.stdout.contains("is outside mon,tue,wed,thu,fri 09:00–19:00"), "{}", describe(&o));
    assert!(
        o.stdout.contains(
            "decision: DENY (policy payroll: no allow entry matched, default, severity high, mode enforce)"
        ),
        "{}",
        describe(&o)
    );
    // A Tuesday that is a holiday (国民の休日), and the year-end closure.
    let o = explain(&f, &[&staff[..], &["--at", "2026-09-22 10:00"]].concat());
    assert!(o.stdout.contains("2026-09-22 is 国民の休日 (jp_holidays)"), "{}", describe(&o));
    assert!(o.stdout.contains("decision: DENY"), "{}", describe(&o));
    let o = explain(&f, &[&staff[..], &["--at", "2026-12-29 10:00"]].concat());
    assert!(o.stdout.contains("year-end closure"), "{}", describe(&o));
    assert!(o.stdout.contains("decision: DENY"), "{}", describe(&o));
    // Group membership through the user's primary group: bin is in group bin.
    let o = explain(&f, &["--user", "bin", "--program", office, "--op", "read", "--at", "2026-04-01 10:00"]);
    assert!(o.stdout.contains("is a member of group bin (gid 2) in list staff"), "{}", describe(&o));
    // Wrong program, wrong operation.
    let o = explain(
        &f,
        &["--user", "daemon", "--program", "/usr/bin/cat", "--op", "read", "--at", "2026-04-01 10:00"],
    );
    assert!(o.stdout.contains("FAIL programs"), "{}", describe(&o));
    assert!(o.stdout.contains("decision: DENY"), "{}", describe(&o));
    let o = explain(
        &f,
        &["--user", "daemon", "--program", office, "--op", "read,create", "--at", "2026-04-01 10:00"],
    );
    assert!(o.stdout.contains("create not allowed"), "{}", describe(&o));
    // The second entry: root may read at any time with any program, not write.
    let o = explain(
        &f,
        &["--user", "root", "--program", "/usr/bin/cat", "--op", "read", "--at", "2026-09-22 23:00"],
    );
    assert!(o.stdout.contains("decision: ALLOW (policy payroll, entry root-reads)"), "{}", describe(&o));
    let o = explain(&f, &["--user", "root", "--program", "/usr/bin/cat", "--op", "write"]);
    assert!(o.stdout.contains("decision: DENY"), "{}", describe(&o));
}

#[test]
fn explain_uses_the_login_user() {
    let f = Fixture::new("explain-auid");
    f.policy("10-payroll.yaml", &f.payroll());
    let office = path_str(&f.office);
    // daemon ran `sudo -u nobody office`: daemon answers.
    let o = explain(
        &f,
        &[
            "--user",
            "nobody",
            "--login-user",
            "daemon",
            "--program",
            office,
            "--op",
            "read",
            "--at",
            "2026-04-01 10:00",
        ],
    );
    assert!(o.stdout.contains("responsible user: daemon (uid 1), the login user (auid)"), "{}", describe(&o));
    assert!(o.stdout.contains("decision: ALLOW (policy payroll, entry payroll-staff)"), "{}", describe(&o));
    // nobody ran `sudo -u daemon office`: becoming daemon does not help.
    let o = explain(
        &f,
        &[
            "--user",
            "daemon",
            "--login-user",
            "nobody",
            "--program",
            office,
            "--op",
            "read",
            "--at",
            "2026-04-01 10:00",
        ],
    );
    assert!(
        o.stdout.contains("responsible user: nobody (uid 65534), the login user (auid)"),
        "{}",
        describe(&o)
    );
    assert!(o.stdout.contains("decision: DENY"), "{}", describe(&o));
    // Not protected.
    let o = run(&[
        "explain",
        "--policy",
        f.policies(),
        "--user",
        "nobody",
        "--program",
        office,
        "--path",
        "/etc/hostname",
        "--op",
        "read",
    ]);
    assert!(o.stdout.contains("decision: ALLOW (no policy protects the path)"), "{}", describe(&o));
}

#[test]
fn test_replays_recorded_events() {
    let f = Fixture::new("replay");
    f.policy("10-payroll.yaml", &f.payroll());
    let office = path_str(&f.office);
    let file = format!("{}/mynumber/a.xlsx", f.data());
    let glob_hit = format!("{}/soumu/2026/マイナンバー一覧.xlsx", f.data());
    let ev = |extra: &str| {
        format!(
            r#"{{"event.name":"file.open","time":"2026-04-01T01:00:00.123456789Z","mnsensor.seq":1,"host.name":"fs01","process.pid":10,"process.executable.path":"{office}","file.path":"{file}","mnsensor.file.access":"read"{extra}}}"#
        )
    };
    let lines = [
        // 1: daemon reads with the office program on Wednesday 10:00 JST.
        ev(r#","process.user.id":1,"process.user.name":"daemon""#),
        // 2: nobody.
        ev(r#","process.user.id":65534"#),
        // 3: daemon through sudo (uid 0, auid daemon), read_write.
        ev(r#","process.user.id":0,"mnsensor.login_user.id":1,"mnsensor.login_user.name":"daemon""#)
            .replace(r#""read""#, r#""read_write""#),
        // 4: created the file: create is not allowed.
        ev(r#","process.user.id":1,"mnsensor.file.created":true"#).replace(r#""read""#, r#""write""#),
        // 5: not a file.open.
        r#"{"event.name":"process.exec","time":"2026-04-01T01:00:00Z","process.pid":11}"#.to_owned(),
        // 6: not JSON.
        "{not json".to_owned(),
        // 7: no file.path.
        ev(r#","process.user.id":1"#).replace(r#""file.path""#, r#""file.name""#),
        // 8: not protected.
        ev(r#","process.user.id":65534"#).replace(&file, "/etc/hostname"),
        // 9: names only; a glob-protected file; 20:00 JST.
        ev(r#","process.user.name":"daemon""#)
            .replace(&file, &glob_hit)
            .replace("01:00:00.123456789Z", "11:00:00Z"),
    ];
    let events = f.dir.write("events.jsonl", format!("{}\n\n", lines.join("\n")));
    let ev_path = path_str(&events);
    let o = run(&["test", f.policies(), "--events", ev_path]);
    assert_eq!(o.status.code(), Some(1), "malformed lines make the exit status 1: {}", describe(&o));
    let want = [
        (1, "allow policy=payroll entry=payroll-staff severity=- mode=enforce user=daemon(1) op=read"),
        (2, "deny policy=payroll entry=- severity=high mode=enforce user=65534 op=read"),
        (3, "allow policy=payroll entry=payroll-staff severity=- mode=enforce user=daemon(1) op=read,write"),
        (4, "deny policy=payroll entry=- severity=high"),
        (8, "allow policy=- entry=- severity=- mode=- user=65534 op=read program="),
        (9, "deny policy=payroll entry=- severity=high mode=enforce user=daemon(1) op=read"),
    ];
    for (line, text) in want {
        let prefix = format!("{ev_path}:{line}: {text}");
        assert!(o.stdout.lines().any(|l| l.starts_with(&prefix)), "no `{prefix}` in {}", describe(&o));
    }
    let replayed = o.stdout.lines().filter(|l| l.starts_with(&format!("{ev_path}:"))).count();
    assert_eq!(replayed, want.len(), "{}", describe(&o));
    assert!(
        o.stderr.contains(&format!("{ev_path}:6: malformed event skipped: not JSON")),
        "{}",
        describe(&o)
    );
    assert!(
        o.stderr.contains(&format!("{ev_path}:7: malformed event skipped: no `file.path`")),
        "{}",
        describe(&o)
    );
    assert!(
        o.stdout.contains("summary: 9 event lines: 6 file.open replayed (allow 3, deny 3), 1 other event skipped, 2 malformed lines"),
        "{}",
        describe(&o)
    );
    // Without the malformed lines: exit 0; JSON output.
    let good: Vec<&str> =
        lines.iter().enumerate().filter(|(i, _)| *i != 5 && *i != 6).map(|(_, l)| l.as_str()).collect();
    fs::write(&events, good.join("\n")).expect("write");
    let o = run(&["test", f.policies(), "--events", ev_path, "--format", "json"]);
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    let first: serde_json::Value =
        serde_json::from_str(o.stdout.lines().next().expect("a line")).expect("JSON");
    assert_eq!(first["verdict"], "allow");
    assert_eq!(first["entry"], "payroll-staff");
    assert_eq!(first["line"], 1);
}
