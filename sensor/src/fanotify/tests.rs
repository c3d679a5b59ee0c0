//! Real-kernel tests (root). Marks are placed only on temporary directories these tests
//! create; every responder is stopped by its guard (drop), also when an assertion fails, and
//! every child process is waited for or killed by the test that started it.
use std::{
    os::unix::fs::{MetadataExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
    process::{Command, ExitStatus, Stdio},
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use super::*;

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// `n` milliseconds times `MNSENSOR_TEST_TIMEOUT_SCALE` (docs/testing.md). Every time in these
/// tests (deadlines, callback delays, ceilings and waits) goes through it, so the ratios the
/// tests rely on (a ceiling below a deadline, a deadline below a callback's delay) hold on a
/// slow machine too.
fn ms(n: u64) -> Duration {
    let scale = std::env::var("MNSENSOR_TEST_TIMEOUT_SCALE").ok().and_then(|s| s.parse::<f64>().ok());
    Duration::from_millis(n).mul_f64(scale.filter(|f| *f > 0.0).unwrap_or(1.0))
}

/// A temporary directory, removed on drop.
struct TempTree(PathBuf);

impl TempTree {
    fn new() -> Self {
        let base = std::env::temp_dir().join(format!(
            "mnsensor-fan-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir(&base).expect("create temp dir");
        Self(base.canonicalize().expect("canonicalize temp dir"))
    }
    fn path(&self) -> &Path {
        &self.0
    }
    fn join(&self, p: &str) -> PathBuf {
        self.0.join(p)
    }
}

impl Drop for TempTree {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct Ran {
    pid: u32,
    status: ExitStatus,
    stdout: String,
    stderr: String,
    elapsed: Duration,
}

/// Runs a child to completion (killed after 5 s: the test then fails).
fn run(prog: &str, args: &[&str]) -> Ran {
    let start = Instant::now();
    let mut child = Command::new(prog)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn child");
    let pid = child.id();
    loop {
        if child.try_wait().expect("try_wait").is_some() {
            break;
        }
        if start.elapsed() > ms(5000) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("child {prog} {args:?} (pid {pid}) did not finish in {:?}", ms(5000));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let elapsed = start.elapsed();
    let out = child.wait_with_output().expect("collect output");
    Ran {
        pid,
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        elapsed,
    }
}

fn sh(script: &str) -> Ran {
    run("/bin/sh", &["-c", script])
}

fn cat(p: &Path) -> Ran {
    run("/bin/cat", &[p.to_str().unwrap()])
}

/// Reads events until `done` holds over everything read so far, or `timeout`.
fn collect(obs: &mut Observer, timeout: Duration, done: impl Fn(&[FsEvent]) -> bool) -> Vec<FsEvent> {
    let start = Instant::now();
    let mut all = Vec::new();
    loop {
        let mut pfd = [libc::pollfd { fd: obs.as_fd().as_raw_fd(), events: libc::POLLIN, revents: 0 }];
        let _ = sys::poll(&mut pfd, 20);
        all.extend(obs.read_events().expect("read_events"));
        if done(&all) || start.elapsed() > timeout {
            return all;
        }
    }
}

fn has(evs: &[FsEvent], pid: u32, kind: FsEventKind, path: &Path) -> bool {
    evs.iter().any(|e| e.pid == pid && e.kind == kind && e.path == path)
}

fn find<'a>(evs: &'a [FsEvent], pid: u32, kind: FsEventKind, path: &Path) -> &'a FsEvent {
    evs.iter()
        .find(|e| e.pid == pid && e.kind == kind && e.path == path)
        .unwrap_or_else(|| panic!("no {kind:?} by pid {pid} on {}; got {evs:#?}", path.display()))
}

use std::os::fd::{AsFd as _, AsRawFd as _};

/// How long an expected fanotify record may take (scaled by [`ms`]).
fn wait() -> Duration {
    ms(3000)
}

#[test]
fn probe_reports_features() {
    let f = probe().expect("fanotify usable");
    // The test VM runs 6.18: FAN_REPORT_TARGET_FID and FAN_RENAME (5.17) must be found.
    assert!(f.target_fid_and_rename, "{f:?}");
}

#[test]
fn observer_content_events_carry_pid_and_identity() {
    let t = TempTree::new();
    let f = t.join("data.txt");
    std::fs::write(&f, "hello\n").unwrap();
    let meta = std::fs::metadata(&f).unwrap();
    let mut obs = Observer::new(&[t.path().to_path_buf()]).unwrap();

    let r = cat(&f);
    assert!(r.status.success());
    let evs = collect(&mut obs, wait(), |e| has(e, r.pid, FsEventKind::CloseNoWrite, &f));
    for kind in [FsEventKind::Open, FsEventKind::Access, FsEventKind::CloseNoWrite] {
        let e = find(&evs, r.pid, kind, &f);
        assert_eq!((e.dev, e.ino), (Some(meta.dev()), Some(meta.ino())), "{e:?}");
        assert_eq!(e.size, Some(6));
        assert!(!e.is_dir);
    }

    let w = sh(&format!("echo more >> '{}'", f.display()));
    assert!(w.status.success());
    let evs = collect(&mut obs, wait(), |e| has(e, w.pid, FsEventKind::CloseWrite, &f));
    for kind in [FsEventKind::Open, FsEventKind::Modify, FsEventKind::CloseWrite] {
        let e = find(&evs, w.pid, kind, &f);
        assert_eq!(e.ino, Some(meta.ino()));
    }
    // The write's FAN_MODIFY also reached the FID group; its copy must be folded away.
    let modifies = evs.iter().filter(|e| e.pid == w.pid && e.kind == FsEventKind::Modify).count();
    assert_eq!(modifies, 1, "{evs:#?}");
    assert_eq!(find(&evs, w.pid, FsEventKind::CloseWrite, &f).size, Some(11));

    // Our own accesses are dropped.
    let _ = std::fs::read(&f).unwrap();
    std::fs::write(t.join("own"), "x").unwrap();
    let evs = collect(&mut obs, ms(300), |_| false);
    let own = std::process::id();
    assert!(evs.iter().all(|e| e.pid != own), "{evs:#?}");
}

#[test]
fn observer_follows_directories_created_after_start() {
    let t = TempTree::new();
    let mut obs = Observer::new(&[t.path().to_path_buf()]).unwrap();
    assert_eq!(obs.marked(), 1);
    let sub = t.join("sub");
    // `a/b` and the file appear before the observer can mark `a`: the walk of `a` on its
    // FAN_CREATE must find `b`.
    let mk = run("/bin/mkdir", &[sub.to_str().unwrap()]);
    let evs = collect(&mut obs, wait(), |e| has(e, mk.pid, FsEventKind::Create, &sub));
    assert!(find(&evs, mk.pid, FsEventKind::Create, &sub).is_dir);
    let deep = sub.join("a/b/h");
    let mk2 = sh(&format!("mkdir -p '{}' && echo hi > '{}'", sub.join("a/b").display(), deep.display()));
    assert!(mk2.status.success());
    let _ = collect(&mut obs, wait(), |e| {
        e.iter().any(|e| e.kind == FsEventKind::Create && e.path == sub.join("a"))
    });
    assert!(obs.marked() >= 4, "marked {}", obs.marked());

    let g = sub.join("g");
    let w = sh(&format!("echo hi > '{}'", g.display()));
    let r = cat(&g);
    let r2 = cat(&deep);
    assert!(r.status.success() && r2.status.success());
    let evs = collect(&mut obs, wait(), |e| {
        has(e, r.pid, FsEventKind::CloseNoWrite, &g) && has(e, r2.pid, FsEventKind::CloseNoWrite, &deep)
    });
    assert!(has(&evs, w.pid, FsEventKind::Create, &g), "{evs:#?}");
    assert!(has(&evs, w.pid, FsEventKind::CloseWrite, &g), "{evs:#?}");
    let e = find(&evs, r.pid, FsEventKind::Open, &g);
    assert_eq!(e.ino, Some(std::fs::metadata(&g).unwrap().ino()));
    find(&evs, r2.pid, FsEventKind::Open, &deep);
}

#[test]
fn observer_namespace_events() {
    let t = TempTree::new();
    let mut obs = Observer::new(&[t.path().to_path_buf()]).unwrap();
    let (a, b) = (t.join("a"), t.join("b"));

    let touch = run("/usr/bin/touch", &[a.to_str().unwrap()]);
    let evs = collect(&mut obs, wait(), |e| has(e, touch.pid, FsEventKind::Create, &a));
    let c = find(&evs, touch.pid, FsEventKind::Create, &a);
    let meta = std::fs::metadata(&a).unwrap();
    assert!(!c.is_dir);
    assert!(c.handle.is_some(), "FAN_REPORT_TARGET_FID gives the child's handle");
    assert_eq!((c.dev, c.ino), (Some(meta.dev()), Some(meta.ino())), "{c:?}");

    let mv = run("/bin/mv", &[a.to_str().unwrap(), b.to_str().unwrap()]);
    let evs = collect(&mut obs, wait(), |e| has(e, mv.pid, FsEventKind::MovedTo, &b));
    let r = find(&evs, mv.pid, FsEventKind::Rename, &b);
    assert_eq!(r.old_path.as_deref(), Some(a.as_path()));
    assert_eq!(r.ino, Some(meta.ino()));
    find(&evs, mv.pid, FsEventKind::MovedFrom, &a);

    let ch = run("/bin/chmod", &["600", b.to_str().unwrap()]);
    let tr = run("/usr/bin/truncate", &["-s", "3", b.to_str().unwrap()]);
    let rm = run("/bin/rm", &[b.to_str().unwrap()]);
    let evs = collect(&mut obs, wait(), |e| has(e, rm.pid, FsEventKind::Delete, &b));
    find(&evs, ch.pid, FsEventKind::Attrib, &b);
    // truncate(2) reaches only the FID group (no path in the event).
    assert!(has(&evs, tr.pid, FsEventKind::Modify, &b), "{evs:#?}");
    assert!(!find(&evs, rm.pid, FsEventKind::Delete, &b).is_dir);

    // Directories: create, rename (the map follows), delete.
    let (d1, d2) = (t.join("d1"), t.join("d2"));
    let mk = run("/bin/mkdir", &[d1.to_str().unwrap()]);
    let mv = run("/bin/mv", &[d1.to_str().unwrap(), d2.to_str().unwrap()]);
    let evs = collect(&mut obs, wait(), |e| has(e, mv.pid, FsEventKind::Rename, &d2));
    assert!(find(&evs, mk.pid, FsEventKind::Create, &d1).is_dir);
    assert!(find(&evs, mv.pid, FsEventKind::Rename, &d2).is_dir);
    let x = d2.join("x");
    let touch = run("/usr/bin/touch", &[x.to_str().unwrap()]);
    let evs = collect(&mut obs, wait(), |e| has(e, touch.pid, FsEventKind::Create, &x));
    find(&evs, touch.pid, FsEventKind::Create, &x);
    let rm = run("/bin/rm", &["-r", d2.to_str().unwrap()]);
    let evs = collect(&mut obs, wait(), |e| has(e, rm.pid, FsEventKind::DeleteSelf, &d2));
    assert!(find(&evs, rm.pid, FsEventKind::Delete, &d2).is_dir);
    find(&evs, rm.pid, FsEventKind::Delete, &x);
    assert_eq!(obs.marked(), 1, "deleted directories leave the map");
}

#[test]
fn observer_unwatches_directories_moved_out() {
    let t = TempTree::new();
    let outside = TempTree::new(); // never marked
    let mut obs = Observer::new(&[t.path().to_path_buf()]).unwrap();
    let (d, f) = (t.join("d"), t.join("d/f"));
    let mk = run("/bin/mkdir", &[d.to_str().unwrap()]);
    let _ = collect(&mut obs, wait(), |e| has(e, mk.pid, FsEventKind::Create, &d));
    let w = sh(&format!("echo x > '{}'", f.display()));
    let evs = collect(&mut obs, wait(), |e| has(e, w.pid, FsEventKind::CloseWrite, &f));
    assert!(has(&evs, w.pid, FsEventKind::CloseWrite, &f), "{evs:#?}");
    assert_eq!(obs.marked(), 2);
    let gone = outside.join("d");
    let mv = run("/bin/mv", &[d.to_str().unwrap(), gone.to_str().unwrap()]);
    let evs = collect(&mut obs, wait(), |e| has(e, mv.pid, FsEventKind::MovedFrom, &d));
    // The new side is outside every tree: resolved through open_by_handle_at.
    assert_eq!(find(&evs, mv.pid, FsEventKind::Rename, &gone).old_path.as_deref(), Some(d.as_path()));
    assert_eq!(obs.marked(), 1, "the moved-out directory lost its marks");
    let r = cat(&gone.join("f"));
    assert!(r.status.success());
    let evs = collect(&mut obs, ms(300), |_| false);
    assert!(evs.iter().all(|e| e.pid != r.pid), "{evs:#?}");
}

#[test]
fn observer_watches_single_files() {
    let t = TempTree::new();
    let f = t.join("single");
    std::fs::write(&f, "abc").unwrap();
    let other = t.join("other");
    std::fs::write(&other, "abc").unwrap();
    let mut obs = Observer::new(std::slice::from_ref(&f)).unwrap();
    let r1 = cat(&other);
    let r2 = cat(&f);
    let ch = run("/bin/chmod", &["600", f.to_str().unwrap()]);
    let evs = collect(&mut obs, wait(), |e| has(e, ch.pid, FsEventKind::Attrib, &f));
    find(&evs, r2.pid, FsEventKind::Open, &f);
    assert!(evs.iter().all(|e| e.pid != r1.pid), "the sibling is not watched: {evs:#?}");
    let moved = t.join("moved");
    let mv = run("/bin/mv", &[f.to_str().unwrap(), moved.to_str().unwrap()]);
    let evs = collect(&mut obs, wait(), |e| has(e, mv.pid, FsEventKind::MoveSelf, &moved));
    assert_eq!(find(&evs, mv.pid, FsEventKind::MoveSelf, &moved).old_path.as_deref(), Some(f.as_path()));
}

#[test]
fn observer_mark_limit() {
    let t = TempTree::new();
    for d in ["a", "b", "c"] {
        std::fs::create_dir(t.join(d)).unwrap();
    }
    let tight = ObserverOptions { max_marks: 3, ..ObserverOptions::default() };
    match Observer::with_options(&[t.path().to_path_buf()], tight) {
        Err(FanotifyError::TooManyMarks { limit: 3, .. }) => {}
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("4 directories fit in a limit of 3"),
    }
    let exact = ObserverOptions { max_marks: 4, ..ObserverOptions::default() };
    let mut obs = Observer::with_options(&[t.path().to_path_buf()], exact).unwrap();
    let d = t.join("d");
    let _mk = run("/bin/mkdir", &[d.to_str().unwrap()]);
    let evs = collect(&mut obs, wait(), |e| e.iter().any(|e| e.kind == FsEventKind::Unwatched));
    let u = evs.iter().find(|e| e.kind == FsEventKind::Unwatched).expect("Unwatched reported");
    assert_eq!(u.path, d);
}

#[test]
fn observer_reports_queue_overflow() {
    let t = TempTree::new();
    let max: usize = std::fs::read_to_string("/proc/sys/fs/fanotify/max_queued_events")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(16384);
    let mut obs = Observer::new(&[t.path().to_path_buf()]).unwrap();
    // Our own events are filtered, but they fill the kernel queue all the same. Renames to
    // ever new names are cheap and never merge in the queue (creating files is slow here).
    let mut cur = t.join("n0");
    std::fs::write(&cur, "").unwrap();
    for i in 1..=max + 200 {
        let next = t.path().join(format!("n{i}"));
        std::fs::rename(&cur, &next).unwrap();
        cur = next;
    }
    let evs = collect(&mut obs, wait(), |e| e.iter().any(|e| e.kind == FsEventKind::Overflow));
    assert!(evs.iter().any(|e| e.kind == FsEventKind::Overflow), "{} events, no overflow", evs.len());
    drop(obs);
}

#[test]
fn observer_under_tokio_asyncfd() {
    let t = TempTree::new();
    let f = t.join("x");
    std::fs::write(&f, "1").unwrap();
    let obs = Observer::new(&[t.path().to_path_buf()]).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let mut afd = obs.into_async().unwrap();
        for _ in 0..2 {
            let r = cat(&f);
            let deadline = tokio::time::Instant::now() + wait();
            let mut seen = Vec::new();
            while !has(&seen, r.pid, FsEventKind::CloseNoWrite, &f) {
                match tokio::time::timeout_at(deadline, next_events(&mut afd)).await {
                    Ok(evs) => seen.extend(evs.unwrap()),
                    Err(_) => panic!("no events through AsyncFd: {seen:#?}"),
                }
            }
        }
    });
}

// ---------------------------------------------------------------------------------------
// Responder

fn opts(deadline_ms: u64, fail_mode: FailMode) -> ResponderOptions {
    ResponderOptions { deadline: ms(deadline_ms), fail_mode, ..ResponderOptions::default() }
}

fn denied(r: &Ran) -> bool {
    !r.status.success() && r.stderr.contains("Operation not permitted")
}

#[test]
fn responder_denies_and_allows_by_callback() {
    let t = TempTree::new();
    let (secret, public) = (t.join("secret"), t.join("public"));
    std::fs::write(&secret, "S").unwrap();
    std::fs::write(&public, "P").unwrap();
    let own = std::process::id();
    let own_asked = Arc::new(AtomicU64::new(0));
    let asked = Arc::clone(&own_asked);
    let decide: Decide = Arc::new(move |r: &PermissionRequest| {
        if r.pid == own {
            asked.fetch_add(1, Ordering::Relaxed);
        }
        if r.path.file_name().is_some_and(|n| n == "secret") { Verdict::Deny } else { Verdict::Allow }
    });
    let resp = Responder::start(&[t.path().to_path_buf()], opts(300, FailMode::FailOpen), decide).unwrap();

    let r = cat(&secret);
    assert!(denied(&r), "status {:?} stderr {:?}", r.status, r.stderr);
    assert!(r.elapsed < ms(250), "a verdict, not the deadline: {:?}", r.elapsed);
    let r = cat(&public);
    assert!(r.status.success());
    assert_eq!(r.stdout, "P");

    // This process (where the responder runs) is never asked and never blocked.
    let start = Instant::now();
    assert_eq!(std::fs::read_to_string(&secret).unwrap(), "S");
    assert!(start.elapsed() < ms(100));
    assert_eq!(own_asked.load(Ordering::Relaxed), 0);

    let c = resp.counts();
    assert_eq!((c.denied, c.expired), (1, 0), "{c:?}");
    assert!(c.allowed >= 1 && c.own >= 1, "{c:?}");
    resp.stop();
}

#[test]
fn responder_quick_answers_on_the_reader_thread() {
    let t = TempTree::new();
    let (secret, public) = (t.join("secret"), t.join("public"));
    std::fs::write(&secret, "S").unwrap();
    std::fs::write(&public, "P").unwrap();
    let m = std::fs::metadata(&secret).unwrap();
    let (dev, ino) = (m.dev(), m.ino());
    // The quick answer knows the secret file by (dev, ino) only; the rest goes to `decide`.
    let asked: Arc<std::sync::Mutex<Vec<PathBuf>>> = Arc::default();
    let seen = Arc::clone(&asked);
    let decide: Decide = Arc::new(move |r: &PermissionRequest| {
        seen.lock().unwrap().push(r.path.clone());
        Verdict::Allow
    });
    let quick_pids: Arc<std::sync::Mutex<Vec<u32>>> = Arc::default();
    let qp = Arc::clone(&quick_pids);
    let quick: Quick = Arc::new(move |q: &QuickRequest| {
        (q.dev == dev && q.ino == ino && q.mask.open).then(|| {
            qp.lock().unwrap().push(q.pid);
            Verdict::Deny
        })
    });
    let resp = Responder::start_with_quick(
        &[t.path().to_path_buf()],
        opts(300, FailMode::FailOpen),
        decide,
        Some(quick),
    )
    .unwrap();
    let r = cat(&secret);
    assert!(denied(&r), "status {:?} stderr {:?}", r.status, r.stderr);
    assert_eq!(*quick_pids.lock().unwrap(), vec![r.pid], "the quick answer was asked about cat's open");
    let p = cat(&public);
    assert!(p.status.success() && p.stdout == "P", "{:?} {:?}", p.status, p.stderr);
    let asked = asked.lock().unwrap().clone();
    assert!(!asked.contains(&secret), "the worker was not asked about the quick answer's file: {asked:?}");
    assert!(asked.contains(&public), "the rest went to the worker: {asked:?}");
    let c = resp.counts();
    assert_eq!((c.denied, c.expired, c.failed), (1, 0, 0), "{c:?}");
    resp.stop();
}

#[test]
fn responder_fail_closed_on_deadline() {
    let t = TempTree::new();
    let f = t.join("f");
    std::fs::write(&f, "x").unwrap();
    let decide: Decide = Arc::new(|_: &PermissionRequest| {
        std::thread::sleep(ms(600));
        Verdict::Allow
    });
    let mut resp =
        Responder::start(&[t.path().to_path_buf()], opts(100, FailMode::FailClosed), decide).unwrap();
    let mut notices = resp.notices().unwrap();
    let r = cat(&f);
    assert!(denied(&r), "fail-closed denies: {:?} {:?}", r.status, r.stderr);
    assert!(r.elapsed < ms(450), "answered at the deadline: {:?}", r.elapsed);
    let n = notices.try_recv().expect("a DeadlineExpired notice");
    assert_eq!(n, Notice::DeadlineExpired { pid: r.pid, path: f, applied: Verdict::Deny });
    assert_eq!(resp.counts().expired, 1);
    assert_eq!(resp.counts().allowed, 0, "the late Allow is discarded");
}

#[test]
fn responder_fail_open_on_deadline() {
    let t = TempTree::new();
    let f = t.join("f");
    std::fs::write(&f, "x").unwrap();
    let decide: Decide = Arc::new(|_: &PermissionRequest| {
        std::thread::sleep(ms(600));
        Verdict::Deny
    });
    let mut resp =
        Responder::start(&[t.path().to_path_buf()], opts(100, FailMode::FailOpen), decide).unwrap();
    let mut notices = resp.notices().unwrap();
    let r = cat(&f);
    assert!(r.status.success(), "fail-open allows although the callback would deny: {:?}", r.stderr);
    assert!(r.elapsed < ms(450), "{:?}", r.elapsed);
    match notices.try_recv() {
        Ok(Notice::DeadlineExpired { pid, applied: Verdict::Allow, .. }) => assert_eq!(pid, r.pid),
        other => panic!("expected DeadlineExpired, got {other:?}"),
    }
    assert_eq!(resp.counts().expired, 1);
}

#[test]
fn responder_stop_releases_the_tree() {
    let t = TempTree::new();
    let f = t.join("f");
    std::fs::write(&f, "x").unwrap();
    let decide: Decide = Arc::new(|_: &PermissionRequest| Verdict::Deny);
    let resp = Responder::start(&[t.path().to_path_buf()], opts(300, FailMode::FailOpen), decide).unwrap();
    assert!(denied(&cat(&f)));
    resp.stop();
    let r = cat(&f);
    assert!(r.status.success(), "after stop() nothing is intercepted: {:?}", r.stderr);
}

#[test]
fn responder_answers_pending_requests_on_stop() {
    let t = TempTree::new();
    let f = t.join("f");
    std::fs::write(&f, "x").unwrap();
    // The callback says when `cat`'s request is pending (a barrier, not a sleep).
    let (asked, pending) = std::sync::mpsc::channel::<()>();
    let asked = std::sync::Mutex::new(asked);
    let decide: Decide = Arc::new(move |_: &PermissionRequest| {
        let _ = asked.lock().map(|a| a.send(()));
        std::thread::sleep(ms(1500));
        Verdict::Deny
    });
    // Long deadline and fail-closed: only the shutdown can let `cat` through quickly.
    let resp = Responder::start(&[t.path().to_path_buf()], opts(3000, FailMode::FailClosed), decide).unwrap();
    let mut child =
        Command::new("/bin/cat").arg(&f).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    if pending.recv_timeout(ms(5000)).is_err() {
        let _ = child.kill();
        let _ = child.wait();
        panic!("cat's open never reached the decide callback");
    }
    let start = Instant::now();
    resp.stop();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > ms(5000) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("cat still blocked after stop()");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    assert!(status.success());
    assert!(start.elapsed() < ms(1000), "{:?}", start.elapsed());
}

#[test]
fn responder_covers_new_directories_and_exec() {
    let t = TempTree::new();
    let prog = t.join("prog");
    std::fs::copy("/bin/true", &prog).unwrap();
    std::fs::set_permissions(&prog, std::fs::Permissions::from_mode(0o755)).unwrap();
    let decide: Decide = Arc::new(|r: &PermissionRequest| {
        if r.mask.exec || r.path.file_name().is_some_and(|n| n == "blocked") {
            Verdict::Deny
        } else {
            Verdict::Allow
        }
    });
    let resp = Responder::start(&[t.path().to_path_buf()], opts(300, FailMode::FailOpen), decide).unwrap();

    let err = Command::new(&prog).status().expect_err("exec is denied");
    assert_eq!(err.raw_os_error(), Some(libc::EPERM), "{err}");

    let sub = t.join("new/deeper");
    let blocked = sub.join("blocked");
    // Written under another name (the write-open may already be intercepted), then renamed.
    let tmp = sub.join("tmp");
    let script = format!(
        "mkdir -p '{}' && echo s > '{}' && mv '{}' '{}'",
        sub.display(),
        tmp.display(),
        tmp.display(),
        blocked.display()
    );
    assert!(sh(&script).status.success());
    let start = Instant::now();
    loop {
        let r = cat(&blocked);
        if denied(&r) {
            break;
        }
        assert!(start.elapsed() < wait(), "opens in a new directory are never intercepted");
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(resp);
    assert!(cat(&blocked).status.success());
}

#[test]
fn responder_access_perm() {
    let t = TempTree::new();
    let f = t.join("f");
    std::fs::write(&f, "x").unwrap();
    let decide: Decide =
        Arc::new(|r: &PermissionRequest| if r.mask.access { Verdict::Deny } else { Verdict::Allow });
    let o = ResponderOptions { access_perm: true, ..opts(300, FailMode::FailOpen) };
    let resp = Responder::start(&[t.path().to_path_buf()], o, decide).unwrap();
    let r = cat(&f);
    assert!(denied(&r), "the open passes, the read is denied: {:?} {:?}", r.status, r.stderr);
    assert!(r.stdout.is_empty());
    let c = resp.counts();
    assert!(c.allowed >= 1 && c.denied >= 1, "{c:?}");
}

/// Waits until `cat path` is refused (the mark for a file created after start is placed as
/// its `FAN_CREATE` is read).
fn until_denied(path: &Path) {
    let start = Instant::now();
    while !denied(&cat(path)) {
        assert!(start.elapsed() < wait(), "{} is never refused", path.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn responder_decides_by_identity_under_every_name() {
    let t = TempTree::new();
    let tree = t.join("tree");
    let out = t.join("out");
    std::fs::create_dir_all(tree.join("sub")).unwrap();
    std::fs::create_dir(&out).unwrap();
    let secret = tree.join("sub/secret");
    std::fs::write(&secret, "S").unwrap();
    std::fs::write(tree.join("public"), "P").unwrap();
    let before = out.join("link-before");
    std::fs::hard_link(&secret, &before).unwrap();
    let outside = out.join("unrelated");
    std::fs::write(&outside, "U").unwrap();
    // The decision names the in-tree file; `opened` is the name used.
    let seen = Arc::new(std::sync::Mutex::new(Vec::<(PathBuf, PathBuf)>::new()));
    let log = Arc::clone(&seen);
    let decide: Decide = Arc::new(move |r: &PermissionRequest| {
        log.lock().unwrap().push((r.path.clone(), r.opened.clone()));
        if r.path.file_name().is_some_and(|n| n.to_string_lossy().starts_with("secret")) {
            Verdict::Deny
        } else {
            Verdict::Allow
        }
    });
    let resp = Responder::start(std::slice::from_ref(&tree), opts(1000, FailMode::FailOpen), decide).unwrap();

    assert!(denied(&cat(&secret)), "the file itself");
    assert!(denied(&cat(&before)), "a hard link made outside the tree before start");
    let after = out.join("link-after");
    std::fs::hard_link(&secret, &after).unwrap();
    assert!(denied(&cat(&after)), "a hard link made outside the tree after start");
    assert!(cat(&tree.join("public")).status.success(), "another file of the tree");
    let r = cat(&outside);
    assert!(r.status.success() && r.stdout == "U", "an unrelated file outside the tree");
    assert!(
        seen.lock().unwrap().contains(&(secret.clone(), after)),
        "decided as the in-tree file, opened as the link: {:?}",
        seen.lock().unwrap()
    );

    // A file created in the tree after start, then linked outside: covered as it appears.
    let fresh = tree.join("sub/secret-new");
    std::fs::write(&fresh, "N").unwrap();
    until_denied(&fresh);
    let fresh_link = out.join("fresh-link");
    std::fs::hard_link(&fresh, &fresh_link).unwrap();
    assert!(denied(&cat(&fresh_link)), "a hard link to a file created after start");

    // A name moved inside the tree follows; a file whose last in-tree name is removed is no
    // longer protected.
    let renamed = tree.join("secret-renamed");
    std::fs::rename(&secret, &renamed).unwrap();
    std::fs::remove_file(&fresh).unwrap();
    let start = Instant::now();
    while denied(&cat(&fresh_link)) {
        assert!(start.elapsed() < wait(), "the link still decides as the removed in-tree name");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(denied(&cat(&before)), "the link of the renamed file");
    assert!(
        seen.lock().unwrap().contains(&(renamed, before.clone())),
        "decided under the new in-tree name: {:?}",
        seen.lock().unwrap()
    );
    resp.stop();
    assert!(cat(&before).status.success(), "after stop() nothing is intercepted");
}

#[test]
fn responder_files_beyond_the_mark_limit_are_decided_through_their_directory() {
    let t = TempTree::new();
    let tree = t.join("tree");
    std::fs::create_dir(&tree).unwrap();
    for n in ["a", "b", "c"] {
        std::fs::write(tree.join(n), n).unwrap();
    }
    let decide: Decide = Arc::new(|_: &PermissionRequest| Verdict::Deny);
    // One directory and one file fit; the other two files get no mark of their own.
    let o = ResponderOptions { max_marks: 2, ..opts(1000, FailMode::FailOpen) };
    let resp = Responder::start(std::slice::from_ref(&tree), o, decide).expect("starts despite the limit");
    let links: Vec<PathBuf> = ["a", "b", "c"]
        .iter()
        .map(|n| {
            let l = t.join(&format!("link-{n}"));
            std::fs::hard_link(tree.join(n), &l).unwrap();
            l
        })
        .collect();
    for n in ["a", "b", "c"] {
        assert!(denied(&cat(&tree.join(n))), "{n} through the tree");
    }
    let through_links = links.iter().filter(|l| denied(&cat(l))).count();
    assert_eq!(through_links, 1, "only the marked file is refused through a link outside");
    resp.stop();
}
