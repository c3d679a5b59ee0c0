//! Checked documents → the evaluable set: lists shared across files, users and groups
//! resolved through NSS, protected paths and programs resolved on the host, schedules
//! with their time zones, and the kernel-map capacities. Every problem is reported.
use std::{
    collections::{BTreeMap, HashMap, HashSet},
    path::{Path, PathBuf},
    sync::Arc,
};

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

use super::{
    MAX_PROGRAMS, MAX_PROTECT_SPECS,
    error::{Diagnostics, Problem, did_you_mean, place},
    model::{
        AllowDef, Body, DefaultDef, Document, ListDef, Mode, Network, OpSet, ProgramDef, ProgramRef, Protect,
        SubjectRef,
    },
    nss::Directory,
    parse::{display_glob, glob_base},
    schedule::Schedule,
    yaml::Pos,
};

/// Directories a policy must not protect as a whole: a `deny` default over them would
/// stop the host (protecting single files inside, like /etc/shadow, is fine).
pub const SYSTEM_DIRS: &[&str] = &[
    "/", "/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/proc", "/run", "/sbin", "/sys",
    "/usr", "/var",
];

/// The documents of one policy file.
#[derive(Debug)]
pub struct SourceFile {
    pub path: PathBuf,
    pub docs: Vec<Document>,
}

/// A policy ready for evaluation.
#[derive(Debug)]
pub struct Policy {
    pub name: Arc<str>,
    pub description: Option<String>,
    pub file: PathBuf,
    pub pos: Pos,
    pub mode: Mode,
    pub protect: Vec<Target>,
    /// The globs of `protect`, matched together; `glob_targets[i]` is the index in
    /// `protect` of the set's glob `i`.
    pub globs: GlobSet,
    pub glob_targets: Vec<usize>,
    pub allow: Vec<Entry>,
    pub default: DefaultDef,
}

impl Policy {
    /// The protect entry that covers `path`, if any.
    pub fn covering(&self, path: &Path) -> Option<&Target> {
        let by_path = self.protect.iter().find(|t| match &t.kind {
            TargetKind::Path(p) => path.starts_with(p),
            TargetKind::Glob { .. } => false,
        });
        by_path.or_else(|| {
            if self.glob_targets.is_empty() {
                return None;
            }
            // Globs are written over display forms (docs/policy.md).
            let shown = crate::event::path::of_os(path);
            let first = self.globs.matches(&shown).into_iter().min()?;
            self.protect.get(*self.glob_targets.get(first)?)
        })
    }
}

/// A protected path or glob, resolved.
#[derive(Clone, Debug)]
pub struct Target {
    /// As written in the policy.
    pub written: Protect,
    pub pos: Pos,
    pub kind: TargetKind,
}

#[derive(Clone, Debug)]
pub enum TargetKind {
    /// A file, or a directory with everything below it (canonical path).
    Path(PathBuf),
    /// A glob (with its base directory resolved); `base` is the existing directory it
    /// starts from (canonical).
    Glob { pattern: String, base: PathBuf },
}

/// An allow entry, resolved.
#[derive(Debug)]
pub struct Entry {
    pub name: Arc<str>,
    pub pos: Pos,
    pub subjects: Subjects,
    /// `None`: any program.
    pub programs: Option<Vec<Program>>,
    pub ops: OpSet,
    pub schedule: Option<Schedule>,
}

/// Who an entry allows, each with how it was named (for explanations).
#[derive(Debug, Default)]
pub struct Subjects {
    pub uids: Vec<(u32, String)>,
    pub gids: Vec<(u32, String)>,
}

/// An allowed executable.
#[derive(Clone, Debug)]
pub struct Program {
    /// Canonical path (symlinks resolved at load).
    pub path: PathBuf,
    pub sha256: Option<[u8; 32]>,
    /// How it was named (`office_apps: /usr/bin/libreoffice`).
    pub source: String,
}

/// A named list, resolved.
#[derive(Debug, Default)]
pub struct List {
    pub subjects: Subjects,
    pub programs: Vec<Program>,
    pub networks: Vec<Network>,
    /// As written (members that failed to resolve were reported where they are defined).
    pub has_subjects: bool,
    pub has_programs: bool,
}

/// What compilation needs from the host.
pub struct Host<'a> {
    pub directory: &'a dyn Directory,
    /// Paths and programs must exist (and are canonicalised); unknown users and groups are
    /// errors. Off: they are warnings and paths are used as written.
    pub checks: bool,
}

/// The compiled set.
#[derive(Debug, Default)]
pub struct Compiled {
    pub policies: Vec<Policy>,
    pub lists: BTreeMap<String, List>,
}

