//! `mnsensor status`: the daemon keeps a [`Snapshot`] up to date (once a second from its
//! event loop) and answers each connection on a root-only unix socket (the socket 0600, its
//! directory created 0700) with the snapshot as one JSON line; the client prints it.
//!
//! Healthy means: state `ready` and the event loop updated the snapshot within the last
//! [`STALE_AFTER`]. The answering thread is not the event loop, so a stuck loop is reported
//! as unhealthy instead of hanging the client.
use std::{
    collections::BTreeMap,
    io::{self, BufRead as _, BufReader, Write as _},
    os::unix::{
        fs::{DirBuilderExt as _, PermissionsExt as _},
        net::{UnixListener, UnixStream},
    },
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};

/// The event loop is considered stuck when it has not updated the snapshot for this long.
pub const STALE_AFTER: Duration = Duration::from_secs(5);

/// What `mnsensor status` shows. Later parts add fields here (with `#[serde(default)]`, so
/// that an older client still reads a newer daemon), e.g. ledger and export lag.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Snapshot {
    pub version: String,
    pub pid: u32,
    /// `ready`, `reloading` or `stopping` (the socket exists once the sensor is ready).
    pub state: String,
    /// Filled in when answering: `ready` and updated within [`STALE_AFTER`].
    pub healthy: bool,
    /// Seconds since the daemon started (filled in when answering).
    pub uptime_s: u64,
    /// Milliseconds since the event loop last updated this snapshot (filled in when answering).
    pub updated_ms_ago: u64,
    pub kernel_release: String,
    pub config_source: String,
    /// Event family (`process`, `file`, `file_observer`, `file_change`, `network`) → backend.
    pub backends: BTreeMap<String, String>,
    /// Policy name → how it is enforced (`lsm`, `fanotify`, `audit`, `none`).
    pub policies: BTreeMap<String, String>,
    /// Hash of the policy set in force (`mnsensor.policy.hash`).
    pub policy_hash: String,
    pub policy_files: Vec<String>,
    pub counters: Counters,
    /// Configuration keys changed on disk that wait for a restart.
    pub restart_required: Vec<String>,
    /// Whether systemd's watchdog watches the event loop.
    pub watchdog: bool,
}

/// Running totals.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Counters {
    /// Kernel records consumed.
    pub events: u64,
    /// Kernel records lost (ring buffer full).
    pub lost: u64,
    /// Successful reloads (SIGHUP or a changed policy file).
    pub reloads: u64,
    pub reload_errors: u64,
}

/// Why the status socket could not be set up or asked.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error("another mnsensor answers on {0}; stop it first or choose another --status-socket")]
    InUse(PathBuf),
    #[error("cannot set up the status socket {path}: {source}")]
    Setup { path: PathBuf, source: io::Error },
    #[error("mnsensor is not running, or still starting (cannot connect to {path}: {source})")]
    NotRunning { path: PathBuf, source: io::Error },
    #[error("bad answer from {path}: {message}")]
    Answer { path: PathBuf, message: String },
}

/// The shared snapshot and when it was last touched.
#[derive(Debug)]
struct Shared {
    snapshot: Snapshot,
    updated: Instant,
}

/// The daemon's side: owns the socket file (removed on drop).
#[derive(Debug)]
pub struct StatusServer {
    shared: Arc<Mutex<Shared>>,
    path: PathBuf,
}

