//! Samba attribution (docs/events.md, "The client a Samba `smbd` serves"): a real `smbd`
//! serves a share over a directory that an `enforce` policy protects, and `smbclient` reads a
//! protected file through it. The record of the `smbd` access names the Samba user, the
//! client's address and port and the bytes read; a user the policy denies gets
//! `NT_STATUS_ACCESS_DENIED` on the client and the decision names them and their client.
//!
//! The test runs its own `smbd` (`cargo xtask setup` installs `samba` and `smbclient`): its own
//! configuration, password database (`tdbsam`), lock, state, cache and pid directories in a
//! temp dir, listening on 127.0.0.1 only (`interfaces = lo`, `bind interfaces only`) on a
//! free port; it is stopped by PID at the end, also on failure. Its users are created with
//! `useradd` and removed on drop. The expected client port comes from the client's side: the
//! source port of `smbclient`'s own connection, read from its `/proc/<pid>/fd` and
//! `/proc/<pid>/net/tcp` while it is connected and waiting for its command. Not run in the
//! busybox VM, which has no Samba (`HOST_ONLY` in xtask/src/vm/mod.rs).

use std::{
    collections::HashSet,
    fs,
    io::Write as _,
    os::unix::{
        fs::{MetadataExt as _, PermissionsExt as _},
        process::CommandExt as _,
    },
    path::{Path, PathBuf},
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use mnsensor_tests::{
    ChildGuard, Sensor, TempDir, find_tool, get_str, get_u64, is, path_str, receivers::free_port,
    run_capture, scaled, show, util::COMMAND_TIMEOUT, util::read_lossy,
};
use serde_json::Value;

/// Deadline for `smbd` to listen, a client to connect or finish (scaled).
const SMB_TIMEOUT: Duration = Duration::from_secs(30);
/// Size of the protected file: more than one SMB read.
const FILE_SIZE: usize = 300_000;
/// The sensor's enforcement settings: a late decision refuses.
const CONFIG: &str = "enforcement:\n  deadline_ms: 10000\n  fail_mode: closed\n";

/// A user created with `useradd` for this test, with a Samba password; removed on drop.
struct SmbUser {
    name: String,
    uid: u32,
    password: String,
}

impl SmbUser {
    fn new() -> Self {
        let uuid = fs::read_to_string("/proc/sys/kernel/random/uuid").expect("read a random uuid");
        let tag = &uuid.trim().replace('-', "")[..12];
        let name = format!("mnt_{tag}");
        run_ok(Command::new(find_tool("useradd")).args(["-M", "-N", "-s", "/usr/sbin/nologin", &name]));
        let mut user = Self { name, uid: u32::MAX, password: format!("pw-{tag}") };
        let passwd = fs::read_to_string("/etc/passwd").expect("read /etc/passwd");
        let line =
            passwd.lines().find(|l| l.split(':').next() == Some(user.name.as_str())).expect("new user");
        user.uid = line.split(':').nth(2).and_then(|u| u.parse().ok()).expect("uid");
        user
    }
}

impl Drop for SmbUser {
    fn drop(&mut self) {
        let o = run_capture(Command::new(find_tool("userdel")).arg(&self.name), scaled(COMMAND_TIMEOUT));
        if !o.status.success() {
            eprintln!("warning: userdel {}: {}\n{}{}", self.name, o.status, o.stdout, o.stderr);
        }
    }
}

#[track_caller]
fn run_ok(cmd: &mut Command) -> String {
    let o = run_capture(cmd, scaled(COMMAND_TIMEOUT));
    assert!(o.status.success(), "{cmd:?}: {}\n{}{}", o.status, o.stdout, o.stderr);
    o.stdout
}

/// The test's own `smbd`, in a process group of its own: the group is stopped (SIGTERM, then
/// SIGKILL) on drop.
struct Smbd {
    child: ChildGuard,
    port: u16,
    conf: PathBuf,
    dir: PathBuf,
}

impl Smbd {
    /// Writes `smb.conf` in `dir` with a read-only share `share` over `share_path`, adds
    /// `users` to its password database and starts `smbd` in the foreground.
    fn start(dir: &Path, share_path: &Path, users: &[&SmbUser]) -> Self {
        let port = free_port();
        let d = |name: &str| {
            let p = dir.join(name);
            fs::create_dir_all(&p).unwrap_or_else(|e| panic!("mkdir {}: {e}", p.display()));
            p.display().to_string()
        };
        let conf_text = format!(
            "[global]\n  server role = standalone server\n  interfaces = lo\n  bind interfaces only = yes\n  \
             smb ports = {port}\n  disable netbios = yes\n  load printers = no\n  printing = bsd\n  \
             printcap name = /dev/null\n  disable spoolss = yes\n  map to guest = never\n  \
             passdb backend = tdbsam:{private}/passdb.tdb\n  private dir = {private}\n  lock directory = {lock}\n  \
             state directory = {state}\n  cache directory = {cache}\n  pid directory = {pid}\n  \
             ncalrpc dir = {ncalrpc}\n  log file = {log}/log.%m\n  log level = 1\n\
             [share]\n  path = {share}\n  read only = yes\n",
            private = d("private"),
            lock = d("lock"),
            state = d("state"),
            cache = d("cache"),
            pid = d("pid"),
            ncalrpc = d("ncalrpc"),
            log = d("log"),
            share = path_str(share_path),
        );
        let conf = dir.join("smb.conf");
        fs::write(&conf, conf_text).expect("write smb.conf");
        for user in users {
            let mut cmd = Command::new(find_tool("smbpasswd"));
            cmd.args(["-c", path_str(&conf), "-a", "-s", &user.name]).stdin(Stdio::piped());
            let mut child = ChildGuard::spawn(cmd.stdout(Stdio::null()));
            let pw = format!("{0}\n{0}\n", user.password);
            child
                .child_mut()
                .stdin
                .take()
                .expect("stdin")
                .write_all(pw.as_bytes())
                .expect("write the password");
            let status = child.wait_timeout(scaled(COMMAND_TIMEOUT));
            assert!(status.success(), "smbpasswd -a {}: {status}", user.name);
        }
        let out = fs::File::create(dir.join("smbd.out")).expect("create smbd.out");
        let child = ChildGuard::spawn(
            Command::new(find_tool("smbd"))
                .args(["--foreground", "--no-process-group", "--debug-stdout", "-s", path_str(&conf)])
                // Its own process group: when it stops, smbd signals its whole group.
                .process_group(0)
                .stdout(out.try_clone().expect("dup"))
                .stderr(out),
        );
        let smbd = Self { child, port, conf, dir: dir.to_owned() };
        let deadline = Instant::now() + scaled(SMB_TIMEOUT);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "smbd did not listen on 127.0.0.1:{port}:\n{}", smbd.log());
            thread::sleep(Duration::from_millis(50));
        }
        smbd
    }

    fn pid(&self) -> u32 {
        self.child.pid()
    }

    fn log(&self) -> String {
        read_lossy(&self.dir.join("smbd.out"))
    }

    /// Runs `smbclient` as `user` with `command`. Waits until it is connected (before it is
    /// given the command) and reads the source port of its connection to `smbd` from its own
    /// descriptors; returns that port and what it printed.
    fn client(&self, user: &SmbUser, command: &str) -> (u16, String) {
        let dir = TempDir::new("smbclient");
        let out_path = dir.join("out");
        let out = fs::File::create(&out_path).expect("create smbclient output");
        let mut client = ChildGuard::spawn(
            Command::new(find_tool("smbclient"))
                .arg("//127.0.0.1/share")
                .args(["-p", &self.port.to_string(), "-s", path_str(&self.conf)])
                .arg("-U")
                .arg(format!("{}%{}", user.name, user.password))
                .stdin(Stdio::piped())
                .stdout(out.try_clone().expect("dup"))
                .stderr(out),
        );
        let pid = client.pid();
        let deadline = Instant::now() + scaled(SMB_TIMEOUT);
        let port = loop {
            if let Some(port) = source_port(pid, self.port) {
                break port;
            }
            let exited = client.child_mut().try_wait().expect("try_wait").is_some();
            assert!(
                !exited && Instant::now() < deadline,
                "smbclient as {} did not connect to smbd:\n{}\nsmbd:\n{}",
                user.name,
                read_lossy(&out_path),
                self.log()
            );
            thread::sleep(Duration::from_millis(20));
        };
        let mut stdin = client.child_mut().stdin.take().expect("stdin");
        stdin.write_all(format!("{command}\nquit\n").as_bytes()).expect("write the smbclient command");
        drop(stdin);
        client.wait_timeout(scaled(SMB_TIMEOUT));
        (port, read_lossy(&out_path))
    }
}

