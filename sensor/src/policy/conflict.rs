//! Conflicting policies: two policies that cover the same files and answer the same user and
//! operation differently — one has an allow entry for them, the other has none, so its
//! default applies. The evaluator's rule settles it (docs/policy.md, "Several policies on one
//! path": an access is allowed only if every covering policy allows it, so the policy that
//! does not allow wins); the loader and `policy check` report each such pair as a warning, so
//! that nobody believes an allow entry that can never take effect.
//!
//! The check is static: subjects (users by uid, groups by gid, a user also through its
//! groups as NSS reports them at load) and operations. An entry of the refusing policy that
//! names the subject and the operation with a narrower program or schedule is not a
//! conflict (the answers differ only sometimes; `policy explain` shows when).
use std::{
    fmt,
    path::{Path, PathBuf},
    sync::Arc,
};

use super::{
    compile::{Entry, Policy, TargetKind},
    eval::Verdict,
    model::OpSet,
    nss::GroupCache,
    yaml::Pos,
};

/// One contradiction: `allowing` lets `subject` do `ops` on `region`, `refusing` does not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflict {
    /// Files both policies cover (a path, or the files a glob matches).
    pub region: String,
    /// The user or group, as the allowing entry names it.
    pub subject: String,
    pub ops: OpSet,
    pub allowing: Arc<str>,
    pub entry: Arc<str>,
    /// Where the allowing entry is.
    pub file: PathBuf,
    pub pos: Pos,
    /// The policy that wins.
    pub refusing: Arc<str>,
    /// The winner's answer: its default's verdict.
    pub verdict: Verdict,
}

impl fmt::Display for Conflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self { region, subject, ops, allowing, entry, refusing, verdict, .. } = self;
        write!(
            f,
            "policies `{allowing}` and `{refusing}` contradict each other on {region}: for {subject}, {ops}: \
             `{allowing}` allows it (allow entry `{entry}`), `{refusing}` has no allow entry for it (its default \
             gives {verdict}); `{refusing}` wins ({verdict}): an access is allowed only if every policy covering \
             the path allows it"
        )
    }
}

/// Every conflict of `policies`, in set order (allowing policy, its entries, then the
/// refusing policy).
pub fn conflicts(policies: &[Policy], groups: &GroupCache) -> Vec<Conflict> {
    let mut out = Vec::new();
    for p in policies {
        for q in policies.iter().filter(|q| q.name != p.name) {
            let Some(region) = shared_region(p, q) else { continue };
            for e in &p.allow {
                for (uid, how) in &e.subjects.uids {
                    let user_groups = groups.groups(*uid);
                    let ops = refused(e.ops, q, |f| {
                        f.subjects.uids.iter().any(|(u, _)| u == uid)
                            || f.subjects.gids.iter().any(|(g, _)| user_groups.contains(g))
                    });
                    push(&mut out, &region, how, ops, p, e, q);
                }
                for (gid, how) in &e.subjects.gids {
                    let ops = refused(e.ops, q, |f| f.subjects.gids.iter().any(|(g, _)| g == gid));
                    push(&mut out, &region, how, ops, p, e, q);
                }
            }
        }
    }
    out
}

fn push(out: &mut Vec<Conflict>, region: &str, how: &str, ops: OpSet, p: &Policy, e: &Entry, q: &Policy) {
    if ops.is_empty() {
        return;
    }
    out.push(Conflict {
        region: region.to_owned(),
        subject: how.to_owned(),
        ops,
        allowing: p.name.clone(),
        entry: e.name.clone(),
        file: p.file.clone(),
        pos: e.pos,
        refusing: q.name.clone(),
        verdict: Verdict::of_default(q.mode, q.default.action),
    });
}

/// The operations of `ops` that no entry of `q` naming the subject (`names`) allows.
fn refused(ops: OpSet, q: &Policy, names: impl Fn(&Entry) -> bool) -> OpSet {
    let allowed = q.allow.iter().filter(|f| names(f)).fold(OpSet::EMPTY, |acc, f| acc | f.ops);
    ops.minus(allowed)
}

/// Files both policies cover, described (the first pair of targets that overlaps): the
/// deeper of two nested paths; a glob below a path; a path below a glob's base that the glob
/// matches; the same glob twice. Globs that only may overlap are left out.
fn shared_region(p: &Policy, q: &Policy) -> Option<String> {
    let covered_by_glob = |pol: &Policy, path: &Path| pol.globs.is_match(path);
    for a in &p.protect {
        for b in &q.protect {
            let found = match (&a.kind, &b.kind) {
                (TargetKind::Path(x), TargetKind::Path(y)) if y.starts_with(x) => {
                    Some(y.display().to_string())
                }
                (TargetKind::Path(x), TargetKind::Path(y)) if x.starts_with(y) => {
                    Some(x.display().to_string())
                }
                (TargetKind::Path(x), TargetKind::Glob { pattern, base })
                | (TargetKind::Glob { pattern, base }, TargetKind::Path(x)) => {
                    let glob_owner = if matches!(a.kind, TargetKind::Glob { .. }) { p } else { q };
                    if base.starts_with(x) {
                        Some(format!("the files matching {pattern}"))
                    } else if x.starts_with(base) && covered_by_glob(glob_owner, x) {
                        Some(x.display().to_string())
                    } else {
                        None
                    }
                }
                (TargetKind::Glob { pattern: x, .. }, TargetKind::Glob { pattern: y, .. }) if x == y => {
                    Some(format!("the files matching {x}"))
                }
                _ => None,
            };
            if found.is_some() {
                return found;
            }
        }
    }
    None
}
