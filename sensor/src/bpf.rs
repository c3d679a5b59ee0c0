//! Loading and attaching the kernel programs, and access to their maps.
mod fmod_ret;

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap, MapData, PerCpuArray, ProgramArray, RingBuf},
    programs::{FEntry, FExit, Lsm, ProgramError, RawTracePoint, TracePoint},
};
use sensor_common::{
    config::KernelConfig,
    event::{
        KIND_SLOTS,
        file::{BACKEND_CHANGE, BACKEND_OPEN, FoldSlot, LossKey, LossWho, Received, ReceivedKey, Tracked},
        policy::{AllowKey, AllowProgramKey, PolicyDefault},
        subject::Subject,
    },
    offsets::KernelOffsets,
    path::{InodeKey, Protected},
};

use crate::{kernel::tracefs::TraceFs, protect::ProtectSet};

/// The kernel object, built by build.rs and embedded in the binary.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/sensor-ebpf"));

/// Raw tracepoint programs: (program, tracepoint).
const RAW_TRACEPOINTS: [(&str, &str); 4] = [
    ("sched_process_exec", "sched_process_exec"),
    ("holders_exec", "sched_process_exec"),
    ("sched_process_fork", "sched_process_fork"),
    ("sched_process_exit", "sched_process_exit"),
];

