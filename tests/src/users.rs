//! Users of their own for tests: `useradd -M -N -s /usr/sbin/nologin mnt_<random>`, removed
//! with `userdel` by a drop guard (also on failure); in the busybox VM (`MNSENSOR_VM=1`, no
//! `useradd`) the fixed users `mnt_vm1`..`mnt_vm4` of its initramfs.

use std::{
    fs,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::Command,
    sync::Mutex,
    thread,
    time::Duration,
};

use crate::{run_capture, scaled, util::COMMAND_TIMEOUT};

/// Serializes `useradd`/`userdel` of this process (they lock /etc/passwd).
static USERS_LOCK: Mutex<()> = Mutex::new(());

/// A user created for one test; deleted on drop.
#[derive(Debug)]
pub struct TestUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    /// One of the VM's fixed users: never deleted.
    fixed: bool,
}

/// A tool on the usual system paths, `None` when absent.
pub fn tool(name: &str) -> Option<PathBuf> {
    ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
}

/// Runs a user-database tool, retrying while another process holds the lock of
/// /etc/passwd (exit statuses 1 and 10 of shadow's tools). Returns the last output.
pub fn user_tool(tool: &Path, args: &[&str], ok: &[i32]) -> crate::Output {
    let _guard = USERS_LOCK.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut attempt = 0;
    loop {
        let o = run_capture(Command::new(tool).args(args), scaled(COMMAND_TIMEOUT));
        let code = o.status.code().unwrap_or(-1);
        if ok.contains(&code) || attempt >= 30 || !matches!(code, 1 | 10) {
            return o;
        }
        attempt += 1;
        thread::sleep(Duration::from_millis(200));
    }
}

/// Users of the busybox VM's initramfs (xtask/src/vm/initramfs.rs), which has no `useradd`.
pub const VM_USERS: [&str; 4] = ["mnt_vm1", "mnt_vm2", "mnt_vm3", "mnt_vm4"];

/// `n` users of their own: new ones (`useradd`), or in the busybox VM the fixed users of
/// its initramfs (the VM runs one test at a time, so they are never shared).
pub fn test_users(what: &str, n: usize) -> Vec<TestUser> {
    let Some(useradd) = tool("useradd") else {
        assert!(
            crate::in_vm(),
            "{what}: useradd is needed (only the busybox VM, MNSENSOR_VM=1, has fixed users instead)"
        );
        assert!(n <= VM_USERS.len(), "{what}: the VM has only {} test users", VM_USERS.len());
        return VM_USERS[..n]
            .iter()
            .map(|name| {
                let (uid, gid) = passwd_ids(name);
                TestUser { name: (*name).to_owned(), uid, gid, fixed: true }
            })
            .collect();
    };
    let mut users = Vec::new();
    for _ in 0..n {
        let uuid = fs::read_to_string("/proc/sys/kernel/random/uuid").expect("read a random uuid");
        let name = format!("mnt_{}", &uuid.trim().replace('-', "")[..12]);
        let o = user_tool(&useradd, &["-M", "-N", "-s", "/usr/sbin/nologin", &name], &[0]);
        assert!(o.status.success(), "useradd {name}: {}\n{}{}", o.status, o.stdout, o.stderr);
        // From here on the guard deletes the user, whatever happens.
        let mut user = TestUser { name, uid: u32::MAX, gid: u32::MAX, fixed: false };
        (user.uid, user.gid) = passwd_ids(&user.name);
        users.push(user);
    }
    users
}

/// The uid and primary gid of `name` in /etc/passwd.
pub fn passwd_ids(name: &str) -> (u32, u32) {
    let passwd = fs::read_to_string("/etc/passwd").expect("read /etc/passwd");
    let line = passwd
        .lines()
        .find(|l| l.split(':').next() == Some(name))
        .unwrap_or_else(|| panic!("{name} is not in /etc/passwd"));
    let fields: Vec<&str> = line.split(':').collect();
    (fields[2].parse().expect("uid"), fields[3].parse().expect("gid"))
}

/// The name of `uid` in /etc/passwd.
pub fn passwd_name(uid: u32) -> String {
    let passwd = fs::read_to_string("/etc/passwd").expect("read /etc/passwd");
    passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() > 2 && f[2].parse() == Ok(uid))
        .map(|f| f[0].to_owned())
        .unwrap_or_else(|| panic!("uid {uid} is not in /etc/passwd"))
}

impl Drop for TestUser {
    fn drop(&mut self) {
        if self.fixed {
            return;
        }
        let Some(userdel) = tool("userdel") else {
            eprintln!("warning: no userdel to remove test user {}", self.name);
            return;
        };
        // 6: no such user.
        let o = user_tool(&userdel, &[&self.name], &[0, 6]);
        if !matches!(o.status.code(), Some(0 | 6)) {
            eprintln!("warning: userdel {}: {}\n{}{}", self.name, o.status, o.stdout, o.stderr);
        }
    }
}
