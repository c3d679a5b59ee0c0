//! The schema check: YAML nodes → [`Document`]s, reporting every problem of a document
//! (unknown keys, wrong types, missing keys, bad values, duplicates) with its position.
//! Nothing here looks at the host; see `compile.rs` for users, groups, paths and programs.
use std::{collections::HashMap, path::Path};

use jiff::civil::Date;

use super::{
    error::{Diagnostics, Problem, did_you_mean},
    model::{
        API_VERSION, Action, AllowDef, At, Body, DEFAULT_TIMEZONE, DefaultDef, Document, Except, ListDef,
        Mode, Network, Op, OpSet, PolicyDef, ProgramDef, ProgramRef, Protect, ScheduleDef, Severity,
        SubjectRef, Window,
    },
    yaml::{Node, Pos, Value},
};

mod egress;

/// Longest name of a policy, list or allow entry.
pub const MAX_NAME_LEN: usize = 64;

/// Checks one YAML document of `file`. Returns what could be understood (also when there
/// were errors, so that later checks do not report follow-up errors); `None` when not even
/// the kind and name are known.
pub fn document(file: &Path, node: &Node, diag: &mut Diagnostics) -> Option<Document> {
    let mut cx = Cx { file, diag };
    cx.document(node)
}

struct Cx<'a> {
    file: &'a Path,
    diag: &'a mut Diagnostics,
}

/// `metadata` of a document.
struct Metadata {
    name: At<String>,
    description: Option<String>,
    labels: Vec<(String, String)>,
}

/// The entries of a mapping whose keys were checked against the schema.
struct Fields<'n> {
    pos: Pos,
    context: String,
    entries: Vec<(&'n str, &'n Node)>,
}

impl<'n> Fields<'n> {
    fn get(&self, key: &str) -> Option<&'n Node> {
        self.entries.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
    }

    fn require(&self, cx: &mut Cx<'_>, key: &'static str) -> Option<&'n Node> {
        let v = self.get(key);
        if v.is_none() {
            cx.err(self.pos, Problem::MissingKey { key, context: self.context.clone() });
        }
        v
    }
}

