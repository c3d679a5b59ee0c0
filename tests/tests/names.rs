//! File names that are not UTF-8 (docs/events.md, "File names that are not UTF-8";
//! docs/policy.md, "Names that are not UTF-8"): Shift_JIS names and names that differ only in
//! bytes that are not UTF-8, in a protected tree, are reported losslessly. The oracle is the
//! directory itself: `read_dir` gives each name's bytes and `stat` its inode, and each record
//! is found by inode, never by the path the sensor wrote.

use std::{
    collections::{BTreeMap, BTreeSet},
    ffi::OsStr,
    fs,
    io::Read as _,
    os::unix::{
        ffi::{OsStrExt as _, OsStringExt as _},
        fs::{MetadataExt as _, PermissionsExt as _},
        process::CommandExt as _,
    },
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use mnsensor_tests::{
    ChildGuard, Sensor, TempDir, find_tool, get_str, get_str_array, get_u64, has, is, path_str, pid_of,
    scaled, show, test_pid,
};
use serde_json::Value;

const CHILD_TIMEOUT: Duration = Duration::from_secs(30);

/// `マイナンバー.csv` in Shift_JIS/CP932.
const MYNUMBER_SJIS: &[u8] = b"\x83}\x83C\x83i\x83\x93\x83o\x81[.csv";
/// The same with one byte that is not UTF-8 changed (`ン` → `ヴ`).
const MYNUMBER_SJIS_2: &[u8] = b"\x83}\x83C\x83i\x83\x94\x83o\x81[.csv";
/// `人事` in Shift_JIS: a directory.
const JINJI_SJIS: &[u8] = b"\x90l\x8e\x96";

/// The names the test creates below the protected directory: Shift_JIS, two names that
/// differ only in one invalid byte, a Shift_JIS directory, a UTF-8 name whose characters
/// spell another name's display form, and a UTF-8 name with a backslash.
fn names() -> Vec<Vec<u8>> {
    vec![
        MYNUMBER_SJIS.to_vec(),
        MYNUMBER_SJIS_2.to_vec(),
        [JINJI_SJIS, b"/", MYNUMBER_SJIS].concat(),
        b"a\xff.txt".to_vec(),
        b"a\xfe.txt".to_vec(),
        br"a\xff.txt".to_vec(),
        br"back\slash.txt".to_vec(),
        // ソ (`83 5C`): its second byte is a backslash.
        b"\x83\\.txt".to_vec(),
    ]
}

fn os(bytes: &[u8]) -> &OsStr {
    OsStr::from_bytes(bytes)
}

/// RFC 3986 percent-decoding (the test's own decoder of `…path_bytes`).
fn percent_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).expect("hex after %");
            out.push(u8::from_str_radix(hex, 16).unwrap_or_else(|e| panic!("bad escape in {s}: {e}")));
            i += 3;
        } else {
            assert!(
                b[i].is_ascii_alphanumeric() || b"-._~/".contains(&b[i]),
                "unescaped byte {:#x} in {s}",
                b[i]
            );
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

/// The bytes a display form stands for (the test's own decoder: `\\` and `\xNN`; every
/// other `\` is a failure).
fn display_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' {
            out.push(b[i]);
            i += 1;
            continue;
        }
        match b.get(i + 1) {
            Some(b'\\') => {
                out.push(b'\\');
                i += 2;
            }
            Some(b'x') => {
                let hex = std::str::from_utf8(&b[i + 2..i + 4]).expect("two hex digits");
                let byte = u8::from_str_radix(hex, 16).unwrap_or_else(|e| panic!("bad escape in {s}: {e}"));
                assert!(byte >= 0x80, "an ASCII byte escaped in {s}");
                out.push(byte);
                i += 4;
            }
            _ => panic!("a backslash that starts no escape in the display form {s}"),
        }
    }
    out
}

/// Checks a path attribute and its `…path_bytes` companion against `expected` (bytes):
/// the display form decodes to them; the bytes attribute is there exactly when they are not
/// UTF-8, and decodes to them.
fn assert_path_attr(ev: &Value, key: &str, bytes_key: &str, expected: &[u8]) {
    let shown = get_str(ev, key);
    assert_eq!(display_decode(shown), expected, "{key} {shown:?} is not the name on disk: {}", show(ev));
    match std::str::from_utf8(expected) {
        Ok(text) => {
            assert!(!has(ev, bytes_key), "{bytes_key} on a UTF-8 name: {}", show(ev));
            assert_eq!(shown, text.replace('\\', r"\\"), "a UTF-8 name is shown as is: {}", show(ev));
        }
        Err(_) => {
            let raw = percent_decode(get_str(ev, bytes_key));
            assert_eq!(raw, expected, "{bytes_key} does not round-trip: {}", show(ev));
        }
    }
}

