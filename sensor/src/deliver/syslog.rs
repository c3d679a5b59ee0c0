//! syslog exporter: RFC 5424 messages over TCP (`syslog+tcp://HOST:PORT`) or TLS
//! (`syslog+tls://HOST:PORT`, RFC 5425), framed by octet counting (`LEN SP MSG`).
//!
//! Each record is one message: `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID - JSON`, with
//! MSGID the event name and the record's JSON line as the message (docs/siem.md). syslog has
//! no acknowledgements: a batch counts as delivered once the kernel accepted all of it on a
//! connection the receiver had not closed; after a failure the driver resends the batch on a
//! new connection, and duplicates carry the same `mnsensor.seq`.
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Map, Value};
use tokio::io::AsyncWriteExt as _;

use super::{
    ExportError, Exporter, Sealed,
    net::{Connector, Io, Runtime, chain, peer_closed},
    severity::Level,
    tls::{TlsError, TlsFiles},
};
use crate::event::attr;

/// `syslog:` in the configuration file.
#[derive(Clone, Debug, Deserialize, serde::Serialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct SyslogConfig {
    /// APP-NAME of every message.
    pub app_name: String,
    /// Facility: `auth`, `authpriv`, `daemon`, `user`, `local0` … `local7`.
    pub facility: Facility,
    /// Time allowed for connecting and writing one batch, in milliseconds.
    pub timeout_ms: u64,
    /// Trust (`ca_file`, else the system store) and client certificate for `syslog+tls://`.
    pub tls: TlsFiles,
}

impl Default for SyslogConfig {
    fn default() -> Self {
        Self {
            app_name: "mnsensor".to_owned(),
            facility: Facility::Authpriv,
            timeout_ms: 10_000,
            tls: TlsFiles::default(),
        }
    }
}

/// syslog facilities a SIEM collector commonly filters on.
#[derive(Clone, Copy, Debug, Deserialize, serde::Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Facility {
    User,
    Daemon,
    Auth,
    Authpriv,
    Local0,
    Local1,
    Local2,
    Local3,
    Local4,
    Local5,
    Local6,
    Local7,
}

impl Facility {
    fn code(self) -> u8 {
        match self {
            Self::User => 1,
            Self::Daemon => 3,
            Self::Auth => 4,
            Self::Authpriv => 10,
            Self::Local0 => 16,
            Self::Local1 => 17,
            Self::Local2 => 18,
            Self::Local3 => 19,
            Self::Local4 => 20,
            Self::Local5 => 21,
            Self::Local6 => 22,
            Self::Local7 => 23,
        }
    }
}

/// A syslog output that cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum SyslogError {
    #[error("output {spec}: expected `syslog+tcp://HOST:PORT` or `syslog+tls://HOST:PORT`")]
    Spec { spec: String },
    #[error("output {spec}: {source}")]
    Tls { spec: String, source: TlsError },
    #[error("output {spec}: {source}")]
    Io { spec: String, source: std::io::Error },
}

/// The syslog exporter of one output.
pub struct Syslog {
    spec: String,
    config: SyslogConfig,
    connector: Connector,
    rt: Runtime,
    conn: Option<Box<dyn Io>>,
    procid: String,
}

impl Syslog {
    /// Sets up the output `spec` (it connects on the first batch).
    pub fn open(spec: &str, config: &SyslogConfig) -> Result<Self, SyslogError> {
        let bad = || SyslogError::Spec { spec: spec.to_owned() };
        let (tls, rest) = match spec.split_once("://") {
            Some(("syslog+tcp", rest)) => (false, rest),
            Some(("syslog+tls", rest)) => (true, rest),
            _ => return Err(bad()),
        };
        let (host, port) = rest.rsplit_once(':').ok_or_else(bad)?;
        let port: u16 = port.parse().map_err(|_| bad())?;
        if host.is_empty() {
            return Err(bad());
        }
        let tls = tls
            .then(|| config.tls.client_config(&[]))
            .transpose()
            .map_err(|source| SyslogError::Tls { spec: spec.to_owned(), source })?;
        let io = |source| SyslogError::Io { spec: spec.to_owned(), source };
        let timeout = Duration::from_millis(config.timeout_ms);
        let connector = Connector::new(host, port, tls, timeout).map_err(io)?;
        let rt = Runtime::new().map_err(io)?;
        Ok(Self {
            spec: spec.to_owned(),
            config: config.clone(),
            connector,
            rt,
            conn: None,
            procid: std::process::id().to_string(),
        })
    }
}

