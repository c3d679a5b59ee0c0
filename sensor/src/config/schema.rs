//! Every problem of a configuration file at once, each with its line and column.
//!
//! The YAML goes through the policy loader's parser (`policy::yaml`: hard limits, duplicate
//! keys kept, positions on every node). The schema itself stays the derived `Deserialize` of
//! [`Config`]: each key is tried on its own (a configuration holding only that key, every
//! other key at its default), so one bad key does not hide the next; a key whose value is a
//! mapping of defaulted fields (`enforcement:`) is tried field by field. The keys that pass
//! are then read together and their ranges checked, each range error placed at its value.
use std::collections::HashMap;

use serde_json::{Map, Value as Json};

use super::{Config, Problem};
use crate::policy::{
    error::did_you_mean,
    yaml::{self, Node, Pos, Value},
};

/// Parses and checks `text`; all problems, sorted by position, when there is any.
pub fn parse(text: &str) -> Result<Config, Vec<Problem>> {
    let docs = yaml::parse(text)
        .map_err(|e| vec![Problem { pos: Some(e.pos), message: format!("YAML: {}", e.message) }])?;
    let mut problems = Vec::new();
    if let Some(extra) = docs.get(1) {
        problems.push(at(extra.pos, "a configuration file holds one YAML document".to_owned()));
    }
    let mut accepted = Json::Object(Map::new());
    let root = docs.first();
    match root {
        None | Some(Node { value: Value::Null, .. }) => {}
        Some(node @ Node { value: Value::Map(_), .. }) => {
            check_map(node, &mut Vec::new(), &mut accepted, &mut problems);
        }
        Some(Node { pos, value: other }) => problems.push(at(
            *pos,
            format!("the configuration must be a mapping of keys to values, found {}", other.kind()),
        )),
    }
    let config = match serde_json::from_value::<Config>(accepted) {
        Ok(c) => c,
        Err(e) => {
            // Each key passed alone; together they should too.
            problems.push(at(Pos::START, e.to_string()));
            return Err(problems);
        }
    };
    for (key, message) in config.range_problems() {
        let pos = root.and_then(|r| find(r, key)).map_or(Pos::START, |n| n.pos);
        problems.push(at(pos, format!("`{key}` {message}")));
    }
    if problems.is_empty() {
        Ok(config)
    } else {
        problems.sort_by_key(|p| p.pos);
        Err(problems)
    }
}

fn at(pos: Pos, message: String) -> Problem {
    Problem { pos: Some(pos), message }
}

/// Tries each entry of the mapping `node` (at key path `prefix`) alone; the good ones go
/// into `accepted`.
fn check_map(node: &Node, prefix: &mut Vec<String>, accepted: &mut Json, problems: &mut Vec<Problem>) {
    let Value::Map(entries) = &node.value else { return };
    let mut seen: HashMap<&str, Pos> = HashMap::new();
    for (k, v) in entries {
        let Value::Str(key) = &k.value else {
            problems.push(at(k.pos, format!("a key must be a string, found {}", k.value.kind())));
            continue;
        };
        if let Some(first) = seen.get(key.as_str()) {
            problems.push(at(k.pos, format!("duplicate key `{key}` (first at line {})", first.line)));
            continue;
        }
        seen.insert(key, k.pos);
        let dotted = dotted(prefix, key);
        let value = match to_json(v) {
            Ok(j) => j,
            Err((pos, message)) => {
                problems.push(at(pos, format!("`{dotted}`: {message}")));
                continue;
            }
        };
        let Err(e) = try_alone(prefix, key, value.clone()) else {
            insert(accepted, prefix, key, value);
            continue;
        };
        let message = e.to_string();
        if let Some((word, hint)) = unknown(&message, "unknown field `")
            && word == *key
        {
            let within =
                if prefix.is_empty() { String::new() } else { format!(" in `{}`", prefix.join(".")) };
            problems.push(at(k.pos, format!("unknown key `{key}`{within}{hint}")));
        } else if matches!(v.value, Value::Map(_)) && try_alone(prefix, key, Json::Object(Map::new())).is_ok()
        {
            prefix.push(key.clone());
            check_map(v, prefix, accepted, problems);
            prefix.pop();
        } else {
            let hint = unknown(&message, "unknown variant `").map(|(_, h)| h).unwrap_or_default();
            problems.push(at(v.pos, format!("`{dotted}`: {message}{hint}")));
        }
    }
}

fn dotted(prefix: &[String], key: &str) -> String {
    prefix.iter().map(String::as_str).chain([key]).collect::<Vec<_>>().join(".")
}

/// A configuration holding only `prefix.key: value`.
fn try_alone(prefix: &[String], key: &str, value: Json) -> Result<Config, serde_json::Error> {
    let mut probe = Json::Object(Map::new());
    insert(&mut probe, prefix, key, value);
    serde_json::from_value(probe)
}

fn insert(root: &mut Json, prefix: &[String], key: &str, value: Json) {
    let mut cur = root;
    for p in prefix {
        let Json::Object(map) = cur else { return };
        cur = map.entry(p.clone()).or_insert_with(|| Json::Object(Map::new()));
    }
    if let Json::Object(map) = cur {
        map.insert(key.to_owned(), value);
    }
}

