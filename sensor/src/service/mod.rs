//! Running as a service: systemd's notify protocol ([`notify`]), the status socket
//! ([`status`]) and configuration reloads. The daemon calls [`Service`] at a handful of
//! points: `ready()` after the programs are attached and the policies loaded, `watchdog()` from
//! the drain tick, `tick()` once a second, `reloading()`/`reloaded()` around SIGHUP, and
//! `stopping()`.
pub mod notify;
pub mod status;

use std::collections::BTreeMap;

use self::{
    notify::Notifier,
    status::{Snapshot, StatusServer},
};
use crate::{
    cli::RunArgs,
    config::{self, Config},
    event::{Record, attr, sensor::StartInfo},
};

/// The service side of a running sensor.
#[derive(Debug)]
pub struct Service {
    notify: Notifier,
    /// Bound when ready; `None` before, or when it could not be set up (logged).
    status: Option<StatusServer>,
    /// The command line, to read the configuration again on SIGHUP.
    args: RunArgs,
    /// The configuration in force.
    config: Config,
    ticks: u64,
}

impl Service {
    /// Reads the notify environment. Nothing is bound yet: the status socket comes with
    /// [`Self::ready`], so that a sensor that cannot start (no privileges, bad input) leaves
    /// nothing behind and says only why it cannot start.
    pub fn start(args: &RunArgs, config: &Config) -> Self {
        Self {
            notify: Notifier::from_env(),
            status: None,
            args: args.clone(),
            config: config.clone(),
            ticks: 0,
        }
    }

    fn update(&self, f: impl FnOnce(&mut Snapshot)) {
        if let Some(s) = &self.status {
            s.update(f);
        }
    }

    /// The programs are attached and the policies loaded: binds the status socket (a socket
    /// that cannot be set up, e.g. another sensor answers on it, is logged and left out:
    /// watching files matters more than answering `mnsensor status`), then `READY=1`.
    pub fn ready(&mut self, info: &StartInfo) {
        let snapshot = Snapshot {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            pid: std::process::id(),
            state: "ready".to_owned(),
            config_source: crate::daemon::source_name(self.args.config.as_ref()),
            watchdog: self.notify.watchdog_enabled(),
            kernel_release: info.kernel_release.clone(),
            backends: BTreeMap::from([
                ("process".to_owned(), "tracepoint".to_owned()),
                ("file".to_owned(), info.file_backend.to_owned()),
                ("file_observer".to_owned(), info.file_observer.to_owned()),
                ("file_change".to_owned(), info.change_backend.to_owned()),
                ("network".to_owned(), "tracepoint".to_owned()),
            ]),
            policies: policy_backends(&info.enforcement),
            policy_hash: info.policy_hash.clone(),
            policy_files: info.policy_files.clone(),
            ..Snapshot::default()
        };
        self.status = match StatusServer::bind(&self.config.status_socket, snapshot) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::error!(error = %e, "No status socket; `mnsensor status` cannot reach this sensor.");
                None
            }
        };
        self.notify.ready(&format!("Ready: {} policies", info.enforcement.len()));
        tracing::debug!("Notified systemd: ready.");
    }

    /// From the event loop (drain tick): `WATCHDOG=1` when due.
    pub fn watchdog(&mut self) {
        self.notify.watchdog();
    }

    /// Once a second from the event loop: counters and the policy set in force.
    pub fn tick(&mut self, events: u64, lost: u64, policy_hash: &str, backends: &[String]) {
        self.update(|s| {
            s.counters.events = events;
            s.counters.lost = lost;
            if s.policy_hash != policy_hash {
                policy_hash.clone_into(&mut s.policy_hash);
                s.policies = policy_backends(backends);
            }
        });
        self.ticks += 1;
        if self.ticks.is_multiple_of(5) {
            self.notify.status(&format!("Running: {events} events, {lost} lost, policy {policy_hash:.12}"));
        }
    }

    /// SIGHUP received: `RELOADING=1`.
    pub fn reloading(&mut self) {
        self.update(|s| s.state = "reloading".to_owned());
        self.notify.reloading();
    }

    /// After the policy reload: reads the configuration again, says which changed keys need
    /// a restart (log and the returned `sensor.config_reloaded` record), then `READY=1`.
    pub fn reloaded(&mut self, time_ns: i128, policy_files: Vec<String>) -> Record {
        let mut rec = Record::new(crate::event::Name::SensorConfigReloaded, time_ns);
        rec.set(attr::CONFIG_SOURCE, crate::daemon::source_name(self.args.config.as_ref()));
        let (restart, error) = match Config::effective(&self.args) {
            Ok(new) => (config::restart_required(&self.config, &new), None),
            Err(e) => (Vec::new(), Some(e.to_string())),
        };
        match &error {
            Some(e) => {
                tracing::error!(error = %e, "Configuration reload failed; the running configuration stays.")
            }
            None if restart.is_empty() => tracing::info!("Configuration reloaded; nothing needs a restart."),
            None => tracing::warn!(
                keys = restart.join(","),
                "Configuration changed where only a restart applies it; the old values stay until then."
            ),
        }
        rec.set(attr::CONFIG_RESTART_REQUIRED, restart.clone());
        rec.set_opt(attr::CONFIG_ERROR, error.clone());
        self.update(|s| {
            s.state = "ready".to_owned();
            s.restart_required.clone_from(&restart);
            s.policy_files = policy_files;
            if error.is_some() {
                s.counters.reload_errors += 1;
            } else {
                s.counters.reloads += 1;
            }
        });
        self.notify.ready("Reloaded");
        rec
    }

    /// Shutting down: `STOPPING=1`.
    pub fn stopping(&mut self) {
        self.update(|s| s.state = "stopping".to_owned());
        self.notify.stopping();
    }
}

/// `policy=backend` strings (`sensor.start`) as a map.
fn policy_backends(items: &[String]) -> BTreeMap<String, String> {
    items
        .iter()
        .map(|s| match s.rsplit_once('=') {
            Some((name, backend)) => (name.to_owned(), backend.to_owned()),
            None => (s.clone(), String::new()),
        })
        .collect()
}