impl Cx<'_> {
    fn err(&mut self, pos: Pos, problem: Problem) {
        self.diag.error(self.file, pos, problem);
    }

    fn invalid(&mut self, pos: Pos, message: String) {
        self.err(pos, Problem::Invalid(message));
    }

    fn wrong_type(&mut self, node: &Node, what: &str, expected: &str) {
        let hint = match (&node.value, expected) {
            (Value::Int(_) | Value::Float(_) | Value::Bool(_), e) if e.contains("string") => {
                " (put it in quotes)"
            }
            _ => "",
        };
        self.err(
            node.pos,
            Problem::WrongType {
                what: what.to_owned(),
                expected: expected.to_owned(),
                found: node.value.kind(),
                hint,
            },
        );
    }

    /// A mapping with only `allowed` keys, each at most once.
    fn fields<'n>(&mut self, node: &'n Node, context: &str, allowed: &[&'static str]) -> Option<Fields<'n>> {
        let Value::Map(map) = &node.value else {
            self.wrong_type(node, context, "a mapping");
            return None;
        };
        let mut fields = Fields { pos: node.pos, context: context.to_owned(), entries: Vec::new() };
        let mut seen: HashMap<&str, Pos> = HashMap::new();
        for (k, v) in map {
            let Value::Str(key) = &k.value else {
                self.wrong_type(k, &format!("a key of {context}"), "a string");
                continue;
            };
            if let Some(first) = seen.get(key.as_str()) {
                self.err(k.pos, Problem::DuplicateKey { key: key.clone(), first_line: first.line });
                continue;
            }
            seen.insert(key, k.pos);
            if allowed.contains(&key.as_str()) {
                fields.entries.push((key, v));
            } else {
                self.err(
                    k.pos,
                    Problem::UnknownKey {
                        key: key.clone(),
                        context: context.to_owned(),
                        hint: did_you_mean(key, allowed.iter().copied()),
                        allowed: allowed.join(", "),
                    },
                );
            }
        }
        Some(fields)
    }

    fn string(&mut self, node: &Node, what: &str) -> Option<At<String>> {
        match &node.value {
            Value::Str(s) => Some(At::new(node.pos, s.clone())),
            _ => {
                self.wrong_type(node, what, "a string");
                None
            }
        }
    }

    /// A name: ASCII letters, digits, `_`, `-` and `.`, starting with a letter or digit.
    fn name(&mut self, node: &Node, what: &str) -> Option<At<String>> {
        let s = self.string(node, what)?;
        if valid_name(&s.value) {
            Some(s)
        } else {
            self.invalid(
                s.pos,
                format!(
                    "{what} `{}`: names use ASCII letters, digits, `_`, `-` and `.`, start with a letter or digit, and have at most {MAX_NAME_LEN} characters",
                    s.value
                ),
            );
            None
        }
    }

    /// A user or group name as NSS knows it (also `DOMAIN\user` and `user@realm`).
    fn account(&mut self, node: &Node, what: &str) -> Option<At<String>> {
        let s = self.string(node, what)?;
        let ok = !s.value.is_empty()
            && s.value.len() <= 256
            && !s.value.chars().any(|c| c.is_whitespace() || c.is_control() || c == ':');
        if ok {
            Some(s)
        } else {
            self.invalid(s.pos, format!("{what} `{}` is not a valid name", s.value));
            None
        }
    }

    fn keyword<T>(
        &mut self,
        node: &Node,
        what: &str,
        names: &[&str],
        parse: fn(&str) -> Option<T>,
    ) -> Option<T> {
        let Value::Str(text) = &node.value else {
            self.wrong_type(node, what, &format!("one of {}", names.join(", ")));
            return None;
        };
        let s = At::new(node.pos, text.clone());
        let v = parse(&s.value);
        if v.is_none() {
            let hint = did_you_mean(&s.value, names.iter().copied());
            self.invalid(s.pos, format!("{what} `{}` is not one of: {}{hint}", s.value, names.join(", ")));
        }
        v
    }

    fn seq<'n>(&mut self, node: &'n Node, what: &str) -> Option<&'n [Node]> {
        match &node.value {
            Value::Seq(items) => Some(items),
            _ => {
                self.wrong_type(node, what, "a list");
                None
            }
        }
    }

    /// A non-empty list.
    fn nonempty_seq<'n>(&mut self, node: &'n Node, what: &str, hint: &str) -> Option<&'n [Node]> {
        let items = self.seq(node, what)?;
        if items.is_empty() {
            self.invalid(node.pos, format!("{what} is empty{hint}"));
            return None;
        }
        Some(items)
    }

    fn uid(&mut self, node: &Node, what: &str) -> Option<At<u32>> {
        match &node.value {
            Value::Int(i) => match u32::try_from(*i) {
                Ok(u) if u != u32::MAX => Some(At::new(node.pos, u)),
                _ => {
                    self.invalid(node.pos, format!("{what} {i} is not a valid id (0–4294967294)"));
                    None
                }
            },
            _ => {
                self.wrong_type(node, what, "an integer");
                None
            }
        }
    }

    /// Reports items listed twice in one list.
    fn no_duplicates(&mut self, items: &[(String, Pos)], what: &'static str) {
        let mut seen: HashMap<&str, Pos> = HashMap::new();
        for (key, pos) in items {
            if let Some(first) = seen.get(key.as_str()) {
                self.err(
                    *pos,
                    Problem::Duplicate {
                        what,
                        name: key.clone(),
                        first: format!("line {}, column {}", first.line, first.column),
                    },
                );
            } else {
                seen.insert(key, *pos);
            }
        }
    }

    fn document(&mut self, node: &Node) -> Option<Document> {
        let top = self.fields(node, "the document", &["apiVersion", "kind", "metadata", "spec"])?;
        let api = top.require(self, "apiVersion").and_then(|n| self.string(n, "apiVersion"));
        let kind = top.require(self, "kind").and_then(|n| self.string(n, "kind"));
        let metadata = top.require(self, "metadata");
        let spec = top.require(self, "spec");
        if let Some(api) = &api
            && api.value != API_VERSION
        {
            self.invalid(
                api.pos,
                format!("unsupported apiVersion `{}` (this sensor reads {API_VERSION})", api.value),
            );
            return None;
        }
        let kind = kind?;
        let is_policy = match kind.value.as_str() {
            "AccessPolicy" => true,
            "Lists" => false,
            other => {
                self.invalid(kind.pos, format!("unknown kind `{other}` (expected AccessPolicy or Lists)"));
                return None;
            }
        };
        let Metadata { name, description, labels } = self.metadata(metadata?)?;
        let spec = spec?;
        let body = if is_policy {
            Body::Policy(self.policy_spec(spec)?)
        } else {
            let f = self.fields(spec, "spec of a Lists document", &["lists"])?;
            Body::Lists(f.require(self, "lists").map(|n| self.lists(n)).unwrap_or_default())
        };
        Some(Document { pos: node.pos, name, description, labels, body })
    }

    fn metadata(&mut self, node: &Node) -> Option<Metadata> {
        let f = self.fields(node, "metadata", &["name", "description", "labels"])?;
        let name = f.require(self, "name").and_then(|n| self.name(n, "policy name"));
        let description = f.get("description").and_then(|n| self.string(n, "description")).map(|s| s.value);
        let mut labels = Vec::new();
        if let Some(l) = f.get("labels")
            && let Value::Map(entries) = &l.value
        {
            for (k, v) in entries {
                if let (Some(k), Some(v)) = (self.string(k, "a label name"), self.string(v, "a label value"))
                {
                    labels.push((k.value, v.value));
                }
            }
        } else if let Some(l) = f.get("labels") {
            self.wrong_type(l, "labels", "a mapping of strings");
        }
        Some(Metadata { name: name?, description, labels })
    }

    fn policy_spec(&mut self, node: &Node) -> Option<PolicyDef> {
        let f = self.fields(
            node,
            "spec of an AccessPolicy",
            &["mode", "protect", "lists", "allow", "default", "egress"],
        )?;
        let mode =
            f.require(self, "mode").and_then(|n| self.keyword(n, "mode", Mode::NAMES, Mode::from_name));
        let protect = f.require(self, "protect").map(|n| self.protect(n)).unwrap_or_default();
        let lists = f.get("lists").map(|n| self.lists(n)).unwrap_or_default();
        let allow = f.get("allow").map(|n| self.allow_entries(n)).unwrap_or_default();
        let default = f.require(self, "default").and_then(|n| self.default(n));
        let egress = f.get("egress").and_then(|n| self.egress(n)).map(|e| At::new(e.pos, Box::new(e.value)));
        Some(PolicyDef {
            egress,
            mode: mode.unwrap_or(Mode::Enforce),
            protect,
            lists,
            allow,
            default: default
                .unwrap_or(At::new(node.pos, DefaultDef { action: Action::Deny, severity: Severity::High })),
        })
    }

    fn protect(&mut self, node: &Node) -> Vec<At<Protect>> {
        let Some(items) = self.seq(node, "protect") else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for item in items {
            let Some(f) = self.fields(item, "a protect entry", &["path", "glob"]) else {
                continue;
            };
            let p = match (f.get("path"), f.get("glob")) {
                (Some(p), None) => self.string(p, "path").and_then(|s| match clean_path(&s.value) {
                    Ok(clean) => Some(Protect::Path(clean)),
                    Err(why) => {
                        self.invalid(s.pos, format!("path `{}`: {why}", s.value));
                        None
                    }
                }),
                (None, Some(g)) => self.string(g, "glob").and_then(|s| match check_glob(&s.value) {
                    Ok(()) => Some(Protect::Glob(s.value)),
                    Err(why) => {
                        self.invalid(s.pos, format!("glob `{}`: {why}", s.value));
                        None
                    }
                }),
                _ => {
                    self.invalid(item.pos, "a protect entry has exactly one of `path` or `glob`".into());
                    None
                }
            };
            if let Some(p) = p {
                out.push(At::new(item.pos, p));
            }
        }
        let keys: Vec<(String, Pos)> = out.iter().map(|p| (p.value.to_string(), p.pos)).collect();
        self.no_duplicates(&keys, "protect entry");
        out
    }

    fn lists(&mut self, node: &Node) -> Vec<ListDef> {
        let Value::Map(entries) = &node.value else {
            self.wrong_type(node, "lists", "a mapping of list names to lists");
            return Vec::new();
        };
        let mut out: Vec<ListDef> = Vec::new();
        for (k, v) in entries {
            let Some(name) = self.name(k, "list name") else {
                continue;
            };
            if let Some(first) = out.iter().find(|l| l.name.value == name.value) {
                self.err(
                    name.pos,
                    Problem::DuplicateKey { key: name.value.clone(), first_line: first.name.pos.line },
                );
                continue;
            }
            if let Some(list) = self.list(name, v) {
                out.push(list);
            }
        }
        out
    }

    fn list(&mut self, name: At<String>, node: &Node) -> Option<ListDef> {
        let context = format!("list `{}`", name.value);
        let f = self.fields(node, &context, &["users", "groups", "uids", "programs", "networks"])?;
        let mut list = ListDef {
            name,
            users: Vec::new(),
            groups: Vec::new(),
            uids: Vec::new(),
            programs: Vec::new(),
            networks: Vec::new(),
        };
        if let Some(n) = f.get("users") {
            list.users = self.members(n, "users", |cx, n| cx.account(n, "a user name"));
        }
        if let Some(n) = f.get("groups") {
            list.groups = self.members(n, "groups", |cx, n| cx.account(n, "a group name"));
        }
        if let Some(n) = f.get("uids") {
            list.uids = self.members(n, "uids", |cx, n| cx.uid(n, "a uid"));
        }
        if let Some(n) = f.get("programs") {
            list.programs = self.members(n, "programs", |cx, n| {
                let pos = n.pos;
                cx.program(n).map(|p| At::new(pos, p))
            });
        }
        if let Some(n) = f.get("networks") {
            list.networks = self.members(n, "networks", |cx, n| {
                let s = cx.string(n, "a network")?;
                match s.value.parse::<Network>() {
                    Ok(net) => Some(At::new(s.pos, net)),
                    Err(why) => {
                        cx.invalid(s.pos, why);
                        None
                    }
                }
            });
        }
        if f.entries.is_empty() {
            self.invalid(f.pos, format!("{context} has no members"));
        }
        Some(list)
    }

    /// The items of a list-of-members, each parsed by `item`; duplicates reported.
    fn members<T: std::fmt::Display>(
        &mut self,
        node: &Node,
        what: &'static str,
        item: impl Fn(&mut Self, &Node) -> Option<At<T>>,
    ) -> Vec<At<T>> {
        let Some(items) = self.nonempty_seq(node, what, "; leave the key out instead") else {
            return Vec::new();
        };
        let out: Vec<At<T>> = items.iter().filter_map(|n| item(self, n)).collect();
        let keys: Vec<(String, Pos)> = out.iter().map(|m| (m.value.to_string(), m.pos)).collect();
        self.no_duplicates(&keys, "list member");
        out
    }

    /// `/abs/path` or `{path: /abs/path, sha256: HEX}`.
    fn program(&mut self, node: &Node) -> Option<ProgramDef> {
        let (path, sha) = match &node.value {
            Value::Map(_) => {
                let f = self.fields(node, "a program", &["path", "sha256"])?;
                let path = f.require(self, "path").and_then(|n| self.string(n, "program path"));
                let sha = f.get("sha256").and_then(|n| self.string(n, "sha256"));
                (path?, sha)
            }
            _ => (self.string(node, "a program")?, None),
        };
        let clean = match clean_path(&path.value) {
            Ok(c) => c,
            Err(why) => {
                self.invalid(path.pos, format!("program `{}`: {why}", path.value));
                return None;
            }
        };
        let sha256 = match sha {
            None => None,
            Some(s) => match parse_sha256(&s.value) {
                Some(h) => Some(h),
                None => {
                    self.invalid(s.pos, "sha256 must be 64 hexadecimal digits".into());
                    return None;
                }
            },
        };
        Some(ProgramDef { path: clean, sha256 })
    }

    fn allow_entries(&mut self, node: &Node) -> Vec<AllowDef> {
        let Some(items) = self.seq(node, "allow") else {
            return Vec::new();
        };
        let out: Vec<AllowDef> = items.iter().filter_map(|n| self.allow(n)).collect();
        let keys: Vec<(String, Pos)> = out.iter().map(|a| (a.name.value.clone(), a.name.pos)).collect();
        self.no_duplicates(&keys, "allow entry");
        out
    }

    fn allow(&mut self, node: &Node) -> Option<AllowDef> {
        let f =
            self.fields(node, "an allow entry", &["name", "subjects", "programs", "operations", "schedule"])?;
        let name = f.require(self, "name").and_then(|n| self.name(n, "allow entry name"));
        let subjects = f.require(self, "subjects").map(|n| self.subjects(n)).unwrap_or_default();
        let programs = f.get("programs").map(|n| self.program_refs(n));
        let operations = f.get("operations").map(|n| self.operations(n));
        let schedule = f.get("schedule").and_then(|n| self.schedule(n));
        Some(AllowDef { name: name?, subjects, programs, operations, schedule })
    }

    fn subjects(&mut self, node: &Node) -> Vec<At<SubjectRef>> {
        let Some(items) = self.nonempty_seq(node, "subjects", "") else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for item in items {
            let s = match &item.value {
                Value::Str(_) => self.name(item, "list name").map(|n| SubjectRef::List(n.value)),
                Value::Map(m) if m.len() == 1 => {
                    let Some(f) = self.fields(item, "a subject", &["user", "uid", "group"]) else {
                        continue;
                    };
                    match f.entries.first() {
                        Some(("user", n)) => self.account(n, "user").map(|u| SubjectRef::User(u.value)),
                        Some(("group", n)) => self.account(n, "group").map(|g| SubjectRef::Group(g.value)),
                        Some(("uid", n)) => self.uid(n, "uid").map(|u| SubjectRef::Uid(u.value)),
                        _ => None,
                    }
                }
                _ => {
                    self.wrong_type(
                        item,
                        "a subject",
                        "a list name, {user: NAME}, {uid: N} or {group: NAME}",
                    );
                    None
                }
            };
            if let Some(s) = s {
                out.push(At::new(item.pos, s));
            }
        }
        let keys: Vec<(String, Pos)> = out.iter().map(|s| (s.value.to_string(), s.pos)).collect();
        self.no_duplicates(&keys, "subject");
        out
    }

    fn program_refs(&mut self, node: &Node) -> Vec<At<ProgramRef>> {
        let Some(items) = self.nonempty_seq(node, "programs", "; leave it out for any program") else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for item in items {
            let r = match &item.value {
                Value::Str(s) if !s.starts_with('/') => {
                    self.name(item, "list name").map(|n| ProgramRef::List(n.value))
                }
                _ => self.program(item).map(ProgramRef::Program),
            };
            if let Some(r) = r {
                out.push(At::new(item.pos, r));
            }
        }
        let keys: Vec<(String, Pos)> = out.iter().map(|p| (p.value.to_string(), p.pos)).collect();
        self.no_duplicates(&keys, "program");
        out
    }

    fn operations(&mut self, node: &Node) -> OpSet {
        let Some(items) = self.nonempty_seq(node, "operations", "; leave it out for every operation") else {
            return OpSet::EMPTY;
        };
        let mut ops = OpSet::EMPTY;
        let mut keys = Vec::new();
        for item in items {
            if let Some(op) = self.keyword(item, "operation", Op::NAMES, Op::from_name) {
                ops.insert(op);
                keys.push((op.as_str().to_owned(), item.pos));
            }
        }
        self.no_duplicates(&keys, "operation");
        ops
    }

    fn schedule(&mut self, node: &Node) -> Option<ScheduleDef> {
        let f = self.fields(node, "schedule", &["timezone", "windows", "except"])?;
        let timezone = match f.get("timezone") {
            Some(n) => self.string(n, "timezone")?,
            None => At::new(f.pos, DEFAULT_TIMEZONE.to_owned()),
        };
        let mut windows = Vec::new();
        if let Some(n) = f.get("windows")
            && let Some(items) = self.nonempty_seq(n, "windows", "; leave it out for all day, every day")
        {
            windows = items.iter().filter_map(|w| self.window(w)).collect();
        }
        let mut except = Vec::new();
        if let Some(n) = f.get("except")
            && let Some(items) = self.nonempty_seq(n, "except", "")
        {
            for item in items {
                let Some(s) = self.string(item, "an exception") else {
                    continue;
                };
                let e = match s.value.as_str() {
                    "jp_holidays" => Some(Except::JpHolidays),
                    "year_end" => Some(Except::YearEnd),
                    other => {
                        match other.parse::<Date>() {
                            Ok(d) if other.len() == 10 => Some(Except::Date(d)),
                            _ => {
                                self.invalid(
                                s.pos,
                                format!("exception `{other}` is not jp_holidays, year_end or a date YYYY-MM-DD"),
                            );
                                None
                            }
                        }
                    }
                };
                if let Some(e) = e {
                    except.push(At::new(s.pos, e));
                }
            }
            let keys: Vec<(String, Pos)> = except.iter().map(|e| (e.value.to_string(), e.pos)).collect();
            self.no_duplicates(&keys, "exception");
        }
        Some(ScheduleDef { timezone, windows, except })
    }

    fn window(&mut self, node: &Node) -> Option<At<Window>> {
        let f = self.fields(node, "a window", &["days", "from", "to"])?;
        let mut days = Window::ALL_DAYS;
        if let Some(n) = f.get("days")
            && let Some(items) = self.nonempty_seq(n, "days", "; leave it out for every day")
        {
            days = 0;
            let mut keys = Vec::new();
            for item in items {
                let Some(s) = self.string(item, "a day") else {
                    continue;
                };
                let bits = match s.value.as_str() {
                    "weekdays" => 0b001_1111,
                    "weekend" => 0b110_0000,
                    d => match Window::DAY_NAMES.iter().position(|n| *n == d) {
                        Some(i) => 1 << i,
                        None => {
                            self.invalid(
                                s.pos,
                                format!("day `{d}` is not one of: mon, tue, wed, thu, fri, sat, sun, weekdays, weekend"),
                            );
                            continue;
                        }
                    },
                };
                days |= bits;
                keys.push((s.value, s.pos));
            }
            self.no_duplicates(&keys, "day");
        }
        let from = f.require(self, "from").and_then(|n| self.time_of_day(n, "from", false));
        let to = f.require(self, "to").and_then(|n| self.time_of_day(n, "to", true));
        let (from, to) = (from?, to?);
        if from == to {
            self.invalid(
                node.pos,
                "a window needs from ≠ to (for a whole day use from: \"00:00\", to: \"24:00\")".into(),
            );
            return None;
        }
        Some(At::new(node.pos, Window { days, from, to }))
    }

    /// `HH:MM` (24-hour) as minutes since midnight; `24:00` only as an end.
    fn time_of_day(&mut self, node: &Node, what: &str, end: bool) -> Option<u16> {
        let s = self.string(node, what)?;
        let parsed = s.value.split_once(':').and_then(|(h, m)| {
            let ok = (1..=2).contains(&h.len()) && m.len() == 2;
            let (h, m) = (h.parse::<u16>().ok()?, m.parse::<u16>().ok()?);
            (ok && m < 60 && (h < 24 || (end && h == 24 && m == 0))).then_some(h * 60 + m)
        });
        if parsed.is_none() {
            self.invalid(
                s.pos,
                format!(
                    "{what} `{}` is not a time HH:MM (00:00–23:59{})",
                    s.value,
                    if end { ", or 24:00" } else { "" }
                ),
            );
        }
        parsed
    }

    fn default(&mut self, node: &Node) -> Option<At<DefaultDef>> {
        let f = self.fields(node, "default", &["action", "severity"])?;
        let action = f
            .require(self, "action")
            .and_then(|n| self.keyword(n, "action", Action::NAMES, Action::from_name));
        let severity = f
            .require(self, "severity")
            .and_then(|n| self.keyword(n, "severity", Severity::NAMES, Severity::from_name));
        Some(At::new(node.pos, DefaultDef { action: action?, severity: severity? }))
    }
}

