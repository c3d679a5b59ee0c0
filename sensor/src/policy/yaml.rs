//! YAML → a tree of nodes with their positions (serde-saphyr with hard limits), and the
//! canonical form of a node used for the policy-set hash.
//!
//! The policy schema is checked by hand over this tree (`parse.rs`) rather than by a
//! derived `Deserialize`, so that one file can report every error it has, each with its
//! own line and column, instead of stopping at the first.
use std::fmt::{self, Write as _};

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::{
    DuplicateKeyPolicy, MergeKeyPolicy, MessageFormatter as _, Options, Spanned, options::AliasLimits,
};

/// Most YAML documents (`---`) in one policy file.
pub const MAX_DOCUMENTS_PER_FILE: usize = 64;
/// Most alias uses (`*name`) in one file; anchors are allowed for sharing small values.
pub const MAX_ALIASES_PER_FILE: usize = 64;
/// Most nodes an alias may replay in one file: a billion-laughs document stops here.
pub const MAX_ALIAS_REPLAYED_EVENTS: usize = 10_000;
/// Deepest nesting of sequences and mappings.
pub const MAX_DEPTH: usize = 32;

/// A 1-based line and column (columns count characters, not bytes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pos {
    pub line: u64,
    pub column: u64,
}

impl Pos {
    /// The start of a file, for problems with the file as a whole.
    pub const START: Self = Self { line: 1, column: 1 };
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// A YAML value with the position where it is used (for an alias, the alias).
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub pos: Pos,
    pub value: Value,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    /// Entries in document order; duplicate keys are kept so that the schema check can
    /// report each of them.
    Map(Vec<(Node, Node)>),
}

impl Value {
    /// What kind of value this is, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Null => "nothing (null)",
            Self::Bool(_) => "a boolean",
            Self::Int(_) => "an integer",
            Self::Float(_) => "a number",
            Self::Str(_) => "a string",
            Self::Seq(_) => "a list",
            Self::Map(_) => "a mapping",
        }
    }
}

/// A syntax or limit error from the YAML parser.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct YamlError {
    pub pos: Pos,
    pub message: String,
}

/// Parses every document of `text`. Duplicate keys are kept (see [`Value::Map`]); merge
/// keys (`<<`) are refused; aliases, depth and size are limited.
pub fn parse(text: &str) -> Result<Vec<Node>, YamlError> {
    let nodes: Vec<Spanned<Value>> =
        serde_saphyr::from_str_multiple_with_options(text, options()).map_err(|e| {
            let pos =
                e.location().map_or(Pos::START, |l| Pos { line: l.line().max(1), column: l.column().max(1) });
            let raw = serde_saphyr::DefaultMessageFormatter.format_message(e.without_snippet());
            YamlError {
                pos,
                message: raw
                    .chars()
                    .map(|c| if c.is_control() { c.escape_debug().to_string() } else { c.to_string() })
                    .collect(),
            }
        })?;
    Ok(nodes.into_iter().map(node).collect())
}

fn options() -> Options {
    let mut aliases = AliasLimits::default();
    aliases.max_total_replayed_events = MAX_ALIAS_REPLAYED_EVENTS;
    aliases.max_replay_stack_depth = 8;
    aliases.max_alias_expansions_per_anchor = MAX_ALIASES_PER_FILE;
    serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_documents: MAX_DOCUMENTS_PER_FILE,
            max_aliases: MAX_ALIASES_PER_FILE,
            max_anchors: MAX_ALIASES_PER_FILE,
            max_depth: MAX_DEPTH,
            max_nodes: 200_000,
            max_events: 400_000,
            max_merge_keys: 0,
        },
        duplicate_keys: DuplicateKeyPolicy::PassThrough,
        merge_keys: MergeKeyPolicy::Error,
        alias_limits: aliases,
        strict_booleans: true,
        leading_zero_numbers_as_strings: true,
        reject_unsupported_tags: true,
        with_snippet: false,
    }
}