impl Drop for Smbd {
    fn drop(&mut self) {
        // smbd runs in a process group of its own (it signals its group when it stops): the
        // group is it and its children.
        let group = -(self.pid() as i32);
        // SAFETY: kill(2) of the process group of the smbd this test started.
        unsafe { libc::kill(group, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && self.child.child_mut().try_wait().ok().flatten().is_none() {
            thread::sleep(Duration::from_millis(50));
        }
        // SAFETY: as above; whatever of the group is left.
        unsafe { libc::kill(group, libc::SIGKILL) };
        // The guard reaps smbd.
    }
}

/// The local port of `pid`'s established IPv4 TCP connection to 127.0.0.1:`port`, from its
/// descriptors and `/proc/<pid>/net/tcp`.
fn source_port(pid: u32, port: u16) -> Option<u16> {
    let sockets: HashSet<String> = fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()?
        .flatten()
        .filter_map(|e| fs::read_link(e.path()).ok())
        .filter_map(|t| Some(t.to_str()?.strip_prefix("socket:[")?.strip_suffix(']')?.to_owned()))
        .collect();
    let table = fs::read_to_string(format!("/proc/{pid}/net/tcp")).ok()?;
    table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        let hex_port = |addr: &str| u16::from_str_radix(addr.rsplit(':').next()?, 16).ok();
        let ours = f.len() > 9 && f[3] == "01" && sockets.contains(f[9]);
        // 0100007F: 127.0.0.1 in the table's byte order.
        (ours && f[2].starts_with("0100007F:") && hex_port(f[2]) == Some(port)).then(|| hex_port(f[1]))?
    })
}