pub fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_NAME_LEN
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// An absolute path without `.`, `..`, empty components or a trailing `/` (a single
/// trailing `/` is accepted and dropped).
pub fn clean_path(p: &str) -> Result<String, &'static str> {
    if !p.starts_with('/') {
        return Err("must be an absolute path");
    }
    if p.contains('\0') {
        return Err("contains a NUL character");
    }
    let trimmed = if p.len() > 1 { p.strip_suffix('/').unwrap_or(p) } else { p };
    if trimmed.len() > 1 && trimmed[1..].split('/').any(|c| c.is_empty() || c == "." || c == "..") {
        return Err("must not contain `.`, `..` or `//`");
    }
    Ok(trimmed.to_owned())
}

/// Glob syntax, absolute, and a literal first component (the base directory).
pub fn check_glob(g: &str) -> Result<(), String> {
    if !g.starts_with('/') {
        return Err("must be absolute".into());
    }
    if glob_base(g) == "/" {
        return Err("needs a literal directory before the first wildcard (e.g. /srv/share/**/x.xlsx)".into());
    }
    globset::GlobBuilder::new(&display_glob(g))
        .literal_separator(true)
        .build()
        .map(|_| ())
        .map_err(|e| e.kind().to_string())
}

/// The globset pattern of a glob written over display forms (`crate::event::path`): the
/// escapes `\\` (a backslash in the name) and `\xNN` (a byte that is not UTF-8) match
/// themselves in the display form of a path; any other `\` escapes the next character.
pub fn display_glob(g: &str) -> String {
    let mut out = String::with_capacity(g.len() + 8);
    let mut chars = g.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.peek() {
            Some('\\') => {
                chars.next();
                out.push_str("\\\\\\\\");
            }
            Some('x') => out.push_str("\\\\"),
            _ => out.push('\\'),
        }
    }
    out
}

