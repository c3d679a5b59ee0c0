//! Whole-set tests: loading across files, evaluation order, responsibility, programs, hash.
use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use jiff::civil::DateTime;

use super::{
    AccessRequest, Decision, Executable, LoadOptions, Op, OpSet, PolicySet, Reason, Verdict, When,
    nss::{FixedDirectory, UserEntry},
    program::sha256,
};

const TANAKA: u32 = 1001;
const SUZUKI: u32 = 1002;
const SATO: u32 = 1003;
const PAYROLL: u32 = 2001;

fn directory() -> FixedDirectory {
    let user = |name: &str, uid, gid| UserEntry { name: name.into(), uid, gid };
    FixedDirectory {
        users: vec![
            user("root", 0, 0),
            user("tanaka", TANAKA, TANAKA),
            user("suzuki", SUZUKI, SUZUKI),
            user("sato", SATO, SATO),
        ],
        groups: vec![
            ("root".into(), 0, vec![]),
            ("payroll".into(), PAYROLL, vec!["suzuki".into()]),
            ("keiri".into(), 2002, vec![]),
        ],
    }
}

fn options(host_checks: bool) -> LoadOptions {
    LoadOptions { host_checks, directory: Arc::new(directory()) }
}

fn set_of(files: &[(&str, &str)]) -> PolicySet {
    try_set(files, false).unwrap_or_else(|e| panic!("{e}"))
}

fn try_set(files: &[(&str, &str)], host_checks: bool) -> Result<PolicySet, super::PolicyErrors> {
    let texts: Vec<(PathBuf, String)> =
        files.iter().map(|(n, t)| (PathBuf::from(n), format!("apiVersion: mnsensor/v1\n{t}"))).collect();
    PolicySet::from_texts(&texts, &options(host_checks))
}

/// Wednesday 2026-04-01 10:00 (wall clock).
fn office_hours() -> When {
    When::Local("2026-04-01T10:00".parse::<DateTime>().unwrap())
}

fn req<'a>(path: &'a str, ops: OpSet, uid: u32, auid: Option<u32>, exe: &'a str) -> AccessRequest<'a> {
    AccessRequest {
        path: Path::new(path),
        ops,
        uid,
        auid,
        program: Executable { path: Path::new(exe), sha256: None },
        time: office_hours(),
    }
}

