//! The schema document itself: no duplicate keys, every event of the contract documented.

use std::collections::BTreeMap;

use mnsensor_tests::{
    docs::{event_names, events_md, table_keys},
    event::{ALL_EVENTS, KERNEL_EVENTS},
};

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
fn every_event_name_is_documented() {
    let names = event_names(events_md());
    for name in ALL_EVENTS {
        assert!(
            names.iter().any(|n| n == name),
            "event {name:?} has no `###` section in docs/events.md (found {names:?})"
        );
    }
}

#[test]
fn every_kernel_event_has_a_loss_counter_and_base_keys_exist() {
    let keys: Vec<String> = table_keys(events_md()).into_iter().map(|k| k.key).collect();
    let mut want: Vec<String> = KERNEL_EVENTS.iter().map(|k| format!("mnsensor.loss.{k}")).collect();
    want.extend(
        [
            "event.name",
            "time",
            "mnsensor.seq",
            "mnsensor.loss.count",
            "mnsensor.bpf.program_ids",
            "mnsensor.stop.reason",
        ]
        .map(str::to_owned),
    );
    for k in want {
        assert!(keys.contains(&k), "docs/events.md does not document `{k}`");
    }
}