/// The directory part of a glob before its first component with a wildcard.
pub fn glob_base(g: &str) -> String {
    let mut base = String::new();
    let components: Vec<&str> = g.split('/').skip(1).collect();
    for (i, c) in components.iter().enumerate() {
        if i + 1 == components.len() || c.contains(['*', '?', '[', '{', '\\']) {
            break;
        }
        base.push('/');
        base.push_str(c);
    }
    if base.is_empty() { "/".to_owned() } else { base }
}

fn parse_sha256(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 || !s.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::{check_glob, clean_path, display_glob, document, glob_base};
    use crate::policy::{error::Diagnostics, model::Body, yaml};

    /// A glob written over display forms matches a Shift_JIS name and not one that differs in
    /// a byte that is not UTF-8; `\\` matches a backslash, other escapes keep their meaning.
    #[test]
    fn globs_match_display_forms_of_names_that_are_not_utf8() {
        use std::{ffi::OsStr, os::unix::ffi::OsStrExt as _};
        let matches = |glob: &str, name: &[u8]| {
            check_glob(glob).unwrap();
            let g = globset::GlobBuilder::new(&display_glob(glob)).literal_separator(true).build().unwrap();
            g.compile_matcher().is_match(crate::event::path::of_os(OsStr::from_bytes(name)))
        };
        // マイナンバー.csv in Shift_JIS, and the same with one byte changed.
        let sjis: &[u8] = b"/srv/d/\x83}\x83C\x83i\x83\x93\x83o\x81[.csv";
        let other: &[u8] = b"/srv/d/\x83}\x83C\x83i\x83\x94\x83o\x81[.csv";
        let glob = r"/srv/d/\x83\}\x83C\x83i\x83\x93\x83o\x81\[*";
        assert!(matches(glob, sjis));
        assert!(!matches(glob, other));
        assert!(matches("/srv/d/*.csv", sjis) && matches("/srv/**/*.csv", other));
        assert!(matches(r"/srv/d/a\\b*", b"/srv/d/a\\b.txt"));
        assert!(!matches(r"/srv/d/a\\b*", b"/srv/d/a\x5c\x5cb.txt"));
        assert!(matches(r"/srv/d/\*", b"/srv/d/*") && !matches(r"/srv/d/\*", b"/srv/d/x"));
        // ソ (`83 5C`): the second byte is a backslash.
        assert!(matches(r"/srv/d/\x83\\*", b"/srv/d/\x83\\.txt"));
    }

    fn errors(text: &str) -> Vec<String> {
        let mut diag = Diagnostics::default();
        for n in yaml::parse(text).unwrap() {
            document(Path::new("t.yaml"), &n, &mut diag);
        }
        diag.errors.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn paths_and_globs() {
        assert_eq!(clean_path("/srv/share/").unwrap(), "/srv/share");
        assert_eq!(clean_path("/").unwrap(), "/");
        assert!(clean_path("srv").is_err());
        assert!(clean_path("/srv/../etc").is_err());
        assert!(clean_path("/srv//x").is_err());
        assert_eq!(glob_base("/srv/share/**/マイナンバー*.xlsx"), "/srv/share");
        assert_eq!(glob_base("/srv/a*/b"), "/srv");
        assert_eq!(glob_base("/srv/x.txt"), "/srv");
    }

    #[test]
    fn every_error_of_a_document_is_reported() {
        let text = "\
apiVersion: mnsensor/v1
kind: AccessPolicy
metadata: {name: p1, colour: red}
spec:
  mode: enforcing
  protect:
    - path: relative/path
    - {path: /a, glob: /b/*}
  lists:
    staff: {users: [tanaka, tanaka], groupz: [x]}
  allow:
    - name: e1
      subjects: [staff, {user: 1050}]
      operations: [read, wirte]
      schedule:
        windows: [{days: [mon, funday], from: \"9:00\", to: \"25:00\"}]
        except: [jp_holidays, xmas]
    - name: e1
      subjects: []
  default: {action: deny}
";
        let errs = errors(text);
        let want = [
            "t.yaml:3:22: unknown key `colour` in metadata",
            "t.yaml:5:9: mode `enforcing` is not one of: audit, enforce",
            "t.yaml:7:13: path `relative/path`: must be an absolute path",
            "t.yaml:8:7: a protect entry has exactly one of `path` or `glob`",
            "t.yaml:10:38: unknown key `groupz` in list `staff`",
            "t.yaml:10:29: duplicate list member `tanaka` (first defined at line 10, column 21)",
            "t.yaml:13:32: user: expected a string, found an integer (put it in quotes)",
            "t.yaml:14:26: operation `wirte`",
            "t.yaml:16:32: day `funday`",
            "t.yaml:16:59: to `25:00` is not a time",
            "t.yaml:17:31: exception `xmas`",
            "t.yaml:19:17: subjects is empty",
            "t.yaml:18:13: duplicate allow entry `e1` (first defined at line 12, column 13)",
            "t.yaml:20:12: missing `severity` in default",
        ];
        for w in want {
            assert!(errs.iter().any(|e| e.starts_with(w)), "missing {w:?} in:\n{}", errs.join("\n"));
        }
        assert_eq!(errs.len(), want.len(), "{}", errs.join("\n"));
    }

    #[test]
    fn envelope_errors() {
        let errs = errors("apiVersion: mnsensor/v2\nkind: AccessPolicy\nmetadata: {name: x}\nspec: {}\n");
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(errs[0].starts_with("t.yaml:1:13: unsupported apiVersion"), "{errs:?}");
        let errs = errors("apiVersion: mnsensor/v1\nkind: Policy\nmetadata: {name: x}\nspec: {}\n");
        assert!(errs[0].contains("unknown kind `Policy`"), "{errs:?}");
        let errs = errors("- 1\n");
        assert!(errs[0].contains("expected a mapping"), "{errs:?}");
    }

    #[test]
    fn lists_document() {
        let mut diag = Diagnostics::default();
        let n = &yaml::parse(
            "apiVersion: mnsensor/v1\nkind: Lists\nmetadata: {name: shared}\nspec:\n  lists:\n    apps: {programs: [/usr/bin/cat, {path: /usr/bin/vi, sha256: \"00112233445566778899aabbccddeeff00112233445566778899AABBCCDDEEFF\"}]}\n    net: {networks: [192.168.0.0/16]}\n",
        )
        .unwrap()[0];
        let doc = document(Path::new("t.yaml"), n, &mut diag).unwrap();
        assert!(diag.errors.is_empty(), "{:?}", diag.errors);
        let Body::Lists(lists) = doc.body else { panic!() };
        assert_eq!(lists.len(), 2);
        assert_eq!(lists[0].programs[1].value.sha256.unwrap()[31], 0xff);
    }
}
