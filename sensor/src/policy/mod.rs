//! Per-user access policies: a YAML language the security team owns (docs/policy.md).
//!
//! * [`PolicySet::load`] reads policy files and directories strictly: every problem of
//!   every file is reported with file:line:column and nothing is loaded if there is one.
//! * [`PolicySet::evaluate`] decides an [`AccessRequest`]; [`PolicySet::explain`] shows
//!   why; [`PolicySet::protect_specs`] lists what to protect; [`PolicySet::hash`]
//!   identifies the set's content.
//!
//! Pipeline: `load` (find and safely read files) → `yaml` (nodes with positions) →
//! `parse` (the schema) → `compile` (lists, NSS, paths, programs, capacities) → `eval`.
use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

pub mod calendar;
pub mod cli;
pub mod compile;
pub mod conflict;
pub mod egress;
pub mod error;
pub mod eval;
pub mod load;
pub mod model;
pub mod nss;
pub mod parse;
pub mod program;
pub mod schedule;
pub mod yaml;

use self::{
    compile::{Compiled, Host, List, Policy, SourceFile, TargetKind},
    error::Diagnostics,
    load::Candidate,
    nss::GroupCache,
};
pub use self::{
    error::{PolicyError, PolicyErrors, Problem},
    eval::{
        AUID_UNSET, AccessRequest, Decision, Executable, Explanation, Reason, Responsible, ResponsibleSource,
        Verdict,
    },
    model::{Action, Mode, Op, OpSet, Severity},
    nss::{Directory, Nss},
    program::ProgramHasher,
    schedule::When,
};

/// Largest policy file accepted, in bytes.
pub const MAX_FILE_BYTES: usize = 256 * 1024;
/// Most distinct protected paths and globs in one set (the kernel's protected-object map).
pub const MAX_PROTECT_SPECS: usize = 4096;
/// Most distinct programs (path + optional hash) in one set (the kernel's executable map).
pub const MAX_PROGRAMS: usize = 4096;
/// Where installed policies live.
pub const DEFAULT_POLICY_DIR: &str = "/etc/mnsensor/policies.d";
/// The embedded default: one audit-mode policy that protects nothing.
pub const DEFAULT_YAML: &str = include_str!("../../../policies/default.yaml");

/// How a set is loaded.
#[derive(Clone)]
pub struct LoadOptions {
    /// Check against this host: files and their directory owned by root and not writable
    /// by others, users and groups known to NSS, protected paths and programs existing
    /// (and resolved to their canonical paths). Off (`policy check --no-host-checks`, for
    /// CI on another machine): unknown names are warnings and paths are used as written.
    pub host_checks: bool,
    pub directory: Arc<dyn Directory>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self { host_checks: true, directory: Arc::new(Nss) }
    }
}

/// A path or glob to protect, and the policy that asks for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProtectSpec {
    pub policy: Arc<str>,
    pub mode: Mode,
    pub target: ProtectTarget,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProtectTarget {
    /// A file, or a directory and everything below it; canonical.
    Path(PathBuf),
    /// Paths under `base` (canonical, existing) matching `pattern`.
    Glob { pattern: String, base: PathBuf },
}

/// A loaded, checked and compiled policy set. Cheap to share (`Arc<PolicySet>`); evaluation
/// takes `&self` and is safe from several threads.
pub struct PolicySet {
    compiled: Compiled,
    hash: String,
    files: Vec<PathBuf>,
    warnings: Vec<PolicyError>,
    groups: GroupCache,
    hasher: ProgramHasher,
    egress: Option<egress::EgressPolicy>,
}

impl std::fmt::Debug for PolicySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicySet")
            .field("hash", &self.hash)
            .field("files", &self.files)
            .field("policies", &self.compiled.policies.len())
            .finish_non_exhaustive()
    }
}

impl PolicySet {
    /// Loads policy files and directories with every check (see [`LoadOptions`]), as the
    /// daemon does: warnings go to the log (`policy check` prints the same ones).
    pub fn load(paths: &[PathBuf]) -> Result<Self, PolicyErrors> {
        let set = Self::load_with(paths, &LoadOptions::default())?;
        for w in set.warnings() {
            tracing::warn!(warning = %w, "Policy warning.");
        }
        Ok(set)
    }

    pub fn load_with(paths: &[PathBuf], options: &LoadOptions) -> Result<Self, PolicyErrors> {
        let mut diag = Diagnostics::default();
        let candidates = load::discover(paths, options.host_checks, &mut diag);
        let texts: Vec<(PathBuf, String)> = candidates
            .iter()
            .filter_map(|c: &Candidate| {
                load::read(c, options.host_checks, &mut diag).map(|t| (c.path.clone(), t))
            })
            .collect();
        Self::build(&texts, options, diag)
    }

    /// The embedded default ([`DEFAULT_YAML`]).
    pub fn embedded() -> Result<Self, PolicyErrors> {
        let texts = [(PathBuf::from("<embedded default>"), DEFAULT_YAML.to_owned())];
        Self::build(&texts, &LoadOptions::default(), Diagnostics::default())
    }

