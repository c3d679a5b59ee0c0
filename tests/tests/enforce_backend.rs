//! Enforcement by user id on whichever backend the kernel allows: the BPF LSM program where
//! `bpf` is an active LSM and BPF LSM programs load (the VM matrix: 6.1, 6.12 booted with
//! `lsm=…,bpf`), the `fmod_ret` program on `security_file_open` where fentry programs load but
//! the BPF LSM is not active (the 6.12 guest booted with `--no-bpf-lsm`), fanotify permission
//! events elsewhere. Uses only uids 0 and 65534, so it runs in the minimal VM too.

use std::{fs, os::unix::fs::PermissionsExt as _, os::unix::process::CommandExt as _, process::Command};

use mnsensor_tests::{
    Sensor, TempDir,
    bpf::{BPF_LSM_MAC, BPF_MODIFY_RETURN, tracing_link_attach_types},
    find_tool, get_str, get_str_array, get_u64, in_vm, is, path_str, show,
};

const NOBODY: u32 = 65534;

/// A policy directory (root-owned, 0755) with one policy protecting `dir`.
fn policy(tree: &TempDir, dir: &str, action: &str) -> String {
    let pol = tree.mkdir("policies");
    fs::set_permissions(&pol, fs::Permissions::from_mode(0o755)).expect("chmod policies");
    let text = format!(
        "apiVersion: mnsensor/v1\nkind: AccessPolicy\nmetadata: {{name: uid-ledger, description: test}}\n\
         spec:\n  mode: enforce\n  protect:\n    - path: {dir}\n  allow:\n    - name: root-only\n      \
         subjects: [{{uid: 0}}]\n  default: {{action: {action}, severity: high}}\n"
    );
    let file = tree.write("policies/p.yaml", text);
    fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).expect("chmod policy");
    path_str(&pol).to_owned()
}

/// A protected directory readable by everyone (so only the policy can refuse).
fn ledger(tree: &TempDir) -> (String, String) {
    fs::set_permissions(tree.path(), fs::Permissions::from_mode(0o755)).expect("chmod tree");
    let dir = tree.mkdir("ledger");
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).expect("chmod dir");
    let file = tree.write("ledger/mynumber.csv", "tanaka,123456789018\n");
    fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).expect("chmod file");
    (path_str(&dir).to_owned(), path_str(&file).to_owned())
}

/// The backend the sensor reports, checked against the kernel: the VM kernels enforce in the
/// kernel, with the BPF LSM program where `bpf` is in the guest's LSM list and with the
/// `fmod_ret` program where it is not; the sensor holds the tracing link of exactly that
/// program (and never both).
fn backend(sensor: &Sensor) -> String {
    let backends = get_str_array(sensor.start_event(), "mnsensor.policy.backends");
    let b = backends.iter().find_map(|b| b.strip_prefix("uid-ledger=")).unwrap_or("missing").to_owned();
    if in_vm() {
        let lsm = fs::read_to_string("/sys/kernel/security/lsm").expect("the guest mounts securityfs");
        let expected = if lsm.trim().split(',').any(|m| m == "bpf") { "bpf-lsm" } else { "fmod_ret" };
        assert_eq!(b, expected, "LSMs {lsm:?}: {}", show(sensor.start_event()));
    } else {
        assert!(["bpf-lsm", "fmod_ret", "fanotify"].contains(&b.as_str()), "{}", show(sensor.start_event()));
    }
    let links = tracing_link_attach_types(sensor.pid());
    let count = |t: u32| links.iter().filter(|&&l| l == t).count();
    let (lsm, fmod_ret) = match b.as_str() {
        "bpf-lsm" => (1, 0),
        "fmod_ret" => (0, 1),
        _ => (0, 0),
    };
    assert_eq!(
        (count(BPF_LSM_MAC), count(BPF_MODIFY_RETURN)),
        (lsm, fmod_ret),
        "backend {b}: the sensor's tracing links (BPF LSM, fmod_ret) by attach type: {links:?}"
    );
    b
}

