//! Evaluation: which policies protect a path, which allow entry (if any) lets an access
//! through, and the decision; with a step-by-step explanation for `policy explain`.
//!
//! Order (docs/policy.md, "Evaluation"):
//! 1. The responsible user: the login user (auid) when set, else the filesystem user.
//! 2. Every policy whose `protect` covers the path takes part; none → allowed, not protected.
//! 3. In each of them, allow entries are tried in file order; the first whose subjects,
//!    programs, operations and schedule all match allows the access for that policy.
//!    Otherwise that policy's `default` applies (in `audit` mode `deny`/`kill` become
//!    "would deny").
//! 4. The access is allowed only if every covering policy allows it; otherwise the
//!    strictest outcome wins (kill > deny > would-deny > alert > audit, then severity,
//!    then set order).
use std::{cell::OnceCell, fmt, path::Path, sync::Arc};

use super::{
    compile::{Compiled, Entry, Policy, TargetKind},
    model::{Action, Mode, OpSet, Severity, hex},
    nss::GroupCache,
    program::ProgramHasher,
    schedule::When,
    yaml::Pos,
};

/// The audit login uid meaning "not set".
pub const AUID_UNSET: u32 = u32::MAX;

/// The executable of the acting process.
#[derive(Clone, Copy, Debug)]
pub struct Executable<'a> {
    /// Absolute path as the kernel resolved it from the executed file.
    pub path: &'a Path,
    /// Its SHA-256 if the caller has it; computed (and cached) only when an allow entry
    /// that could match pins a hash.
    pub sha256: Option<[u8; 32]>,
}

/// One access to decide.
#[derive(Clone, Copy, Debug)]
pub struct AccessRequest<'a> {
    /// Canonical absolute path of the file.
    pub path: &'a Path,
    /// What the access does; an entry must allow all of them.
    pub ops: OpSet,
    /// Filesystem user id (fsuid; the effective uid for ordinary processes).
    pub uid: u32,
    /// Audit login uid; `None` or [`AUID_UNSET`] when not set.
    pub auid: Option<u32>,
    pub program: Executable<'a>,
    pub time: When,
}

/// Who answers for an access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Responsible {
    pub uid: u32,
    pub source: ResponsibleSource,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResponsibleSource {
    /// The audit login uid, set at login and kept across `sudo`/`su`.
    LoginUser,
    /// No login uid: the filesystem user (smbd serving a user, daemons, cron without
    /// pam_loginuid).
    FilesystemUser,
}

impl AccessRequest<'_> {
    /// The responsible user: the login user (auid) when set, else the filesystem user.
    pub fn responsible(&self) -> Responsible {
        match self.auid {
            Some(auid) if auid != AUID_UNSET => {
                Responsible { uid: auid, source: ResponsibleSource::LoginUser }
            }
            _ => Responsible { uid: self.uid, source: ResponsibleSource::FilesystemUser },
        }
    }
}

/// The outcome for an access, weakest first (the order decides between policies).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Verdict {
    Allow,
    /// Not allowed; recorded (`action: audit`).
    Audit,
    /// Not allowed; recorded as an alert, the access proceeds (`action: alert`).
    Alert,
    /// Not allowed; an `audit`-mode policy would deny (or kill) in `enforce` mode.
    WouldDeny,
    Deny,
    Kill,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Audit => "audit",
            Self::Alert => "alert",
            Self::WouldDeny => "would_deny",
            Self::Deny => "deny",
            Self::Kill => "kill",
        }
    }

    /// The verdict of a policy's default.
    pub fn of_default(mode: Mode, action: Action) -> Self {
        match (mode, action) {
            (_, Action::Audit) => Self::Audit,
            (_, Action::Alert) => Self::Alert,
            (Mode::Audit, Action::Deny | Action::Kill) => Self::WouldDeny,
            (Mode::Enforce, Action::Deny) => Self::Deny,
            (Mode::Enforce, Action::Kill) => Self::Kill,
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// No policy protects the path.
    NotProtected,
    /// Every policy protecting the path has an allow entry that matched.
    Allowed,
    /// The deciding policy has no allow entry that matched; its default applied.
    NoEntryMatched,
}

/// The decision for one access.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub verdict: Verdict,
    /// The deciding policy (`None`: not protected).
    pub policy: Option<Arc<str>>,
    /// The allow entry that allowed the access in the deciding policy.
    pub entry: Option<Arc<str>>,
    pub reason: Reason,
    /// The default's severity when the access was not allowed.
    pub severity: Option<Severity>,
    pub mode: Option<Mode>,
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.verdict.as_str().to_uppercase())?;
        match (&self.reason, &self.policy) {
            (Reason::NotProtected, _) | (_, None) => f.write_str(" (no policy protects the path)"),
            (Reason::Allowed, Some(p)) => {
                write!(f, " (policy {p}, entry {})", self.entry.as_deref().unwrap_or("?"))
            }
            (Reason::NoEntryMatched, Some(p)) => {
                write!(f, " (policy {p}: no allow entry matched, default")?;
                if let Some(s) = self.severity {
                    write!(f, ", severity {s}")?;
                }
                if let Some(m) = self.mode {
                    write!(f, ", mode {m}")?;
                }
                f.write_str(")")
            }
        }
    }
}

