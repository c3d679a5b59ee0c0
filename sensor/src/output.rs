//! Outputs: JSON lines on stdout or appended to a file.
use std::{
    fs::{File, OpenOptions},
    io::{self, BufWriter, Stdout, Write as _},
    path::PathBuf,
};

/// An output that could not be opened or written.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// The spec is neither `stdout` nor `jsonl:PATH`.
    #[error("unknown output {0:?}: expected `stdout` or `jsonl:PATH`")]
    Spec(String),
    /// The file could not be opened.
    #[error("cannot open output file {path}: {source}")]
    Open { path: PathBuf, source: io::Error },
    /// A write or flush failed.
    #[error("cannot write to output {spec}: {source}")]
    Write { spec: String, source: io::Error },
}

enum Target {
    Stdout(BufWriter<Stdout>),
    File(BufWriter<File>),
}

/// One output.
pub struct Output {
    spec: String,
    target: Target,
}

impl Output {
    /// Opens an output from its spec.
    pub fn open(spec: &str) -> Result<Self, OutputError> {
        let target = if spec == "stdout" {
            Target::Stdout(BufWriter::with_capacity(1 << 16, io::stdout()))
        } else if let Some(path) = spec.strip_prefix("jsonl:").filter(|p| !p.is_empty()) {
            let path = PathBuf::from(path);
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(|source| OutputError::Open { path, source })?;
            Target::File(BufWriter::with_capacity(1 << 16, file))
        } else {
            return Err(OutputError::Spec(spec.to_owned()));
        };
        Ok(Self { spec: spec.to_owned(), target })
    }

    /// The spec this output was opened from.
    pub fn spec(&self) -> &str {
        &self.spec
    }

    /// Writes one line (buffered).
    pub fn write_line(&mut self, line: &str) -> Result<(), OutputError> {
        let w: &mut dyn io::Write = match &mut self.target {
            Target::Stdout(w) => w,
            Target::File(w) => w,
        };
        w.write_all(line.as_bytes())
            .and_then(|()| w.write_all(b"\n"))
            .map_err(|source| OutputError::Write { spec: self.spec.clone(), source })
    }

    /// Flushes buffered lines to the file or stdout.
    pub fn flush(&mut self) -> Result<(), OutputError> {
        let r = match &mut self.target {
            Target::Stdout(w) => w.flush(),
            Target::File(w) => w.flush(),
        };
        r.map_err(|source| OutputError::Write { spec: self.spec.clone(), source })
    }
}

#[cfg(test)]
mod tests {
    use super::Output;

    #[test]
    fn appends_lines_and_rejects_bad_specs() {
        let dir = std::env::temp_dir().join(format!("mnsensor-out-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("x.jsonl");
        std::fs::write(&path, "old\n").unwrap();
        let mut out = Output::open(&format!("jsonl:{}", path.display())).unwrap();
        out.write_line("{}").unwrap();
        out.flush().unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "old\n{}\n");
        assert!(Output::open("syslog").is_err());
        assert!(Output::open("jsonl:").is_err());
        let err = Output::open("jsonl:/nonexistent-dir/x.jsonl").err().unwrap().to_string();
        assert!(err.contains("/nonexistent-dir/x.jsonl"), "{err}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