impl Exporter for Syslog {
    fn spec(&self) -> &str {
        &self.spec
    }

    fn send(&mut self, batch: &[Sealed]) -> Result<(), ExportError> {
        let mut frames = Vec::with_capacity(batch.iter().map(|r| r.line.len() + 128).sum());
        for rec in batch {
            let msg = message(rec, &self.config, &self.procid);
            frames.extend_from_slice(format!("{} ", msg.len()).as_bytes());
            frames.extend_from_slice(&msg);
        }
        self.rt.block_on(write(&mut self.conn, &self.connector, &frames))
    }

    fn reopen(&mut self) -> Result<(), ExportError> {
        self.conn = None;
        Ok(())
    }
}

/// Writes `frames` on the open connection, or a new one when there is none or the receiver
/// closed it; forgets the connection on failure.
async fn write(
    conn: &mut Option<Box<dyn Io>>,
    connector: &Connector,
    frames: &[u8],
) -> Result<(), ExportError> {
    let retry = |e: std::io::Error| ExportError::Retryable(format!("{}: {}", connector.addr, chain(&e)));
    if let Some(c) = conn.as_mut()
        && peer_closed(c).await
    {
        *conn = None;
    }
    let stream = match conn {
        Some(c) => c,
        None => conn.insert(connector.connect().await.map_err(retry)?),
    };
    let r = tokio::time::timeout(connector.timeout, async {
        stream.write_all(frames).await?;
        stream.flush().await
    })
    .await
    .unwrap_or_else(|_| Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "write timed out")));
    if let Err(e) = r {
        *conn = None;
        return Err(retry(e));
    }
    Ok(())
}

/// One RFC 5424 message (without the octet count).
pub fn message(rec: &Sealed, config: &SyslogConfig, procid: &str) -> Vec<u8> {
    let obj: Map<String, Value> = serde_json::from_slice(&rec.line).unwrap_or_default();
    let field = |k: &str| obj.get(k).and_then(Value::as_str);
    let name = field(attr::EVENT_NAME).unwrap_or("-");
    let level = Level::of(name, field(attr::DECISION));
    let pri = config.facility.code() * 8 + level.syslog();
    let host = header_field(field(attr::HOST_NAME).unwrap_or("-"), 255);
    let mut out = format!(
        "<{pri}>1 {} {host} {} {procid} {} - ",
        timestamp(rec.time_ns),
        header_field(&config.app_name, 48),
        header_field(name, 32)
    )
    .into_bytes();
    out.extend_from_slice(&rec.line);
    out
}

/// RFC 5424 TIMESTAMP: UTC with microseconds (the format allows at most six digits).
fn timestamp(time_ns: i128) -> String {
    let full = crate::event::time::rfc3339(time_ns);
    // `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ` → `YYYY-MM-DDTHH:MM:SS.uuuuuuZ`
    format!("{}Z", &full[..full.len() - 4])
}

/// A header field: printable US-ASCII without spaces, at most `max` characters, `-` if empty.
fn header_field(s: &str, max: usize) -> String {
    let f: String = s.chars().filter(|c| c.is_ascii_graphic()).take(max).collect();
    if f.is_empty() { "-".to_owned() } else { f }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_follow_rfc5424() {
        let line = br#"{"event.name":"policy.decision","time":"x","mnsensor.seq":3,"host.name":"fs 1","mnsensor.decision":"deny","file.path":"/srv/\u7d66.csv"}"#;
        let rec = Sealed { seq: 3, time_ns: 1_795_325_791_123_456_789, line: line.to_vec() };
        let msg = message(&rec, &SyslogConfig::default(), "77");
        let text = String::from_utf8(msg).unwrap();
        // authpriv (10) * 8 + warning (4)
        let head = "<84>1 2026-11-22T05:36:31.123456Z fs1 mnsensor 77 policy.decision - {";
        assert!(text.starts_with(head), "{text}");
        assert!(text.ends_with(std::str::from_utf8(line).unwrap()));
        assert!(Syslog::open("syslog://x:1", &SyslogConfig::default()).is_err());
        assert!(Syslog::open("syslog+tcp://x", &SyslogConfig::default()).is_err());
        assert!(Syslog::open("syslog+tcp://127.0.0.1:514", &SyslogConfig::default()).is_ok());
    }
}
