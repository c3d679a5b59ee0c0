//! Every attribute key the sensor writes. docs/events.md documents each one; the test at the
//! bottom fails when a key here is missing from that page.

pub const EVENT_NAME: &str = "event.name";
pub const TIME: &str = "time";
pub const SEQ: &str = "mnsensor.seq";
pub const HOST_NAME: &str = "host.name";

pub const PROCESS_PID: &str = "process.pid";
pub const PROCESS_THREAD_ID: &str = "process.thread.id";
pub const PROCESS_PARENT_PID: &str = "process.parent_pid";
pub const PROCESS_EXECUTABLE_PATH: &str = "process.executable.path";
pub const PROCESS_EXECUTABLE_PATH_BYTES: &str = "mnsensor.process.executable.path_bytes";
pub const PROCESS_EXECUTABLE_NAME: &str = "process.executable.name";
pub const PROCESS_COMMAND_LINE: &str = "process.command_line";
pub const PROCESS_COMMAND_ARGS: &str = "process.command_args";
pub const PROCESS_WORKING_DIRECTORY: &str = "process.working_directory";
pub const PROCESS_WORKING_DIRECTORY_BYTES: &str = "mnsensor.process.working_directory_bytes";
pub const PROCESS_USER_ID: &str = "process.user.id";
pub const PROCESS_USER_NAME: &str = "process.user.name";
pub const PROCESS_REAL_USER_ID: &str = "process.real_user.id";
pub const PROCESS_REAL_USER_NAME: &str = "process.real_user.name";
pub const PROCESS_GROUP_ID: &str = "mnsensor.process.group.id";
pub const PROCESS_GROUP_NAME: &str = "mnsensor.process.group.name";
pub const PROCESS_REAL_GROUP_ID: &str = "mnsensor.process.real_group.id";
pub const PROCESS_COMM: &str = "mnsensor.process.comm";
pub const LOGIN_USER_ID: &str = "mnsensor.login_user.id";
pub const LOGIN_USER_NAME: &str = "mnsensor.login_user.name";
pub const SESSION_ID: &str = "mnsensor.session.id";
pub const PROCESS_ATTRIBUTION: &str = "mnsensor.process.attribution";
pub const PROCESS_PREVIOUS_PID: &str = "mnsensor.process.previous_pid";
pub const PROCESS_EXIT_CODE: &str = "process.exit.code";
pub const PROCESS_EXIT_SIGNAL: &str = "mnsensor.process.exit.signal";
pub const PROCESS_EXIT_CORE_DUMPED: &str = "mnsensor.process.exit.core_dumped";

pub const PATH_TRUNCATED: &str = "mnsensor.path.truncated";
pub const ARGV_TRUNCATED: &str = "mnsensor.argv.truncated";
pub const READ_ERROR: &str = "mnsensor.read_error";

pub const FILE_PATH: &str = "file.path";
/// The bytes of a `file.path` that is not UTF-8, percent-encoded (`crate::event::path`).
pub const FILE_PATH_BYTES: &str = "mnsensor.file.path_bytes";
pub const FILE_NAME: &str = "file.name";
pub const FILE_DIRECTORY: &str = "file.directory";
pub const FILE_INODE: &str = "file.inode";
pub const FILE_DEVICE: &str = "mnsensor.file.device";
pub const FILE_ACCESS: &str = "mnsensor.file.access";
pub const FILE_FLAGS: &str = "mnsensor.file.flags";
pub const FILE_CREATED: &str = "mnsensor.file.created";
pub const FILE_FD: &str = "mnsensor.file.fd";
pub const SYSCALL: &str = "mnsensor.syscall";
pub const PROTECTED_PATH: &str = "mnsensor.protected.path";
pub const PROTECTED_PATH_BYTES: &str = "mnsensor.protected.path_bytes";
pub const FILE_BYTES_READ: &str = "mnsensor.file.bytes_read";
pub const FILE_BYTES_WRITTEN: &str = "mnsensor.file.bytes_written";
pub const FILE_READ_CALLS: &str = "mnsensor.file.read_calls";
pub const FILE_WRITE_CALLS: &str = "mnsensor.file.write_calls";
pub const FILE_MMAP_BYTES: &str = "mnsensor.file.mmap_bytes";
pub const FILE_IO: &str = "mnsensor.file.io";
pub const FILE_OPENED_AT: &str = "mnsensor.file.opened_at";
pub const FILE_OPENER_PID: &str = "mnsensor.file.opener.pid";
pub const FILE_OPENER_USER_ID: &str = "mnsensor.file.opener.user.id";
pub const FILE_SCOPE: &str = "mnsensor.file.scope";
pub const CLOSE_REASON: &str = "mnsensor.close.reason";
pub const FOLD_COUNT: &str = "mnsensor.fold.count";
pub const FOLD_CLOSES: &str = "mnsensor.fold.closes";
pub const FOLD_FIRST: &str = "mnsensor.fold.first";
pub const FOLD_LAST: &str = "mnsensor.fold.last";
pub const FILE_MAPPED: &str = "mnsensor.file.mapped";
pub const OBSERVED_BY: &str = "mnsensor.observed_by";
pub const FANOTIFY_EVENT: &str = "mnsensor.fanotify.event";
pub const FILE_OLD_PATH: &str = "mnsensor.file.old_path";
pub const FILE_OLD_PATH_BYTES: &str = "mnsensor.file.old_path_bytes";
pub const FILE_SIZE: &str = "file.size";
pub const FILE_OLD_SIZE: &str = "mnsensor.file.old_size";
pub const FILE_LINKS: &str = "mnsensor.file.links";
pub const FILE_MODE: &str = "file.mode";
pub const FILE_OLD_MODE: &str = "mnsensor.file.old_mode";
pub const FILE_OWNER_ID: &str = "file.owner.id";
pub const FILE_GROUP_ID: &str = "file.group.id";
pub const FILE_OLD_OWNER_ID: &str = "mnsensor.file.old_owner.id";
pub const FILE_OLD_GROUP_ID: &str = "mnsensor.file.old_group.id";
pub const BACKEND_FILE_OBSERVER: &str = "mnsensor.backend.file_observer";
pub const BACKEND_FILE_CHANGE: &str = "mnsensor.backend.file_change";
pub const LOSS_FANOTIFY: &str = "mnsensor.loss.fanotify";
pub const DECISION: &str = "mnsensor.decision";
pub const POLICY_NAME: &str = "mnsensor.policy.name";
pub const POLICY_ENTRY: &str = "mnsensor.policy.entry";
pub const POLICY_REASON: &str = "mnsensor.policy.reason";
pub const POLICY_SEVERITY: &str = "mnsensor.policy.severity";
pub const POLICY_MODE: &str = "mnsensor.policy.mode";
pub const POLICY_HASH: &str = "mnsensor.policy.hash";
pub const POLICY_OPERATIONS: &str = "mnsensor.policy.operations";
pub const POLICY_FILES: &str = "mnsensor.policy.files";
pub const POLICY_ERROR: &str = "mnsensor.policy.error";
pub const ENFORCEMENT: &str = "mnsensor.enforcement";
pub const POLICY_BACKENDS: &str = "mnsensor.policy.backends";
pub const ALERT_KIND: &str = "mnsensor.alert.kind";