impl StatusServer {
    /// Binds `path` (0600; its directory is created 0700 when missing) and answers from a
    /// thread of its own.
    pub fn bind(path: &Path, snapshot: Snapshot) -> Result<Self, StatusError> {
        let setup = |source| StatusError::Setup { path: path.to_owned(), source };
        if let Some(dir) = path.parent()
            && !dir.exists()
        {
            std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(setup)?;
        }
        if UnixStream::connect(path).is_ok() {
            return Err(StatusError::InUse(path.to_owned()));
        }
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(setup(e)),
        }
        let listener = UnixListener::bind(path).map_err(setup)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(setup)?;
        let shared = Arc::new(Mutex::new(Shared { snapshot, updated: Instant::now() }));
        let started = Instant::now();
        let answering = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("status".into())
            .spawn(move || {
                for conn in listener.incoming().flatten() {
                    let snap = current(&answering, started);
                    let _ = conn.set_write_timeout(Some(Duration::from_secs(1)));
                    let mut line = serde_json::to_vec(&snap).unwrap_or_default();
                    line.push(b'\n');
                    let _ = (&conn).write_all(&line);
                }
            })
            .map_err(setup)?;
        Ok(Self { shared, path: path.to_owned() })
    }

    /// Changes the snapshot (and marks the event loop alive).
    pub fn update(&self, f: impl FnOnce(&mut Snapshot)) {
        let mut s = self.shared.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut s.snapshot);
        s.updated = Instant::now();
    }
}

impl Drop for StatusServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn current(shared: &Mutex<Shared>, started: Instant) -> Snapshot {
    let s = shared.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut snap = s.snapshot.clone();
    let age = s.updated.elapsed();
    snap.uptime_s = started.elapsed().as_secs();
    snap.updated_ms_ago = age.as_millis() as u64;
    snap.healthy = snap.state == "ready" && age < STALE_AFTER;
    snap
}

/// Asks the daemon at `path`.
pub fn query(path: &Path) -> Result<Snapshot, StatusError> {
    let conn = UnixStream::connect(path)
        .map_err(|source| StatusError::NotRunning { path: path.to_owned(), source })?;
    let answer = |message: String| StatusError::Answer { path: path.to_owned(), message };
    conn.set_read_timeout(Some(Duration::from_secs(5))).map_err(|e| answer(e.to_string()))?;
    let mut line = String::new();
    BufReader::new(conn).read_line(&mut line).map_err(|e| answer(e.to_string()))?;
    serde_json::from_str(&line).map_err(|e| answer(e.to_string()))
}

/// The human-readable form.
pub fn render(s: &Snapshot) -> String {
    let mut out = format!(
        "mnsensor {} (pid {}): {}, {}\n",
        s.version,
        s.pid,
        s.state,
        if s.healthy { "healthy" } else { "NOT healthy" }
    );
    let mut line = |k: &str, v: String| out.push_str(&format!("  {k:<15} {v}\n"));
    line("uptime", format!("{}s (event loop seen {} ms ago)", s.uptime_s, s.updated_ms_ago));
    line("kernel", s.kernel_release.clone());
    line("config", s.config_source.clone());
    line("watchdog", if s.watchdog { "on" } else { "off" }.to_owned());
    for (family, backend) in &s.backends {
        line(&format!("backend {family}"), backend.clone());
    }
    line("policy hash", s.policy_hash.clone());
    line("policy files", s.policy_files.join(", "));
    for (name, backend) in &s.policies {
        line(&format!("policy {name}"), backend.clone());
    }
    let c = &s.counters;
    line("events", format!("{} consumed, {} lost", c.events, c.lost));
    line("reloads", format!("{} ok, {} failed", c.reloads, c.reload_errors));
    if !s.restart_required.is_empty() {
        line("restart needed", s.restart_required.join(", "));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{Snapshot, StatusServer, query};

    #[test]
    fn serves_the_snapshot_on_a_private_socket() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = std::env::temp_dir().join(format!("mnsensor-status-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("run/status.sock");
        let server =
            StatusServer::bind(&path, Snapshot { state: "starting".into(), ..Snapshot::default() }).unwrap();
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        assert!(!query(&path).unwrap().healthy, "starting is not healthy");
        server.update(|s| {
            s.state = "ready".into();
            s.counters.events = 7;
        });
        let snap = query(&path).unwrap();
        assert!(snap.healthy && snap.counters.events == 7, "{snap:?}");
        assert!(StatusServer::bind(&path, Snapshot::default()).is_err(), "second daemon on the same socket");
        drop(server);
        assert!(query(&path).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