fn cat_as(uid: u32, file: &str) -> std::process::Output {
    Command::new(find_tool("cat")).arg(file).uid(uid).gid(uid).output().expect("run cat")
}

#[test]
fn disallowed_uid_is_refused_and_recorded() {
    let tree = TempDir::new("enforce-uid");
    let (dir, file) = ledger(&tree);
    let pol = policy(&tree, &dir, "deny");
    let mut sensor = Sensor::start(&["--policy", &pol]);
    let backend = backend(&sensor);

    let root = cat_as(0, &file);
    assert!(root.status.success(), "root (allowed) could not read: {root:?}");
    assert_eq!(String::from_utf8_lossy(&root.stdout), "tanaka,123456789018\n");

    let nobody = cat_as(NOBODY, &file);
    assert!(!nobody.status.success(), "uid {NOBODY} read a protected file: {nobody:?}");
    assert!(nobody.stdout.is_empty(), "data leaked: {nobody:?}");
    assert!(
        String::from_utf8_lossy(&nobody.stderr).contains("Operation not permitted"),
        "expected EPERM: {nobody:?}"
    );
    let ev = sensor.wait_for("deny decision", |e| {
        is(e, "policy.decision") && e.get("file.path").and_then(|p| p.as_str()) == Some(file.as_str())
    });
    assert_eq!(get_str(&ev, "mnsensor.decision"), "deny", "{}", show(&ev));
    assert_eq!(get_str(&ev, "mnsensor.policy.name"), "uid-ledger", "{}", show(&ev));
    assert_eq!(get_u64(&ev, "process.user.id"), u64::from(NOBODY), "{}", show(&ev));
    assert!(get_str_array(&ev, "mnsensor.policy.operations").iter().any(|o| o == "read"), "{}", show(&ev));
    assert_eq!(get_str(&ev, "mnsensor.enforcement"), backend, "{}", show(&ev));
    // Root's access is not a decision.
    sensor.assert_none("a decision for root", |e| {
        is(e, "policy.decision") && get_u64(e, "process.user.id") == 0
    });
    sensor.stop();
}

#[test]
fn kill_action_kills_before_any_data() {
    let tree = TempDir::new("enforce-kill");
    let (dir, file) = ledger(&tree);
    let pol = policy(&tree, &dir, "kill");
    let mut sensor = Sensor::start(&["--policy", &pol]);
    backend(&sensor);

    let nobody = cat_as(NOBODY, &file);
    use std::os::unix::process::ExitStatusExt as _;
    assert_eq!(nobody.status.signal(), Some(libc::SIGKILL), "not killed: {nobody:?}");
    assert!(nobody.stdout.is_empty(), "data leaked before the kill: {nobody:?}");
    let ev = sensor.wait_for("kill decision", |e| {
        is(e, "policy.decision") && e.get("file.path").and_then(|p| p.as_str()) == Some(file.as_str())
    });
    assert_eq!(get_str(&ev, "mnsensor.decision"), "kill", "{}", show(&ev));
    sensor.stop();
}

#[test]
fn audited_uid_reads_and_is_recorded() {
    let tree = TempDir::new("enforce-audit");
    let (dir, file) = ledger(&tree);
    let pol = policy(&tree, &dir, "audit");
    let mut sensor = Sensor::start(&["--policy", &pol]);
    let backend = backend(&sensor);

    let nobody = cat_as(NOBODY, &file);
    assert!(nobody.status.success(), "uid {NOBODY} (audited, let through) could not read: {nobody:?}");
    assert_eq!(String::from_utf8_lossy(&nobody.stdout), "tanaka,123456789018\n");
    let ev = sensor.wait_for("audit decision", |e| {
        is(e, "policy.decision") && e.get("file.path").and_then(|p| p.as_str()) == Some(file.as_str())
    });
    assert_eq!(get_str(&ev, "mnsensor.decision"), "audit", "{}", show(&ev));
    assert_eq!(get_u64(&ev, "process.user.id"), u64::from(NOBODY), "{}", show(&ev));
    assert_eq!(get_str(&ev, "mnsensor.enforcement"), backend, "{}", show(&ev));
    sensor.stop();
}