/// Compiles `files` (in set order). Problems go to `diag`.
pub fn compile(files: &[SourceFile], host: &Host<'_>, diag: &mut Diagnostics) -> Compiled {
    let mut cx = Cx { host, diag, users: HashMap::new(), groups: HashMap::new() };
    cx.unique_document_names(files);
    let defs = cx.collect_lists(files);
    let mut lists = BTreeMap::new();
    for (name, (file, def)) in &defs {
        lists.insert(name.clone(), cx.list(file, def));
    }
    let mut used: HashSet<String> = HashSet::new();
    let mut policies = Vec::new();
    for f in files {
        for doc in &f.docs {
            if let Body::Policy(p) = &doc.body {
                let protect: Vec<Target> =
                    p.protect.iter().filter_map(|t| cx.target(&f.path, t.pos, &t.value)).collect();
                let (globs, glob_targets) = cx.glob_set(&f.path, &protect);
                let allow = p.allow.iter().map(|a| cx.entry(&f.path, a, &lists, &mut used)).collect();
                policies.push(Policy {
                    name: doc.name.value.as_str().into(),
                    description: doc.description.clone(),
                    file: f.path.clone(),
                    pos: doc.pos,
                    mode: p.mode,
                    protect,
                    globs,
                    glob_targets,
                    allow,
                    default: p.default.value,
                });
            }
        }
    }
    for (name, (file, def)) in &defs {
        if !used.contains(name) && def.networks.is_empty() {
            cx.diag.warning(file, def.name.pos, format!("list `{name}` is not used by any allow entry"));
        }
    }
    cx.capacities(&policies);
    Compiled { policies, lists }
}

struct Cx<'a, 'h> {
    host: &'a Host<'h>,
    diag: &'a mut Diagnostics,
    users: HashMap<String, Option<u32>>,
    groups: HashMap<String, Option<u32>>,
}

impl Cx<'_, '_> {
    fn err(&mut self, file: &Path, pos: Pos, problem: Problem) {
        self.diag.error(file, pos, problem);
    }

    /// Policy and Lists names are unique across the set.
    fn unique_document_names(&mut self, files: &[SourceFile]) {
        let mut seen: HashMap<&str, (&Path, Pos)> = HashMap::new();
        for f in files {
            for doc in &f.docs {
                if let Some((file, pos)) = seen.get(doc.name.value.as_str()) {
                    let first = place(file, *pos);
                    self.err(
                        &f.path,
                        doc.name.pos,
                        Problem::Duplicate { what: "policy name", name: doc.name.value.clone(), first },
                    );
                } else {
                    seen.insert(&doc.name.value, (&f.path, doc.name.pos));
                }
            }
        }
    }

