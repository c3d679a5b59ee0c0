//! Accessors for records and the schema check every record read goes through.

use serde_json::Value;

use crate::docs::documented_keys;

/// A record on one line (for messages).
pub fn show(ev: &Value) -> String {
    serde_json::to_string(ev).unwrap_or_else(|_| format!("{ev:?}"))
}

/// `event.name` of a record ("" when missing).
pub fn name(ev: &Value) -> &str {
    ev.get("event.name").and_then(Value::as_str).unwrap_or("")
}

/// Whether the record is a `name` event.
pub fn is(ev: &Value, name: &str) -> bool {
    self::name(ev) == name
}

/// Whether the record came from the kernel-to-daemon ring buffer (what
/// `mnsensor.events.delivered` counts): not the sensor's own `sensor.*` records (but
/// the `sensor.tamper` kinds the kernel reports; `file` comes from fanotify and the
/// self-inventory kinds from the daemon), not records of the fanotify observer or the startup
/// `/proc` scan (`mnsensor.observed_by`), and not the `file.close` records the daemon writes
/// for files still open when it stops.
pub fn from_ring(ev: &Value) -> bool {
    const KERNEL_TAMPER: [&str; 5] = ["signal", "ptrace", "process_vm_read", "process_vm_write", "bpf"];
    let kind = ev.get("mnsensor.tamper.kind").and_then(Value::as_str).unwrap_or("");
    (!name(ev).starts_with("sensor.") || (name(ev) == "sensor.tamper" && KERNEL_TAMPER.contains(&kind)))
        && !has(ev, "mnsensor.observed_by")
        && ev.get("mnsensor.close.reason").and_then(Value::as_str) != Some("sensor_stop")
}

/// Whether the record has the key.
pub fn has(ev: &Value, key: &str) -> bool {
    ev.get(key).is_some()
}

/// `process.pid` of the record, if any.
pub fn pid_of(ev: &Value) -> Option<u32> {
    ev.get("process.pid").and_then(Value::as_u64).and_then(|p| u32::try_from(p).ok())
}

/// A string attribute; panics (showing the record) if missing or not a string.
pub fn get_str<'a>(ev: &'a Value, key: &str) -> &'a str {
    ev.get(key)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("record has no string {key:?}: {}", show(ev)))
}

/// A non-negative integer attribute; panics (showing the record) if missing or not one.
pub fn get_u64(ev: &Value, key: &str) -> u64 {
    ev.get(key)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("record has no unsigned number {key:?}: {}", show(ev)))
}

/// A boolean attribute, `None` when absent; panics if present but not a boolean.
pub fn get_bool(ev: &Value, key: &str) -> Option<bool> {
    ev.get(key).map(|v| v.as_bool().unwrap_or_else(|| panic!("{key:?} is not a boolean: {}", show(ev))))
}

/// An array-of-strings attribute; panics (showing the record) if missing or not one.
pub fn get_str_array(ev: &Value, key: &str) -> Vec<String> {
    let arr = ev
        .get(key)
        .and_then(Value::as_array)
        .unwrap_or_else(|| panic!("record has no array {key:?}: {}", show(ev)));
    arr.iter()
        .map(|v| {
            v.as_str().unwrap_or_else(|| panic!("{key:?} has a non-string element: {}", show(ev))).to_owned()
        })
        .collect()
}

/// Whether any string value of the record (or string in an array) contains `needle`.
pub fn mentions(ev: &Value, needle: &str) -> bool {
    fn walk(v: &Value, needle: &str) -> bool {
        match v {
            Value::String(s) => s.contains(needle),
            Value::Array(a) => a.iter().any(|v| walk(v, needle)),
            Value::Object(o) => o.values().any(|v| walk(v, needle)),
            _ => false,
        }
    }
    walk(ev, needle)
}

/// Whether `s` is RFC 3339 UTC with nanoseconds: `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`.
pub fn is_rfc3339_nanos(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 30 {
        return false;
    }
    b.iter().enumerate().all(|(i, &c)| match i {
        4 | 7 => c == b'-',
        10 => c == b'T',
        13 | 16 => c == b':',
        19 => c == b'.',
        29 => c == b'Z',
        _ => c.is_ascii_digit(),
    })
}

/// Checks one record against the schema; returns its `mnsensor.seq`. Panics naming the line.
///
/// * it is a JSON object with flat keys, every key documented in `docs/events.md`;
/// * values are strings, numbers, booleans or arrays of those (never `null`);
/// * `event.name` (a contract event name), `time` (RFC 3339 UTC ns) and `mnsensor.seq`
///   are present.
pub fn check_record(ev: &Value, line_no: usize, line: &str) -> u64 {
    let ctx = || format!("events line {line_no}: {line}");
    let obj = ev.as_object().unwrap_or_else(|| panic!("not a JSON object: {}", ctx()));
    let documented = documented_keys();
    let undocumented: Vec<&String> = obj.keys().filter(|k| !documented.contains_key(*k)).collect();
    assert!(undocumented.is_empty(), "undocumented keys {undocumented:?} (not in docs/events.md): {}", ctx());
    for (k, v) in obj {
        let ty = documented[k];
        assert!(ty.matches(v), "key {k:?} is documented as {ty:?} but holds {v}: {}", ctx());
    }
    let host = obj.get("host.name").and_then(Value::as_str).unwrap_or("");
    assert!(!host.is_empty(), "no host.name: {}", ctx());
    let name = obj
        .get("event.name")
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no string event.name: {}", ctx()));
    assert!(
        crate::docs::documented_event_names().contains(name),
        "event.name {name:?} is not documented in docs/events.md: {}",
        ctx()
    );
    let time = obj.get("time").and_then(Value::as_str).unwrap_or_else(|| panic!("no string time: {}", ctx()));
    assert!(is_rfc3339_nanos(time), "time {time:?} is not RFC 3339 UTC with nanoseconds: {}", ctx());
    obj.get("mnsensor.seq")
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("no unsigned mnsensor.seq: {}", ctx()))
}
