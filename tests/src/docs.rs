//! Parsing of `docs/events.md`, the event schema.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::OnceLock,
};

/// The type column of the schema.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DocType {
    String,
    Number,
    Boolean,
    Strings,
    Numbers,
    Objects,
}

impl DocType {
    fn parse(cell: &str) -> Option<Self> {
        match cell {
            "string" => Some(Self::String),
            "number" => Some(Self::Number),
            "boolean" => Some(Self::Boolean),
            "array of strings" => Some(Self::Strings),
            "array of numbers" => Some(Self::Numbers),
            "array of objects" => Some(Self::Objects),
            _ => None,
        }
    }

    /// Whether a JSON value has this type.
    pub fn matches(self, v: &serde_json::Value) -> bool {
        use serde_json::Value;
        match (self, v) {
            (Self::String, Value::String(_)) | (Self::Number, Value::Number(_)) => true,
            (Self::Boolean, Value::Bool(_)) => true,
            (Self::Strings, Value::Array(a)) => a.iter().all(Value::is_string),
            (Self::Numbers, Value::Array(a)) => a.iter().all(Value::is_number),
            (Self::Objects, Value::Array(a)) => a.iter().all(Value::is_object),
            _ => false,
        }
    }
}

/// One row of a table in the schema: its backticked key and where it is.
#[derive(Clone, Debug)]
pub struct DocKey {
    pub key: String,
    /// The second column (`None` when it is not one of the four documented types).
    pub ty: Option<DocType>,
    /// The nearest heading above the table (without `#`s).
    pub section: String,
    /// 1-based line number in the file.
    pub line: usize,
}

/// The text of `docs/events.md`, embedded at build time so that the test binaries carry it
/// into the VM kernel matrix, where the workspace does not exist.
pub fn events_md() -> &'static str {
    include_str!("../../docs/events.md")
}

/// The first-column backticked keys of every markdown table row, in order (duplicates kept).
pub fn table_keys(md: &str) -> Vec<DocKey> {
    let mut section = String::new();
    let mut keys = Vec::new();
    for (i, line) in md.lines().enumerate() {
        let t = line.trim();
        if let Some(h) = t.strip_prefix('#') {
            section = h.trim_start_matches('#').trim().to_owned();
            continue;
        }
        if !t.starts_with('|') {
            continue;
        }
        let Some(first) = t.split('|').nth(1).map(str::trim) else {
            continue;
        };
        if first.len() >= 2 && first.starts_with('`') && first.ends_with('`') {
            let key = &first[1..first.len() - 1];
            assert!(
                !key.is_empty() && !key.contains('`'),
                "docs/events.md line {}: malformed key cell {first:?}",
                i + 1
            );
            let ty = t.split('|').nth(2).map(str::trim).and_then(DocType::parse);
            keys.push(DocKey { key: key.to_owned(), ty, section: section.clone(), line: i + 1 });
        }
    }
    keys
}

/// The documented keys (what an event may contain) with their types.
pub fn documented_keys() -> &'static BTreeMap<String, DocType> {
    static KEYS: OnceLock<BTreeMap<String, DocType>> = OnceLock::new();
    KEYS.get_or_init(|| {
        let keys: BTreeMap<String, DocType> = table_keys(events_md())
            .into_iter()
            .map(|k| {
                let ty =
                    k.ty.unwrap_or_else(|| panic!("docs/events.md line {}: `{}` has no type", k.line, k.key));
                (k.key, ty)
            })
            .collect();
        assert!(!keys.is_empty(), "no keys found in docs/events.md tables");
        keys
    })
}

/// Event names documented as `###` headings of the form ``### `a`, `b` ``, in order.
pub fn event_names(md: &str) -> Vec<String> {
    let mut names = Vec::new();
    for line in md.lines() {
        let Some(h) = line.strip_prefix("### ") else {
            continue;
        };
        for (i, part) in h.split('`').enumerate() {
            // Odd parts are inside backticks.
            if i % 2 == 1 && !part.is_empty() {
                names.push(part.to_owned());
            }
        }
    }
    names
}

/// The set of documented event names (what `event.name` may be).
pub fn documented_event_names() -> &'static BTreeSet<String> {
    static NAMES: OnceLock<BTreeSet<String>> = OnceLock::new();
    NAMES.get_or_init(|| event_names(events_md()).into_iter().collect())
}