    /// Every list of the set by name. The same name may be defined again only with the
    /// same members (order does not matter).
    fn collect_lists<'f>(&mut self, files: &'f [SourceFile]) -> BTreeMap<String, (&'f Path, &'f ListDef)> {
        let mut out: BTreeMap<String, (&Path, &ListDef)> = BTreeMap::new();
        for f in files {
            for doc in &f.docs {
                let defs = match &doc.body {
                    Body::Policy(p) => &p.lists,
                    Body::Lists(l) => l,
                };
                for def in defs {
                    match out.get(&def.name.value) {
                        Some((file, first)) => {
                            if first.content() != def.content() {
                                let first = place(file, first.name.pos);
                                self.err(
                                    &f.path,
                                    def.name.pos,
                                    Problem::ListConflict { name: def.name.value.clone(), first },
                                );
                            }
                        }
                        None => {
                            out.insert(def.name.value.clone(), (&f.path, def));
                        }
                    }
                }
            }
        }
        out
    }

    fn list(&mut self, file: &Path, def: &ListDef) -> List {
        let name = &def.name.value;
        let mut list = List {
            has_subjects: def.has_subjects(),
            has_programs: !def.programs.is_empty(),
            ..List::default()
        };
        for u in &def.users {
            if let Some(uid) = self.user(file, u.pos, &u.value) {
                list.subjects.uids.push((uid, format!("user {} (uid {uid}) in list {name}", u.value)));
            }
        }
        for u in &def.uids {
            list.subjects.uids.push((u.value, format!("uid {} in list {name}", u.value)));
        }
        for g in &def.groups {
            if let Some(gid) = self.group(file, g.pos, &g.value) {
                list.subjects.gids.push((gid, format!("group {} (gid {gid}) in list {name}", g.value)));
            }
        }
        for p in &def.programs {
            if let Some(prog) = self.program(file, p.pos, &p.value, &format!("list {name}")) {
                list.programs.push(prog);
            }
        }
        list.networks = def.networks.iter().map(|n| n.value).collect();
        list
    }

    fn user(&mut self, file: &Path, pos: Pos, name: &str) -> Option<u32> {
        let directory = self.host.directory;
        let uid =
            *self.users.entry(name.to_owned()).or_insert_with(|| directory.user_by_name(name).map(|u| u.uid));
        if uid.is_none() {
            self.unknown(file, pos, Problem::UnknownUser(name.to_owned()));
        }
        uid
    }

    fn group(&mut self, file: &Path, pos: Pos, name: &str) -> Option<u32> {
        let directory = self.host.directory;
        let gid = *self.groups.entry(name.to_owned()).or_insert_with(|| directory.group_by_name(name));
        if gid.is_none() {
            self.unknown(file, pos, Problem::UnknownGroup(name.to_owned()));
        }
        gid
    }

    /// An unknown name: an error with host checks, a warning without.
    fn unknown(&mut self, file: &Path, pos: Pos, problem: Problem) {
        if self.host.checks {
            self.err(file, pos, problem);
        } else {
            self.diag.warning(file, pos, format!("{problem}; it will never match"));
        }
    }

    fn path_err(&mut self, file: &Path, pos: Pos, path: &str, reason: impl Into<String>) {
        self.err(file, pos, Problem::Path { path: path.to_owned(), reason: reason.into() });
    }

    /// The canonical form of an existing path (as written without host checks).
    fn resolve(&mut self, file: &Path, pos: Pos, path: &str) -> Option<(PathBuf, std::fs::Metadata)> {
        if !self.host.checks {
            return None;
        }
        match std::fs::canonicalize(crate::event::path::to_path(path))
            .and_then(|p| std::fs::metadata(&p).map(|m| (p, m)))
        {
            Ok(found) => Some(found),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.path_err(file, pos, path, "does not exist");
                None
            }
            Err(e) => {
                self.path_err(file, pos, path, format!("cannot be resolved: {e}"));
                None
            }
        }
    }

    fn target(&mut self, file: &Path, pos: Pos, t: &Protect) -> Option<Target> {
        let kind = match t {
            Protect::Path(p) => {
                let written = crate::event::path::to_path(p);
                let path =
                    if self.host.checks { self.resolve(file, pos, p)?.0 } else { written.to_path_buf() };
                if SYSTEM_DIRS.iter().any(|d| path == Path::new(d)) {
                    let what = if path == *written {
                        "it".to_owned()
                    } else {
                        format!("it resolves to {}, which", path.display())
                    };
                    let reason = format!(
                        "{what} holds files the system needs to run; protect the data directories instead"
                    );
                    self.path_err(file, pos, p, reason);
                    return None;
                }
                TargetKind::Path(path)
            }
            Protect::Glob(g) => {
                let base = glob_base(g);
                let rest = &g[base.len()..];
                let canonical_base = if self.host.checks {
                    let (b, meta) = self.resolve(file, pos, &base)?;
                    if !meta.is_dir() {
                        self.path_err(file, pos, &base, "the base directory of the glob is not a directory");
                        return None;
                    }
                    b
                } else {
                    PathBuf::from(&base)
                };
                TargetKind::Glob {
                    pattern: format!("{}{rest}", crate::event::path::of_os(&canonical_base)),
                    base: canonical_base,
                }
            }
        };
        Some(Target { written: t.clone(), pos, kind })
    }

    /// One matcher for the globs of a policy.
    fn glob_set(&mut self, file: &Path, protect: &[Target]) -> (GlobSet, Vec<usize>) {
        let mut builder = GlobSetBuilder::new();
        let mut index = Vec::new();
        for (i, t) in protect.iter().enumerate() {
            if let TargetKind::Glob { pattern, .. } = &t.kind {
                match GlobBuilder::new(&display_glob(pattern)).literal_separator(true).build() {
                    Ok(glob) => {
                        builder.add(glob);
                        index.push(i);
                    }
                    Err(e) => self.err(file, t.pos, Problem::Invalid(format!("glob `{pattern}`: {e}"))),
                }
            }
        }
        match builder.build() {
            Ok(set) => (set, index),
            Err(e) => {
                let pos = protect.first().map_or(Pos::START, |t| t.pos);
                self.err(file, pos, Problem::Invalid(format!("globs: {e}")));
                (GlobSet::empty(), Vec::new())
            }
        }
    }

    fn program(&mut self, file: &Path, pos: Pos, def: &ProgramDef, via: &str) -> Option<Program> {
        let path = if self.host.checks {
            let (p, meta) = self.resolve(file, pos, &def.path)?;
            if !meta.is_file() {
                self.path_err(file, pos, &def.path, "is not a regular file");
                return None;
            }
            p
        } else {
            PathBuf::from(&def.path)
        };
        let resolved = if path.as_os_str() == def.path.as_str() {
            String::new()
        } else {
            format!(" → {}", path.display())
        };
        Some(Program { path, sha256: def.sha256, source: format!("{def}{resolved} ({via})") })
    }

    fn entry(
        &mut self,
        file: &Path,
        a: &AllowDef,
        lists: &BTreeMap<String, List>,
        used: &mut HashSet<String>,
    ) -> Entry {
        let mut subjects = Subjects::default();
        for s in &a.subjects {
            match &s.value {
                SubjectRef::List(name) => {
                    used.insert(name.clone());
                    match lists.get(name) {
                        Some(l) if l.has_subjects => {
                            subjects.uids.extend(l.subjects.uids.iter().cloned());
                            subjects.gids.extend(l.subjects.gids.iter().cloned());
                        }
                        Some(_) => self.err(
                            file,
                            s.pos,
                            Problem::Invalid(format!(
                                "list `{name}` has no users, groups or uids; it cannot be a subject"
                            )),
                        ),
                        None => self.unknown_list(file, s.pos, name, lists),
                    }
                }
                SubjectRef::User(u) => {
                    if let Some(uid) = self.user(file, s.pos, u) {
                        subjects.uids.push((uid, format!("user {u} (uid {uid})")));
                    }
                }
                SubjectRef::Uid(uid) => subjects.uids.push((*uid, format!("uid {uid}"))),
                SubjectRef::Group(g) => {
                    if let Some(gid) = self.group(file, s.pos, g) {
                        subjects.gids.push((gid, format!("group {g} (gid {gid})")));
                    }
                }
            }
        }
        let programs = a.programs.as_ref().map(|refs| {
            let mut out = Vec::new();
            for r in refs {
                match &r.value {
                    ProgramRef::List(name) => {
                        used.insert(name.clone());
                        match lists.get(name) {
                            Some(l) if l.has_programs => out.extend(l.programs.iter().cloned()),
                            Some(_) => self.err(
                                file,
                                r.pos,
                                Problem::Invalid(format!(
                                    "list `{name}` has no programs; it cannot be used in programs"
                                )),
                            ),
                            None => self.unknown_list(file, r.pos, name, lists),
                        }
                    }
                    ProgramRef::Program(def) => {
                        if let Some(p) = self.program(file, r.pos, def, "this entry") {
                            out.push(p);
                        }
                    }
                }
            }
            out
        });
        let schedule = a.schedule.as_ref().and_then(|def| match Schedule::compile(def) {
            Ok(s) => Some(s),
            Err(why) => {
                self.err(file, def.timezone.pos, Problem::Invalid(why));
                None
            }
        });
        Entry {
            name: a.name.value.as_str().into(),
            pos: a.name.pos,
            subjects,
            programs,
            ops: a.operations.unwrap_or(OpSet::ALL),
            schedule,
        }
    }

    fn unknown_list(&mut self, file: &Path, pos: Pos, name: &str, lists: &BTreeMap<String, List>) {
        let known: Vec<&str> = lists.keys().map(String::as_str).collect();
        let guess = did_you_mean(name, known.iter().copied());
        let hint = if !guess.is_empty() {
            guess
        } else if known.is_empty() {
            " (the set defines no lists)".to_owned()
        } else if known.len() <= 10 {
            format!(" (defined: {})", known.join(", "))
        } else {
            String::new()
        };
        self.err(file, pos, Problem::UnknownList { name: name.to_owned(), hint });
    }

    /// Distinct protected targets and programs must fit the kernel maps.
    fn capacities(&mut self, policies: &[Policy]) {
        let mut targets: HashSet<String> = HashSet::new();
        for p in policies {
            for t in &p.protect {
                let key = match &t.kind {
                    TargetKind::Path(path) => format!("path:{}", path.display()),
                    TargetKind::Glob { pattern, .. } => format!("glob:{pattern}"),
                };
                if targets.insert(key) && targets.len() == MAX_PROTECT_SPECS + 1 {
                    self.err(
                        &p.file,
                        t.pos,
                        Problem::Capacity(format!(
                            "more than {MAX_PROTECT_SPECS} distinct protected paths and globs in the policy set (the kernel map holds {MAX_PROTECT_SPECS})"
                        )),
                    );
                }
            }
        }
        let mut programs: HashSet<(PathBuf, Option<[u8; 32]>)> = HashSet::new();
        let all = policies
            .iter()
            .flat_map(|p| p.allow.iter().map(move |e| (p, e)))
            .flat_map(|(p, e)| e.programs.iter().flatten().map(move |prog| (p, e, prog)));
        for (p, e, prog) in all {
            if programs.insert((prog.path.clone(), prog.sha256)) && programs.len() == MAX_PROGRAMS + 1 {
                self.err(
                    &p.file,
                    e.pos,
                    Problem::Capacity(format!(
                        "more than {MAX_PROGRAMS} distinct programs in the policy set"
                    )),
                );
            }
        }
    }
}
