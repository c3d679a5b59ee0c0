//! Load errors: every problem of a policy set, each with file, line and column.
use std::{
    fmt,
    path::{Path, PathBuf},
};

use super::yaml::Pos;

/// What is wrong at one place of a policy file.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// YAML syntax, a parser limit (alias bomb, depth, size), or a merge key.
    #[error("YAML: {0}")]
    Yaml(String),
    #[error("unknown key `{key}` in {context}{hint} (allowed: {allowed})")]
    UnknownKey { key: String, context: String, hint: String, allowed: String },
    #[error("missing `{key}` in {context}")]
    MissingKey { key: &'static str, context: String },
    #[error("duplicate key `{key}` (first at line {first_line})")]
    DuplicateKey { key: String, first_line: u64 },
    #[error("{what}: expected {expected}, found {found}{hint}")]
    WrongType { what: String, expected: String, found: &'static str, hint: &'static str },
    /// A value of the right type that is not acceptable.
    #[error("{0}")]
    Invalid(String),
    #[error("duplicate {what} `{name}` (first defined at {first})")]
    Duplicate { what: &'static str, name: String, first: String },
    #[error("list `{name}` is already defined with different content at {first}")]
    ListConflict { name: String, first: String },
    #[error("unknown list `{name}`{hint}")]
    UnknownList { name: String, hint: String },
    #[error("unknown user `{0}` (no such user through NSS)")]
    UnknownUser(String),
    #[error("unknown group `{0}` (no such group through NSS)")]
    UnknownGroup(String),
    /// A protected path, glob base or program that cannot be used.
    #[error("{path}: {reason}")]
    Path { path: String, reason: String },
    /// More entries than the kernel maps hold.
    #[error("{0}")]
    Capacity(String),
    /// The file is not safe to load (owner, mode, type, symlink, size).
    #[error("refusing policy file: {0}")]
    UnsafeFile(String),
    #[error("cannot read policy file: {0}")]
    Read(String),
}

/// One problem, located.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyError {
    pub file: PathBuf,
    pub pos: Pos,
    pub problem: Problem,
}

impl PolicyError {
    pub fn new(file: &Path, pos: Pos, problem: Problem) -> Self {
        Self { file: file.to_owned(), pos, problem }
    }
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: {}", self.file.display(), self.pos.line, self.pos.column, self.problem)
    }
}

impl std::error::Error for PolicyError {}

/// Every problem found in a policy set (never empty); nothing of the set was loaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyErrors {
    pub errors: Vec<PolicyError>,
}

impl fmt::Display for PolicyErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.errors.len();
        write!(f, "{n} error{} in the policy set; nothing was loaded", if n == 1 { "" } else { "s" })?;
        for e in &self.errors {
            write!(f, "\n  {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for PolicyErrors {}

/// Collects problems while a set is read, parsed and compiled.
#[derive(Debug, Default)]
pub struct Diagnostics {
    pub errors: Vec<PolicyError>,
    pub warnings: Vec<PolicyError>,
}

impl Diagnostics {
    pub fn error(&mut self, file: &Path, pos: Pos, problem: Problem) {
        self.errors.push(PolicyError::new(file, pos, problem));
    }

    pub fn warning(&mut self, file: &Path, pos: Pos, message: String) {
        self.warnings.push(PolicyError::new(file, pos, Problem::Invalid(message)));
    }
}

/// `file:line:column`, to point at a first definition.
pub fn place(file: &Path, pos: Pos) -> String {
    format!("{}:{}:{}", file.display(), pos.line, pos.column)
}

/// `; did you mean `x`?` when one of `candidates` is a likely misspelling of `word`.
pub fn did_you_mean<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    let limit = (word.chars().count() / 3).max(1);
    candidates
        .into_iter()
        .map(|c| (distance(word, c), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| format!("; did you mean `{c}`?"))
        .unwrap_or_default()
}

/// Edit distance over characters (insertions, deletions, substitutions and swaps of two
/// neighbours count 1).
fn distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[i - 1][j] + 1).min(d[i][j - 1] + 1).min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = v;
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::did_you_mean;

    #[test]
    fn suggestions() {
        assert_eq!(did_you_mean("form", ["days", "from", "to"]), "; did you mean `from`?");
        assert_eq!(did_you_mean("enforcing", ["audit", "enforce"]), "; did you mean `enforce`?");
        assert_eq!(did_you_mean("colour", ["name", "description", "labels"]), "");
        assert_eq!(
            did_you_mean("ofice_apps", ["office_apps", "payroll_users"]),
            "; did you mean `office_apps`?"
        );
    }
}