/// A check of one aspect of an allow entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    pub aspect: &'static str,
    pub ok: bool,
    /// Why, in words (empty on the fast path).
    pub detail: String,
}

#[derive(Clone, Debug)]
pub struct EntryTrace {
    pub name: Arc<str>,
    pub pos: Pos,
    pub matched: bool,
    pub checks: Vec<Check>,
}

#[derive(Clone, Debug)]
pub struct PolicyTrace {
    pub name: Arc<str>,
    pub file: std::path::PathBuf,
    pub pos: Pos,
    pub mode: Mode,
    /// The protect entry that covers the path.
    pub covered_by: String,
    pub entries: Vec<EntryTrace>,
    /// Entries after the matching one, not tried.
    pub skipped: usize,
    pub verdict: Verdict,
    pub default_note: Option<String>,
}

/// Everything `policy explain` prints.
#[derive(Clone, Debug)]
pub struct Explanation {
    /// The filesystem user of the request.
    pub acting_uid: u32,
    pub responsible: Responsible,
    pub responsible_name: Option<String>,
    pub groups: Vec<(u32, Option<String>)>,
    pub policies: Vec<PolicyTrace>,
    pub decision: Decision,
}

/// Per-request values computed at most once, only if needed.
struct Ctx<'r> {
    req: &'r AccessRequest<'r>,
    who: Responsible,
    groups: &'r GroupCache,
    hasher: &'r ProgramHasher,
    user_groups: OnceCell<Arc<[u32]>>,
    hash: OnceCell<Result<[u8; 32], String>>,
}

impl Ctx<'_> {
    fn user_groups(&self) -> &Arc<[u32]> {
        self.user_groups.get_or_init(|| self.groups.groups(self.who.uid))
    }

    fn program_hash(&self) -> &Result<[u8; 32], String> {
        self.hash.get_or_init(|| match self.req.program.sha256 {
            Some(h) => Ok(h),
            None => self
                .hasher
                .sha256_path(self.req.program.path)
                .map_err(|e| format!("cannot hash {}: {e}", self.req.program.path.display())),
        })
    }
}

/// Decides `req` against `set`, or against its policies of one mode only.
pub fn evaluate(
    set: &Compiled,
    groups: &GroupCache,
    hasher: &ProgramHasher,
    req: &AccessRequest<'_>,
    mode: Option<Mode>,
) -> Decision {
    run(set, groups, hasher, req, mode, None)
}

/// [`evaluate`] with every step.
pub fn explain(
    set: &Compiled,
    groups: &GroupCache,
    hasher: &ProgramHasher,
    req: &AccessRequest<'_>,
) -> Explanation {
    let mut traces = Vec::new();
    let decision = run(set, groups, hasher, req, None, Some(&mut traces));
    let who = req.responsible();
    let dir = groups.directory();
    let groups = groups.groups(who.uid).iter().map(|g| (*g, dir.group_name(*g))).collect();
    Explanation {
        acting_uid: req.uid,
        responsible: who,
        responsible_name: dir.user_by_uid(who.uid).map(|u| u.name),
        groups,
        policies: traces,
        decision,
    }
}