    /// A set from texts (name, YAML) without the file checks; for tests and tools.
    pub fn from_texts(texts: &[(PathBuf, String)], options: &LoadOptions) -> Result<Self, PolicyErrors> {
        Self::build(texts, options, Diagnostics::default())
    }

    fn build(
        texts: &[(PathBuf, String)],
        options: &LoadOptions,
        mut diag: Diagnostics,
    ) -> Result<Self, PolicyErrors> {
        let mut canonical = String::from("mnsensor-policy-set/v1\n");
        let mut sources = Vec::new();
        for (path, text) in texts {
            let nodes = match yaml::parse(text) {
                Ok(n) => n,
                Err(e) => {
                    diag.error(path, e.pos, Problem::Yaml(e.message));
                    continue;
                }
            };
            if nodes.is_empty() {
                diag.error(
                    path,
                    yaml::Pos::START,
                    Problem::Invalid("the file holds no policy document".into()),
                );
            }
            let mut docs = Vec::new();
            for node in &nodes {
                yaml::canonical(node, &mut canonical);
                canonical.push('\n');
                docs.extend(parse::document(path, node, &mut diag));
            }
            sources.push(SourceFile { path: path.clone(), docs });
        }
        let egress = egress::section(&sources, &mut diag);
        let host = Host { directory: &*options.directory, checks: options.host_checks };
        let compiled = compile::compile(&sources, &host, &mut diag);
        if !diag.errors.is_empty() {
            let order: Vec<&PathBuf> = texts.iter().map(|(p, _)| p).collect();
            let rank = |p: &PathBuf| order.iter().position(|o| *o == p).unwrap_or(usize::MAX);
            diag.errors.sort_by(|a, b| (rank(&a.file), &a.file, a.pos).cmp(&(rank(&b.file), &b.file, b.pos)));
            diag.errors.dedup();
            return Err(PolicyErrors { errors: diag.errors });
        }
        let groups = GroupCache::new(options.directory.clone());
        for c in conflict::conflicts(&compiled.policies, &groups) {
            diag.warning(&c.file, c.pos, c.to_string());
        }
        Ok(Self {
            compiled,
            hash: model::hex(&program::sha256(canonical.as_bytes())),
            files: texts.iter().map(|(p, _)| p.clone()).collect(),
            warnings: diag.warnings,
            groups,
            hasher: ProgramHasher::default(),
            egress,
        })
    }

    /// The set's `egress` section, when one of its policies has one.
    pub fn egress(&self) -> Option<&egress::EgressPolicy> {
        self.egress.as_ref()
    }

    /// SHA-256 (hex) over the canonical content of every document, in set order: comments,
    /// layout, quoting and key order do not change it; file names do not enter it.
    pub fn hash(&self) -> &str {
        &self.hash
    }

    /// The files of the set, in set order.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// Non-fatal findings (unused lists; with host checks off, unknown names).
    pub fn warnings(&self) -> &[PolicyError] {
        &self.warnings
    }

    /// The policies, in set order.
    pub fn policies(&self) -> &[Policy] {
        &self.compiled.policies
    }

    /// A named list (e.g. its `networks`, for egress rules).
    pub fn list(&self, name: &str) -> Option<&List> {
        self.compiled.lists.get(name)
    }

    /// Every protected path and glob with its policy, in set order (a path protected by
    /// two policies appears twice).
    pub fn protect_specs(&self) -> Vec<ProtectSpec> {
        self.compiled
            .policies
            .iter()
            .flat_map(|p| {
                p.protect.iter().map(|t| ProtectSpec {
                    policy: p.name.clone(),
                    mode: p.mode,
                    target: match &t.kind {
                        TargetKind::Path(path) => ProtectTarget::Path(path.clone()),
                        TargetKind::Glob { pattern, base, .. } => {
                            ProtectTarget::Glob { pattern: pattern.clone(), base: base.clone() }
                        }
                    },
                })
            })
            .collect()
    }

    /// True when some policy protects `path`.
    pub fn protects(&self, path: &Path) -> bool {
        self.compiled.policies.iter().any(|p| p.covering(path).is_some())
    }

    /// The decision for one access.
    pub fn evaluate(&self, req: &AccessRequest<'_>) -> Decision {
        eval::evaluate(&self.compiled, &self.groups, &self.hasher, req, None)
    }

    /// The decision of the `enforce`-mode policies alone (what the BPF LSM program applies;
    /// the `audit`-mode ones are judged by the daemon from the kernel's `file.open` records).
    pub fn evaluate_enforced(&self, req: &AccessRequest<'_>) -> Decision {
        eval::evaluate(&self.compiled, &self.groups, &self.hasher, req, Some(Mode::Enforce))
    }

    /// The decision with every step, for people.
    pub fn explain(&self, req: &AccessRequest<'_>) -> Explanation {
        eval::explain(&self.compiled, &self.groups, &self.hasher, req)
    }

    /// The executable-hash cache evaluation uses (callers may warm it or hash fds).
    pub fn hasher(&self) -> &ProgramHasher {
        &self.hasher
    }
}

#[cfg(test)]
mod tests;