/// Every file below `dir` as (inode, full path bytes), read from the directory itself.
fn on_disk(dir: &Path) -> BTreeMap<u64, Vec<u8>> {
    let mut out = BTreeMap::new();
    for e in fs::read_dir(dir).unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display())) {
        let e = e.expect("dir entry");
        let path = dir.join(e.file_name());
        let meta = fs::symlink_metadata(&path).expect("stat");
        if meta.is_dir() {
            out.extend(on_disk(&path));
        } else {
            out.insert(meta.ino(), path.into_os_string().into_vec());
        }
    }
    out
}

/// The protected tree with every name of [`names`]; each file holds its own length in bytes
/// (`i + 1` times `x`), so reads are told apart by their byte counts.
fn tree(label: &str) -> (TempDir, PathBuf) {
    let dir = TempDir::new(label);
    let p = dir.mkdir("protected");
    for (i, name) in names().iter().enumerate() {
        dir.write(Path::new("protected").join(os(name)), vec![b'x'; i + 1]);
    }
    (dir, p)
}

#[test]
fn names_that_are_not_utf8_round_trip_from_the_records() {
    let (dir, p) = tree("names-sjis");
    let files = on_disk(&p);
    assert_eq!(files.len(), names().len(), "one file per name");

    // The executable has a Shift_JIS name too: a copy of cat (argv[0] `cat` for busybox).
    let exe = dir.join(os(b"\x83J\x83b\x83g-cat"));
    fs::copy(find_tool("cat"), &exe).expect("copy cat");
    fs::set_permissions(&exe, fs::Permissions::from_mode(0o755)).expect("chmod");

    let mut sensor = Sensor::start(&["--protect", path_str(&p)]);
    let me = test_pid();
    let mut sizes = BTreeMap::new();
    for (ino, path) in &files {
        let mut data = Vec::new();
        fs::File::open(os(path)).and_then(|mut f| f.read_to_end(&mut data)).expect("read");
        sizes.insert(*ino, data.len() as u64);
    }
    let sjis = p.join(os(MYNUMBER_SJIS));
    let mut cat = ChildGuard::spawn(
        Command::new(&exe).arg0("cat").arg(&sjis).stdout(std::process::Stdio::null()).current_dir(&p),
    );
    let cat_pid = cat.pid();
    let status = cat.wait_timeout(scaled(CHILD_TIMEOUT));
    assert!(status.success(), "{} {}: {status}", exe.display(), sjis.display());

    let of = |e: &Value, name: &str, pid: u32, ino: u64| {
        is(e, name) && pid_of(e) == Some(pid) && e.get("file.inode").and_then(Value::as_u64) == Some(ino)
    };
    for ino in files.keys() {
        sensor.wait_for(&format!("file.close of inode {ino}"), |e| of(e, "file.close", me, *ino));
    }
    let sjis_ino = fs::metadata(&sjis).expect("stat").ino();
    sensor.wait_for("file.close by the Shift_JIS-named cat", |e| of(e, "file.close", cat_pid, sjis_ino));
    sensor.stop();
    let events = sensor.events().to_vec();

    let mut shown = BTreeSet::new();
    for (ino, path) in &files {
        for name in ["file.open", "file.close"] {
            let ev = events
                .iter()
                .find(|e| of(e, name, me, *ino))
                .unwrap_or_else(|| panic!("no {name} of inode {ino} ({})", String::from_utf8_lossy(path)));
            assert_path_attr(ev, "file.path", "mnsensor.file.path_bytes", path);
            let (dir_bytes, base) = path.split_at(path.iter().rposition(|b| *b == b'/').expect("a slash"));
            assert_eq!(display_decode(get_str(ev, "file.name")), &base[1..], "{}", show(ev));
            assert_eq!(display_decode(get_str(ev, "file.directory")), dir_bytes, "{}", show(ev));
            assert_eq!(get_str(ev, "mnsensor.protected.path"), path_str(&p), "{}", show(ev));
            if name == "file.close" {
                assert_eq!(get_u64(ev, "mnsensor.file.bytes_read"), sizes[ino], "{}", show(ev));
            } else {
                shown.insert(get_str(ev, "file.path").to_owned());
            }
        }
    }
    assert_eq!(shown.len(), files.len(), "two different names were shown the same: {shown:?}");

    let ev = events.iter().find(|e| of(e, "file.close", cat_pid, sjis_ino)).expect("found above");
    let exe_bytes = exe.as_os_str().as_bytes();
    assert_path_attr(ev, "process.executable.path", "mnsensor.process.executable.path_bytes", exe_bytes);
    assert_eq!(get_u64(ev, "mnsensor.file.bytes_read"), sizes[&sjis_ino], "{}", show(ev));
    let exec = events
        .iter()
        .find(|e| is(e, "process.exec") && pid_of(e) == Some(cat_pid))
        .unwrap_or_else(|| panic!("no process.exec of the Shift_JIS-named cat {cat_pid}"));
    assert_path_attr(exec, "process.executable.path", "mnsensor.process.executable.path_bytes", exe_bytes);
    assert_eq!(get_str_array(exec, "process.command_args")[0], "cat", "{}", show(exec));
}