fn run(
    set: &Compiled,
    groups: &GroupCache,
    hasher: &ProgramHasher,
    req: &AccessRequest<'_>,
    mode: Option<Mode>,
    mut traces: Option<&mut Vec<PolicyTrace>>,
) -> Decision {
    let cx = Ctx {
        req,
        who: req.responsible(),
        groups,
        hasher,
        user_groups: OnceCell::new(),
        hash: OnceCell::new(),
    };
    let explain = traces.is_some();
    // (verdict, severity, policy, entry) of the first allowing and the strictest other.
    let mut first_allow: Option<(&Policy, &Entry)> = None;
    let mut worst: Option<(Verdict, Severity, &Policy)> = None;
    for policy in set.policies.iter().filter(|p| mode.is_none_or(|m| p.mode == m)) {
        let Some(target) = policy.covering(req.path) else {
            continue;
        };
        let mut trace = explain.then(|| PolicyTrace {
            name: policy.name.clone(),
            file: policy.file.clone(),
            pos: policy.pos,
            mode: policy.mode,
            covered_by: match &target.kind {
                TargetKind::Path(p) => format!("{} (line {})", p.display(), target.pos.line),
                TargetKind::Glob { pattern, .. } => format!("glob {pattern} (line {})", target.pos.line),
            },
            entries: Vec::new(),
            skipped: 0,
            verdict: Verdict::Allow,
            default_note: None,
        });
        let mut matched = None;
        for (i, entry) in policy.allow.iter().enumerate() {
            let ok = match &mut trace {
                None => entry_matches(entry, &cx),
                Some(t) => {
                    let et = entry_trace(entry, &cx);
                    let ok = et.matched;
                    t.entries.push(et);
                    if ok {
                        t.skipped = policy.allow.len() - i - 1;
                    }
                    ok
                }
            };
            if ok {
                matched = Some(entry);
                break;
            }
        }
        let verdict = match matched {
            Some(entry) => {
                first_allow.get_or_insert((policy, entry));
                Verdict::Allow
            }
            None => {
                let v = Verdict::of_default(policy.mode, policy.default.action);
                let sev = policy.default.severity;
                if worst.is_none_or(|(wv, ws, _)| (v, sev) > (wv, ws)) {
                    worst = Some((v, sev, policy));
                }
                v
            }
        };
        if let (Some(traces), Some(mut t)) = (traces.as_deref_mut(), trace) {
            t.verdict = verdict;
            if matched.is_none() {
                t.default_note = Some(format!(
                    "no allow entry matched: default action {} with severity {} in {} mode → {verdict}",
                    policy.default.action, policy.default.severity, policy.mode
                ));
            }
            traces.push(t);
        }
    }
    match (worst, first_allow) {
        (Some((verdict, severity, policy)), _) => Decision {
            verdict,
            policy: Some(policy.name.clone()),
            entry: None,
            reason: Reason::NoEntryMatched,
            severity: Some(severity),
            mode: Some(policy.mode),
        },
        (None, Some((policy, entry))) => Decision {
            verdict: Verdict::Allow,
            policy: Some(policy.name.clone()),
            entry: Some(entry.name.clone()),
            reason: Reason::Allowed,
            severity: None,
            mode: Some(policy.mode),
        },
        (None, None) => Decision {
            verdict: Verdict::Allow,
            policy: None,
            entry: None,
            reason: Reason::NotProtected,
            severity: None,
            mode: None,
        },
    }
}

/// The fast path: the four checks, stopping at the first that fails.
fn entry_matches(e: &Entry, cx: &Ctx<'_>) -> bool {
    check_ops(e, cx, false).ok
        && check_subjects(e, cx, false).ok
        && check_schedule(e, cx, false).ok
        && check_programs(e, cx, false).ok
}

fn entry_trace(e: &Entry, cx: &Ctx<'_>) -> EntryTrace {
    let checks = vec![
        check_subjects(e, cx, true),
        check_programs(e, cx, true),
        check_ops(e, cx, true),
        check_schedule(e, cx, true),
    ];
    EntryTrace { name: e.name.clone(), pos: e.pos, matched: checks.iter().all(|c| c.ok), checks }
}

fn check(aspect: &'static str, ok: bool, explain: bool, detail: impl FnOnce() -> String) -> Check {
    Check { aspect, ok, detail: if explain { detail() } else { String::new() } }
}

fn check_subjects(e: &Entry, cx: &Ctx<'_>, explain: bool) -> Check {
    let uid = cx.who.uid;
    if let Some((_, how)) = e.subjects.uids.iter().find(|(u, _)| *u == uid) {
        return check("subjects", true, explain, || format!("uid {uid} is {how}"));
    }
    if !e.subjects.gids.is_empty() {
        let groups = cx.user_groups();
        if let Some((_, how)) = e.subjects.gids.iter().find(|(g, _)| groups.contains(g)) {
            return check("subjects", true, explain, || format!("uid {uid} is a member of {how}"));
        }
    }
    check("subjects", false, explain, || {
        let all: Vec<&str> =
            e.subjects.uids.iter().chain(&e.subjects.gids).map(|(_, how)| how.as_str()).collect();
        format!("uid {uid} is none of: {}", all.join("; "))
    })
}

