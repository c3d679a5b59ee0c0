//! `stdout`: JSON lines on standard output.
use std::io::Write as _;

use super::{ExportError, Exporter, Sealed};

/// The `stdout` output.
pub struct Stdout {
    buf: Vec<u8>,
}

impl Stdout {
    pub fn new() -> Self {
        Self { buf: Vec::with_capacity(1 << 16) }
    }
}

impl Default for Stdout {
    fn default() -> Self {
        Self::new()
    }
}

impl Exporter for Stdout {
    fn spec(&self) -> &str {
        "stdout"
    }

    fn send(&mut self, batch: &[Sealed]) -> Result<(), ExportError> {
        self.buf.clear();
        for r in batch {
            self.buf.extend_from_slice(&r.line);
            self.buf.push(b'\n');
        }
        let mut out = std::io::stdout().lock();
        out.write_all(&self.buf)
            .and_then(|()| out.flush())
            .map_err(|e| ExportError::Retryable(format!("stdout: {e}")))
    }
}
