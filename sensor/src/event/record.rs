//! One output record, as the seal stage receives it: its name, its time and its attributes
//! already written as JSON (the encoding view of an [`super::Event`]). The seal stage adds the
//! sequence number and the host with [`Record::encode`] / [`Record::to_json`].
use super::{Name, attr, json, time};

/// A record ready for the seal stage. Keys are the constants in [`attr`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// `event.name`.
    pub name: &'static str,
    /// Wall-clock time of the event, nanoseconds since the epoch.
    pub time_ns: i128,
    /// The attributes after the four leading ones, as `"key":value` pairs separated by commas.
    body: Vec<u8>,
}

impl Record {
    /// A record with no attributes yet.
    pub fn new(name: Name, time_ns: i128) -> Self {
        Self { name: name.as_str(), time_ns, body: Vec::with_capacity(512) }
    }

    /// Empties the record for reuse as `name` at `time_ns` (keeps the buffer).
    pub fn reset(&mut self, name: Name, time_ns: i128) {
        self.name = name.as_str();
        self.time_ns = time_ns;
        self.body.clear();
    }

    /// The attribute bytes, for the writers in this module's siblings.
    pub(crate) fn body(&mut self) -> &mut Vec<u8> {
        &mut self.body
    }

    /// Adds an attribute. Each key is written once per record.
    pub fn set<V: json::Value>(&mut self, key: &'static str, value: V) -> &mut Self {
        json::pair(&mut self.body, key, &value);
        self
    }

    /// Adds an attribute when there is a value.
    pub fn set_opt<V: json::Value>(&mut self, key: &'static str, value: Option<V>) -> &mut Self {
        json::opt(&mut self.body, key, value);
        self
    }

    /// Adds `key: true` when `flag` holds (quality flags are left out when false).
    pub fn flag(&mut self, key: &'static str, flag: bool) -> &mut Self {
        json::flag(&mut self.body, key, flag);
        self
    }

    /// Appends the JSON line (without the newline) for this record with sequence number
    /// `seq` to `out`.
    pub fn encode(&self, seq: u64, host: &str, out: &mut Vec<u8>) {
        out.reserve(96 + host.len() + self.body.len());
        out.extend_from_slice(b"{\"");
        out.extend_from_slice(attr::EVENT_NAME.as_bytes());
        out.extend_from_slice(b"\":");
        json::string(out, self.name);
        json::key(out, attr::TIME);
        out.push(b'"');
        time::write_rfc3339(out, self.time_ns);
        out.push(b'"');
        json::pair(out, attr::SEQ, &seq);
        json::pair(out, attr::HOST_NAME, host);
        if !self.body.is_empty() {
            out.push(b',');
            out.extend_from_slice(&self.body);
        }
        out.push(b'}');
    }

    /// The JSON line (without the newline) for this record with sequence number `seq`: a thin
    /// wrapper over [`Self::encode`].
    pub fn to_json(&self, seq: u64, host: &str) -> String {
        let mut out = Vec::new();
        self.encode(seq, host, &mut out);
        // The writers only write valid UTF-8 (strings come from `&str`).
        String::from_utf8(out).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::{Name, Record};

    #[test]
    fn encodes_a_json_object() {
        let mut rec = Record::new(Name::SensorStop, 1_000_000_000);
        rec.set("mnsensor.stop.reason", "SIG\"TERM").set_opt::<u64>("x", None).flag("y", true);
        let line = rec.to_json(7, "host");
        assert_eq!(
            line,
            r#"{"event.name":"sensor.stop","time":"1970-01-01T00:00:01.000000000Z","mnsensor.seq":7,"host.name":"host","mnsensor.stop.reason":"SIG\"TERM","y":true}"#
        );
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["mnsensor.seq"], 7);
    }
}
