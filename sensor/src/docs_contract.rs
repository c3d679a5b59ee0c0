//! docs/events.md against the code, both ways: the events the daemon can write (every
//! `event::Name`, plus any `event.name`-like literal left in `sensor/src`) are exactly the
//! documented `###` events, and the loss counters (`Name::loss_key` of each kernel record
//! kind, plus the fanotify counter) are exactly the documented `mnsensor.loss.*` keys. The keys' types are
//! checked against the doc's type column on every record the integration tests read
//! (tests/src/event.rs).
use std::{collections::BTreeSet, fs, path::Path};

use sensor_common::event::Kind;

use crate::event::{Name, attr};

const EVENTS_MD: &str = include_str!("../../docs/events.md");
/// The families of `event.name` (docs/events.md, "Events").
const FAMILIES: [&str; 5] = ["process.", "file.", "network.", "policy.", "sensor."];

/// Event names documented as ``### `a`, `b` `` headings.
fn documented_events() -> BTreeSet<String> {
    EVENTS_MD
        .lines()
        .filter_map(|l| l.strip_prefix("### "))
        .flat_map(|h| h.split('`').skip(1).step_by(2).map(str::to_owned).collect::<Vec<_>>())
        .collect()
}

/// First-column keys of the doc's tables.
fn documented_keys() -> BTreeSet<String> {
    EVENTS_MD
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .map(str::to_owned)
        .collect()
}

/// Every string literal of the `.rs` files below `dir`, outside `#[cfg(test)]` modules
/// (everything after the first `#[cfg(test)]` of a file is left out).
fn literals(dir: &Path, out: &mut Vec<(String, String)>) {
    for entry in fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            literals(&path, out);
            continue;
        }
        if path.extension().is_none_or(|e| e != "rs") || path.ends_with("docs_contract.rs") {
            continue;
        }
        let text = fs::read_to_string(&path).unwrap();
        let code = text.split("#[cfg(test)]").next().unwrap_or("");
        for (i, part) in code.split('"').enumerate() {
            if i % 2 == 1 {
                out.push((part.to_owned(), path.display().to_string()));
            }
        }
    }
}

/// Event names in the code: literals of the event families that are not attribute keys
/// (docs/events.md's tables) or loss kinds.
fn code_events() -> BTreeSet<String> {
    let keys = documented_keys();
    let mut lits = Vec::new();
    literals(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &mut lits);
    // `file.change` names only the losses of kernel change records.
    let loss_kinds: BTreeSet<&str> = [Name::FileChange.as_str()].into();
    let named = Name::ALL.iter().filter(|n| **n != Name::FileChange).map(|n| n.as_str().to_owned());
    lits.into_iter()
        .map(|(l, _)| l)
        .filter(|l| FAMILIES.iter().any(|f| l.starts_with(f)))
        .filter(|l| l.bytes().all(|b| b.is_ascii_lowercase() || b == b'.' || b == b'_'))
        .filter(|l| !keys.contains(l) && !l.starts_with("mnsensor."))
        .filter(|l| !loss_kinds.contains(l.as_str()) || documented_events().contains(l))
        .chain(named)
        .collect()
}

#[test]
fn events_in_the_code_are_the_documented_events() {
    let code = code_events();
    let docs = documented_events();
    assert!(code.len() >= 20, "found only {} event names in sensor/src: {code:?}", code.len());
    let undocumented: Vec<_> = code.difference(&docs).collect();
    let unwritten: Vec<_> = docs.difference(&code).collect();
    assert!(undocumented.is_empty(), "events the code writes but docs/events.md lacks: {undocumented:?}");
    assert!(unwritten.is_empty(), "events docs/events.md lists but no code writes: {unwritten:?}");
}

#[test]
fn loss_counters_in_the_code_are_the_documented_ones() {
    // Every kernel record kind has its counter.
    let mut code: BTreeSet<String> =
        Kind::ALL.iter().map(|k| Name::of_kind(*k).loss_key().to_owned()).collect();
    code.extend(
        [attr::LOSS_FANOTIFY, attr::LOSS_COUNT, attr::LOSS_INTERVAL_START, attr::LOSS_INTERVAL_END]
            .map(str::to_owned),
    );
    let docs: BTreeSet<String> =
        documented_keys().into_iter().filter(|k| k.starts_with("mnsensor.loss.")).collect();
    assert_eq!(code, docs, "mnsensor.loss.* keys: code (left) and docs/events.md (right) differ");
}