/// The records of `smbd` processes naming `file`.
fn smbd_records<'a>(events: &'a [Value], file: &Path) -> impl Iterator<Item = &'a Value> {
    events.iter().filter(move |e| {
        e.get("process.executable.name").and_then(Value::as_str) == Some("smbd")
            && e.get("file.path").and_then(Value::as_str) == file.to_str()
    })
}

#[test]
fn smbd_access_names_the_samba_user_and_client_and_a_denied_user_is_refused() {
    let (staff, outsider) = (SmbUser::new(), SmbUser::new());
    let tmp = TempDir::new("samba");
    let share = tmp.mkdir("share");
    let protected = tmp.mkdir("share/mynumber");
    let policies = tmp.mkdir("policies");
    let content: Vec<u8> = (0..FILE_SIZE).map(|i| (i * 7 % 251) as u8).collect();
    let file = protected.join("2026.csv");
    fs::write(&file, &content).expect("write the protected file");
    // Readable by the test users under DAC: the policy is the only barrier.
    for (p, mode) in
        [(tmp.path(), 0o755), (&share, 0o755), (&protected, 0o755), (&policies, 0o755), (&file, 0o644)]
    {
        fs::set_permissions(p, fs::Permissions::from_mode(mode))
            .unwrap_or_else(|e| panic!("chmod {}: {e}", p.display()));
    }
    let policy = format!(
        "apiVersion: mnsensor/v1\nkind: AccessPolicy\nmetadata: {{name: smb-payroll}}\nspec:\n  mode: enforce\n  \
         protect: [{{path: \"{}\"}}]\n  allow:\n    - name: staff\n      subjects: [{{user: {}}}]\n  \
         default: {{action: deny, severity: high}}\n",
        path_str(&protected),
        staff.name
    );
    fs::write(policies.join("10-smb.yaml"), policy).expect("write the policy");
    let config = tmp.write("config.yaml", CONFIG);
    let mut sensor = Sensor::start(&["--config", path_str(&config), "--policy", path_str(&policies)]);
    let smbd = Smbd::start(&tmp.mkdir("smbd"), &share, &[&staff, &outsider]);

    // The allowed user reads the whole file.
    let copy = tmp.join("copy");
    let (staff_port, out) = smbd.client(&staff, &format!("get mynumber/2026.csv {}", path_str(&copy)));
    assert_eq!(fs::read(&copy).ok().as_deref(), Some(&content[..]), "staff's copy; smbclient said:\n{out}");
    // The denied user is refused on the client.
    let (outsider_port, out) = smbd.client(&outsider, "get mynumber/2026.csv /dev/null");
    assert!(
        out.contains("NT_STATUS_ACCESS_DENIED"),
        "outsider must get NT_STATUS_ACCESS_DENIED; smbclient said:\n{out}"
    );

    let file = fs::canonicalize(&file).expect("canonical path");
    let ino = fs::metadata(&file).expect("stat").ino();
    let smbd_pid = u64::from(smbd.pid());
    // The close comes when smbd's child closes the file for the client, which a loaded
    // machine can delay past the usual record deadline: smbd's own deadline applies.
    let close = sensor.wait_for_within("the file.close of staff's smbd read", scaled(SMB_TIMEOUT), |e| {
        is(e, "file.close")
            && smbd_records(std::slice::from_ref(e), &file).next().is_some()
            && e.get("mnsensor.smb.user.name").and_then(Value::as_str) == Some(staff.name.as_str())
            && e.get("mnsensor.file.bytes_read").and_then(Value::as_u64).is_some_and(|b| b > 0)
    });
    let decision = sensor.wait_for("the decision refusing the outsider", |e| {
        is(e, "policy.decision")
            && e.get("process.user.id").and_then(Value::as_u64) == Some(u64::from(outsider.uid))
    });
    drop(smbd);
    sensor.stop();

    let ctx = show(&close);
    assert_eq!(get_str(&close, "client.address"), "127.0.0.1", "{ctx}");
    assert_eq!(get_u64(&close, "client.port"), u64::from(staff_port), "smbclient's source port: {ctx}");
    assert_eq!(get_u64(&close, "process.user.id"), u64::from(staff.uid), "{ctx}");
    assert_eq!(get_u64(&close, "process.parent_pid"), smbd_pid, "a child of the test's smbd: {ctx}");
    assert_eq!(get_u64(&close, "file.inode"), ino, "{ctx}");
    assert_eq!(get_u64(&close, "mnsensor.file.bytes_read"), FILE_SIZE as u64, "the file's size: {ctx}");

    let ctx = show(&decision);
    assert_eq!(get_str(&decision, "mnsensor.decision"), "deny", "{ctx}");
    assert_eq!(get_str(&decision, "mnsensor.policy.name"), "smb-payroll", "{ctx}");
    assert_eq!(get_str(&decision, "process.executable.name"), "smbd", "{ctx}");
    assert_eq!(get_str(&decision, "process.user.name"), outsider.name, "{ctx}");
    assert_eq!(get_str(&decision, "mnsensor.smb.user.name"), outsider.name, "{ctx}");
    assert_eq!(get_str(&decision, "client.address"), "127.0.0.1", "{ctx}");
    assert_eq!(get_u64(&decision, "client.port"), u64::from(outsider_port), "smbclient's source port: {ctx}");
    assert_eq!(get_u64(&decision, "process.parent_pid"), smbd_pid, "{ctx}");
    assert_eq!(get_str(&decision, "file.path"), path_str(&file), "{ctx}");

    // No smbd record of the protected file names the outsider as having read it.
    let events = sensor.events().to_vec();
    let leaked: Vec<String> = smbd_records(&events, &file)
        .filter(|e| {
            is(e, "file.close")
                && e.get("process.user.id").and_then(Value::as_u64) == Some(u64::from(outsider.uid))
        })
        .filter(|e| e.get("mnsensor.file.bytes_read").and_then(Value::as_u64).unwrap_or(0) > 0)
        .map(show)
        .collect();
    assert!(leaked.is_empty(), "the outsider read the file through smbd:\n{}", leaked.join("\n"));
}
