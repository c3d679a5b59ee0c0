//! One output record: an ordered list of flat attributes, written as one JSON line.
use serde_json::Value;

use super::attr;

/// A record ready for the outputs. Keys are the constants in [`attr`].
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    /// `event.name`.
    pub name: &'static str,
    /// Wall-clock time of the event, nanoseconds since the epoch.
    pub time_ns: i128,
    attrs: Vec<(&'static str, Value)>,
}

impl Record {
    /// A record with no attributes yet.
    pub fn new(name: &'static str, time_ns: i128) -> Self {
        Self { name, time_ns, attrs: Vec::with_capacity(24) }
    }

    /// Adds an attribute.
    pub fn set(&mut self, key: &'static str, value: impl Into<Value>) -> &mut Self {
        self.attrs.push((key, value.into()));
        self
    }

    /// Adds an attribute when there is a value.
    pub fn set_opt(&mut self, key: &'static str, value: Option<impl Into<Value>>) -> &mut Self {
        if let Some(v) = value {
            self.set(key, v);
        }
        self
    }

    /// Adds `key: true` when `flag` holds (quality flags are left out when false).
    pub fn flag(&mut self, key: &'static str, flag: bool) -> &mut Self {
        if flag {
            self.set(key, true);
        }
        self
    }

    /// The value of an attribute.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.attrs.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// The JSON line (without the newline) for this record with sequence number `seq`.
    pub fn to_json(&self, seq: u64, host: &str) -> String {
        let mut map = serde_json::Map::with_capacity(self.attrs.len() + 4);
        map.insert(attr::EVENT_NAME.into(), self.name.into());
        map.insert(attr::TIME.into(), super::time::rfc3339(self.time_ns).into());
        map.insert(attr::SEQ.into(), seq.into());
        map.insert(attr::HOST_NAME.into(), host.into());
        for (k, v) in &self.attrs {
            map.insert((*k).into(), v.clone());
        }
        Value::Object(map).to_string()
    }
}