#[test]
fn a_policy_glob_written_in_display_form_matches_a_shift_jis_name() {
    let (dir, p) = tree("names-policy");
    let policies = dir.mkdir("policies");
    // マイナンバー* in display form, `}` and `[` escaped for the glob; audit mode, no one
    // allowed: every read of a matching file is a `would_deny`.
    let glob = format!(r"{}/\x83\}}\x83C\x83i\x83\x93\x83o\x81\[*", path_str(&p));
    let doc = format!(
        "apiVersion: mnsensor/v1\nkind: AccessPolicy\nmetadata: {{name: sjis}}\nspec:\n  mode: audit\n  protect: [{{glob: '{glob}'}}]\n  default: {{action: deny, severity: high}}\n"
    );
    fs::write(policies.join("10-sjis.yaml"), doc).expect("write policy");
    let check = Command::new(mnsensor_tests::sensor_bin())
        .args(["policy", "check"])
        .arg(&policies)
        .output()
        .expect("policy check");
    assert!(check.status.success(), "policy check: {}", String::from_utf8_lossy(&check.stderr));

    let mut sensor = Sensor::start(&["--policy", path_str(&policies)]);
    let me = test_pid();
    let matching = p.join(os(MYNUMBER_SJIS));
    let sibling = p.join(os(MYNUMBER_SJIS_2));
    let ino = |f: &Path| fs::metadata(f).expect("stat").ino();
    for f in [&sibling, &matching] {
        fs::read(f).unwrap_or_else(|e| panic!("read {}: {e}", f.display()));
    }
    let decided = |e: &Value, i: u64| {
        is(e, "policy.decision")
            && pid_of(e) == Some(me)
            && e.get("file.inode").and_then(Value::as_u64) == Some(i)
    };
    let ev = sensor.wait_for("policy.decision of the Shift_JIS file", |e| decided(e, ino(&matching)));
    assert_eq!(get_str(&ev, "mnsensor.decision"), "would_deny", "{}", show(&ev));
    assert_eq!(get_str(&ev, "mnsensor.policy.name"), "sjis", "{}", show(&ev));
    assert_path_attr(&ev, "file.path", "mnsensor.file.path_bytes", matching.as_os_str().as_bytes());
    // The sibling was read first; its name differs only in one byte the glob spells out.
    sensor.stop();
    sensor.assert_none("a decision on the sibling the glob does not match", |e| decided(e, ino(&sibling)));

    // `policy explain` takes the display form of a record's path.
    let explain = Command::new(mnsensor_tests::sensor_bin())
        .args(["policy", "explain", "--user", "root", "--program", "/bin/cat", "--op", "read", "--policy"])
        .arg(&policies)
        .arg("--path")
        .arg(get_str(&ev, "file.path"))
        .output()
        .expect("policy explain");
    let text = String::from_utf8_lossy(&explain.stdout);
    assert!(text.contains("policy sjis") && text.contains("decision: WOULD_DENY"), "policy explain:\n{text}");
}