/// For serde's "unknown field `x`, expected one of `a`, `b`" (or variant): the word and a
/// did-you-mean hint.
fn unknown(message: &str, prefix: &str) -> Option<(String, String)> {
    let rest = message.strip_prefix(prefix)?;
    let mut parts = rest.split('`');
    let word = parts.next()?.to_owned();
    let candidates: Vec<&str> = parts.skip(1).step_by(2).collect();
    let hint = did_you_mean(&word, candidates.iter().copied());
    Some((word, hint))
}

/// The node at a dotted key path.
fn find<'n>(node: &'n Node, dotted: &str) -> Option<&'n Node> {
    dotted.split('.').try_fold(node, |n, part| match &n.value {
        Value::Map(entries) => {
            entries.iter().find(|(k, _)| matches!(&k.value, Value::Str(s) if s == part)).map(|(_, v)| v)
        }
        _ => None,
    })
}

/// A YAML node as JSON, for the derived `Deserialize`.
fn to_json(node: &Node) -> Result<Json, (Pos, String)> {
    Ok(match &node.value {
        Value::Null => Json::Null,
        Value::Bool(b) => Json::Bool(*b),
        Value::Int(i) => {
            if let Ok(u) = u64::try_from(*i) {
                u.into()
            } else if let Ok(s) = i64::try_from(*i) {
                s.into()
            } else {
                return Err((node.pos, format!("integer {i} is too large")));
            }
        }
        Value::Float(f) => serde_json::Number::from_f64(*f)
            .map(Json::Number)
            .ok_or_else(|| (node.pos, format!("number {f} is not finite")))?,
        Value::Str(s) => Json::String(s.clone()),
        Value::Seq(items) => Json::Array(items.iter().map(to_json).collect::<Result<_, _>>()?),
        Value::Map(entries) => {
            let mut map = Map::new();
            for (k, v) in entries {
                let Value::Str(key) = &k.value else {
                    return Err((k.pos, format!("a key must be a string, found {}", k.value.kind())));
                };
                map.insert(key.clone(), to_json(v)?);
            }
            Json::Object(map)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::parse;
    use crate::config::Config;

    fn errors(text: &str) -> Vec<String> {
        parse(text)
            .unwrap_err()
            .into_iter()
            .map(|p| format!("{}: {}", p.pos.map(|p| p.to_string()).unwrap_or_default(), p.message))
            .collect()
    }

    #[test]
    fn every_error_is_reported_with_its_position() {
        let text = "protect: []\n\
                    ring_bufer_bytes: 4096\n\
                    drain_interval_ms: 0\n\
                    outputs: 3\n\
                    enforcement:\n  deadline_ms: 5\n  fail_mode: opne\n\
                    protect: [/x]\n";
        let e = errors(text);
        assert_eq!(e.len(), 6, "{e:#?}");
        assert!(
            e[0].starts_with("2:1: unknown key `ring_bufer_bytes`; did you mean `ring_buffer_bytes`?"),
            "{e:#?}"
        );
        assert!(e[1].starts_with("3:20: `drain_interval_ms` must be 1..=1000, got 0"), "{e:#?}");
        assert!(e[2].starts_with("4:10: `outputs`: invalid type"), "{e:#?}");
        assert!(e[3].starts_with("6:16: `enforcement.deadline_ms` must be 10..=10000"), "{e:#?}");
        assert!(e[4].starts_with("7:14: `enforcement.fail_mode`: unknown variant `opne`"), "{e:#?}");
        assert!(e[4].ends_with("did you mean `open`?"), "{e:#?}");
        assert!(e[5].starts_with("8:1: duplicate key `protect` (first at line 1)"), "{e:#?}");
    }

    #[test]
    fn good_text_and_empty_text() {
        let c = parse("ring_buffer_bytes: 16384\nenforcement: {fail_mode: closed}\n").unwrap();
        assert_eq!(c.ring_buffer_bytes, 16384);
        assert_eq!(c.enforcement.fail_mode, crate::config::FailMode::Closed);
        assert_eq!(c.enforcement.deadline_ms, Config::default().enforcement.deadline_ms);
        assert_eq!(parse("").unwrap(), Config::default());
        assert_eq!(parse("# only a comment\n").unwrap(), Config::default());
    }

    #[test]
    fn syntax_errors_and_other_shapes() {
        let e = errors("a: [1, 2\n");
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].contains("YAML"), "{e:?}");
        let e = errors("- 1\n- 2\n");
        assert!(e[0].starts_with("1:1: the configuration must be a mapping"), "{e:?}");
        let e = errors("enforcement: 3\nprotect: []\n---\nprotect: []\n");
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(e[0].starts_with("1:14: `enforcement`: invalid type"), "{e:?}");
        assert!(e[1].contains("one YAML document"), "{e:?}");
        let e = errors("enforcement: {deadlin_ms: 3}\n");
        assert!(
            e[0].contains("unknown key `deadlin_ms` in `enforcement`; did you mean `deadline_ms`?"),
            "{e:?}"
        );
    }

    #[test]
    fn config_round_trips_through_show() {
        let c = Config { ring_buffer_bytes: 1 << 14, ..Config::default() };
        assert_eq!(parse(&c.to_yaml()).unwrap(), c);
    }
}
