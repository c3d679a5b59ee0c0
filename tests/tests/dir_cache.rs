//! The kernel's caches of directories and files outside the protected trees
//! (`sensor-ebpf/src/path.rs`) are invalidated by directory renames, not by file renames
//! (`sensor-ebpf/src/change.rs`). The generation that invalidates them is read from the
//! daemon's `GENERATION` map (by the ids of the maps the daemon holds); the renames are made
//! here with renameat(2) and single-component names, the form the tracepoint backend can
//! tell a file from a directory by (other forms count as directory renames there).

use std::{
    ffi::CString,
    fs,
    os::{fd::AsRawFd as _, unix::fs::MetadataExt as _},
    path::Path,
};

use mnsensor_tests::{
    Sensor, TempDir, bpf::map_lookup_u64, get_str, get_u64, is, path_str, pid_of, show, test_pid,
};
use serde_json::Value;

const MAP: &str = "GENERATION";

fn generation(sensor: &Sensor) -> u64 {
    map_lookup_u64(sensor.pid(), MAP, 0).expect("GENERATION slot 0")
}

/// renameat(2) of `from` in directory `a` to `to` in directory `b`.
fn renameat(a: &fs::File, from: &str, b: &fs::File, to: &str) {
    let (from_c, to_c) = (CString::new(from).expect("name"), CString::new(to).expect("name"));
    // SAFETY: open directory descriptors and NUL-terminated names.
    let r = unsafe { libc::renameat(a.as_raw_fd(), from_c.as_ptr(), b.as_raw_fd(), to_c.as_ptr()) };
    assert_eq!(r, 0, "renameat {from} -> {to}: {}", std::io::Error::last_os_error());
}

fn dir(path: &Path) -> fs::File {
    fs::File::open(path).unwrap_or_else(|e| panic!("open directory {}: {e}", path.display()))
}

/// Opens `path` and waits for its `file.open` record by this process; checks the record's
/// path and inode against the file.
fn open_matched(sensor: &mut Sensor, path: &Path, what: &str) -> Value {
    drop(fs::File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display())));
    let me = test_pid();
    let want = path_str(path).to_owned();
    let ev = sensor.wait_for(what, |e| {
        is(e, "file.open")
            && pid_of(e) == Some(me)
            && e.get("file.path").and_then(Value::as_str) == Some(&want)
    });
    let ino = fs::metadata(path).expect("stat").ino();
    assert_eq!(get_u64(&ev, "file.inode"), ino, "{what}: {}", show(&ev));
    ev
}

/// A warm cache, then directory renames: the parent of an unrelated tree into a protected
/// tree, and the parent of the protected tree itself. Later opens in the renamed trees are
/// matched, and each directory rename moved the generation.
#[test]
fn a_directory_rename_after_the_cache_is_warm_still_matches() {
    let root = TempDir::new("dircache-dirs");
    let protected = root.mkdir("top/protected");
    let secret = root.write("top/protected/secret.dat", "secret\n");
    let neighbour = root.write("top/other/plain.dat", "plain\n");
    let outside = root.write("unrelated/sub/inner.dat", "inner\n");
    let mut sensor = Sensor::start(&["--protect", path_str(&protected)]);

    // Warm: the protected file is matched, the unrelated ones are cached as clear.
    open_matched(&mut sensor, &secret, "file.open of the protected file (warm-up)");
    for _ in 0..3 {
        drop(fs::File::open(&neighbour).expect("open the neighbour"));
        drop(fs::File::open(&outside).expect("open the unrelated file"));
    }

    // An unrelated directory into the protected tree.
    let g0 = generation(&sensor);
    renameat(&dir(&root.join("unrelated")), "sub", &dir(&protected), "sub");
    let g1 = generation(&sensor);
    assert!(g1 > g0, "the directory rename did not invalidate the cache ({g0} -> {g1})");
    let moved = protected.join("sub/inner.dat");
    let ev = open_matched(&mut sensor, &moved, "file.open in a directory moved into the tree");
    assert_eq!(get_str(&ev, "mnsensor.protected.path"), path_str(&protected), "{}", show(&ev));

    // The parent of the protected tree (and of the cached neighbour) is renamed.
    renameat(&dir(root.path()), "top", &dir(root.path()), "top2");
    let g2 = generation(&sensor);
    assert!(g2 > g1, "renaming the protected tree's parent did not invalidate the cache ({g1} -> {g2})");
    let renamed = root.join("top2/protected/secret.dat");
    let ev = open_matched(&mut sensor, &renamed, "file.open of the protected file after its parent's rename");
    assert!(!get_str(&ev, "mnsensor.protected.path").is_empty(), "{}", show(&ev));
    open_matched(&mut sensor, &root.join("top2/protected/sub/inner.dat"), "file.open in the moved subtree");

    // The neighbour stays outside the protected tree.
    drop(fs::File::open(root.join("top2/other/plain.dat")).expect("open the neighbour"));
    let (sync, me) = (root.write("top2/protected/sync.dat", "sync\n"), test_pid());
    open_matched(&mut sensor, &sync, "sync point");
    sensor.assert_none("records of the unrelated neighbour", |e| {
        pid_of(e) == Some(me) && e.get("file.name").and_then(Value::as_str) == Some("plain.dat")
    });
    sensor.stop();
}

/// File renames keep the caches: many renames of a file move the generation far less than
/// once each (other processes on the machine may rename directories meanwhile, hence a
/// margin), and a cached file renamed into the protected tree is still matched.
#[test]
fn a_file_rename_keeps_the_cache() {
    const RENAMES: u64 = 400;
    let root = TempDir::new("dircache-files");
    let protected = root.mkdir("protected");
    root.write("unrelated/a.dat", "a\n");
    let cached = root.write("unrelated/cached.dat", "cached\n");
    let mut sensor = Sensor::start(&["--protect", path_str(&protected)]);
    for _ in 0..3 {
        drop(fs::File::open(&cached).expect("open the cached file"));
    }

    let unrelated = dir(&root.join("unrelated"));
    let g0 = generation(&sensor);
    for _ in 0..RENAMES / 2 {
        renameat(&unrelated, "a.dat", &unrelated, "b.dat");
        renameat(&unrelated, "b.dat", &unrelated, "a.dat");
    }
    let g1 = generation(&sensor);
    assert!(
        g1 - g0 < RENAMES / 4,
        "{RENAMES} file renames moved the generation by {} (every rename invalidates the cache)",
        g1 - g0
    );

    // A cached file moved into the tree without invalidation: its key holds its parent.
    renameat(&unrelated, "cached.dat", &dir(&protected), "cached.dat");
    let moved = protected.join("cached.dat");
    let ev = open_matched(&mut sensor, &moved, "file.open of a cached file renamed into the tree");
    assert_eq!(get_str(&ev, "mnsensor.protected.path"), path_str(&protected), "{}", show(&ev));
    sensor.stop();
}
