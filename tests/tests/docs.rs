//! The schema document itself: no duplicate keys, every key typed. The events and loss
//! counters are compared with the code, both ways, by `sensor/src/docs_contract.rs`.

use std::collections::BTreeMap;

use mnsensor_tests::docs::{events_md, table_keys};

#[test]
fn every_key_is_documented_once() {
    let keys = table_keys(events_md());
    assert!(keys.len() > 50, "only {} keys parsed from docs/events.md", keys.len());
    let mut seen: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for k in &keys {
        seen.entry(&k.key).or_default().push(format!("line {} ({})", k.line, k.section));
    }
    let dups: Vec<String> = seen
        .iter()
        .filter(|(_, at)| at.len() > 1)
        .map(|(k, at)| format!("`{k}` at {}", at.join(", ")))
        .collect();
    assert!(dups.is_empty(), "keys documented more than once in docs/events.md:\n{}", dups.join("\n"));
}

#[test]
fn every_key_has_one_of_the_documented_types() {
    let untyped: Vec<String> = table_keys(events_md())
        .into_iter()
        .filter(|k| k.ty.is_none())
        .map(|k| format!("`{}` at line {}", k.key, k.line))
        .collect();
    assert!(
        untyped.is_empty(),
        "keys whose type is not string/number/boolean/array of strings or numbers:\n{}",
        untyped.join("\n")
    );
}
