//! systemd's notify protocol (sd_notify(3)), by hand: one datagram per state change to the
//! unix socket named by `$NOTIFY_SOCKET` (a path, or `@name` in the abstract namespace).
//! Without `$NOTIFY_SOCKET` (not started by systemd with `Type=notify`) nothing is sent.
//!
//! `WATCHDOG=1` is sent at most every half of `$WATCHDOG_USEC` (when `$WATCHDOG_PID` is
//! unset or ours), and only when [`Notifier::watchdog`] is called, which the daemon does
//! from its event loop: a consumer that stops turning stops the pings, and systemd restarts
//! the service.
//!
//! Test-only: when `$MNSENSOR_TEST_STALL_FILE` names a file that exists, `watchdog()`
//! blocks (the event loop stalls on purpose) until the file is removed. Nothing sets it in
//! production; `tests/tests/service.rs` uses it to show that a stuck loop stops the pings.
use std::{
    os::unix::net::{SocketAddr, UnixDatagram},
    path::PathBuf,
    time::{Duration, Instant},
};

/// Sends notify states; a no-op without `$NOTIFY_SOCKET`.
#[derive(Debug)]
pub struct Notifier {
    target: Option<(UnixDatagram, SocketAddr)>,
    /// Half of `$WATCHDOG_USEC`.
    ping_every: Option<Duration>,
    last_ping: Option<Instant>,
    stall_file: Option<PathBuf>,
}

impl Notifier {
    /// Reads `$NOTIFY_SOCKET`, `$WATCHDOG_USEC` and `$WATCHDOG_PID`.
    pub fn from_env() -> Self {
        let target = std::env::var_os("NOTIFY_SOCKET").and_then(|s| {
            let s = s.to_string_lossy().into_owned();
            let addr = match s.strip_prefix('@') {
                Some(name) => {
                    use std::os::linux::net::SocketAddrExt as _;
                    SocketAddr::from_abstract_name(name.as_bytes())
                }
                None => SocketAddr::from_pathname(&s),
            };
            match (UnixDatagram::unbound(), addr) {
                (Ok(sock), Ok(addr)) => Some((sock, addr)),
                (Err(e), _) | (_, Err(e)) => {
                    tracing::warn!(socket = s, error = %e, "Cannot use NOTIFY_SOCKET; systemd gets no notifications.");
                    None
                }
            }
        });
        let ours = std::env::var("WATCHDOG_PID")
            .ok()
            .and_then(|p| p.parse::<u32>().ok())
            .is_none_or(|p| p == std::process::id());
        let ping_every = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|u| u.parse::<u64>().ok())
            .filter(|&u| u > 0 && ours)
            .map(|u| Duration::from_micros(u / 2));
        let stall_file = std::env::var_os("MNSENSOR_TEST_STALL_FILE").map(PathBuf::from);
        Self { target, ping_every, last_ping: None, stall_file }
    }

    /// Sends `state` (newline-separated `KEY=value` assignments). Failures are logged once
    /// at debug level: systemd going away must not stop the sensor.
    pub fn send(&self, state: &str) {
        if let Some((sock, addr)) = &self.target
            && let Err(e) = sock.send_to_addr(state.as_bytes(), addr)
        {
            tracing::debug!(error = %e, "sd_notify failed.");
        }
    }

    /// `READY=1` with a status line.
    pub fn ready(&self, status: &str) {
        self.send(&format!("READY=1\nSTATUS={status}"));
    }

    /// `RELOADING=1` with `MONOTONIC_USEC` (systemd ≥ 253 needs it to match the reload).
    pub fn reloading(&self) {
        self.send(&format!("RELOADING=1\nMONOTONIC_USEC={}\nSTATUS=Reloading", monotonic_usec()));
    }

    /// `STOPPING=1`.
    pub fn stopping(&self) {
        self.send("STOPPING=1\nSTATUS=Stopping");
    }

    /// `STATUS=…`.
    pub fn status(&self, status: &str) {
        self.send(&format!("STATUS={status}"));
    }

    /// `WATCHDOG=1` when half the watchdog period has passed since the last ping. Call it
    /// from the event loop only.
    pub fn watchdog(&mut self) {
        self.stall_for_tests();
        let Some(every) = self.ping_every else { return };
        let now = Instant::now();
        if self.last_ping.is_none_or(|t| now.duration_since(t) >= every) {
            self.last_ping = Some(now);
            self.send("WATCHDOG=1");
        }
    }

    /// Whether systemd watches this process (`$WATCHDOG_USEC`).
    pub fn watchdog_enabled(&self) -> bool {
        self.ping_every.is_some()
    }

    fn stall_for_tests(&self) {
        let Some(file) = &self.stall_file else { return };
        if file.exists() {
            tracing::warn!(file = %file.display(), "Event loop stalled on purpose (MNSENSOR_TEST_STALL_FILE).");
            while file.exists() {
                std::thread::sleep(Duration::from_millis(50));
            }
            tracing::warn!("Event loop resumed.");
        }
    }
}

/// CLOCK_MONOTONIC in microseconds.
pub fn monotonic_usec() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec into the valid pointer it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1_000
}

#[cfg(test)]
mod tests {
    use std::{os::unix::net::UnixDatagram, time::Duration};

    use super::Notifier;

    #[test]
    fn sends_states_and_rate_limits_the_watchdog() {
        let dir = std::env::temp_dir().join(format!("mnsensor-notify-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify.sock");
        let server = UnixDatagram::bind(&path).unwrap();
        server.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut n = Notifier {
            target: Some((
                UnixDatagram::unbound().unwrap(),
                std::os::unix::net::SocketAddr::from_pathname(&path).unwrap(),
            )),
            ping_every: Some(Duration::from_secs(60)),
            last_ping: None,
            stall_file: None,
        };
        let mut buf = [0u8; 256];
        let mut recv = || {
            let len = server.recv(&mut buf).unwrap();
            String::from_utf8_lossy(&buf[..len]).into_owned()
        };
        n.ready("ok");
        assert_eq!(recv(), "READY=1\nSTATUS=ok");
        n.reloading();
        let r = recv();
        assert!(r.starts_with("RELOADING=1\nMONOTONIC_USEC="), "{r}");
        n.watchdog();
        n.watchdog();
        n.stopping();
        assert_eq!(recv(), "WATCHDOG=1");
        assert_eq!(recv(), "STOPPING=1\nSTATUS=Stopping", "second ping within the period was sent");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
