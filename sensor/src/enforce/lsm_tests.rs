//! Property test of [`compile_at`]: for generated policy sets (users by name, uid and group,
//! program lists, operations, schedules, every default action, overlapping trees in both set
//! orders), the kernel's lookup over the compiled tables (replayed here as
//! `sensor-ebpf/src/lsm.rs` does it) refuses exactly the accesses the policy set
//! refuses and records exactly those it alerts or audits, for every user, program, kind of
//! open and time; with the same action (deny, kill, alert, audit) except for the action of a
//! refusal in the inner tree of overlapping policies, where the kernel takes the strictest
//! default (docs/policy.md). The oracle is `PolicySet::evaluate_enforced` (`evaluate` over the
//! `enforce`-mode policies: the `audit`-mode ones are the daemon's, from `file.open` records).
//!
//! The trees are real directories (the tables and the protected set key on inodes); the
//! groups are limited to `root` (gid 0), because `compile` lists a group's members through
//! the host's NSS, where only root is known to be in it.
use std::{
    fs,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    sync::Arc,
};

use jiff::civil::DateTime;
use sensor_common::{
    event::policy::{
        ACTION_ALERT, ACTION_AUDIT, ACTION_DENY, ACTION_KILL, AllowKey, AllowProgramKey, UNALERTED_SHIFT,
        UNRECORDED_SHIFT,
    },
    path::InodeKey,
};

use super::{COMBOS, Tables, compile_at};
use crate::{
    policy::{
        AccessRequest, Executable, LoadOptions, PolicySet, Verdict, When,
        nss::{FixedDirectory, UserEntry},
    },
    protect::{ProtectSet, kernel_dev},
    test_rng::Rng,
};

const TANAKA: u32 = 1001;
const SUZUKI: u32 = 1002;
const OUTSIDER: u32 = 1003;
const USERS: [u32; 4] = [0, TANAKA, SUZUKI, OUTSIDER];

/// A private directory, removed on drop.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// `outer/` with `a.csv` and `inner/b.csv`, `solo.csv`, and three programs.
struct World {
    _dir: Scratch,
    outer: PathBuf,
    inner: PathBuf,
    solo: PathBuf,
    files: Vec<PathBuf>,
    /// Programs policies may name; the last is named by none.
    programs: Vec<PathBuf>,
}

