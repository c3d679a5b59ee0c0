//! The running sensor: load, consume the ring buffer, write records, stop cleanly.
//!
//! The consumer runs the pipeline: ring buffer and fanotify (sources) → `crate::decode` →
//! `crate::enrich` → `crate::analyze` → `crate::seal` (numbering, redaction, ledger) → `crate::deliver`.
use std::{path::PathBuf, time::Duration};

use aya::maps::{MapData, RingBuf};
use sensor_common::event::{
    KIND_SLOTS,
    file::{FoldSlot, LossKey, LossWho, Received, ReceivedKey, Tracked},
};
use tokio::{
    io::{Interest, unix::AsyncFd},
    signal::unix::{SignalKind, signal},
    time::{MissedTickBehavior, interval},
};

use crate::{
    analyze::{self, Analyzer as _, Audit},
    bpf::{BpfError, LossCounters, Programs},
    config::{Config, FailMode},
    decode, deliver,
    enforce::{self, Enforcement},
    enrich::Enricher,
    event::{self, Envelope, Event, Record, file::CloseReason, time::Clock},
    fanotify::{self, Observer, ResponderOptions},
    health::{self, Heartbeat},
    inventory::Inventory,
    kernel::{self, KernelError},
    proctable::ProcTable,
    protect::{ProtectError, ProtectSet},
    seal::{SealError, Sealer},
    selfwatch::{self, SelfWatch},
    watch::Watch,
};