const PAYROLL_POLICY: &str = "\
kind: AccessPolicy
metadata: {name: payroll}
spec:
  mode: enforce
  protect:
    - path: /srv/share/jinji/mynumber/
    - glob: /srv/share/**/マイナンバー*.xlsx
  lists:
    payroll_users: {users: [tanaka], groups: [payroll]}
    office_apps: {programs: [/usr/sbin/smbd, /usr/bin/libreoffice]}
  allow:
    - name: payroll-staff
      subjects: [payroll_users]
      programs: [office_apps]
      operations: [read, write]
      schedule:
        windows: [{days: [weekdays], from: \"09:00\", to: \"19:00\"}]
        except: [jp_holidays, year_end]
    - name: sato-reads
      subjects: [{user: sato}]
      operations: [read]
  default: {action: deny, severity: high}
";

fn decide(set: &PolicySet, r: &AccessRequest<'_>) -> Decision {
    set.evaluate(r)
}

#[test]
fn first_matching_entry_decides_and_the_default_applies_otherwise() {
    let set = set_of(&[("p.yaml", PAYROLL_POLICY)]);
    let f = "/srv/share/jinji/mynumber/a.xlsx";
    let d = decide(&set, &req(f, Op::Read.into(), TANAKA, None, "/usr/bin/libreoffice"));
    assert_eq!(
        (d.verdict, d.entry.as_deref(), d.reason),
        (Verdict::Allow, Some("payroll-staff"), Reason::Allowed)
    );
    // Not an office program: the second entry does not apply to tanaka → default.
    let d = decide(&set, &req(f, Op::Read.into(), TANAKA, None, "/usr/bin/cat"));
    assert_eq!(d.verdict, Verdict::Deny);
    assert_eq!(d.policy.as_deref(), Some("payroll"));
    assert_eq!(d.severity, Some(super::Severity::High));
    assert_eq!(d.reason, Reason::NoEntryMatched);
    // sato may read with any program, not write.
    assert_eq!(
        decide(&set, &req(f, Op::Read.into(), SATO, None, "/usr/bin/cat")).entry.as_deref(),
        Some("sato-reads")
    );
    assert_eq!(
        decide(&set, &req(f, Op::Read | Op::Write, SATO, None, "/usr/bin/cat")).verdict,
        Verdict::Deny
    );
    // Create is not among payroll-staff's operations.
    assert_eq!(
        decide(&set, &req(f, Op::Write | Op::Create, TANAKA, None, "/usr/sbin/smbd")).verdict,
        Verdict::Deny
    );
    // The glob.
    let g = "/srv/share/soumu/2026/マイナンバー一覧.xlsx";
    assert_eq!(decide(&set, &req(g, Op::Read.into(), SATO, None, "/x")).entry.as_deref(), Some("sato-reads"));
    assert_eq!(decide(&set, &req(g, Op::Read.into(), 4242, None, "/x")).verdict, Verdict::Deny);
    // Not protected: a sibling directory whose name starts alike, a non-matching name.
    for p in ["/srv/share/jinji/mynumber2/a.xlsx", "/srv/share/soumu/一覧.xlsx", "/srv/share/jinji"] {
        let d = decide(&set, &req(p, Op::Read.into(), 4242, None, "/x"));
        assert_eq!((d.verdict, d.reason, d.policy), (Verdict::Allow, Reason::NotProtected, None), "{p}");
    }
    // The directory itself is protected.
    assert_eq!(
        decide(&set, &req("/srv/share/jinji/mynumber", Op::Read.into(), 4242, None, "/x")).verdict,
        Verdict::Deny
    );
}

#[test]
fn entry_order_only_changes_which_entry_is_named() {
    let policy = |first: &str, second: &str| {
        format!(
            "kind: AccessPolicy\nmetadata: {{name: p}}\nspec:\n  mode: enforce\n  protect: [{{path: /data}}]\n  allow:\n{first}{second}  default: {{action: deny, severity: high}}\n"
        )
    };
    let a = "    - {name: by-user, subjects: [{user: tanaka}]}\n";
    let b = "    - {name: by-uid, subjects: [{uid: 1001}], operations: [read]}\n";
    let ab = set_of(&[("p.yaml", &policy(a, b))]);
    let ba = set_of(&[("p.yaml", &policy(b, a))]);
    let r = req("/data/x", Op::Read.into(), TANAKA, None, "/bin/cat");
    assert_eq!(ab.evaluate(&r).entry.as_deref(), Some("by-user"));
    assert_eq!(ba.evaluate(&r).entry.as_deref(), Some("by-uid"));
    assert_eq!(ab.evaluate(&r).verdict, ba.evaluate(&r).verdict);
    let w = req("/data/x", Op::Write.into(), TANAKA, None, "/bin/cat");
    assert_eq!(ba.evaluate(&w).entry.as_deref(), Some("by-user"), "by-uid does not allow write");
}

#[test]
fn every_covering_policy_must_allow_and_the_strictest_outcome_wins() {
    let p = |name: &str, mode: &str, path: &str, who: &str, action: &str, sev: &str| {
        format!(
            "kind: AccessPolicy\nmetadata: {{name: {name}}}\nspec:\n  mode: {mode}\n  protect: [{{path: {path}}}]\n  allow: [{{name: ok, subjects: [{{user: {who}}}]}}]\n  default: {{action: {action}, severity: {sev}}}\n"
        )
    };
    let set = set_of(&[
        ("10-jinji.yaml", &p("jinji", "enforce", "/srv/jinji", "tanaka", "alert", "medium")),
        ("20-mynumber.yaml", &p("mynumber", "enforce", "/srv/jinji/mynumber", "suzuki", "deny", "high")),
        ("30-trial.yaml", &p("trial", "audit", "/srv/jinji/mynumber/new", "root", "kill", "critical")),
    ]);
    let f = "/srv/jinji/mynumber/a.xlsx";
    let d = set.evaluate(&req(f, Op::Read.into(), TANAKA, None, "/bin/cat"));
    assert_eq!(
        (d.verdict, d.policy.as_deref()),
        (Verdict::Deny, Some("mynumber")),
        "jinji allows, mynumber denies"
    );
    let d = set.evaluate(&req(f, Op::Read.into(), SUZUKI, None, "/bin/cat"));
    assert_eq!((d.verdict, d.policy.as_deref()), (Verdict::Alert, Some("jinji")));
    let d = set.evaluate(&req("/srv/jinji/a", Op::Read.into(), TANAKA, None, "/bin/cat"));
    assert_eq!(
        (d.verdict, d.policy.as_deref(), d.entry.as_deref()),
        (Verdict::Allow, Some("jinji"), Some("ok"))
    );
    // An audit-mode kill is a would-deny, weaker than an enforced deny.
    let d = set.evaluate(&req("/srv/jinji/mynumber/new/x", Op::Read.into(), TANAKA, None, "/bin/cat"));
    assert_eq!((d.verdict, d.policy.as_deref()), (Verdict::Deny, Some("mynumber")));
    let d = set.evaluate(&req("/srv/jinji/mynumber/new/x", Op::Read.into(), SUZUKI, None, "/bin/cat"));
    assert_eq!((d.verdict, d.policy.as_deref()), (Verdict::WouldDeny, Some("trial")));
    assert_eq!(d.mode, Some(super::Mode::Audit));
    // Same verdict: the higher severity wins.
    let set = set_of(&[
        ("a.yaml", &p("a", "enforce", "/d", "root", "deny", "medium")),
        ("b.yaml", &p("b", "enforce", "/d", "root", "deny", "critical")),
    ]);
    assert_eq!(
        set.evaluate(&req("/d/x", Op::Read.into(), TANAKA, None, "/bin/cat")).policy.as_deref(),
        Some("b")
    );
}

#[test]
fn the_login_user_answers_and_sudo_changes_nothing() {
    let set = set_of(&[("p.yaml", PAYROLL_POLICY)]);
    let f = "/srv/share/jinji/mynumber/a.xlsx";
    // tanaka ran `sudo cat`: uid 0, auid tanaka → tanaka's rules (cat is not an office app).
    let r = req(f, Op::Read.into(), 0, Some(TANAKA), "/usr/bin/libreoffice");
    assert_eq!(r.responsible().uid, TANAKA);
    assert_eq!(set.evaluate(&r).entry.as_deref(), Some("payroll-staff"));
    // sato ran `sudo -u tanaka libreoffice`: sato answers, and sato may only read.
    let r = req(f, Op::Read | Op::Write, TANAKA, Some(SATO), "/usr/bin/libreoffice");
    assert_eq!(set.evaluate(&r).verdict, Verdict::Deny);
    // No login uid (smbd serving tanaka, a daemon): the filesystem user.
    for auid in [None, Some(u32::MAX)] {
        let r = req(f, Op::Read.into(), TANAKA, auid, "/usr/sbin/smbd");
        assert_eq!(r.responsible().source, super::ResponsibleSource::FilesystemUser);
        assert_eq!(set.evaluate(&r).entry.as_deref(), Some("payroll-staff"));
    }
    // Group membership comes from the responsible user's groups: suzuki is in payroll.
    let r = req(f, Op::Read.into(), 0, Some(SUZUKI), "/usr/sbin/smbd");
    assert_eq!(set.evaluate(&r).entry.as_deref(), Some("payroll-staff"));
    // root acting for nobody in particular is not payroll staff.
    assert_eq!(set.evaluate(&req(f, Op::Read.into(), 0, None, "/usr/sbin/smbd")).verdict, Verdict::Deny);
}

#[test]
fn schedules_holidays_and_explanations() {
    let set = set_of(&[("p.yaml", PAYROLL_POLICY)]);
    let f = "/srv/share/jinji/mynumber/a.xlsx";
    let at = |s: &str| When::Local(s.parse::<DateTime>().unwrap());
    let mut r = req(f, Op::Read.into(), TANAKA, None, "/usr/sbin/smbd");
    r.time = at("2026-04-01T10:00");
    assert_eq!(set.evaluate(&r).verdict, Verdict::Allow);
    r.time = at("2026-04-01T20:00");
    assert_eq!(set.evaluate(&r).verdict, Verdict::Deny);
    r.time = at("2026-09-22T10:00"); // 国民の休日
    assert_eq!(set.evaluate(&r).verdict, Verdict::Deny);
    let text = set.explain(&r).to_string();
    assert!(text.contains("国民の休日"), "{text}");
    assert!(text.contains("payroll-staff (line 13): no match"), "{text}");
    assert!(text.contains("decision: DENY (policy payroll"), "{text}");
    // An instant: 01:00 UTC is 10:00 in Tokyo.
    r.time = When::Instant("2026-04-01T01:00:00Z".parse().unwrap());
    let e = set.explain(&r);
    assert_eq!(e.decision.verdict, Verdict::Allow);
    let text = e.to_string();
    assert!(text.contains("responsible user: tanaka (uid 1001), the filesystem user"), "{text}");
    assert!(
        text.contains("Wed 2026-04-01 10:00 Asia/Tokyo is inside mon,tue,wed,thu,fri 09:00–19:00"),
        "{text}"
    );
}

#[test]
fn programs_are_matched_by_resolved_path_and_pinned_hash() {
    let dir = std::env::temp_dir().join(format!("mnsensor-policy-prog-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("data")).unwrap();
    let real = dir.join("soffice.bin");
    std::fs::write(&real, b"office v1").unwrap();
    let link = dir.join("libreoffice");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let copy = dir.join("evil-copy");
    std::fs::write(&copy, b"office v1").unwrap();
    let other = dir.join("tool");
    std::fs::write(&other, b"tool v1").unwrap();
    let d = dir.display();
    let pin = super::model::hex(&sha256(b"tool v1"));
    let policy = format!(
        "kind: AccessPolicy\nmetadata: {{name: p}}\nspec:\n  mode: enforce\n  protect: [{{path: {d}/data}}]\n  allow:\n    - name: office\n      subjects: [{{user: tanaka}}]\n      programs: [{d}/libreoffice, {{path: {d}/tool, sha256: \"{pin}\"}}]\n  default: {{action: deny, severity: high}}\n"
    );
    let set = try_set(&[("p.yaml", &policy)], true).unwrap_or_else(|e| panic!("{e}"));
    let data = format!("{d}/data/x");
    fn reading<'a>(data: &'a str, exe: &'a Path) -> AccessRequest<'a> {
        AccessRequest {
            program: Executable { path: exe, sha256: None },
            ..req(data, Op::Read.into(), TANAKA, None, "/")
        }
    }
    let exe = |p| reading(&data, p);
    // The kernel reports the executed file's resolved path: the symlink's target.
    assert_eq!(set.evaluate(&exe(&real)).verdict, Verdict::Allow);
    // A copy with the same content elsewhere, or the name of the symlink, is not the program.
    assert_eq!(set.evaluate(&exe(&copy)).verdict, Verdict::Deny);
    assert_eq!(set.evaluate(&exe(&link)).verdict, Verdict::Deny);
    // Pinned hash: the right content passes; changed content at the same path does not.
    assert_eq!(set.evaluate(&exe(&other)).verdict, Verdict::Allow);
    std::fs::write(&other, b"tool v2 (trojaned)").unwrap();
    assert_eq!(set.evaluate(&exe(&other)).verdict, Verdict::Deny);
    let text = set.explain(&exe(&other)).to_string();
    assert!(text.contains(&format!("≠ {pin}")), "{text}");
    // A caller-supplied hash is used as is (no file read).
    let mut r = exe(&other);
    r.program.sha256 = Some(sha256(b"tool v1"));
    assert_eq!(set.evaluate(&r).verdict, Verdict::Allow);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn lists_are_shared_across_files_and_must_agree() {
    let lists =
        "kind: Lists\nmetadata: {name: shared}\nspec:\n  lists:\n    staff: {users: [tanaka, sato]}\n";
    let policy = "kind: AccessPolicy\nmetadata: {name: p}\nspec:\n  mode: audit\n  protect: [{path: /d}]\n  allow: [{name: staff, subjects: [staff]}]\n  default: {action: deny, severity: low}\n";
    let set = set_of(&[("00-lists.yaml", lists), ("10-p.yaml", policy)]);
    assert_eq!(set.evaluate(&req("/d/x", Op::Read.into(), SATO, None, "/x")).entry.as_deref(), Some("staff"));
    assert_eq!(set.evaluate(&req("/d/x", Op::Read.into(), SUZUKI, None, "/x")).verdict, Verdict::WouldDeny);
    // The same list again with the same members (any order) is fine; different is not.
    let same = "kind: Lists\nmetadata: {name: again}\nspec:\n  lists:\n    staff: {users: [sato, tanaka]}\n";
    assert!(try_set(&[("00-lists.yaml", lists), ("05.yaml", same), ("10-p.yaml", policy)], false).is_ok());
    let other = "kind: Lists\nmetadata: {name: other}\nspec:\n  lists:\n    staff: {users: [suzuki]}\n";
    let e =
        try_set(&[("00-lists.yaml", lists), ("05.yaml", other), ("10-p.yaml", policy)], false).unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains(
            "05.yaml:6:5: list `staff` is already defined with different content at 00-lists.yaml:6:5"
        ),
        "{text}"
    );
}

#[test]
fn every_error_of_every_file_at_once() {
    let a = "kind: AccessPolicy\nmetadata: {name: p}\nspec:\n  mode: audit\n  protect: [{path: /nonexistent-mnsensor/x}]\n  allow:\n    - {name: e, subjects: [nolist, {user: nobody-here}, {group: nogroup-here}], programs: [/nonexistent-mnsensor/bin]}\n  default: {action: deny, severity: low}\n";
    let b = "kind: AccessPolicy\nmetadata: {name: p}\nspec:\n  mode: audit\n  protect: [{glob: /nonexistent-mnsensor/**/x}]\n  default: {action: deny, severity: low}\n  extra: 1\n";
    let e = try_set(&[("a.yaml", a), ("b.yaml", b)], true).unwrap_err();
    let got: Vec<String> = e.errors.iter().map(ToString::to_string).collect();
    let want = [
        "a.yaml:6:13: /nonexistent-mnsensor/x: does not exist",
        "a.yaml:8:28: unknown list `nolist` (the set defines no lists)",
        "a.yaml:8:36: unknown user `nobody-here`",
        "a.yaml:8:57: unknown group `nogroup-here`",
        "a.yaml:8:92: /nonexistent-mnsensor/bin: does not exist",
        "b.yaml:3:18: duplicate policy name `p` (first defined at a.yaml:3:18)",
        "b.yaml:6:13: /nonexistent-mnsensor: does not exist",
        "b.yaml:8:3: unknown key `extra`",
    ];
    for w in want {
        assert!(got.iter().any(|g| g.starts_with(w)), "missing {w:?} in:\n{}", got.join("\n"));
    }
    assert_eq!(got.len(), want.len(), "{}", got.join("\n"));
}

#[test]
fn capacity_is_checked() {
    let mut text =
        String::from("kind: AccessPolicy\nmetadata: {name: big}\nspec:\n  mode: audit\n  protect:\n");
    for i in 0..=super::MAX_PROTECT_SPECS {
        text.push_str(&format!("    - path: /srv/x/f{i}\n"));
    }
    text.push_str("  default: {action: audit, severity: low}\n");
    let e = try_set(&[("big.yaml", &text)], false).unwrap_err();
    assert_eq!(e.errors.len(), 1, "{e}");
    assert_eq!(e.errors[0].pos.line, 7 + super::MAX_PROTECT_SPECS as u64, "{e}");
    assert!(e.to_string().contains("more than 4096"), "{e}");
}

#[test]
fn the_hash_follows_content_not_layout() {
    let compact = "kind: AccessPolicy\nmetadata: {name: p}\nspec: {mode: audit, protect: [{path: /d}], default: {action: deny, severity: low}}\n";
    let spread = "# a comment\nkind: AccessPolicy\nmetadata:\n  name: 'p'\nspec:\n  default:\n    severity: low\n    action: deny\n  protect:\n    - path: \"/d\"\n  mode: audit\n";
    let h1 = set_of(&[("a.yaml", compact)]).hash().to_owned();
    let h2 = set_of(&[("other-name.yaml", spread)]).hash().to_owned();
    assert_eq!(h1, h2);
    assert_eq!(h1.len(), 64);
    let changed = compact.replace("severity: low", "severity: high");
    assert_ne!(h1, set_of(&[("a.yaml", &changed)]).hash());
    // A fixed value: a change here changes every deployed set's hash (docs/policy.md).
    assert_eq!(h1, "206ea42e6048f9b6e41cc98adc7a90fe08d6f59d52fc3ab6a06b79402657062f");
}

#[test]
fn the_embedded_default_protects_nothing() {
    let set = PolicySet::embedded().unwrap();
    assert!(set.protect_specs().is_empty());
    assert_eq!(set.policies().len(), 1);
    let d = set.evaluate(&req("/etc/shadow", Op::Read.into(), 0, None, "/bin/cat"));
    assert_eq!(d.reason, Reason::NotProtected);
}

#[test]
fn system_directories_cannot_be_protected_and_sets_are_shareable() {
    let text = "kind: AccessPolicy\nmetadata: {name: p}\nspec:\n  mode: audit\n  protect: [{path: /etc/}, {path: /etc/shadow}, {path: /}]\n  default: {action: deny, severity: low}\n";
    let e = try_set(&[("p.yaml", text)], false).unwrap_err();
    let got: Vec<String> = e.errors.iter().map(ToString::to_string).collect();
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(got[0].starts_with("p.yaml:6:13: /etc: it holds files the system needs"), "{got:?}");
    assert!(got[1].starts_with("p.yaml:6:49: /: it holds files"), "{got:?}");
    fn shareable<T: Send + Sync>() {}
    shareable::<PolicySet>();
}

#[test]
fn contradictory_policies_are_reported_with_the_winner() {
    let doc = |name: &str, path: &str, allow: &str, action: &str| {
        format!(
            "kind: AccessPolicy\nmetadata: {{name: {name}}}\nspec:\n  mode: enforce\n  protect: [{{path: {path}}}]\n  allow:\n{allow}  default: {{action: {action}, severity: high}}\n"
        )
    };
    let jinji = doc(
        "jinji",
        "/srv/share/jinji",
        "    - {name: tanaka-rw, subjects: [{user: tanaka}], operations: [read, write]}\n    - {name: suzuki-r, subjects: [{user: suzuki}], operations: [read]}\n    - {name: payroll-r, subjects: [{group: payroll}], operations: [read]}\n",
        "alert",
    );
    let payroll = doc(
        "payroll-mynumber",
        "/srv/share/jinji/mynumber",
        "    - {name: payroll-rw, subjects: [{group: payroll}], operations: [read, write]}\n",
        "deny",
    );
    let other = doc("other", "/srv/other", "    - {name: sato, subjects: [{user: sato}]}\n", "deny");
    let set = set_of(&[("a.yaml", &jinji), ("b.yaml", &payroll), ("c.yaml", &other)]);
    let found: Vec<String> = set.warnings().iter().map(|w| w.problem.to_string()).collect();
    // tanaka: jinji allows read and write, payroll-mynumber (tanaka is not in payroll) does
    // not; the group payroll: payroll-mynumber allows write, jinji only read. suzuki (in
    // payroll) reads under both: no conflict; `other` overlaps nothing.
    assert_eq!(found.len(), 2, "{found:#?}");
    assert_eq!(
        found[0],
        "policies `jinji` and `payroll-mynumber` contradict each other on /srv/share/jinji/mynumber: for \
         user tanaka (uid 1001), read,write: `jinji` allows it (allow entry `tanaka-rw`), `payroll-mynumber` has no allow \
         entry for it (its default gives deny); `payroll-mynumber` wins (deny): an access is allowed only if \
         every policy covering the path allows it"
    );
    assert!(
        found[1].starts_with(
            "policies `payroll-mynumber` and `jinji` contradict each other on /srv/share/jinji/mynumber: for group payroll (gid 2001), write:"
        ) && found[1].contains("`jinji` wins (alert)"),
        "{}",
        found[1]
    );
    assert_eq!(set.warnings()[0].file, Path::new("a.yaml"));
    assert_eq!(set.warnings()[0].pos.line, 8, "the allowing entry's line");
    // The evaluator agrees with the report.
    let f = "/srv/share/jinji/mynumber/a.csv";
    let d = decide(&set, &req(f, Op::Read.into(), TANAKA, None, "/x"));
    assert_eq!((d.verdict, d.policy.as_deref()), (Verdict::Deny, Some("payroll-mynumber")));
    let d = decide(&set, &req(f, Op::Read | Op::Write, SUZUKI, None, "/x"));
    assert_eq!((d.verdict, d.policy.as_deref()), (Verdict::Alert, Some("jinji")));
    assert_eq!(decide(&set, &req(f, Op::Read.into(), SUZUKI, None, "/x")).verdict, Verdict::Allow);
}

#[test]
fn globs_conflict_only_where_they_surely_overlap() {
    let doc = |name: &str, protect: &str| {
        format!(
            "kind: AccessPolicy\nmetadata: {{name: {name}}}\nspec:\n  mode: audit\n  protect: [{protect}]\n  allow: [{{name: e, subjects: [{{user: {name}}}]}}]\n  default: {{action: deny, severity: low}}\n"
        )
    };
    let region = |a: &str, b: &str| -> Vec<String> {
        let set = set_of(&[("a.yaml", &doc("tanaka", a)), ("b.yaml", &doc("sato", b))]);
        set.warnings()
            .iter()
            .map(|w| w.problem.to_string())
            .map(|m| {
                m.split(" contradict each other on ").nth(1).unwrap().split(':').next().unwrap().to_owned()
            })
            .collect()
    };
    let both = |r: &str| vec![r.to_owned(), r.to_owned()];
    assert_eq!(region("{path: /d}", "{glob: \"/d/x/*.csv\"}"), both("the files matching /d/x/*.csv"));
    assert_eq!(region("{glob: \"/d/**/*.csv\"}", "{path: /d/x/a.csv}"), both("/d/x/a.csv"));
    assert_eq!(region("{glob: \"/d/*.csv\"}", "{glob: \"/d/*.csv\"}"), both("the files matching /d/*.csv"));
    assert!(region("{glob: \"/d/**/*.csv\"}", "{path: /d/x/a.txt}").is_empty());
    assert!(region("{glob: \"/d/*.csv\"}", "{glob: \"/d/*.xlsx\"}").is_empty());
    assert!(region("{path: /d/a}", "{path: /d/ab}").is_empty());
}