impl World {
    fn new() -> Self {
        let base = std::env::temp_dir().join(format!("mnsensor-lsm-test.{}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        fs::create_dir_all(base.join("outer/inner")).unwrap();
        fs::create_dir_all(base.join("bin")).unwrap();
        let base = base.canonicalize().unwrap();
        let dir = Scratch(base.clone());
        let (outer, inner, solo) = (base.join("outer"), base.join("outer/inner"), base.join("solo.csv"));
        let files = vec![outer.join("a.csv"), inner.join("b.csv"), solo.clone()];
        for f in &files {
            fs::write(f, "個人番号\n").unwrap();
        }
        let programs: Vec<PathBuf> =
            ["smbd", "office", "cat"].iter().map(|p| base.join("bin").join(p)).collect();
        for p in &programs {
            fs::write(p, p.display().to_string()).unwrap();
        }
        Self { _dir: dir, outer, inner, solo, files, programs }
    }
}

fn directory() -> FixedDirectory {
    let user = |name: &str, uid, gid| UserEntry { name: name.into(), uid, gid };
    FixedDirectory {
        users: vec![
            user("root", 0, 0),
            user("tanaka", TANAKA, TANAKA),
            user("suzuki", SUZUKI, SUZUKI),
            user("outsider", OUTSIDER, OUTSIDER),
        ],
        groups: vec![("root".into(), 0, vec![])],
    }
}

/// One generated policy document protecting `target`.
fn policy(rng: &mut Rng, name: &str, target: &Path, programs: &[PathBuf]) -> String {
    let mode = if rng.chance(85) { "enforce" } else { "audit" };
    let action = ["deny", "kill", "alert", "audit"][rng.below(4)];
    let mut doc = format!(
        "apiVersion: mnsensor/v1\nkind: AccessPolicy\nmetadata: {{name: {name}}}\nspec:\n  mode: {mode}\n  protect: [{{path: \"{}\"}}]\n",
        target.display()
    );
    let entries = rng.below(4);
    if entries > 0 {
        doc.push_str("  allow:\n");
    }
    for i in 0..entries {
        let subjects = ["{user: tanaka}", "{uid: 1002}", "{group: root}", "{user: outsider}"];
        let subjects: Vec<&str> = rng.subset(&subjects).into_iter().copied().collect();
        doc.push_str(&format!("    - name: e{i}\n      subjects: [{}]\n", subjects.join(", ")));
        if rng.chance(50) {
            // Only the first two programs: the third stays unnamed.
            let named: Vec<String> = rng
                .subset(&programs[..2])
                .into_iter()
                .map(|p| format!("{{path: \"{}\"}}", p.display()))
                .collect();
            doc.push_str(&format!("      programs: [{}]\n", named.join(", ")));
        }
        if rng.chance(60) {
            let ops: Vec<&str> =
                rng.subset(&["read", "write", "create", "exec"]).into_iter().copied().collect();
            doc.push_str(&format!("      operations: [{}]\n", ops.join(", ")));
        }
        if rng.chance(50) {
            doc.push_str(
                "      schedule: {timezone: Asia/Tokyo, windows: [{days: [weekdays], from: \"09:00\", to: \"18:00\"}]}\n",
            );
        }
    }
    doc.push_str(&format!("  default: {{action: {action}, severity: high}}\n"));
    doc
}

/// The kernel's decision (`sensor-ebpf/src/lsm.rs`, `decide`): `Some(action)` when the open
/// is refused or recorded.
fn kernel(
    t: &Tables,
    protect: &ProtectSet,
    file: &Path,
    uid: u32,
    program: &Path,
    combo: u32,
) -> Option<u32> {
    let meta = fs::metadata(file).unwrap();
    let key = InodeKey { ino: meta.ino(), dev: kernel_dev(meta.dev()), _pad: 0 };
    let rule = protect.rule_for(key, file)?;
    let policy = t.rule_policy.iter().find(|(r, _)| *r == rule).map(|(_, p)| *p)?;
    let mut allowed = t.any.get(&AllowKey { policy, uid }).copied().unwrap_or(0);
    if allowed & (combo << UNRECORDED_SHIFT) == 0 {
        let exe = fs::metadata(program).unwrap();
        let key = AllowProgramKey { policy, uid, dev: kernel_dev(exe.dev()), _pad: 0, ino: exe.ino() };
        allowed |= t.programs.get(&key).copied().unwrap_or(0);
    }
    let action = if allowed & combo == 0 {
        t.defaults.iter().find(|(p, _)| *p == policy).map_or(0, |(_, d)| d.action)
    } else if allowed & (combo << UNALERTED_SHIFT) == 0 {
        ACTION_ALERT
    } else if allowed & (combo << UNRECORDED_SHIFT) == 0 {
        ACTION_AUDIT
    } else {
        0
    };
    (action != 0).then_some(action)
}

/// What the `enforce`-mode policies say the kernel must do: refuse `deny` and `kill`, record
/// `alert` and `audit`, let `allow` through silently.
fn expected(set: &PolicySet, file: &Path, uid: u32, program: &Path, combo: u32, when: When) -> Option<u32> {
    match verdict(set, file, uid, program, combo, when) {
        Verdict::Deny => Some(ACTION_DENY),
        Verdict::Kill => Some(ACTION_KILL),
        Verdict::Alert => Some(ACTION_ALERT),
        Verdict::Audit => Some(ACTION_AUDIT),
        Verdict::Allow => None,
        Verdict::WouldDeny => unreachable!("an audit-mode verdict from the enforce-mode policies"),
    }
}

/// The `enforce`-mode policies' verdict on an open.
fn verdict(set: &PolicySet, file: &Path, uid: u32, program: &Path, combo: u32, when: When) -> Verdict {
    let req = AccessRequest {
        path: file,
        ops: super::ops_of_combo(combo),
        uid,
        auid: None,
        program: Executable { path: program, sha256: None },
        time: when,
    };
    set.evaluate_enforced(&req).verdict
}

fn refuses(action: Option<u32>) -> bool {
    matches!(action, Some(ACTION_DENY | ACTION_KILL))
}

fn name(action: Option<u32>) -> &'static str {
    match action {
        None => "allow",
        Some(ACTION_DENY) => "deny",
        Some(ACTION_KILL) => "kill",
        Some(ACTION_ALERT) => "alert",
        Some(ACTION_AUDIT) => "audit",
        Some(_) => "?",
    }
}

#[test]
fn compiled_tables_agree_with_evaluate() {
    let world = World::new();
    let options = LoadOptions { host_checks: false, directory: Arc::new(directory()) };
    // Wednesday 10:00 and 20:00, Saturday 10:00 in Tokyo: inside and outside the window.
    let times: Vec<When> = ["2026-04-01T10:00", "2026-04-01T20:00", "2026-04-04T10:00"]
        .iter()
        .map(|t| When::Local(t.parse::<DateTime>().unwrap()))
        .collect();
    let mut checked = 0;
    let mut recorded = 0;
    for seed in 1..=60u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        // Overlapping trees, in both set orders; a file protected on its own.
        let mut docs = [
            ("10-outer.yaml", policy(&mut rng, "outer", &world.outer, &world.programs)),
            ("20-inner.yaml", policy(&mut rng, "inner", &world.inner, &world.programs)),
            ("30-solo.yaml", policy(&mut rng, "solo", &world.solo, &world.programs)),
        ];
        if rng.chance(50) {
            docs.swap(0, 1);
        }
        let texts: Vec<(PathBuf, String)> = docs.iter().map(|(n, t)| (PathBuf::from(n), t.clone())).collect();
        let set = PolicySet::from_texts(&texts, &options).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        let paths: Vec<PathBuf> = set
            .protect_specs()
            .into_iter()
            .filter_map(|s| match s.target {
                crate::policy::ProtectTarget::Path(p) => Some(p),
                crate::policy::ProtectTarget::Glob { .. } => None,
            })
            .collect();
        let protect = ProtectSet::resolve(&paths, 1024).unwrap();
        for &when in &times {
            let tables = compile_at(&set, &protect, when);
            for file in &world.files {
                for &uid in &USERS {
                    for program in &world.programs {
                        for (combo, _) in COMBOS {
                            let mut got = kernel(&tables, &protect, file, uid, program, combo);
                            let want = expected(&set, file, uid, program, combo, when);
                            // Under overlapping trees only the refusal is exact: its action
                            // is the strictest default (docs/policy.md).
                            if *file == world.files[1] && refuses(got) && refuses(want) {
                                got = want;
                            }
                            recorded += usize::from(matches!(want, Some(ACTION_ALERT | ACTION_AUDIT)));
                            assert_eq!(
                                got,
                                want,
                                "seed {seed}, {when}: uid {uid}, program {}, file {}, ops {}: the kernel would {} \
                                 where evaluate says {}\npolicies:\n{}",
                                program.display(),
                                file.display(),
                                super::ops_of_combo(combo),
                                name(got),
                                name(want),
                                docs.iter().map(|(n, t)| format!("# {n}\n{t}")).collect::<String>()
                            );
                            checked += 1;
                        }
                    }
                }
            }
        }
    }
    assert!(checked > 10_000, "only {checked} cases checked");
    assert!(recorded > 1_000, "only {recorded} alert/audit cases checked");
}