/// Why the sensor could not start or keep running.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Output(#[from] deliver::DeliverError),
    #[error(transparent)]
    Protect(#[from] ProtectError),
    #[error(transparent)]
    Kernel(#[from] KernelError),
    #[error(transparent)]
    Bpf(#[from] BpfError),
    #[error(transparent)]
    Seal(#[from] SealError),
    #[error(transparent)]
    Egress(#[from] crate::egress::EgressError),
    #[error(transparent)]
    Policy(#[from] crate::policy::PolicyErrors),
    #[error(transparent)]
    Metrics(#[from] health::metrics::MetricsError),
    /// Signal handlers or the ring buffer's readiness could not be set up.
    #[error("cannot set up {what}: {source}")]
    Io { what: &'static str, source: std::io::Error },
}

/// A configuration ready to run.
pub struct RunSpec {
    pub config: Config,
    /// `embedded` or the configuration file's path.
    pub config_source: String,
    /// The configuration file, when one was given (watched for changes: `crate::selfwatch`).
    pub config_file: Option<PathBuf>,
    /// systemd notifications and the status socket.
    pub service: crate::service::Service,
}

/// The BPF LSM program where `bpf` is an active LSM, else (or where it does not load) the
/// `fmod_ret` program; `None`: enforcement falls back to fanotify.
fn enable_kernel_enforcement(programs: &mut Programs) -> Option<crate::bpf::LsmMaps> {
    if kernel::preflight::lsm_list().is_some_and(|l| l.iter().any(|m| m == "bpf")) {
        match programs.enable_lsm() {
            Ok(maps) => return Some(maps),
            Err(e) => tracing::info!(error = %e, "BPF LSM programs do not load here; trying fmod_ret."),
        }
    }
    match programs.enable_fmod_ret() {
        Ok(maps) => Some(maps),
        Err(e) => {
            tracing::info!(error = %e, "The fmod_ret program does not load here; enforcing with fanotify.");
            None
        }
    }
}

/// Runs until SIGINT or SIGTERM. Everything is detached when this returns, also on error.
pub async fn run(spec: RunSpec) -> Result<(), DaemonError> {
    let config = spec.config;
    // Bad input first, before anything touches the kernel.
    let outputs = config.outputs.iter().map(|s| deliver::open(s, &config)).collect::<Result<Vec<_>, _>>()?;
    let policy_sources = policy_sources(&config.policies);
    let policy_set = if policy_sources.is_empty() {
        crate::policy::PolicySet::embedded()?
    } else {
        crate::policy::PolicySet::load(&policy_sources)?
    };
    let mut protect_paths = config.protect.clone();
    protect_paths.extend(enforce::protected_paths(&policy_set));
    let protect = ProtectSet::resolve(&protect_paths, config.max_protected_inodes as usize)?;
    if protect.overflow > 0 {
        tracing::warn!(
            files = protect.overflow,
            max = config.max_protected_inodes,
            "Protected trees hold more files than max_protected_inodes; those are matched by their directory only."
        );
    }
    let preflight = kernel::preflight::check().map_err(KernelError::from)?;
    let resolved = kernel::load_offsets(&preflight)?;
    for field in &resolved.missing_optional {
        tracing::warn!(field, "Kernel field absent; the attributes that need it are left out.");
    }
    let io_err = |what| move |source| DaemonError::Io { what, source };
    let mut sigint = signal(SignalKind::interrupt()).map_err(io_err("the SIGINT handler"))?;
    let mut sigterm = signal(SignalKind::terminate()).map_err(io_err("the SIGTERM handler"))?;
    let mut sighup = signal(SignalKind::hangup()).map_err(io_err("the SIGHUP handler"))?;

    // In-kernel enforcement: the BPF LSM program where the BPF LSM is active (`bpf` in the
    // LSM list), else the `fmod_ret` program where fentry programs load; fanotify permission
    // events otherwise. One enforcing program at most.
    let kernel_enforce = !enforce::enforced_trees(&policy_set).is_empty();
    let mut programs = Programs::load(
        &resolved.offsets,
        config.ring_buffer_bytes,
        &protect,
        config.max_protected_inodes,
        kernel_enforce,
        &preflight.tracefs,
    )?;
    let lsm = if kernel_enforce { enable_kernel_enforcement(&mut programs) } else { None };
    let lsm = lsm.map(|maps| (maps, protect.clone()));
    let ring = programs.take_ring()?;
    let priority_ring = programs.take_priority_ring()?;
    let mut guards = programs.take_guards()?;
    if let Err(e) = guards.update(&enforce::priority::compile(&policy_set, &protect)) {
        tracing::error!(error = %e, "Could not fill the priority tables: outsiders' opens share the bulk ring.");
    }
    let folds = programs.take_folds()?;
    let losses = programs.take_loss_counters()?;
    let tracked = programs.take_tracked()?;
    let received = programs.take_received()?;
    let kill =
        if enforce::uses_kill(&policy_set) { Some(programs.enable_kill(&preflight.tracefs)?) } else { None };
    let responder_opts = ResponderOptions {
        deadline: Duration::from_millis(config.enforcement.deadline_ms),
        decision_cache: Duration::from_millis(config.enforcement.decision_cache_ms),
        fail_mode: match config.enforcement.fail_mode {
            FailMode::Open => fanotify::FailMode::FailOpen,
            FailMode::Closed => fanotify::FailMode::FailClosed,
        },
        ..ResponderOptions::default()
    };
    let mut exfil = match policy_set.egress() {
        Some(p) => {
            let runner =
                crate::egress::Runner::start(&mut programs, &config.egress_cgroup, &preflight.tracefs, p)?;
            programs.attached.extend(runner.egress.attached.iter().cloned());
            programs.ids.extend(runner.egress.ids.iter().copied());
            Some(runner)
        }
        None => None,
    };
    let own_policies = policy_sources.clone();
    let subjects = match programs.take_subjects() {
        Ok(map) => {
            let mut subjects = enforce::subject::Subjects::new(map);
            // Only the fanotify responder reads it: seed the processes already running then.
            if lsm.is_none() && !enforce::enforced_trees(&policy_set).is_empty() {
                let seeded = subjects.seed();
                tracing::debug!(seeded, "Subject map seeded from /proc.");
            }
            Some(subjects)
        }
        Err(e) => {
            tracing::warn!(error = %e, "No kernel subject map; permission decisions read /proc.");
            None
        }
    };
    let enforcement = Enforcement::start(policy_set, policy_sources, kill, subjects, responder_opts, lsm);
    let trees: Vec<PathBuf> = protect.entries().iter().map(|e| e.path.clone()).collect();
    let (mut observer, watch) = start_observer(&trees, programs.file_backend);
    let mut procs = ProcTable::default();
    let seeded = procs.seed();
    let mut info = event::sensor::StartInfo {
        kernel_release: preflight.kernel_release.clone(),
        programs: programs.attached.clone(),
        program_ids: programs.ids.clone(),
        file_backend: programs.file_backend,
        file_observer: if observer.is_some() { "fanotify" } else { "off" },
        change_backend: match programs.change_backend {
            "fanotify" if observer.is_none() => "off",
            backend => backend,
        },
        config_source: spec.config_source,
        protect: protect.paths(),
        outputs: outputs.iter().map(|o| o.spec().to_owned()).collect(),
        ring_buffer_bytes: config.ring_buffer_bytes,
        processes_seeded: seeded,
        policy_hash: enforcement.policies.current().hash().to_owned(),
        policy_files: enforcement.files(),
        enforcement: enforcement.backends.clone(),
        tamper_off: programs.tamper_off.clone(),
        tamper_files: Vec::new(),
    };
    let mut enricher = Enricher::new(procs, protect, enforcement.policies.clone());
    let audit = Audit::new(enforcement.policies.clone());
    let mut sink = Sealer::open(&config, outputs)?;
    // After the ledger made the state directory.
    let own = selfwatch::own_files(spec.config_file.as_deref(), &own_policies, &config.state_dir);
    let mut selfwatch = SelfWatch::start(own);
    info.tamper_files = selfwatch.as_ref().map(SelfWatch::watched).unwrap_or_default();
    health::metrics::serve(&config.metrics, sink.stats.clone()).await?;
    let heartbeat = Heartbeat::new(&config.heartbeat, sink.stats.clone(), health::backends(&info));
    sink.emit(&event::sensor::start(Clock::realtime_ns(), &info))?;
    for mut ev in crate::scan::open_files(&enricher.protect) {
        if enricher.enrich(&mut ev) {
            sink.emit(&ev.record())?;
        }
    }
    sink.flush();
    tracing::info!(programs = info.programs.len(), protected = info.protect.len(), "Sensor started.");
    trim_heap();
    let mut service = spec.service;
    service.ready(&info);

    let mut consumer = Consumer {
        // SAFETY: the RingBuf owns its map fd and keeps it open and unchanged until dropped.
        ring: unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }
            .map_err(|e| DaemonError::Io { what: "ring buffer polling", source: e.into() })?,
        // SAFETY: as above.
        priority: unsafe { AsyncFd::register_with_interest(priority_ring, Interest::READABLE) }
            .map_err(|e| DaemonError::Io { what: "priority ring polling", source: e.into() })?,
        guards,
        folds,
        loss_names: LossNames::default(),
        losses,
        tracked,
        open_pruned: std::time::Instant::now(),
        received,
        receivers: std::collections::HashSet::new(),
        watch,
        enforcement,
        clock: Clock::now(),
        enricher,
        audit,
        rec: Record::new(event::Name::SensorAlert, 0),
        sink,
        delivered: 0,
        filtered: 0,
        lost_total: 0,
        lost_seen: [0; KIND_SLOTS as usize],
        loss_since: Clock::realtime_ns(),
        decode_errors: 0,
        kernel_releases: programs.kernel_releases,
        heartbeat,
    };
    let mut inventory = (config.inventory_interval_s > 0).then(|| Inventory::take(&programs.ids));
    let mut inventory_due = Duration::ZERO;
    let egress_cgroup = crate::egress::cgroup_v2(&config.egress_cgroup);
    let mut drain_tick = interval(Duration::from_millis(config.drain_interval_ms));
    drain_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut second = interval(Duration::from_secs(1));
    second.set_missed_tick_behavior(MissedTickBehavior::Delay);

    let reason = loop {
        tokio::select! {
            _ = sigint.recv() => break "SIGINT",
            _ = sighup.recv() => {
                service.reloading();
                consumer.sink.reopen();
                consumer.reload()?;
                let rec = service.reloaded(Clock::realtime_ns(), consumer.enforcement.files());
                consumer.sink.emit(&rec)?;
                consumer.sink.flush();
            }
            _ = sigterm.recv() => break "SIGTERM",
            guard = consumer.ring.readable_mut() => {
                let mut guard = guard.map_err(io_err("ring buffer polling"))?;
                guard.clear_ready();
                consumer.drain()?;
            }
            guard = consumer.priority.readable_mut() => {
                let mut guard = guard.map_err(io_err("priority ring polling"))?;
                guard.clear_ready();
                consumer.drain()?;
            }
            events = async {
                match observer.as_mut() {
                    Some(afd) => fanotify::next_events(afd).await,
                    None => std::future::pending().await,
                }
            } => match events {
                Ok(events) => consumer.watch.push(events),
                Err(e) => {
                    tracing::error!(error = %e, "fanotify observer failed; VFS-level file records stop.");
                    observer = None;
                }
            },
            events = async {
                match selfwatch.as_mut() {
                    Some(w) => fanotify::next_events(&mut w.observer).await,
                    None => std::future::pending().await,
                }
            } => match (events, selfwatch.as_mut()) {
                (Ok(events), Some(w)) => {
                    for ev in w.judge(events) {
                        consumer.emit(ev)?;
                    }
                }
                (Err(e), _) => {
                    tracing::error!(error = %e, "fanotify observer of the sensor's own files failed; their changes are no longer reported.");
                    selfwatch = None;
                }
                (Ok(_), None) => {}
            },
            _ = drain_tick.tick() => {
                service.watchdog();
                consumer.drain()?;
                if let Some(afd) = observer.as_mut() {
                    consumer.watch.push(afd.get_mut().read_content());
                }
                consumer.settle(false)?;
                // Records reach the outputs within one drain period, not one second.
                if consumer.sink.dirty {
                    consumer.sink.flush();
                }
            }
            _ = second.tick() => {
                if consumer.enforcement.changed() {
                    consumer.reload()?;
                }
                consumer.enforcement.refresh_lsm(false);
                consumer.watch.lost += selfwatch.as_mut().map_or(0, |w| std::mem::take(&mut w.lost));
                consumer.report_loss()?;
                for rec in exfil.as_mut().map(crate::egress::Runner::tick).unwrap_or_default() {
                    consumer.sink.emit(&rec)?;
                }
                consumer.beat()?;
                inventory_due += Duration::from_secs(1);
                if let Some(inv) = inventory.as_mut()
                    && inventory_due.as_secs() >= config.inventory_interval_s
                {
                    inventory_due = Duration::ZERO;
                    for rec in inv.check(programs.ebpf_mut(), &egress_cgroup, Clock::realtime_ns()) {
                        consumer.sink.emit(&rec)?;
                    }
                }
                consumer.clock = Clock::now();
                consumer.sink.flush();
                let hash = consumer.enforcement.policies.current().hash().to_owned();
                service.tick(consumer.delivered, consumer.lost_total, &hash, &consumer.enforcement.backends);
            }
        }
    };

    service.stopping();
    // Stop producing, then collect everything that was produced.
    consumer.enforcement.stop();
    drop(programs);
    if let Some(afd) = observer.as_mut() {
        let obs = afd.get_mut();
        while let Ok(events) = obs.read_events() {
            if events.is_empty() {
                break;
            }
            consumer.watch.push(events);
        }
    }
    drop(observer);
    consumer.drain()?;
    consumer.settle(true)?;
    consumer.decisions()?;
    consumer.report_loss()?;
    consumer.write_folds()?;
    consumer.close_received(None, CloseReason::SensorStop)?;
    consumer.close_tracked(None, CloseReason::SensorStop)?;
    let stop = event::sensor::stop(
        Clock::realtime_ns(),
        reason,
        consumer.delivered,
        consumer.filtered,
        consumer.lost_total,
    );
    consumer.sink.emit(&stop)?;
    consumer.sink.close();
    tracing::info!(reason, delivered = consumer.delivered, lost = consumer.lost_total, "Sensor stopped.");
    Ok(())
}

/// The policy files or directories in use: as configured, else the installed directory when
/// it exists, else none (the embedded default).
pub fn policy_sources(configured: &[PathBuf]) -> Vec<PathBuf> {
    if !configured.is_empty() {
        return configured.to_vec();
    }
    let installed = PathBuf::from(crate::policy::DEFAULT_POLICY_DIR);
    if installed.is_dir() { vec![installed] } else { Vec::new() }
}

/// Starts the fanotify observer on the protected trees; without it (old kernel, limits) the
/// VFS-level records are missing, which is said loudly.
///
/// Its content group spots opens no kernel record explains (in-kernel servers, io_uring):
/// opens and closes after writing, read on the drain tick so an opener never wakes the
/// daemon (a fanotify event per read would double the cost of reading a protected file).
/// Where the `fentry` program on `security_file_open` sees every open, in-kernel ones
/// included, there is nothing left to explain and no content group.
fn start_observer(trees: &[PathBuf], file_backend: &str) -> (Option<AsyncFd<Observer>>, Watch) {
    if trees.is_empty() {
        return (None, Watch::default());
    }
    let content = if file_backend == "fentry" { fanotify::Content::Off } else { fanotify::Content::Opens };
    let opts = fanotify::ObserverOptions { content, content_on_tick: true, ..Default::default() };
    match Observer::with_options(trees, opts).and_then(Observer::into_async) {
        Ok(afd) => {
            let has_rename = afd.get_ref().features().target_fid_and_rename;
            (Some(afd), Watch::new(trees, has_rename))
        }
        Err(e) => {
            tracing::error!(error = %e, "fanotify observer unavailable: no rename, delete, chmod, chown or unexplained-access records.");
            (None, Watch::default())
        }
    }
}

struct Consumer {
    ring: AsyncFd<RingBuf<MapData>>,
    /// The priority ring (`sensor-ebpf/src/priority.rs`), drained before `ring`.
    priority: AsyncFd<RingBuf<MapData>>,
    guards: enforce::priority::GuardMaps,
    folds: aya::maps::HashMap<MapData, u32, FoldSlot>,
    /// `LOSS_WHO` as last reported.
    loss_names: LossNames,
    losses: LossCounters,
    tracked: aya::maps::HashMap<MapData, u64, Tracked>,
    /// When the enricher's open files were last pruned to the kernel's `TRACKED`.
    open_pruned: std::time::Instant,
    /// Receivers' own totals (pidfd_getfd, SCM_RIGHTS), by (file, receiver).
    received: aya::maps::HashMap<MapData, ReceivedKey, Received>,
    /// Processes that received a tracked descriptor: their entries are written at their exit.
    receivers: std::collections::HashSet<u32>,
    watch: Watch,
    enforcement: Enforcement,
    /// Boot time → wall time.
    clock: Clock,
    enricher: Enricher,
    audit: Audit,
    /// The record buffer, reused for every event.
    rec: Record,
    sink: Sealer,
    heartbeat: Heartbeat,
    delivered: u64,
    /// Ring records the enricher dropped (`mnsensor.events.filtered`).
    filtered: u64,
    lost_total: u64,
    lost_seen: [u64; KIND_SLOTS as usize],
    loss_since: i128,
    decode_errors: u64,
    /// The kernel reports the release of every tracked file, at exit too.
    kernel_releases: bool,
}

impl Consumer {
    /// Decodes, enriches, analyzes and writes everything waiting in the ring buffers: the
    /// priority ring first. Records are written in the order they are taken; each carries
    /// its kernel time.
    fn drain(&mut self) -> Result<(), DaemonError> {
        let mut exited = Vec::new();
        self.enricher.tick();
        for priority in [true, false] {
            let ring = if priority { self.priority.get_mut() } else { self.ring.get_mut() };
            while let Some(item) = ring.next() {
                self.delivered += 1;
                match decode::decode(&item, &self.clock) {
                    Ok(mut ev) => {
                        if !self.enricher.enrich(&mut ev) {
                            self.filtered += 1;
                            continue;
                        }
                        self.audit.observe(&ev);
                        match &ev.event {
                            Event::Exit(e) => exited.push(e.subject.task.tgid),
                            Event::FileOpen(e) if e.received() => {
                                self.receivers.insert(e.subject.task.tgid);
                            }
                            _ => {}
                        }
                        ev.write(&mut self.rec);
                        self.sink.emit(&self.rec)?;
                    }
                    Err(e) => {
                        self.decode_errors += 1;
                        if self.decode_errors.is_power_of_two() {
                            tracing::error!(error = %e, count = self.decode_errors, "Undecodable kernel record.");
                        }
                    }
                }
            }
        }
        self.prune_open_files();
        for tgid in exited {
            if self.receivers.remove(&tgid) {
                self.close_received(Some(tgid), CloseReason::Exit)?;
            }
            if !self.kernel_releases && self.enricher.files.open.values().any(|f| f.opener == tgid) {
                self.close_tracked(Some(tgid), CloseReason::Exit)?;
            }
        }
        Ok(())
    }

    /// When the enricher's open files are full, at most every 10 s, forgets those the kernel
    /// no longer tracks: opens whose `file.close` record was lost stay there otherwise, and
    /// once full, later opens would not be remembered to name their compact closes.
    fn prune_open_files(&mut self) {
        if self.enricher.files.open.len() < crate::enrich::files::MAX_OPEN_FILES
            || self.open_pruned.elapsed() < Duration::from_secs(10)
        {
            return;
        }
        self.open_pruned = std::time::Instant::now();
        let live: std::collections::HashSet<u64> = self.tracked.keys().filter_map(Result::ok).collect();
        self.enricher.files.open.retain(|file, _| live.contains(file));
    }

    /// Enriches, analyzes and writes an event from a source other than the ring buffer.
    fn emit(&mut self, mut ev: Envelope) -> Result<(), DaemonError> {
        if self.enricher.enrich(&mut ev) {
            self.audit.observe(&ev);
            ev.write(&mut self.rec);
            self.sink.emit(&self.rec)?;
        }
        Ok(())
    }

    /// Writes `file.close` for tracked files the kernel will not report: those opened by
    /// `opener` (which exited), or all of them (`None`, the sensor is stopping).
    fn close_tracked(&mut self, opener: Option<u32>, reason: CloseReason) -> Result<(), DaemonError> {
        let entries: Vec<(u64, Tracked)> = self
            .tracked
            .iter()
            .filter_map(Result::ok)
            .filter(|(_, t)| opener.is_none_or(|o| t.opener.tgid == o))
            .collect();
        let now = Clock::realtime_ns();
        for (file, stats) in entries {
            let _ = self.tracked.remove(&file);
            let ev = self.enricher.close_untracked(file, &stats, reason, now, &self.clock);
            self.emit(ev)?;
        }
        Ok(())
    }

    /// Writes the fold records the kernel still holds (the sensor is stopping; its programs
    /// are detached, so the slots no longer change).
    fn write_folds(&mut self) -> Result<(), DaemonError> {
        let slots: Vec<FoldSlot> = self
            .folds
            .iter()
            .filter_map(Result::ok)
            .map(|(_, s)| s)
            .filter(|s| s.stats.fold_count > 0)
            .collect();
        let now = Clock::realtime_ns();
        for slot in slots {
            let ev = self.enricher.close_untracked(0, &slot.stats, CloseReason::Fold, now, &self.clock);
            self.emit(ev)?;
        }
        Ok(())
    }

    /// Writes `file.close` for receivers' own totals the kernel will not report: those of
    /// `receiver` (which exited), or all of them (`None`, the sensor is stopping).
    fn close_received(&mut self, receiver: Option<u32>, reason: CloseReason) -> Result<(), DaemonError> {
        let entries: Vec<(ReceivedKey, Received)> = self
            .received
            .iter()
            .filter_map(Result::ok)
            .filter(|(k, _)| receiver.is_none_or(|r| k.tgid == r))
            .collect();
        let now = Clock::realtime_ns();
        for (key, r) in entries {
            let _ = self.received.remove(&key);
            let ev = self.enricher.close_received(key.file, &r, reason, now, &self.clock);
            self.emit(ev)?;
        }
        Ok(())
    }

    /// Writes the events of fanotify events that have settled, and the decisions made.
    fn settle(&mut self, all: bool) -> Result<(), DaemonError> {
        for ev in self.watch.settle(&self.enricher, all) {
            self.emit(ev)?;
        }
        self.decisions()
    }

    /// Judges audit-mode accesses from the kernel's open records, and writes every decision
    /// (from the responder too) and every responder notice.
    fn decisions(&mut self) -> Result<(), DaemonError> {
        self.audit.judge(&self.enforcement);
        for ev in self.enforcement.take_decisions() {
            self.emit(analyze::decision(ev))?;
        }
        for notice in self.enforcement.take_notices() {
            let rec = event::sensor::alert(Clock::realtime_ns(), &notice);
            self.sink.emit(&rec)?;
        }
        Ok(())
    }

    /// Reloads the policy set (SIGHUP or a changed file): the whole new set or nothing.
    fn reload(&mut self) -> Result<(), DaemonError> {
        let rec = match self.enforcement.reload() {
            Ok(hash) => {
                tracing::info!(hash, "Policy set reloaded.");
                let guards =
                    enforce::priority::compile(&self.enforcement.policies.current(), &self.enricher.protect);
                if let Err(e) = self.guards.update(&guards) {
                    tracing::error!(error = %e, "Could not update the priority tables.");
                }
                event::sensor::policy_reloaded(Clock::realtime_ns(), &hash, &self.enforcement.files())
            }
            Err(e) => {
                tracing::error!(error = %e, "Policy reload failed; the previous set stays in force.");
                let hash = self.enforcement.policies.current().hash().to_owned();
                event::sensor::policy_error(Clock::realtime_ns(), &hash, &e.to_string())
            }
        };
        self.sink.emit(&rec)?;
        self.sink.flush();
        Ok(())
    }

    /// Updates the health counters; writes `sensor.heartbeat` when one is due.
    fn beat(&mut self) -> Result<(), DaemonError> {
        let stats = &self.heartbeat.stats;
        stats.set_lost(self.lost_total);
        stats.set_ledger_bytes(self.sink.ledger_bytes());
        stats.set_output_lags(self.sink.lags());
        let hash = self.enforcement.policies.current().hash().to_owned();
        if let Some(rec) = self.heartbeat.tick(Clock::realtime_ns(), &hash) {
            self.sink.emit(&rec)?;
        }
        Ok(())
    }

    /// Writes `sensor.event_loss` when the kernel counted new losses.
    fn report_loss(&mut self) -> Result<(), DaemonError> {
        let totals = self.losses.totals()?;
        let mut delta = [0u64; KIND_SLOTS as usize];
        for (i, d) in delta.iter_mut().enumerate() {
            *d = totals[i].saturating_sub(self.lost_seen[i]);
        }
        let now = Clock::realtime_ns();
        let fanotify = std::mem::take(&mut self.watch.lost);
        let decisions = self.enforcement.decider.dropped.swap(0, std::sync::atomic::Ordering::Relaxed);
        // Read after the totals: a program counts a loss in `LOST` first and names it in
        // `LOSS_WHO` after, so a loss counted in this report is named in it too. A loss that
        // happened in between is named before it is counted; the names are kept for the next
        // record when this report writes none (a daemon stopped between the two reads once
        // lost the names of a whole burst that way).
        let current = self.losses.who();
        let who = self.loss_names.fresh(&current);
        if let Some(rec) = event::sensor::event_loss(self.loss_since, now, &delta, fanotify, decisions, &who)
        {
            self.lost_total += delta.iter().sum::<u64>();
            tracing::warn!(lost = delta.iter().sum::<u64>(), "Kernel records lost: ring buffer full.");
            self.sink.emit(&rec)?;
            self.loss_names.reported(current);
        }
        self.lost_seen = totals;
        self.loss_since = now;
        Ok(())
    }
}

/// Gives the heap start-up freed back to the kernel: the kernel BTF is parsed up to three
/// times (offsets, aya's loader, the fentry attachments), several MiB each, and glibc keeps
/// freed memory mapped, where it counts in the RSS (docs/performance.md, "Memory").
fn trim_heap() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only returns free memory of the allocator to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The configuration file path as shown in `sensor.start`.
pub fn source_name(path: Option<&PathBuf>) -> String {
    path.map_or_else(|| "embedded".to_owned(), |p| p.display().to_string())
}

/// What `LOSS_WHO` held when the last `sensor.event_loss` was written: each record names
/// the losses since.
#[derive(Default)]
struct LossNames(std::collections::HashMap<LossKey, LossWho>);

impl LossNames {
    /// The entries of `current` that grew since the last record, by how much.
    fn fresh(&self, current: &[(LossKey, LossWho)]) -> Vec<(LossKey, LossWho)> {
        current
            .iter()
            .filter_map(|&(k, v)| {
                let seen = self.0.get(&k).copied().unwrap_or_default();
                let d = LossWho {
                    records: v.records.saturating_sub(seen.records),
                    opens: v.opens.saturating_sub(seen.opens),
                };
                (d.records > 0).then_some((k, d))
            })
            .collect()
    }

    /// `current` was named in a record written now.
    fn reported(&mut self, current: Vec<(LossKey, LossWho)>) {
        self.0.extend(current);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(ino: u64) -> LossKey {
        LossKey { kind: 1, uid: 1000, dev: 7, _pad: 0, ino }
    }

    #[test]
    fn loss_names_stay_pending_until_a_record_names_them() {
        let mut names = LossNames::default();
        let first = vec![(key(1), LossWho { records: 2, opens: 2 })];
        // A report that writes no record (its totals saw nothing new yet) keeps the names.
        assert_eq!(names.fresh(&first), first);
        assert_eq!(names.fresh(&first), first);
        names.reported(first.clone());
        assert!(names.fresh(&first).is_empty());
        // Growth and new entries are named by their increase.
        let later =
            vec![(key(1), LossWho { records: 5, opens: 3 }), (key(2), LossWho { records: 1, opens: 1 })];
        assert_eq!(
            names.fresh(&later),
            vec![(key(1), LossWho { records: 3, opens: 1 }), (key(2), LossWho { records: 1, opens: 1 })]
        );
    }
}
