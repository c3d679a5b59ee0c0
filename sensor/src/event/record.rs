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

    /// Adds an attribute (replacing an earlier value of the same key).
    pub fn set(&mut self, key: &'static str, value: impl Into<Value>) -> &mut Self {
        let value = value.into();
        match self.attrs.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => self.attrs.push((key, value)),
        }
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
    /// Written directly (no intermediate map): this runs once per record.
    pub fn to_json(&self, seq: u64, host: &str) -> String {
        let mut out = Vec::with_capacity(256 + 48 * self.attrs.len());
        out.push(b'{');
        let time = super::time::rfc3339(self.time_ns);
        let head: [(&str, Value); 4] = [
            (attr::EVENT_NAME, self.name.into()),
            (attr::TIME, time.into()),
            (attr::SEQ, seq.into()),
            (attr::HOST_NAME, host.into()),
        ];
        let pairs = head.iter().map(|(k, v)| (*k, v)).chain(self.attrs.iter().map(|(k, v)| (*k, v)));
        for (i, (k, v)) in pairs.enumerate() {
            if i > 0 {
                out.push(b',');
            }
            // Keys are constants without characters that need escaping (`attr` tests this).
            out.push(b'"');
            out.extend_from_slice(k.as_bytes());
            out.extend_from_slice(b"\":");
            // Writing into a Vec cannot fail, and a Value always serialises.
            let _ = serde_json::to_writer(&mut out, v);
        }
        out.push(b'}');
        String::from_utf8(out).unwrap_or_default()
    }
}