pub const NETWORK_TRANSPORT: &str = "network.transport";
pub const NETWORK_TYPE: &str = "network.type";
pub const NETWORK_LOCAL_ADDRESS: &str = "network.local.address";
pub const NETWORK_LOCAL_PORT: &str = "network.local.port";
pub const NETWORK_PEER_ADDRESS: &str = "network.peer.address";
pub const NETWORK_PEER_PORT: &str = "network.peer.port";
pub const NETWORK_IO_DIRECTION: &str = "network.io.direction";
pub const NETWORK_IPV4_MAPPED: &str = "mnsensor.network.ipv4_mapped";
pub const NETWORK_TCP_PREVIOUS_STATE: &str = "mnsensor.network.tcp.previous_state";
pub const BYTES_SENT: &str = "mnsensor.bytes_sent";
pub const BYTES_RECEIVED: &str = "mnsensor.bytes_received";

pub const CLIENT_ADDRESS: &str = "client.address";
pub const CLIENT_PORT: &str = "client.port";
pub const SMB_USER_NAME: &str = "mnsensor.smb.user.name";

pub const SERVICE_NAME: &str = "service.name";
pub const SERVICE_VERSION: &str = "service.version";
pub const SCHEMA_VERSION: &str = "mnsensor.schema.version";
pub const KERNEL_RELEASE: &str = "mnsensor.kernel.release";
pub const BACKEND_PROCESS: &str = "mnsensor.backend.process";
pub const BACKEND_FILE: &str = "mnsensor.backend.file";
pub const BACKEND_NETWORK: &str = "mnsensor.backend.network";
pub const BPF_PROGRAMS: &str = "mnsensor.bpf.programs";
pub const BPF_PROGRAM_IDS: &str = "mnsensor.bpf.program_ids";
pub const TAMPER_OFF: &str = "mnsensor.tamper.off";
pub const TAMPER_FILES: &str = "mnsensor.tamper.files";
pub const CONFIG_SOURCE: &str = "mnsensor.config.source";
pub const CONFIG_PROTECT: &str = "mnsensor.config.protect";
pub const CONFIG_OUTPUTS: &str = "mnsensor.config.outputs";
pub const CONFIG_RING_BUFFER_BYTES: &str = "mnsensor.config.ring_buffer_bytes";
pub const CONFIG_RESTART_REQUIRED: &str = "mnsensor.config.restart_required";
pub const CONFIG_ERROR: &str = "mnsensor.config.error";
pub const PROCESSES_SEEDED: &str = "mnsensor.processes.seeded";
pub const STOP_REASON: &str = "mnsensor.stop.reason";
pub const EVENTS_DELIVERED: &str = "mnsensor.events.delivered";
pub const EVENTS_LOST: &str = "mnsensor.events.lost";
/// Kernel records received that name no protected file once resolved (hard-link names).
pub const EVENTS_FILTERED: &str = "mnsensor.events.filtered";
pub const LOSS_COUNT: &str = "mnsensor.loss.count";
pub const LOSS_WHO: &str = "mnsensor.lost.who";
pub const UPTIME_SECONDS: &str = "mnsensor.uptime";
pub const HEARTBEAT_BACKENDS: &str = "mnsensor.heartbeat.backends";
pub const HEARTBEAT_RECORDS: &str = "mnsensor.heartbeat.records";
pub const HEARTBEAT_COUNTS: &str = "mnsensor.heartbeat.counts";
pub const LEDGER_BYTES: &str = "mnsensor.ledger.bytes";
pub const OUTPUTS: &str = "mnsensor.outputs";
pub const OUTPUT_LAG_RECORDS: &str = "mnsensor.lag.records";
pub const OUTPUT_LAG_SECONDS: &str = "mnsensor.lag.seconds";
pub const LOSS_INTERVAL_START: &str = "mnsensor.loss.interval.start";
pub const LOSS_INTERVAL_END: &str = "mnsensor.loss.interval.end";