fn check_programs(e: &Entry, cx: &Ctx<'_>, explain: bool) -> Check {
    let Some(programs) = &e.programs else {
        return check("programs", true, explain, || "any program".into());
    };
    let exe = cx.req.program.path;
    let mut mismatch = None;
    for p in programs.iter().filter(|p| p.path == exe) {
        // The hash is computed only for an entry that pins one (a large executable takes
        // seconds to hash, which a waiting open must not pay for nothing).
        let Some(want) = &p.sha256 else {
            return check("programs", true, explain, || format!("{} is {}", exe.display(), p.source));
        };
        match cx.program_hash() {
            Ok(got) if want == got => {
                return check("programs", true, explain, || {
                    format!("{} is {} and its sha256 matches", exe.display(), p.source)
                });
            }
            Ok(got) => mismatch = Some(format!("sha256 {} ≠ {} pinned by {}", hex(got), hex(want), p.source)),
            Err(e) => mismatch = Some(e.clone()),
        }
    }
    check("programs", false, explain, || match mismatch {
        Some(m) => format!("{}: {m}", exe.display()),
        None => {
            let all: Vec<&str> = programs.iter().map(|p| p.source.as_str()).collect();
            format!("{} is none of: {}", exe.display(), all.join("; "))
        }
    })
}

fn check_ops(e: &Entry, cx: &Ctx<'_>, explain: bool) -> Check {
    let ok = e.ops.contains_all(cx.req.ops);
    check("operations", ok, explain, || {
        if ok {
            format!("{} allowed (entry allows {})", cx.req.ops, e.ops)
        } else {
            format!("{} not allowed (entry allows {})", cx.req.ops.minus(e.ops), e.ops)
        }
    })
}

fn check_schedule(e: &Entry, cx: &Ctx<'_>, explain: bool) -> Check {
    let Some(s) = &e.schedule else {
        return check("schedule", true, explain, || "at any time".into());
    };
    if explain {
        let c = s.check(cx.req.time);
        return check("schedule", c.inside, true, || c.detail);
    }
    check("schedule", s.contains(cx.req.time), false, String::new)
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let who = &self.responsible;
        let name = self.responsible_name.as_deref().unwrap_or("(no user name)");
        let source = match who.source {
            ResponsibleSource::LoginUser => "the login user (auid)",
            ResponsibleSource::FilesystemUser => "the filesystem user; no login uid",
        };
        writeln!(f, "responsible user: {name} (uid {}), {source}", who.uid)?;
        if who.uid != self.acting_uid {
            writeln!(
                f,
                "                  (the process acts as uid {}; sudo and su do not change who is responsible)",
                self.acting_uid
            )?;
        }
        let groups: Vec<String> =
            self.groups.iter().map(|(g, n)| format!("{}({g})", n.as_deref().unwrap_or("?"))).collect();
        writeln!(
            f,
            "groups:           {}",
            if groups.is_empty() { "none".into() } else { groups.join(" ") }
        )?;
        if self.policies.is_empty() {
            writeln!(f, "no policy protects the path")?;
        }
        for p in &self.policies {
            writeln!(
                f,
                "\npolicy {} ({} mode; {}:{}) protects it via {}",
                p.name,
                p.mode,
                p.file.display(),
                p.pos,
                p.covered_by
            )?;
            if p.entries.is_empty() {
                writeln!(f, "  (no allow entries)")?;
            }
            for e in &p.entries {
                let mark = if e.matched { "MATCH" } else { "no match" };
                writeln!(f, "  allow {} (line {}): {mark}", e.name, e.pos.line)?;
                for c in &e.checks {
                    let ok = if c.ok { "ok  " } else { "FAIL" };
                    writeln!(f, "    {ok} {:<10} {}", c.aspect, c.detail)?;
                }
            }
            if p.skipped > 0 {
                let s = if p.skipped == 1 { "entry" } else { "entries" };
                writeln!(f, "  ({} later {s} not tried: the first match wins)", p.skipped)?;
            }
            match &p.default_note {
                Some(note) => writeln!(f, "  → {note}")?,
                None => writeln!(f, "  → allowed")?,
            }
        }
        write!(f, "\ndecision: {}", self.decision)
    }
}