fn node(s: Spanned<Value>) -> Node {
    let l = s.referenced;
    Node { pos: Pos { line: l.line(), column: l.column() }, value: s.value }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Int(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Int(v.into()))
    }
    fn visit_i128<E>(self, v: i128) -> Result<Value, E> {
        Ok(Value::Int(v))
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Value, E> {
        i128::try_from(v).map(Value::Int).map_err(|_| E::custom("integer too large"))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::Str(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::Str(v))
    }
    fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<Value, E> {
        Err(E::custom("binary values are not allowed in policies"))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        Value::deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Spanned<Value>>()? {
            items.push(node(item));
        }
        Ok(Value::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut entries = Vec::new();
        while let Some((k, v)) = map.next_entry::<Spanned<Value>, Spanned<Value>>()? {
            entries.push((node(k), node(v)));
        }
        Ok(Value::Map(entries))
    }
}

/// The canonical text of a node: JSON with mapping keys sorted (byte order), no
/// whitespace. Comments, quoting, key order, anchors and layout do not change it.
pub fn canonical(node: &Node, out: &mut String) {
    match &node.value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Value::Float(f) => {
            let _ = write!(out, "{f:?}");
        }
        Value::Str(s) => push_json_string(s, out),
        Value::Seq(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(item, out);
            }
            out.push(']');
        }
        Value::Map(entries) => {
            let mut keyed: Vec<(String, &Node)> = entries
                .iter()
                .map(|(k, v)| {
                    let mut key = String::new();
                    canonical(k, &mut key);
                    (key, v)
                })
                .collect();
            keyed.sort_by(|a, b| a.0.cmp(&b.0));
            out.push('{');
            for (i, (k, v)) in keyed.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(k);
                out.push(':');
                canonical(v, out);
            }
            out.push('}');
        }
    }
}

fn push_json_string(s: &str, out: &mut String) {
    out.push_str(&serde_json::Value::from(s).to_string());
}

#[cfg(test)]
mod tests {
    use super::{Pos, Value, canonical, parse};

    fn canon(text: &str) -> String {
        let mut out = String::new();
        for n in parse(text).unwrap() {
            canonical(&n, &mut out);
            out.push('\n');
        }
        out
    }

    #[test]
    fn positions_and_duplicates_are_kept() {
        let docs = parse("a: 1\nb:\n  - x\n  - {c: d}\na: 2\n").unwrap();
        assert_eq!(docs.len(), 1);
        let Value::Map(entries) = &docs[0].value else { panic!("not a map: {:?}", docs[0]) };
        assert_eq!(entries.len(), 3, "duplicate key kept");
        assert_eq!(entries[0].0.pos, Pos { line: 1, column: 1 });
        assert_eq!(entries[2].0.pos, Pos { line: 5, column: 1 });
        let Value::Seq(items) = &entries[1].1.value else { panic!() };
        assert_eq!(items[1].pos.line, 4);
        assert_eq!(entries[0].1.value, Value::Int(1));
    }

    #[test]
    fn canonical_ignores_layout_comments_and_key_order() {
        let a = canon("# c\nb: [1, 'x']\na: {y: true, x: null}\n");
        let b = canon("a:\n  x: ~\n  y: true\nb:\n  - 1\n  - \"x\"   # comment\n");
        assert_eq!(a, b);
        assert_eq!(a, "{\"a\":{\"x\":null,\"y\":true},\"b\":[1,\"x\"]}\n");
        assert_ne!(a, canon("a: {y: true, x: null}\nb: [1, 'y']\n"));
    }

    #[test]
    fn alias_bombs_merge_keys_and_depth_are_refused() {
        let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let p = i - 1;
            bomb.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        let e = parse(&bomb).unwrap_err();
        // Refused where the replayed events first pass the limit of 10000: at `a3` (line 4),
        // whose aliases replay more than 10 × 10 × 10 × 10 events in all.
        assert!(e.message.contains("alias replay limit"), "{e:?}");
        assert_eq!(e.pos.line, 4, "{e:?}");
        let e = parse("base: &b {x: 1}\nother:\n  <<: *b\n").unwrap_err();
        assert!(e.message.to_lowercase().contains("merge"), "{e:?}");
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        assert!(parse(&deep).is_err());
        // Small anchors are fine.
        assert!(parse("a: &n tanaka\nb: *n\n").is_ok());
    }

    #[test]
    fn syntax_errors_have_positions() {
        let e = parse("a: 1\nb: [1, 2\nc: 3\n").unwrap_err();
        assert!(e.pos.line >= 2, "{e:?}");
    }
}