pub const TAMPER_KIND: &str = "mnsensor.tamper.kind";
pub const TAMPER_SIGNAL: &str = "mnsensor.tamper.signal";
pub const TAMPER_SIGNAL_RESULT: &str = "mnsensor.tamper.signal_result";
pub const TAMPER_PTRACE_REQUEST: &str = "mnsensor.tamper.ptrace_request";
pub const TAMPER_BPF_COMMAND: &str = "mnsensor.tamper.bpf_command";
pub const TAMPER_TARGET_PID: &str = "mnsensor.tamper.target_pid";
pub const TAMPER_PROGRAM_ID: &str = "mnsensor.tamper.program_id";
pub const TAMPER_LINK_ID: &str = "mnsensor.tamper.link_id";
pub const TAMPER_REATTACHED: &str = "mnsensor.tamper.reattached";
pub const TAMPER_NEW_LINK_ID: &str = "mnsensor.tamper.new_link_id";
pub const TAMPER_REATTACH_ERROR: &str = "mnsensor.tamper.reattach_error";
pub const TAMPER_FILE_ROLE: &str = "mnsensor.tamper.file_role";
pub const TAMPER_FILE_ACTION: &str = "mnsensor.tamper.file_action";

// Per-kind loss keys, `mnsensor.loss.<event.name>`, are derived from the names:
// `super::Name::loss_key`.

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    /// Keys documented in the first column of docs/events.md's tables.
    fn documented() -> BTreeSet<String> {
        let doc = include_str!("../../../docs/events.md");
        doc.lines()
            .filter_map(|l| l.strip_prefix("| `"))
            .filter_map(|l| l.split('`').next())
            .map(str::to_owned)
            .collect()
    }

    /// A key that is also the dotted prefix of another (`a.b` and `a.b.c`) cannot be stored
    /// by a SIEM that expands keys into objects (Elasticsearch's default mapping): `a.b`
    /// would be both a value and an object.
    #[test]
    fn no_key_is_the_prefix_of_another() {
        let src = include_str!("attr.rs");
        let code = src
            .lines()
            .filter(|l| l.starts_with("pub const") || l.trim_start().starts_with("(\""))
            .filter_map(|l| l.rsplit('"').nth(1))
            .map(str::to_owned);
        let mut keys: BTreeSet<String> = documented().into_iter().chain(code).collect();
        // Keys written outside this file (the seal stage's own records): every
        // `"mnsensor.…"` literal in the sources.
        let mut dirs = vec![std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/src"))];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).unwrap().map(Result::unwrap) {
                let path = entry.path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    let text = std::fs::read_to_string(&path).unwrap();
                    for lit in text.split("\"mnsensor.").skip(1) {
                        let rest: String = lit
                            .chars()
                            .take_while(|c| c.is_ascii_alphanumeric() || "._".contains(*c))
                            .collect();
                        if lit[rest.len()..].starts_with('"') && !rest.ends_with('.') {
                            keys.insert(format!("mnsensor.{rest}"));
                        }
                    }
                }
            }
        }
        assert!(keys.len() > 60, "parsed only {} keys", keys.len());
        let clashes: Vec<(&String, &String)> = keys
            .iter()
            .flat_map(|a| keys.iter().filter(move |b| b.starts_with(&format!("{a}."))).map(move |b| (a, b)))
            .collect();
        assert!(clashes.is_empty(), "keys that are the dotted prefix of another key: {clashes:?}");
    }

    #[test]
    fn every_key_is_documented() {
        let src = include_str!("attr.rs");
        let documented = documented();
        let keys: Vec<&str> =
            src.lines().filter(|l| l.starts_with("pub const")).filter_map(|l| l.rsplit('"').nth(1)).collect();
        assert!(keys.len() > 60, "parsed only {} keys", keys.len());
        let missing: Vec<_> = keys.iter().filter(|k| !documented.contains(**k)).collect();
        // `json::key` writes keys without escaping them.
        assert!(keys.iter().all(|k| k.bytes().all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')));
        assert!(missing.is_empty(), "keys missing from docs/events.md: {missing:?}");
    }
}
