//! Delivery: exporters that send sealed records to their receivers.
//!
//! Minimal copy of the shared contract (the "seal" branch owns this file and adds the
//! driver, cursors and the factory); the OTLP and syslog exporters live in submodules.
pub mod net;
pub mod otlp;
pub mod severity;
pub mod syslog;
pub mod tls;

/// One sealed record as the ledger holds it: sequence number and the JSON object (no newline),
/// already redacted and hash-chained.
#[derive(Clone, Debug)]
pub struct Sealed {
    pub seq: u64,
    pub time_ns: i128,
    pub line: Vec<u8>,
}

/// Why an exporter could not deliver a batch.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Try again later (receiver down, timeout, TLS handshake failure, 429/503, UNAVAILABLE...).
    #[error("{0}")]
    Retryable(String),
    /// This batch can never be accepted as it is (e.g. HTTP 400): the driver records the
    /// sequence range it skips in a `sensor.alert` and moves on.
    #[error("{0}")]
    Permanent(String),
}

/// One output: it receives batches of sealed records in sequence order from its own thread.
pub trait Exporter: Send {
    /// The spec it was created from (`stdout`, `jsonl:PATH`, `otlp+grpc://…`, `syslog+tls://…`).
    fn spec(&self) -> &str;
    /// Delivers a batch; Ok means every record in it was accepted by the receiver.
    fn send(&mut self, batch: &[Sealed]) -> Result<(), ExportError>;
    /// SIGHUP: reopen files / reconnect. Default: nothing.
    fn reopen(&mut self) -> Result<(), ExportError> {
        Ok(())
    }
}