/// Tracepoint programs: (program, category, event, family). Each program is attached to the
/// tracepoint of its own name; one the kernel does not have (e.g. `open` on arm64) is skipped
/// with a log line. File programs are attached only when something is protected.
const TRACEPOINTS: &[(&str, &str, Family)] = &[
    ("sys_exit_open", "syscalls", Family::FileOpen),
    ("sys_exit_openat", "syscalls", Family::FileOpen),
    ("sys_exit_openat2", "syscalls", Family::FileOpen),
    ("sys_exit_creat", "syscalls", Family::FileOpen),
    ("sys_exit_open_by_handle_at", "syscalls", Family::FileOpen),
    ("sys_exit_read", "syscalls", Family::File),
    ("sys_exit_readv", "syscalls", Family::File),
    ("sys_exit_pread64", "syscalls", Family::File),
    ("sys_exit_preadv", "syscalls", Family::File),
    ("sys_exit_preadv2", "syscalls", Family::File),
    ("sys_exit_write", "syscalls", Family::File),
    ("sys_exit_writev", "syscalls", Family::File),
    ("sys_exit_pwrite64", "syscalls", Family::File),
    ("sys_exit_pwritev", "syscalls", Family::File),
    ("sys_exit_pwritev2", "syscalls", Family::File),
    ("sys_exit_sendfile64", "syscalls", Family::File),
    ("sys_exit_splice", "syscalls", Family::File),
    ("sys_exit_copy_file_range", "syscalls", Family::File),
    ("sys_exit_mmap", "syscalls", Family::File),
    ("sys_enter_close", "syscalls", Family::File),
    ("io_uring_complete", "io_uring", Family::File),
    ("sys_enter_io_submit", "syscalls", Family::Aio),
    ("sys_exit_io_submit", "syscalls", Family::Aio),
    ("sys_exit_io_getevents", "syscalls", Family::Aio),
    ("sys_exit_io_pgetevents", "syscalls", Family::Aio),
    ("sys_exit_pidfd_getfd", "syscalls", Family::File),
    ("scm_rights_recvmsg", "syscalls", Family::File),
    ("sys_enter_link", "syscalls", Family::Link),
    ("sys_enter_linkat", "syscalls", Family::Link),
    ("sys_exit_link", "syscalls", Family::Link),
    ("sys_exit_linkat", "syscalls", Family::Link),
    ("sys_exit_accept", "syscalls", Family::Network),
    ("sys_exit_accept4", "syscalls", Family::Network),
    ("inet_sock_set_state", "sock", Family::Network),
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Family {
    /// Opens of protected files: replaced by the fentry program where it loads.
    FileOpen,
    /// Bytes through protected files, close.
    File,
    /// Linux AIO byte counting: optional (a kernel whose verifier refuses these programs
    /// runs without them, and `sensor.start` does not list them).
    Aio,
    /// Names of new hard links, where the fentry change hooks do not load.
    Link,
    Network,
}

/// Loading or attaching failed.
#[derive(Debug, thiserror::Error)]
pub enum BpfError {
    /// The object could not be loaded (maps created, globals set).
    #[error("cannot load the kernel object: {0}")]
    Load(#[source] aya::EbpfError),
    /// The object has no program of that name (a build mismatch).
    #[error("kernel program {0} is missing from the embedded object")]
    MissingProgram(&'static str),
    /// The verifier rejected a program, or attaching failed.
    #[error("kernel program {program}: {source}{}", verifier_log(.source))]
    Program { program: &'static str, source: ProgramError },
    /// A map is missing or has the wrong type.
    #[error("kernel map {name}: {source}")]
    Map { name: &'static str, source: aya::maps::MapError },
    /// The `fmod_ret` enforcement program did not load or attach.
    #[error(transparent)]
    FmodRet(#[from] fmod_ret::FmodRetError),
    /// The object is empty because the build skipped the kernel programs.
    #[error("this binary was built with AYA_BUILD_SKIP=1 and contains no kernel programs")]
    NoObject,
}

fn verifier_log(e: &ProgramError) -> String {
    match e {
        ProgramError::LoadError { verifier_log, .. } => format!("\nverifier log:\n{verifier_log}"),
        _ => String::new(),
    }
}

/// The loaded and attached programs. Dropping it detaches and unloads everything; the maps
/// taken out with `take_*` stay usable, so the daemon drains what was produced before.
pub struct Programs {
    ebpf: Ebpf,
    /// `program@hook` of everything attached.
    pub attached: Vec<String>,
    /// Kernel ids of the loaded programs.
    pub ids: Vec<u32>,
    /// Whether file programs are attached.
    pub file_events: bool,
    /// How opens of protected files are observed: `fentry`, `tracepoint` or `off`.
    pub file_backend: &'static str,
    /// How deletions, renames, links and truncations are observed: `fentry` (security
    /// hooks), `fanotify` (the VFS observer, links at the link syscalls) or `off`.
    pub change_backend: &'static str,
    /// `security_file_free` reports every tracked file's last release (exit included), so
    /// the daemon does not write `exit` closes itself.
    pub kernel_releases: bool,
    /// Tamper signals (`sensor-ebpf/src/tamper.rs`) whose program did not load or attach here.
    pub tamper_off: Vec<&'static str>,
    /// The `fmod_ret` enforcement program, loaded outside aya (detached on drop).
    fmod_ret: Option<fmod_ret::FmodRet>,
}

impl Programs {
    /// Loads the object with the resolved offsets and settings, fills the protected set and
    /// attaches every program.
    pub fn load(
        offsets: &KernelOffsets,
        ring_buffer_bytes: u32,
        protect: &ProtectSet,
        max_protected_inodes: u32,
        lsm_enforce: bool,
        tracefs: &TraceFs,
    ) -> Result<Self, BpfError> {
        if OBJECT.is_empty() {
            return Err(BpfError::NoObject);
        }
        let file_events = !protect.is_empty();
        let config = KernelConfig {
            self_tgid: std::process::id(),
            file_events: u32::from(file_events),
            lsm_enforce: u32::from(lsm_enforce),
            _pad: 0,
            // An eighth: the default ring is 4 MiB (aya maps it twice), so the consumer is
            // woken at 512 KiB waiting, with 7/8 of the ring left for its wake-up latency.
            wakeup_bytes: u64::from(ring_buffer_bytes / 8),
        };
        let mut ebpf = EbpfLoader::new()
            .override_global("OFFSETS", offsets, true)
            .override_global("CONFIG", &config, true)
            .override_global("TAMPER_CONFIG", &crate::kernel::procfs::tamper_config(config.self_tgid), true)
            .map_max_entries("EVENTS", ring_buffer_bytes)
            .map_max_entries("PROTECTED", max_protected_inodes.max(16))
            .load(OBJECT)
            .map_err(BpfError::Load)?;

        {
            let mut devs: HashMap<_, u32, u32> = HashMap::try_from(
                ebpf.map_mut("PROTECTED_DEVS")
                    .ok_or(BpfError::Map { name: "PROTECTED_DEVS", source: missing_map() })?,
            )
            .map_err(|source| BpfError::Map { name: "PROTECTED_DEVS", source })?;
            for dev in protect.devices() {
                devs.insert(dev, 1, 0).map_err(|source| BpfError::Map { name: "PROTECTED_DEVS", source })?;
            }
        }
        let mut map: HashMap<_, InodeKey, Protected> = HashMap::try_from(
            ebpf.map_mut("PROTECTED").ok_or(BpfError::Map { name: "PROTECTED", source: missing_map() })?,
        )
        .map_err(|source| BpfError::Map { name: "PROTECTED", source })?;
        for (key, value) in protect.kernel_entries() {
            map.insert(key, value, 0).map_err(|source| BpfError::Map { name: "PROTECTED", source })?;
        }

        let mut attached = Vec::new();
        let mut ids = Vec::new();
        load_holder_settle(&mut ebpf)?;
        for (name, tp) in RAW_TRACEPOINTS {
            let prog: &mut RawTracePoint = program(&mut ebpf, name)?;
            prog.load().map_err(|source| BpfError::Program { program: name, source })?;
            prog.attach(tp).map_err(|source| BpfError::Program { program: name, source })?;
            ids.extend(prog.info().ok().map(|i| i.id()));
            attached.push(format!("{name}@raw_tracepoint/{tp}"));
        }
        let mut kernel_releases = false;
        let mut btf = None;
        let file_backend = match file_events {
            false => "off",
            true => {
                match attach_fentry(&mut ebpf, &mut btf, "security_file_open", "security_file_open", false) {
                    Ok(id) => {
                        ids.extend(id);
                        attached.push("security_file_open@fentry/security_file_open".to_owned());
                        enable_backend(&mut ebpf, BACKEND_OPEN)?;
                        match attach_fentry(
                            &mut ebpf,
                            &mut btf,
                            "security_file_free",
                            "security_file_free",
                            false,
                        ) {
                            Ok(id) => {
                                ids.extend(id);
                                attached.push("security_file_free@fentry/security_file_free".to_owned());
                                kernel_releases = true;
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, "security_file_free does not load; closes at exit are written by the daemon.");
                            }
                        }
                        "fentry"
                    }
                    Err(e) => {
                        tracing::info!(error = %e, "fentry programs do not load here; opens are traced at syscall exit.");
                        "tracepoint"
                    }
                }
            }
        };
        let change_backend = match (file_events, file_backend) {
            (false, _) => "off",
            (true, "fentry") => match attach_changes(&mut ebpf, &mut btf, &mut attached, &mut ids) {
                Ok(()) => {
                    enable_backend(&mut ebpf, BACKEND_CHANGE)?;
                    "fentry"
                }
                Err(e) => {
                    tracing::warn!(error = %e, "Change hooks do not load; deletions, renames and truncations come from fanotify.");
                    "fanotify"
                }
            },
            (true, _) => "fanotify",
        };
        drop(btf);
        if file_events {
            // The fentry change backend's fexit programs on vfs_rename and vfs_rmdir see
            // every rename and directory removal.
            let vfs_hooks = change_backend == "fentry";
            for (name, at_entry) in [
                ("namespace_change", true),
                ("unlinkat_change", true),
                ("rename_exit", false),
                ("renameat_exit", false),
                ("renameat2_exit", false),
            ] {
                let calls: Vec<_> = NAMESPACE_SYSCALLS
                    .iter()
                    .filter(|(call, p)| *p == name && !(vfs_hooks && VFS_HOOKED.contains(call)))
                    .collect();
                if calls.is_empty() {
                    continue;
                }
                let prog: &mut TracePoint = program(&mut ebpf, name)?;
                prog.load().map_err(|source| BpfError::Program { program: name, source })?;
                for (call, _) in calls {
                    let entry = at_entry.then(|| format!("sys_enter_{call}"));
                    for event in entry.into_iter().chain([format!("sys_exit_{call}")]) {
                        if !tracefs.event_exists("syscalls", &event) {
                            continue;
                        }
                        prog.attach("syscalls", &event)
                            .map_err(|source| BpfError::Program { program: name, source })?;
                        attached.push(format!("{name}@tracepoint/syscalls/{event}"));
                    }
                }
                ids.extend(prog.info().ok().map(|i| i.id()));
            }
        }
        for &(name, category, family) in TRACEPOINTS {
            // A program that shares its tracepoint with another (taint.rs's `sys_exit_recvmsg`)
            // has a name of its own.
            let event = if name == "scm_rights_recvmsg" { "sys_exit_recvmsg" } else { name };
            let wanted = match family {
                Family::FileOpen => file_backend == "tracepoint",
                Family::Link => file_events && change_backend != "fentry",
                Family::File | Family::Aio => file_events,
                Family::Network => true,
            };
            if !wanted {
                continue;
            }
            if !tracefs.event_exists(category, event) {
                tracing::info!(program = name, category, event, "Tracepoint absent on this kernel; skipped.");
                continue;
            }
            let prog: &mut TracePoint = program(&mut ebpf, name)?;
            match prog.load() {
                Err(e) if family == Family::Aio => {
                    tracing::warn!(program = name, error = %e, "AIO program does not load here; Linux AIO bytes are not counted.");
                    continue;
                }
                r => r.map_err(|source| BpfError::Program { program: name, source })?,
            }
            prog.attach(category, event).map_err(|source| BpfError::Program { program: name, source })?;
            ids.extend(prog.info().ok().map(|i| i.id()));
            attached.push(format!("{name}@tracepoint/{category}/{event}"));
        }
        attach_subject_creds(&mut ebpf, tracefs, &mut attached, &mut ids)?;
        let mut tamper_off = attach_tamper(&mut ebpf, tracefs, !file_events, &mut attached, &mut ids);
        if tamper_off.contains(&"bpf") {
            tamper_off.push("bpf_map");
        } else if let Err(e) = fill_self_maps(&mut ebpf) {
            tracing::warn!(error = %e, "The sensor's map ids are not known; writes to its maps are not watched.");
            tamper_off.push("bpf_map");
        }
        // Loading parsed the object and the kernel's BTF: give that heap back to the system.
        // SAFETY: malloc_trim only releases free memory of the allocator.
        unsafe { libc::malloc_trim(0) };
        Ok(Self {
            ebpf,
            attached,
            ids,
            file_events,
            file_backend,
            change_backend,
            kernel_releases,
            tamper_off,
            fmod_ret: None,
        })
    }

    /// The loaded object, for the egress module's own programs and maps (`sensor/src/egress/`).
    pub fn ebpf_mut(&mut self) -> &mut Ebpf {
        &mut self.ebpf
    }

    /// Takes the ring buffer (once).
    pub fn take_ring(&mut self) -> Result<RingBuf<MapData>, BpfError> {
        let map =
            self.ebpf.take_map("EVENTS").ok_or(BpfError::Map { name: "EVENTS", source: missing_map() })?;
        RingBuf::try_from(map).map_err(|source| BpfError::Map { name: "EVENTS", source })
    }

    /// Takes the subject map (`sensor-ebpf/src/subject.rs`), for the permission responder.
    pub fn take_subjects(&mut self) -> Result<HashMap<MapData, u32, Subject>, BpfError> {
        let map = self
            .ebpf
            .take_map("SUBJECTS")
            .ok_or(BpfError::Map { name: "SUBJECTS", source: missing_map() })?;
        HashMap::try_from(map).map_err(|source| BpfError::Map { name: "SUBJECTS", source })
    }

    /// Attaches the `kill` action's program to the exits of the open and exec syscalls and
    /// returns the map of processes to kill.
    pub fn enable_kill(&mut self, tracefs: &TraceFs) -> Result<HashMap<MapData, u32, u32>, BpfError> {
        const EXITS: [&str; 7] = [
            "sys_exit_open",
            "sys_exit_openat",
            "sys_exit_openat2",
            "sys_exit_creat",
            "sys_exit_open_by_handle_at",
            "sys_exit_execve",
            "sys_exit_execveat",
        ];
        let name = "kill_pending";
        let prog: &mut TracePoint = program(&mut self.ebpf, name)?;
        prog.load().map_err(|source| BpfError::Program { program: name, source })?;
        for event in EXITS.into_iter().filter(|e| tracefs.event_exists("syscalls", e)) {
            prog.attach("syscalls", event).map_err(|source| BpfError::Program { program: name, source })?;
            self.attached.push(format!("{name}@tracepoint/syscalls/{event}"));
        }
        self.ids.extend(prog.info().ok().map(|i| i.id()));
        let map = self
            .ebpf
            .take_map("KILL_PENDING")
            .ok_or(BpfError::Map { name: "KILL_PENDING", source: missing_map() })?;
        HashMap::try_from(map).map_err(|source| BpfError::Map { name: "KILL_PENDING", source })
    }

    /// Loads and attaches the BPF LSM program on `file_open` and returns its tables. Fails
    /// where BPF LSM programs do not load (no `bpf` LSM, no BTF for the hook, policy).
    pub fn enable_lsm(&mut self) -> Result<LsmMaps, BpfError> {
        let name = "file_open";
        let btf = aya::Btf::from_sys_fs()
            .map_err(|e| BpfError::Program { program: name, source: ProgramError::Btf(e) })?;
        let prog: &mut Lsm = program(&mut self.ebpf, name)?;
        prog.load("file_open", &btf).map_err(|source| BpfError::Program { program: name, source })?;
        prog.attach().map_err(|source| BpfError::Program { program: name, source })?;
        self.ids.extend(prog.info().ok().map(|i| i.id()));
        self.attached.push("file_open@lsm/file_open".to_owned());
        self.take_lsm_maps(crate::enforce::lsm::BACKEND_BPF_LSM)
    }

    /// Loads and attaches the `fmod_ret` program on `security_file_open` (the same decision
    /// as the BPF LSM program, for kernels with fentry but without the BPF LSM) and returns
    /// its tables. Call it before any map is taken out, and never after [`Self::enable_lsm`]
    /// succeeded: one enforcing program per hook.
    pub fn enable_fmod_ret(&mut self) -> Result<LsmMaps, BpfError> {
        let prog = fmod_ret::attach(OBJECT, &self.ebpf)?;
        self.ids.extend(prog.id);
        self.attached.push(format!("{}@fmod_ret/security_file_open", fmod_ret::PROGRAM));
        self.fmod_ret = Some(prog);
        self.take_lsm_maps(crate::enforce::lsm::BACKEND_FMOD_RET)
    }

    fn take_lsm_maps(&mut self, backend: &'static str) -> Result<LsmMaps, BpfError> {
        let mut take = |name: &'static str| {
            self.ebpf.take_map(name).ok_or(BpfError::Map { name, source: missing_map() })
        };
        let map_err = |name: &'static str| move |source| BpfError::Map { name, source };
        Ok(LsmMaps {
            backend,
            rule_policy: Array::try_from(take("RULE_POLICY")?).map_err(map_err("RULE_POLICY"))?,
            defaults: Array::try_from(take("POLICY_DEFAULT")?).map_err(map_err("POLICY_DEFAULT"))?,
            any: HashMap::try_from(take("ALLOW_ANY")?).map_err(map_err("ALLOW_ANY"))?,
            programs: HashMap::try_from(take("ALLOW_PROGRAM")?).map_err(map_err("ALLOW_PROGRAM"))?,
        })
    }

    /// Takes the map of open protected files (once).
    pub fn take_tracked(&mut self) -> Result<HashMap<MapData, u64, Tracked>, BpfError> {
        let map =
            self.ebpf.take_map("TRACKED").ok_or(BpfError::Map { name: "TRACKED", source: missing_map() })?;
        HashMap::try_from(map).map_err(|source| BpfError::Map { name: "TRACKED", source })
    }

    /// Takes the map of receivers' own totals (once).
    pub fn take_received(&mut self) -> Result<HashMap<MapData, ReceivedKey, Received>, BpfError> {
        let map = self
            .ebpf
            .take_map("RECEIVED")
            .ok_or(BpfError::Map { name: "RECEIVED", source: missing_map() })?;
        HashMap::try_from(map).map_err(|source| BpfError::Map { name: "RECEIVED", source })
    }

    /// Takes the loss counters (once).
    pub fn take_loss_counters(&mut self) -> Result<LossCounters, BpfError> {
        let map = self.ebpf.take_map("LOST").ok_or(BpfError::Map { name: "LOST", source: missing_map() })?;
        let map = PerCpuArray::try_from(map).map_err(|source| BpfError::Map { name: "LOST", source })?;
        let who = self.take("LOSS_WHO")?;
        let who = HashMap::try_from(who).map_err(|source| BpfError::Map { name: "LOSS_WHO", source })?;
        Ok(LossCounters { map, who })
    }

    fn take(&mut self, name: &'static str) -> Result<aya::maps::Map, BpfError> {
        self.ebpf.take_map(name).ok_or(BpfError::Map { name, source: missing_map() })
    }

    /// Takes the priority ring (once): policy decisions and opens by users outside a covering
    /// policy's allow list (`sensor-ebpf/src/priority.rs`).
    pub fn take_priority_ring(&mut self) -> Result<RingBuf<MapData>, BpfError> {
        let map = self.take("PRIORITY_EVENTS")?;
        RingBuf::try_from(map).map_err(|source| BpfError::Map { name: "PRIORITY_EVENTS", source })
    }

    /// Takes the priority guard tables (once).
    pub fn take_guards(&mut self) -> Result<crate::enforce::priority::GuardMaps, BpfError> {
        let err = |name: &'static str| move |source| BpfError::Map { name, source };
        Ok(crate::enforce::priority::GuardMaps {
            rule_guard: Array::try_from(self.take("GUARD_RULE")?).map_err(err("GUARD_RULE"))?,
            allowed: HashMap::try_from(self.take("GUARD_ALLOWED")?).map_err(err("GUARD_ALLOWED"))?,
        })
    }

    /// Takes the fold slots (once): the daemon writes those still waiting when it stops.
    pub fn take_folds(&mut self) -> Result<HashMap<MapData, u32, FoldSlot>, BpfError> {
        HashMap::try_from(self.take("FOLD")?).map_err(|source| BpfError::Map { name: "FOLD", source })
    }
}

/// Tamper-signal programs: (kind, program, tracepoint category or `None` for a raw
/// tracepoint, event).
const TAMPER_PROGRAMS: [(&str, &str, Option<&str>, &str); 5] = [
    ("signal", "tamper_signal", None, "signal_generate"),
    ("ptrace", "tamper_ptrace", Some("syscalls"), "sys_enter_ptrace"),
    ("process_vm_read", "tamper_vm_read", Some("syscalls"), "sys_enter_process_vm_readv"),
    ("process_vm_write", "tamper_vm_write", Some("syscalls"), "sys_enter_process_vm_writev"),
    ("bpf", "tamper_bpf", Some("syscalls"), "sys_enter_bpf"),
];

/// The open syscalls whose exits `tamper_proc_open` watches for `/proc/<sensor>/{mem,environ}`.
const PROC_OPEN_EXITS: [&str; 3] = ["sys_exit_open", "sys_exit_openat", "sys_exit_openat2"];

/// Puts the ids of every map the sensor holds into `SELF_MAPS` (`bpf_map` tamper records).
fn fill_self_maps(ebpf: &mut Ebpf) -> Result<(), BpfError> {
    let own = crate::kernel::bpfobj::own_map_ids();
    let name = "SELF_MAPS";
    let mut map: HashMap<_, u32, u8> =
        HashMap::try_from(ebpf.map_mut(name).ok_or(BpfError::Map { name, source: missing_map() })?)
            .map_err(|source| BpfError::Map { name, source })?;
    for id in own {
        map.insert(id, 1, 0).map_err(|source| BpfError::Map { name, source })?;
    }
    Ok(())
}

/// Attaches `tamper_proc_open` to the exits of the open syscalls.
fn attach_proc_open(
    ebpf: &mut Ebpf,
    tracefs: &TraceFs,
    attached: &mut Vec<String>,
    ids: &mut Vec<u32>,
) -> Result<(), BpfError> {
    let name = "tamper_proc_open";
    let err = |source| BpfError::Program { program: name, source };
    let prog: &mut TracePoint = program(ebpf, name)?;
    prog.load().map_err(err)?;
    for event in PROC_OPEN_EXITS.into_iter().filter(|e| tracefs.event_exists("syscalls", e)) {
        prog.attach("syscalls", event).map_err(err)?;
        attached.push(format!("{name}@tracepoint/syscalls/{event}"));
    }
    ids.extend(prog.info().ok().map(|i| i.id()));
    Ok(())
}

/// Attaches the tamper-signal programs. Each is optional: one that does not load or attach is
/// logged and its kind returned, for `sensor.start`.
fn attach_tamper(
    ebpf: &mut Ebpf,
    tracefs: &TraceFs,
    proc_open: bool,
    attached: &mut Vec<String>,
    ids: &mut Vec<u32>,
) -> Vec<&'static str> {
    let mut off = Vec::new();
    // With protected files the open program checks `/proc` opens itself (one program per open).
    let proc_attached = if proc_open { attach_proc_open(ebpf, tracefs, attached, ids) } else { Ok(()) };
    if let Err(e) = proc_attached {
        tracing::warn!(error = %e, "Tamper signal program does not load here; /proc/<pid>/mem and environ are not watched.");
        off.extend(["proc_mem", "proc_environ"]);
    }
    for (kind, name, category, event) in TAMPER_PROGRAMS {
        let result = match category {
            None => program::<RawTracePoint>(ebpf, name).and_then(|prog| {
                let err = |source| BpfError::Program { program: name, source };
                prog.load().map_err(err)?;
                prog.attach(event).map_err(err)?;
                Ok((format!("{name}@raw_tracepoint/{event}"), prog.info().ok().map(|i| i.id())))
            }),
            Some(category) if !tracefs.event_exists(category, event) => {
                tracing::warn!(
                    kind,
                    category,
                    event,
                    "Tracepoint absent on this kernel; this tamper signal is not watched."
                );
                off.push(kind);
                continue;
            }
            Some(category) => program::<TracePoint>(ebpf, name).and_then(|prog| {
                let err = |source| BpfError::Program { program: name, source };
                prog.load().map_err(err)?;
                prog.attach(category, event).map_err(err)?;
                Ok((format!("{name}@tracepoint/{category}/{event}"), prog.info().ok().map(|i| i.id())))
            }),
        };
        match result {
            Ok((hook, id)) => {
                attached.push(hook);
                ids.extend(id);
            }
            Err(e) => {
                tracing::warn!(kind, error = %e, "Tamper signal program does not load here; this kind is not watched.");
                off.push(kind);
            }
        }
    }
    off
}

/// Loads and attaches an fentry (or, with `exit`, fexit) program; the error says why it
/// cannot run on this kernel. `btf` is the kernel's BTF, parsed at the first call (several
/// MiB of heap; `load` drops it when every program is attached).
fn attach_fentry(
    ebpf: &mut Ebpf,
    btf: &mut Option<aya::Btf>,
    name: &'static str,
    function: &str,
    exit: bool,
) -> Result<Option<u32>, BpfError> {
    let btf = match btf {
        Some(btf) => btf,
        None => btf.insert(
            aya::Btf::from_sys_fs()
                .map_err(|e| BpfError::Program { program: name, source: ProgramError::Btf(e) })?,
        ),
    };
    let err = |source| BpfError::Program { program: name, source };
    if exit {
        let prog: &mut FExit = program(ebpf, name)?;
        prog.load(function, btf).map_err(err)?;
        prog.attach().map_err(err)?;
        Ok(prog.info().ok().map(|i| i.id()))
    } else {
        let prog: &mut FEntry = program(ebpf, name)?;
        prog.load(function, btf).map_err(err)?;
        prog.attach().map_err(err)?;
        Ok(prog.info().ok().map(|i| i.id()))
    }
}

/// The change hooks (`sensor-ebpf/src/change.rs`): (program and kernel function, fexit,
/// required). `security_file_truncate` exists from 6.2; before, `security_path_truncate`
/// sees every truncation.
const CHANGE_PROGRAMS: [(&str, bool, bool); 10] = [
    ("security_path_unlink", false, true),
    ("security_path_rename", false, true),
    ("security_path_link", false, true),
    ("security_path_truncate", false, true),
    ("security_file_truncate", false, false),
    ("vfs_unlink", true, true),
    ("vfs_rename", true, true),
    ("vfs_link", true, true),
    ("do_truncate", true, true),
    ("vfs_rmdir", true, true),
];

/// Syscalls that change a task's uids or gids: their exits refresh the subject map.
const CRED_SYSCALLS: [&str; 8] =
    ["setuid", "setreuid", "setresuid", "setfsuid", "setgid", "setregid", "setresgid", "setfsgid"];

/// `subject_creds` on the exits of [`CRED_SYSCALLS`] (those this kernel has).
fn attach_subject_creds(
    ebpf: &mut Ebpf,
    tracefs: &TraceFs,
    attached: &mut Vec<String>,
    ids: &mut Vec<u32>,
) -> Result<(), BpfError> {
    let name = "subject_creds";
    let prog: &mut TracePoint = program(ebpf, name)?;
    prog.load().map_err(|source| BpfError::Program { program: name, source })?;
    for call in CRED_SYSCALLS {
        let event = format!("sys_exit_{call}");
        if !tracefs.event_exists("syscalls", &event) {
            continue;
        }
        prog.attach("syscalls", &event).map_err(|source| BpfError::Program { program: name, source })?;
        attached.push(format!("{name}@tracepoint/syscalls/{event}"));
    }
    ids.extend(prog.info().ok().map(|i| i.id()));
    Ok(())
}

/// Syscalls after which a directory may sit under another ancestor, or a directory's or
/// mount's identity may be reused, with the program that invalidates the kernel's caches of
/// directories and files outside the protected trees (`sensor-ebpf/src/path.rs`):
/// `namespace_change` at entry and exit always, `unlinkat_change` at entry and exit for
/// directory removals only, the rename programs at exit for directory renames only
/// (`sensor-ebpf/src/change.rs`). Those a kernel lacks (e.g. `rename` on arm64) are skipped.
const NAMESPACE_SYSCALLS: [(&str, &str); 9] = [
    ("rename", "rename_exit"),
    ("renameat", "renameat_exit"),
    ("renameat2", "renameat2_exit"),
    ("rmdir", "namespace_change"),
    ("unlinkat", "unlinkat_change"),
    ("mount", "namespace_change"),
    ("umount", "namespace_change"),
    ("move_mount", "namespace_change"),
    ("pivot_root", "namespace_change"),
];

/// [`NAMESPACE_SYSCALLS`] whose effect the fentry change backend sees at `vfs_rename` and
/// `vfs_rmdir`.
const VFS_HOOKED: [&str; 5] = ["rename", "renameat", "renameat2", "rmdir", "unlinkat"];

/// Attaches the change hooks; fails when a required one does not load here (kernels without
/// `CONFIG_SECURITY_PATH`; before 5.17, whose fexit programs cannot read the result with
/// `bpf_get_func_ret`).
fn attach_changes(
    ebpf: &mut Ebpf,
    btf: &mut Option<aya::Btf>,
    attached: &mut Vec<String>,
    ids: &mut Vec<u32>,
) -> Result<(), BpfError> {
    for (name, exit, required) in CHANGE_PROGRAMS {
        match attach_fentry(ebpf, btf, name, name, exit) {
            Ok(id) => {
                ids.extend(id);
                attached.push(format!("{name}@{}/{name}", if exit { "fexit" } else { "fentry" }));
            }
            Err(e) if !required => tracing::info!(error = %e, "Optional change hook not attached."),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Tells the programs that the fentry programs of family `slot` report from now on.
fn enable_backend(ebpf: &mut Ebpf, slot: u32) -> Result<(), BpfError> {
    let err = |source| BpfError::Map { name: "BACKEND", source };
    let mut backend: Array<_, u32> =
        Array::try_from(ebpf.map_mut("BACKEND").ok_or_else(|| err(missing_map()))?).map_err(err)?;
    backend.set(slot, 1, 0).map_err(err)
}

pub(crate) fn missing_map() -> aya::maps::MapError {
    aya::maps::MapError::InvalidName { name: "not in object".to_owned() }
}

/// Loads `holder_settle` into slot 0 of `SETTLE`, the tail of the read and write programs
/// (io.rs).
fn load_holder_settle(ebpf: &mut Ebpf) -> Result<(), BpfError> {
    const NAME: &str = "holder_settle";
    let prog: &mut TracePoint = program(ebpf, NAME)?;
    prog.load().map_err(|source| BpfError::Program { program: NAME, source })?;
    let fd = prog
        .fd()
        .map_err(|source| BpfError::Program { program: NAME, source })?
        .try_clone()
        .map_err(|e| BpfError::Program { program: NAME, source: ProgramError::IOError(e) })?;
    let mut slots = ProgramArray::try_from(
        ebpf.map_mut("SETTLE").ok_or(BpfError::Map { name: "SETTLE", source: missing_map() })?,
    )
    .map_err(|source| BpfError::Map { name: "SETTLE", source })?;
    slots.set(0, &fd, 0).map_err(|source| BpfError::Map { name: "SETTLE", source })
}

pub(crate) fn program<'a, T>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut T, BpfError>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = ProgramError>,
{
    let prog = ebpf.program_mut(name).ok_or(BpfError::MissingProgram(name))?;
    prog.try_into().map_err(|source| BpfError::Program { program: name, source })
}

/// The kernel enforcement program's tables.
pub struct LsmMaps {
    /// `bpf-lsm` or `fmod_ret`: the program that reads them.
    pub backend: &'static str,
    rule_policy: Array<MapData, u32>,
    defaults: Array<MapData, PolicyDefault>,
    any: HashMap<MapData, AllowKey, u32>,
    programs: HashMap<MapData, AllowProgramKey, u32>,
}

impl LsmMaps {
    /// Writes compiled tables: new entries first, then stale ones removed, so an allowed
    /// access is never refused while the tables change.
    pub fn update(&mut self, t: &crate::enforce::lsm::Tables) -> Result<(), BpfError> {
        let err = |name: &'static str| move |source| BpfError::Map { name, source };
        for (rule, policy) in &t.rule_policy {
            self.rule_policy.set(*rule, *policy, 0).map_err(err("RULE_POLICY"))?;
        }
        for (id, d) in &t.defaults {
            self.defaults.set(*id, *d, 0).map_err(err("POLICY_DEFAULT"))?;
        }
        for (k, v) in &t.any {
            self.any.insert(k, v, 0).map_err(err("ALLOW_ANY"))?;
        }
        for (k, v) in &t.programs {
            self.programs.insert(k, v, 0).map_err(err("ALLOW_PROGRAM"))?;
        }
        let stale: Vec<AllowKey> =
            self.any.keys().filter_map(Result::ok).filter(|k| !t.any.contains_key(k)).collect();
        for k in stale {
            let _ = self.any.remove(&k);
        }
        let stale: Vec<AllowProgramKey> =
            self.programs.keys().filter_map(Result::ok).filter(|k| !t.programs.contains_key(k)).collect();
        for k in stale {
            let _ = self.programs.remove(&k);
        }
        Ok(())
    }
}

/// The per-CPU, per-kind counters of records the kernel could not deliver, and whose they
/// were (`LOSS_WHO`).
pub struct LossCounters {
    map: PerCpuArray<MapData, u64>,
    who: HashMap<MapData, LossKey, LossWho>,
}

impl LossCounters {
    /// Totals over all CPUs, indexed by kind number.
    pub fn totals(&self) -> Result<[u64; KIND_SLOTS as usize], BpfError> {
        let mut out = [0u64; KIND_SLOTS as usize];
        for (kind, slot) in out.iter_mut().enumerate() {
            let values =
                self.map.get(&(kind as u32), 0).map_err(|source| BpfError::Map { name: "LOST", source })?;
            *slot = values.iter().sum();
        }
        Ok(out)
    }

    /// The cumulative losses by (kind, uid, device, inode) the kernel still remembers (an
    /// LRU map of 4,096 entries).
    pub fn who(&self) -> Vec<(LossKey, LossWho)> {
        let mut out = Vec::new();
        for entry in self.who.iter() {
            match entry {
                Ok(kv) => out.push(kv),
                Err(e) => {
                    tracing::warn!(error = %e, read = out.len(), "Could not read all of LOSS_WHO; this loss report may not name everyone who lost records.");
                    break;
                }
            }
        }
        out
    }
}
